//! Fuzz the decoding of Ollama's responses: NDJSON progress lines (`/api/create`, `/api/pull`)
//! and the JSON bodies of `/api/tags`, `/api/show`, `/api/version`, `/api/ps`, generate and
//! chat. Each line is decoded as the client decodes it; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loraforge_ollama_client::{
    ChatResponse, GenerateResponse, ListResponse, ProcessResponse, ProgressResponse,
    ShowResponse, VersionResponse,
};

fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
            continue;
        };
        let _ = serde_json::from_value::<ProgressResponse>(value.clone());
        let _ = serde_json::from_value::<ListResponse>(value.clone());
        let _ = serde_json::from_value::<ShowResponse>(value.clone());
        let _ = serde_json::from_value::<VersionResponse>(value.clone());
        let _ = serde_json::from_value::<ProcessResponse>(value.clone());
        let _ = serde_json::from_value::<GenerateResponse>(value.clone());
        let _ = serde_json::from_value::<ChatResponse>(value);
    }
    let _ = serde_json::from_slice::<ShowResponse>(data);
});
