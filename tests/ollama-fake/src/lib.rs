//! A fake Ollama server for tests, implementing Ollama's documented REST behaviour in process.
//!
//! [`FakeOllama::start`] binds `127.0.0.1:0`, serves the routes loraforge uses and returns a
//! handle to inspect the server's state (blobs, models, recorded requests) and to script faults
//! ([`Fault`]). Behaviour follows `shared/reference/ollama-api.md` (Ollama `server/routes.go`,
//! `server/create.go`, `manifest/paths.go`, `types/model/name.go`):
//!
//! * `HEAD /api/blobs/:digest` → 400 for a malformed digest, 404 when absent, 200 when present;
//!   `POST` → 200 when present (body unread), 201 after hashing the streamed body, 400
//!   `digest mismatch, expected "X", got "Y"` when the bytes do not hash to the URL digest;
//! * `POST /api/create` validates before streaming (400: missing body, bad JSON, invalid model
//!   name, non-relative file names, empty/unknown digests, unknown type, bad GGUF magic), then
//!   streams NDJSON status lines ending in `{"status":"success"}`; errors discovered later
//!   (unsupported quantize type, unparsable template) become an `{"error":…}` line;
//! * tags, show, ps, version, copy, delete (404 for a missing model), generate and chat.
//!
//! Test-only: never a dependency of the product except as a dev-dependency.
#![deny(missing_docs)]

mod gotemplate;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, head, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use loraforge_quantize::GgmlType;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// The version string `/api/version` reports unless changed with [`FakeOllama::set_version`].
pub const FAKE_VERSION: &str = "0.33.0";

/// A scripted misbehaviour. Faults apply to the next matching requests, then expire.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer `times` requests whose method and path (prefix) match with `status` and
    /// `{"error": message}` instead of handling them.
    Status {
        /// `GET`, `POST`, `HEAD`, `DELETE`.
        method: &'static str,
        /// Path or path prefix (`/api/tags`, `/api/blobs/`).
        path: &'static str,
        /// HTTP status to answer.
        status: u16,
        /// Error message.
        message: String,
        /// How many requests it applies to.
        times: u32,
    },
    /// Answer `times` matching requests with `status` and exactly `body` (malformed responses).
    Body {
        /// Method.
        method: &'static str,
        /// Path or path prefix.
        path: &'static str,
        /// HTTP status to answer.
        status: u16,
        /// The raw response body.
        body: String,
        /// How many requests it applies to.
        times: u32,
    },
    /// Sleep `delay` before handling `times` matching requests (for client timeouts).
    Delay {
        /// Method.
        method: &'static str,
        /// Path or path prefix.
        path: &'static str,
        /// How long to wait before answering.
        delay: Duration,
        /// How many requests it applies to.
        times: u32,
    },
    /// The next create emits `after_lines` progress lines, then `{"error": message}`.
    CreateErrorAfter {
        /// Lines before the error.
        after_lines: usize,
        /// Error message.
        message: String,
    },
    /// The next create waits `delay` before every progress line.
    CreateLineDelay {
        /// Pause per line.
        delay: Duration,
    },
    /// The next `times` blob uploads read `after_bytes` of the body, then drop the connection.
    DropUpload {
        /// Bytes read before dropping.
        after_bytes: u64,
        /// How many uploads it applies to.
        times: u32,
    },
    /// The next `times` blob uploads read `after_bytes` of the body, then stop reading for
    /// `pause` (a stalled upload when `pause` is longer than the client's stall window, a slow
    /// one otherwise), then read the rest.
    UploadPause {
        /// Bytes read before pausing.
        after_bytes: u64,
        /// How long nothing is read.
        pause: Duration,
        /// How many uploads it applies to.
        times: u32,
    },
    /// The next `times` blob uploads read the whole body, then fail like a server whose disk is
    /// full: HTTP 500 `write …: no space left on device`, nothing stored.
    UploadDiskFull {
        /// How many uploads it applies to.
        times: u32,
    },
    /// The next create sends `after_lines` progress lines, then sends nothing for `silence`
    /// (the real server forwards no progress while llama-quantize works), then goes on.
    CreateSilence {
        /// Lines before the silence.
        after_lines: usize,
        /// How long the stream stays silent.
        silence: Duration,
    },
    /// The next create sends `after_lines` progress lines, then drops the connection. As in
    /// Ollama, whose create blocks on its next progress line once the client is gone, the
    /// model exists afterwards only when `writing manifest` was among the lines sent.
    CreateDrop {
        /// Lines sent before the connection drops.
        after_lines: usize,
    },
    /// The next create drops the connection just before the first line whose status starts
    /// with `status` (for example `writing manifest` or `success`).
    CreateDropBefore {
        /// Status prefix of the first line not sent.
        status: String,
    },
}

/// A request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
}

/// A blob in the fake store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// Size in bytes.
    pub size: u64,
    /// The first bytes (GGUF magic check).
    pub head: Vec<u8>,
    /// The content (the fake parses GGUFs to check file types and finite values).
    pub bytes: Arc<Vec<u8>>,
}

impl StoredBlob {
    fn new(bytes: Vec<u8>) -> Self {
        Self {
            size: bytes.len() as u64,
            head: bytes.iter().take(8).copied().collect(),
            bytes: Arc::new(bytes),
        }
    }
}

