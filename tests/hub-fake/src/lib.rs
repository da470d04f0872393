//! A fake Hugging Face Hub for tests: the upload protocol huggingface_hub uses without Xet, and
//! enough of the download side for huggingface_hub's own client to read files back.
//!
//! [`FakeHub::start`] binds two listeners on `127.0.0.1`: the Hub (API, LFS batch, commit,
//! resolve) and a separate "storage" origin standing for S3, where pre-signed LFS upload URLs
//! point. Behaviour follows huggingface_hub's client (`hf_api.py`, `_commit_api.py`, `lfs.py`,
//! `file_download.py`) and what the Hub checks:
//!
//! * API calls need `Authorization: Bearer <token>` (or git's Basic with the token as password)
//!   of a token added with [`FakeHub::add_token`]: 401 without a valid one, 403 when the token may
//!   not write to the namespace or is read-only;
//! * `POST /api/repos/create` → 409 when the repository exists; a new repository has an initial
//!   commit holding the Hub's default `.gitattributes`;
//! * `POST /api/models/{repo}/preupload/{rev}` checks each `sample` is base64 of at most 512
//!   bytes and answers `uploadMode` (`lfs` for files from [`FakeHub::set_lfs_threshold`] bytes
//!   on, binary samples, or names the default `.gitattributes` tracks), `shouldIgnore` and the
//!   current `oid` (git blob sha1 or LFS sha256);
//! * `POST /{repo}.git/info/lfs/objects/batch` needs the git-lfs media type, `operation:
//!   upload`, 64-hex oids; stored objects come back without `actions`; objects from
//!   [`FakeHub::set_multipart`]'s threshold on get a multipart action (`chunk_size` and numbered
//!   part URLs); others a single pre-signed PUT URL; all get a `verify` action;
//! * storage PUTs must carry the URL signature, a `Content-Length`, and **no** `Authorization`
//!   header (S3 refuses a request with two authentication mechanisms): such a request is answered
//!   400 and recorded ([`FakeHub::storage_auth_violations`]);
//! * multipart completion checks every part's ETag and the object's SHA-256 and size;
//!   verify checks the uploaded bytes hash to the oid; only verified objects can be committed;
//! * `POST /api/models/{repo}/commit/{rev}` takes NDJSON: a first `header` line with a non-empty
//!   `summary`, then `file` (base64 content), `lfsFile` (a verified oid, matching size),
//!   `deletedFile`, `deletedFolder`; anything else is 400;
//! * `POST /api/validate-yaml` checks the README front matter closes and that
//!   `base_model_relation` is one the Hub knows;
//! * `GET /api/models/{repo}[/revision/{rev}]`, `.../tree/{rev}`, `HEAD`/`GET
//!   /{repo}/resolve/{rev}/{path}` (with `X-Repo-Commit`, `ETag`, `X-Linked-Etag`,
//!   `X-Linked-Size`);
//! * faults: status answers and dropped connections ([`Fault`]).
//!
//! Test-only: never a dependency of the product except as a dev-dependency.
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// The Hub's default `.gitattributes` patterns tracked by LFS (file-name suffixes).
const LFS_SUFFIXES: &[&str] = &[
    ".7z",
    ".arrow",
    ".bin",
    ".bz2",
    ".ckpt",
    ".ftz",
    ".gz",
    ".h5",
    ".joblib",
    ".mlmodel",
    ".model",
    ".msgpack",
    ".npy",
    ".npz",
    ".onnx",
    ".ot",
    ".parquet",
    ".pb",
    ".pickle",
    ".pkl",
    ".pt",
    ".pth",
    ".rar",
    ".safetensors",
    ".tar",
    ".tflite",
    ".tgz",
    ".wasm",
    ".xz",
    ".zip",
    ".zst",
];

/// The `base_model_relation` values the Hub accepts.
pub const BASE_MODEL_RELATIONS: &[&str] = &["adapter", "merge", "quantized", "finetune"];

/// A scripted misbehaviour; it applies to the next matching requests, then expires.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer `times` requests whose method matches and whose path starts with `path` with
    /// `status` and `{"error": message}`.
    Status {
        /// `GET`, `POST`, `PUT` …
        method: &'static str,
        /// Path prefix (`/api/repos/create`, `/storage/`).
        path: &'static str,
        /// HTTP status.
        status: u16,
        /// Error message.
        message: String,
        /// How many requests.
        times: u32,
    },
    /// The next `times` storage PUTs (single or part) read `after_bytes`, then drop the
    /// connection.
    DropUpload {
        /// Bytes read before dropping.
        after_bytes: u64,
        /// How many uploads.
        times: u32,
    },
}

/// Which listener a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The Hub.
    Hub,
    /// The storage (pre-signed URLs).
    Storage,
}

/// A request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Which listener.
    pub origin: Origin,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// The `Authorization` header, when sent.
    pub authorization: Option<String>,
}

/// A file in a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFile {
    /// Content.
    pub content: Bytes,
    /// True when stored through LFS.
    pub lfs: bool,
    /// SHA-256 of the content.
    pub sha256: String,
    /// Git blob sha1 of the content.
    pub git_oid: String,
}

impl RepoFile {
    fn new(content: Bytes, lfs: bool) -> RepoFile {
        RepoFile {
            sha256: hex::encode(Sha256::digest(&content)),
            git_oid: git_blob_oid(&content),
            content,
            lfs,
        }
    }

    /// The oid the Hub reports for this file (sha256 for LFS, git blob sha1 otherwise).
    pub fn oid(&self) -> &str {
        if self.lfs {
            &self.sha256
        } else {
            &self.git_oid
        }
    }
}

