//! `loraforge-gguf`: the GGUF v3 file format — metadata, a streaming writer, a validating
//! reader and the `inspect` summary (`loraforge inspect`).
//!
//! This crate knows the format only. The pipelines that produce GGUF files (Hugging Face →
//! GGUF conversion and GGUF → GGUF quantization, `loraforge convert` / `loraforge quantize`) live
//! in `loraforge-export`; the block formats and the per-tensor type recipe in
//! `loraforge-quantize`.
//!
//! # Byte layout (little-endian; ggml `docs/gguf.md`, `src/gguf.cpp`)
//!
//! ```text
//! "GGUF" | u32 version=3 | u64 tensor_count | u64 kv_count
//! kv_count × { string key | u32 value_type | value }        string = u64 len + UTF-8 bytes
//! tensor_count × { string name (≤ 63 bytes) | u32 n_dims (≤ 4) | u64 ne[n_dims] (ne[0] = row length)
//!                  | u32 ggml_type | u64 offset (from the data section) }
//! zero padding to ALIGNMENT (`general.alignment`, u32, default 32)
//! tensor data, in tensor-info order, each padded with zeros to ALIGNMENT
//! ```
//!
//! Principal types: [`GgufWriter`] (+ [`TensorSource`], the seam through which tensor data is
//! streamed), [`GgufFile`] (memory-mapped, validated reader), [`Metadata`] / [`MetadataValue`],
//! and [`inspect()`] (the summary `loraforge inspect` prints).
//!
//! ```
//! use loraforge_gguf::{GgufFile, GgufWriter, MetadataValue, SourceError, TensorInfo};
//! use loraforge_quantize::GgmlType;
//!
//! let mut w = GgufWriter::new();
//! w.set("general.architecture", "llama").set("llama.block_count", 1u32);
//! w.add_tensor(TensorInfo::new("output_norm.weight", GgmlType::F32, vec![2]))?;
//! let mut bytes = Vec::new();
//! w.write_to(&mut bytes, &mut |_i: usize, _t: &TensorInfo, out: &mut dyn std::io::Write| -> Result<(), SourceError> {
//!     out.write_all(&[0, 0, 128, 63, 0, 0, 0, 64])?; // 1.0f32, 2.0f32
//!     Ok(())
//! })?;
//!
//! let file = GgufFile::from_bytes(bytes)?;
//! assert_eq!(file.metadata().get("llama.block_count"), Some(&MetadataValue::U32(1)));
//! assert_eq!(file.tensors()[0].info.dims, [2]);
//! assert_eq!(file.tensor_data(0), [0, 0, 128, 63, 0, 0, 0, 64]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod inspect;
mod metadata;
mod reader;
mod tensor;
mod writer;

pub use inspect::{inspect, InspectOptions, InspectReport, MetadataSummary, TensorSummary};
pub use metadata::{Metadata, MetadataArray, MetadataValue, MetadataValueType};
pub use reader::{
    FormatError, GgufFile, GgufHeader, ReadError, TensorEntry, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN,
    MAX_STRING_LEN,
};
pub use tensor::{
    TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, MAX_ALIGNMENT,
    MAX_DIMS, MAX_TENSOR_NAME_LEN,
};
pub use writer::{
    GgufLayout, GgufWriter, SourceError, TensorSource, WriteError, WriteOptions, WrittenFile,
};
