//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong pushing to the Hub.
///
/// No variant ever carries the token: messages name the endpoint, the repository and the file.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The repository id is not `owner/name` as the Hub spells it.
    #[error("invalid Hub repository id {repo_id:?}: {reason}")]
    InvalidRepoId {
        /// The id given.
        repo_id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A path inside the repository the Hub would refuse.
    #[error("invalid path in the repository {path:?}: {reason}")]
    InvalidPathInRepo {
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The endpoint is not an http(s) URL.
    #[error("invalid Hub endpoint {value:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as configured.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A token would travel in clear text to a machine other than this one.
    #[error("refusing to send the Hub token over plain http to {endpoint}: use an https endpoint (plain http is allowed only for localhost)")]
    InsecureEndpoint {
        /// The endpoint.
        endpoint: String,
    },
    /// No token was found anywhere.
    #[error("no Hugging Face token: pass --token, set HF_TOKEN, or log in with `hf auth login` (it writes {token_file})")]
    NoToken {
        /// Where the token file was looked for.
        token_file: String,
    },
    /// The token file exists but cannot be read.
    #[error("cannot read the Hugging Face token file {path}")]
    TokenFile {
        /// The token file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// HTTP 401: the token is missing, wrong or expired.
    #[error("the Hub refused the token for {operation} (HTTP 401): {message}")]
    Unauthorized {
        /// What was being done.
        operation: String,
        /// The Hub's message.
        message: String,
    },
    /// HTTP 403: the token is valid but may not write there.
    #[error("the Hub forbids {operation} (HTTP 403): {message}")]
    Forbidden {
        /// What was being done.
        operation: String,
        /// The Hub's message.
        message: String,
    },
    /// HTTP 404 with `X-Error-Code: RepoNotFound`.
    #[error("repository {repo} not found on the Hub ({operation})")]
    RepoNotFound {
        /// The repository.
        repo: String,
        /// What was being done.
        operation: String,
    },
    /// HTTP 404 with `X-Error-Code: RevisionNotFound`.
    #[error("revision {revision:?} not found in {repo} ({operation})")]
    RevisionNotFound {
        /// The repository.
        repo: String,
        /// The revision.
        revision: String,
        /// What was being done.
        operation: String,
    },
    /// Any other HTTP error status.
    #[error("the Hub answered HTTP {status} to {operation}: {message}")]
    Http {
        /// What was being done.
        operation: String,
        /// HTTP status code.
        status: u16,
        /// The Hub's message (the `X-Error-Message` header, the JSON `error`, or the body).
        message: String,
    },
    /// The connection failed or broke (after the retries, where the request is retried).
    #[error("cannot reach {host} for {operation}")]
    Transport {
        /// Scheme, host and port (never the full URL: pre-signed URLs carry signatures).
        host: String,
        /// What was being done.
        operation: String,
        /// The transport error (its URL removed).
        #[source]
        source: reqwest::Error,
    },
    /// The Hub's answer could not be understood.
    #[error("unexpected answer from the Hub to {operation}: {message}")]
    Protocol {
        /// What was being done.
        operation: String,
        /// What was wrong.
        message: String,
    },
    /// The LFS batch endpoint refused one object.
    #[error("the Hub refused to store {path} (LFS error {code}): {message}")]
    LfsObject {
        /// The file.
        path: String,
        /// The LFS error code.
        code: i64,
        /// The LFS error message.
        message: String,
    },
    /// The README's YAML metadata was refused by the Hub's validator.
    #[error("the Hub refused the README.md metadata: {message}")]
    InvalidMetadata {
        /// The validator's errors, one per line.
        message: String,
    },
    /// A local file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file no longer matches the size or SHA-256 recorded for it.
    #[error("{path} changed since it was recorded (expected {expected}, found {actual}); nothing was committed")]
    FileChanged {
        /// The local file.
        path: PathBuf,
        /// What was recorded.
        expected: String,
        /// What the file holds now.
        actual: String,
    },
    /// A file is larger than the Hub accepts for one file.
    #[error("{path} is {size} bytes, over the Hub's limit of {limit} bytes per file")]
    FileTooLarge {
        /// The local file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Two files of one push have the same path in the repository.
    #[error("{path:?} is given twice in one push")]
    DuplicatePath {
        /// The path in the repository.
        path: String,
    },
}

impl HubError {
    /// True when the cause is the user's input or account (a bad id, token, permission, a file
    /// that changed) rather than a failure underneath (network, server, protocol).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            HubError::InvalidRepoId { .. }
                | HubError::InvalidPathInRepo { .. }
                | HubError::InvalidEndpoint { .. }
                | HubError::InsecureEndpoint { .. }
                | HubError::NoToken { .. }
                | HubError::Unauthorized { .. }
                | HubError::Forbidden { .. }
                | HubError::RepoNotFound { .. }
                | HubError::RevisionNotFound { .. }
                | HubError::InvalidMetadata { .. }
                | HubError::FileChanged { .. }
                | HubError::FileTooLarge { .. }
                | HubError::DuplicatePath { .. }
        )
    }

    /// What to do next, when there is something useful to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            HubError::InvalidRepoId { .. } => Some(
                "a repository id is `owner/name`: letters, digits, `-`, `_` and `.`, at most 96 characters per part"
                    .to_owned(),
            ),
            HubError::InsecureEndpoint { .. } => {
                Some("set HF_ENDPOINT to an https:// URL".to_owned())
            }
            HubError::NoToken { .. } => Some(
                "create a token with write access at https://huggingface.co/settings/tokens".to_owned(),
            ),
            HubError::Unauthorized { .. } => Some(
                "check the token (--token, HF_TOKEN or the token file): it may be mistyped, revoked or expired"
                    .to_owned(),
            ),
            HubError::Forbidden { .. } => Some(
                "the token needs write access to this namespace: push to your own namespace or ask the owner for access"
                    .to_owned(),
            ),
            HubError::RevisionNotFound { .. } => {
                Some("push to an existing branch (for example --revision main)".to_owned())
            }
            HubError::FileChanged { .. } => Some(
                "the stored file was modified after loraforge recorded it; recreate the entry instead of editing its files"
                    .to_owned(),
            ),
            HubError::FileTooLarge { .. } => Some(
                "split the GGUF with llama.cpp's `gguf-split --split` and push the parts".to_owned(),
            ),
            HubError::Transport { .. } => {
                Some("check the network connection and HF_ENDPOINT, then push again: uploaded files are not sent twice".to_owned())
            }
            HubError::Http { status, .. } if *status >= 500 => Some(
                "the Hub had a problem; push again later: uploaded files are not sent twice".to_owned(),
            ),
            _ => None,
        }
    }
}