/// A commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRecord {
    /// Its id (40 hex).
    pub oid: String,
    /// Summary line.
    pub summary: String,
    /// Description.
    pub description: String,
    /// The files after it.
    pub files: BTreeMap<String, RepoFile>,
}

#[derive(Debug, Clone)]
struct Repo {
    private: bool,
    branches: BTreeMap<String, String>,
    commits: Vec<CommitRecord>,
}

impl Repo {
    fn commit(&self, revision: &str) -> Option<&CommitRecord> {
        let oid = self
            .branches
            .get(revision)
            .map(String::as_str)
            .unwrap_or(revision);
        self.commits.iter().find(|c| c.oid == oid)
    }
}

#[derive(Debug, Clone)]
struct TokenInfo {
    user: String,
    orgs: Vec<String>,
    write: bool,
}

#[derive(Debug)]
struct MultipartUpload {
    oid: String,
    size: u64,
    chunk_size: u64,
    parts: BTreeMap<u64, (Bytes, String)>,
}

struct Inner {
    tokens: BTreeMap<String, TokenInfo>,
    repos: BTreeMap<String, Repo>,
    /// Verified LFS objects.
    objects: BTreeMap<String, Bytes>,
    /// Uploaded, not yet verified.
    uploaded: BTreeMap<String, Bytes>,
    multipart: BTreeMap<u64, MultipartUpload>,
    lfs_threshold: u64,
    multipart_threshold: u64,
    chunk_size: u64,
    max_file_size: u64,
    faults: Vec<Fault>,
    requests: Vec<RecordedRequest>,
    commit_payloads: Vec<Vec<Value>>,
    storage_auth_violations: u32,
    next_id: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    hub_url: String,
    storage_url: String,
    storage_bytes: AtomicU64,
    /// How long each part PUT is held before its body is read (milliseconds).
    part_delay_ms: AtomicU64,
    /// Part PUTs being served now, and the most seen at once.
    parts_in_flight: AtomicU64,
    max_parts_in_flight: AtomicU64,
    secret: String,
}

/// Counts a part PUT as in flight until dropped.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> InFlight<'a> {
        let now = shared.parts_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_parts_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.parts_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn sign(&self, path: &str) -> String {
        hex::encode(&Sha256::digest(format!("{}{path}", self.secret))[..16])
    }
}

