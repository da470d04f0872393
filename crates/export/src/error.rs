//! Everything that can stop a conversion, one variant per failure.

use std::path::PathBuf;

/// Why a conversion failed. No output file is left behind in any of these cases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// The output path cannot take a file, or a temporary failed.
    #[error(transparent)]
    Staging(#[from] loraforge_staging::StagingError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is missing from the model folder.
    #[error("{path} not found: a Hugging Face model folder needs a config.json")]
    MissingConfig {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A JSON file (config, tokenizer, index) could not be parsed.
    #[error("{path} is not valid JSON")]
    InvalidJson {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON file parses but does not have the expected shape.
    #[error("{path}: {problem}")]
    JsonShape {
        /// The file.
        path: PathBuf,
        /// What is wrong (`the top level is not an object` …).
        problem: String,
    },
    /// A required hyperparameter is missing or has the wrong type.
    #[error("config.json: {key} is missing or not {expected}")]
    MissingHparam {
        /// The key (or list of accepted keys).
        key: String,
        /// What kind of value was expected.
        expected: &'static str,
    },
    /// `config.json` names an architecture this converter does not handle.
    #[error("unsupported architecture {arch:?}; supported are: {supported}")]
    UnsupportedArchitecture {
        /// The `architectures[0]` value.
        arch: String,
        /// Comma-separated list of supported architectures.
        supported: String,
    },
    /// A model feature (MoE, an unknown rope type …) this converter does not handle.
    #[error("unsupported model feature: {0}")]
    UnsupportedFeature(String),
    /// No `model*.safetensors` file in the folder.
    #[error("no model*.safetensors weights in {dir} (PyTorch .bin checkpoints are not read: they are pickles)")]
    NoWeights {
        /// The model folder.
        dir: PathBuf,
    },
    /// A shard listed in `model.safetensors.index.json` is missing.
    #[error("shard {path} listed in the index is missing ({} tensors: {tensors:?})", tensors.len())]
    MissingShard {
        /// The missing file.
        path: PathBuf,
        /// Tensors the index says live there.
        tensors: Vec<String>,
    },
    /// The index lists tensors the shards do not contain.
    #[error("{path} lists tensors that no shard contains: {missing:?}")]
    IndexMismatch {
        /// The index file.
        path: PathBuf,
        /// Names missing from the shards.
        missing: Vec<String>,
    },
    /// A safetensors file is malformed.
    #[error("{path}: invalid safetensors file")]
    InvalidSafetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: loraforge_hf_model::HfModelError,
    },
    /// A tensor's data offset overflows (a malformed header).
    #[error("{path}: tensor {tensor:?}: data offset overflows")]
    OffsetOverflow {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
    },
    /// The shard index of the model folder is unusable.
    #[error("cannot read the weights of {dir}")]
    Weights {
        /// The model folder.
        dir: PathBuf,
        /// What is wrong with the index.
        #[source]
        source: loraforge_hf_model::HfModelError,
    },
    /// A tensor name has no GGUF equivalent for this architecture.
    #[error("tensor {tensor}: no GGUF name for it in architecture {arch}")]
    UnmappedTensor {
        /// HF tensor name.
        tensor: String,
        /// GGUF architecture.
        arch: String,
    },
    /// A tensor every layer needs is missing.
    #[error("layer {layer} is missing {tensor} (the weights are incomplete: was the model saved completely?)")]
    MissingLayerTensor {
        /// Block index.
        layer: usize,
        /// HF tensor name expected.
        tensor: String,
    },
    /// A tensor has a shape that contradicts the config.
    #[error("tensor {tensor}: shape {got:?}, expected {expected}")]
    ShapeMismatch {
        /// HF tensor name.
        tensor: String,
        /// What the config implies.
        expected: String,
        /// What the file holds.
        got: Vec<usize>,
    },
    /// The embedding matrix and `vocab_size` disagree.
    #[error(
        "vocab_size {config_vocab} in config.json does not match the {embedding_rows} rows of {tensor}; \
         this usually happens after adding tokens to the tokenizer without resizing the embeddings \
         (model.resize_token_embeddings(len(tokenizer))) or without saving the updated config"
    )]
    VocabSizeMismatch {
        /// `vocab_size` from config.json.
        config_vocab: usize,
        /// Rows of the embedding tensor.
        embedding_rows: usize,
        /// The embedding tensor's HF name.
        tensor: String,
    },
    /// The tokenizer has ids beyond the model's vocabulary.
    #[error(
        "the tokenizer has token id {max_id} ({token:?}) but the model's vocab_size is {vocab_size}; \
         tokens were added to the tokenizer after the model was sized: resize the embeddings \
         (model.resize_token_embeddings(len(tokenizer))) and save the model again"
    )]
    TokenizerLargerThanModel {
        /// Largest token id of the tokenizer.
        max_id: usize,
        /// That token's text.
        token: String,
        /// `vocab_size` from config.json.
        vocab_size: usize,
    },
    /// No tokenizer files found.
    #[error("no tokenizer in {dir}: need tokenizer.model (SentencePiece) or tokenizer.json")]
    MissingTokenizer {
        /// The model folder.
        dir: PathBuf,
    },
    /// The tokenizer files are malformed.
    #[error("{path}: invalid tokenizer: {message}")]
    InvalidTokenizer {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The BPE pre-tokenizer is neither a known published one nor recognisable from its regex.
    #[error(
        "cannot identify the BPE pre-tokenizer (check hash {chkhsh}, pre-tokenizer {description}); \
         pass the llama.cpp pre-tokenizer name explicitly (e.g. llama-bpe, qwen2, gpt-2) if you know it"
    )]
    UnknownPreTokenizer {
        /// sha256 of the token ids of llama.cpp's check string.
        chkhsh: String,
        /// A short description of the tokenizer's pre-tokenizer config.
        description: String,
    },
    /// A GGUF tensor name is longer than ggml's 63-byte limit.
    #[error("GGUF tensor name {name:?} is {len} bytes; ggml accepts at most 63")]
    TensorNameTooLong {
        /// The name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The output file would be written inside the model folder being read.
    #[error("output {out} is inside the model folder {dir}; write the GGUF elsewhere")]
    OutputInsideInput {
        /// The output path.
        out: PathBuf,
        /// The model folder.
        dir: PathBuf,
    },
    /// The output type is not available.
    #[error("output type {0} is not supported by the converter")]
    UnsupportedOutType(String),
    /// Writing the GGUF failed.
    #[error("writing GGUF {path}")]
    Write {
        /// The output path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: loraforge_gguf::WriteError,
    },
    /// Quantizing the converted model (k-quant targets) failed.
    #[error("quantizing the converted model")]
    Quantize(#[source] Box<crate::QuantizeFileError>),
    /// The adapter folder given to merge in does not exist.
    #[error("adapter folder {path} not found")]
    MissingAdapter {
        /// The path given.
        path: PathBuf,
    },
    /// The adapter cannot be merged into the model (another base, shapes that do not fit, a
    /// feature the merge refuses …).
    #[error("cannot merge the adapter {adapter} into the model {base}")]
    Adapter {
        /// The adapter folder.
        adapter: PathBuf,
        /// The base model folder.
        base: PathBuf,
        /// Why.
        #[source]
        source: Box<loraforge_adapter_merge::MergeError>,
    },
}

impl ConvertError {
    /// True when the input or the request is at fault (a folder that is not a supported model,
    /// malformed files, an output path inside the input) rather than the machine or a bug.
    pub fn is_user_error(&self) -> bool {
        match self {
            ConvertError::Io { .. } => false,
            ConvertError::Write { source, .. } => source.is_user_error(),
            ConvertError::Quantize(e) => e.is_user_error(),
            ConvertError::Adapter { source, .. } => source.is_user_error(),
            _ => true,
        }
    }

    /// What to do next, when there is something more to say than the message.
    pub fn hint(&self) -> Option<String> {
        match self {
            ConvertError::NoWeights { .. } => Some(
                "save the model with safe_serialization=True (the default of recent transformers)"
                    .into(),
            ),
            ConvertError::InvalidSafetensors { .. } | ConvertError::MissingShard { .. } => {
                Some("the weights look incomplete: copy or download the model again".into())
            }
            ConvertError::Write { source, .. } => source.hint(),
            ConvertError::Quantize(e) => e.hint(),
            ConvertError::Adapter { source, .. } => source.hint(),
            ConvertError::MissingAdapter { .. } => Some(
                "give the folder holding adapter_config.json and adapter_model.safetensors".into(),
            ),
            _ => None,
        }
    }
}
