//! The Hub's HTTP endpoints one by one: create repo, validate YAML, preupload, LFS batch, LFS
//! transfers (basic and multipart), verify, commit, revision info.
//!
//! Facts followed (huggingface_hub `hf_api.py` `create_repo`/`create_commit`, `_commit_api.py`
//! `_fetch_upload_modes`/`_prepare_commit_payload`/`_send_commit`, `lfs.py`):
//! * API calls carry `Authorization: Bearer <token>`; the LFS upload URLs (single PUT, part PUTs)
//!   and the multipart completion URL get no auth header at all (huggingface_hub sends the
//!   completion with the LFS `Accept`/`Content-Type` only). Here the token goes only to URLs with
//!   the endpoint's own origin, whatever the server answers.
//! * preupload sends `{"files": [{path, sample (base64 of the first 512 bytes), size}]}` and gets
//!   `uploadMode` (`lfs`/`regular`), `shouldIgnore` and the remote `oid` per path.
//! * the batch request is `{"operation": "upload", "transfers": ["basic", "multipart"],
//!   "objects": [{oid, size}], "hash_algo": "sha256", "ref": {"name": revision}}`; an object
//!   without `actions` is stored already; `actions.upload.header.chunk_size` means multipart with
//!   the part URLs under the numeric header keys, completed by a POST of `{oid, parts:
//!   [{partNumber, etag}]}` to `actions.upload.href`; `actions.verify` is POSTed `{oid, size}`.
//! * the commit is NDJSON: `{"key": "header", "value": {summary, description}}`, then
//!   `{"key": "file", "value": {content (base64), path, encoding: "base64"}}` and
//!   `{"key": "lfsFile", "value": {path, algo: "sha256", oid, size}}`; the answer carries
//!   `commitOid` and `commitUrl`.

use std::future::Future;
use std::io::SeekFrom;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures_util::{StreamExt, TryStreamExt};
use loraforge_progress::Reporter;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::endpoint::{quote_revision, Endpoint, RepoId};
use crate::token::Token;
use crate::HubError;

/// The git-lfs media type huggingface_hub sends as `Accept` and `Content-Type` for LFS calls.
const LFS_MEDIA_TYPE: &str = "application/vnd.git-lfs+json";
/// Read size for streamed uploads.
const FILE_CHUNK: usize = 1 << 20;

/// How the client behaves on the wire.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Retries after a 5xx, a 429 or a broken connection, for every call except the commit
    /// (which is retried only when the connection could not be made: a lost answer to a commit
    /// that went through must not become a second commit).
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
    /// How many parts of one multipart upload are sent at once.
    pub parallel_parts: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// `User-Agent`.
    pub user_agent: String,
    /// Largest file a push accepts (the Hub's per-file limit, [`crate::MAX_FILE_SIZE`]); a
    /// larger one is refused before anything is sent.
    pub max_file_size: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            retries: 4,
            retry_backoff: Duration::from_millis(500),
            parallel_parts: 4,
            connect_timeout: Duration::from_secs(20),
            user_agent: format!("loraforge/{}", env!("CARGO_PKG_VERSION")),
            max_file_size: crate::MAX_FILE_SIZE,
        }
    }
}

/// What preupload says about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadMode {
    /// The path in the repository.
    pub path: String,
    /// True when the file must go through LFS.
    pub lfs: bool,
    /// True when the repository's `.gitignore` excludes it.
    pub should_ignore: bool,
    /// The oid of the file now at that path (git blob sha1 for regular files, sha256 for LFS).
    pub remote_oid: Option<String>,
}

/// One file for preupload.
#[derive(Debug, Clone, Copy)]
pub struct PreuploadFile<'a> {
    /// The path in the repository.
    pub path: &'a str,
    /// The first 512 bytes.
    pub sample: &'a [u8],
    /// The size in bytes.
    pub size: u64,
}

/// An action of an LFS batch answer.
#[derive(Debug, Clone, PartialEq)]
pub struct LfsAction {
    /// The URL.
    pub href: String,
    /// The `header` object (part URLs and `chunk_size` for multipart).
    pub header: Map<String, Value>,
}

