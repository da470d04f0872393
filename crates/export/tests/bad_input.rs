//! Bad input: each failure gives its own error naming the problem, and nothing is left at the
//! output path (no partial file, no stray temp file).
#![allow(clippy::unwrap_used, clippy::result_large_err)]

use std::path::{Path, PathBuf};

use loraforge_export::{convert, ConvertError, ConvertOptions, PreTokenizerSource};
use loraforge_progress::NoProgress;
use serde_json::Value;

mod common;

/// Copies `<case>/<sub>` into `tmp/model` and returns (model dir, output dir).
fn setup(case: &str, sub: &str, tmp: &Path) -> (PathBuf, PathBuf) {
    let dir = common::copy_case(case, sub, tmp);
    let out_dir = tmp.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    (dir, out_dir)
}

fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn run(dir: &Path, out_dir: &Path) -> Result<loraforge_export::ConvertReport, ConvertError> {
    run_with(dir, out_dir, &ConvertOptions::default())
}

fn run_with(
    dir: &Path,
    out_dir: &Path,
    options: &ConvertOptions,
) -> Result<loraforge_export::ConvertReport, ConvertError> {
    convert(dir, &out_dir.join("model.gguf"), options, &NoProgress)
}

fn assert_nothing_written(out_dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "files left in the output folder: {left:?}");
}

#[test]
fn missing_config_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup("a_llama_qv", "base", tmp.path());
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let err = run(&dir, &out).unwrap_err();
    assert!(matches!(err, ConvertError::MissingConfig { .. }), "{err}");
    assert!(err.to_string().contains("config.json"));
    assert_nothing_written(&out);
}

#[test]
fn invalid_config_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup("a_llama_qv", "base", tmp.path());
    std::fs::write(
        dir.join("config.json"),
        "{\"architectures\": [\"LlamaForCausalLM\",",
    )
    .unwrap();
    let err = run(&dir, &out).unwrap_err();
    assert!(matches!(err, ConvertError::InvalidJson { .. }), "{err}");
    assert_nothing_written(&out);
}

#[test]
fn config_without_layer_count() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup("a_llama_qv", "base", tmp.path());
    edit_json(&dir.join("config.json"), |v| {
        v.as_object_mut().unwrap().remove("num_hidden_layers");
    });
    let err = run(&dir, &out).unwrap_err();
    assert!(matches!(err, ConvertError::MissingHparam { .. }), "{err}");
    assert!(err.to_string().contains("num_hidden_layers"));
    assert_nothing_written(&out);
}

#[test]
fn unsupported_architecture_lists_the_supported_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup("a_llama_qv", "base", tmp.path());
    edit_json(&dir.join("config.json"), |v| {
        v["architectures"] = serde_json::json!(["FalconForCausalLM"]);
    });
    let err = run(&dir, &out).unwrap_err();
    assert!(
        matches!(err, ConvertError::UnsupportedArchitecture { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("FalconForCausalLM")
            && msg.contains("LlamaForCausalLM")
            && msg.contains("Qwen2ForCausalLM")
            && msg.contains("GemmaForCausalLM (gemma)")
            && msg.contains("Gemma2ForCausalLM (gemma2)")
            && msg.contains("Phi3ForCausalLM (phi3)"),
        "{msg}"
    );
    assert_nothing_written(&out);
}

#[test]
fn weights_missing_for_a_layer() {
    // The config says 3 layers, the weights hold 2.
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup("a_llama_qv", "base", tmp.path());
    edit_json(&dir.join("config.json"), |v| {
        v["num_hidden_layers"] = 3.into()
    });
    let err = run(&dir, &out).unwrap_err();
    match &err {
        ConvertError::MissingLayerTensor { layer, tensor } => {
            assert_eq!(*layer, 2);
            assert!(tensor.starts_with("model.layers.2."), "{tensor}");
        }
        other => panic!("unexpected error {other}"),
    }
    assert_nothing_written(&out);
}

#[test]
fn missing_shard_of_a_sharded_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup("g_llama_sharded", "base", tmp.path());
    std::fs::remove_file(dir.join("model-00002-of-00003.safetensors")).unwrap();
    let err = run(&dir, &out).unwrap_err();
    match &err {
        ConvertError::MissingShard { path, tensors } => {
            assert!(path.ends_with("model-00002-of-00003.safetensors"));
            assert!(!tensors.is_empty());
        }
        other => panic!("unexpected error {other}"),
    }
    assert_nothing_written(&out);
}

