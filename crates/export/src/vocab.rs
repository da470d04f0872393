//! Tokenizer metadata: what `convert_hf_to_gguf.py` (`_set_vocab_sentencepiece`,
//! `_set_vocab_gpt2`) and gguf-py's `SpecialVocab` write, read from the model folder's
//! `tokenizer.model`, `tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja`/`.json`,
//! `added_tokens.json` and `config.json`.

use std::path::{Path, PathBuf};

use loraforge_gguf::Metadata;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use crate::error::ConvertError;
use crate::sentencepiece::{self, PieceType};

/// gguf-py `TokenType`.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// llama.cpp's pre-tokenizer check string (`get_vocab_base_pre`'s `chktxt`).
const CHKTXT: &str = include_str!("pretok_chktxt.txt");
/// `chkhsh -> tokenizer.ggml.pre` pairs from llama.cpp's converter (facts, one per line).
const HASHES: &str = include_str!("pretok_hashes.txt");

/// Which tokenizer family [`build`] should read, per architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VocabKind {
    /// Llama/Mistral: SentencePiece `tokenizer.model` if present, else byte-level BPE.
    LlamaLike,
    /// Qwen2: same order (SentencePiece first), in practice BPE.
    Qwen2,
    /// GPT-2: byte-level BPE only.
    Gpt2,
    /// Gemma: SentencePiece, a second special vocabulary (CodeGemma FIM ids, `eot` = 107),
    /// `add_space_prefix = false`.
    Gemma,
    /// Gemma 2: SentencePiece, `add_space_prefix = false`.
    Gemma2,
    /// Phi-3: its own SentencePiece reading (added tokens of `added_tokens.json`,
    /// `tokenizer_config.json` and `tokenizer.json`), or byte-level BPE when
    /// `tokenizer_class` is `GPT2Tokenizer` (Phi-4).
    Phi3,
}

/// How `tokenizer.ggml.pre` was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreTokenizerSource {
    /// SentencePiece vocabularies always use `"default"`.
    SentencePiece,
    /// The check-string hash matched llama.cpp's table of published tokenizers.
    KnownHash,
    /// The hash is unknown; the name was chosen from the tokenizer's own pre-tokenizer regex.
    Regex,
    /// The caller named it.
    Override,
}

/// Result of reading the tokenizer.
pub(crate) struct VocabOut {
    pub metadata: Metadata,
    pub pre: Option<String>,
    pub pre_source: Option<PreTokenizerSource>,
    pub warnings: Vec<String>,
}

/// The GGUF token type of a SentencePiece piece, as the reference maps it (user-defined pieces
/// count as normal here; added tokens are typed separately).
fn token_type(kind: PieceType) -> i32 {
    match kind {
        PieceType::Unknown => UNKNOWN,
        PieceType::Control => CONTROL,
        PieceType::Unused => UNUSED,
        PieceType::Byte => BYTE,
        PieceType::Normal | PieceType::UserDefined => NORMAL,
    }
}

fn read_json(path: &Path) -> Result<Option<Json>, ConvertError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| ConvertError::InvalidJson {
            path: path.to_path_buf(),
            source,
        })
}

