//! What a model folder's tokenizer files say about generation: its end-of-sequence tokens.

use std::path::Path;

/// The end-of-sequence token texts of a model folder: `tokenizer_config.json`'s `eos_token`, then
/// the `added_tokens` of `tokenizer.json` whose ids `generation_config.json` lists as
/// `eos_token_id` (Llama 3 lists `<|end_of_text|>` and `<|eot_id|>`), and the end-of-turn tokens
/// the chat template writes after each message (`<|im_end|>`, `<end_of_turn>`, `<|end|>`,
/// `<|eot_id|>`). Deployment uses them as stop sequences when the template lacks them. Missing
/// or unreadable files contribute nothing.
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
    let template = read("tokenizer_config.json")
        .and_then(|c| c.get("chat_template").cloned())
        .and_then(|t| match t {
            serde_json::Value::String(text) => Some(text),
            // A list of named templates: the default one.
            serde_json::Value::Array(items) => items
                .iter()
                .find(|i| i.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|i| i.get("template")?.as_str().map(str::to_owned)),
            _ => None,
        })
        .unwrap_or_default();
    let added: Vec<(u64, String)> = read("tokenizer.json")
        .and_then(|t| t.get("added_tokens").and_then(|a| a.as_array()).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|a| {
            Some((
                a.get("id")?.as_u64()?,
                a.get("content")?.as_str()?.to_owned(),
            ))
        })
        .collect();
    for (id, content) in &added {
        if ids.contains(id) {
            push(content);
        }
    }
    // The end-of-turn tokens the chat template writes after each message: added tokens that
    // occur in the template and are named as ends (`end`/`eot`, not a header or a start).
    for (_, content) in &added {
        let lower = content.to_ascii_lowercase();
        let names_an_end = (lower.contains("end") || lower.contains("eot"))
            && !lower.contains("header")
            && !lower.contains("start")
            && !lower.contains("begin");
        if names_an_end && template.contains(content.as_str()) {
            push(content);
        }
    }
    stops
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fixture(dir: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures")
            .join(dir)
    }

    #[test]
    fn stops_cover_eos_ids_and_the_templates_end_of_turn() {
        // Llama 3: two generation_config eos ids, no chat template in the folder.
        assert_eq!(
            stop_tokens(&fixture("peft/b_llama_alllinear_rslora/base")),
            ["<|eot_id|>", "<|end_of_text|>"]
        );
        // ChatML (Qwen2): <|im_end|> is both eos and the end of every turn.
        assert_eq!(
            stop_tokens(&fixture("peft/c_qwen2_rank_pattern/base")),
            ["<|im_end|>"]
        );
        // Gemma: eos is <eos>, but turns end with <end_of_turn>, which only the template names.
        assert_eq!(
            stop_tokens(&fixture("convert/gemma")),
            ["<eos>", "<end_of_turn>"]
        );
        // Phi-3: eos <|endoftext|>, turns end with <|end|>.
        assert_eq!(
            stop_tokens(&fixture("convert/phi3")),
            ["<|endoftext|>", "<|end|>"]
        );
    }
}
