//! The merge against PEFT 0.21.2's own output (tests/fixtures/peft): every fixture case
//! bit-identical, plus output options (f32, shards, tokenizer source, checksums). Bad input and
//! the zero-adapter identity are in `bad_input.rs`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use loraforge_adapter_merge::{merge, MergeOptions};
use loraforge_hf_model::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16, Dtype, HfModel};
use loraforge_progress::NoProgress;

mod common;
use common::fixtures;

fn adapter_dir(case: &str) -> PathBuf {
    let c = fixtures().join(case);
    if c.join("adapter").is_dir() {
        c.join("adapter")
    } else {
        c.join("output")
    }
}

/// Spacing of `dtype` values at magnitude `x`.
fn ulp(dtype: Dtype, x: f32) -> f32 {
    let x = x.abs();
    match dtype {
        Dtype::F32 => f32::from_bits(x.to_bits() + 1) - x,
        Dtype::BF16 => {
            let b = f32_to_bf16(x);
            bf16_to_f32(b + 1) - bf16_to_f32(b)
        }
        Dtype::F16 => {
            let b = f32_to_f16(x).min(0x7BFF);
            f16_to_f32(b + 1) - f16_to_f32(b)
        }
    }
}

struct Comparison {
    elements: usize,
    identical: usize,
    worst_ulps: f32,
}

/// Compares our merged folder with PEFT's: names, shapes, dtypes, and every element within
/// 1 ulp of PEFT's value (or of max(|W|, |PEFT|) where W + ΔW cancels).
fn compare(case: &str, ours: &Path) -> Comparison {
    let dir = fixtures().join(case);
    let expected = HfModel::open(&dir.join("expected")).unwrap();
    let base = HfModel::open(&dir.join("base")).unwrap();
    let got = HfModel::open(ours).unwrap();
    let mut en: Vec<&str> = expected.tensor_names();
    let mut gn: Vec<&str> = got.tensor_names();
    en.sort();
    gn.sort();
    assert_eq!(en, gn, "{case}: tensor names");
    let mut cmp = Comparison {
        elements: 0,
        identical: 0,
        worst_ulps: 0.0,
    };
    for name in en {
        let e = expected.tensor(name).unwrap();
        let g = got.tensor(name).unwrap();
        assert_eq!(e.shape, g.shape, "{case}: {name} shape");
        assert_eq!(e.dtype, g.dtype, "{case}: {name} dtype");
        let size = e.dtype.size();
        let ev = e.to_f32_vec();
        let gv = g.to_f32_vec();
        let wv = base
            .tensor(name)
            .map(|b| b.to_f32_vec())
            .unwrap_or_else(|_| ev.clone());
        for i in 0..ev.len() {
            cmp.elements += 1;
            if e.data[i * size..(i + 1) * size] == g.data[i * size..(i + 1) * size] {
                cmp.identical += 1;
                continue;
            }
            let diff = (ev[i] - gv[i]).abs();
            let tol = ulp(e.dtype, ev[i]);
            let tol_cancel = ulp(
                e.dtype,
                ev[i].abs().max(wv.get(i).copied().unwrap_or(0.0).abs()),
            );
            assert!(
                diff <= tol || diff <= tol_cancel,
                "{case}: {name}[{i}]: ours {} vs PEFT {} (base {:?}), diff {diff} > 1 ulp {tol}",
                gv[i],
                ev[i],
                wv.get(i)
            );
            cmp.worst_ulps = cmp.worst_ulps.max(diff / tol);
        }
    }
    cmp
}

