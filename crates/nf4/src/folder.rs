//! Hugging Face model folder (16/32-bit), or a merge in progress, → the folder transformers'
//! `save_pretrained` writes for it loaded in 4-bit NF4 with double quantization.

use std::path::{Path, PathBuf};

use loraforge_adapter_merge::MergedTensors;
use loraforge_hf_model::{Dtype, HfModel, CONFIG_FILE};
use loraforge_progress::Reporter;

use crate::quant::{BLOCKSIZE, NESTED_BLOCKSIZE};
use crate::writer::{write_nf4, FolderSource, Inputs, MergeSource};
use crate::Nf4Error;

/// `model_type`s whose Linear layers are exactly the 2-D `*.weight` tensors under `layers.N.`.
pub const SUPPORTED_MODEL_TYPES: &[&str] =
    &["llama", "mistral", "qwen2", "gemma", "gemma2", "phi3"];

/// `save_pretrained`'s default `max_shard_size` in transformers 5.23 (the reference version):
/// 50 GB (decimal). Older transformers used 5 GB.
pub const DEFAULT_MAX_SHARD_SIZE: u64 = 50_000_000_000;

/// The tokenizer files copied next to the weights when present (so the folder is usable).
pub(crate) const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
];

/// The generation config, copied when present.
pub(crate) const GENERATION_CONFIG: &str = "generation_config.json";

/// Options of [`quantize_folder`] and [`quantize_merged`].
#[derive(Debug, Clone, Default)]
pub struct Nf4Options {
    /// Intra-op threads of the torch whose output should be matched (only weights with more
    /// than 32768 blocks of 64 — above 2 M elements — depend on it); default: the number of
    /// CPUs, torch's own default on most machines.
    pub torch_threads: Option<usize>,
    /// Threads quantizing each weight (default: the number of CPUs); the bytes do not depend
    /// on it.
    pub threads: Option<usize>,
    /// Largest weight file in bytes, `save_pretrained`'s `max_shard_size` (default
    /// [`DEFAULT_MAX_SHARD_SIZE`]): above it the weights are split into
    /// `model-0000i-of-0000N.safetensors` files with `model.safetensors.index.json`, the way
    /// huggingface_hub's `split_torch_state_dict_into_shards` splits the 4-bit state dict.
    pub max_shard_size: Option<u64>,
}

/// What [`quantize_folder`] / [`quantize_merged`] wrote.
#[derive(Debug, Clone)]
pub struct Nf4Report {
    /// The output folder.
    pub out_dir: PathBuf,
    /// The weights quantized to NF4.
    pub quantized: usize,
    /// The tensors kept in the model dtype.
    pub kept: usize,
    /// The model dtype (`bnb_4bit_compute_dtype`).
    pub dtype: Dtype,
    /// Bytes of the weight files (`model.safetensors`, or all the shards).
    pub bytes: u64,
    /// The weight files' names, in order (one, or the shards; the index is not listed).
    pub weight_files: Vec<String>,
}

/// Quantizes the model folder `src` into the new folder `out`: the weights (one
/// `model.safetensors`, or shards and their index above [`Nf4Options::max_shard_size`]) and
/// `config.json` as transformers' `save_pretrained` writes them for the model loaded with
/// `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
/// bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=<model dtype>)` on CPU; the
/// generation config and tokenizer files are copied.
///
/// Nothing appears at `out` unless everything succeeded (temp folder renamed into place).
pub fn quantize_folder(
    src: &Path,
    out: &Path,
    options: &Nf4Options,
    reporter: &dyn Reporter,
) -> Result<Nf4Report, Nf4Error> {
    if out.exists() {
        return Err(Nf4Error::OutputExists {
            path: out.to_path_buf(),
        });
    }
    let config_path = src.join(CONFIG_FILE);
    let config_text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    check_config(&config_path, &config_text)?;
    let model = HfModel::open(src).map_err(|source| Nf4Error::Model {
        dir: src.to_path_buf(),
        source,
    })?;
    let side_files = [GENERATION_CONFIG]
        .iter()
        .chain(TOKENIZER_FILES)
        .map(|f| (f.to_string(), src.join(f)))
        .collect();
    let source = FolderSource { model: &model };
    write_nf4(
        &source,
        Inputs {
            config_path,
            config_text,
            side_files,
            weights_dir: src.to_path_buf(),
        },
        out,
        options,
        reporter,
    )
}

