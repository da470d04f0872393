//! `convert --adapter`: the one-pass adapter → GGUF export against `merge` then `convert` of
//! the merged folder (byte for byte), on the PEFT fixture cases (llama with the Q/K
//! permutation, tied and untied embeddings, `modules_to_save`, DoRA, rsLoRA, qwen2, GPT-2's
//! Conv1D, a sharded base) and on a synthetic llama wide enough for real k-quant blocks with
//! embedding and `lm_head` LoRA; and the refusals.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use loraforge_adapter_merge::{merge, MergeError, MergeOptions};
use loraforge_export::{convert, ConvertError, ConvertOptions, ExportTarget, FileType};
use loraforge_hf_model::{Dtype, SafetensorsFile, SafetensorsShardWriter, TensorSpec};
use loraforge_progress::NoProgress;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/peft");

fn fixture(case: &str, sub: &str) -> PathBuf {
    Path::new(FIXTURES).join(case).join(sub)
}

/// The targets every case is checked at.
fn targets() -> [(&'static str, ExportTarget); 5] {
    [
        ("f16", ExportTarget::Convert(FileType::F16)),
        ("q8_0", ExportTarget::Convert(FileType::Q8_0)),
        ("q4_K_M", ExportTarget::Quantize(FileType::Q4KM)),
        ("q8_0 (recipe)", ExportTarget::Quantize(FileType::Q8_0)),
        ("auto", ExportTarget::Auto),
    ]
}

/// `loraforge merge` (defaults) into `tmp/merged/<base folder name>` (the same name, so that
/// `general.name` agrees), then `convert` of that folder.
fn merge_then_convert(base: &Path, adapter: &Path, target: ExportTarget, tmp: &Path) -> Vec<u8> {
    let merged = tmp.join("merged").join(base.file_name().unwrap());
    if !merged.exists() {
        let mut options = MergeOptions::new(base, adapter, &merged);
        options.fsync = false;
        merge(&options, &NoProgress).unwrap();
    }
    let out = tmp.join("two-step.gguf");
    let options = ConvertOptions {
        target,
        ..ConvertOptions::default()
    };
    convert(&merged, &out, &options, &NoProgress).unwrap();
    std::fs::read(&out).unwrap()
}

fn one_pass(base: &Path, adapter: &Path, target: ExportTarget, out: &Path) -> Vec<u8> {
    let options = ConvertOptions {
        target,
        adapter: Some(adapter.to_path_buf()),
        threads: Some(2),
        sha256: true,
        ..ConvertOptions::default()
    };
    let report = convert(base, out, &options, &NoProgress).unwrap();
    let bytes = std::fs::read(out).unwrap();
    assert_eq!(report.bytes, bytes.len() as u64);
    use sha2::Digest;
    assert_eq!(
        report.sha256.as_deref(),
        Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str())
    );
    bytes
}

/// One-pass equals merge-then-convert, and differs from the base's own conversion (the
/// adapter was applied).
fn check(base: &Path, adapter: &Path, what: &str) {
    let tmp = tempfile::tempdir().unwrap();
    for (name, target) in targets() {
        let expected = merge_then_convert(base, adapter, target, tmp.path());
        let out_dir = tmp.path().join("out");
        std::fs::create_dir_all(&out_dir).unwrap();
        let got = one_pass(base, adapter, target, &out_dir.join("one.gguf"));
        assert!(got == expected, "{what} {name}: bytes differ");
        // Nothing but the output is left beside it (no temporaries, no side-file folder).
        assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1, "{what}");
        if name == "f16" {
            let plain = tmp.path().join("plain.gguf");
            let options = ConvertOptions {
                target,
                ..ConvertOptions::default()
            };
            convert(base, &plain, &options, &NoProgress).unwrap();
            assert!(
                std::fs::read(&plain).unwrap() != got,
                "{what}: the adapter changed nothing"
            );
        }
    }
}

#[test]
fn one_pass_equals_merge_then_convert_on_every_fixture_case() {
    for case in [
        "a_llama_qv",               // llama, Q/K permutation, tied embeddings, bf16
        "b_llama_alllinear_rslora", // every linear layer, rsLoRA, chat template
        "c_qwen2_rank_pattern",     // qwen2, f16, rank_pattern
        "d_llama_modules_to_save",  // untied: embed_tokens and lm_head replaced by the adapter
        "e_llama_dora",             // DoRA, f32
        "f_gpt2_conv1d",            // gpt2: Conv1D transposes, fan_in_fan_out
        "g_llama_sharded",          // 3 base shards, the merged model is 1
    ] {
        check(&fixture(case, "base"), &fixture(case, "adapter"), case);
    }
}