/// A running fake Hub; dropping it stops the server.
pub struct FakeHub {
    shared: Arc<Shared>,
    shutdown: Vec<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeHub {
    /// Starts the Hub and its storage on `127.0.0.1:0` in the current tokio runtime.
    pub async fn start() -> io::Result<FakeHub> {
        let hub = TcpListener::bind("127.0.0.1:0").await?;
        let storage = TcpListener::bind("127.0.0.1:0").await?;
        let hub_addr: SocketAddr = hub.local_addr()?;
        let storage_addr: SocketAddr = storage.local_addr()?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                tokens: BTreeMap::new(),
                repos: BTreeMap::new(),
                objects: BTreeMap::new(),
                uploaded: BTreeMap::new(),
                multipart: BTreeMap::new(),
                lfs_threshold: 10 * 1024 * 1024,
                multipart_threshold: u64::MAX,
                chunk_size: 5 * 1024 * 1024,
                max_file_size: 50_000_000_000,
                faults: Vec::new(),
                requests: Vec::new(),
                commit_payloads: Vec::new(),
                storage_auth_violations: 0,
                next_id: 1,
            }),
            hub_url: format!("http://{hub_addr}"),
            storage_url: format!("http://{storage_addr}"),
            storage_bytes: AtomicU64::new(0),
            part_delay_ms: AtomicU64::new(0),
            parts_in_flight: AtomicU64::new(0),
            max_parts_in_flight: AtomicU64::new(0),
            secret: format!("fake-hub-{}", std::process::id()),
        });
        let mut shutdown = Vec::new();
        for (listener, origin) in [(hub, Origin::Hub), (storage, Origin::Storage)] {
            let app = router(Arc::clone(&shared));
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            shutdown.push(tx);
            let listener = fake_conn::KillListener::new(listener, origin);
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
        }
        Ok(FakeHub {
            shared,
            shutdown,
            runtime: None,
        })
    }

    /// Starts the server on its own background runtime, for synchronous tests and for a
    /// subprocess (the official Python client) to talk to.
    pub fn spawn() -> io::Result<FakeHub> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let mut fake = runtime.block_on(FakeHub::start())?;
        fake.runtime = Some(runtime);
        Ok(fake)
    }

    /// The Hub's URL (`HF_ENDPOINT`).
    pub fn url(&self) -> String {
        self.shared.hub_url.clone()
    }

    /// The storage origin's URL.
    pub fn storage_url(&self) -> String {
        self.shared.storage_url.clone()
    }

    /// Adds a token for `user`, member of `orgs`, with write access or read-only.
    pub fn add_token(&self, token: &str, user: &str, orgs: &[&str], write: bool) {
        self.shared.lock().tokens.insert(
            token.to_owned(),
            TokenInfo {
                user: user.to_owned(),
                orgs: orgs.iter().map(|s| (*s).to_owned()).collect(),
                write,
            },
        );
    }

    /// Files from this size on are LFS (the Hub's is 10 MiB).
    pub fn set_lfs_threshold(&self, bytes: u64) {
        self.shared.lock().lfs_threshold = bytes;
    }

    /// Objects from `threshold` bytes on are uploaded in parts of `chunk_size`.
    pub fn set_multipart(&self, threshold: u64, chunk_size: u64) {
        let mut inner = self.shared.lock();
        inner.multipart_threshold = threshold;
        inner.chunk_size = chunk_size.max(1);
    }

    /// The per-file limit (the Hub's is 50 GB).
    pub fn set_max_file_size(&self, bytes: u64) {
        self.shared.lock().max_file_size = bytes;
    }

    /// Holds every multipart part PUT this long before reading it, so that parts sent in
    /// parallel overlap ([`FakeHub::max_parts_in_flight`]).
    pub fn set_part_delay(&self, delay: Duration) {
        self.shared
            .part_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// The most multipart part PUTs that were served at the same time.
    pub fn max_parts_in_flight(&self) -> u64 {
        self.shared.max_parts_in_flight.load(Ordering::SeqCst)
    }

    /// Schedules a fault.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Creates a repository directly (as another user might have).
    pub fn create_repo(&self, repo: &str, private: bool) {
        let mut inner = self.shared.lock();
        let oid = next_oid(&mut inner, "initial commit");
        inner.repos.insert(repo.to_owned(), new_repo(private, oid));
    }

    /// Whether the repository exists.
    pub fn repo_exists(&self, repo: &str) -> bool {
        self.shared.lock().repos.contains_key(repo)
    }

    /// Whether the repository is private.
    pub fn is_private(&self, repo: &str) -> Option<bool> {
        self.shared.lock().repos.get(repo).map(|r| r.private)
    }

    /// The files at a revision (branch or commit id).
    pub fn files(&self, repo: &str, revision: &str) -> Option<BTreeMap<String, RepoFile>> {
        let inner = self.shared.lock();
        inner
            .repos
            .get(repo)?
            .commit(revision)
            .map(|c| c.files.clone())
    }

    /// The commits of a repository, oldest first.
    pub fn commits(&self, repo: &str) -> Vec<CommitRecord> {
        let inner = self.shared.lock();
        inner
            .repos
            .get(repo)
            .map(|r| r.commits.clone())
            .unwrap_or_default()
    }

    /// The commit a branch points at.
    pub fn head(&self, repo: &str, branch: &str) -> Option<String> {
        let inner = self.shared.lock();
        inner.repos.get(repo)?.branches.get(branch).cloned()
    }

    /// Creates a branch at the current head of `from`.
    pub fn create_branch(&self, repo: &str, branch: &str, from: &str) {
        let mut inner = self.shared.lock();
        if let Some(r) = inner.repos.get_mut(repo) {
            if let Some(head) = r.branches.get(from).cloned() {
                r.branches.insert(branch.to_owned(), head);
            }
        }
    }

    /// Stores an LFS object directly (as if uploaded by someone earlier); returns its oid.
    pub fn put_lfs_object(&self, bytes: &[u8]) -> String {
        let oid = hex::encode(Sha256::digest(bytes));
        self.shared
            .lock()
            .objects
            .insert(oid.clone(), Bytes::copy_from_slice(bytes));
        oid
    }

    /// Whether a verified LFS object is stored.
    pub fn has_lfs_object(&self, oid: &str) -> bool {
        self.shared.lock().objects.contains_key(oid)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Requests with this method whose path starts with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.method == method && r.uri.starts_with(prefix))
            .count()
    }

    /// Body bytes received by the storage origin (LFS uploads).
    pub fn storage_bytes(&self) -> u64 {
        self.shared.storage_bytes.load(Ordering::Relaxed)
    }

    /// Storage requests that carried an `Authorization` header (refused with 400).
    pub fn storage_auth_violations(&self) -> u32 {
        self.shared.lock().storage_auth_violations
    }

    /// The parsed NDJSON lines of every commit request that was accepted, in order.
    pub fn commit_payloads(&self) -> Vec<Vec<Value>> {
        self.shared.lock().commit_payloads.clone()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        for tx in self.shutdown.drain(..) {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Git's blob id of `content`.
pub fn git_blob_oid(content: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    hex::encode(h.finalize())
}

/// The Hub's default `.gitattributes` (the LFS patterns, one per line).
pub fn default_gitattributes() -> String {
    LFS_SUFFIXES
        .iter()
        .map(|s| format!("*{s} filter=lfs diff=lfs merge=lfs -text\n"))
        .collect()
}

fn next_oid(inner: &mut Inner, salt: &str) -> String {
    inner.next_id += 1;
    let mut h = Sha1::new();
    h.update(format!("{}:{salt}", inner.next_id).as_bytes());
    hex::encode(h.finalize())
}

fn new_repo(private: bool, oid: String) -> Repo {
    let mut files = BTreeMap::new();
    files.insert(
        ".gitattributes".to_owned(),
        RepoFile::new(Bytes::from(default_gitattributes()), false),
    );
    let mut branches = BTreeMap::new();
    branches.insert("main".to_owned(), oid.clone());
    Repo {
        private,
        branches,
        commits: vec![CommitRecord {
            oid,
            summary: "initial commit".to_owned(),
            description: String::new(),
            files,
        }],
    }
}

// ---- connection killing and origin tagging -------------------------------------------------

/// Per-connection handle given to handlers: `kill()` breaks the connection, `tag` is the origin
/// (Hub or storage) that accepted it.
type ConnTag = fake_conn::Conn<Origin>;

// ---- routing ----------------------------------------------------------------------------------

type AppState = Arc<Shared>;

fn router(shared: AppState) -> Router {
    Router::new()
        .route("/api/repos/create", post(create_repo))
        .route("/api/repos/delete", axum::routing::delete(delete_repo))
        .route("/api/validate-yaml", post(validate_yaml))
        .route("/api/whoami-v2", get(whoami))
        .route("/api/models/{owner}/{name}", get(model_info_main))
        .route("/api/models/{owner}/{name}/revision/{rev}", get(model_info))
        .route("/api/models/{owner}/{name}/tree/{rev}", get(tree))
        .route(
            "/api/models/{owner}/{name}/preupload/{rev}",
            post(preupload),
        )
        .route("/api/models/{owner}/{name}/commit/{rev}", post(commit))
        .route("/{owner}/{name}/info/lfs/objects/batch", post(lfs_batch))
        .route("/{owner}/{name}/info/lfs/objects/verify", post(lfs_verify))
        .route(
            "/{owner}/{name}/resolve/{rev}/{*path}",
            get(resolve).head(resolve),
        )
        .route("/lfs-complete/{id}", post(complete_multipart))
        .route("/storage/object/{oid}", put(storage_put))
        .route("/storage/part/{id}/{part}", put(storage_part))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            record_and_fault,
        ))
        .with_state(shared)
}

