//! The client's error type.

use std::path::PathBuf;

use crate::name::NameError;

/// Everything that can go wrong talking to Ollama.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configured host cannot be turned into an http(s) URL.
    #[error("invalid Ollama host {value:?}: {reason}")]
    InvalidHost {
        /// The host as configured.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection could be made.
    #[error("cannot reach the Ollama server at {host} ({operation}): start it with `ollama serve`, or set OLLAMA_HOST (or --host) to where it runs")]
    Unreachable {
        /// Base URL tried.
        host: String,
        /// What was being done.
        operation: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A connect, request or read timeout expired.
    #[error("{operation} on the Ollama server at {host} timed out")]
    Timeout {
        /// Base URL.
        host: String,
        /// What was being done.
        operation: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The connection broke after it was established (reset, closed mid-transfer).
    #[error("the connection to the Ollama server at {host} failed during {operation}")]
    Transport {
        /// Base URL.
        host: String,
        /// What was being done.
        operation: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an HTTP error status; `message` is Ollama's `error` text.
    #[error("Ollama {operation} failed: HTTP {status}: {message}")]
    Http {
        /// What was being done.
        operation: String,
        /// HTTP status code.
        status: u16,
        /// Ollama's error message (or the body / reason phrase).
        message: String,
    },
    /// The server reported an error inside a progress stream that had already started.
    #[error("Ollama {operation} failed: {message}")]
    Stream {
        /// What was being done.
        operation: String,
        /// Ollama's error message.
        message: String,
    },
    /// The response could not be understood.
    #[error("unexpected response from Ollama for {operation}: {message}")]
    Protocol {
        /// What was being done.
        operation: String,
        /// What was wrong.
        message: String,
    },
    /// A file's bytes do not hash to the digest it is being uploaded under.
    #[error("{path} does not match its recorded digest (expected {expected}, the bytes hash to {actual}); the file changed since it was recorded")]
    DigestMismatch {
        /// The local file.
        path: PathBuf,
        /// The digest it was recorded (and uploaded) under.
        expected: String,
        /// What its bytes hash to (as reported by the server, or computed locally).
        actual: String,
    },
    /// A digest string is not `sha256:` followed by 64 hex digits.
    #[error("invalid blob digest {digest:?}: expected \"sha256:\" followed by 64 hex digits")]
    InvalidDigest {
        /// The digest given.
        digest: String,
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
    /// The model name would be rejected by Ollama.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A quantization type Ollama's create does not accept.
    #[error(
        "Ollama cannot quantize to {quantize:?}; supported: q8_0, q4_K_M, q4_K_S, f16, bf16, f32"
    )]
    UnsupportedQuantize {
        /// The requested type.
        quantize: String,
    },
    /// Create reported success but the model is not there.
    #[error("Ollama reported success creating {model} but does not show it")]
    NotCreated {
        /// The model name.
        model: String,
    },
}

impl ClientError {
    /// True for an HTTP 404 (model or blob not found).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Http { status: 404, .. })
    }

    /// True when the server could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }

    /// True when what the caller asked for is at fault (a host that is no URL, a model name or
    /// quantization Ollama refuses, a file that changed, a bad digest); false when the server or
    /// the connection failed.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            ClientError::InvalidHost { .. }
                | ClientError::InvalidName(_)
                | ClientError::UnsupportedQuantize { .. }
                | ClientError::DigestMismatch { .. }
                | ClientError::InvalidDigest { .. }
        )
    }

    /// What to do next, fitted to the cause: "is Ollama running?" only when no connection could
    /// be made, never for an answer from a running server.
    pub fn hint(&self) -> Option<String> {
        match self {
            ClientError::Unreachable { .. } => Some(
                "is Ollama running? start it with `ollama serve`, or point OLLAMA_HOST / --host at your server".into(),
            ),
            ClientError::InvalidHost { .. } => Some(
                "OLLAMA_HOST / --host takes `host`, `host:port` or `http(s)://host:port/path`".into(),
            ),
            ClientError::Timeout { .. } => Some(
                "the server is reachable but slow to answer; check its load and logs (`ollama serve` output), then retry".into(),
            ),
            ClientError::Transport { .. } => {
                Some("the connection dropped mid-transfer; retry, and check the server's logs".into())
            }
            ClientError::Http { status: 404, .. } => {
                Some("the server does not have that model or blob (`ollama list` shows its models)".into())
            }
            ClientError::Http { status, .. } if (400..500).contains(status) => Some(
                "the server refused the request; its message above says why (an older Ollama may not support it: `ollama --version`)".into(),
            ),
            ClientError::Http { .. } | ClientError::Stream { .. } => {
                Some("the server failed; its logs (`ollama serve` output) say more".into())
            }
            ClientError::DigestMismatch { .. } => {
                Some("the file changed while it was being deployed; retry".into())
            }
            _ => None,
        }
    }
}
