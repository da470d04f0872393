//! Options and reporting: progress totals, thread counts, Llama 3 rope factors, out types.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use loraforge_export::{convert, ConvertOptions, ExportTarget, FileType, GeneralMetadata};
use loraforge_gguf::{GgufFile, MetadataValue};
use loraforge_progress::{NoProgress, Reporter};

mod common;

use common::{copy_case, FIXTURES};

#[derive(Default)]
struct Recorder {
    total: Mutex<Option<u64>>,
    advanced: AtomicU64,
    messages: Mutex<Vec<String>>,
}

impl Reporter for Recorder {
    fn begin(&self, _phase: &str, total: Option<u64>) {
        *self.total.lock().unwrap() = total;
    }
    fn advance(&self, units: u64) {
        self.advanced.fetch_add(units, Ordering::Relaxed);
    }
    fn message(&self, text: &str) {
        self.messages.lock().unwrap().push(text.to_string());
    }
}

#[test]
fn progress_counts_tensor_bytes_and_names_each_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_case("a_llama_qv", "expected", tmp.path());
    for f in ["tokenizer.model", "tokenizer_config.json", "tokenizer.json"] {
        std::fs::copy(
            Path::new(FIXTURES).join("a_llama_qv/base").join(f),
            dir.join(f),
        )
        .unwrap();
    }
    let out = tmp.path().join("out.gguf");
    let rec = Recorder::default();
    let options = ConvertOptions {
        threads: Some(1),
        ..ConvertOptions::default()
    };
    let report = convert(&dir, &out, &options, &rec).unwrap();
    let file = GgufFile::open(&out).unwrap();
    let data: u64 = file.tensors().iter().map(|t| t.size).sum();
    assert_eq!(rec.advanced.load(Ordering::Relaxed), data);
    assert_eq!(*rec.total.lock().unwrap(), Some(report.bytes));
    let names: Vec<String> = file.tensors().iter().map(|t| t.info.name.clone()).collect();
    assert_eq!(*rec.messages.lock().unwrap(), names);
}

#[test]
fn one_thread_and_default_threads_write_the_same_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_case("c_qwen2_rank_pattern", "base", tmp.path());
    let a = tmp.path().join("a.gguf");
    let b = tmp.path().join("b.gguf");
    let one = ConvertOptions {
        threads: Some(1),
        target: ExportTarget::Convert(FileType::Q8_0),
        ..ConvertOptions::default()
    };
    let many = ConvertOptions {
        target: ExportTarget::Convert(FileType::Q8_0),
        ..ConvertOptions::default()
    };
    let ra = convert(&dir, &a, &one, &NoProgress).unwrap();
    let rb = convert(&dir, &b, &many, &NoProgress).unwrap();
    assert_eq!(rb.sha256, None);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // SHA-256 only on request, and then the file's own
    assert_eq!(ra.sha256, None);
    let c = tmp.path().join("c.gguf");
    let hashed = ConvertOptions {
        sha256: true,
        ..many
    };
    let rc = convert(&dir, &c, &hashed, &NoProgress).unwrap();
    let bytes = std::fs::read(&c).unwrap();
    assert_eq!(bytes, std::fs::read(&b).unwrap());
    use sha2::Digest;
    assert_eq!(rc.sha256, Some(hex::encode(sha2::Sha256::digest(&bytes))));
}

#[test]
fn general_metadata_from_the_caller() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_case("a_llama_qv", "base", tmp.path());
    let out = tmp.path().join("out.gguf");
    let options = ConvertOptions {
        general: GeneralMetadata {
            name: Some("My Model".into()),
            finetune: Some("support-bot".into()),
            license: Some("apache-2.0".into()),
            base_models: vec![loraforge_export::BaseModel {
                name: Some("TinyLlama".into()),
                ..Default::default()
            }],
            ..Default::default()
        },
        ..ConvertOptions::default()
    };
    convert(&dir, &out, &options, &NoProgress).unwrap();
    let f = GgufFile::open(&out).unwrap();
    let md = f.metadata();
    assert_eq!(
        md.get("general.name").and_then(|v| v.as_str()),
        Some("My Model")
    );
    assert_eq!(
        md.get("general.finetune").and_then(|v| v.as_str()),
        Some("support-bot")
    );
    assert_eq!(
        md.get("general.license").and_then(|v| v.as_str()),
        Some("apache-2.0")
    );
    assert_eq!(
        md.get("general.base_model.count"),
        Some(&MetadataValue::U32(1))
    );
    assert_eq!(
        md.get("general.base_model.0.name").and_then(|v| v.as_str()),
        Some("TinyLlama")
    );
}

/// `rope_type = "llama3"` adds the `rope_freqs.weight` tensor first (LlamaModel
/// generate_extra_tensors); expected factors computed from the same formula in f64.
#[test]
fn llama3_rope_scaling_writes_rope_freqs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_case("b_llama_alllinear_rslora", "base", tmp.path());
    let cfg = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["rope_parameters"] = serde_json::json!({
        "rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192
    });
    std::fs::write(&cfg, serde_json::to_string(&v).unwrap()).unwrap();
    let out = tmp.path().join("out.gguf");
    convert(&dir, &out, &ConvertOptions::default(), &NoProgress).unwrap();
    let f = GgufFile::open(&out).unwrap();
    let t = &f.tensors()[0];
    assert_eq!(t.info.name, "rope_freqs.weight");
    assert_eq!(t.info.dims, vec![8]);
    let got: Vec<f32> = f
        .tensor_data(0)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let expected = [1.0, 1.0, 1.0, 1.0, 2.694_529_687_894_733_3, 8.0, 8.0, 8.0];
    for (g, e) in got.iter().zip(expected) {
        assert!((f64::from(*g) - e).abs() < 1e-5 * e, "{got:?}");
    }
    assert_eq!(
        f.metadata().get("llama.rope.freq_base"),
        Some(&MetadataValue::F32(500000.0))
    );
    assert!(f.metadata().get("llama.rope.scaling.type").is_none());
}

#[test]
fn outtype_names_parse() {
    for (s, t) in [
        ("f32", ExportTarget::Convert(FileType::F32)),
        ("F16", ExportTarget::Convert(FileType::F16)),
        ("bf16", ExportTarget::Convert(FileType::BF16)),
        ("q8_0", ExportTarget::Convert(FileType::Q8_0)),
        ("auto", ExportTarget::Auto),
        ("q4_K_M", ExportTarget::Quantize(FileType::Q4KM)),
        ("Q4_K_S", ExportTarget::Quantize(FileType::Q4KS)),
    ] {
        assert_eq!(ExportTarget::for_outtype(s), Some(t));
    }
    assert_eq!(ExportTarget::for_outtype("q3_k"), None);
}