async fn record_and_fault(
    State(shared): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnTag>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().as_str().to_owned();
    let uri = req.uri().to_string();
    let path = req.uri().path().to_owned();
    // Storage routes answer only on the storage origin, Hub routes only on the Hub.
    let storage_path = path.starts_with("/storage/");
    if storage_path != (conn.tag == Origin::Storage) {
        return error(404, "Not Found");
    }
    let scripted = {
        let mut inner = shared.lock();
        inner.requests.push(RecordedRequest {
            origin: conn.tag,
            method: method.clone(),
            uri,
            authorization: req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
        let mut hit = None;
        for fault in inner.faults.iter_mut() {
            if let Fault::Status {
                method: m,
                path: p,
                status,
                message,
                times,
            } = fault
            {
                if *times > 0 && *m == method && path.starts_with(*p) {
                    *times -= 1;
                    hit = Some((*status, message.clone()));
                    break;
                }
            }
        }
        hit
    };
    match scripted {
        Some((status, message)) => error(status, &message),
        None => next.run(req).await,
    }
}

/// A refusal computed by a helper, answered as is by the handler.
type Refused = Box<Response>;

fn refuse(response: Response) -> Refused {
    Box::new(response)
}

fn error(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({ "error": message }))).into_response()
}

fn error_code(status: u16, code: &str, message: &str) -> Response {
    let mut resp = error(status, message);
    if let Ok(v) = HeaderValue::from_str(code) {
        resp.headers_mut().insert("x-error-code", v);
    }
    if let Ok(v) = HeaderValue::from_str(message) {
        resp.headers_mut().insert("x-error-message", v);
    }
    resp
}

// ---- auth --------------------------------------------------------------------------------------

fn token_of(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_owned());
    }
    let basic = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

fn caller(inner: &Inner, headers: &HeaderMap) -> Result<TokenInfo, Refused> {
    match token_of(headers).and_then(|t| inner.tokens.get(&t).cloned()) {
        Some(info) => Ok(info),
        None => Err(refuse(error(
            401,
            "Invalid credentials in Authorization header",
        ))),
    }
}

fn may_write(info: &TokenInfo, owner: &str) -> bool {
    info.write && (info.user == owner || info.orgs.iter().any(|o| o == owner))
}

fn may_read(inner: &Inner, headers: &HeaderMap, repo: &Repo, owner: &str) -> bool {
    if !repo.private {
        return true;
    }
    match caller(inner, headers) {
        Ok(info) => info.user == owner || info.orgs.iter().any(|o| o == owner),
        Err(_) => false,
    }
}

fn repo_not_found(repo: &str) -> Response {
    error_code(
        404,
        "RepoNotFound",
        &format!("Repository Not Found for url: /api/models/{repo}."),
    )
}

fn revision_not_found(revision: &str) -> Response {
    error_code(
        404,
        "RevisionNotFound",
        &format!("Invalid rev id: {revision}"),
    )
}

/// Checks the caller may write to `owner/name` and that `revision` is a branch of it.
fn writable<'a>(
    inner: &'a mut Inner,
    headers: &HeaderMap,
    owner: &str,
    name: &str,
    revision: Option<&str>,
) -> Result<&'a mut Repo, Refused> {
    let info = caller(inner, headers)?;
    let id = format!("{owner}/{name}");
    if !inner.repos.contains_key(&id) {
        return Err(refuse(repo_not_found(&id)));
    }
    if !may_write(&info, owner) {
        return Err(refuse(error(
            403,
            &format!("You don't have the rights to write to {id}"),
        )));
    }
    let repo = inner
        .repos
        .get_mut(&id)
        .ok_or_else(|| refuse(repo_not_found(&id)))?;
    if let Some(rev) = revision {
        if !repo.branches.contains_key(rev) {
            return Err(refuse(revision_not_found(rev)));
        }
    }
    Ok(repo)
}

// ---- repositories ----------------------------------------------------------------------------

async fn create_repo(State(shared): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let mut inner = shared.lock();
    let info = match caller(&inner, &headers) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "Invalid JSON body");
    };
    let Some(name) = body["name"].as_str() else {
        return error(400, "\"name\" is required");
    };
    if !matches!(body.get("type"), None | Some(Value::Null))
        && body["type"].as_str() != Some("model")
    {
        return error(400, "this fake Hub only has model repositories");
    }
    let owner = body["organization"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| info.user.clone());
    let private = match (body.get("visibility"), body.get("private")) {
        (Some(Value::String(v)), _) if v == "private" => true,
        (Some(Value::String(v)), _) if v == "public" => false,
        (Some(v), _) if !v.is_null() => return error(400, "invalid visibility"),
        (_, Some(Value::Bool(p))) => *p,
        _ => false,
    };
    if !may_write(&info, &owner) {
        return error(
            403,
            &format!("You don't have the rights to create a model under the namespace \"{owner}\""),
        );
    }
    let id = format!("{owner}/{name}");
    let url = format!("{}/{id}", shared.hub_url);
    if inner.repos.contains_key(&id) {
        return (
            StatusCode::CONFLICT,
            Json(json!({"error": "You already created this model repo", "url": url})),
        )
            .into_response();
    }
    let oid = next_oid(&mut inner, &id);
    inner.repos.insert(id.clone(), new_repo(private, oid));
    Json(json!({"url": url, "name": id, "id": id})).into_response()
}

