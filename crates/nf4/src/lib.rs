//! `loraforge-nf4`: the `merged_4bit` save method — a merged model quantized to bitsandbytes'
//! 4-bit NormalFloat (NF4) with double quantization, written as the folder transformers'
//! `save_pretrained` writes for a model loaded with
//! `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
//! bnb_4bit_compute_dtype=<model dtype>)` on CPU. Such a folder loads in transformers / vLLM with
//! bitsandbytes installed.
//!
//! Principal items: [`quantize_folder`] (a 16/32-bit model folder) and [`quantize_merged`] (a
//! merge in progress, `loraforge_adapter_merge::MergedTensors`: each merged weight quantized as
//! its rows come out, no 16-bit folder) with [`Nf4Options`] → [`Nf4Report`], [`Nf4Error`]; the
//! arithmetic itself: [`quantize_nf4`] → [`Nf4Weight`], [`dequantize_nf4`].
//!
//! # Format (per quantized Linear weight `W` of `n` elements, shape `[out, in]`)
//! - `W` → `U8 [ceil(n/2), 1]`: NF4 codes of `W` (row-major, blocks of 64), two per byte, the first
//!   in the high nibble; the code of `x` is the number of NF4 midpoints strictly below
//!   `clamp(x / absmax_block, -1, 1)` (torch's `bucketize`).
//! - `W.absmax` → `U8 [ceil(n/64)]`: the block maxima minus their mean (`nested_offset`),
//!   quantized in blocks of 256 to bitsandbytes' 8-bit dynamic map (its CPU lookup-table rule);
//!   `W.nested_absmax` → `F32 [ceil(blocks/256)]` their scales; `W.quant_map` → `F32 [16]`,
//!   `W.nested_quant_map` → `F32 [256]` the two code books;
//! - `W.quant_state.bitsandbytes__nf4` → `U8`: the JSON `{"quant_type": "nf4", "blocksize": 64,
//!   "dtype": …, "shape": [out, in], "nested_blocksize": 256, "nested_dtype": "float32",
//!   "nested_offset": <Python repr of the f32 mean>}`.
//!
//! Linear weights are the 2-D `*.weight` tensors under `layers.N.` (Llama, Mistral, Qwen2, Gemma,
//! Gemma 2, Phi-3); embeddings, norms, biases and `lm_head` stay in the model dtype, as
//! transformers leaves them. `config.json` gets transformers' `quantization_config` inserted at
//! its sorted place. Tensor layout in each file is the `safetensors` library's (F32, BF16, F16,
//! U8, then by name). Above [`Nf4Options::max_shard_size`] (default 50 GB, transformers 5.23's)
//! the weights are sharded as `save_pretrained` shards them: the state dict sorted by
//! transformers' `dot_natural_key`, split by huggingface_hub's rule (the quant-state tensors
//! counted with their sizes), `model-0000i-of-0000N.safetensors` and
//! `model.safetensors.index.json` with `total_parameters` (a 4-bit weight counts 2 × its packed
//! bytes) and `total_size`.
//!
//! # Exactness
//! Byte-identical to bitsandbytes 0.50.2 + transformers 5.23 (torch 2.15, CPU) on the fixture
//! models (`tests/fixtures/nf4`). `nested_offset` is torch's `mean`, whose rounding depends on
//! torch's thread count once a weight has more than 32768 blocks (> 2 M elements):
//! [`Nf4Options::torch_threads`] must then equal the reference machine's. Known gap: GPT-2 style
//! Conv1D models are refused.
//!
//! ```
//! use loraforge_nf4::{dequantize_nf4, quantize_nf4};
//!
//! let w: Vec<f32> = (0..128).map(|i| (i as f32 - 64.0) / 64.0).collect();
//! let q = quantize_nf4(&w, 1);
//! assert_eq!((q.packed.len(), q.absmax.len(), q.nested_absmax.len()), (64, 2, 1));
//! let back = dequantize_nf4(&q, w.len());
//! assert!(w.iter().zip(&back).all(|(a, b)| (a - b).abs() < 0.15));
//! ```
#![deny(missing_docs)]

mod error;
mod folder;
mod layout;
mod quant;
mod torch_sum;
mod writer;

pub use error::Nf4Error;
pub use folder::{
    quantize_folder, quantize_merged, Nf4Options, Nf4Report, DEFAULT_MAX_SHARD_SIZE,
    SUPPORTED_MODEL_TYPES,
};
pub use quant::{
    block_absmax_streamed, dequantize_nf4, dynamic_code, nf4_code, quantize_blocks,
    quantize_blocks_scalar, quantize_blocks_streamed, quantize_nf4, quantize_nf4_checked,
    quantize_nf4_streamed, quantize_nf4_threads, scale_offset, Decode, Nf4Weight, BLOCKSIZE,
    NESTED_BLOCKSIZE,
};
pub use torch_sum::{torch_mean, torch_sum};
