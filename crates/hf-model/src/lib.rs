//! `loraforge-hf-model`: Hugging Face model folders — `config.json`, (sharded) safetensors,
//! memory-mapped tensors, dtypes and a sharded writer laid out like `save_pretrained`.
//!
//! Principal types:
//! - [`HfModel`]: an opened folder (`model.safetensors`, or shards + `model.safetensors.index.json`),
//!   headers validated up front, tensors memory-mapped and handed out as [`TensorView`]s;
//! - [`read_safetensors_header`]: defensive header-only reading of one file;
//! - [`SafetensorsShardWriter`]: streams tensors into `model.safetensors` or
//!   `model-0000i-of-0000N.safetensors` + index, splitting shards like huggingface_hub;
//! - [`Dtype`] and the torch-exact rounding helpers [`f32_to_bf16`] / [`f32_to_f16`].
//!
//! ```
//! use loraforge_hf_model::{Dtype, HfModel, SafetensorsShardWriter, TensorSpec};
//!
//! let dir = std::env::temp_dir().join(format!("lf-hf-model-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! std::fs::write(dir.join("config.json"), r#"{"dtype": "bfloat16"}"#).unwrap();
//! let specs = vec![TensorSpec { name: "w".into(), dtype: Dtype::BF16, shape: vec![2, 2] }];
//! let mut writer = SafetensorsShardWriter::new(&dir, specs, 5_000_000_000, 4).unwrap();
//! let mut bytes = vec![0u8; 8];
//! loraforge_hf_model::encode_f32(Dtype::BF16, &[1.0, 2.0, 3.0, 4.0], &mut bytes);
//! writer.write_tensor("w", &bytes).unwrap();
//! writer.finish().unwrap();
//!
//! let model = HfModel::open(&dir).unwrap();
//! assert_eq!(model.config_dtype(), Some(Dtype::BF16));
//! assert_eq!(model.tensor("w").unwrap().to_f32_vec(), vec![1.0, 2.0, 3.0, 4.0]);
//! assert_eq!(model.parameter_count(), 4);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
#![deny(missing_docs)]

mod dtype;
mod header;
mod model;
mod tokens;
mod writer;

use std::path::PathBuf;

pub use dtype::{bf16_to_f32, decode_f32, encode_f32, f16_to_f32, f32_to_bf16, f32_to_f16, Dtype};
pub use header::{read_safetensors_header, SafetensorsHeader, TensorInfo, MAX_HEADER_LEN};
pub use model::{
    release_mapped, HfModel, SafetensorsFile, ShardIndex, TensorView, CONFIG_FILE, INDEX_FILE,
    SINGLE_FILE,
};
pub use tokens::stop_tokens;
pub use writer::{
    plan_shards, PlannedShard, SafetensorsShardWriter, TensorSpec, WrittenFile,
    DEFAULT_MAX_SHARD_SIZE,
};

