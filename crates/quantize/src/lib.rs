//! ggml block quantization, bit-exact with ggml's reference quantizers, and the llama.cpp
//! "ftype" mixture policy (which tensor gets which block type for Q8_0 / Q4_K_M / Q4_K_S).
//!
//! This crate does no I/O: it turns rows of `f32` into ggml blocks and back, and decides types.
//! The GGUF file pipeline that uses it lives in `loraforge-gguf-writer`.
//!
//! ```
//! use loraforge_quantize::GgmlType;
//! assert_eq!(GgmlType::Q4K.row_size(4096), Some(2304));
//! ```
#![deny(missing_docs)]

mod ggml_type;

pub use ggml_type::GgmlType;