/// A created model.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredModel {
    /// Name as given to create (Ollama keeps the spelling).
    pub name: String,
    /// `files` of the create request.
    pub files: BTreeMap<String, String>,
    /// Template.
    pub template: Option<String>,
    /// System prompt.
    pub system: Option<String>,
    /// Parameters.
    pub parameters: Map<String, Value>,
    /// Messages.
    pub messages: Vec<Value>,
    /// Licenses.
    pub license: Vec<String>,
    /// Requested quantization.
    pub quantize: Option<String>,
    /// Manifest digest (hex), as `/api/tags` lists it.
    pub digest: String,
    /// `sha256:<hex>` of the uploaded model file.
    pub upload_digest: String,
    /// `sha256:<hex>` of the model layer: the upload digest, or (from 0.30, and when quantizing)
    /// the digest of the file llama-quantize rewrote it into.
    pub layer_digest: String,
    /// Size of the model blobs.
    pub size: u64,
    /// The full create request body as received.
    pub request: Value,
}

#[derive(Default)]
struct Inner {
    version: String,
    blobs: BTreeMap<String, StoredBlob>,
    models: BTreeMap<String, StoredModel>,
    running: BTreeSet<String>,
    faults: Vec<Fault>,
    requests: Vec<RecordedRequest>,
    creates: Vec<Value>,
}

#[derive(Default)]
struct Shared {
    inner: Mutex<Inner>,
    clock: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn now(&self) -> String {
        let n = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        format!("2026-01-01T00:{:02}:{:02}.{:09}Z", (n / 60) % 60, n % 60, n)
    }
}

/// A running fake server; dropping it stops the server.
pub struct FakeOllama {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeOllama {
    /// Starts a server on `127.0.0.1:0` in the current tokio runtime.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        shared.lock().version = FAKE_VERSION.to_owned();
        let app = router(Arc::clone(&shared));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let listener = fake_conn::KillListener::new(listener, ());
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<ConnTag>(),
            )
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        });
        Ok(Self {
            addr,
            shared,
            shutdown: Some(tx),
            runtime: None,
        })
    }

    /// Starts a server on its own background runtime, for synchronous tests (for example a CLI
    /// run as a subprocess against it). The runtime stops when the handle is dropped.
    pub fn spawn() -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let mut fake = runtime.block_on(Self::start())?;
        fake.runtime = Some(runtime);
        Ok(fake)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Schedules a fault.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Changes the reported version.
    pub fn set_version(&self, version: &str) {
        self.shared.lock().version = version.to_owned();
    }

    /// Whether a blob with this digest (`sha256:<hex>` or `sha256-<hex>`) is stored.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.shared.lock().blobs.contains_key(&blob_key(digest))
    }

    /// The stored blob, if any.
    pub fn blob(&self, digest: &str) -> Option<StoredBlob> {
        self.shared.lock().blobs.get(&blob_key(digest)).cloned()
    }

    /// Stores a blob directly (as if uploaded earlier).
    pub fn put_blob(&self, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        self.shared
            .lock()
            .blobs
            .insert(blob_key(&digest), StoredBlob::new(bytes.to_vec()));
        digest
    }

    /// Names of the created models.
    pub fn model_names(&self) -> Vec<String> {
        self.shared
            .lock()
            .models
            .values()
            .map(|m| m.name.clone())
            .collect()
    }

    /// A created model by name (case-insensitive, defaults filled like Ollama).
    pub fn model(&self, name: &str) -> Option<StoredModel> {
        let key = model_key(name)?;
        self.shared.lock().models.get(&key).cloned()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests with this method and exact path were received.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    /// How many requests with this method and path prefix were received.
    pub fn count_prefix(&self, method: &str, prefix: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .count()
    }

    /// Every create request body received (valid or not), in order.
    pub fn create_requests(&self) -> Vec<Value> {
        self.shared.lock().creates.clone()
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

// ---- connection killing ---------------------------------------------------------------------

/// Per-connection handle given to handlers; `kill()` breaks the connection.
type ConnTag = fake_conn::Conn<()>;

// ---- routing ----------------------------------------------------------------------------------

type AppState = Arc<Shared>;

fn router(shared: AppState) -> Router {
    Router::new()
        .route("/", get(root).head(root))
        .route("/api/version", get(version).head(version))
        .route("/api/tags", get(tags).head(tags))
        .route("/api/ps", get(ps))
        .route("/api/show", post(show))
        .route("/api/copy", post(copy))
        .route("/api/delete", delete(delete_model))
        .route("/api/blobs/{digest}", head(head_blob).post(post_blob))
        .route("/api/create", post(create))
        .route("/api/generate", post(generate))
        .route("/api/chat", post(chat))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            record_and_fault,
        ))
        .with_state(shared)
}

enum Scripted {
    Status(u16, String),
    Body(u16, String),
    Delay(Duration),
}

