//! Fuzz the `config.json` subset the model card reads (architecture, sizes, `text_config`
//! fallbacks). Never a panic.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use loraforge_model_card::BaseModelInfo;

fn scratch() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary folder"))
        .path()
        .to_path_buf()
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    std::fs::write(dir.join("config.json"), data).expect("scratch write");
    let _ = BaseModelInfo::read(&dir);
});
