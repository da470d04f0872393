//! Errors: [`WebError`] for starting the server, [`Failure`] for one request.

use std::net::SocketAddr;

use axum::http::StatusCode;

/// Starting or running the web server failed.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A non-loopback address was asked for with a random token.
    #[error("refusing to listen on {addr} with a random token: anyone on the network could reach the store")]
    PublicBindWithoutToken {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The socket could not be opened.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// Serving stopped with an error.
    #[error("the web server on {addr} stopped")]
    Serve {
        /// The address served.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl WebError {
    /// True when the user can fix the problem by changing what they asked for.
    pub fn is_user_error(&self) -> bool {
        match self {
            WebError::PublicBindWithoutToken { .. } => true,
            WebError::Bind { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::AddrInUse
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::PermissionDenied
            ),
            WebError::Serve { .. } => false,
        }
    }

    /// What to do next.
    pub fn hint(&self) -> Option<String> {
        match self {
            WebError::PublicBindWithoutToken { .. } => Some(
                "set LORAFORGE_SERVE_TOKEN to a long secret to listen beyond this machine, or bind 127.0.0.1".into(),
            ),
            WebError::Bind { .. } => Some("pick another address with --bind HOST:PORT".into()),
            WebError::Serve { .. } => None,
        }
    }
}

/// Why one request failed: an HTTP status, a message and a hint. Pages render it as HTML, the
/// API as `{"error", "hint"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub status: StatusCode,
    pub error: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Failure {
        Failure {
            status,
            error: error.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }

    pub fn bad_request(error: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, error)
    }

    pub fn not_found(error: impl Into<String>) -> Failure {
        Failure::new(StatusCode::NOT_FOUND, error)
    }
}