async fn delete_repo(State(shared): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let mut inner = shared.lock();
    let info = match caller(&inner, &headers) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "Invalid JSON body");
    };
    let owner = body["organization"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| info.user.clone());
    let id = format!("{owner}/{}", body["name"].as_str().unwrap_or_default());
    if !inner.repos.contains_key(&id) {
        return repo_not_found(&id);
    }
    if !may_write(&info, &owner) {
        return error(403, "You don't have the rights to delete this repo");
    }
    inner.repos.remove(&id);
    StatusCode::OK.into_response()
}

async fn whoami(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    let inner = shared.lock();
    match caller(&inner, &headers) {
        Ok(info) => Json(json!({
            "type": "user",
            "name": info.user,
            "orgs": info.orgs.iter().map(|o| json!({"name": o})).collect::<Vec<_>>(),
            "auth": {"accessToken": {"displayName": "fake", "role": if info.write { "write" } else { "read" }}},
        }))
        .into_response(),
        Err(r) => *r,
    }
}

async fn validate_yaml(
    State(shared): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    {
        let inner = shared.lock();
        if let Err(r) = caller(&inner, &headers) {
            return *r;
        }
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "Invalid JSON body");
    };
    let content = body["content"].as_str().unwrap_or_default();
    let mut errors = Vec::new();
    if let Some(rest) = content.strip_prefix("---\n") {
        match rest.find("\n---") {
            None => errors.push("the YAML front matter is not closed by `---`".to_owned()),
            Some(end) => {
                for line in rest[..end].lines() {
                    if let Some(value) = line.strip_prefix("base_model_relation:") {
                        let value = value.trim().trim_matches('"');
                        if !BASE_MODEL_RELATIONS.contains(&value) {
                            errors.push(format!(
                                "\"base_model_relation\" must be one of {BASE_MODEL_RELATIONS:?}, got {value:?}"
                            ));
                        }
                    }
                    if !line.is_empty() && !line.starts_with([' ', '-', '#']) && !line.contains(':')
                    {
                        errors.push(format!("not a YAML mapping line: {line:?}"));
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Json(json!({"errors": [], "warnings": []})).into_response()
    } else {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "errors": errors.iter().map(|e| json!({"message": e})).collect::<Vec<_>>(),
                "warnings": [],
            })),
        )
            .into_response()
    }
}

fn info_json(shared: &Shared, id: &str, repo: &Repo, commit: &CommitRecord) -> Value {
    json!({
        "_id": id,
        "id": id,
        "modelId": id,
        "private": repo.private,
        "sha": commit.oid,
        "lastModified": "2026-01-01T00:00:00.000Z",
        "tags": [],
        "downloads": 0,
        "likes": 0,
        "siblings": commit.files.keys().map(|p| json!({"rfilename": p})).collect::<Vec<_>>(),
        "url": format!("{}/{id}", shared.hub_url),
    })
}

async fn model_info_main(
    state: State<AppState>,
    headers: HeaderMap,
    Path((owner, name)): Path<(String, String)>,
) -> Response {
    model_info(state, headers, Path((owner, name, "main".to_owned()))).await
}

async fn model_info(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path((owner, name, rev)): Path<(String, String, String)>,
) -> Response {
    let inner = shared.lock();
    let id = format!("{owner}/{name}");
    let Some(repo) = inner.repos.get(&id) else {
        return repo_not_found(&id);
    };
    if !may_read(&inner, &headers, repo, &owner) {
        return error_code(401, "RepoNotFound", "Repository Not Found");
    }
    match repo.commit(&rev) {
        Some(commit) => Json(info_json(&shared, &id, repo, commit)).into_response(),
        None => revision_not_found(&rev),
    }
}

async fn tree(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path((owner, name, rev)): Path<(String, String, String)>,
) -> Response {
    let inner = shared.lock();
    let id = format!("{owner}/{name}");
    let Some(repo) = inner.repos.get(&id) else {
        return repo_not_found(&id);
    };
    if !may_read(&inner, &headers, repo, &owner) {
        return error_code(401, "RepoNotFound", "Repository Not Found");
    }
    let Some(commit) = repo.commit(&rev) else {
        return revision_not_found(&rev);
    };
    let entries: Vec<Value> = commit
        .files
        .iter()
        .map(|(path, f)| {
            let mut entry = json!({
                "type": "file",
                "oid": f.git_oid,
                "size": f.content.len(),
                "path": path,
            });
            if f.lfs {
                entry["lfs"] =
                    json!({"oid": f.sha256, "size": f.content.len(), "pointerSize": 134});
            }
            entry
        })
        .collect();
    Json(entries).into_response()
}

