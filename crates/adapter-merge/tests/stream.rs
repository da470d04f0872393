//! `MergedModel`: the merge as a stream of tensors gives, block by block, the bytes `merge`
//! writes into the merged folder; its shard plan and side files are the folder's.
#![allow(clippy::unwrap_used)]

mod common;

use loraforge_adapter_merge::{merge, MergeError, MergeOptions, MergedModel};
use loraforge_hf_model::HfModel;
use loraforge_progress::NoProgress;

#[test]
fn merged_tensors_equal_the_merged_folder_in_any_whole_row_blocks() {
    for case in [
        "a_llama_qv",
        "b_llama_alllinear_rslora",
        "c_qwen2_rank_pattern",
        "d_llama_modules_to_save",
        "e_llama_dora",
        "f_gpt2_conv1d",
        "g_llama_sharded",
        "h_llama_layers_subset",
    ] {
        let base_dir = common::fixtures().join(case).join("base");
        let adapter_dir = common::fixtures().join(case).join("adapter");
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("merged");
        let mut options = MergeOptions::new(&base_dir, &adapter_dir, &out);
        options.fsync = false;
        options.max_shard_size = 40_000;
        merge(&options, &NoProgress).unwrap();
        let merged_folder = HfModel::open(&out).unwrap();
        let base = HfModel::open(&base_dir).unwrap();
        let stream = MergedModel::open(&base_dir, &adapter_dir).unwrap();

        let mut changed = 0;
        for name in base.tensor_names() {
            let want = merged_folder.tensor(name).unwrap();
            let from_base = base.tensor(name).unwrap();
            let Some(t) = stream.tensor(name).unwrap() else {
                assert!(!stream.changes(name));
                assert_eq!(from_base.data, want.data, "{case} {name} is a copy");
                continue;
            };
            changed += 1;
            assert!(stream.changes(name));
            assert_eq!((t.dtype(), t.shape()), (want.dtype, want.shape), "{case}");
            // blocks of 3 rows (the last one shorter), the whole tensor at once
            let row: usize = t.shape().iter().skip(1).product::<usize>().max(1);
            let row_bytes = row * t.dtype().size();
            for rows_per_block in [3usize, usize::MAX / row_bytes] {
                let mut got = vec![0u8; from_base.data.len()];
                for (i, (src, dst)) in from_base
                    .data
                    .chunks(rows_per_block * row_bytes)
                    .zip(got.chunks_mut(rows_per_block * row_bytes))
                    .enumerate()
                {
                    t.merge(i * rows_per_block * row, src, dst).unwrap();
                }
                assert!(got == want.data, "{case} {name}: merged bytes differ");
            }
        }
        assert!(changed > 0, "{case}");

        // The shard plan is the folder's.
        let shards = stream.shards(40_000).unwrap();
        let mut files: Vec<_> = merged_folder.weight_files().to_vec();
        files.sort();
        assert_eq!(shards.len(), files.len(), "{case}");
        for (names, file) in shards.iter().zip(&files) {
            let header = loraforge_hf_model::read_safetensors_header(file).unwrap();
            let mut in_file: Vec<&str> = header.tensors.iter().map(|t| t.name.as_str()).collect();
            let mut planned: Vec<&str> = names.iter().map(String::as_str).collect();
            in_file.sort();
            planned.sort();
            assert_eq!(planned, in_file, "{case} {}", file.display());
        }

        // The side files are the folder's.
        let side = tmp.path().join("side");
        std::fs::create_dir(&side).unwrap();
        stream.write_side_files(&side).unwrap();
        for e in std::fs::read_dir(&side).unwrap() {
            let e = e.unwrap();
            assert_eq!(
                std::fs::read(e.path()).unwrap(),
                std::fs::read(out.join(e.file_name())).unwrap(),
                "{case} {:?}",
                e.file_name()
            );
        }
        let weights = merged_folder.weight_files().len()
            + usize::from(out.join("model.safetensors.index.json").is_file());
        assert_eq!(
            std::fs::read_dir(&side).unwrap().count() + weights,
            std::fs::read_dir(&out).unwrap().count(),
            "{case}: every side file"
        );
    }
}

#[test]
fn ranges_that_are_not_whole_rows_are_refused() {
    let base_dir = common::fixtures().join("a_llama_qv").join("base");
    let adapter_dir = common::fixtures().join("a_llama_qv").join("adapter");
    let stream = MergedModel::open(&base_dir, &adapter_dir).unwrap();
    let t = stream
        .tensor("model.layers.0.self_attn.q_proj.weight")
        .unwrap()
        .unwrap();
    let cols = t.shape()[1];
    let size = t.dtype().size();
    let base = vec![0u8; cols * size];
    let mut out = vec![0u8; cols * size];
    t.merge(cols, &base, &mut out).unwrap();
    for (first, len) in [(1, cols), (0, cols - 1), (t.shape()[0] * cols, cols)] {
        let err = t
            .merge(first, &base[..len * size], &mut out[..len * size])
            .unwrap_err();
        assert!(
            matches!(err, MergeError::BadRange { first: f, len: l, .. } if f == first && l == len),
            "{err:?}"
        );
        assert!(!err.is_user_error());
    }
}

#[test]
fn the_stream_refuses_what_merge_refuses() {
    let base_dir = common::fixtures().join("a_llama_qv").join("base");
    let err = MergedModel::open(&base_dir, &base_dir).unwrap_err();
    assert!(matches!(err, MergeError::NotAnAdapter { .. }), "{err:?}");
    let other = common::fixtures()
        .join("c_qwen2_rank_pattern")
        .join("adapter");
    let err = MergedModel::open(&base_dir, &other).unwrap_err();
    assert!(
        matches!(err, MergeError::UnmatchedAdapterTensors { .. }),
        "{err:?}"
    );
}
