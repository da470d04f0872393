//! Deploying under what a real-size model meets on a real server (issue 12): stalled and slow
//! uploads, a full disk, a silent or dropped create stream, old servers, and the model layer the
//! server rewrites. Windows are short (milliseconds) so the tests stay fast.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use loraforge_ollama_client::{
    deploy, deploy_gguf, sha256_file, Client, ClientError, ClientOptions, DeployOutcome,
    DeployRequest, Modelfile, OllamaHost,
};
use loraforge_progress::NoProgress;
use ollama_fake::{FakeOllama, Fault};

use crate::common::{fixture, recorded_digest};

const GGUF: &str = "tiny-llama3-f16.gguf";

fn template() -> Modelfile {
    Modelfile::parse(&std::fs::read_to_string(fixture("llama3-deploy.Modelfile")).unwrap()).unwrap()
}

/// A client with the given stall window and retries, short everything else.
/// Deploys the fixture GGUF as `m` with the test template (`digest`: the one the store recorded).
async fn deploy_m(client: &Client, digest: Option<&str>) -> Result<DeployOutcome, ClientError> {
    deploy_gguf(
        client,
        "m",
        &fixture(GGUF),
        digest,
        &template(),
        &[],
        &NoProgress,
    )
    .await
}

fn client(url: &str, stall: Duration, retries: u32) -> Client {
    let mut o = ClientOptions::with_host(OllamaHost::parse(url));
    o.connect_timeout = Duration::from_secs(2);
    o.request_timeout = Duration::from_secs(5);
    o.stall_timeout = stall;
    o.retries = retries;
    o.retry_backoff = Duration::from_millis(5);
    o.max_backoff = Duration::from_millis(20);
    Client::new(o).unwrap()
}

/// A file of `len` bytes (larger than the loopback socket buffers when the test needs the
/// server's pause to be felt by the client) and its digest.
async fn big_file(dir: &Path, len: usize) -> (PathBuf, String) {
    let mut bytes = b"GGUF\x03\x00\x00\x00".to_vec();
    bytes.extend((0..len.saturating_sub(8)).map(|i| (i % 251) as u8));
    let path = dir.join("big.gguf");
    std::fs::write(&path, bytes).unwrap();
    let digest = sha256_file(&path, &NoProgress).await.unwrap();
    (path, digest)
}

/// Large enough that the loopback buffers (up to 32 MiB of receive window here) cannot absorb
/// the whole body while the server does not read.
const STALL_FILE: usize = 96 << 20;

#[tokio::test]
async fn an_upload_that_stops_moving_fails_after_the_stall_window() {
    let fake = FakeOllama::start().await.unwrap();
    let client = client(&fake.url(), Duration::from_millis(300), 0);
    let dir = tempfile::tempdir().unwrap();
    let (path, digest) = big_file(dir.path(), STALL_FILE).await;
    fake.inject(Fault::UploadPause {
        after_bytes: 64 << 10,
        pause: Duration::from_secs(30),
        times: 1,
    });
    let started = Instant::now();
    let err = client
        .upload_blob(&path, &digest, &NoProgress)
        .await
        .unwrap_err();
    match &err {
        ClientError::Stalled { sent, total, .. } => {
            assert_eq!(*total, STALL_FILE as u64);
            assert!(*sent < *total, "{sent} of {total}");
        }
        other => panic!("expected Stalled, got {other:?}"),
    }
    assert!(err.is_transient());
    assert!(err.hint().unwrap().contains("--stall-timeout"));
    // Detected by the stall window, not by waiting for the server's pause to end.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(!fake.has_blob(&digest));
}

