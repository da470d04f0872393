//! The loraforge web UI: the Base / Trained / Saved / Deployed / Jobs pages with Save, Deploy and
//! Delete, and a JSON API under `/api/v1`, as a thin layer over the same registry calls the CLI
//! makes.
//!
//! [`WebApp`] holds the store, the access token and the [`JobRunner`] that starts background
//! jobs; [`WebApp::router`] is the axum router (tests drive it without sockets) and
//! [`WebApp::bind`] checks the bind address and opens the socket. Pages are rendered on the
//! server; a small script and stylesheet are embedded in the binary (no Node build step).
//!
//! # Security rules
//!
//! * Every route needs the token: `Authorization: Bearer <token>`, or `?token=<token>` once,
//!   which sets an `HttpOnly; SameSite=Strict` session cookie and redirects to the same page
//!   without the token in the address.
//! * Mutating requests (`POST`, `PUT`, `PATCH`, `DELETE`) with a cross-site `Origin` (or
//!   `Sec-Fetch-Site: cross-site`) are refused with 403, even with a valid bearer token; those
//!   authenticated by the session cookie must also carry the page's CSRF token (`X-CSRF-Token`).
//! * Binding a non-loopback address without an explicitly chosen token is refused.
//! * No route takes a filesystem path: entry names are validated by `loraforge-naming` before any
//!   lookup, and paths with `..` or encoded separators/dots are refused with 400.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use loraforge_web::{WebApp, WebOptions};
//! let home = tempfile::tempdir()?;
//! let registry = loraforge_registry::Registry::open(home.path())?;
//! let app = WebApp::new(registry, WebOptions::default());
//! assert_eq!(app.token().len(), 64);
//! let _router: axum::Router = app.router();
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod actions;
mod api;
mod auth;
mod error;
mod html;
mod pages;
mod runner;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use loraforge_registry::Registry;

pub use error::WebError;
pub use runner::{JobRunner, ThreadRunner};

/// The address `loraforge serve` binds by default.
pub const DEFAULT_BIND: &str = "127.0.0.1:8765";

/// How the web UI is set up.
#[derive(Clone)]
pub struct WebOptions {
    /// The access token; `None` draws a random one (then only loopback addresses may be bound).
    pub token: Option<String>,
    /// The Ollama server the deploy dialog proposes (`OLLAMA_HOST` syntax).
    pub ollama_host: String,
    /// Starts background jobs (saves and deployments).
    pub runner: Arc<dyn JobRunner>,
}

impl Default for WebOptions {
    fn default() -> WebOptions {
        WebOptions {
            token: None,
            ollama_host: "127.0.0.1:11434".to_string(),
            runner: Arc::new(ThreadRunner),
        }
    }
}

impl std::fmt::Debug for WebOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebOptions")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("ollama_host", &self.ollama_host)
            .finish()
    }
}

/// What every handler shares.
pub(crate) struct AppState {
    pub registry: Arc<Registry>,
    pub auth: auth::Auth,
    pub ollama_host: String,
    pub runner: Arc<dyn JobRunner>,
}

/// The web UI over one store.
#[derive(Clone)]
pub struct WebApp {
    state: Arc<AppState>,
    explicit_token: bool,
}

impl std::fmt::Debug for WebApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebApp")
            .field("location", &self.state.registry.location())
            .field("explicit_token", &self.explicit_token)
            .finish()
    }
}

impl WebApp {
    /// The UI over `registry`.
    pub fn new(registry: Registry, options: WebOptions) -> WebApp {
        let explicit_token = options.token.is_some();
        let token = options.token.unwrap_or_else(auth::random_token);
        WebApp {
            state: Arc::new(AppState {
                registry: Arc::new(registry),
                auth: auth::Auth::new(token),
                ollama_host: options.ollama_host,
                runner: options.runner,
            }),
            explicit_token,
        }
    }

    /// The access token (random unless one was given).
    pub fn token(&self) -> &str {
        self.state.auth.token()
    }

    /// The axum router: pages, assets and `/api/v1`, behind the token, Origin and CSRF checks.
    pub fn router(&self) -> Router {
        let state = Arc::clone(&self.state);
        Router::new()
            .route("/", get(pages::overview))
            .route("/jobs", get(pages::jobs))
            .route("/assets/{file}", get(pages::asset))
            .route("/{stage}", get(pages::list))
            .route("/{stage}/{name}", get(pages::detail))
            .route("/api/v1/jobs", get(api::jobs))
            .route("/api/v1/jobs/{id}", get(api::job))
            .route("/api/v1/jobs/{id}/events", get(api::job_events))
            .route("/api/v1/jobs/{id}/cancel", post(api::cancel_job))
            .route("/api/v1/trained/{name}/save", post(api::save))
            .route("/api/v1/saved/{name}/deploy", post(api::deploy))
            .route("/api/v1/{stage}", get(api::list))
            .route("/api/v1/{stage}/{name}", get(api::show).delete(api::delete))
            .fallback(api::not_found)
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&state),
                auth::guard,
            ))
            .with_state(state)
    }

    /// Check the address and open the socket. A non-loopback address needs an explicit token.
    pub async fn bind(self, addr: SocketAddr) -> Result<BoundServer, WebError> {
        if !addr.ip().is_loopback() && !self.explicit_token {
            return Err(WebError::PublicBindWithoutToken { addr });
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| WebError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| WebError::Bind { addr, source })?;
        Ok(BoundServer {
            app: self,
            listener,
            local,
        })
    }
}

/// A server with its socket open, ready to [`run`](BoundServer::run).
#[derive(Debug)]
pub struct BoundServer {
    app: WebApp,
    listener: tokio::net::TcpListener,
    local: SocketAddr,
}

impl BoundServer {
    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address to open in a browser: the first visit exchanges the token for a cookie.
    pub fn url(&self) -> String {
        format!("http://{}/?token={}", self.local, self.app.token())
    }

    /// Serve until the process ends.
    pub async fn run(self) -> Result<(), WebError> {
        let addr = self.local;
        axum::serve(self.listener, self.app.router())
            .await
            .map_err(|source| WebError::Serve { addr, source })
    }
}