async fn record_and_fault(State(shared): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let scripted = {
        let mut inner = shared.lock();
        inner.requests.push(RecordedRequest {
            method: method.clone(),
            path: path.clone(),
        });
        let mut hit = None;
        for fault in inner.faults.iter_mut() {
            match fault {
                Fault::Status {
                    method: m,
                    path: p,
                    status,
                    message,
                    times,
                } if *times > 0 && *m == method && path.starts_with(*p) => {
                    *times -= 1;
                    hit = Some(Scripted::Status(*status, message.clone()));
                    break;
                }
                Fault::Body {
                    method: m,
                    path: p,
                    status,
                    body,
                    times,
                } if *times > 0 && *m == method && path.starts_with(*p) => {
                    *times -= 1;
                    hit = Some(Scripted::Body(*status, body.clone()));
                    break;
                }
                Fault::Delay {
                    method: m,
                    path: p,
                    delay,
                    times,
                } if *times > 0 && *m == method && path.starts_with(*p) => {
                    *times -= 1;
                    hit = Some(Scripted::Delay(*delay));
                    break;
                }
                _ => {}
            }
        }
        hit
    };
    match scripted {
        Some(Scripted::Status(status, message)) => error(status, &message),
        Some(Scripted::Body(status, body)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, body).into_response()
        }
        Some(Scripted::Delay(d)) => {
            tokio::time::sleep(d).await;
            next.run(req).await
        }
        None => next.run(req).await,
    }
}

/// An early error answer (kept small so `Result`s stay cheap).
struct Reject(u16, String);

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

fn error(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({ "error": message }))).into_response()
}

async fn root() -> &'static str {
    "Ollama is running"
}

async fn version(State(shared): State<AppState>) -> Response {
    let v = shared.lock().version.clone();
    Json(json!({ "version": v })).into_response()
}

fn details(m: &StoredModel) -> Value {
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "1M",
        "quantization_level": m.quantize.as_deref().map(str::to_ascii_uppercase).unwrap_or_else(|| "F16".to_owned()),
    })
}

async fn tags(State(shared): State<AppState>) -> Response {
    let inner = shared.lock();
    let models: Vec<Value> = inner
        .models
        .values()
        .map(|m| {
            json!({
                "name": m.name, "model": m.name, "modified_at": "2026-01-01T00:00:00Z",
                "size": m.size, "digest": m.digest, "details": details(m),
            })
        })
        .collect();
    Json(json!({ "models": models })).into_response()
}

async fn ps(State(shared): State<AppState>) -> Response {
    let inner = shared.lock();
    let models: Vec<Value> = inner
        .running
        .iter()
        .filter_map(|k| inner.models.get(k))
        .map(|m| {
            json!({
                "name": m.name, "model": m.name, "size": m.size, "digest": m.digest,
                "details": details(m), "expires_at": "2026-01-01T00:05:00Z",
                "size_vram": 0, "context_length": 4096,
            })
        })
        .collect();
    Json(json!({ "models": models })).into_response()
}

fn parse_body(body: &Bytes) -> Result<Value, Reject> {
    if body.is_empty() {
        return Err(Reject(400, "missing request body".to_owned()));
    }
    serde_json::from_slice::<Value>(body).map_err(|e| Reject(400, e.to_string()))
}

fn str_field<'a>(v: &'a Value, keys: &[&str]) -> &'a str {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
        .unwrap_or("")
}

async fn show(State(shared): State<AppState>, body: Bytes) -> Response {
    let req = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let name = str_field(&req, &["model", "name"]);
    let Some(key) = model_key(name) else {
        return error(400, "invalid model name");
    };
    let inner = shared.lock();
    let Some(m) = inner.models.get(&key) else {
        return error(404, &format!("model '{name}' not found"));
    };
    // server/routes.go GetModelInfo: fmt.Sprintf("%-*s %#v", 30, k, v) per value, one line
    // per list item; the values come back from the params layer as JSON (numbers are float64).
    let mut params = String::new();
    for (k, v) in &m.parameters {
        match v {
            Value::Array(items) => {
                for i in items {
                    params.push_str(&format!("{k:<30} {}\n", go_sharp_v(i)));
                }
            }
            other => params.push_str(&format!("{k:<30} {}\n", go_sharp_v(other))),
        }
    }
    let mut modelfile = format!("FROM /fake/models/blobs/{}\n", blob_key(&m.layer_digest));
    if let Some(t) = &m.template {
        modelfile.push_str(&format!("TEMPLATE \"\"\"{t}\"\"\"\n"));
    }
    if let Some(s) = &m.system {
        modelfile.push_str(&format!("SYSTEM \"\"\"{s}\"\"\"\n"));
    }
    Json(json!({
        "license": m.license.join("\n"),
        "modelfile": modelfile,
        "parameters": params.trim_end(),
        "template": m.template.clone().unwrap_or_else(|| "{{ .Prompt }}".to_owned()),
        "system": m.system.clone().unwrap_or_default(),
        "details": details(m),
        "messages": m.messages,
        "model_info": {"general.architecture": "llama", "general.file_type": 1, "llama.context_length": 4096},
        "capabilities": ["completion"],
        "modified_at": "2026-01-01T00:00:00Z",
    }))
    .into_response()
}

/// Go's `%#v` of a JSON value decoded into `any`: strings quoted by `strconv.Quote`, numbers
/// (float64) in `strconv.FormatFloat(v, 'g', -1, 64)` form, booleans as `true`/`false`.
fn go_sharp_v(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Number(n) => go_float(n.as_f64().unwrap_or(0.0)),
        Value::Bool(b) => b.to_string(),
        Value::Null => "<nil>".to_owned(),
        other => other.to_string(),
    }
}

