//! The HTTP client: one [`Client`] per Ollama server, configured by [`ClientOptions`].

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use loraforge_progress::Reporter;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;

use crate::error::ClientError;
use crate::host::OllamaHost;
use crate::types::{
    ChatRequest, ChatResponse, CopyRequest, CreateRequest, DeleteRequest, GenerateRequest,
    GenerateResponse, ListResponse, ProcessResponse, ProgressResponse, ShowRequest, ShowResponse,
    VersionResponse,
};
use crate::version::ServerVersion;

/// Longest NDJSON line accepted from a progress stream.
const MAX_STREAM_LINE: usize = 16 << 20;
/// Read buffer for hashing and uploading files.
const FILE_CHUNK: usize = 1 << 20;

/// Connection settings of a [`Client`].
///
/// There is deliberately no read timeout on long calls: a blob upload fails when it *stalls*
/// (no bytes accepted for [`stall_timeout`](Self::stall_timeout)), not after a wall-clock
/// limit, so a 15 GB file over a slow link still goes through; and a create stream may stay
/// silent for minutes while the server validates or quantizes (it forwards no progress from
/// llama-quantize's stderr), so it has no timeout at all. TCP keep-alive notices a server that
/// vanished without closing the connection.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server (default: `http://127.0.0.1:11434`; the caller resolves `OLLAMA_HOST`).
    pub host: OllamaHost,
    /// Time allowed to establish a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Whole-request limit for small JSON calls (version, tags, show, ps, copy, delete, HEAD).
    pub request_timeout: Duration,
    /// An upload attempt fails when the server accepts no bytes for this long, or does not
    /// answer for this long after the last byte.
    pub stall_timeout: Duration,
    /// Whole-request limit for generate and chat (loading a large model can take minutes);
    /// `None` = none.
    pub generate_timeout: Option<Duration>,
    /// How many times a call is retried after an error that may heal (a dropped connection, a
    /// stall, a 5xx other than a full disk, a 429).
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one, up to `max_backoff`.
    pub retry_backoff: Duration,
    /// Longest delay between two retries.
    pub max_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self::with_host(OllamaHost::default())
    }
}