#[test]
fn sharded_base_converts() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup("g_llama_sharded", "base", tmp.path());
    let report = run(&dir, &out).unwrap();
    assert_eq!(report.tensors, 20);
    assert_eq!(report.architecture, "llama");
}

#[test]
fn vocab_size_disagreeing_with_embedding_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup("a_llama_qv", "base", tmp.path());
    edit_json(&dir.join("config.json"), |v| v["vocab_size"] = 1008.into());
    let err = run(&dir, &out).unwrap_err();
    match &err {
        ConvertError::VocabSizeMismatch {
            config_vocab,
            embedding_rows,
            ..
        } => {
            assert_eq!((*config_vocab, *embedding_rows), (1008, 1000));
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("resize_token_embeddings"));
    assert_nothing_written(&out);
}

#[test]
fn tokens_added_to_the_tokenizer_but_not_to_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup("b_llama_alllinear_rslora", "base", tmp.path());
    edit_json(&dir.join("tokenizer.json"), |v| {
        v["added_tokens"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "id": 1006, "content": "<|my_new_token|>", "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            }));
    });
    let err = run(&dir, &out).unwrap_err();
    match &err {
        ConvertError::TokenizerLargerThanModel {
            max_id,
            token,
            vocab_size,
        } => {
            assert_eq!((*max_id, *vocab_size), (1006, 1006));
            assert_eq!(token, "<|my_new_token|>");
        }
        other => panic!("unexpected error {other}"),
    }
    assert_nothing_written(&out);
}

#[test]
fn unidentifiable_pre_tokenizer_fails_unless_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup("b_llama_alllinear_rslora", "base", tmp.path());
    edit_json(&dir.join("tokenizer.json"), |v| {
        v["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+|\\w+|[^\\s\\w]+".into();
    });
    let err = run(&dir, &out).unwrap_err();
    match &err {
        ConvertError::UnknownPreTokenizer {
            chkhsh,
            description,
        } => {
            assert_eq!(chkhsh.len(), 64);
            assert!(description.contains("\\s+|\\w+"), "{description}");
        }
        other => panic!("unexpected error {other}"),
    }
    assert_nothing_written(&out);

    let options = ConvertOptions {
        pre_tokenizer: Some("llama-bpe".into()),
        ..ConvertOptions::default()
    };
    let report = run_with(&dir, &out, &options).unwrap();
    assert_eq!(report.pre_tokenizer.as_deref(), Some("llama-bpe"));
    assert_eq!(
        report.pre_tokenizer_source,
        Some(PreTokenizerSource::Override)
    );
}

#[test]
fn no_tokenizer_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup("b_llama_alllinear_rslora", "base", tmp.path());
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let err = run(&dir, &out).unwrap_err();
    assert!(
        matches!(err, ConvertError::MissingTokenizer { .. }),
        "{err}"
    );
    assert_nothing_written(&out);
}

#[test]
fn output_inside_the_model_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup("a_llama_qv", "base", tmp.path());
    let before: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for target in [
        dir.join("model.gguf"),
        dir.join(".").join("sub").join("..").join("x.gguf"),
    ] {
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p).unwrap();
        }
        let err = convert(&dir, &target, &ConvertOptions::default(), &NoProgress).unwrap_err();
        assert!(
            matches!(err, ConvertError::OutputInsideInput { .. }),
            "{err}"
        );
        assert!(!target.exists());
    }
    let _ = std::fs::remove_dir(dir.join("sub"));
    let after: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before.len(), after.len());
    assert_nothing_written(&out);
}

#[test]
fn existing_output_is_left_alone_when_conversion_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup("a_llama_qv", "base", tmp.path());
    let target = out.join("model.gguf");
    std::fs::write(&target, b"previous file").unwrap();
    edit_json(&dir.join("config.json"), |v| {
        v["num_hidden_layers"] = 3.into()
    });
    assert!(run(&dir, &out).is_err());
    assert_eq!(std::fs::read(&target).unwrap(), b"previous file");
}