/// `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            // Not unicode.IsPrint: other controls and spaces other than ' '.
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `strconv.FormatFloat(v, 'g', -1, 64)`: the shortest digits that round-trip, in exponent
/// form when the exponent is below -4 or at least 6 (`1e+06`, `1.5e-05`), else plain.
fn go_float(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN"
        } else if v > 0.0 {
            "+Inf"
        } else {
            "-Inf"
        }
        .to_owned();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.5e-5", "1e6".
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if v < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{esign}{:02}", exp.abs());
    }
    format!("{sign}{}", v.abs())
}

async fn copy(State(shared): State<AppState>, body: Bytes) -> Response {
    let req = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let src = str_field(&req, &["source"]);
    let dst = str_field(&req, &["destination"]);
    let (Some(src_key), Some(dst_key)) = (model_key(src), model_key(dst)) else {
        return error(400, "invalid model name");
    };
    let mut inner = shared.lock();
    let Some(mut m) = inner.models.get(&src_key).cloned() else {
        return error(404, &format!("model \"{src}\" not found"));
    };
    m.name = display_name(dst);
    inner.models.insert(dst_key, m);
    StatusCode::OK.into_response()
}

async fn delete_model(State(shared): State<AppState>, body: Bytes) -> Response {
    let req = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let name = str_field(&req, &["model", "name"]);
    let Some(key) = model_key(name) else {
        return error(400, "invalid model name");
    };
    let mut inner = shared.lock();
    let Some(removed) = inner.models.remove(&key) else {
        return error(404, &format!("model '{name}' not found"));
    };
    inner.running.remove(&key);
    // Remove layers no other manifest references (Ollama's RemoveLayers). The manifest names
    // the model layer; from 0.30 that is llama-quantize's copy, so the uploaded blob itself
    // stays in the store until the server restarts (and prunes unreferenced blobs).
    let still_used: BTreeSet<String> = inner
        .models
        .values()
        .map(|m| blob_key(&m.layer_digest))
        .collect();
    let layer = blob_key(&removed.layer_digest);
    if !still_used.contains(&layer) {
        inner.blobs.remove(&layer);
    }
    StatusCode::OK.into_response()
}

// ---- blobs ----------------------------------------------------------------------------------

/// `^sha256[:-][0-9a-fA-F]{64}$` (`manifest/paths.go`).
fn valid_digest(d: &str) -> bool {
    let hex = d
        .strip_prefix("sha256:")
        .or_else(|| d.strip_prefix("sha256-"));
    matches!(hex, Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The blob file name Ollama uses: `:` replaced by `-` (case preserved: the store is a directory).
fn blob_key(d: &str) -> String {
    d.replacen(':', "-", 1)
}

async fn head_blob(State(shared): State<AppState>, Path(digest): Path<String>) -> Response {
    if !valid_digest(&digest) {
        return error(400, "invalid digest format");
    }
    if shared.lock().blobs.contains_key(&blob_key(&digest)) {
        StatusCode::OK.into_response()
    } else {
        error(404, &format!("blob {digest:?} not found"))
    }
}

/// What a scripted upload fault does to one upload.
enum UploadFault {
    Drop(u64),
    Pause(u64, Duration),
    DiskFull,
}

async fn post_blob(
    State(shared): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnTag>,
    Path(digest): Path<String>,
    body: Body,
) -> Response {
    if !valid_digest(&digest) {
        return error(400, "invalid digest format");
    }
    let fault = {
        let mut inner = shared.lock();
        if inner.blobs.contains_key(&blob_key(&digest)) {
            return StatusCode::OK.into_response();
        }
        let mut hit = None;
        for fault in inner.faults.iter_mut() {
            match fault {
                Fault::DropUpload { after_bytes, times } if *times > 0 => {
                    *times -= 1;
                    hit = Some(UploadFault::Drop(*after_bytes));
                }
                Fault::UploadPause {
                    after_bytes,
                    pause,
                    times,
                } if *times > 0 => {
                    *times -= 1;
                    hit = Some(UploadFault::Pause(*after_bytes, *pause));
                }
                Fault::UploadDiskFull { times } if *times > 0 => {
                    *times -= 1;
                    hit = Some(UploadFault::DiskFull);
                }
                _ => continue,
            }
            break;
        }
        hit
    };
    let mut hasher = Sha256::new();
    let mut bytes = Vec::new();
    let mut paused = false;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return error(400, &e.to_string()),
        };
        bytes.extend_from_slice(&chunk);
        hasher.update(&chunk);
        let size = bytes.len() as u64;
        match fault {
            Some(UploadFault::Drop(n)) if size >= n => {
                conn.kill();
                return error(500, "connection dropped");
            }
            Some(UploadFault::Pause(n, pause)) if size >= n && !paused => {
                paused = true;
                tokio::time::sleep(pause).await;
            }
            _ => {}
        }
    }
    if matches!(fault, Some(UploadFault::DiskFull)) {
        // manifest.NewLayer: io.Copy into a temp file in the blob directory fails.
        return error(
            500,
            &format!(
                "write /fake/models/blobs/sha256-{}-partial: no space left on device",
                digest.get(7..).unwrap_or("")
            ),
        );
    }
    let got = format!("sha256:{}", hex::encode(hasher.finalize()));
    // Ollama stores the layer under the digest it computed before comparing (NewLayer renames
    // the temp file into place), so a mismatched upload stays in the store under its real digest.
    shared
        .lock()
        .blobs
        .insert(blob_key(&got), StoredBlob::new(bytes));
    if got != digest {
        return error(
            400,
            &format!("digest mismatch, expected \"{digest}\", got \"{got}\""),
        );
    }
    StatusCode::CREATED.into_response()
}