impl ClientOptions {
    /// Default settings for `host`.
    pub fn with_host(host: OllamaHost) -> Self {
        Self {
            host,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(120),
            generate_timeout: Some(Duration::from_secs(600)),
            retries: 3,
            retry_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Result of putting one file into the server's blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobUpload {
    /// `sha256:<hex>`.
    pub digest: String,
    /// False when the server already had the blob (HEAD 200, or POST answered 200).
    pub uploaded: bool,
    /// Bytes sent in the successful attempt (0 when skipped).
    pub bytes_sent: u64,
}

/// Result of a successful create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOutcome {
    /// Every distinct status line the server sent, in order (ending with `success` unless the
    /// connection broke first).
    pub statuses: Vec<String>,
    /// True when the connection broke before `success` and `show` then confirmed the model.
    pub confirmed_after_drop: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RetryPolicy {
    /// GET/HEAD/DELETE, show, copy: every error that may heal is retried.
    Idempotent,
    /// Create, generate, chat: only a failure to connect (nothing reached the server).
    ConnectOnly,
}

/// An async client for one Ollama server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    options: ClientOptions,
}

impl Client {
    /// Builds a client; fails when the host is not a usable http(s) URL.
    pub fn new(options: ClientOptions) -> Result<Self, ClientError> {
        let base = options.host.url()?;
        // No client-wide read timeout: reqwest's starts with the request and would fire while a
        // large body is still being sent (reqwest issue #2784). See `ClientOptions`.
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(concat!("loraforge/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&base) {
            // Go's ProxyFromEnvironment never proxies loopback hosts; neither do we.
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| ClientError::InvalidHost {
            value: options.host.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            http,
            base,
            options,
        })
    }

    /// A client for `host` (any `OLLAMA_HOST` form) with default settings.
    pub fn for_host(host: &str) -> Result<Self, ClientError> {
        Self::new(ClientOptions::with_host(OllamaHost::parse(host)))
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The settings this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// `GET /`: succeeds when an Ollama server answers.
    pub async fn heartbeat(&self) -> Result<(), ClientError> {
        self.send_small(Method::GET, "", None::<&()>, "heartbeat")
            .await
            .map(drop)
    }

    /// `GET /api/version`.
    pub async fn version(&self) -> Result<String, ClientError> {
        let v: VersionResponse = self
            .json_call(Method::GET, "api/version", None::<&()>, "version")
            .await?;
        Ok(v.version)
    }

    /// `GET /api/version`, parsed. `Ok(None)` when the server reports a version that is not
    /// `x.y.z` or is a development build (`0.0.0`): then no feature can be checked.
    pub async fn server_version(&self) -> Result<(String, Option<ServerVersion>), ClientError> {
        let text = self.version().await?;
        let parsed = ServerVersion::parse(&text).filter(|v| !v.is_development());
        Ok((text, parsed))
    }

    /// Fails with [`ClientError::ServerTooOld`] when `version` is known and older than `needed`.
    pub fn require_version(
        &self,
        (text, version): &(String, Option<ServerVersion>),
        needed: ServerVersion,
        feature: &'static str,
    ) -> Result<(), ClientError> {
        match version {
            Some(v) if *v < needed => Err(ClientError::ServerTooOld {
                host: self.host_label(),
                version: text.clone(),
                feature,
                needed: needed.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// `GET /api/tags`: the installed models.
    pub async fn list(&self) -> Result<ListResponse, ClientError> {
        self.json_call(Method::GET, "api/tags", None::<&()>, "list models")
            .await
    }

    /// `POST /api/show`: a model's template, parameters and metadata (404 when absent).
    pub async fn show(&self, model: &str) -> Result<ShowResponse, ClientError> {
        let body = ShowRequest {
            model: model.to_owned(),
            verbose: false,
        };
        self.json_call(
            Method::POST,
            "api/show",
            Some(&body),
            &format!("show {model}"),
        )
        .await
    }

    /// `GET /api/ps`: the loaded models.
    pub async fn ps(&self) -> Result<ProcessResponse, ClientError> {
        self.json_call(Method::GET, "api/ps", None::<&()>, "list running models")
            .await
    }

    /// `POST /api/copy`.
    pub async fn copy(&self, source: &str, destination: &str) -> Result<(), ClientError> {
        let body = CopyRequest {
            source: source.to_owned(),
            destination: destination.to_owned(),
        };
        let op = format!("copy {source} to {destination}");
        self.send_small(Method::POST, "api/copy", Some(&body), &op)
            .await
            .map(drop)
    }

    /// `DELETE /api/delete` (an `Http` error with status 404 when the model does not exist).
    pub async fn delete(&self, model: &str) -> Result<(), ClientError> {
        let body = DeleteRequest {
            model: model.to_owned(),
        };
        self.send_small(
            Method::DELETE,
            "api/delete",
            Some(&body),
            &format!("delete {model}"),
        )
        .await
        .map(drop)
    }

    /// `HEAD /api/blobs/<digest>`: whether the server's blob store has the blob.
    pub async fn blob_exists(&self, digest: &str) -> Result<bool, ClientError> {
        let digest = normalize_digest(digest)?;
        let url = self.url(&format!("api/blobs/{digest}"))?;
        let op = format!("check blob {digest}");
        let resp = self
            .execute(&op, RetryPolicy::Idempotent, || {
                let req = self
                    .http
                    .head(url.clone())
                    .timeout(self.options.request_timeout);
                async move { Ok(req) }
            })
            .await;
        match resp {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Uploads `path` as blob `digest` (`POST /api/blobs/<digest>`), streaming the file from disk.
    ///
    /// Reports bytes sent under the phase `"upload"`. A `400 digest mismatch` answer becomes
    /// [`ClientError::DigestMismatch`] (the file hashes differently now) or
    /// [`ClientError::UploadCorrupted`] (it still hashes to `digest`: the bytes changed on the
    /// way), naming the file and what each side computed. An attempt fails when it *stalls* (no
    /// bytes accepted for `stall_timeout`), never because it takes long. Errors that may heal
    /// (dropped connection, stall, 5xx other than a full disk, 429) are retried with an
    /// exponential backoff; before each retry a `HEAD` skips the upload when the server holds the
    /// blob after all. Ollama's blob endpoint takes whole files only (no ranges), so "resuming"
    /// means sending the file again from its first byte.
    pub async fn upload_blob(
        &self,
        path: &Path,
        digest: &str,
        reporter: &dyn Reporter,
    ) -> Result<BlobUpload, ClientError> {
        let digest = normalize_digest(digest)?;
        let url = self.url(&format!("api/blobs/{digest}"))?;
        let io = |source| ClientError::Io {
            path: path.to_owned(),
            source,
        };
        let len = tokio::fs::metadata(path).await.map_err(io)?.len();
        let op = format!("upload {} as {digest}", path.display());
        let mut attempt: u32 = 0;
        loop {
            let error = match self.upload_attempt(path, &url, len, &op, reporter).await {
                Ok((resp, sent)) => {
                    reporter.finish();
                    return Ok(BlobUpload {
                        uploaded: resp.status() == StatusCode::CREATED,
                        bytes_sent: sent,
                        digest,
                    });
                }
                Err(ClientError::Http {
                    status: 400,
                    message,
                    ..
                }) if message.starts_with("digest mismatch") => {
                    reporter.finish();
                    // The server computed its digest from what it received: hash the file again
                    // to say which side the bytes changed on.
                    let server_computed = mismatch_got(&message).unwrap_or(message);
                    let local_now = sha256_file(path, &loraforge_progress::NoProgress).await?;
                    return Err(if local_now == digest {
                        ClientError::UploadCorrupted {
                            path: path.to_owned(),
                            expected: digest,
                            server_computed,
                        }
                    } else {
                        ClientError::DigestMismatch {
                            path: path.to_owned(),
                            expected: digest,
                            server_computed,
                            local_now,
                        }
                    });
                }
                Err(e) => e,
            };
            if !error.is_transient() || attempt >= self.options.retries {
                reporter.finish();
                return Err(error);
            }
            self.backoff(attempt).await;
            attempt += 1;
            // Skip when the server holds the blob after all (it may have stored it just before
            // the connection broke, or another client uploaded it meanwhile).
            if let Ok(true) = self.blob_exists(&digest).await {
                reporter.finish();
                return Ok(BlobUpload {
                    digest,
                    uploaded: false,
                    bytes_sent: 0,
                });
            }
        }
    }

    /// One upload attempt with the stall watchdog; returns the response and the bytes sent.
    async fn upload_attempt(
        &self,
        path: &Path,
        url: &Url,
        len: u64,
        op: &str,
        reporter: &dyn Reporter,
    ) -> Result<(Response, u64), ClientError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| ClientError::Io {
                path: path.to_owned(),
                source,
            })?;
        let started = tokio::time::Instant::now();
        let progress = Arc::new(Progress::default());
        let (events, mut received) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let counter = Arc::clone(&progress);
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, FILE_CHUNK).map(move |chunk| {
                if let Ok(c) = &chunk {
                    let n = c.len() as u64;
                    counter.sent.fetch_add(n, Ordering::Relaxed);
                    counter.touch(started);
                    let _ = events.send(n);
                }
                chunk
            });
        let request = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_LENGTH, len)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream));
        reporter.begin("upload", Some(len));
        let send = async {
            match request.send().await {
                Ok(resp) => check_status(resp, op).await,
                Err(e) => Err(self.transport_error(op, e)),
            }
        };
        let stall = self.options.stall_timeout;
        let watchdog = async {
            loop {
                let idle = started.elapsed().saturating_sub(progress.last());
                if idle >= stall {
                    break;
                }
                tokio::time::sleep(stall - idle).await;
            }
        };
        tokio::pin!(send, watchdog);
        let result = loop {
            tokio::select! {
                biased;
                Some(n) = received.recv() => reporter.advance(n),
                result = &mut send => break result,
                () = &mut watchdog => {
                    break Err(ClientError::Stalled {
                        host: self.host_label(),
                        operation: op.to_owned(),
                        idle_secs: stall.as_secs(),
                        sent: progress.sent.load(Ordering::Relaxed),
                        total: len,
                    })
                }
            }
        };
        while let Ok(n) = received.try_recv() {
            reporter.advance(n);
        }
        result.map(|resp| (resp, progress.sent.load(Ordering::Relaxed)))
    }

    /// Makes sure the server has `path` as a blob: uses `known_digest` when given (it is not
    /// recomputed; the server verifies it while receiving the bytes), otherwise hashes the file
    /// once; then `HEAD`, and uploads only when the server lacks it.
    pub async fn push_blob(
        &self,
        path: &Path,
        known_digest: Option<&str>,
        reporter: &dyn Reporter,
    ) -> Result<BlobUpload, ClientError> {
        let digest = match known_digest {
            Some(d) => normalize_digest(d)?,
            None => sha256_file(path, reporter).await?,
        };
        if self.blob_exists(&digest).await? {
            return Ok(BlobUpload {
                digest,
                uploaded: false,
                bytes_sent: 0,
            });
        }
        self.upload_blob(path, &digest, reporter).await
    }

    /// `POST /api/create`, streaming NDJSON progress into `reporter` (phase `"create"`; each new
    /// status is a `message`, `completed`/`total` become `begin`/`advance`).
    ///
    /// An HTTP error before streaming is [`ClientError::Http`] with Ollama's message; an
    /// `{"error": …}` line after streaming started is [`ClientError::Stream`]. The stream has no
    /// timeout: the server may send nothing for minutes while it validates or quantizes. When
    /// the connection breaks (or the stream ends without `success`), `show` is asked whether the
    /// model exists: if it does, the create is reported as done (`confirmed_after_drop`);
    /// otherwise the error is [`ClientError::CreateInterrupted`] (or
    /// [`ClientError::Protocol`] for a stream that ended cleanly without `success`). `show`
    /// cannot tell a new model from an older one with the same name, so callers that re-create
    /// an existing name should compare digests. Create is only retried when the connection
    /// could not be made at all.
    pub async fn create(
        &self,
        request: &CreateRequest,
        reporter: &dyn Reporter,
    ) -> Result<CreateOutcome, ClientError> {
        let mut body = request.clone();
        body.stream = Some(true);
        let url = self.url("api/create")?;
        let op = format!("create {}", request.model);
        let sent = self
            .execute(&op, RetryPolicy::ConnectOnly, || {
                let req = self.http.post(url.clone()).json(&body);
                async move { Ok(req) }
            })
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            // The request may have reached the server before the connection broke.
            Err(e @ ClientError::Transport { .. }) => {
                return self.after_drop(&request.model, Vec::new(), e).await;
            }
            Err(e) => return Err(e),
        };
        reporter.begin("create", None);
        let mut state = StreamState::default();
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    reporter.finish();
                    let error = self.transport_error(&op, e);
                    return self.after_drop(&request.model, state.statuses, error).await;
                }
            };
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                state.line(&line, &op, reporter)?;
            }
            if buf.len() > MAX_STREAM_LINE {
                return Err(ClientError::Protocol {
                    operation: op,
                    message: format!("a progress line exceeds {MAX_STREAM_LINE} bytes"),
                });
            }
        }
        state.line(&buf, &op, reporter)?;
        reporter.finish();
        if !state.success {
            let error = ClientError::Protocol {
                operation: op,
                message: match state.statuses.last() {
                    Some(last) => {
                        format!("the progress stream ended after {last:?} without \"success\"")
                    }
                    None => "the progress stream ended without any status".to_owned(),
                },
            };
            return match self.show(&request.model).await {
                Ok(_) => Ok(CreateOutcome {
                    statuses: state.statuses,
                    confirmed_after_drop: true,
                }),
                Err(_) => Err(error),
            };
        }
        Ok(CreateOutcome {
            statuses: state.statuses,
            confirmed_after_drop: false,
        })
    }

    /// After a create lost its connection: the model counts as created when `show` finds it.
    /// Ollama writes the manifest before it sends `success`, and a create whose client is gone
    /// stops at its next progress line, so one look (retried while the server is unreachable)
    /// tells.
    async fn after_drop(
        &self,
        model: &str,
        statuses: Vec<String>,
        error: ClientError,
    ) -> Result<CreateOutcome, ClientError> {
        match self.show(model).await {
            Ok(_) => Ok(CreateOutcome {
                statuses,
                confirmed_after_drop: true,
            }),
            Err(_) => Err(ClientError::CreateInterrupted {
                model: model.to_owned(),
                last_status: statuses
                    .last()
                    .cloned()
                    .unwrap_or_else(|| "none".to_owned()),
                source: Box::new(error),
            }),
        }
    }

    /// `POST /api/generate` with `stream: false`.
    pub async fn generate(
        &self,
        request: &GenerateRequest,
    ) -> Result<GenerateResponse, ClientError> {
        let mut body = request.clone();
        body.stream = false;
        self.long_json_call(
            "api/generate",
            &body,
            &format!("generate with {}", request.model),
        )
        .await
    }

    /// `POST /api/chat` with `stream: false`.
    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ClientError> {
        let mut body = request.clone();
        body.stream = false;
        self.long_json_call("api/chat", &body, &format!("chat with {}", request.model))
            .await
    }

    // ---- plumbing -------------------------------------------------------------------------

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base.join(path).map_err(|e| ClientError::InvalidHost {
            value: self.base.to_string(),
            reason: e.to_string(),
        })
    }

    fn host_label(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    fn transport_error(&self, operation: &str, source: reqwest::Error) -> ClientError {
        let host = self.host_label();
        let operation = operation.to_owned();
        if source.is_timeout() {
            ClientError::Timeout {
                host,
                operation,
                source,
            }
        } else if source.is_connect() {
            ClientError::Unreachable {
                host,
                operation,
                source,
            }
        } else {
            ClientError::Transport {
                host,
                operation,
                source,
            }
        }
    }

    /// A small idempotent call (GET/DELETE, or POST for show/copy) returning the response.
    async fn send_small<B: serde::Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        op: &str,
    ) -> Result<Response, ClientError> {
        let url = self.url(path)?;
        self.execute(op, RetryPolicy::Idempotent, || {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .timeout(self.options.request_timeout);
            if let Some(b) = body {
                req = req.json(b);
            }
            async move { Ok(req) }
        })
        .await
    }

    async fn json_call<B: serde::Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        op: &str,
    ) -> Result<T, ClientError> {
        let resp = self.send_small(method, path, body, op).await?;
        self.decode(resp, op).await
    }

    async fn long_json_call<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        op: &str,
    ) -> Result<T, ClientError> {
        let url = self.url(path)?;
        let resp = self
            .execute(op, RetryPolicy::ConnectOnly, || {
                let mut req = self.http.post(url.clone()).json(body);
                if let Some(t) = self.options.generate_timeout {
                    req = req.timeout(t);
                }
                async move { Ok(req) }
            })
            .await?;
        self.decode(resp, op).await
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        resp: Response,
        op: &str,
    ) -> Result<T, ClientError> {
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(op, e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
            operation: op.to_owned(),
            message: format!("cannot decode the response ({e}): {}", snippet(&bytes)),
        })
    }

    /// Sends a request built by `make`, retrying per `policy` with exponential backoff, and turns
    /// HTTP error statuses into [`ClientError::Http`] with Ollama's message.
    async fn execute<F, Fut>(
        &self,
        op: &str,
        policy: RetryPolicy,
        mut make: F,
    ) -> Result<Response, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<RequestBuilder, ClientError>>,
    {
        let mut attempt: u32 = 0;
        loop {
            let retries_left = attempt < self.options.retries;
            let error = match make().await?.send().await {
                Ok(resp) => match check_status(resp, op).await {
                    Ok(resp) => return Ok(resp),
                    Err(e) if policy == RetryPolicy::Idempotent => e,
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    let retryable = match policy {
                        RetryPolicy::Idempotent => true,
                        RetryPolicy::ConnectOnly => e.is_connect(),
                    };
                    if !(retryable && retries_left) {
                        return Err(self.transport_error(op, e));
                    }
                    self.transport_error(op, e)
                }
            };
            if !(error.is_transient() && retries_left) {
                return Err(error);
            }
            self.backoff(attempt).await;
            attempt += 1;
        }
    }

    /// Waits before retry number `attempt + 1`: the backoff doubled `attempt` times, capped at
    /// `max_backoff`.
    async fn backoff(&self, attempt: u32) {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        let delay = self.options.retry_backoff.saturating_mul(factor);
        tokio::time::sleep(delay.min(self.options.max_backoff)).await;
    }
}