#[test]
fn the_adapters_tokenizer_files_are_used_as_the_merge_uses_them() {
    // An adapter saved with its tokenizer (a chat template of its own): the merged folder takes
    // the adapter's tokenizer files, and so does the one-pass export.
    let tmp = tempfile::tempdir().unwrap();
    let adapter = tmp.path().join("adapter");
    copy_dir(&fixture("a_llama_qv", "adapter"), &adapter);
    let base = fixture("a_llama_qv", "base");
    for f in [
        "tokenizer.json",
        "tokenizer.model",
        "special_tokens_map.json",
    ] {
        std::fs::copy(base.join(f), adapter.join(f)).unwrap();
    }
    let mut tc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(base.join("tokenizer_config.json")).unwrap())
            .unwrap();
    tc["chat_template"] = "{{ 'adapter template' }}".into();
    std::fs::write(
        adapter.join("tokenizer_config.json"),
        serde_json::to_vec(&tc).unwrap(),
    )
    .unwrap();
    check(&base, &adapter, "adapter with tokenizer");
    let out = tmp.path().join("x.gguf");
    let got = one_pass(&base, &adapter, ExportTarget::Auto, &out);
    let needle = b"adapter template";
    assert!(got.windows(needle.len()).any(|w| w == needle));
}

/// A synthetic llama with hidden 256 (real Q4_K/Q6_K blocks), 2 layers, bf16, vocabulary 1000
/// (the tokenizer of `a_llama_qv`).
fn synthetic_llama(dir: &Path, tied: bool) -> Vec<T> {
    let (hidden, ffn, heads, kv_heads, vocab) = (256usize, 512usize, 4usize, 2usize, 1000usize);
    let head_dim = hidden / heads;
    let src = fixture("a_llama_qv", "base");
    std::fs::create_dir_all(dir).unwrap();
    for f in [
        "tokenizer.json",
        "tokenizer.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "generation_config.json",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    config["hidden_size"] = hidden.into();
    config["intermediate_size"] = ffn.into();
    config["head_dim"] = head_dim.into();
    config["num_attention_heads"] = heads.into();
    config["num_key_value_heads"] = kv_heads.into();
    config["tie_word_embeddings"] = tied.into();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![vocab, hidden]),
        ("model.norm.weight".into(), vec![hidden]),
    ];
    if !tied {
        shapes.push(("lm_head.weight".into(), vec![vocab, hidden]));
    }
    for l in 0..2 {
        let p = format!("model.layers.{l}");
        for (n, s) in [
            ("input_layernorm", vec![hidden]),
            ("post_attention_layernorm", vec![hidden]),
            ("self_attn.q_proj", vec![hidden, hidden]),
            ("self_attn.k_proj", vec![kv_heads * head_dim, hidden]),
            ("self_attn.v_proj", vec![kv_heads * head_dim, hidden]),
            ("self_attn.o_proj", vec![hidden, hidden]),
            ("mlp.gate_proj", vec![ffn, hidden]),
            ("mlp.up_proj", vec![ffn, hidden]),
            ("mlp.down_proj", vec![hidden, ffn]),
        ] {
            shapes.push((format!("{p}.{n}.weight"), s));
        }
    }
    let tensors: Vec<T> = shapes
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n: usize = shape.iter().product();
            let vals = values(n, 11 + i as u32, 0.1);
            let data = vals
                .iter()
                .flat_map(|v| loraforge_hf_model::f32_to_bf16(*v).to_le_bytes())
                .collect();
            T {
                name,
                dtype: Dtype::BF16,
                shape,
                data,
            }
        })
        .collect();
    write_safetensors(dir, "model.safetensors", &tensors);
    tensors
}

/// An r=8 adapter on every linear layer of `base`, plus `embed_tokens` (embedding LoRA) and,
/// when the base has one, `lm_head`.
fn synthetic_adapter(dir: &Path, base: &[T]) {
    let rank = 8usize;
    let mut tensors = Vec::new();
    let mut targets = vec![
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
        "embed_tokens",
    ];
    let f32_tensor = |name: String, shape: Vec<usize>, seed: u32| {
        let n: usize = shape.iter().product();
        T {
            name,
            dtype: Dtype::F32,
            data: values(n, seed, 0.2)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            shape,
        }
    };
    for (i, t) in base.iter().enumerate() {
        let Some(module) = t.name.strip_suffix(".weight") else {
            continue;
        };
        let leaf = module.rsplit('.').next().unwrap();
        let seed = 1000 + 2 * i as u32;
        let key = format!("base_model.model.{module}");
        if leaf == "embed_tokens" {
            let (vocab, hidden) = (t.shape[0], t.shape[1]);
            tensors.push(f32_tensor(
                format!("{key}.lora_embedding_A"),
                vec![rank, vocab],
                seed,
            ));
            tensors.push(f32_tensor(
                format!("{key}.lora_embedding_B"),
                vec![hidden, rank],
                seed + 1,
            ));
        } else if targets.contains(&leaf) || leaf == "lm_head" {
            let (rows, cols) = (t.shape[0], t.shape[1]);
            tensors.push(f32_tensor(
                format!("{key}.lora_A.weight"),
                vec![rank, cols],
                seed,
            ));
            tensors.push(f32_tensor(
                format!("{key}.lora_B.weight"),
                vec![rows, rank],
                seed + 1,
            ));
        }
    }
    if base.iter().any(|t| t.name == "lm_head.weight") {
        targets.push("lm_head");
    }
    let mut config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture("a_llama_qv", "adapter").join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    config["target_modules"] = targets.into();
    config["r"] = rank.into();
    config["base_model_name_or_path"] = "synthetic".into();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("adapter_config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    write_safetensors(dir, "adapter_model.safetensors", &tensors);
}

#[test]
fn embedding_and_lm_head_lora_on_k_quant_sized_rows_tied_and_untied() {
    for tied in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let adapter = tmp.path().join("adapter");
        let tensors = synthetic_llama(&base, tied);
        synthetic_adapter(&adapter, &tensors);
        check(&base, &adapter, if tied { "tied" } else { "untied" });
    }
}