async fn resolve(
    State(shared): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path((owner, name, rev, path)): Path<(String, String, String, String)>,
) -> Response {
    let inner = shared.lock();
    let id = format!("{owner}/{name}");
    let Some(repo) = inner.repos.get(&id) else {
        return repo_not_found(&id);
    };
    if !may_read(&inner, &headers, repo, &owner) {
        return error_code(401, "RepoNotFound", "Repository Not Found");
    }
    let Some(commit) = repo.commit(&rev) else {
        return revision_not_found(&rev);
    };
    let Some(file) = commit.files.get(&path) else {
        return error_code(404, "EntryNotFound", &format!("{path} does not exist"));
    };
    let mut resp = if method == Method::HEAD {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(file.content.clone()))
    };
    let h = resp.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set("x-repo-commit", commit.oid.clone());
    set("content-length", file.content.len().to_string());
    set("content-type", "application/octet-stream".to_owned());
    if file.lfs {
        set("etag", format!("\"{}\"", file.sha256));
        set("x-linked-etag", format!("\"{}\"", file.sha256));
        set("x-linked-size", file.content.len().to_string());
    } else {
        set("etag", format!("\"{}\"", file.git_oid));
    }
    resp
}

// ---- preupload and commit ----------------------------------------------------------------------

async fn preupload(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path((owner, name, rev)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let mut inner = shared.lock();
    let threshold = inner.lfs_threshold;
    let repo = match writable(&mut inner, &headers, &owner, &name, Some(&rev)) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "Invalid JSON body");
    };
    let Some(files) = body["files"].as_array() else {
        return error(400, "\"files\" must be an array");
    };
    let Some(head) = repo.commit(&rev) else {
        return revision_not_found(&rev);
    };
    let mut answers = Vec::new();
    for file in files {
        let (Some(path), Some(sample), Some(size)) = (
            file["path"].as_str(),
            file["sample"].as_str(),
            file["size"].as_u64(),
        ) else {
            return error(400, "each file needs \"path\", \"sample\" and \"size\"");
        };
        let Ok(sample) = base64::engine::general_purpose::STANDARD.decode(sample) else {
            return error(400, &format!("the sample of {path} is not base64"));
        };
        if sample.len() > 512 || sample.len() as u64 > size {
            return error(400, &format!("the sample of {path} is too long"));
        }
        let lfs = size >= threshold
            || sample.contains(&0)
            || LFS_SUFFIXES.iter().any(|s| path.ends_with(s));
        let mut answer = json!({
            "path": path,
            "uploadMode": if lfs { "lfs" } else { "regular" },
            "shouldIgnore": false,
        });
        if let Some(existing) = head.files.get(path) {
            answer["oid"] = json!(existing.oid());
        }
        answers.push(answer);
    }
    Json(json!({"files": answers, "commitOid": head.oid})).into_response()
}

async fn commit(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path((owner, name, rev)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/x-ndjson" {
        return error(400, "the commit body must be application/x-ndjson");
    }
    let mut lines = Vec::new();
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => lines.push(v),
            Err(e) => return error(400, &format!("invalid NDJSON line: {e}")),
        }
    }
    let mut guard = shared.lock();
    let inner = &mut *guard;
    let objects = inner.objects.clone();
    let repo = match writable(inner, &headers, &owner, &name, Some(&rev)) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let Some(first) = lines.first() else {
        return error(400, "empty commit payload");
    };
    if first["key"] != "header" {
        return error(400, "the first line must be the header");
    }
    let Some(summary) = first["value"]["summary"]
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
    else {
        return error(400, "the commit header needs a non-empty \"summary\"");
    };
    let description = match &first["value"]["description"] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        _ => return error(400, "\"description\" must be a string"),
    };
    let Some(head) = repo.commit(&rev).cloned() else {
        return revision_not_found(&rev);
    };
    if let Some(parent) = first["value"]["parentCommit"].as_str() {
        if parent != head.oid {
            return error(
                412,
                "A commit has happened since. Please refresh and try again.",
            );
        }
    }
    let mut files = head.files.clone();
    for line in &lines[1..] {
        let value = &line["value"];
        let Some(path) = value["path"].as_str() else {
            return error(400, "an operation without \"path\"");
        };
        if path.is_empty()
            || path.starts_with('/')
            || path
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == ".." || p == ".git")
        {
            return error(400, &format!("invalid path {path:?}"));
        }
        match line["key"].as_str() {
            Some("file") => {
                if value["encoding"] != "base64" {
                    return error(400, &format!("{path}: only base64 encoding is accepted"));
                }
                let Some(content) = value["content"].as_str() else {
                    return error(400, &format!("{path}: no \"content\""));
                };
                let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(content) else {
                    return error(400, &format!("{path}: content is not valid base64"));
                };
                files.insert(path.to_owned(), RepoFile::new(Bytes::from(bytes), false));
            }
            Some("lfsFile") => {
                if !matches!(value.get("algo"), None | Some(Value::Null))
                    && value["algo"] != "sha256"
                {
                    return error(400, &format!("{path}: algo must be sha256"));
                }
                let Some(oid) = value["oid"].as_str() else {
                    return error(400, &format!("{path}: no \"oid\""));
                };
                let Some(bytes) = objects.get(oid) else {
                    return error(
                        422,
                        &format!("{path}: LFS object {oid} was not uploaded (or not verified)"),
                    );
                };
                if let Some(size) = value["size"].as_u64() {
                    if size != bytes.len() as u64 {
                        return error(
                            422,
                            &format!("{path}: size {size} does not match the object"),
                        );
                    }
                }
                files.insert(path.to_owned(), RepoFile::new(bytes.clone(), true));
            }
            Some("deletedFile") => {
                if files.remove(path).is_none() {
                    return error(404, &format!("A file with this name doesn't exist: {path}"));
                }
            }
            Some("deletedFolder") => {
                let prefix = format!("{}/", path.trim_end_matches('/'));
                files.retain(|p, _| !p.starts_with(&prefix));
            }
            other => return error(400, &format!("unknown operation {other:?}")),
        }
    }
    inner.next_id += 1;
    let mut h = Sha1::new();
    h.update(format!("{}:{}:{summary}", inner.next_id, head.oid).as_bytes());
    for (p, f) in &files {
        h.update(format!("{p}:{}", f.oid()).as_bytes());
    }
    let oid = hex::encode(h.finalize());
    let id = format!("{owner}/{name}");
    let Some(repo) = inner.repos.get_mut(&id) else {
        return repo_not_found(&id);
    };
    repo.commits.push(CommitRecord {
        oid: oid.clone(),
        summary: summary.clone(),
        description,
        files,
    });
    repo.branches.insert(rev.clone(), oid.clone());
    inner.commit_payloads.push(lines);
    Json(json!({
        "success": true,
        "commitOid": oid,
        "commitUrl": format!("{}/{id}/commit/{oid}", shared.hub_url),
        "commitMessage": summary,
        "hookOutput": "",
        "pullRequestUrl": null,
    }))
    .into_response()
}