/// Bytes handed to the connection during one upload attempt, and when the last ones were.
#[derive(Default)]
struct Progress {
    sent: AtomicU64,
    /// Nanoseconds after the attempt started when the connection last accepted bytes.
    last_nanos: AtomicU64,
}

impl Progress {
    fn touch(&self, started: tokio::time::Instant) {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_nanos.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Duration {
        Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed))
    }
}

/// Maps an HTTP error status to [`ClientError::Http`] carrying Ollama's `error` message.
async fn check_status(resp: Response, op: &str) -> Result<Response, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            let text = snippet(&bytes);
            if text.is_empty() {
                status.canonical_reason().unwrap_or("").to_owned()
            } else {
                text
            }
        });
    Err(ClientError::Http {
        operation: op.to_owned(),
        status: status.as_u16(),
        message,
    })
}

#[derive(Default)]
struct StreamState {
    statuses: Vec<String>,
    success: bool,
    progress_key: Option<(String, Option<String>)>,
    completed: u64,
}

impl StreamState {
    fn line(&mut self, raw: &[u8], op: &str, reporter: &dyn Reporter) -> Result<(), ClientError> {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        let value: Value = serde_json::from_str(text).map_err(|e| ClientError::Protocol {
            operation: op.to_owned(),
            message: format!("bad progress line ({e}): {}", snippet(text.as_bytes())),
        })?;
        if let Some(err) = value.get("error") {
            let message = match err {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !message.is_empty() {
                return Err(ClientError::Stream {
                    operation: op.to_owned(),
                    message,
                });
            }
        }
        let p: ProgressResponse =
            serde_json::from_value(value).map_err(|e| ClientError::Protocol {
                operation: op.to_owned(),
                message: format!("bad progress line ({e}): {}", snippet(text.as_bytes())),
            })?;
        if self.statuses.last() != Some(&p.status) && !p.status.is_empty() {
            reporter.message(&p.status);
            self.statuses.push(p.status.clone());
        }
        if p.status == "success" {
            self.success = true;
        }
        if let Some(total) = p.total {
            let key = (p.status.clone(), p.digest.clone());
            if self.progress_key.as_ref() != Some(&key) {
                reporter.begin(&p.status, Some(total));
                self.progress_key = Some(key);
                self.completed = 0;
            }
            if let Some(done) = p.completed {
                if done > self.completed {
                    reporter.advance(done - self.completed);
                    self.completed = done;
                }
            }
        }
        Ok(())
    }
}

/// Computes `sha256:<hex>` of a file, streaming it (phase `"hash"` on the reporter).
pub async fn sha256_file(path: &Path, reporter: &dyn Reporter) -> Result<String, ClientError> {
    let io = |source| ClientError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    let len = file.metadata().await.map_err(io)?.len();
    reporter.begin("hash", Some(len));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; FILE_CHUNK];
    loop {
        let n = file.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or(&[]));
        reporter.advance(n as u64);
    }
    reporter.finish();
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// True for digests Ollama accepts in blob URLs: `sha256:` or `sha256-` then 64 hex digits.
pub fn is_valid_digest(digest: &str) -> bool {
    let hex = digest
        .strip_prefix("sha256:")
        .or_else(|| digest.strip_prefix("sha256-"));
    matches!(hex, Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Canonical `sha256:<lowercase hex>` form (the form the server computes and compares).
pub fn normalize_digest(digest: &str) -> Result<String, ClientError> {
    if !is_valid_digest(digest) {
        return Err(ClientError::InvalidDigest {
            digest: digest.to_owned(),
        });
    }
    let hex = digest.get(7..).unwrap_or("");
    Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// Extracts `Y` from Ollama's `digest mismatch, expected "X", got "Y"`.
fn mismatch_got(message: &str) -> Option<String> {
    let rest = message.split("got \"").nth(1)?;
    Some(rest.trim_end_matches('"').to_owned())
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip.is_unspecified(),
        Err(_) => host.is_empty() || host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_forms() {
        let hex = "A".repeat(64);
        assert!(is_valid_digest(&format!("sha256:{hex}")));
        assert!(is_valid_digest(&format!("sha256-{hex}")));
        assert!(!is_valid_digest(&format!("sha256:{}", "a".repeat(63))));
        assert!(!is_valid_digest(&format!("sha512:{hex}")));
        assert!(!is_valid_digest(&format!("sha256:{}g", "a".repeat(63))));
        assert_eq!(
            normalize_digest(&format!("sha256-{hex}")).ok(),
            Some(format!("sha256:{}", "a".repeat(64)))
        );
    }

    #[test]
    fn mismatch_message_parsing() {
        let m = r#"digest mismatch, expected "sha256:aa", got "sha256:bb""#;
        assert_eq!(mismatch_got(m).as_deref(), Some("sha256:bb"));
    }
}