#[test]
fn truncated_safetensors_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup("a_llama_qv", "base", tmp.path());
    let st = dir.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let err = run(&dir, &out).unwrap_err();
    match &err {
        ConvertError::InvalidSafetensors { path, .. } => {
            assert!(path.ends_with("model.safetensors"))
        }
        other => panic!("unexpected error {other}"),
    }
    assert_nothing_written(&out);
}

/// The Gemma / Phi-3 folders of tests/fixtures/convert (setup takes a path under peft/).
const CONVERT: &str = "../convert";

#[test]
fn gemma2_without_softcapping() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup(CONVERT, "gemma2", tmp.path());
    edit_json(&dir.join("config.json"), |v| {
        v.as_object_mut().unwrap().remove("attn_logit_softcapping");
    });
    let err = run(&dir, &out).unwrap_err();
    assert!(matches!(err, ConvertError::MissingHparam { .. }), "{err}");
    assert!(err.to_string().contains("attn_logit_softcapping"), "{err}");
    assert_nothing_written(&out);
}

#[test]
fn phi3_longrope_factors_of_the_wrong_length() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup(CONVERT, "phi3_longrope", tmp.path());
    edit_json(&dir.join("config.json"), |v| {
        v["rope_scaling"]["short_factor"] = serde_json::json!([1.0, 1.0]);
    });
    let err = run(&dir, &out).unwrap_err();
    assert!(matches!(err, ConvertError::MissingHparam { .. }), "{err}");
    assert!(err.to_string().contains("short_factor"), "{err}");
    assert_nothing_written(&out);
}

#[test]
fn phi3_unknown_rope_scaling_type() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup(CONVERT, "phi3_longrope", tmp.path());
    edit_json(&dir.join("config.json"), |v| {
        v["rope_scaling"]["type"] = "dynamic".into();
    });
    let err = run(&dir, &out).unwrap_err();
    assert!(matches!(err, ConvertError::UnsupportedFeature(_)), "{err}");
    assert!(err.to_string().contains("dynamic"), "{err}");
    assert_nothing_written(&out);
}

#[test]
fn phi3_without_tokenizer_model() {
    // Phi-3's SentencePiece path needs tokenizer.model even when tokenizer.json is there.
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup(CONVERT, "phi3", tmp.path());
    std::fs::remove_file(dir.join("tokenizer.model")).unwrap();
    let err = run(&dir, &out).unwrap_err();
    assert!(
        matches!(err, ConvertError::MissingTokenizer { .. }),
        "{err}"
    );
    assert_nothing_written(&out);
}

#[test]
fn phi3_added_token_past_the_vocabulary() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = setup(CONVERT, "phi3", tmp.path());
    edit_json(&dir.join("tokenizer_config.json"), |v| {
        v["added_tokens_decoder"]["1030"] =
            serde_json::json!({"content": "<|x|>", "special": true});
    });
    let err = run(&dir, &out).unwrap_err();
    assert!(
        matches!(
            err,
            ConvertError::TokenizerLargerThanModel {
                max_id: 1030,
                vocab_size: 1024,
                ..
            }
        ),
        "{err}"
    );
    assert_nothing_written(&out);
}

#[cfg(unix)]
#[test]
fn shards_linked_from_outside_the_model_folder_are_refused() {
    // issue 11 #3: the converter reads shards through hf-model's one index reader and rule
    let src = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/peft/g_llama_sharded/base"
    ));
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, model.join(p.file_name().unwrap())).unwrap();
    }
    let shard = model.join("model-00003-of-00003.safetensors");
    let outside = d.path().join("elsewhere.safetensors");
    std::fs::rename(&shard, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &shard).unwrap();
    let out = d.path().join("out.gguf");
    let e = loraforge_export::convert(
        &model,
        &out,
        &loraforge_export::ConvertOptions::default(),
        &loraforge_progress::NoProgress,
    )
    .unwrap_err();
    let chain = format!("{:?}", e);
    assert!(chain.contains("ShardOutsideFolder"), "{chain}");
    assert!(!out.exists());
}