/// What the LFS batch endpoint says about one object.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchAnswer {
    /// No `actions`: the Hub stores this object already.
    Stored,
    /// Upload it, then verify when asked.
    Upload {
        /// `actions.upload`.
        upload: LfsAction,
        /// `actions.verify`.
        verify: Option<LfsAction>,
    },
    /// The Hub refuses the object.
    Error {
        /// LFS error code.
        code: i64,
        /// Message.
        message: String,
    },
}

/// One operation of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOperation {
    /// A regular file, sent inline (base64).
    Regular {
        /// The path in the repository.
        path: String,
        /// Its content.
        content: Vec<u8>,
    },
    /// An LFS file already uploaded.
    Lfs {
        /// The path in the repository.
        path: String,
        /// SHA-256, lowercase hex.
        oid: String,
        /// Size in bytes.
        size: u64,
    },
}

/// What the commit endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// The new commit's id.
    pub commit_oid: String,
    /// Its web URL.
    pub commit_url: Option<String>,
}

/// Whether a failed request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// 5xx, 429 and transport errors are retried.
    Always,
    /// Only a connection that could not be made is retried.
    ConnectOnly,
}

/// A client for one Hub endpoint and one token.
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    endpoint: Endpoint,
    token: Option<Token>,
    options: ClientOptions,
}

