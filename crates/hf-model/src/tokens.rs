//! What a model folder's tokenizer files say about generation: its end-of-sequence tokens.

use std::path::Path;

/// The end-of-sequence token texts of a model folder: `tokenizer_config.json`'s `eos_token`, then
/// the `added_tokens` of `tokenizer.json` whose ids `generation_config.json` lists as
/// `eos_token_id` (Llama 3's `<|eot_id|>` …). Deployment uses them as stop sequences when the
/// template lacks them. Missing or unreadable files contribute nothing.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::write(dir.path().join("tokenizer_config.json"), r#"{"eos_token": "</s>"}"#).unwrap();
/// assert_eq!(loraforge_hf_model::stop_tokens(dir.path()), ["</s>"]);
/// ```
pub fn stop_tokens(model_dir: &Path) -> Vec<String> {
    let read = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(model_dir.join(name)).ok()?).ok()
    };
    let mut stops = Vec::new();
    let mut push = |text: &str| {
        if !text.is_empty() && !stops.iter().any(|s| s == text) {
            stops.push(text.to_string());
        }
    };
    if let Some(config) = read("tokenizer_config.json") {
        match config.get("eos_token") {
            Some(serde_json::Value::String(text)) => push(text),
            Some(object) => {
                if let Some(text) = object.get("content").and_then(|c| c.as_str()) {
                    push(text)
                }
            }
            None => {}
        }
    }
    // generation_config's eos ids may list more end tokens (Llama 3's <|eot_id|> …).
    let ids: Vec<u64> = read("generation_config.json")
        .and_then(|g| g.get("eos_token_id").cloned())
        .map(|v| match v {
            serde_json::Value::Array(items) => items.iter().filter_map(|i| i.as_u64()).collect(),
            other => other.as_u64().into_iter().collect(),
        })
        .unwrap_or_default();
    if !ids.is_empty() {
        if let Some(tokenizer) = read("tokenizer.json") {
            for added in tokenizer
                .get("added_tokens")
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
            {
                let id = added.get("id").and_then(|i| i.as_u64());
                let content = added.get("content").and_then(|c| c.as_str());
                if let (Some(id), Some(content)) = (id, content) {
                    if ids.contains(&id) {
                        push(content);
                    }
                }
            }
        }
    }
    stops
}
