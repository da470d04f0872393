//! ggml block quantization, bit-exact with ggml's reference quantizers, and the llama.cpp
//! "ftype" mixture policy (which tensor gets which block type for Q8_0, Q6_K, Q5_K_M … Q2_K).
//!
//! This crate does no I/O: it turns rows of `f32` into ggml blocks and back
//! ([`quantize_rows`], [`dequantize_rows`]), and decides per-tensor types
//! ([`recipe::plan_tensor_types`]). The GGUF → GGUF pipeline that uses it (`loraforge quantize`)
//! lives in `loraforge-export`; the file format in `loraforge-gguf`.
//!
//! The kernels are ports of `ggml/src/ggml-quants.c` (llama.cpp 0c1e57098 / ggml 0.25.3): the
//! bytes equal `ggml_quantize_chunk` without an importance matrix, checked against golden
//! files produced by ggml itself.
//!
//! * [`quantize_rows`] / [`dequantize_rows`]: F32, F16, BF16, Q8_0, Q5_0, Q5_1, Q4_0, Q4_1,
//!   Q2_K, Q3_K, Q4_K, Q5_K, Q6_K. The k-quants run a lane-parallel kernel (sub-blocks as SIMD lanes, AVX2 or
//!   AVX-512 when the CPU has it, see [`Isa`]) that performs the reference's float operations
//!   in the reference's order;
//!   [`quantize_rows_reference`] is the plain scalar port, kept as the oracle.
//! * [`find_non_finite`] and [`validate_row_data`]: the checks llama.cpp applies to input
//!   tensors and to quantized output.
//! * [`fp32_to_fp16`], [`fp32_to_bf16`] and their inverses: ggml's scalar conversions.
//! * [`recipe`]: for a [`FileType`] (`Q4_K_M` …, the output-type vocabulary defined in
//!   `loraforge-naming` and re-exported here), [`default_type`] and [`plan_tensor_types`], the per-tensor type
//!   decisions of `llama_model_quantize`, including fallbacks for row lengths that are not a
//!   multiple of 256, and [`llama_tensor_order`], the order llama.cpp writes tensors in.
//!
//! ```
//! use loraforge_quantize::{dequantize_rows, quantize_rows, GgmlType};
//!
//! let row: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0) / 64.0).collect();
//! let mut blocks = vec![0u8; GgmlType::Q4K.row_size(256).unwrap() as usize];
//! quantize_rows(GgmlType::Q4K, &row, 256, &mut blocks)?;
//! let mut back = vec![0f32; 256];
//! dequantize_rows(GgmlType::Q4K, &blocks, 256, &mut back)?;
//! assert!(row.iter().zip(&back).all(|(a, b)| (a - b).abs() < 0.1));
//! # Ok::<(), loraforge_quantize::QuantizeError>(())
//! ```
#![deny(missing_docs)]

mod blocks;
mod error;
mod fast;
#[cfg(target_arch = "x86_64")]
mod fast_avx2;
#[cfg(target_arch = "x86_64")]
mod fast_avx512;
mod fp;
mod ggml_type;
mod isa;
mod kernels;
pub mod recipe;
mod reference;

pub use blocks::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8_0, QK_K,
};
pub use error::QuantizeError;
pub use fp::{bf16_to_fp32, fp16_to_fp32, fp32_to_bf16, fp32_to_fp16};
pub use ggml_type::GgmlType;
pub use isa::{active_isa, set_isa_limit, Isa};
pub use kernels::{
    dequantize_rows, ensure_finite, find_non_finite, quantize_rows, quantize_rows_reference,
    quantize_rows_with_isa, validate_row_data, SUPPORTED_TYPES,
};
pub use recipe::{
    default_type, llama_tensor_order, plan_tensor_types, Fallback, FileType, ModelHparams,
    TensorDecision,
};
