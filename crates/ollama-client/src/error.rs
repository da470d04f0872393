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
    /// Ollama refused an upload because the bytes it received do not hash to the digest the
    /// file was sent under, and the file itself now hashes to something else: it changed after
    /// loraforge hashed it (or recorded its digest).
    #[error("Ollama refused {path}: it was sent as {expected} (the digest loraforge recorded for it), the server computed {server_computed} from the bytes it received, and loraforge now computes {local_now} from the file; the file changed after its digest was recorded")]
    DigestMismatch {
        /// The local file.
        path: PathBuf,
        /// The digest it was recorded (and uploaded) under.
        expected: String,
        /// What the server computed from the bytes it received.
        server_computed: String,
        /// What loraforge computes from the file now, after the refusal.
        local_now: String,
    },
    /// Ollama refused an upload because the bytes it received do not hash to the digest the
    /// file was sent under, although the file still hashes to that digest here: the bytes
    /// changed between this machine and the server's store.
    #[error("Ollama refused {path}: it was sent as {expected}, the server computed {server_computed} from the bytes it received, but loraforge computes {expected} from the file again; the bytes changed on the way or on the server (a proxy, a full or failing disk), not in the file")]
    UploadCorrupted {
        /// The local file.
        path: PathBuf,
        /// The digest it was sent under, which loraforge computed again from the file.
        expected: String,
        /// What the server computed from the bytes it received.
        server_computed: String,
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
    /// An upload made no progress: the server accepted no bytes (or, after the last byte, sent
    /// no answer) for the stall window.
    #[error("{operation} on the Ollama server at {host} stalled: no progress for {idle_secs} s after {sent} of {total} bytes")]
    Stalled {
        /// Base URL.
        host: String,
        /// What was being done.
        operation: String,
        /// The stall window, in seconds.
        idle_secs: u64,
        /// Bytes handed to the connection before it stalled.
        sent: u64,
        /// Bytes to send in all.
        total: u64,
    },
    /// The connection broke (or the stream ended) during create, and the server does not have
    /// the model afterwards.
    #[error("the connection to the Ollama server broke while it was creating {model} (last status: {last_status}); the server does not have the model, so nothing was created")]
    CreateInterrupted {
        /// The model name.
        model: String,
        /// The last status line received (`none` when none came).
        last_status: String,
        /// What broke.
        #[source]
        source: Box<ClientError>,
    },
    /// The server is older than a feature the request needs.
    #[error("the Ollama server at {host} is version {version}; {feature} needs Ollama {needed} or newer: upgrade Ollama (https://ollama.com/download)")]
    ServerTooOld {
        /// Base URL.
        host: String,
        /// The version it reports.
        version: String,
        /// What needs the newer version.
        feature: &'static str,
        /// The first version that has it.
        needed: String,
    },
    /// Ollama's `quantize` only takes F16, BF16 and F32 sources.
    #[error("Ollama quantizes only F16, BF16 and F32 models; {path} is {source_type}: upload an F16/BF16/F32 GGUF or quantize it locally")]
    QuantizeSourceType {
        /// The GGUF file.
        path: PathBuf,
        /// Its file type.
        source_type: String,
    },
    /// The connection broke during create and the server still lists, under the model's name,
    /// the model it had before (same manifest digest): the new one was not written.
    #[error("the connection to the Ollama server broke while it was creating {model}, and the server still has the earlier model of that name (digest {digest}): the new model was not created")]
    CreateUnconfirmed {
        /// The model name.
        model: String,
        /// The manifest digest listed before and after the create.
        digest: String,
    },
    /// Create reported success but the model is not there.
    #[error("Ollama reported success creating {model} but does not show it")]
    NotCreated {
        /// The model name.
        model: String,
    },
}

impl ClientError {
    /// True when trying again later may succeed: connection failures, timeouts, stalls, 408,
    /// 429 and server errors, except server errors that say the server's disk is full, read-only
    /// or not writable (those stay until someone fixes the server).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::Timeout { .. }
            | ClientError::Transport { .. }
            | ClientError::Stalled { .. } => true,
            ClientError::Http {
                status, message, ..
            } => match *status {
                408 | 429 => true,
                501 | 505 => false,
                500..=599 => !is_permanent_server_failure(message),
                _ => false,
            },
            _ => false,
        }
    }

    /// True for an HTTP 404 (model or blob not found).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Http { status: 404, .. })
    }

    /// True when the server could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }

    /// True when what the caller asked for is at fault (a host that is no URL, a model name or
    /// quantization Ollama refuses, a file that changed, a bad digest, a server too old for the
    /// request, a GGUF type Ollama cannot quantize from); false when the server or the
    /// connection failed.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            ClientError::InvalidHost { .. }
                | ClientError::InvalidName(_)
                | ClientError::UnsupportedQuantize { .. }
                | ClientError::DigestMismatch { .. }
                | ClientError::InvalidDigest { .. }
                | ClientError::ServerTooOld { .. }
                | ClientError::QuantizeSourceType { .. }
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
            ClientError::ServerTooOld { needed, .. } => Some(format!(
                "upgrade the Ollama server to {needed} or newer (https://ollama.com/download)"
            )),
            ClientError::Stalled { .. } => Some(
                "the server or the network is too slow or stuck; run the command again (a blob \
                 the server already holds is not sent again), or raise --stall-timeout"
                    .into(),
            ),
            ClientError::Timeout { .. } => Some(
                "the server is reachable but slow to answer; check its load and logs (`ollama serve` output), then retry".into(),
            ),
            ClientError::CreateInterrupted { .. } | ClientError::CreateUnconfirmed { .. } => Some(
                "run the deploy again: the uploaded blob stays on the server and is not sent twice"
                    .into(),
            ),
            ClientError::Transport { .. } => {
                Some("the connection dropped mid-transfer; retry, and check the server's logs".into())
            }
            ClientError::Http {
                status, message, ..
            } if *status >= 500 && is_permanent_server_failure(message) => Some(
                "free space on the Ollama server (or fix its model directory), then try again"
                    .into(),
            ),
            ClientError::Http { status: 404, .. } => {
                Some("the server does not have that model or blob (`ollama list` shows its models)".into())
            }
            ClientError::Http { status, .. } if (400..500).contains(status) => Some(
                "the server refused the request; its message above says why (an older Ollama may not support it: `ollama --version`)".into(),
            ),
            ClientError::Http { .. } | ClientError::Stream { .. } => {
                Some("the server failed; its logs (`ollama serve` output) say more".into())
            }
            ClientError::DigestMismatch { .. } => Some(
                "something rewrote the file after it was recorded; deploy again (loraforge exports it again when its export cache is stale)".into(),
            ),
            ClientError::UploadCorrupted { .. } => Some(
                "retry; if it keeps failing, check the server's disk and anything between this machine and the server".into(),
            ),
            _ => None,
        }
    }
}

/// Server-side failures retrying cannot heal: a full, read-only or unwritable model store.
fn is_permanent_server_failure(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "no space left on device",
        "disk quota exceeded",
        "read-only file system",
        "permission denied",
        "file too large",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}
