use std::path::PathBuf;

/// Everything that can go wrong in a registry operation.
///
/// Variants carry the entry or path concerned; [`RegistryError::is_user_error`] tells the CLI
/// whether the user can fix it (bad name, missing entry…) or something failed underneath.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A filesystem operation on the store failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done (`"cannot read"`, `"cannot rename"` …).
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A record file in the store does not parse.
    #[error("corrupt store record {path}")]
    CorruptRecord {
        /// The record file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// Another loraforge process holds the store lock for longer than we wait.
    #[error("the store at {location} is locked by another loraforge process (waited {waited_secs} s); wait for it to finish, or check `loraforge jobs list`")]
    Locked {
        /// The store's location.
        location: String,
        /// How long we waited.
        waited_secs: u64,
    },
    /// No entry of that kind with that name.
    #[error("no {kind} model named '{name}' (see `loraforge {kind} list`)")]
    NotFound {
        /// `base`, `trained`, `saved` or `deployed`.
        kind: &'static str,
        /// The name looked up.
        name: String,
    },
    /// An entry with that name already exists.
    #[error("a {kind} model named '{name}' already exists")]
    AlreadyExists {
        /// The entry kind.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A name handed to the storage is not a single path component (a hand-edited store, or a
    /// name that would escape its folder).
    #[error("{name}: not a valid store entry name")]
    BadStoreName {
        /// The name.
        name: String,
    },
    /// A name given by the user is not acceptable.
    #[error(transparent)]
    InvalidName(#[from] loraforge_naming::NameError),
    /// An input the user gave is not usable, for a reason without an underlying error.
    #[error("{path}: {problem}")]
    BadInput {
        /// The path (or value) the user gave.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A file or folder the user named cannot be opened or read.
    #[error("{path}: cannot open {what}")]
    Unreadable {
        /// What it should have been (`"the base model folder"` …).
        what: &'static str,
        /// The path the user gave.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The folder given as a base model is not a usable Hugging Face model folder.
    #[error("{path}: not a usable Hugging Face model folder")]
    BadBaseModel {
        /// The folder.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<loraforge_hf_model::HfModelError>,
    },
    /// A deployment template does not parse as an Ollama Modelfile.
    #[error("{path}: the deployment template does not parse")]
    BadTemplate {
        /// The template file.
        path: PathBuf,
        /// The parse error, with its line.
        #[source]
        source: loraforge_ollama_client::ModelfileError,
    },
    /// The adapter's `adapter_config.json` is not usable.
    #[error("{path}: not a usable PEFT adapter")]
    BadAdapter {
        /// The adapter folder.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<loraforge_adapter_merge::MergeError>,
    },
    /// The adapter's `adapter_model.safetensors` is not a valid safetensors file (truncated,
    /// bad header).
    #[error("{path}: the adapter weights are not a valid safetensors file")]
    BadAdapterWeights {
        /// The user's adapter weights file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<loraforge_hf_model::HfModelError>,
    },
    /// The folder of a base model referenced in place was moved or deleted.
    #[error("{path}: the folder of base model '{name}' is gone; register it again (`loraforge base rm {name} --force` then `base add`)")]
    BaseFolderGone {
        /// The base technical name.
        name: String,
        /// The folder the base was registered from.
        path: PathBuf,
    },
    /// The generated deployed name is one Ollama would refuse.
    #[error("{name}: Ollama would reject this model name")]
    OllamaName {
        /// The name.
        name: String,
        /// Ollama's rule it breaks.
        #[source]
        source: loraforge_ollama_client::NameError,
    },
    /// Removing a base model that trained models still use.
    #[error(
        "base model '{name}' is used by trained models: {users}; remove them first or pass --force"
    )]
    BaseInUse {
        /// The base model.
        name: String,
        /// The trained models using it, comma separated.
        users: String,
    },
    /// A base model referenced by a trained model is gone.
    #[error("base model '{name}' of trained model '{trained}' is not in the store any more")]
    BaseMissing {
        /// The base technical name.
        name: String,
        /// The trained model.
        trained: String,
    },
    /// The trained model's adapter files were removed.
    #[error("trained model '{name}' has no adapter files any more")]
    AdapterRemoved {
        /// The trained model.
        name: String,
    },
    /// No job with this id.
    #[error("no job '{id}' (see `loraforge jobs list`)")]
    JobNotFound {
        /// The id looked up.
        id: String,
    },
    /// Cancelling a running job would stop the process asking for it: the job runs on one of
    /// its threads (the web UI's in-process runner).
    #[error("job {id} runs inside this process (pid {pid}); cancelling it here would stop this process too")]
    JobRunsInThisProcess {
        /// The job.
        id: String,
        /// This process.
        pid: u32,
    },
    /// A job ended in failure.
    #[error("job {id} failed: {message}")]
    JobFailed {
        /// The job.
        id: String,
        /// Its error.
        message: String,
    },
    /// Building or reading a model card failed.
    #[error(transparent)]
    Card(Box<loraforge_model_card::CardError>),
    /// The merge failed.
    #[error(transparent)]
    Merge(Box<loraforge_adapter_merge::MergeError>),
    /// The GGUF export failed.
    #[error(transparent)]
    Convert(Box<loraforge_export::ConvertError>),
    /// Quantizing the exported GGUF failed.
    #[error(transparent)]
    Quantize(Box<loraforge_export::QuantizeFileError>),
    /// The Ollama server refused or could not be reached.
    #[error(transparent)]
    Ollama(Box<loraforge_ollama_client::ClientError>),
    /// An export's output folder exists and is not empty.
    #[error("{path} already exists and is not empty; choose another --out or remove it")]
    OutputExists {
        /// The folder.
        path: PathBuf,
    },
    /// Writing the LoRA GGUF failed or the adapter has none.
    #[error(transparent)]
    LoraConvert(Box<loraforge_export::LoraConvertError>),
    /// Quantizing to NF4 (merged_4bit) failed.
    #[error(transparent)]
    Nf4(Box<loraforge_nf4::Nf4Error>),
    /// Writing a record or card in place (its staged temporary, or the rename) failed.
    #[error(transparent)]
    Staging(Box<loraforge_staging::StagingError>),
    /// The model was created but did not answer the smoke test.
    #[error("the smoke test of {model} failed; {cleanup}")]
    SmokeTestFailed {
        /// The Ollama model name.
        model: String,
        /// What happened to the model: deleted again, or left on the server and why.
        cleanup: String,
        /// Why generating failed.
        #[source]
        source: Box<loraforge_ollama_client::ClientError>,
    },
    /// A push to the Hugging Face Hub failed.
    #[error(transparent)]
    Hub(Box<loraforge_hub::HubError>),
    /// The saved model's files differ from the checksums recorded when it was saved.
    #[error("saved model '{name}': {file} changed since it was saved (sha256 {actual}, recorded {recorded}); save it again")]
    ChecksumMismatch {
        /// The saved model.
        name: String,
        /// The file that changed.
        file: String,
        /// Recorded digest.
        recorded: String,
        /// Current digest.
        actual: String,
    },
}

impl RegistryError {
    /// True when the user can fix the problem by changing what they asked for (a bad name, a
    /// missing entry, an unusable input folder…), false when something failed underneath.
    pub fn is_user_error(&self) -> bool {
        match self {
            RegistryError::NotFound { .. }
            | RegistryError::AlreadyExists { .. }
            | RegistryError::InvalidName(_)
            | RegistryError::BadStoreName { .. }
            | RegistryError::BadInput { .. }
            | RegistryError::Unreadable { .. }
            | RegistryError::BadBaseModel { .. }
            | RegistryError::BadTemplate { .. }
            | RegistryError::BadAdapter { .. }
            | RegistryError::BadAdapterWeights { .. }
            | RegistryError::BaseFolderGone { .. }
            | RegistryError::OllamaName { .. }
            | RegistryError::BaseInUse { .. }
            | RegistryError::BaseMissing { .. }
            | RegistryError::AdapterRemoved { .. }
            | RegistryError::JobNotFound { .. }
            | RegistryError::JobRunsInThisProcess { .. }
            | RegistryError::Locked { .. }
            | RegistryError::ChecksumMismatch { .. }
            | RegistryError::OutputExists { .. } => true,
            RegistryError::LoraConvert(e) => e.is_user_error(),
            RegistryError::Nf4(e) => e.is_user_error(),
            RegistryError::Staging(e) => e.is_user_error(),
            RegistryError::Card(e) => e.is_user_error(),
            RegistryError::Merge(e) => e.is_user_error(),
            RegistryError::Ollama(e) => e.is_user_error(),
            RegistryError::Convert(e) => e.is_user_error(),
            RegistryError::Quantize(e) => e.is_user_error(),
            RegistryError::Hub(e) => e.is_user_error(),
            RegistryError::Io { .. }
            | RegistryError::CorruptRecord { .. }
            | RegistryError::JobFailed { .. }
            | RegistryError::SmokeTestFailed { .. } => false,
        }
    }

    /// What to do next, when there is something specific to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::Locked { .. } => Some(
                "another loraforge command is changing the store; retry when it is done (LORAFORGE_LOCK_TIMEOUT sets the wait)".into(),
            ),
            RegistryError::JobRunsInThisProcess { .. } => Some(
                "wait for it to finish, or stop the process; jobs started by `loraforge serve` run in worker processes and can be cancelled".into(),
            ),
            RegistryError::CorruptRecord { .. } => Some(
                "the store was changed by hand or by another tool; restore the file, or remove the entry's folder".into(),
            ),
            RegistryError::Card(e) => e.hint(),
            RegistryError::Merge(e) => e.hint(),
            RegistryError::Ollama(e) => e.hint(),
            RegistryError::SmokeTestFailed { source, .. } => source.hint(),
            RegistryError::Convert(e) => e.hint(),
            RegistryError::Quantize(e) => e.hint(),
            RegistryError::LoraConvert(e) => e.hint(),
            RegistryError::Nf4(e) => e.hint(),
            RegistryError::Staging(e) => e.hint(),
            RegistryError::Hub(e) => e.hint(),
            _ => None,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| RegistryError::Io {
            action,
            path,
            source,
        }
    }
}

/// An error and its causes on one line (`error: cause: cause`, each text once): the error text
/// persisted in a job record, and the one-line form frontends show.
pub fn chain_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

/// The crates underneath have rich errors; boxing them keeps `Result<_, RegistryError>` small.
macro_rules! boxed_from {
    ($($variant:ident($source:ty)),* $(,)?) => {$(
        impl From<$source> for RegistryError {
            fn from(error: $source) -> Self {
                RegistryError::$variant(Box::new(error))
            }
        }
    )*};
}

boxed_from!(
    Card(loraforge_model_card::CardError),
    Merge(loraforge_adapter_merge::MergeError),
    Convert(loraforge_export::ConvertError),
    Quantize(loraforge_export::QuantizeFileError),
    Ollama(loraforge_ollama_client::ClientError),
    LoraConvert(loraforge_export::LoraConvertError),
    Nf4(loraforge_nf4::Nf4Error),
    Staging(loraforge_staging::StagingError),
    Hub(loraforge_hub::HubError),
);

/// Result alias for registry operations.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
