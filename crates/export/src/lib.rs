//! `loraforge-export`: the pipelines that produce GGUF files — `loraforge convert` (Hugging
//! Face model folder → GGUF, the same file as llama.cpp's `convert_hf_to_gguf.py`) and
//! `loraforge quantize` (GGUF → GGUF, the same file as `llama-quantize`) — and the one
//! [`ExportTarget`] the registry and the CLI hand them.
//!
//! The file format itself is `loraforge-gguf`; the block formats and llama.cpp's per-tensor type
//! recipe are `loraforge-quantize`; the names of the output types ([`FileType`]) come from
//! `loraforge-naming`. This crate streams tensors between them.
//!
//! # Export targets
//!
//! [`convert`] takes an [`ExportTarget`] in [`ConvertOptions::target`]:
//! * [`ExportTarget::Convert`] (`--outtype f32|f16|bf16|q8_0`): what `convert_hf_to_gguf.py`
//!   writes for that out type (its own Q8_0; rows not a multiple of 32 fall back to f16);
//! * [`ExportTarget::Auto`], [`ExportTarget::Source`]: the reference's `auto`, and the model's own
//!   dtype (lossless);
//! * [`ExportTarget::Quantize`] (`q4_K_M`, `q4_K_S`, and what `loraforge deploy` uses for every
//!   quantized type): the lossless conversion quantized as it streams, with [`quantize_file`]'s
//!   header, tensor order, type recipe and kernels — byte-identical to `llama-quantize` run on
//!   the reference converter's lossless output, without writing that output.
//!
//! [`ExportTarget::for_outtype`] reads `--outtype`; [`ExportTarget::for_quant`] maps a
//! deployment's [`QuantType`](loraforge_naming::QuantType).
//!
//! # Adapter → GGUF in one pass
//!
//! [`ConvertOptions::adapter`] names a PEFT LoRA adapter folder to merge into the model while it
//! converts (`loraforge convert BASE OUT.gguf --adapter ADAPTER --outtype q4_K_M`): the merge is
//! resolved and checked up front by `loraforge-adapter-merge`'s `MergedModel` (every refusal of
//! `loraforge merge`: another base's shapes, unmatched tensors, DoRA without magnitudes,
//! base-rewriting initialisations …, as [`ConvertError::Adapter`]), then each tensor the
//! adapter changes is merged in blocks of rows as it streams — rounded to the base dtype exactly
//! as the merge writes it — and converted and quantized like any other. No merged model is
//! written; memory stays bounded as in a plain conversion (plus the adapter's f32 `A`/`B` of
//! one tensor). The output is byte-identical to `loraforge merge` (auto dtype, 5 GB shards)
//! then `loraforge convert` of the merged folder: the same side files (the adapter's tokenizer
//! files when it has any, else the base's), the same tensor order (the merged folder's
//! shards), the same values. One difference by construction: the default `general.name` comes
//! from the base folder's name, where the chain takes the merged folder's;
//! [`GeneralMetadata::name`] sets it.
//!
//! ```
//! use loraforge_export::{convert, ConvertOptions, ExportTarget, FileType};
//! use loraforge_progress::NoProgress;
//! use std::path::Path;
//!
//! let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/peft/a_llama_qv");
//! let out = std::env::temp_dir().join(format!("lf-export-onepass-{}.gguf", std::process::id()));
//! let options = ConvertOptions {
//!     target: ExportTarget::Quantize(FileType::Q4KM),
//!     adapter: Some(case.join("adapter")),
//!     ..ConvertOptions::default()
//! };
//! let report = convert(&case.join("base"), &out, &options, &NoProgress)?;
//! assert_eq!(report.file_type, FileType::Q4KM);
//! # std::fs::remove_file(&out).unwrap();
//! # Ok::<(), loraforge_export::ConvertError>(())
//! ```
//!
//! # Hugging Face → GGUF
//!
//! Like `convert_hf_to_gguf.py` (llama.cpp 0c1e57098, gguf-py of the same tree), in Rust, streaming.
//!
//! [`convert`] reads `config.json`, the `model*.safetensors` shards (with or without
//! `model.safetensors.index.json`; headers validated by `loraforge-hf-model`), the tokenizer
//! (`tokenizer.model` SentencePiece or `tokenizer.json` byte-level BPE, plus
//! `tokenizer_config.json`, `added_tokens.json`, `chat_template.jinja` / `chat_template.json`,
//! special token ids from `config.json`) and `generation_config.json`, and writes a GGUF v3 file
//! through a temp file renamed into place. Tensors are cut into pieces (row blocks, heads) that
//! worker threads and the writing thread read, convert (and merge, and quantize) a bounded
//! distance ahead of the writer, which also hashes (sha256) when asked, so memory stays bounded
//! by the pieces in flight and the largest tensor that must be rearranged (GPT-2 transposes).
//!
//! Principal items: [`convert`], [`ConvertOptions`] (+ [`ExportTarget`], [`GeneralMetadata`]),
//! [`ConvertReport`], [`ConvertError`]; for GGUF → GGUF, [`quantize_file`],
//! [`QuantizeFileOptions`], [`QuantizeFileReport`], [`QuantizeFileError`]; for a PEFT adapter
//! → LoRA GGUF (like `convert_lora_to_gguf.py`), [`convert_lora`].
//!
//! Architectures: `LlamaForCausalLM` / `MistralForCausalLM` (GGUF `llama`, Q/K rows permuted,
//! Llama 3 `rope_freqs`), `Qwen2ForCausalLM` (`qwen2`), `GPT2LMHeadModel` (`gpt2`; `n_ctx`
//! taken from `n_positions` since transformers no longer writes `n_ctx` — the stock script fails
//! there), `GemmaForCausalLM` (`gemma`: norms written as `w + 1`, computed in the weights' own
//! precision like torch; `lm_head` dropped; CodeGemma's `eot` id 107), `Gemma2ForCausalLM`
//! (`gemma2`: post-attention / post-FFN norms, logit softcapping, sliding window) and
//! `Phi3ForCausalLM` (`phi3`: fused `attn_qkv` / `ffn_up`, Phi-3's own SentencePiece reading,
//! or byte-level BPE for a `GPT2Tokenizer`; 128k models' LongRoPE `rope_factors_long` /
//! `rope_factors_short` and `rope.scaling.attn_factor`). Anything else (Gemma 3, Phi-2, MoE
//! models …) fails with [`ConvertError::UnsupportedArchitecture`] /
//! [`ConvertError::UnsupportedFeature`] listing [`SUPPORTED_ARCHITECTURES`].
//!