#[tokio::test]
async fn a_stalled_upload_is_sent_again_and_succeeds() {
    let fake = FakeOllama::start().await.unwrap();
    let client = client(&fake.url(), Duration::from_millis(300), 2);
    let dir = tempfile::tempdir().unwrap();
    let (path, digest) = big_file(dir.path(), STALL_FILE).await;
    fake.inject(Fault::UploadPause {
        after_bytes: 64 << 10,
        pause: Duration::from_secs(30),
        times: 1,
    });
    let started = Instant::now();
    let out = client
        .push_blob(&path, Some(&digest), &NoProgress)
        .await
        .unwrap();
    assert!(out.uploaded);
    assert_eq!(out.bytes_sent, STALL_FILE as u64);
    assert_eq!(fake.blob(&digest).unwrap().size, STALL_FILE as u64);
    // Stalled POST, HEAD (still missing), second POST.
    assert_eq!(fake.count_prefix("POST", "/api/blobs/"), 2);
    assert_eq!(fake.count_prefix("HEAD", "/api/blobs/"), 2);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_slow_upload_that_keeps_moving_is_not_cut_off() {
    let fake = FakeOllama::start().await.unwrap();
    let mut o = ClientOptions::with_host(OllamaHost::parse(&fake.url()));
    // Far shorter than the upload takes: a wall-clock limit would fail it.
    o.request_timeout = Duration::from_millis(100);
    o.stall_timeout = Duration::from_secs(3);
    o.retries = 0;
    let client = Client::new(o).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (path, digest) = big_file(dir.path(), 4 << 20).await;
    fake.inject(Fault::UploadPause {
        after_bytes: 1 << 20,
        pause: Duration::from_millis(600),
        times: 1,
    });
    let started = Instant::now();
    let out = client
        .upload_blob(&path, &digest, &NoProgress)
        .await
        .unwrap();
    assert!(out.uploaded);
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(fake.count_prefix("POST", "/api/blobs/"), 1);
    assert!(fake.has_blob(&digest));
}

#[tokio::test]
async fn a_full_disk_is_not_retried() {
    let fake = FakeOllama::start().await.unwrap();
    let client = client(&fake.url(), Duration::from_secs(5), 3);
    // One failure: a retry would succeed, so success would show the error was retried.
    fake.inject(Fault::UploadDiskFull { times: 1 });
    let err = deploy_m(&client, None).await.unwrap_err();
    match &err {
        ClientError::Http {
            status: 500,
            message,
            ..
        } => assert!(message.contains("no space left on device"), "{message}"),
        other => panic!("expected HTTP 500, got {other:?}"),
    }
    assert!(!err.is_transient());
    assert!(err.hint().unwrap().contains("free space"));
    assert_eq!(fake.count_prefix("POST", "/api/blobs/"), 1);
    assert_eq!(fake.count("POST", "/api/create"), 0);

    // Other server errors on upload are retried (with backoff) and can heal.
    fake.inject(Fault::Status {
        method: "POST",
        path: "/api/blobs/",
        status: 503,
        message: "busy".into(),
        times: 2,
    });
    let out = deploy_m(&client, None).await.unwrap();
    assert!(out.uploaded);
    assert_eq!(fake.count_prefix("POST", "/api/blobs/"), 4);
}

#[tokio::test]
async fn a_silent_create_stream_is_waited_for() {
    let fake = FakeOllama::start().await.unwrap();
    let mut o = ClientOptions::with_host(OllamaHost::parse(&fake.url()));
    o.request_timeout = Duration::from_millis(200);
    o.stall_timeout = Duration::from_millis(200);
    o.retries = 0;
    let client = Client::new(o).unwrap();
    // Like the real server while llama-quantize works: nothing for far longer than any window.
    fake.inject(Fault::CreateSilence {
        after_lines: 1,
        silence: Duration::from_millis(900),
    });
    let started = Instant::now();
    let out = deploy_m(&client, None).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(out.statuses.last().map(String::as_str), Some("success"));
    assert!(out.notes.is_empty(), "{:?}", out.notes);
    assert_eq!(fake.count("POST", "/api/create"), 1);
}

#[tokio::test]
async fn a_create_dropped_before_the_manifest_is_reported_and_a_rerun_skips_the_upload() {
    let fake = FakeOllama::start().await.unwrap();
    let client = client(&fake.url(), Duration::from_secs(5), 2);
    fake.inject(Fault::CreateDropBefore {
        status: "writing manifest".into(),
    });
    let err = deploy_m(&client, None).await.unwrap_err();
    match &err {
        ClientError::CreateInterrupted { last_status, .. } => {
            assert!(last_status.contains("layer"), "{last_status}")
        }
        other => panic!("expected CreateInterrupted, got {other:?}"),
    }
    assert!(err.hint().unwrap().contains("not sent twice"));
    assert!(fake.model_names().is_empty());
    assert_eq!(
        fake.count("POST", "/api/create"),
        1,
        "create is not retried"
    );

    let out = deploy_m(&client, Some(&recorded_digest(GGUF)))
        .await
        .unwrap();
    assert!(!out.uploaded, "the blob stayed on the server");
    assert_eq!(fake.count_prefix("POST", "/api/blobs/"), 1);
}

#[tokio::test]
async fn a_create_dropped_after_the_manifest_counts_as_created() {
    let fake = FakeOllama::start().await.unwrap();
    let client = client(&fake.url(), Duration::from_secs(5), 2);
    fake.inject(Fault::CreateDropBefore {
        status: "success".into(),
    });
    let out = deploy_m(&client, None).await.unwrap();
    assert!(
        out.notes.iter().any(|n| n.contains("connection broke")),
        "{:?}",
        out.notes
    );
    assert_ne!(out.statuses.last().map(String::as_str), Some("success"));
    assert_eq!(out.model_digest, fake.model("m").map(|m| m.digest));
}

#[tokio::test]
async fn a_dropped_re_create_that_left_the_earlier_model_is_not_reported_as_done() {
    let fake = FakeOllama::start().await.unwrap();
    let client = client(&fake.url(), Duration::from_secs(5), 2);
    let first = deploy_m(&client, None).await.unwrap();
    let mut changed = template();
    changed.system = Some("Answer in French.".into());
    fake.inject(Fault::CreateDropBefore {
        status: "writing manifest".into(),
    });
    let err = deploy_gguf(
        &client,
        "m",
        &fixture(GGUF),
        None,
        &changed,
        &[],
        &NoProgress,
    )
    .await
    .unwrap_err();
    match &err {
        ClientError::CreateUnconfirmed { digest, .. } => {
            assert_eq!(Some(digest), first.model_digest.as_ref())
        }
        other => panic!("expected CreateUnconfirmed, got {other:?}"),
    }
    assert_eq!(
        fake.model("m").unwrap().system.as_deref(),
        Some("You are a helpful assistant.")
    );
}

#[tokio::test]
async fn old_servers_are_refused_with_the_version_they_need() {
    let fake = FakeOllama::start().await.unwrap();
    let client = client(&fake.url(), Duration::from_secs(5), 0);
    let m = template();

    fake.set_version("0.5.4");
    let err = deploy_gguf(&client, "m", &fixture(GGUF), None, &m, &[], &NoProgress)
        .await
        .unwrap_err();
    match &err {
        ClientError::ServerTooOld {
            version, needed, ..
        } => assert_eq!((version.as_str(), needed.as_str()), ("0.5.4", "0.5.5")),
        other => panic!("expected ServerTooOld, got {other:?}"),
    }
    assert!(err.is_user_error());
    assert!(err.hint().unwrap().contains("upgrade"));
    // Refused before anything was sent.
    assert_eq!(fake.count_prefix("POST", "/api/blobs/"), 0);
    assert_eq!(fake.count("POST", "/api/create"), 0);

    // Quantizing a BF16 source needs 0.22.0; an F16 source does not.
    fake.set_version("0.21.2");
    let bf16 = DeployRequest {
        model_name: "m:q8_0",
        gguf_path: &fixture(GGUF),
        known_digest: None,
        modelfile: &m,
        extra_stop: &[],
        quantize: Some("q8_0"),
        source_type: Some("BF16"),
    };
    let err = deploy(&client, &bf16, &NoProgress).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::ServerTooOld { needed, .. } if needed == "0.22.0"),
        "{err:?}"
    );
    assert_eq!(fake.count_prefix("POST", "/api/blobs/"), 0);
    let f16 = DeployRequest {
        source_type: Some("F16"),
        ..bf16
    };
    let out = deploy(&client, &f16, &NoProgress).await.unwrap();
    assert_eq!(out.server_version, "0.21.2");

    // A source the server cannot quantize is refused before the upload.
    let q8 = DeployRequest {
        source_type: Some("Q8_0"),
        quantize: Some("q4_K_M"),
        ..f16
    };
    let err = deploy(&client, &q8, &NoProgress).await.unwrap_err();
    assert!(
        matches!(err, ClientError::QuantizeSourceType { .. }),
        "{err:?}"
    );

    // A development build cannot be checked: the deploy goes on and says so.
    fake.set_version("0.0.0");
    let out = deploy_gguf(&client, "dev", &fixture(GGUF), None, &m, &[], &NoProgress)
        .await
        .unwrap();
    assert!(
        out.notes.iter().any(|n| n.contains("development build")),
        "{:?}",
        out.notes
    );
}