// ---- LFS ----------------------------------------------------------------------------------------

fn lfs_json(status: StatusCode, value: Value) -> Response {
    let mut resp = (status, value.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.git-lfs+json"),
    );
    resp
}

fn lfs_repo(name: &str) -> Option<&str> {
    name.strip_suffix(".git")
}

fn is_oid(oid: &str) -> bool {
    oid.len() == 64
        && oid
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

async fn lfs_batch(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(name) = lfs_repo(&name) else {
        return error(404, "Not Found");
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !accept.contains("application/vnd.git-lfs+json") {
        return error(406, "Accept must be application/vnd.git-lfs+json");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "Invalid JSON body");
    };
    if body["operation"] != "upload" {
        return error(400, "only the upload operation is supported");
    }
    if !matches!(body.get("hash_algo"), None | Some(Value::Null)) && body["hash_algo"] != "sha256" {
        return error(409, "unsupported hash algorithm");
    }
    let transfers: Vec<&str> = body["transfers"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_else(|| vec!["basic"]);
    let revision = body["ref"]["name"].as_str().map(str::to_owned);
    let mut guard = shared.lock();
    let inner = &mut *guard;
    if let Err(r) = writable(inner, &headers, &owner, name, revision.as_deref()) {
        return *r;
    }
    let Some(objects) = body["objects"].as_array() else {
        return error(400, "\"objects\" must be an array");
    };
    let verify = json!({
        "href": format!("{}/{owner}/{name}.git/info/lfs/objects/verify", shared.hub_url),
        "header": {},
    });
    let mut answers = Vec::new();
    let mut chosen = "basic";
    for object in objects {
        let (Some(oid), Some(size)) = (object["oid"].as_str(), object["size"].as_u64()) else {
            return error(422, "each object needs an \"oid\" and a \"size\"");
        };
        if !is_oid(oid) {
            answers.push(
                json!({"oid": oid, "size": size, "error": {"code": 422, "message": "invalid oid"}}),
            );
            continue;
        }
        if size > inner.max_file_size {
            answers.push(json!({"oid": oid, "size": size, "error": {"code": 422, "message": format!("file is over the {} bytes limit", inner.max_file_size)}}));
            continue;
        }
        if inner
            .objects
            .get(oid)
            .is_some_and(|b| b.len() as u64 == size)
        {
            answers.push(json!({"oid": oid, "size": size}));
            continue;
        }
        if size >= inner.multipart_threshold && transfers.contains(&"multipart") {
            chosen = "multipart";
            inner.next_id += 1;
            let id = inner.next_id;
            let chunk = inner.chunk_size;
            let mut header = serde_json::Map::new();
            header.insert("chunk_size".to_owned(), json!(chunk.to_string()));
            for part in 1..=size.div_ceil(chunk) {
                let path = format!("/storage/part/{id}/{part}");
                header.insert(
                    part.to_string(),
                    json!(format!(
                        "{}{path}?X-Amz-Signature={}",
                        shared.storage_url,
                        shared.sign(&path)
                    )),
                );
            }
            inner.multipart.insert(
                id,
                MultipartUpload {
                    oid: oid.to_owned(),
                    size,
                    chunk_size: chunk,
                    parts: BTreeMap::new(),
                },
            );
            let path = format!("/lfs-complete/{id}");
            answers.push(json!({
                "oid": oid,
                "size": size,
                "authenticated": true,
                "actions": {
                    "upload": {
                        "href": format!("{}{path}?X-Amz-Signature={}", shared.hub_url, shared.sign(&path)),
                        "header": header,
                    },
                    "verify": verify,
                },
            }));
        } else {
            let path = format!("/storage/object/{oid}");
            answers.push(json!({
                "oid": oid,
                "size": size,
                "authenticated": true,
                "actions": {
                    "upload": {
                        "href": format!("{}{path}?X-Amz-Signature={}", shared.storage_url, shared.sign(&path)),
                    },
                    "verify": verify,
                },
            }));
        }
    }
    lfs_json(
        StatusCode::OK,
        json!({"transfer": chosen, "objects": answers, "hash_algo": "sha256"}),
    )
}

/// Checks a pre-signed URL request: signature, no `Authorization`, a `Content-Length`.
fn check_signed(
    shared: &Shared,
    path: &str,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Result<u64, Refused> {
    if headers.contains_key(header::AUTHORIZATION) {
        shared.lock().storage_auth_violations += 1;
        return Err(refuse(error(
            400,
            "InvalidArgument: Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
        )));
    }
    if query.get("X-Amz-Signature") != Some(&shared.sign(path)) {
        return Err(refuse(error(403, "SignatureDoesNotMatch")));
    }
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| refuse(error(411, "MissingContentLength")))
}

/// Reads a storage PUT body, honouring a scheduled drop.
async fn read_upload(
    shared: &Shared,
    conn: &ConnTag,
    body: Body,
    expected: u64,
) -> Result<Bytes, Refused> {
    let drop_after = {
        let mut inner = shared.lock();
        let mut hit = None;
        for fault in inner.faults.iter_mut() {
            if let Fault::DropUpload { after_bytes, times } = fault {
                if *times > 0 {
                    *times -= 1;
                    hit = Some(*after_bytes);
                    break;
                }
            }
        }
        hit
    };
    let mut data = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| refuse(error(400, &e.to_string())))?;
        shared
            .storage_bytes
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        data.extend_from_slice(&chunk);
        if drop_after.is_some_and(|n| data.len() as u64 >= n) {
            conn.kill();
            return Err(refuse(error(500, "connection dropped")));
        }
    }
    if data.len() as u64 != expected {
        return Err(refuse(error(400, "IncompleteBody")));
    }
    Ok(Bytes::from(data))
}

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..32])
}