/// The merge `merged` written straight as the merged_4bit folder `out` — what
/// [`quantize_folder`] writes for the folder `loraforge_adapter_merge::merge` would write, byte
/// for byte, without that 16-bit folder: each merged weight is quantized as its rows come out
/// of the merge (already rounded to the output dtype), and the kept tensors the merge does not
/// change are copied once, file to file, from the base.
///
/// The folder's config.json, generation config and tokenizer files are those the 16-bit merge
/// would write. Nothing appears at `out` unless everything succeeded; a merge that produces
/// inf/NaN fails naming the tensor (`loraforge_adapter_merge::MergeError::NonFinite`).
pub fn quantize_merged(
    merged: &MergedTensors,
    out: &Path,
    options: &Nf4Options,
    reporter: &dyn Reporter,
) -> Result<Nf4Report, Nf4Error> {
    if out.exists() {
        return Err(Nf4Error::OutputExists {
            path: out.to_path_buf(),
        });
    }
    let base_dir = merged.base().dir().to_path_buf();
    let config_path = base_dir.join(CONFIG_FILE);
    let config_bytes = merged.config_json()?;
    let config_text = String::from_utf8(config_bytes).map_err(|e| Nf4Error::Config {
        path: config_path.clone(),
        reason: e.to_string(),
    })?;
    check_config(&config_path, &config_text)?;
    let mut side_files = vec![(
        GENERATION_CONFIG.to_string(),
        base_dir.join(GENERATION_CONFIG),
    )];
    if let Some(dir) = merged.tokenizer_source() {
        side_files.extend(TOKENIZER_FILES.iter().map(|f| (f.to_string(), dir.join(f))));
    }
    let source = MergeSource { merged };
    write_nf4(
        &source,
        Inputs {
            config_path,
            config_text,
            side_files,
            weights_dir: base_dir,
        },
        out,
        options,
        reporter,
    )
}

