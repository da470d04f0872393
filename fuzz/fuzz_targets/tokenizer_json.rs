//! Fuzz the tokenizer files subset `hf-model` reads (`stop_tokens`: `tokenizer.json`'s
//! `added_tokens`, `tokenizer_config.json`'s `eos_token` and `chat_template`,
//! `generation_config.json`'s `eos_token_id`). The input is split on `0xFF` bytes (never valid
//! in JSON text) into those three files. Never a panic; the stops are non-empty and distinct.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;

const FILES: [&str; 3] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
];

fn scratch() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary folder"))
        .path()
        .to_path_buf()
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let mut parts = data.splitn(FILES.len(), |&b| b == 0xFF);
    for name in FILES {
        let path = dir.join(name);
        match parts.next() {
            Some(bytes) => std::fs::write(&path, bytes).expect("scratch write"),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let stops = loraforge_hf_model::stop_tokens(&dir);
    for (i, stop) in stops.iter().enumerate() {
        assert!(!stop.is_empty(), "an empty stop sequence");
        assert!(!stops[..i].contains(stop), "a duplicate stop sequence {stop:?}");
    }
});