//! # Exactness
//! Tensor names, order, shapes, types and data are byte-identical to the reference converter's,
//! and so is the metadata, key for key, in the same order and with the same value types; on all
//! fixture cases the whole file is identical (same sha256). Documented differences, all in
//! `general.*`:
//! * `general.name`: [`GeneralMetadata::name`] when given, else the folder name title-cased the
//!   way Python's `str.title()` does (what gguf-py ends up with for plain folder names). gguf-py
//!   also splits names like `Llama-3.2-1B-Instruct` into `general.basename` / `size_label` /
//!   `finetune` / `version` and reads a README model card (license, tags, languages, base
//!   models, datasets); we write those keys only from [`GeneralMetadata`], except
//!   `general.size_label`, computed from the parameter count exactly as gguf-py does when the
//!   caller gives none.
//! * `general.sampling.*`: only `top_k`, `top_p`, `min_p`, `temp` (from `temperature`) and
//!   `penalty_repeat` (from `repetition_penalty`) are read from `generation_config.json`; the
//!   other sampling keys gguf-py knows are not Hugging Face fields.
//!
//! Other known gaps: SentencePiece-style `tokenizer.json` without `tokenizer.model`
//! (`LlamaHfVocab`) is refused; added tokens of a BPE vocabulary are taken verbatim (the
//! reference round-trips non-normalized added tokens through the tokenizer, an identity for
//! every tokenizer we have seen); the Llama 3 `rope_freqs` factors are computed in f32 with the
//! reference's formula but were not compared with torch's bits; NaN weights convert to ggml's
//! NaN encodings, which may differ from numpy's in payload bits.
//!
//! The BPE pre-tokenizer (`tokenizer.ggml.pre`) is identified like the reference (sha256 of the
//! token ids of llama.cpp's check string, looked up in its table of published tokenizers); where
//! the reference gives up ("BPE pre-tokenizer was not recognized"), we pick the name whose regex
//! equals the tokenizer's own `Split` regex (`llama-bpe`, `qwen2`) or `gpt-2` for a plain
//! `ByteLevel` pre-tokenizer, and say so in [`ConvertReport::warnings`]; otherwise conversion fails
//! with [`ConvertError::UnknownPreTokenizer`] unless [`ConvertOptions::pre_tokenizer`] names it.
//!
//! ```
//! use loraforge_export::{convert, ConvertOptions, ExportTarget, FileType};
//! use loraforge_progress::NoProgress;
//! use std::path::Path;
//!
//! // A tiny Llama with a SentencePiece tokenizer from the repository's fixtures.
//! let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/peft/a_llama_qv/base");
//! let out = std::env::temp_dir().join(format!("lf-export-doc-{}.gguf", std::process::id()));
//! let options = ConvertOptions {
//!     target: ExportTarget::Convert(FileType::F16),
//!     ..ConvertOptions::default()
//! };
//! let report = convert(&model, &out, &options, &NoProgress)?;
//! assert_eq!((report.architecture.as_str(), report.tensors), ("llama", 20));
//! assert_eq!(report.pre_tokenizer.as_deref(), Some("default"));
//! for w in &report.warnings {
//!     eprintln!("warning: {w}");
//! }
//! # std::fs::remove_file(&out).unwrap();
//! # Ok::<(), loraforge_export::ConvertError>(())
//! ```
#![deny(missing_docs)]

mod arch;
mod convert;
mod data;
mod error;
mod lora;
mod lora_meta;
mod pipeline;
mod quantize_file;
mod sentencepiece;
mod source;
mod target;
mod vocab;

pub use arch::SUPPORTED_ARCHITECTURES;
pub use convert::{convert, BaseModel, ConvertOptions, ConvertReport, GeneralMetadata};
pub use error::ConvertError;
pub use lora::{convert_lora, LoraConvertError, LoraConvertOptions, LoraConvertReport};
pub use loraforge_naming::FileType;
pub use quantize_file::{
    quantize_file, quantize_file_multi, FallbackReport, QuantizeFileError, QuantizeFileOptions,
    QuantizeFileReport, TensorReport, GGML_QNT_VERSION,
};
pub use target::ExportTarget;
pub use vocab::PreTokenizerSource;