fn run_case(case: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let dir = fixtures().join(case);
    let opts = MergeOptions {
        sha256: true,
        ..MergeOptions::new(dir.join("base"), adapter_dir(case), &out)
    };
    let report = merge(&opts, &NoProgress).unwrap();
    let cmp = compare(case, &out);
    println!(
        "{case}: {} elements, {:.4}% bit-identical to PEFT, worst {:.2} ulp, {} tensors changed",
        cmp.elements,
        100.0 * cmp.identical as f64 / cmp.elements as f64,
        cmp.worst_ulps,
        report.tensors_changed
    );
    assert_eq!(
        cmp.identical, cmp.elements,
        "{case}: not bit-identical to PEFT (worst {:.2} ulp)",
        cmp.worst_ulps
    );
    // the tensors PEFT's merge changed are the ones ours changed
    let case_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
    let changed = case_json["tensors_changed_by_merge"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(report.tensors_changed, changed, "{case}: tensors changed");
    // config.json and generation_config.json as PEFT/transformers saved them
    for f in ["config.json", "generation_config.json"] {
        let ours: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(f)).unwrap()).unwrap();
        let theirs: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expected").join(f)).unwrap()).unwrap();
        assert_eq!(ours, theirs, "{case}: {f}");
    }
    // tokenizer copied from the base (the adapters have none)
    assert!(out.join("tokenizer_config.json").is_file());
    assert_eq!(
        std::fs::read(out.join("tokenizer.json")).unwrap(),
        std::fs::read(dir.join("base/tokenizer.json")).unwrap()
    );
    // report lists every file with its real size and sha256
    for (path, size, sha) in &report.output_files {
        let bytes = std::fs::read(out.join(path)).unwrap();
        assert_eq!(bytes.len() as u64, *size, "{case}: {}", path.display());
        assert_eq!(
            sha.as_deref(),
            Some(sha256_hex(&bytes).as_str()),
            "{case}: {}",
            path.display()
        );
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn checksums_on_and_off_give_the_same_files() {
    let case = "b_llama_alllinear_rslora";
    let dir = fixtures().join(case);
    let tmp = tempfile::tempdir().unwrap();
    let with = tmp.path().join("with");
    let without = tmp.path().join("without");
    let opts = MergeOptions {
        sha256: true,
        ..MergeOptions::new(dir.join("base"), adapter_dir(case), &with)
    };
    let hashed = merge(&opts, &NoProgress).unwrap();
    let opts = MergeOptions::new(dir.join("base"), adapter_dir(case), &without);
    let plain = merge(&opts, &NoProgress).unwrap();
    assert!(plain.output_files.iter().all(|(_, _, sha)| sha.is_none()));
    assert_eq!(hashed.output_files.len(), plain.output_files.len());
    for (path, _, sha) in &hashed.output_files {
        let bytes = std::fs::read(without.join(path)).unwrap();
        assert_eq!(std::fs::read(with.join(path)).unwrap(), bytes);
        assert_eq!(sha.as_deref(), Some(sha256_hex(&bytes).as_str()));
    }
}

#[test]
fn a_llama_qv() {
    run_case("a_llama_qv");
}
#[test]
fn b_llama_alllinear_rslora() {
    run_case("b_llama_alllinear_rslora");
}
#[test]
fn c_qwen2_rank_pattern() {
    run_case("c_qwen2_rank_pattern");
}
#[test]
fn d_llama_modules_to_save() {
    run_case("d_llama_modules_to_save");
}
#[test]
fn e_llama_dora() {
    run_case("e_llama_dora");
}
#[test]
fn f_gpt2_conv1d() {
    run_case("f_gpt2_conv1d");
}
#[test]
fn g_llama_sharded() {
    run_case("g_llama_sharded");
}
#[test]
fn h_llama_layers_subset() {
    run_case("h_llama_layers_subset");
}
#[test]
fn i_trainer_checkpoints() {
    run_case("i_trainer_checkpoints");
}

#[test]
fn f32_output_rounds_to_peft_bf16_exactly_and_updates_config() {
    // W + ΔW computed in f32 and kept in f32: rounding it to bf16 must give PEFT's bf16 output.
    let case = "a_llama_qv";
    let dir = fixtures().join(case);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let mut opts = MergeOptions::new(dir.join("base"), adapter_dir(case), &out);
    opts.dtype = loraforge_adapter_merge::OutputDtype::F32;
    let report = merge(&opts, &NoProgress).unwrap();
    assert_eq!(report.dtype, Dtype::F32);
    let got = HfModel::open(&out).unwrap();
    assert_eq!(got.config_dtype(), Some(Dtype::F32));
    let expected = HfModel::open(&dir.join("expected")).unwrap();
    for name in expected.tensor_names() {
        let g = got.tensor(name).unwrap();
        assert_eq!(g.dtype, Dtype::F32);
        let e = expected.tensor(name).unwrap();
        let rounded: Vec<u8> = g
            .to_f32_vec()
            .iter()
            .flat_map(|v| f32_to_bf16(*v).to_le_bytes())
            .collect();
        assert_eq!(rounded, e.data, "{name}");
    }
}

#[test]
fn sharded_output_and_tokenizer_from_the_adapter_folder() {
    let case = "g_llama_sharded";
    let dir = fixtures().join(case);
    let tmp = tempfile::tempdir().unwrap();
    // an adapter folder that carries its own tokenizer (as trainers save it)
    let adapter = tmp.path().join("adapter");
    std::fs::create_dir_all(&adapter).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(adapter_dir(case).join(f), adapter.join(f)).unwrap();
    }
    let tokenizer_src = fixtures().join("b_llama_alllinear_rslora/base");
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        std::fs::copy(tokenizer_src.join(f), adapter.join(f)).unwrap();
    }
    let out = tmp.path().join("merged");
    let mut opts = MergeOptions::new(dir.join("base"), &adapter, &out);
    opts.max_shard_size = loraforge_adapter_merge::parse_size("100KB").unwrap();
    let report = merge(&opts, &NoProgress).unwrap();
    assert!(out.join("model.safetensors.index.json").is_file());
    assert!(report
        .output_files
        .iter()
        .any(|(p, _, _)| p.to_string_lossy() == "model-00003-of-00003.safetensors"));
    assert_eq!(report.tokenizer_source.as_deref(), Some(adapter.as_path()));
    assert_eq!(
        std::fs::read(out.join("chat_template.jinja")).unwrap(),
        std::fs::read(tokenizer_src.join("chat_template.jinja")).unwrap()
    );
    // tokenizer.model of the base is not mixed in
    assert!(!out.join("tokenizer.model").exists());
    let cmp = compare(case, &out);
    assert_eq!(cmp.identical, cmp.elements);
}