fn bad_tok(path: &Path, message: impl Into<String>) -> ConvertError {
    ConvertError::InvalidTokenizer {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads the tokenizer of `dir` and returns its metadata in the reference's key order.
pub(crate) fn build(
    dir: &Path,
    hparams: &Map<String, Json>,
    kind: VocabKind,
    pre_override: Option<&str>,
) -> Result<VocabOut, ConvertError> {
    let mut md = Metadata::new();
    let mut warnings = Vec::new();
    let tok_config = read_json(&dir.join("tokenizer_config.json"))?;
    if kind == VocabKind::LlamaLike {
        if let Some(b) = tok_config
            .as_ref()
            .and_then(|c| c.get("add_prefix_space"))
            .and_then(|v| v.as_bool())
        {
            md.set("tokenizer.ggml.add_space_prefix", b);
        }
    }
    let spm_path = dir.join("tokenizer.model");
    let json_path = dir.join("tokenizer.json");
    // Phi3MiniModel.set_vocab: Phi-4 ships a GPT2Tokenizer (byte-level BPE).
    let phi_bpe = kind == VocabKind::Phi3
        && tok_config
            .as_ref()
            .and_then(|c| c.get("tokenizer_class"))
            .and_then(|c| c.as_str())
            == Some("GPT2Tokenizer");
    let spm_only =
        matches!(kind, VocabKind::Gemma | VocabKind::Gemma2 | VocabKind::Phi3) && !phi_bpe;
    if spm_only && !spm_path.is_file() {
        return Err(ConvertError::MissingTokenizer {
            dir: dir.to_path_buf(),
        });
    }
    if kind != VocabKind::Gpt2 && !phi_bpe && spm_path.is_file() {
        let (tokens, scores, types) = if kind == VocabKind::Phi3 {
            phi3_sentencepiece_vocab(dir, hparams, &spm_path, &mut warnings)?
        } else {
            sentencepiece_vocab(dir, hparams, &spm_path, &mut warnings)?
        };
        let n_vocab = tokens.len();
        md.set("tokenizer.ggml.model", "llama");
        md.set("tokenizer.ggml.pre", "default");
        md.set("tokenizer.ggml.tokens", tokens);
        md.set("tokenizer.ggml.scores", scores);
        md.set("tokenizer.ggml.token_type", types);
        let sv = SpecialVocab::load(dir, false, Some(n_vocab), tok_config.clone())?;
        sv.add_to(&mut md);
        if kind == VocabKind::Gemma {
            // GemmaModel.set_vocab: CodeGemma's FIM tokens and <end_of_turn> at fixed ids.
            // gguf-py has no writer for prefix/suffix/middle/fsep: only `eot` reaches the file.
            let mut sv = SpecialVocab::load_types(
                dir,
                false,
                None,
                tok_config.clone(),
                &["prefix", "suffix", "middle", "fsep", "eot"],
            )?;
            for (typ, id) in [
                ("prefix", 67),
                ("suffix", 69),
                ("middle", 68),
                ("fsep", 70),
                ("eot", 107),
            ] {
                sv.set_id(typ, Some(&Json::from(id)))?;
            }
            sv.chat_template = None;
            sv.add_to(&mut md);
        }
        if matches!(kind, VocabKind::Gemma | VocabKind::Gemma2) {
            md.set("tokenizer.ggml.add_space_prefix", false);
        }
        return Ok(VocabOut {
            metadata: md,
            pre: Some("default".into()),
            pre_source: Some(PreTokenizerSource::SentencePiece),
            warnings,
        });
    }
    if !json_path.is_file() {
        return Err(ConvertError::MissingTokenizer {
            dir: dir.to_path_buf(),
        });
    }
    let tj = read_json(&json_path)?.ok_or_else(|| ConvertError::MissingTokenizer {
        dir: dir.to_path_buf(),
    })?;
    let model = tj
        .get("model")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad_tok(&json_path, "no \"model\" object"))?;
    let model_type = model.get("type").and_then(|t| t.as_str()).unwrap_or("");
    if kind == VocabKind::LlamaLike {
        let is_llama3 = model_type == "BPE"
            && model
                .get("ignore_merges")
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
            && !model
                .get("byte_fallback")
                .and_then(|v| v.as_bool())
                .unwrap_or(true);
        let spm_like = model_type == "BPE"
            && model
                .get("byte_fallback")
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
            && tj.pointer("/decoder/type").and_then(|t| t.as_str()) == Some("Sequence");
        if !is_llama3 && spm_like {
            return Err(ConvertError::UnsupportedFeature(
                "a SentencePiece-style tokenizer.json (BPE with byte_fallback) without tokenizer.model; \
                 add the original tokenizer.model to the folder"
                    .into(),
            ));
        }
    }
    if model_type != "BPE" {
        return Err(bad_tok(
            &json_path,
            format!("tokenizer model type {model_type:?} is not supported (byte-level BPE or SentencePiece are)"),
        ));
    }
    let (tokens, types, pre, pre_source) = bpe_vocab(
        dir,
        hparams,
        &json_path,
        &tj,
        tok_config.as_ref(),
        pre_override,
        &mut warnings,
    )?;
    md.set("tokenizer.ggml.model", "gpt2");
    md.set("tokenizer.ggml.pre", pre.clone());
    md.set("tokenizer.ggml.tokens", tokens);
    md.set("tokenizer.ggml.token_type", types);
    let sv = SpecialVocab::load(dir, true, None, tok_config)?;
    if sv.merges.is_empty() {
        warnings.push("tokenizer.json has no merges; the GGUF tokenizer may not work".into());
    }
    sv.add_to(&mut md);
    Ok(VocabOut {
        metadata: md,
        pre: Some(pre),
        pre_source: Some(pre_source),
        warnings,
    })
}

fn config_vocab_size(hparams: &Map<String, Json>) -> Option<usize> {
    hparams
        .get("vocab_size")
        .and_then(|v| v.as_u64())
        .and_then(|v| usize::try_from(v).ok())
}

/// `does_token_look_special` of the reference.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// Tokens, scores and token types.
type SpmVocab = (Vec<String>, Vec<f32>, Vec<i32>);

/// `_create_vocab_sentencepiece`.
fn sentencepiece_vocab(
    dir: &Path,
    hparams: &Map<String, Json>,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<SpmVocab, ConvertError> {
    let buf = std::fs::read(path).map_err(|source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let pieces = sentencepiece::parse_pieces(&buf).map_err(|m| bad_tok(path, m))?;
    let vocab_size = hparams
        .get("vocab_size_per_layer_input")
        .or_else(|| hparams.get("vocab_size"))
        .and_then(|v| v.as_u64())
        .and_then(|v| usize::try_from(v).ok())
        .filter(|&v| v > 0)
        .unwrap_or(pieces.len());
    let mut tokens: Vec<String> = (0..vocab_size).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![-10000.0f32; vocab_size];
    let mut types = vec![UNUSED; vocab_size];
    for (id, p) in pieces.iter().enumerate() {
        if id >= vocab_size {
            return Err(ConvertError::TokenizerLargerThanModel {
                max_id: pieces.len() - 1,
                token: pieces.last().map(|p| p.piece.clone()).unwrap_or_default(),
                vocab_size,
            });
        }
        tokens[id] = p.piece.clone();
        scores[id] = p.score;
        types[id] = token_type(p.kind);
    }
    let added_path = dir.join("added_tokens.json");
    if let Some(added) = read_json(&added_path)? {
        let obj = added
            .as_object()
            .ok_or_else(|| bad_tok(&added_path, "not a JSON object"))?;
        for (text, id) in obj {
            let id = id
                .as_u64()
                .ok_or_else(|| bad_tok(&added_path, format!("id of {text:?} is not an integer")))?
                as usize;
            if id >= vocab_size {
                return Err(ConvertError::TokenizerLargerThanModel {
                    max_id: id,
                    token: text.clone(),
                    vocab_size,
                });
            }
            tokens[id] = text.clone();
            scores[id] = -1000.0;
            types[id] = USER_DEFINED;
        }
    }
    let tc_path = dir.join("tokenizer_config.json");
    if let Some(tc) = read_json(&tc_path)? {
        if let Some(dec) = tc.get("added_tokens_decoder").and_then(|d| d.as_object()) {
            for (id, data) in dec {
                let id: usize = id.parse().map_err(|_| {
                    bad_tok(&tc_path, format!("added token id {id:?} is not a number"))
                })?;
                let content = data
                    .get("content")
                    .and_then(|c| c.as_str())
                    .ok_or_else(|| bad_tok(&tc_path, format!("added token {id} has no content")))?;
                if id >= vocab_size {
                    return Err(ConvertError::TokenizerLargerThanModel {
                        max_id: id,
                        token: content.to_string(),
                        vocab_size,
                    });
                }
                if types[id] != UNUSED && tokens[id] != content {
                    warnings.push(format!(
                        "replacing token {id}: {:?} -> {content:?} (tokenizer_config.json added_tokens_decoder)",
                        tokens[id]
                    ));
                }
                let special = data
                    .get("special")
                    .and_then(|s| s.as_bool())
                    .unwrap_or(false);
                let text = if special || looks_special(content) {
                    types[id] = CONTROL;
                    content.to_string()
                } else {
                    types[id] = USER_DEFINED;
                    content.replace('\u{2581}', " ")
                };
                scores[id] = -1000.0;
                tokens[id] = text;
            }
        }
    }
    Ok((tokens, scores, types))
}

/// `Phi3MiniModel.set_vocab`'s own SentencePiece reading: `vocab_size` from config.json, then
/// the added tokens of `added_tokens.json` (USER_DEFINED), `tokenizer_config.json`'s
/// `added_tokens_decoder` and `tokenizer.json`'s `added_tokens` (USER_DEFINED, or CONTROL when
/// `special`; the texts taken verbatim), every added token scored -1000.
fn phi3_sentencepiece_vocab(
    dir: &Path,
    hparams: &Map<String, Json>,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<SpmVocab, ConvertError> {
    let buf = std::fs::read(path).map_err(|source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let pieces = sentencepiece::parse_pieces(&buf).map_err(|m| bad_tok(path, m))?;
    let vocab_size = config_vocab_size(hparams).unwrap_or(pieces.len());
    if pieces.len() > vocab_size {
        return Err(ConvertError::TokenizerLargerThanModel {
            max_id: pieces.len() - 1,
            token: pieces.last().map(|p| p.piece.clone()).unwrap_or_default(),
            vocab_size,
        });
    }
    let mut tokens: Vec<String> = (0..vocab_size).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![-10000.0f32; vocab_size];
    let mut types = vec![UNUSED; vocab_size];
    for (id, p) in pieces.iter().enumerate() {
        tokens[id] = p.piece.clone();
        scores[id] = p.score;
        types[id] = token_type(p.kind);
    }
    let added_path = dir.join("added_tokens.json");
    if let Some(added) = read_json(&added_path)? {
        let obj = added
            .as_object()
            .ok_or_else(|| bad_tok(&added_path, "not a JSON object"))?;
        for (text, id) in obj {
            let id = id
                .as_u64()
                .ok_or_else(|| bad_tok(&added_path, format!("id of {text:?} is not an integer")))?;
            // The reference skips ids past the vocabulary here (and only here).
            let Some(id) = usize::try_from(id).ok().filter(|&i| i < vocab_size) else {
                continue;
            };
            tokens[id] = text.clone();
            scores[id] = -1000.0;
            types[id] = USER_DEFINED;
        }
    }
    let mut set_added = |src: &Path,
                         id: usize,
                         content: &str,
                         special: bool,
                         warnings: &mut Vec<String>|
     -> Result<(), ConvertError> {
        if id >= vocab_size {
            return Err(ConvertError::TokenizerLargerThanModel {
                max_id: id,
                token: content.to_string(),
                vocab_size,
            });
        }
        if types[id] != UNUSED && tokens[id] != content {
            warnings.push(format!(
                "replacing token {id}: {:?} -> {content:?} ({})",
                tokens[id],
                src.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
        }
        tokens[id] = content.to_string();
        scores[id] = -1000.0;
        types[id] = if special { CONTROL } else { USER_DEFINED };
        Ok(())
    };
    let tc_path = dir.join("tokenizer_config.json");
    if let Some(tc) = read_json(&tc_path)? {
        if let Some(dec) = tc.get("added_tokens_decoder").and_then(|d| d.as_object()) {
            for (id, data) in dec {
                let id: usize = id.parse().map_err(|_| {
                    bad_tok(&tc_path, format!("added token id {id:?} is not a number"))
                })?;
                let content = data
                    .get("content")
                    .and_then(|c| c.as_str())
                    .ok_or_else(|| bad_tok(&tc_path, format!("added token {id} has no content")))?;
                let special = data.get("special").and_then(|s| s.as_bool()) == Some(true);
                set_added(&tc_path, id, content, special, warnings)?;
            }
        }
    }
    let tj_path = dir.join("tokenizer.json");
    if let Some(tj) = read_json(&tj_path)? {
        if let Some(list) = tj.get("added_tokens").and_then(|a| a.as_array()) {
            for t in list {
                let (Some(id), Some(content)) = (
                    t.get("id").and_then(|i| i.as_u64()),
                    t.get("content").and_then(|c| c.as_str()),
                ) else {
                    return Err(bad_tok(
                        &tj_path,
                        "an added_tokens entry lacks id or content",
                    ));
                };
                let id = usize::try_from(id).unwrap_or(usize::MAX);
                let special = t.get("special").and_then(|s| s.as_bool()) == Some(true);
                set_added(&tj_path, id, content, special, warnings)?;
            }
        }
    }
    Ok((tokens, scores, types))
}

/// `get_vocab_base` + `get_vocab_base_pre` for byte-level BPE.
#[allow(clippy::type_complexity)]
fn bpe_vocab(
    dir: &Path,
    hparams: &Map<String, Json>,
    json_path: &Path,
    tj: &Json,
    tok_config: Option<&Json>,
    pre_override: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<(Vec<String>, Vec<i32>, String, PreTokenizerSource), ConvertError> {
    let vocab = tj
        .pointer("/model/vocab")
        .and_then(|v| v.as_object())
        .ok_or_else(|| bad_tok(json_path, "model.vocab is missing"))?;
    // id -> (text, added?, special?)
    let mut by_id: std::collections::BTreeMap<usize, (String, bool, bool)> = Default::default();
    for (text, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| bad_tok(json_path, format!("id of {text:?} is not an integer")))?
            as usize;
        by_id.insert(id, (text.clone(), false, false));
    }
    // Added tokens as transformers sees them: tokenizer.json added_tokens, with the
    // tokenizer_config.json added_tokens_decoder taking precedence.
    let mut added: Vec<(usize, String, bool)> = Vec::new();
    if let Some(list) = tj.get("added_tokens").and_then(|a| a.as_array()) {
        for t in list {
            let (Some(id), Some(content)) = (
                t.get("id").and_then(|i| i.as_u64()),
                t.get("content").and_then(|c| c.as_str()),
            ) else {
                return Err(bad_tok(
                    json_path,
                    "an added_tokens entry lacks id or content",
                ));
            };
            let special = t.get("special").and_then(|s| s.as_bool()).unwrap_or(false);
            added.push((id as usize, content.to_string(), special));
        }
    }
    if let Some(dec) = tok_config
        .and_then(|c| c.get("added_tokens_decoder"))
        .and_then(|d| d.as_object())
    {
        for (id, data) in dec {
            let Ok(id) = id.parse::<usize>() else {
                continue;
            };
            let Some(content) = data.get("content").and_then(|c| c.as_str()) else {
                continue;
            };
            let special = data
                .get("special")
                .and_then(|s| s.as_bool())
                .unwrap_or(false);
            if let Some(e) = added.iter_mut().find(|e| e.0 == id) {
                e.1 = content.to_string();
                e.2 = special;
            } else {
                added.push((id, content.to_string(), special));
            }
        }
    }
    for (id, content, special) in &added {
        by_id.insert(*id, (content.clone(), true, *special));
    }
    let max_id = by_id.keys().next_back().copied().unwrap_or(0);
    let vocab_size = config_vocab_size(hparams).unwrap_or(by_id.len());
    if max_id >= vocab_size {
        let token = by_id.get(&max_id).map(|t| t.0.clone()).unwrap_or_default();
        return Err(ConvertError::TokenizerLargerThanModel {
            max_id,
            token,
            vocab_size,
        });
    }
    let (pre, source) = identify_pre(dir, json_path, tj, pre_override, warnings)?;
    let mut tokens = Vec::with_capacity(vocab_size);
    let mut types = Vec::with_capacity(vocab_size);
    for i in 0..vocab_size {
        match by_id.get(&i) {
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(UNUSED);
            }
            Some((text, is_added, special)) => {
                if *is_added {
                    if *special || looks_special(text) {
                        types.push(CONTROL);
                        tokens.push(text.clone());
                    } else {
                        types.push(USER_DEFINED);
                        tokens.push(text.replace('\u{2581}', " "));
                    }
                } else {
                    types.push(NORMAL);
                    tokens.push(text.clone());
                }
            }
        }
    }
    Ok((tokens, types, pre, source))
}

/// The sha256 of Python's `str(list_of_ids)` for `ids`.
pub(crate) fn chkhsh(ids: &[u32]) -> String {
    let mut s = String::with_capacity(ids.len() * 7 + 2);
    s.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&id.to_string());
    }
    s.push(']');
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// llama.cpp's name for a check hash, if it is a published tokenizer.
pub(crate) fn known_pre(hash: &str) -> Option<&'static str> {
    HASHES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .find(|(h, _)| *h == hash)
        .map(|(_, n)| n.trim())
}

/// The pre-tokenizer regexes llama.cpp implements under these names (llama-vocab.cpp), as they
/// appear in `tokenizer.json` `Split` pre-tokenizers.
const REGEX_NAMES: &[(&str, &str)] = &[
    (
        "llama-bpe",
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
    (
        "qwen2",
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
];

/// Describes the pre-tokenizer config in one line and picks a llama.cpp name from it.
fn pre_from_regex(tj: &Json) -> (Option<&'static str>, String) {
    let Some(pt) = tj.get("pre_tokenizer").filter(|p| !p.is_null()) else {
        return (None, "none".into());
    };
    let list: Vec<&Json> = match pt.get("type").and_then(|t| t.as_str()) {
        Some("Sequence") => pt
            .get("pretokenizers")
            .and_then(|l| l.as_array())
            .map(|l| l.iter().collect())
            .unwrap_or_default(),
        _ => vec![pt],
    };
    let mut regexes = Vec::new();
    let mut bytelevel_regex = false;
    let mut other = Vec::new();
    for p in &list {
        match p.get("type").and_then(|t| t.as_str()) {
            Some("Split") => {
                if let Some(r) = p.pointer("/pattern/Regex").and_then(|r| r.as_str()) {
                    regexes.push(r.to_string());
                } else {
                    other.push("Split(String)".to_string());
                }
            }
            Some("ByteLevel") => {
                if p.get("use_regex").and_then(|u| u.as_bool()).unwrap_or(true) {
                    bytelevel_regex = true;
                }
            }
            Some(t) => other.push(t.to_string()),
            None => other.push("?".into()),
        }
    }
    let mut parts: Vec<String> = regexes
        .iter()
        .map(|r| format!("Split regex `{r}`"))
        .collect();
    if bytelevel_regex {
        parts.push("ByteLevel with the GPT-2 regex".into());
    }
    parts.extend(other.iter().map(|o| format!("{o} pre-tokenizer")));
    let description = if parts.is_empty() {
        "no splitting pre-tokenizer".to_string()
    } else {
        parts.join(", ")
    };
    if !other.is_empty() {
        return (None, description);
    }
    let name = match (regexes.as_slice(), bytelevel_regex) {
        ([], true) => Some("gpt-2"),
        ([r], false) => REGEX_NAMES
            .iter()
            .find(|(_, known)| known == r)
            .map(|(n, _)| *n),
        _ => None,
    };
    (name, description)
}

fn identify_pre(
    _dir: &Path,
    json_path: &Path,
    tj: &Json,
    pre_override: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<(String, PreTokenizerSource), ConvertError> {
    if let Some(name) = pre_override {
        return Ok((name.to_string(), PreTokenizerSource::Override));
    }
    let tok = tokenizers::Tokenizer::from_file(json_path).map_err(|e| {
        bad_tok(
            json_path,
            format!("the tokenizers library cannot load it: {e}"),
        )
    })?;
    let enc = tok
        .encode(CHKTXT, true)
        .map_err(|e| bad_tok(json_path, format!("cannot encode the check string: {e}")))?;
    let hash = chkhsh(enc.get_ids());
    if let Some(name) = known_pre(&hash) {
        return Ok((name.to_string(), PreTokenizerSource::KnownHash));
    }
    let (name, description) = pre_from_regex(tj);
    match name {
        Some(n) => {
            warnings.push(format!(
                "BPE pre-tokenizer not in llama.cpp's table of published tokenizers (chkhsh {hash}); \
                 chose tokenizer.ggml.pre = {n:?} because the tokenizer's pre-tokenizer matches it ({description})"
            ));
            Ok((n.to_string(), PreTokenizerSource::Regex))
        }
        None => Err(ConvertError::UnknownPreTokenizer {
            chkhsh: hash,
            description,
        }),
    }
}

/// Chat template: one string, or named templates.
#[derive(Debug, Clone)]
enum ChatTemplate {
    One(String),
    Named(Vec<(String, String)>),
}

/// gguf-py's `SpecialVocab`.
struct SpecialVocab {
    merges: Vec<String>,
    add_special: Vec<(String, bool)>,
    ids: Vec<(String, u32)>,
    chat_template: Option<ChatTemplate>,
    lowercase: Option<bool>,
    strip_accents: Option<bool>,
    types: Vec<String>,
    n_vocab: Option<usize>,
}

fn set_add(list: &mut Vec<(String, bool)>, typ: &str, v: bool) {
    if let Some(e) = list.iter_mut().find(|e| e.0 == typ) {
        e.1 = v;
    } else {
        list.push((typ.to_string(), v));
    }
}

fn setdefault_add(list: &mut Vec<(String, bool)>, typ: &str, v: bool) {
    if !list.iter().any(|e| e.0 == typ) {
        list.push((typ.to_string(), v));
    }
}

fn get_add(list: &[(String, bool)], typ: &str) -> Option<bool> {
    list.iter().find(|e| e.0 == typ).map(|e| e.1)
}

/// Python truthiness of an optional JSON string-ish value.
fn truthy(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty())
}

fn special_token_id(v: &Json) -> Option<String> {
    v.pointer("/SpecialToken/id")
        .and_then(|s| s.as_str())
        .map(str::to_string)
}

impl SpecialVocab {
    fn load(
        dir: &Path,
        load_merges: bool,
        n_vocab: Option<usize>,
        tok_config: Option<Json>,
    ) -> Result<SpecialVocab, ConvertError> {
        SpecialVocab::load_types(
            dir,
            load_merges,
            n_vocab,
            tok_config,
            &["bos", "eos", "unk", "sep", "pad", "cls", "mask"],
        )
    }

    /// `SpecialVocab(dir, load_merges, special_token_types, n_vocab)`.
    fn load_types(
        dir: &Path,
        load_merges: bool,
        n_vocab: Option<usize>,
        tok_config: Option<Json>,
        types: &[&str],
    ) -> Result<SpecialVocab, ConvertError> {
        let mut sv = SpecialVocab {
            merges: Vec::new(),
            add_special: Vec::new(),
            ids: Vec::new(),
            chat_template: None,
            lowercase: None,
            strip_accents: None,
            types: types.iter().map(|s| s.to_string()).collect(),
            n_vocab,
        };
        sv.load_tokenizer_json(dir, load_merges, tok_config)?;
        sv.load_config_json(dir)?;
        if load_merges && sv.merges.is_empty() {
            sv.load_merges_txt(dir)?;
        }
        Ok(sv)
    }

    fn set_id(&mut self, typ: &str, id: Option<&Json>) -> Result<(), ConvertError> {
        let Some(id) = id else { return Ok(()) };
        // Python isinstance(tid, int): JSON integers only (bool is not written in JSON as int).
        let Some(n) = id.as_i64() else { return Ok(()) };
        if n < 0 {
            return Err(ConvertError::InvalidTokenizer {
                path: PathBuf::from("config.json"),
                message: format!("invalid value for special token type {typ}: {n}"),
            });
        }
        let n = n as u64;
        let in_range = self.n_vocab.is_none_or(|nv| (n as usize) < nv);
        if in_range && !self.ids.iter().any(|(t, _)| t == typ) {
            if let Ok(v) = u32::try_from(n) {
                self.ids.push((typ.to_string(), v));
            }
        }
        Ok(())
    }

    fn parse_normalizer(&mut self, n: &Json) {
        match n.get("type").and_then(|t| t.as_str()) {
            Some("Lowercase") => self.lowercase = Some(true),
            Some("StripAccents") => self.strip_accents = Some(true),
            Some("BertNormalizer") => {
                if let Some(v) = n.get("lowercase").and_then(|v| v.as_bool()) {
                    self.lowercase = Some(v);
                }
                if let Some(v) = n.get("strip_accents").and_then(|v| v.as_bool()) {
                    self.strip_accents = Some(v);
                }
            }
            Some("Sequence") => {
                if let Some(list) = n.get("normalizers").and_then(|l| l.as_array()) {
                    for x in list {
                        self.parse_normalizer(x);
                    }
                }
            }
            _ => {}
        }
    }

    fn load_tokenizer_json(
        &mut self,
        dir: &Path,
        load_merges: bool,
        tok_config: Option<Json>,
    ) -> Result<(), ConvertError> {
        let tj_path = dir.join("tokenizer.json");
        let tokenizer = read_json(&tj_path)?;
        let mut added_tokens: Vec<Json> = Vec::new();
        if let Some(tj) = &tokenizer {
            if load_merges {
                if let Some(merges) = tj.pointer("/model/merges").and_then(|m| m.as_array()) {
                    if let Some(first) = merges.first() {
                        if first.is_string() {
                            self.merges = merges
                                .iter()
                                .filter_map(|m| m.as_str().map(str::to_string))
                                .collect();
                        } else if first
                            .as_array()
                            .is_some_and(|p| p.len() == 2 && p[0].is_string())
                        {
                            let enc = |s: &str| -> String {
                                s.chars()
                                    .map(|c| if c == ' ' { '\u{120}' } else { c })
                                    .collect()
                            };
                            let mut out = Vec::with_capacity(merges.len());
                            for m in merges {
                                let pair = m.as_array().filter(|p| p.len() == 2);
                                let (Some(a), Some(b)) = (
                                    pair.and_then(|p| p[0].as_str()),
                                    pair.and_then(|p| p[1].as_str()),
                                ) else {
                                    return Err(bad_tok(&tj_path, "malformed merge pair"));
                                };
                                out.push(format!("{} {}", enc(a), enc(b)));
                            }
                            self.merges = out;
                        } else {
                            return Err(bad_tok(&tj_path, "unknown tokenizer merges format"));
                        }
                    }
                }
            }
            if let Some(n) = tj.get("normalizer").filter(|n| !n.is_null()) {
                let n = n.clone();
                self.parse_normalizer(&n);
            }
            if let Some(a) = tj.get("added_tokens").and_then(|a| a.as_array()) {
                added_tokens = a.clone();
            }
        }
        // tokenizer_config as a mutable string map for the *_token entries the reference edits.
        let mut tc: Option<Map<String, Json>> = tok_config.and_then(|c| c.as_object().cloned());
        let tc_str = |tc: &Option<Map<String, Json>>, k: &str| -> Option<String> {
            tc.as_ref()
                .and_then(|m| m.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let tc_nonempty =
            |tc: &Option<Map<String, Json>>| tc.as_ref().is_some_and(|m| !m.is_empty());
        if let Some(tj) = &tokenizer {
            let mut special_bos = tc_str(&tc, "bos_token");
            let mut special_cls = tc_str(&tc, "cls_token");
            let mut special_eos = tc_str(&tc, "eos_token");
            let mut special_sep = tc_str(&tc, "sep_token");
            if !truthy(&special_bos) && truthy(&special_cls) && tc_nonempty(&tc) {
                special_bos = special_cls.clone();
                if let (Some(m), Some(v)) = (tc.as_mut(), special_bos.clone()) {
                    m.insert("bos_token".into(), Json::String(v));
                }
            }
            if !truthy(&special_eos) && truthy(&special_sep) && tc_nonempty(&tc) {
                special_eos = special_sep.clone();
                if let (Some(m), Some(v)) = (tc.as_mut(), special_eos.clone()) {
                    m.insert("eos_token".into(), Json::String(v));
                }
            }
            if let Some(pp) = tj.get("post_processor").filter(|p| !p.is_null()) {
                let processors: Vec<Json> = match pp.get("processors").and_then(|p| p.as_array()) {
                    Some(l) => l.clone(),
                    None => vec![pp.clone()],
                };
                for proc in &processors {
                    match proc.get("type").and_then(|t| t.as_str()) {
                        Some("ByteLevel") => {
                            setdefault_add(&mut self.add_special, "bos", false);
                            setdefault_add(&mut self.add_special, "eos", false);
                        }
                        Some("RobertaProcessing") => {
                            set_add(&mut self.add_special, "bos", true);
                            set_add(&mut self.add_special, "eos", true);
                            set_add(&mut self.add_special, "sep", true);
                            if !truthy(&special_cls) && tc_nonempty(&tc) {
                                special_cls = proc
                                    .get("cls")
                                    .and_then(|c| c.get(0))
                                    .and_then(|c| c.as_str())
                                    .map(str::to_string)
                                    .or(special_bos.clone());
                                if let (Some(m), Some(v)) = (tc.as_mut(), special_cls.clone()) {
                                    m.insert("cls_token".into(), Json::String(v));
                                }
                            }
                            if !truthy(&special_sep) && tc_nonempty(&tc) {
                                special_sep = proc
                                    .get("sep")
                                    .and_then(|c| c.get(0))
                                    .and_then(|c| c.as_str())
                                    .map(str::to_string)
                                    .or(special_eos.clone());
                                if let (Some(m), Some(v)) = (tc.as_mut(), special_sep.clone()) {
                                    m.insert("sep_token".into(), Json::String(v));
                                }
                            }
                        }
                        Some("TemplateProcessing") => {
                            let single: Vec<Json> = proc
                                .get("single")
                                .and_then(|s| s.as_array())
                                .cloned()
                                .unwrap_or_default();
                            let pair: Vec<Json> = proc
                                .get("pair")
                                .and_then(|s| s.as_array())
                                .cloned()
                                .unwrap_or_default();
                            let mut special_first: Option<String> = None;
                            let mut special_last: Option<String> = None;
                            if single.len() > 1 {
                                special_first =
                                    special_token_id(&single[0]).filter(|s| !s.is_empty());
                                if let Some(first) = special_first.clone() {
                                    if !tc_nonempty(&tc) {
                                        special_bos = Some(first.clone());
                                    } else if Some(&first) != special_bos.as_ref()
                                        && Some(&first) != special_cls.as_ref()
                                    {
                                        if !truthy(&special_bos) {
                                            special_bos = Some(first.clone());
                                            if let Some(m) = tc.as_mut() {
                                                m.insert(
                                                    "bos_token".into(),
                                                    Json::String(first.clone()),
                                                );
                                            }
                                        }
                                        if !truthy(&special_cls) {
                                            special_cls = Some(first.clone());
                                            if let Some(m) = tc.as_mut() {
                                                m.insert(
                                                    "cls_token".into(),
                                                    Json::String(first.clone()),
                                                );
                                            }
                                        }
                                    }
                                    let is_bos = Some(&first) == special_bos.as_ref()
                                        || Some(&first) == special_cls.as_ref();
                                    set_add(&mut self.add_special, "bos", is_bos);
                                }
                                special_last = single
                                    .last()
                                    .and_then(special_token_id)
                                    .filter(|s| !s.is_empty());
                                if let Some(last) = special_last.clone() {
                                    if !tc_nonempty(&tc) {
                                        special_eos = Some(last.clone());
                                    } else if Some(&last) != special_eos.as_ref() {
                                        if !self.types.iter().any(|t| t == "eot") {
                                            self.types.push("eot".into());
                                            if let (Some(m), Some(e)) =
                                                (tc.as_mut(), special_eos.clone())
                                            {
                                                m.insert("eot_token".into(), Json::String(e));
                                            }
                                        } else if !self.types.iter().any(|t| t == "eom") {
                                            self.types.push("eom".into());
                                            if let (Some(m), Some(e)) =
                                                (tc.as_mut(), special_eos.clone())
                                            {
                                                m.insert("eom_token".into(), Json::String(e));
                                            }
                                        }
                                        special_eos = Some(last.clone());
                                        if let Some(m) = tc.as_mut() {
                                            m.insert(
                                                "eos_token".into(),
                                                Json::String(last.clone()),
                                            );
                                        }
                                    }
                                    let is_eos = Some(&last) == special_eos.as_ref();
                                    set_add(&mut self.add_special, "eos", is_eos);
                                }
                            }
                            if !pair.is_empty() {
                                let first_pair = pair.first().and_then(special_token_id);
                                let last_pair = pair.last().and_then(special_token_id);
                                let seq_start = usize::from(
                                    special_first.is_some() && first_pair == special_first,
                                );
                                let trim_end = special_last.is_some() && last_pair == special_last;
                                let end = if trim_end {
                                    pair.len().saturating_sub(1)
                                } else {
                                    pair.len()
                                };
                                let inner: Vec<Json> = if seq_start < end {
                                    pair[seq_start..end].to_vec()
                                } else {
                                    Vec::new()
                                };
                                if !inner.is_empty() {
                                    let a =
                                        inner[0].pointer("/Sequence/id").and_then(|s| s.as_str());
                                    let b = inner
                                        .last()
                                        .and_then(|x| x.pointer("/Sequence/id"))
                                        .and_then(|s| s.as_str());
                                    if a == Some("A") && b == Some("B") && inner.len() > 2 {
                                        let mid = &inner[1..inner.len() - 1];
                                        let mut add_sep = false;
                                        let is_sep_or_eos = |e: &String| {
                                            Some(e) == special_sep.as_ref()
                                                || Some(e) == special_eos.as_ref()
                                        };
                                        if let Some(e) =
                                            special_token_id(&mid[0]).filter(|s| !s.is_empty())
                                        {
                                            if is_sep_or_eos(&e) && special_last.is_none() {
                                                add_sep = true;
                                            }
                                        }
                                        if mid.len() == 2 {
                                            if let Some(e) =
                                                special_token_id(&mid[1]).filter(|s| !s.is_empty())
                                            {
                                                if is_sep_or_eos(&e) {
                                                    add_sep = true;
                                                }
                                            }
                                        }
                                        set_add(&mut self.add_special, "sep", add_sep);
                                        if add_sep && !truthy(&special_sep) {
                                            if let (Some(m), Some(e)) =
                                                (tc.as_mut(), special_eos.clone())
                                            {
                                                m.insert("sep_token".into(), Json::String(e));
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        let Some(tc) = tc.filter(|m| !m.is_empty()) else {
            return Ok(());
        };
        // chat template
        let jinja = dir.join("chat_template.jinja");
        let ct_json = dir.join("chat_template.json");
        let mut alt: Option<ChatTemplate> = None;
        if jinja.is_file() {
            let t = std::fs::read_to_string(&jinja).map_err(|source| ConvertError::Io {
                path: jinja.clone(),
                source,
            })?;
            let extra_dir = dir.join("additional_chat_templates");
            let mut extra: Vec<(String, String)> = Vec::new();
            if let Ok(rd) = std::fs::read_dir(&extra_dir) {
                let mut paths: Vec<PathBuf> = rd
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
                    .collect();
                paths.sort();
                for p in paths {
                    let body = std::fs::read_to_string(&p).map_err(|source| ConvertError::Io {
                        path: p.clone(),
                        source,
                    })?;
                    let stem = p
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    extra.push((stem, body));
                }
            }
            alt = Some(if extra.is_empty() {
                ChatTemplate::One(t)
            } else {
                let mut v = vec![("default".to_string(), t)];
                v.extend(extra);
                ChatTemplate::Named(v)
            });
        } else if let Some(j) = read_json(&ct_json)? {
            alt = parse_template_value(j.get("chat_template"));
        }
        self.chat_template = match tc.get("chat_template") {
            Some(v) => parse_template_value(Some(v)),
            None => alt,
        };
        for typ in self.types.clone() {
            if let Some(b) = tc
                .get(&format!("add_{typ}_token"))
                .and_then(|v| v.as_bool())
            {
                if get_add(&self.add_special, &typ).is_none() {
                    self.add_special.push((typ.clone(), b));
                }
            }
            let content = match tc.get(&format!("{typ}_token")) {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Object(o)) => match o.get("content").and_then(|c| c.as_str()) {
                    Some(s) => s.to_string(),
                    None => continue,
                },
                _ => continue,
            };
            let id = added_tokens
                .iter()
                .find(|a| a.get("content").and_then(|c| c.as_str()) == Some(content.as_str()))
                .and_then(|a| a.get("id").cloned());
            self.set_id(&typ, id.as_ref())?;
        }
        Ok(())
    }

    fn load_config_json(&mut self, dir: &Path) -> Result<(), ConvertError> {
        let Some(cfg) = read_json(&dir.join("config.json"))? else {
            return Ok(());
        };
        for typ in self.types.clone() {
            let key = format!("{typ}_token_id");
            let mut v = cfg.get(&key).filter(|v| !v.is_null()).cloned();
            if v.is_none() {
                v = cfg.get("text_config").and_then(|t| t.get(&key)).cloned();
            }
            self.set_id(&typ, v.as_ref())?;
        }
        Ok(())
    }

    fn load_merges_txt(&mut self, dir: &Path) -> Result<(), ConvertError> {
        let p = dir.join("merges.txt");
        if !p.is_file() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&p).map_err(|source| ConvertError::Io {
            path: p.clone(),
            source,
        })?;
        let mut lines = text.lines().peekable();
        if lines.peek().is_some_and(|l| l.trim().starts_with('#')) {
            lines.next();
        }
        for line in lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() == 2 {
                self.merges.push(format!("{} {}", parts[0], parts[1]));
            }
        }
        Ok(())
    }

    fn add_to(&self, md: &mut Metadata) {
        if !self.merges.is_empty() {
            md.set("tokenizer.ggml.merges", self.merges.clone());
        }
        for (typ, id) in &self.ids {
            let key = match typ.as_str() {
                "bos" => "tokenizer.ggml.bos_token_id",
                "eos" => "tokenizer.ggml.eos_token_id",
                "unk" => "tokenizer.ggml.unknown_token_id",
                "sep" => "tokenizer.ggml.seperator_token_id",
                "pad" => "tokenizer.ggml.padding_token_id",
                "mask" => "tokenizer.ggml.mask_token_id",
                "eot" => "tokenizer.ggml.eot_token_id",
                "eom" => "tokenizer.ggml.eom_token_id",
                _ => continue, // the reference has no handler for cls
            };
            md.set(key, *id);
        }
        for (typ, v) in &self.add_special {
            let key = match typ.as_str() {
                "bos" => "tokenizer.ggml.add_bos_token",
                "eos" => "tokenizer.ggml.add_eos_token",
                "sep" => "tokenizer.ggml.add_sep_token",
                _ => continue,
            };
            md.set(key, *v);
        }
        match &self.chat_template {
            Some(ChatTemplate::One(t)) => {
                md.set("tokenizer.chat_template", t.clone());
            }
            Some(ChatTemplate::Named(list)) => {
                let mut default = None;
                let mut names = Vec::new();
                for (name, t) in list {
                    let name: String = name
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                        .collect();
                    if name.is_empty() {
                        continue;
                    }
                    if name == "default" {
                        default = Some(t.clone());
                    } else {
                        md.set(format!("tokenizer.chat_template.{name}"), t.clone());
                        if !names.contains(&name) {
                            names.push(name);
                        }
                    }
                }
                if !names.is_empty() {
                    md.set("tokenizer.chat_templates", names);
                }
                if let Some(d) = default {
                    md.set("tokenizer.chat_template", d);
                }
            }
            None => {}
        }
        if let Some(v) = self.lowercase {
            md.set("tokenizer.ggml.normalizer.lowercase", v);
        }
        if let Some(v) = self.strip_accents {
            md.set("tokenizer.ggml.normalizer.strip_accents", v);
        }
    }
}

fn parse_template_value(v: Option<&Json>) -> Option<ChatTemplate> {
    match v? {
        Json::String(s) => Some(ChatTemplate::One(s.clone())),
        Json::Array(list) => Some(ChatTemplate::Named(
            list.iter()
                .filter_map(|c| {
                    Some((
                        c.get("name")
                            .and_then(|n| n.as_str())
                            .unwrap_or("")
                            .to_string(),
                        c.get("template")?.as_str()?.to_string(),
                    ))
                })
                .collect(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chkhsh_hashes_the_python_list_repr() {
        // hashlib.sha256(str([1, 2, 3]).encode()).hexdigest()
        assert_eq!(
            chkhsh(&[1, 2, 3]),
            "a36b1f2c3f84522dd1005145646617d7054c0851e97c72a039c0bdfac9fa07f3"
        );
    }

    #[test]
    fn llama3_hash_is_in_the_table() {
        assert_eq!(
            known_pre("0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5"),
            Some("llama-bpe")
        );
        assert_eq!(known_pre("0000"), None);
    }

    #[test]
    fn check_string_is_the_reference_one() {
        assert!(CHKTXT.starts_with("\n \n\n \n\n\n \t \t\t \t\n"));
        assert!(CHKTXT.ends_with("We'Ve a'lL"));
    }
}