#[tokio::test]
async fn upload_model_and_layer_digests_are_kept_apart() {
    let fake = FakeOllama::start().await.unwrap();
    let client = client(&fake.url(), Duration::from_secs(5), 0);
    let upload = recorded_digest(GGUF);

    // From 0.30 the server rewrites the GGUF (llama-quantize COPY): the layer is another file.
    let out = deploy_gguf(
        &client,
        "new",
        &fixture(GGUF),
        None,
        &template(),
        &[],
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(out.upload_digest, upload);
    let stored = fake.model("new").unwrap();
    assert_eq!(out.model_layer_digest.as_ref(), Some(&stored.layer_digest));
    assert_ne!(out.model_layer_digest.as_ref(), Some(&upload));
    assert_eq!(out.model_digest.as_ref(), Some(&stored.digest));
    assert!(out.statuses.iter().any(|s| s == "validating GGUF model"));
    assert!(out.notes.is_empty(), "{:?}", out.notes);
    // Without a TEMPLATE the deploy says what the server will render instead.
    let bare = deploy_gguf(
        &client,
        "bare",
        &fixture(GGUF),
        None,
        &Modelfile::default(),
        &[],
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(
        bare.notes
            .iter()
            .any(|n| n.contains("tokenizer.chat_template")),
        "{:?}",
        bare.notes
    );

    // Before 0.30 the layer is the uploaded file; a model without TEMPLATE gets a warning
    // that the server falls back to `{{ .Prompt }}`.
    fake.set_version("0.24.0");
    let out = deploy_gguf(
        &client,
        "old",
        &fixture(GGUF),
        None,
        &Modelfile::default(),
        &[],
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(out.model_layer_digest.as_ref(), Some(&upload));
    assert!(!out.statuses.iter().any(|s| s == "validating GGUF model"));
    assert!(
        out.notes.iter().any(|n| n.contains("{{ .Prompt }}")),
        "{:?}",
        out.notes
    );
    assert_ne!(
        out.model_digest,
        fake.model("new").map(|m| m.digest),
        "another model, another manifest"
    );
}