async fn storage_put(
    State(shared): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnTag>,
    headers: HeaderMap,
    Path(oid): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    body: Body,
) -> Response {
    let path = format!("/storage/object/{oid}");
    let len = match check_signed(&shared, &path, &query, &headers) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let bytes = match read_upload(&shared, &conn, body, len).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let etag = etag_of(&bytes);
    shared.lock().uploaded.insert(oid, bytes);
    ([(header::ETAG, etag)], "").into_response()
}

async fn storage_part(
    State(shared): State<AppState>,
    ConnectInfo(conn): ConnectInfo<ConnTag>,
    headers: HeaderMap,
    Path((id, part)): Path<(u64, u64)>,
    Query(query): Query<BTreeMap<String, String>>,
    body: Body,
) -> Response {
    let path = format!("/storage/part/{id}/{part}");
    let len = match check_signed(&shared, &path, &query, &headers) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let _in_flight = InFlight::enter(&shared);
    let delay = shared.part_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let bytes = match read_upload(&shared, &conn, body, len).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let etag = etag_of(&bytes);
    let mut inner = shared.lock();
    let Some(upload) = inner.multipart.get_mut(&id) else {
        return error(404, "NoSuchUpload");
    };
    upload.parts.insert(part, (bytes, etag.clone()));
    ([(header::ETAG, etag)], "").into_response()
}

async fn complete_multipart(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = format!("/lfs-complete/{id}");
    if query.get("X-Amz-Signature") != Some(&shared.sign(&path)) {
        return error(403, "invalid signature");
    }
    if headers.contains_key(header::AUTHORIZATION) {
        shared.lock().storage_auth_violations += 1;
        return error(
            400,
            "the completion URL is pre-signed: no Authorization header",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "Invalid JSON body");
    };
    let mut inner = shared.lock();
    let Some(upload) = inner.multipart.get(&id) else {
        return error(404, "NoSuchUpload");
    };
    if body["oid"].as_str() != Some(upload.oid.as_str()) {
        return error(400, "oid does not match the upload");
    }
    let Some(parts) = body["parts"].as_array() else {
        return error(400, "\"parts\" must be an array");
    };
    let expected = upload.size.div_ceil(upload.chunk_size);
    if parts.len() as u64 != expected {
        return error(
            400,
            &format!("expected {expected} parts, got {}", parts.len()),
        );
    }
    let mut data = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let number = i as u64 + 1;
        if part["partNumber"].as_u64() != Some(number) {
            return error(400, "parts must be listed in order from 1");
        }
        let Some((bytes, etag)) = upload.parts.get(&number) else {
            return error(400, &format!("part {number} was not uploaded"));
        };
        if part["etag"].as_str() != Some(etag.as_str()) {
            return error(
                400,
                &format!("InvalidPart: the ETag of part {number} does not match"),
            );
        }
        data.extend_from_slice(bytes);
    }
    if data.len() as u64 != upload.size {
        return error(400, "the parts do not add up to the object's size");
    }
    if hex::encode(Sha256::digest(&data)) != upload.oid {
        return error(400, "the uploaded content does not match the sha256 oid");
    }
    let oid = upload.oid.clone();
    inner.multipart.remove(&id);
    inner.uploaded.insert(oid, Bytes::from(data));
    Json(json!({"success": true})).into_response()
}

async fn lfs_verify(
    State(shared): State<AppState>,
    headers: HeaderMap,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(name) = lfs_repo(&name) else {
        return error(404, "Not Found");
    };
    let mut guard = shared.lock();
    let inner = &mut *guard;
    if let Err(r) = writable(inner, &headers, &owner, name, None) {
        return *r;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "Invalid JSON body");
    };
    let (Some(oid), Some(size)) = (body["oid"].as_str(), body["size"].as_u64()) else {
        return error(422, "verify needs \"oid\" and \"size\"");
    };
    if inner
        .objects
        .get(oid)
        .is_some_and(|b| b.len() as u64 == size)
    {
        return lfs_json(StatusCode::OK, json!({"success": true}));
    }
    let Some(bytes) = inner.uploaded.get(oid) else {
        return error(404, &format!("object {oid} was not uploaded"));
    };
    if bytes.len() as u64 != size {
        return error(
            422,
            &format!("object {oid} has {} bytes, not {size}", bytes.len()),
        );
    }
    if hex::encode(Sha256::digest(bytes)) != oid {
        inner.uploaded.remove(oid);
        return error(422, &format!("the uploaded content does not hash to {oid}"));
    }
    if let Some(bytes) = inner.uploaded.remove(oid) {
        inner.objects.insert(oid.to_owned(), bytes);
    }
    lfs_json(StatusCode::OK, json!({"success": true}))
}