// ---- create -------------------------------------------------------------------------------

/// Go's `fs.ValidPath`: unrooted, slash-separated, no empty, `.` or `..` elements.
fn valid_rel_path(p: &str) -> bool {
    if p == "." {
        return true;
    }
    !p.is_empty() && p.split('/').all(|e| !e.is_empty() && e != "." && e != "..")
}

fn string_map(v: Option<&Value>) -> Result<BTreeMap<String, String>, Reject> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let Some(s) = v.as_str() else {
                    return Err(Reject(
                        400,
                        "json: cannot unmarshal into map[string]string".to_owned(),
                    ));
                };
                out.insert(k.clone(), s.to_owned());
            }
        }
        Some(_) => {
            return Err(Reject(
                400,
                "json: cannot unmarshal into map[string]string".to_owned(),
            ))
        }
    }
    Ok(out)
}

const QUANT_TYPES: &[&str] = &["F32", "F16", "BF16", "Q8_0", "Q4_K_S", "Q4_K_M", "Q4_K"];

async fn create(
    State(shared): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnTag>,
    body: Bytes,
) -> Response {
    let req = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    shared.lock().creates.push(req.clone());
    if !req.is_object() {
        return error(
            400,
            "json: cannot unmarshal into Go value of type api.CreateRequest",
        );
    }
    // Before 0.5.5 create took {"name", "modelfile", "path"} (v0.5.4 server/routes.go).
    if parse_version(&shared.lock().version) < (0, 5, 5)
        && req.get("modelfile").is_none()
        && req.get("path").is_none()
    {
        return error(400, "path or Modelfile are required");
    }
    let name = str_field(&req, &["model", "name"]).to_owned();
    let Some(key) = model_key(&name) else {
        return error(400, "invalid model name");
    };
    let files = match string_map(req.get("files")) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let adapters = match string_map(req.get("adapters")) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    for (k, v) in files.iter().chain(adapters.iter()) {
        if !valid_rel_path(k) {
            return error(400, "file path must be relative");
        }
        if v.is_empty() {
            return error(400, "invalid digest format");
        }
    }
    let from = str_field(&req, &["from"]).to_owned();
    if files.is_empty() && from.is_empty() {
        return error(400, "neither 'from' or 'files' was specified");
    }
    // A `from` model that is not on the server is pulled (server/model.go parseFromModel):
    // "pulling manifest", then, with no registry reachable, an error line.
    if !from.is_empty() && parse_name(&from).is_none() {
        return error(400, "invalid model name");
    }
    let from_missing = !from.is_empty()
        && !model_key(&from).is_some_and(|k| shared.lock().models.contains_key(&k));
    // Type detection (detectModelTypeFromFiles), before any byte is streamed: HTTP 400.
    if files.keys().any(|k| k.ends_with(".safetensors")) {
        return error(
            400,
            "safetensors conversion is not emulated by the fake server",
        );
    }
    let version = parse_version(&shared.lock().version);
    let is_gguf_named = files.keys().any(|k| k.ends_with(".gguf"));
    if !is_gguf_named {
        let inner = shared.lock();
        let all_gguf = files.values().all(|d| {
            inner
                .blobs
                .get(&blob_key(d))
                .is_some_and(|b| b.head.starts_with(b"GGUF"))
        });
        if !all_gguf {
            return error(400, "unknown type");
        }
    }

    // Everything else happens in the streamed part: errors arrive as HTTP 200 + an error line.
    let mut lines: Vec<Value> = Vec::new();
    let mut late_error = None;
    if from_missing {
        let [_, namespace, model, tag] = parse_name(&from).unwrap_or_default();
        lines.push(json!({"status": "pulling manifest"}));
        late_error = Some(format!(
            "pull model manifest: Get \"https://registry.ollama.ai/v2/{namespace}/{model}/manifests/{tag}\": dial tcp: lookup registry.ollama.ai: no such host"
        ));
    }
    let mut size = 0u64;
    let mut upload_digest = String::new();
    let mut source: Option<(String, Option<String>)> = None;
    for digest in files.values().filter(|_| from.is_empty()) {
        lines.push(json!({"status": "parsing GGUF"}));
        if !valid_digest(digest) {
            late_error = Some("invalid digest format".to_owned());
            break;
        }
        let blob = shared.lock().blobs.get(&blob_key(digest)).cloned();
        let Some(blob) = blob else {
            late_error = Some(format!(
                "open /fake/models/blobs/{}: no such file or directory",
                blob_key(digest)
            ));
            break;
        };
        if !blob.head.starts_with(b"GGUF") {
            late_error = Some("supplied file was not in GGUF format".to_owned());
            break;
        }
        match inspect_gguf(&blob.bytes) {
            Ok(found) => source = Some(found),
            Err(e) => {
                late_error = Some(e);
                break;
            }
        }
        size += blob.size;
        if upload_digest.is_empty() {
            upload_digest = digest.clone();
        }
    }
    let quantize = str_field(&req, &["quantize", "quantization"]).to_owned();
    let mut layer_digest = upload_digest.clone();
    if let (None, Some((file_type, non_finite))) = (&late_error, &source) {
        let rewrite = |step: &str| {
            format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{step}:{upload_digest}").as_bytes()))
            )
        };
        let progress = |lines: &mut Vec<Value>, status: String| {
            for completed in [0, size / 2, size] {
                lines.push(json!({"status": status, "digest": "0000000000000000000", "total": size, "completed": completed}));
            }
        };
        let mut rewrote = false;
        if !quantize.is_empty() {
            let q = quantize.to_ascii_uppercase();
            let q = if q == "Q4_K" { "Q4_K_M".to_owned() } else { q };
            let bf16_ok = version >= (0, 22, 0);
            if !QUANT_TYPES.contains(&q.as_str()) {
                late_error = Some(format!("unsupported quantization type {q} - supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0"));
            } else if !(file_type == "F16"
                || file_type == "F32"
                || (bf16_ok && file_type == "BF16"))
            {
                late_error = Some(if bf16_ok {
                    "quantization is only supported for F16, BF16 and F32 models".to_owned()
                } else {
                    "quantization is only supported for F16 and F32 models".to_owned()
                });
            } else if *file_type != q {
                progress(&mut lines, format!("quantizing {file_type} model to {q}"));
                if let (Some(t), true) = (non_finite, version >= (0, 30, 0)) {
                    late_error = Some(format!("llama-quantize: tensor '{t}' has invalid data"));
                } else {
                    lines.push(json!({"status": "verifying conversion"}));
                    layer_digest = rewrite(&format!("llama-quantize {q}"));
                    rewrote = true;
                }
            }
        }
        // From 0.30 every imported GGUF is copied through llama-quantize COPY, which loads the
        // architecture and rejects NaN/Inf rows; the model layer gets the copy's digest.
        if late_error.is_none() && !rewrote && version >= (0, 30, 0) {
            progress(&mut lines, "validating GGUF model".to_owned());
            if let Some(t) = non_finite {
                late_error = Some(format!("failed to validate GGUF with llama-quantize without compatibility patches: tensor '{t}' has invalid data"));
            } else {
                lines.push(json!({"status": "verifying conversion"}));
                layer_digest = rewrite("llama-quantize COPY");
            }
        }
    }
    let template = req
        .get("template")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let system = req.get("system").and_then(Value::as_str).map(str::to_owned);
    let parameters = req
        .get("parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let license = match req.get("license") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    // setTemplate parses it with text/template; errBadTemplate wraps the parser's message.
    if let Some(Err(e)) = template.as_deref().map(gotemplate::check) {
        late_error = late_error.or(Some(format!("template error: {e}")));
    }
    let mut layer_digests = Vec::new();
    for part in [
        Some(layer_digest.clone()),
        template.clone(),
        system.clone(),
        (!parameters.is_empty()).then(|| Value::Object(parameters.clone()).to_string()),
    ]
    .into_iter()
    .flatten()
    {
        let d = if part.starts_with("sha256:") {
            part
        } else {
            format!("sha256:{}", hex::encode(Sha256::digest(part.as_bytes())))
        };
        layer_digests.push(d);
    }
    let existing = shared.lock().models.get(&key).map(|m| m.name.clone());
    if late_error.is_none() {
        for d in &layer_digests {
            let verb = if existing.is_some() {
                "using existing layer"
            } else {
                "creating new layer"
            };
            lines.push(json!({"status": format!("{verb} {d}")}));
        }
        lines.push(json!({"status": "writing manifest"}));
        lines.push(json!({"status": "success"}));
    }

    // Scripted stream faults.
    let mut script = StreamScript::default();
    {
        let mut inner = shared.lock();
        let mut keep = Vec::new();
        for fault in inner.faults.drain(..) {
            match fault {
                Fault::CreateErrorAfter {
                    after_lines,
                    message,
                } if late_error.is_none() => {
                    lines.truncate(after_lines);
                    late_error = Some(message);
                }
                Fault::CreateLineDelay { delay: d } if script.delay.is_none() => {
                    script.delay = Some(d)
                }
                Fault::CreateSilence {
                    after_lines,
                    silence,
                } if script.silence.is_none() => script.silence = Some((after_lines, silence)),
                Fault::CreateDrop { after_lines } if script.drop_after.is_none() => {
                    script.drop_after = Some(after_lines)
                }
                Fault::CreateDropBefore { status } if script.drop_before.is_none() => {
                    script.drop_before = Some(status)
                }
                other => keep.push(other),
            }
        }
        inner.faults = keep;
    }
    if let Some(message) = late_error {
        lines.push(json!({ "error": message }));
    }

    let manifest_digest = hex::encode(Sha256::digest(
        format!(
            "{name}{}",
            Value::Array(
                layer_digests
                    .iter()
                    .map(|d| Value::String(d.clone()))
                    .collect()
            )
        )
        .as_bytes(),
    ));
    let model = StoredModel {
        // Re-creating a name with other casing keeps the existing spelling (getExistingName).
        name: existing.unwrap_or_else(|| display_name(&name)),
        files,
        template,
        system,
        parameters,
        messages,
        license,
        quantize: (!quantize.is_empty()).then_some(quantize),
        digest: manifest_digest,
        upload_digest,
        layer_digest,
        size,
        request: req.clone(),
    };

    if req.get("stream").and_then(Value::as_bool) == Some(false) {
        if let Some(err) = lines
            .iter()
            .find_map(|l| l.get("error").and_then(Value::as_str))
        {
            return error(500, err);
        }
        shared.lock().models.insert(key, model);
        return Json(json!({"status": "success"})).into_response();
    }

    let state = (
        lines.into_iter().enumerate(),
        Some((shared, key, model)),
        script,
        conn,
    );
    let stream =
        futures_util::stream::unfold(state, |(mut it, mut commit, script, conn)| async move {
            let (i, line) = it.next()?;
            if script.drop_after.is_some() || script.drop_before.is_some() {
                // Let the lines before the drop reach the client (gin flushes every line;
                // hyper batches lines that are ready at once, and a killed connection loses
                // what is still in its buffer).
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let drop_here = script.drop_before.as_deref().is_some_and(|s| {
                line.get("status")
                    .and_then(Value::as_str)
                    .is_some_and(|status| status.starts_with(s))
            });
            if script.drop_after == Some(i) || drop_here {
                conn.kill();
                return None;
            }
            if let Some((after, silence)) = script.silence {
                if after == i {
                    tokio::time::sleep(silence).await;
                }
            }
            if let Some(d) = script.delay {
                tokio::time::sleep(d).await;
            }
            // The manifest is written once "writing manifest" went out, before "success".
            if line["status"] == "writing manifest" {
                if let Some((shared, key, model)) = commit.take() {
                    shared.lock().models.insert(key, model);
                }
            }
            let mut text = line.to_string();
            text.push('\n');
            Some((
                Ok::<_, Infallible>(Bytes::from(text)),
                (it, commit, script, conn),
            ))
        });
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

/// Timing faults of one create stream.
#[derive(Default, Clone)]
struct StreamScript {
    delay: Option<Duration>,
    silence: Option<(usize, Duration)>,
    drop_after: Option<usize>,
    drop_before: Option<String>,
}

/// `(major, minor, patch)` of a version string; unparsable or `0.0.0` counts as the newest.
fn parse_version(text: &str) -> (u64, u64, u64) {
    let core = text
        .trim_start_matches('v')
        .split(['-', '+'])
        .next()
        .unwrap_or("");
    let n: Vec<u64> = core.split('.').filter_map(|p| p.parse().ok()).collect();
    match n.as_slice() {
        [0, 0, 0] => (u64::MAX, 0, 0),
        [a, b, c] => (*a, *b, *c),
        _ => (u64::MAX, 0, 0),
    }
}

/// The file type name (`general.file_type`, as Ollama's `FileType().String()`) and the first
/// F32/F16/BF16 tensor holding a NaN or an infinity.
fn inspect_gguf(bytes: &[u8]) -> Result<(String, Option<String>), String> {
    let file = loraforge_gguf::GgufFile::from_bytes(bytes.to_vec())
        .map_err(|e| format!("failed to decode GGUF: {e}"))?;
    let file_type = match file
        .metadata()
        .get("general.file_type")
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
    {
        0 => "F32",
        1 => "F16",
        7 => "Q8_0",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        32 => "BF16",
        _ => "other",
    }
    .to_owned();
    let mut non_finite = None;
    for (i, t) in file.tensors().iter().enumerate() {
        let data = file.tensor_data(i);
        let bad = match t.info.ty {
            GgmlType::F32 => data
                .chunks_exact(4)
                .any(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite()),
            // Exponent bits all ones: NaN or infinity.
            GgmlType::F16 => data
                .chunks_exact(2)
                .any(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7c00 == 0x7c00),
            GgmlType::BF16 => data
                .chunks_exact(2)
                .any(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7f80 == 0x7f80),
            _ => false,
        };
        if bad {
            non_finite = Some(t.info.name.clone());
            break;
        }
    }
    Ok((file_type, non_finite))
}

// ---- generate / chat ------------------------------------------------------------------------

fn metrics() -> Value {
    json!({
        "total_duration": 1_000_000u64, "load_duration": 100_000u64,
        "prompt_eval_count": 3, "prompt_eval_duration": 200_000u64,
        "eval_count": 5, "eval_duration": 500_000u64,
    })
}

fn lookup_for_run(shared: &Shared, req: &Value) -> Result<(String, String), Reject> {
    let name = str_field(req, &["model", "name"]).to_owned();
    let Some(key) = model_key(&name) else {
        return Err(Reject(400, "invalid model name".to_owned()));
    };
    let mut inner = shared.lock();
    if !inner.models.contains_key(&key) {
        return Err(Reject(404, format!("model '{name}' not found")));
    }
    if req.get("keep_alive").and_then(Value::as_i64) == Some(0) {
        inner.running.remove(&key);
    } else {
        inner.running.insert(key);
    }
    Ok((name, shared.now()))
}

async fn generate(State(shared): State<AppState>, body: Bytes) -> Response {
    let req = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let (name, now) = match lookup_for_run(&shared, &req) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let mut out = json!({
        "model": name, "created_at": now, "response": "Hello from the fake Ollama.",
        "done": true, "done_reason": "stop",
    });
    merge(&mut out, metrics());
    Json(out).into_response()
}

async fn chat(State(shared): State<AppState>, body: Bytes) -> Response {
    let req = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let (name, now) = match lookup_for_run(&shared, &req) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let last = req
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut out = json!({
        "model": name, "created_at": now,
        "message": {"role": "assistant", "content": format!("You said: {last}")},
        "done": true, "done_reason": "stop",
    });
    merge(&mut out, metrics());
    Json(out).into_response()
}

fn merge(out: &mut Value, extra: Value) {
    if let (Some(o), Value::Object(e)) = (out.as_object_mut(), extra) {
        o.extend(e);
    }
}

// ---- names (Ollama's ParseName + IsValid, written independently of the client) -------------

fn valid_part(kind: usize, s: &str) -> bool {
    let max = if kind == 0 { 350 } else { 80 };
    if s.is_empty() || s.len() > max {
        return false;
    }
    s.bytes().enumerate().all(|(i, c)| {
        if i == 0 {
            return c.is_ascii_alphanumeric() || c == b'_';
        }
        match c {
            b'_' | b'-' => true,
            b'.' => kind != 1,
            b':' => kind == 0,
            _ => c.is_ascii_alphanumeric(),
        }
    })
}

/// `[host, namespace, model, tag]` with defaults, or `None` when Ollama would reject the name.
fn parse_name(name: &str) -> Option<[String; 4]> {
    let s = name;
    let mut parts: [Option<String>; 4] = [None, None, None, None];
    let mut rest = s.to_owned();
    let colon = rest.rfind(':');
    if colon.is_some() && colon > rest.rfind('/') {
        let (a, b) = rest.rsplit_once(':')?;
        parts[3] = Some(b.to_owned());
        rest = a.to_owned();
        if rest.is_empty() {
            return None;
        }
    }
    match rest.rsplit_once('/') {
        None => parts[2] = Some(rest.clone()),
        Some((a, m)) => {
            parts[2] = Some(m.to_owned());
            if a.is_empty() {
                return None;
            }
            match a.rsplit_once('/') {
                None => parts[1] = Some(a.to_owned()),
                Some((h, ns)) => {
                    parts[1] = Some(ns.to_owned());
                    if h.is_empty() {
                        return None;
                    }
                    let h = h.split_once("://").map_or(h, |(_, x)| x);
                    parts[0] = Some(h.to_owned());
                }
            }
        }
    }
    let defaults = ["registry.ollama.ai", "library", "", "latest"];
    let mut out: [String; 4] = Default::default();
    for (i, p) in parts.into_iter().enumerate() {
        let v = p.unwrap_or_else(|| defaults[i].to_owned());
        if !valid_part(i, &v) {
            return None;
        }
        out[i] = v;
    }
    Some(out)
}

/// Case-insensitive key of a valid name.
fn model_key(name: &str) -> Option<String> {
    let [h, n, m, t] = parse_name(name)?;
    Some(format!("{h}/{n}/{m}:{t}").to_ascii_lowercase())
}

/// `model:tag` (with namespace/host when not the defaults), as `/api/tags` lists names.
fn display_name(name: &str) -> String {
    match parse_name(name) {
        Some([h, n, m, t]) if h == "registry.ollama.ai" && n == "library" => format!("{m}:{t}"),
        Some([h, n, m, t]) if h == "registry.ollama.ai" => format!("{n}/{m}:{t}"),
        Some([h, n, m, t]) => format!("{h}/{n}/{m}:{t}"),
        None => name.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn go_sharp_v_forms() {
        // strconv.FormatFloat(v, 'g', -1, 64) and strconv.Quote, as Go prints them.
        assert_eq!(go_float(512.0), "512");
        assert_eq!(go_float(0.6), "0.6");
        assert_eq!(go_float(100000.0), "100000");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.000015), "1.5e-05");
        assert_eq!(go_float(-2.5), "-2.5");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_quote("<|eot_id|>"), "\"<|eot_id|>\"");
        assert_eq!(go_quote("a\"b\\\n\u{1}é"), "\"a\\\"b\\\\\\n\\x01é\"");
    }

    #[test]
    fn names() {
        assert_eq!(
            model_key("Foo"),
            Some("registry.ollama.ai/library/foo:latest".to_owned())
        );
        assert!(model_key("a b").is_none());
        assert!(model_key("ns.x/model").is_none());
        assert!(model_key(":tag").is_none());
        assert_eq!(display_name("me/m:v1"), "me/m:v1");
    }

    #[test]
    fn spawned_server_answers_synchronous_clients() {
        use std::io::{Read, Write};
        let fake = FakeOllama::spawn().unwrap();
        let mut conn = std::net::TcpStream::connect(fake.addr()).unwrap();
        conn.write_all(
            b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.ends_with(&format!("{{\"version\":\"{FAKE_VERSION}\"}}")),
            "{text}"
        );
        assert_eq!(fake.count("GET", "/api/version"), 1);
    }

    #[test]
    fn rel_paths() {
        assert!(valid_rel_path("model.gguf"));
        assert!(valid_rel_path("sub/model.gguf"));
        assert!(!valid_rel_path("/abs/model.gguf"));
        assert!(!valid_rel_path("../model.gguf"));
        assert!(!valid_rel_path("a//b"));
    }
}