/// Refuses a config that is already quantized or of an architecture whose Linear layers this
/// writer does not know.
fn check_config(config_path: &Path, config_text: &str) -> Result<(), Nf4Error> {
    let config: serde_json::Value =
        serde_json::from_str(config_text).map_err(|e| Nf4Error::Config {
            path: config_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if let Some(q) = config.get("quantization_config") {
        return Err(Nf4Error::AlreadyQuantized {
            path: config_path.to_path_buf(),
            method: q
                .get("quant_method")
                .and_then(|m| m.as_str())
                .unwrap_or("unknown")
                .to_string(),
        });
    }
    let model_type = model_type(&config);
    if !SUPPORTED_MODEL_TYPES.contains(&model_type.as_str()) {
        return Err(Nf4Error::UnsupportedArchitecture {
            model_type,
            supported: SUPPORTED_MODEL_TYPES.join(", "),
        });
    }
    Ok(())
}

/// `config.json`'s `model_type` (empty when absent).
pub(crate) fn model_type(config: &serde_json::Value) -> String {
    config
        .get("model_type")
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_string()
}

/// The dtype named in `config.json` (`dtype`, or the legacy `torch_dtype`).
pub(crate) fn config_dtype(config: &serde_json::Value) -> Option<Dtype> {
    config
        .get("dtype")
        .and_then(|d| d.as_str())
        .or_else(|| config.get("torch_dtype").and_then(|d| d.as_str()))
        .and_then(Dtype::parse_config_dtype)
}

/// Python's `repr(float)` (what `json.dumps` writes for `nested_offset`).
pub(crate) fn python_float_repr(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sci = format!("{x:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mant) = mant.strip_prefix('-').map_or(("", mant), |m| ("-", m));
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    if !(-4..16).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1;
    if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!(
            "{sign}{digits}{}.0",
            "0".repeat(point as usize - digits.len())
        )
    } else {
        let (a, b) = digits.split_at(point as usize);
        format!("{sign}{a}.{b}")
    }
}

/// The packed `quant_state.bitsandbytes__nf4` JSON of `QuantState.as_dict(packed=True)`.
pub(crate) fn quant_state_json(dtype: Dtype, shape: &[usize], offset: f32) -> String {
    let shape: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!(
        "{{\"quant_type\": \"nf4\", \"blocksize\": {BLOCKSIZE}, \"dtype\": \"{}\", \"shape\": [{}], \
         \"nested_blocksize\": {NESTED_BLOCKSIZE}, \"nested_dtype\": \"float32\", \"nested_offset\": {}}}",
        dtype.config_name(),
        shape.join(", "),
        python_float_repr(offset as f64)
    )
}

/// `BitsAndBytesConfig(...).to_dict()` as transformers writes it into config.json (indent 2,
/// nested under the top level).
pub(crate) fn quantization_config_block(dtype: Dtype) -> String {
    format!(
        "  \"quantization_config\": {{\n    \"_load_in_4bit\": true,\n    \"_load_in_8bit\": false,\n    \
         \"bnb_4bit_compute_dtype\": \"{}\",\n    \"bnb_4bit_quant_storage\": \"uint8\",\n    \
         \"bnb_4bit_quant_type\": \"nf4\",\n    \"bnb_4bit_use_double_quant\": true,\n    \
         \"llm_int8_enable_fp32_cpu_offload\": false,\n    \"llm_int8_has_fp16_weight\": false,\n    \
         \"llm_int8_skip_modules\": null,\n    \"llm_int8_threshold\": 6.0,\n    \"load_in_4bit\": true,\n    \
         \"load_in_8bit\": false,\n    \"quant_method\": \"bitsandbytes\"\n  }}",
        dtype.config_name()
    )
}

/// Inserts `quantization_config` into a config.json written by transformers (keys sorted,
/// indent 2), at its sorted place, leaving every other byte as it was.
pub(crate) fn insert_quantization_config(text: &str, dtype: Dtype) -> Option<String> {
    let block = quantization_config_block(dtype);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let is_top_key = |l: &str| l.starts_with("  \"") && !l.starts_with("   ");
    let key_of = |l: &str| l[3..].split('"').next().map(str::to_string);
    let mut out = String::with_capacity(text.len() + block.len() + 2);
    let mut inserted = false;
    let mut last_top = None;
    for (i, l) in lines.iter().enumerate() {
        if is_top_key(l) {
            last_top = Some(i);
            if !inserted && key_of(l).is_some_and(|k| k.as_str() > "quantization_config") {
                out.push_str(&block);
                out.push_str(",\n");
                inserted = true;
            }
        }
        out.push_str(l);
    }
    if inserted {
        return Some(out);
    }
    // Last key: append after the final top-level entry, before the closing brace.
    let last = last_top?;
    let close = lines.iter().rposition(|l| l.trim_end() == "}")?;
    if close <= last {
        return None;
    }
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i == close {
            out.push_str(&block);
            out.push('\n');
        }
        if i + 1 == close && l.ends_with('\n') {
            out.push_str(&l[..l.len() - 1]);
            out.push_str(",\n");
            continue;
        }
        out.push_str(l);
    }
    Some(out)
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Nf4Error + '_ {
    move |source| Nf4Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        assert_eq!(
            python_float_repr(0.05262501910328865),
            "0.05262501910328865"
        );
        assert_eq!(python_float_repr(1e-05), "1e-05");
        assert_eq!(python_float_repr(1.5e-7), "1.5e-07");
        assert_eq!(python_float_repr(0.0001), "0.0001");
        assert_eq!(python_float_repr(3.0), "3.0");
        assert_eq!(python_float_repr(-0.25), "-0.25");
        assert_eq!(python_float_repr(1e16), "1e+16");
        assert_eq!(python_float_repr(123456.5), "123456.5");
    }

    #[test]
    fn quantization_config_goes_to_its_sorted_place() {
        let text = "{\n  \"a\": 1,\n  \"z\": {\n    \"q\": 2\n  }\n}\n";
        let out = insert_quantization_config(text, Dtype::BF16).unwrap();
        assert!(out.starts_with("{\n  \"a\": 1,\n  \"quantization_config\": {"));
        assert!(out.ends_with("  },\n  \"z\": {\n    \"q\": 2\n  }\n}\n"));
        let last = insert_quantization_config("{\n  \"a\": 1\n}\n", Dtype::F16).unwrap();
        assert!(last.starts_with("{\n  \"a\": 1,\n  \"quantization_config\""));
        let v: serde_json::Value = serde_json::from_str(&last).unwrap();
        assert_eq!(
            v["quantization_config"]["bnb_4bit_compute_dtype"],
            "float16"
        );
    }
}
