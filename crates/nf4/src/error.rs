use std::path::PathBuf;

/// Everything that can go wrong writing a merged_4bit folder.
#[derive(Debug, thiserror::Error)]
pub enum Nf4Error {
    /// Reading the source model failed.
    #[error("cannot read the model folder {dir}")]
    Model {
        /// The source folder.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: loraforge_hf_model::HfModelError,
    },
    /// The merge feeding a merged_4bit save failed (bad adapter, inf/NaN in a merged tensor…).
    #[error(transparent)]
    Merge(Box<loraforge_adapter_merge::MergeError>),
    /// An I/O error on a file.
    #[error("I/O error on {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The output folder already exists.
    #[error("{path} already exists; choose a new folder (merged_4bit never overwrites)")]
    OutputExists {
        /// The folder.
        path: PathBuf,
    },
    /// The model is already quantized.
    #[error("{path} already has a quantization_config ({method}); quantize a 16/32-bit model")]
    AlreadyQuantized {
        /// The config file.
        path: PathBuf,
        /// Its `quant_method`.
        method: String,
    },
    /// The architecture's module layout is not known to this writer.
    #[error("model_type {model_type:?} is not supported by merged_4bit (supported: {supported})")]
    UnsupportedArchitecture {
        /// `config.json`'s `model_type`.
        model_type: String,
        /// The supported ones.
        supported: String,
    },
    /// A weight holds NaN or infinity: bitsandbytes' block scales would be meaningless.
    #[error("tensor {tensor} holds a non-finite value (NaN or infinity); NF4 cannot block it")]
    NonFinite {
        /// The tensor.
        tensor: String,
    },
    /// A weight to quantize is not a matrix.
    #[error("tensor {tensor} has shape {shape:?}; a Linear weight to quantize must be 2-D and non-empty")]
    BadShape {
        /// The tensor.
        tensor: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// `config.json` is malformed.
    #[error("{path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl From<loraforge_adapter_merge::MergeError> for Nf4Error {
    fn from(e: loraforge_adapter_merge::MergeError) -> Self {
        Nf4Error::Merge(Box::new(e))
    }
}

impl Nf4Error {
    /// Whether the error comes from the input or the request (not from a failure underneath).
    pub fn is_user_error(&self) -> bool {
        match self {
            Nf4Error::Merge(e) => e.is_user_error(),
            Nf4Error::Io { .. } => false,
            _ => true,
        }
    }

    /// What to do next, where there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Nf4Error::Merge(e) => e.hint(),
            Nf4Error::OutputExists { .. } => Some("pass a folder that does not exist yet".into()),
            Nf4Error::UnsupportedArchitecture { .. } => {
                Some("export merged_16bit or GGUF instead".into())
            }
            Nf4Error::NonFinite { .. } => {
                Some("the merge produced NaN/inf: check the adapter's scaling".into())
            }
            _ => None,
        }
    }
}