#[test]
fn an_adapter_of_another_base_is_refused_naming_the_tensor_and_the_folders() {
    let tmp = tempfile::tempdir().unwrap();
    // a_llama_qv's adapter with one lora_A one column too wide.
    let adapter = tmp.path().join("adapter");
    copy_dir(&fixture("a_llama_qv", "adapter"), &adapter);
    let file = SafetensorsFile::open(&adapter.join("adapter_model.safetensors")).unwrap();
    let mut tensors: Vec<T> = file
        .tensor_names()
        .iter()
        .map(|n| {
            let v = file.tensor(n).unwrap();
            T {
                name: n.to_string(),
                dtype: v.dtype,
                shape: v.shape.to_vec(),
                data: v.data.to_vec(),
            }
        })
        .collect();
    drop(file);
    let bad = "base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight";
    let t = tensors.iter_mut().find(|t| t.name == bad).unwrap();
    t.shape[1] += 1;
    t.data = vec![0u8; t.shape.iter().product::<usize>() * 4];
    std::fs::remove_file(adapter.join("adapter_model.safetensors")).unwrap();
    write_safetensors(&adapter, "adapter_model.safetensors", &tensors);

    let base = fixture("a_llama_qv", "base");
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("m.gguf");
    for target in [
        ExportTarget::Convert(FileType::F16),
        ExportTarget::Quantize(FileType::Q4KM),
    ] {
        let options = ConvertOptions {
            target,
            adapter: Some(adapter.clone()),
            ..ConvertOptions::default()
        };
        let err = convert(&base, &out, &options, &NoProgress).unwrap_err();
        let ConvertError::Adapter {
            adapter: a,
            base: b,
            source,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert!(
            matches!(**source, MergeError::LoraShape { ref tensor, .. }
                if tensor == "model.layers.1.self_attn.v_proj.weight"),
            "{source:?}"
        );
        assert_eq!((a, b), (&adapter, &base));
        let chain = format!("{err}: {source}");
        for needle in [
            adapter.to_str().unwrap(),
            base.to_str().unwrap(),
            "model.layers.1.self_attn.v_proj.weight",
        ] {
            assert!(chain.contains(needle), "{chain}");
        }
        assert!(err.is_user_error());
        assert!(err.hint().is_some_and(|h| h.contains("base")));
        assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
    }
    // The other arch's adapter on this base: refused as well.
    let options = ConvertOptions {
        adapter: Some(fixture("c_qwen2_rank_pattern", "adapter")),
        ..ConvertOptions::default()
    };
    let err = convert(&base, &out, &options, &NoProgress).unwrap_err();
    assert!(matches!(err, ConvertError::Adapter { .. }), "{err:?}");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
}

#[test]
fn a_missing_adapter_folder_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.gguf");
    let missing = tmp.path().join("no-such-adapter");
    let options = ConvertOptions {
        adapter: Some(missing.clone()),
        ..ConvertOptions::default()
    };
    let err = convert(&fixture("a_llama_qv", "base"), &out, &options, &NoProgress).unwrap_err();
    assert!(
        matches!(&err, ConvertError::MissingAdapter { path } if *path == missing),
        "{err:?}"
    );
    assert!(err.is_user_error() && err.hint().is_some());
    // A folder that is not an adapter: the merge says so.
    let options = ConvertOptions {
        adapter: Some(fixture("a_llama_qv", "base")),
        ..ConvertOptions::default()
    };
    let err = convert(&fixture("a_llama_qv", "base"), &out, &options, &NoProgress).unwrap_err();
    assert!(
        matches!(&err, ConvertError::Adapter { source, .. }
            if matches!(**source, MergeError::NotAnAdapter { .. })),
        "{err:?}"
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn adapter_features_the_merge_refuses_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fixture("a_llama_qv", "base");
    let out = tmp.path().join("m.gguf");
    // PiSSA rewrites the base at init: merging onto the original base would be wrong.
    let pissa = tmp.path().join("pissa");
    copy_dir(&fixture("a_llama_qv", "adapter"), &pissa);
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pissa.join("adapter_config.json")).unwrap()).unwrap();
    config["init_lora_weights"] = "pissa".into();
    std::fs::write(
        pissa.join("adapter_config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    // DoRA declared but the magnitude vectors missing: an incomplete file.
    let dora = tmp.path().join("dora");
    copy_dir(&fixture("a_llama_qv", "adapter"), &dora);
    config["init_lora_weights"] = true.into();
    config["use_dora"] = true.into();
    std::fs::write(
        dora.join("adapter_config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    for (adapter, want) in [
        (&pissa, "BaseRewritingInit"),
        (&dora, "DoraWithoutMagnitude"),
    ] {
        let options = ConvertOptions {
            target: ExportTarget::Quantize(FileType::Q4KM),
            adapter: Some(adapter.clone()),
            ..ConvertOptions::default()
        };
        let err = convert(&base, &out, &options, &NoProgress).unwrap_err();
        let ConvertError::Adapter { source, .. } = &err else {
            panic!("{err:?}");
        };
        let ok = match want {
            "BaseRewritingInit" => matches!(**source, MergeError::BaseRewritingInit { .. }),
            _ => matches!(**source, MergeError::DoraWithoutMagnitude { .. }),
        };
        assert!(ok, "{want}: {source:?}");
        assert!(!out.exists());
    }
}

// ---- helpers ----

#[derive(Clone)]
struct T {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn write_safetensors(dir: &Path, file: &str, tensors: &[T]) {
    let scratch = dir.join(".scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let specs = tensors
        .iter()
        .map(|t| TensorSpec {
            name: t.name.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
        })
        .collect();
    let mut w = SafetensorsShardWriter::new(&scratch, specs, u64::MAX, 0).unwrap();
    let order: Vec<String> = w.write_order().iter().map(|s| s.to_string()).collect();
    for n in order {
        let t = tensors.iter().find(|t| t.name == n).unwrap();
        w.write_tensor(&n, &t.data).unwrap();
    }
    w.finish().unwrap();
    std::fs::rename(scratch.join("model.safetensors"), dir.join(file)).unwrap();
    std::fs::remove_dir_all(&scratch).unwrap();
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

/// `n` deterministic values in `[-scale/2, scale/2]` (xorshift32).
fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32 - 0.5) * scale
        })
        .collect()
}

#[test]
fn a_non_finite_base_weight_is_refused_naming_the_tensor_and_nothing_is_written() {
    // Row 300, column 7 (element 76807) of an up_proj (ffn 512 × hidden 256), infinity then
    // NaN: the merge keeps it non-finite, and every target refuses it, saying where; quantized
    // targets too, whose pieces go to the quantizer without a conversion copy.
    for bad_bits in [0x7f80u16, 0xffc1] {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let adapter = tmp.path().join("adapter");
        let mut tensors = synthetic_llama(&base, true);
        synthetic_adapter(&adapter, &tensors);
        let name = "model.layers.1.mlp.up_proj.weight";
        let t = tensors.iter_mut().find(|t| t.name == name).unwrap();
        let at = (300 * 256 + 7) * 2;
        t.data[at..at + 2].copy_from_slice(&bad_bits.to_le_bytes());
        std::fs::remove_file(base.join("model.safetensors")).unwrap();
        write_safetensors(&base, "model.safetensors", &tensors);

        let out_dir = tmp.path().join("out");
        std::fs::create_dir(&out_dir).unwrap();
        // With the adapter (merged pieces) and without (pieces as read from the base).
        let runs = targets()
            .into_iter()
            .flat_map(|t| [(t, Some(adapter.clone())), (t, None)]);
        for ((what, target), adapter) in runs {
            let options = ConvertOptions {
                target,
                adapter,
                threads: Some(2),
                ..ConvertOptions::default()
            };
            let err =
                convert(&base, &out_dir.join("m.gguf"), &options, &NoProgress).expect_err(what);
            let mut err: &dyn std::error::Error = &err;
            let mut chain = err.to_string();
            while let Some(source) = err.source() {
                chain = format!("{chain}: {source}");
                err = source;
            }
            let err = chain;
            assert!(err.contains(name), "{what}: {err}");
            assert!(
                err.contains("element 76807") || err.contains("row 300, column 7"),
                "{what}: {err}"
            );
            assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0, "{what}");
        }
    }
}