/// Everything that can go wrong reading or writing a model folder.
#[derive(Debug, thiserror::Error)]
pub enum HfModelError {
    /// An I/O error on a file.
    #[error("I/O error on {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The folder has no `config.json`.
    #[error("{dir} has no config.json: not a Hugging Face model folder")]
    MissingConfig {
        /// The folder.
        dir: PathBuf,
    },
    /// `config.json` is not valid JSON.
    #[error("{path} is not valid JSON")]
    ConfigJson {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// `config.json` is JSON but not a config.
    #[error("{path}: {reason}")]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No `model.safetensors` and no `model.safetensors.index.json`.
    #[error("{dir} has neither model.safetensors nor model.safetensors.index.json")]
    NoWeights {
        /// The folder.
        dir: PathBuf,
    },
    /// The shard index is malformed.
    #[error("{path}: {reason}")]
    InvalidIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The index names a tensor that is not in the file it points at.
    #[error("{index} maps tensor {tensor:?} to {file}, which does not contain it")]
    IndexTensorMissing {
        /// The index file.
        index: PathBuf,
        /// The tensor.
        tensor: String,
        /// The file the index points at.
        file: PathBuf,
    },
    /// The same tensor name appears in two weight files.
    #[error("tensor {tensor:?} appears in both {first_file} and {second_file}")]
    DuplicateTensor {
        /// The tensor.
        tensor: String,
        /// First file.
        first_file: PathBuf,
        /// Second file.
        second_file: PathBuf,
    },
    /// A safetensors header names the same tensor twice (JSON readers keep the last one
    /// silently; which one is meant is unknowable).
    #[error("{path}: the header lists tensor {tensor:?} more than once; the file is corrupt or was edited by hand")]
    DuplicateHeaderEntry {
        /// The file.
        path: PathBuf,
        /// The repeated name.
        tensor: String,
    },
    /// A weight file of a model folder resolves (through a symlink) outside the folder, or is
    /// not a regular file.
    #[error(
        "{path} resolves to {target}, {problem}; refusing to read it as part of the model in {dir}"
    )]
    ShardOutsideFolder {
        /// The model folder.
        dir: PathBuf,
        /// The weight file as named in the folder.
        path: PathBuf,
        /// Where it resolves to.
        target: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The file is too short to hold what its header says.
    #[error("{path} is truncated ({file_len} bytes)")]
    TruncatedFile {
        /// The file.
        path: PathBuf,
        /// Its length.
        file_len: u64,
    },
    /// The header length field points past the end of the file.
    #[error("{path}: header length {header_len} points past the end of the file ({file_len} bytes): truncated or not a safetensors file")]
    HeaderPastEof {
        /// The file.
        path: PathBuf,
        /// The header length read from the first 8 bytes.
        header_len: u64,
        /// The file length.
        file_len: u64,
    },
    /// The header length is above [`MAX_HEADER_LEN`].
    #[error("{path}: header length {header_len} exceeds the {limit}-byte limit: corrupted or not a safetensors file")]
    HeaderTooLarge {
        /// The file.
        path: PathBuf,
        /// The header length.
        header_len: u64,
        /// The limit.
        limit: u64,
    },
    /// The header is not valid JSON.
    #[error("{path}: the safetensors header is not valid JSON")]
    HeaderJson {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The header JSON does not describe tensors properly.
    #[error("{path}: invalid safetensors header: {reason}")]
    InvalidHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tensor's dtype is not F32, F16 or BF16.
    #[error("{path}: tensor {tensor:?} has dtype {dtype}, only F32, F16 and BF16 are supported")]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// The dtype name in the header.
        dtype: String,
    },
    /// A tensor's offsets lie outside the data buffer or are reversed.
    #[error("{path}: tensor {tensor:?} has data_offsets [{begin}, {end}] outside the {buffer_len}-byte data buffer")]
    OffsetsOutOfRange {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Start offset.
        begin: u64,
        /// End offset.
        end: u64,
        /// Buffer length.
        buffer_len: u64,
    },
    /// Shape × dtype size disagrees with the byte range.
    #[error("{path}: tensor {tensor:?} ({dtype} {shape:?}) spans {byte_len} bytes, which does not match its shape")]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its dtype.
        dtype: Dtype,
        /// Its shape.
        shape: Vec<usize>,
        /// Bytes between its offsets.
        byte_len: u64,
    },
    /// Two tensors share bytes.
    #[error("{path}: tensors {first:?} and {second:?} overlap")]
    OverlappingTensors {
        /// The file.
        path: PathBuf,
        /// The earlier tensor.
        first: String,
        /// The later tensor.
        second: String,
    },
    /// Bytes between two tensors belong to none.
    #[error(
        "{path}: bytes {offset}..{next_offset} before tensor {next_tensor:?} belong to no tensor"
    )]
    Hole {
        /// The file.
        path: PathBuf,
        /// Start of the gap.
        offset: u64,
        /// The tensor after the gap.
        next_tensor: String,
        /// Where it starts.
        next_offset: u64,
    },
    /// The buffer is longer than the tensors cover.
    #[error("{path}: tensors cover {covered} bytes of a {buffer_len}-byte data buffer")]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Bytes covered.
        covered: u64,
        /// Buffer length.
        buffer_len: u64,
    },
    /// No tensor of that name.
    #[error("no tensor {tensor:?} in the model at {dir}")]
    TensorNotFound {
        /// The tensor.
        tensor: String,
        /// The model folder.
        dir: PathBuf,
    },
    /// An output buffer has the wrong length.
    #[error("buffer for tensor {tensor:?} holds {got} values, {expected} needed")]
    BufferSize {
        /// The tensor.
        tensor: String,
        /// Elements needed.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// A tensor's byte size overflows.
    #[error("tensor {tensor:?} is too large")]
    TensorTooLarge {
        /// The tensor.
        tensor: String,
    },
    /// Tensors written out of the planned order.
    #[error("writer expected {expected:?} next, got {got:?}")]
    WriteOrder {
        /// The tensor the plan expects (`None`: all written).
        expected: Option<String>,
        /// What the caller wrote.
        got: String,
    },
    /// More bytes than the tensor holds.
    #[error("tensor {tensor:?}: {got} bytes written, {expected} expected")]
    WriteSize {
        /// The tensor.
        tensor: String,
        /// Bytes still expected.
        expected: u64,
        /// Bytes given.
        got: u64,
    },
    /// `finish` before every tensor was written.
    #[error("writer finished before tensor {tensor:?} was written")]
    WriteIncomplete {
        /// The first tensor not written.
        tensor: String,
    },
}

impl HfModelError {
    /// True when the model folder or its files are at fault (missing, malformed, unsupported),
    /// false when I/O failed underneath or the writer was misused.
    pub fn is_user_error(&self) -> bool {
        !matches!(
            self,
            HfModelError::Io { .. }
                | HfModelError::BufferSize { .. }
                | HfModelError::TensorTooLarge { .. }
                | HfModelError::WriteOrder { .. }
                | HfModelError::WriteSize { .. }
                | HfModelError::WriteIncomplete { .. }
        )
    }

    /// What to do next, when there is something specific to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            HfModelError::NoWeights { .. } => Some(
                "convert PyTorch .bin weights to safetensors first (`model.save_pretrained(dir, safe_serialization=True)`)".into(),
            ),
            HfModelError::UnsupportedDtype { .. } => {
                Some("load and save the model in bf16, f16 or f32 first".into())
            }
            _ => None,
        }
    }
}