impl HubClient {
    /// A client for `endpoint`. Refuses ([`HubError::InsecureEndpoint`]) to pair a token with a
    /// plain-http endpoint that is not this machine.
    pub fn new(
        endpoint: Endpoint,
        token: Option<Token>,
        options: ClientOptions,
    ) -> Result<HubClient, HubError> {
        if token.is_some() && !endpoint.may_carry_token() {
            return Err(HubError::InsecureEndpoint {
                endpoint: endpoint.to_string(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            // Never follow a redirect: a redirected request could carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| HubError::Transport {
                host: endpoint.to_string(),
                operation: "building the HTTP client".to_owned(),
                source,
            })?;
        Ok(HubClient {
            http,
            endpoint,
            token,
            options,
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// A request to a Hub URL: the token is attached only when `url` has the endpoint's origin.
    fn api(&self, method: Method, url: &str) -> RequestBuilder {
        let mut req = self
            .http
            .request(method, url)
            .header(USER_AGENT, &self.options.user_agent);
        if let Some(token) = &self.token {
            if self.endpoint.same_origin(url) {
                req = req.header(AUTHORIZATION, format!("Bearer {}", token.secret()));
            }
        }
        req
    }

    /// A request to a storage URL (pre-signed, or the multipart completion): never any token.
    fn storage(&self, method: Method, url: &str) -> RequestBuilder {
        self.http
            .request(method, url)
            .header(USER_AGENT, &self.options.user_agent)
    }

    /// `POST /api/repos/create`. Returns true when the repository was created, false when it
    /// existed already (HTTP 409).
    pub async fn create_repo(&self, repo: &RepoId, private: bool) -> Result<bool, HubError> {
        let url = self.endpoint.join("api/repos/create");
        let op = format!("creating {repo}");
        let body = json!({
            "name": repo.name(),
            "organization": repo.owner(),
            "visibility": if private { "private" } else { "public" },
            "type": "model",
        });
        let result = self
            .send(&op, Retry::Always, || {
                self.api(Method::POST, &url).json(&body)
            })
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(HubError::Http { status: 409, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/whoami-v2`: the user name the token belongs to.
    pub async fn whoami(&self) -> Result<String, HubError> {
        let url = self.endpoint.join("api/whoami-v2");
        let op = "asking whose token this is";
        let value: Value = self
            .send_json(op, None, Retry::Always, || self.api(Method::GET, &url))
            .await?;
        value["name"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| protocol(op, "no `name`"))
    }

    /// `DELETE /api/repos/delete`: removes a model repository (for cleaning up after tests).
    pub async fn delete_repo(&self, repo: &RepoId) -> Result<(), HubError> {
        let url = self.endpoint.join("api/repos/delete");
        let op = format!("deleting {repo}");
        let body = json!({"name": repo.name(), "organization": repo.owner(), "type": "model"});
        let resp = self
            .send_raw(&op, Retry::Always, || {
                self.api(Method::DELETE, &url).json(&body)
            })
            .await?;
        check_status(resp, &op, Some((repo, "main"))).await?;
        Ok(())
    }

    /// `POST /api/validate-yaml`: the Hub's check of a README's metadata.
    pub async fn validate_readme(&self, content: &str) -> Result<(), HubError> {
        let url = self.endpoint.join("api/validate-yaml");
        let body = json!({"content": content, "repoType": "model"});
        let resp = self
            .send_raw("validating README.md", Retry::Always, || {
                self.api(Method::POST, &url).json(&body)
            })
            .await?;
        if resp.status() == StatusCode::BAD_REQUEST {
            let value: Value = resp.json().await.unwrap_or(Value::Null);
            let errors: Vec<String> = value["errors"]
                .as_array()
                .map(|errors| {
                    errors
                        .iter()
                        .filter_map(|e| e["message"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            return Err(HubError::InvalidMetadata {
                message: errors.join("; "),
            });
        }
        check_status(resp, "validating README.md", None).await?;
        Ok(())
    }

    /// `POST /api/models/{repo}/preupload/{revision}` for up to 256 files at a time.
    pub async fn preupload(
        &self,
        repo: &RepoId,
        revision: &str,
        files: &[PreuploadFile<'_>],
    ) -> Result<Vec<UploadMode>, HubError> {
        let url = self.endpoint.join(&format!(
            "api/models/{repo}/preupload/{}",
            quote_revision(revision)
        ));
        let op = format!("preupload to {repo}@{revision}");
        let mut modes = Vec::with_capacity(files.len());
        for chunk in files.chunks(256) {
            let body = json!({
                "files": chunk.iter().map(|f| json!({
                    "path": f.path,
                    "sample": base64::engine::general_purpose::STANDARD.encode(f.sample),
                    "size": f.size,
                })).collect::<Vec<_>>(),
            });
            let value: Value = self
                .send_json(&op, Some((repo, revision)), Retry::Always, || {
                    self.api(Method::POST, &url).json(&body)
                })
                .await?;
            let answers = value["files"]
                .as_array()
                .ok_or_else(|| protocol(&op, "no `files` list"))?;
            for answer in answers {
                let path = answer["path"]
                    .as_str()
                    .ok_or_else(|| protocol(&op, "a file without `path`"))?;
                let lfs = match answer["uploadMode"].as_str() {
                    Some("lfs") => true,
                    Some("regular") => false,
                    other => {
                        return Err(protocol(&op, &format!("uploadMode {other:?} for {path}")))
                    }
                };
                modes.push(UploadMode {
                    path: path.to_owned(),
                    lfs,
                    should_ignore: answer["shouldIgnore"].as_bool().unwrap_or(false),
                    remote_oid: answer["oid"].as_str().map(str::to_owned),
                });
            }
        }
        for f in files {
            if !modes.iter().any(|m| m.path == f.path) {
                return Err(protocol(&op, &format!("no answer for {}", f.path)));
            }
        }
        Ok(modes)
    }

    /// `POST /{repo}.git/info/lfs/objects/batch`: what to do with each `(oid, size)`, in the
    /// order given.
    pub async fn lfs_batch(
        &self,
        repo: &RepoId,
        revision: &str,
        objects: &[(String, u64)],
    ) -> Result<Vec<BatchAnswer>, HubError> {
        let url = self
            .endpoint
            .join(&format!("{repo}.git/info/lfs/objects/batch"));
        let op = format!("LFS batch for {repo}");
        let mut answers = Vec::with_capacity(objects.len());
        for chunk in objects.chunks(256) {
            let body = json!({
                "operation": "upload",
                "transfers": ["basic", "multipart"],
                "objects": chunk.iter().map(|(oid, size)| json!({"oid": oid, "size": size})).collect::<Vec<_>>(),
                "hash_algo": "sha256",
                "ref": {"name": revision},
            });
            let value: Value = self
                .send_json(&op, Some((repo, revision)), Retry::Always, || {
                    self.api(Method::POST, &url)
                        .header("Accept", LFS_MEDIA_TYPE)
                        .header(CONTENT_TYPE, LFS_MEDIA_TYPE)
                        .body(body.to_string())
                })
                .await?;
            let listed = value["objects"]
                .as_array()
                .ok_or_else(|| protocol(&op, "no `objects` list"))?;
            for (oid, size) in chunk {
                let object = listed
                    .iter()
                    .find(|o| o["oid"].as_str() == Some(oid))
                    .ok_or_else(|| protocol(&op, &format!("no answer for object {oid}")))?;
                if object["size"].as_u64() != Some(*size) {
                    return Err(protocol(
                        &op,
                        &format!("object {oid} answered with another size"),
                    ));
                }
                answers.push(parse_batch_object(object, &op)?);
            }
        }
        Ok(answers)
    }

    /// Uploads `path` with one PUT to the pre-signed `href`, streaming it from disk and hashing
    /// it on the way; the SHA-256 must be `oid` ([`HubError::FileChanged`] otherwise). Returns
    /// the bytes sent by the attempt that succeeded.
    pub async fn upload_single(
        &self,
        path: &Path,
        href: &str,
        oid: &str,
        size: u64,
        reporter: &dyn Reporter,
    ) -> Result<u64, HubError> {
        let op = format!("uploading {}", path.display());
        let mut attempt = 0;
        loop {
            let hasher = Arc::new(Mutex::new(Sha256::new()));
            let (events, mut progress) = tokio::sync::mpsc::unbounded_channel::<u64>();
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|source| HubError::Io {
                    path: path.to_owned(),
                    source,
                })?;
            let stream_hasher = Arc::clone(&hasher);
            let stream = tokio_util::io::ReaderStream::with_capacity(file, FILE_CHUNK).inspect_ok(
                move |chunk| {
                    if let Ok(mut h) = stream_hasher.lock() {
                        h.update(chunk);
                    }
                    let _ = events.send(chunk.len() as u64);
                },
            );
            let send = self
                .storage(Method::PUT, href)
                .header(CONTENT_LENGTH, size)
                .body(reqwest::Body::wrap_stream(stream))
                .send();
            reporter.begin(&format!("upload {}", path.display()), Some(size));
            let result = forward(send, &mut progress, reporter).await;
            let error = match result {
                Ok(resp) => match check_status(resp, &op, None).await {
                    Ok(_) => {
                        let digest = match hasher.lock() {
                            Ok(mut h) => hex::encode(std::mem::take(&mut *h).finalize()),
                            Err(_) => String::new(),
                        };
                        if digest != oid {
                            return Err(HubError::FileChanged {
                                path: path.to_owned(),
                                expected: format!("sha256 {oid}"),
                                actual: format!("sha256 {digest}"),
                            });
                        }
                        reporter.finish();
                        return Ok(size);
                    }
                    Err(e) => e,
                },
                Err(e) => transport(href, &op, e),
            };
            if !retryable(&error) || attempt >= self.options.retries {
                return Err(error);
            }
            reporter.message(&format!("{op}: {error}; retrying"));
            self.backoff(attempt).await;
            attempt += 1;
        }
    }

    /// Uploads `path` in parts of `chunk_size` bytes to the part URLs of `header` (numeric keys),
    /// `parallel_parts` at a time, then POSTs the completion to `href`. The file is hashed in
    /// parallel with the upload; a SHA-256 other than `oid` stops before the completion
    /// ([`HubError::FileChanged`]), so the object never becomes visible.
    pub async fn upload_multipart(
        &self,
        path: &Path,
        action: &LfsAction,
        oid: &str,
        size: u64,
        reporter: &dyn Reporter,
    ) -> Result<u64, HubError> {
        let op = format!("uploading {}", path.display());
        let chunk_size = chunk_size(&action.header)
            .ok_or_else(|| protocol(&op, "multipart `chunk_size` is not a positive integer"))?;
        let mut parts: Vec<(u64, String)> = action
            .header
            .iter()
            .filter(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
            .map(|(k, v)| {
                let n = k
                    .parse::<u64>()
                    .map_err(|_| protocol(&op, "part number too large"))?;
                let url = v
                    .as_str()
                    .ok_or_else(|| protocol(&op, "a part URL is not a string"))?;
                Ok((n, url.to_owned()))
            })
            .collect::<Result<_, HubError>>()?;
        parts.sort_by_key(|(n, _)| *n);
        if parts.len() as u64 != size.div_ceil(chunk_size) {
            return Err(protocol(
                &op,
                &format!(
                    "{} part URLs for {size} bytes in parts of {chunk_size}",
                    parts.len()
                ),
            ));
        }
        reporter.begin(&format!("upload {}", path.display()), Some(size));
        let hash_path = path.to_owned();
        let hashing = tokio::task::spawn_blocking(move || crate::sha256_file(&hash_path));
        let op_ref = op.as_str();
        let uploads = futures_util::stream::iter(parts.iter().enumerate().map(|(i, (_, url))| {
            let offset = i as u64 * chunk_size;
            let len = chunk_size.min(size - offset);
            async move {
                let etag = self.upload_part(path, url, offset, len, op_ref).await?;
                reporter.advance(len);
                Ok::<_, HubError>((i, etag))
            }
        }))
        .buffer_unordered(self.options.parallel_parts.max(1))
        .try_collect::<Vec<_>>();
        let mut etags = uploads.await?;
        etags.sort_by_key(|(i, _)| *i);
        let digest = hashing
            .await
            .map_err(|e| protocol(&op, &format!("the hashing task failed: {e}")))??;
        if digest != oid {
            return Err(HubError::FileChanged {
                path: path.to_owned(),
                expected: format!("sha256 {oid}"),
                actual: format!("sha256 {digest}"),
            });
        }
        let completion = json!({
            "oid": oid,
            "parts": etags.iter().map(|(i, etag)| json!({"partNumber": i + 1, "etag": etag})).collect::<Vec<_>>(),
        });
        let href = action.href.as_str();
        self.send(
            &format!("completing the upload of {}", path.display()),
            Retry::Always,
            || {
                self.storage(Method::POST, href)
                    .header("Accept", LFS_MEDIA_TYPE)
                    .header(CONTENT_TYPE, LFS_MEDIA_TYPE)
                    .body(completion.to_string())
            },
        )
        .await?;
        reporter.finish();
        Ok(size)
    }

    /// PUTs `len` bytes of `path` from `offset` to a part URL; returns the part's `ETag`.
    async fn upload_part(
        &self,
        path: &Path,
        url: &str,
        offset: u64,
        len: u64,
        op: &str,
    ) -> Result<String, HubError> {
        let io = |source| HubError::Io {
            path: path.to_owned(),
            source,
        };
        let mut attempt = 0;
        loop {
            let mut file = tokio::fs::File::open(path).await.map_err(io)?;
            file.seek(SeekFrom::Start(offset)).await.map_err(io)?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), FILE_CHUNK);
            let result = self
                .storage(Method::PUT, url)
                .header(CONTENT_LENGTH, len)
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await;
            let error = match result {
                Ok(resp) => match check_status(resp, op, None).await {
                    Ok(resp) => {
                        return match resp.headers().get("etag").and_then(|v| v.to_str().ok()) {
                            Some(etag) if !etag.is_empty() => Ok(etag.to_owned()),
                            _ => Err(protocol(op, "a part upload answered without an ETag")),
                        }
                    }
                    Err(e) => e,
                },
                Err(e) => transport(url, op, e),
            };
            if !retryable(&error) || attempt >= self.options.retries {
                return Err(error);
            }
            self.backoff(attempt).await;
            attempt += 1;
        }
    }

    /// POSTs `{oid, size}` to a verify action (with the token when it is a Hub URL).
    pub async fn verify(&self, action: &LfsAction, oid: &str, size: u64) -> Result<(), HubError> {
        let op = format!("verifying LFS object {oid}");
        let body = json!({"oid": oid, "size": size});
        self.send(&op, Retry::Always, || {
            self.api(Method::POST, &action.href)
                .header("Accept", LFS_MEDIA_TYPE)
                .header(CONTENT_TYPE, LFS_MEDIA_TYPE)
                .body(body.to_string())
        })
        .await?;
        Ok(())
    }

    /// `POST /api/models/{repo}/commit/{revision}` with the NDJSON payload.
    pub async fn commit(
        &self,
        repo: &RepoId,
        revision: &str,
        summary: &str,
        description: &str,
        operations: &[CommitOperation],
    ) -> Result<CommitInfo, HubError> {
        let url = self.endpoint.join(&format!(
            "api/models/{repo}/commit/{}",
            quote_revision(revision)
        ));
        let op = format!("commit to {repo}@{revision}");
        let mut body = Vec::new();
        let mut line = |value: Value| {
            body.extend_from_slice(value.to_string().as_bytes());
            body.push(b'\n');
        };
        line(json!({"key": "header", "value": {"summary": summary, "description": description}}));
        for operation in operations {
            line(match operation {
                CommitOperation::Regular { path, content } => json!({
                    "key": "file",
                    "value": {
                        "content": base64::engine::general_purpose::STANDARD.encode(content),
                        "path": path,
                        "encoding": "base64",
                    },
                }),
                CommitOperation::Lfs { path, oid, size } => json!({
                    "key": "lfsFile",
                    "value": {"path": path, "algo": "sha256", "oid": oid, "size": size},
                }),
            });
        }
        let value: Value = self
            .send_json(&op, Some((repo, revision)), Retry::ConnectOnly, || {
                self.api(Method::POST, &url)
                    .header(CONTENT_TYPE, "application/x-ndjson")
                    .body(body.clone())
            })
            .await?;
        let commit_oid = value["commitOid"]
            .as_str()
            .ok_or_else(|| protocol(&op, "no `commitOid`"))?
            .to_owned();
        Ok(CommitInfo {
            commit_oid,
            commit_url: value["commitUrl"].as_str().map(str::to_owned),
        })
    }

    /// `GET /api/models/{repo}/revision/{revision}`: the commit the revision points at.
    pub async fn revision_sha(&self, repo: &RepoId, revision: &str) -> Result<String, HubError> {
        let url = self.endpoint.join(&format!(
            "api/models/{repo}/revision/{}",
            quote_revision(revision)
        ));
        let op = format!("reading {repo}@{revision}");
        let value: Value = self
            .send_json(&op, Some((repo, revision)), Retry::Always, || {
                self.api(Method::GET, &url)
            })
            .await?;
        value["sha"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| protocol(&op, "no `sha`"))
    }

    async fn send_json<F>(
        &self,
        op: &str,
        target: Option<(&RepoId, &str)>,
        retry: Retry,
        make: F,
    ) -> Result<Value, HubError>
    where
        F: FnMut() -> RequestBuilder,
    {
        let resp = self.send_raw(op, retry, make).await?;
        let resp = check_status(resp, op, target).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport(self.endpoint.as_str(), op, e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            protocol(
                op,
                &format!("cannot decode the answer ({e}): {}", snippet(&bytes)),
            )
        })
    }

    async fn send<F>(&self, op: &str, retry: Retry, make: F) -> Result<Response, HubError>
    where
        F: FnMut() -> RequestBuilder,
    {
        let resp = self.send_raw(op, retry, make).await?;
        check_status(resp, op, None).await
    }

    /// Sends, retrying per `retry`; returns the last response whatever its status.
    async fn send_raw<F>(&self, op: &str, retry: Retry, mut make: F) -> Result<Response, HubError>
    where
        F: FnMut() -> RequestBuilder,
    {
        let mut attempt = 0;
        loop {
            let retries_left = attempt < self.options.retries;
            let req = make();
            let url = req
                .try_clone()
                .and_then(|r| r.build().ok())
                .map(|r| r.url().to_string())
                .unwrap_or_default();
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let again = retry == Retry::Always
                        && (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS);
                    if !(again && retries_left) {
                        return Ok(resp);
                    }
                }
                Err(e) => {
                    let again = match retry {
                        Retry::Always => true,
                        Retry::ConnectOnly => e.is_connect(),
                    };
                    if !(again && retries_left) {
                        return Err(transport(&url, op, e));
                    }
                }
            }
            self.backoff(attempt).await;
            attempt += 1;
        }
    }

    async fn backoff(&self, attempt: u32) {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        tokio::time::sleep(self.options.retry_backoff.saturating_mul(factor)).await;
    }
}

/// Drives `send` while forwarding byte counts to `reporter`.
async fn forward<F>(
    send: F,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<u64>,
    reporter: &dyn Reporter,
) -> Result<Response, reqwest::Error>
where
    F: Future<Output = Result<Response, reqwest::Error>>,
{
    tokio::pin!(send);
    loop {
        tokio::select! {
            biased;
            Some(n) = events.recv() => reporter.advance(n),
            result = &mut send => {
                while let Ok(n) = events.try_recv() {
                    reporter.advance(n);
                }
                return result;
            }
        }
    }
}

fn parse_batch_object(object: &Value, op: &str) -> Result<BatchAnswer, HubError> {
    if let Some(error) = object.get("error") {
        return Ok(BatchAnswer::Error {
            code: error["code"].as_i64().unwrap_or(0),
            message: error["message"].as_str().unwrap_or("").to_owned(),
        });
    }
    let action = |value: &Value| -> Result<LfsAction, HubError> {
        let href = value["href"]
            .as_str()
            .ok_or_else(|| protocol(op, "an LFS action without `href`"))?;
        let header = match value.get("header") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(protocol(op, "an LFS action `header` is not an object")),
        };
        Ok(LfsAction {
            href: href.to_owned(),
            header,
        })
    };
    let Some(actions) = object.get("actions").filter(|a| !a.is_null()) else {
        return Ok(BatchAnswer::Stored);
    };
    let Some(upload) = actions.get("upload") else {
        return Ok(BatchAnswer::Stored);
    };
    Ok(BatchAnswer::Upload {
        upload: action(upload)?,
        verify: actions.get("verify").map(action).transpose()?,
    })
}

/// `chunk_size` of a multipart header: an integer or a string of digits, positive.
pub(crate) fn chunk_size(header: &Map<String, Value>) -> Option<u64> {
    match header.get("chunk_size")? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|&n| n > 0)
}

fn retryable(error: &HubError) -> bool {
    match error {
        HubError::Transport { .. } => true,
        HubError::Http { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

fn protocol(op: &str, message: &str) -> HubError {
    HubError::Protocol {
        operation: op.to_owned(),
        message: message.to_owned(),
    }
}

fn transport(url: &str, op: &str, source: reqwest::Error) -> HubError {
    HubError::Transport {
        host: Endpoint::origin_of(url),
        operation: op.to_owned(),
        source: source.without_url(),
    }
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// Maps an error status to a [`HubError`] with the Hub's message: the `X-Error-Message` header,
/// else the JSON `error`, else the body.
async fn check_status(
    resp: Response,
    op: &str,
    target: Option<(&RepoId, &str)>,
) -> Result<Response, HubError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let headers: HeaderMap = resp.headers().clone();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let body = resp.bytes().await.unwrap_or_default();
    let message = header("x-error-message")
        .or_else(|| {
            serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| match snippet(&body) {
            s if s.is_empty() => status.canonical_reason().unwrap_or("").to_owned(),
            s => s,
        });
    let operation = op.to_owned();
    Err(
        match (status.as_u16(), header("x-error-code").as_deref(), target) {
            (401, _, _) => HubError::Unauthorized { operation, message },
            (403, _, _) => HubError::Forbidden { operation, message },
            (404, Some("RepoNotFound"), Some((repo, _))) => HubError::RepoNotFound {
                repo: repo.to_string(),
                operation,
            },
            (404, Some("RevisionNotFound"), Some((repo, revision))) => HubError::RevisionNotFound {
                repo: repo.to_string(),
                revision: revision.to_owned(),
                operation,
            },
            (status, _, _) => HubError::Http {
                operation,
                status,
                message,
            },
        },
    )
}
