//! Fuzz `adapter_config.json`: the merge's PEFT config resolution (patterns, targets, scaling,
//! refusals) and the model card's reader of the same file. Never a panic.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use loraforge_adapter_merge::AdapterConfig;
use loraforge_model_card::AdapterInfo;

const MODULES: &[&str] = &[
    "model.layers.0.self_attn.q_proj",
    "model.layers.12.mlp.down_proj",
    "transformer.h.3.attn.c_attn",
    "lm_head",
    "",
];

fn scratch() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary folder"))
        .path()
        .to_path_buf()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(mut config) = AdapterConfig::from_json(Path::new("adapter_config.json"), value) {
            let _ = config.check_mergeable();
            for model_type in [Some("llama"), Some("gpt2"), None] {
                let _ = config.clone().resolve_default_targets(model_type);
            }
            let _ = config.resolve_default_targets(Some("qwen2"));
            for module in MODULES {
                let _ = config.targets(module, "lm_head");
                if let Ok(r) = config.rank_for(module) {
                    let _ = config.scaling_for(module, r);
                }
                let _ = config.alpha_for(module);
            }
        }
    }
    let dir = scratch();
    std::fs::write(dir.join("adapter_config.json"), data).expect("scratch write");
    let _ = AdapterInfo::read(&dir);
});
