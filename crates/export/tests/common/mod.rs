//! Fixture helpers shared by the converter's test binaries (each uses only some of them).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// The PEFT cases (`<case>/base`, `<case>/expected`).
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/peft");

/// Copies every file of `FIXTURES/<case>/<sub>` into `tmp/model` and returns that folder.
pub fn copy_case(case: &str, sub: &str, tmp: &Path) -> PathBuf {
    let src = Path::new(FIXTURES).join(case).join(sub);
    let dir = tmp.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    dir
}

/// Builds the folder the reference converter saw: the merged model of `expected/` plus the
/// tokenizer files of `base/`, in a directory named after the case (the reference derives
/// `general.name` from the folder name).
pub fn model_folder(case: &str, tmp: &Path) -> PathBuf {
    let src = Path::new(FIXTURES).join(case);
    let dir = tmp.join(case);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(src.join("expected").join(f), dir.join(f)).unwrap();
    }
    for f in [
        "tokenizer.json",
        "tokenizer.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
    ] {
        let p = src.join("base").join(f);
        if p.is_file() {
            std::fs::copy(p, dir.join(f)).unwrap();
        }
    }
    dir
}
