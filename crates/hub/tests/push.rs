//! The client against the fake Hub (tests/hub-fake): every path of a push and every refusal.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use hub_fake::{FakeHub, Fault, Origin};
use loraforge_hub::{
    ClientOptions, Endpoint, HubClient, HubError, PushFile, PushOutcome, PushRequest, RepoId,
    Token, Transfer,
};
use loraforge_progress::NoProgress;

const TOKEN: &str = "hf_alice_write";

struct Setup {
    fake: FakeHub,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let fake = FakeHub::start().await.unwrap();
        fake.add_token(TOKEN, "alice", &["team"], true);
        fake.add_token("hf_alice_read", "alice", &[], false);
        fake.set_lfs_threshold(1024);
        Setup {
            fake,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn client_with(&self, token: &str) -> HubClient {
        let options = ClientOptions {
            retries: 2,
            retry_backoff: Duration::from_millis(5),
            ..ClientOptions::default()
        };
        HubClient::new(
            Endpoint::parse(&self.fake.url()).unwrap(),
            Token::new(token),
            options,
        )
        .unwrap()
    }

    fn client(&self) -> HubClient {
        self.client_with(TOKEN)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// config.json (regular) and model.safetensors (binary, 3000 bytes: LFS).
    fn folder(&self) -> Vec<PushFile> {
        let config = self.file("config.json", br#"{"model_type": "llama"}"#);
        let weights = self.file("model.safetensors", &binary(3000, 7));
        vec![
            PushFile::new("config.json", config),
            PushFile::new("model.safetensors", weights),
        ]
    }
}

fn binary(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn request(repo: &str, files: Vec<PushFile>) -> PushRequest {
    PushRequest::new(repo.parse::<RepoId>().unwrap(), files)
}

fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

async fn push(client: &HubClient, req: &PushRequest) -> Result<PushOutcome, HubError> {
    client.push(req, &NoProgress).await
}

/// No request to the storage origin, and no multipart completion, carried a token.
fn assert_no_auth_on_storage(fake: &FakeHub) {
    let requests = fake.requests();
    for r in &requests {
        if r.origin == Origin::Storage || r.uri.starts_with("/lfs-complete/") {
            assert_eq!(r.authorization, None, "{} {}", r.method, r.uri);
            assert!(!r.uri.contains(TOKEN));
        } else {
            assert_eq!(
                r.authorization.as_deref(),
                Some(format!("Bearer {TOKEN}").as_str()),
                "{} {}",
                r.method,
                r.uri
            );
        }
    }
    assert_eq!(fake.storage_auth_violations(), 0);
}

#[tokio::test]
async fn small_file_goes_inline_and_large_file_through_lfs() {
    let s = Setup::new().await;
    let req = request("alice/model", s.folder());
    let out = push(&s.client(), &req).await.unwrap();

    assert!(out.committed && out.created_repo);
    assert_eq!(out.revision, "main");
    assert_eq!(s.fake.head("alice/model", "main").unwrap(), out.commit_id);
    let files = s.fake.files("alice/model", "main").unwrap();
    let config = &files["config.json"];
    assert!(!config.lfs);
    assert_eq!(&config.content[..], br#"{"model_type": "llama"}"#);
    let weights = &files["model.safetensors"];
    assert!(weights.lfs);
    assert_eq!(&weights.content[..], &binary(3000, 7)[..]);
    assert_eq!(out.files[1].sha256, sha(&binary(3000, 7)));
    assert_eq!(out.files[0].transfer, Transfer::Sent);
    assert_eq!(out.files[1].transfer, Transfer::Sent);
    assert!(out.files[1].lfs && !out.files[0].lfs);
    assert_eq!(out.bytes_sent, 3000 + 23);
    assert_eq!(s.fake.storage_bytes(), 3000);

    // The NDJSON payload: header, then one line per file, as huggingface_hub writes it.
    let payload = &s.fake.commit_payloads()[0];
    assert_eq!(payload[0]["key"], "header");
    assert_eq!(
        payload[0]["value"]["summary"],
        "Upload folder using loraforge"
    );
    assert_eq!(payload[0]["value"]["description"], "");
    assert_eq!(payload[1]["key"], "file");
    assert_eq!(payload[1]["value"]["encoding"], "base64");
    assert_eq!(payload[2]["key"], "lfsFile");
    assert_eq!(payload[2]["value"]["algo"], "sha256");
    assert_eq!(payload[2]["value"]["size"], 3000);
    assert_no_auth_on_storage(&s.fake);
}

#[tokio::test]
async fn a_second_identical_push_sends_no_bytes_and_makes_no_commit() {
    let s = Setup::new().await;
    let req = request("alice/model", s.folder());
    let first = push(&s.client(), &req).await.unwrap();
    let stored = s.fake.storage_bytes();
    let batches = s
        .fake
        .count("POST", "/alice/model.git/info/lfs/objects/batch");

    let second = push(&s.client(), &req).await.unwrap();
    assert!(!second.committed && !second.created_repo);
    assert_eq!(second.commit_id, first.commit_id);
    assert_eq!(second.bytes_sent, 0);
    assert!(second
        .files
        .iter()
        .all(|f| f.transfer == Transfer::Unchanged));
    assert_eq!(s.fake.storage_bytes(), stored);
    assert_eq!(s.fake.commits("alice/model").len(), 2);
    assert_eq!(
        s.fake
            .count("POST", "/alice/model.git/info/lfs/objects/batch"),
        batches
    );

    // One changed file: only it is sent.
    std::fs::write(s.dir.path().join("config.json"), b"{}").unwrap();
    let third = push(&s.client(), &req).await.unwrap();
    assert!(third.committed);
    assert_eq!(third.bytes_sent, 2);
    assert_eq!(third.files[1].transfer, Transfer::Unchanged);
    assert_eq!(s.fake.storage_bytes(), stored);
}

#[tokio::test]
async fn multipart_upload_when_the_batch_answer_has_a_chunk_size() {
    let s = Setup::new().await;
    s.fake.set_multipart(4096, 1500);
    let big = binary(10_000, 3);
    let path = s.file("model.gguf", &big);
    let req = request("alice/gguf", vec![PushFile::new("model.gguf", path)]);
    let out = push(&s.client(), &req).await.unwrap();

    assert_eq!(out.files[0].transfer, Transfer::Sent);
    assert_eq!(s.fake.count("PUT", "/storage/part/"), 7);
    assert_eq!(s.fake.count("POST", "/lfs-complete/"), 1);
    assert_eq!(s.fake.count("PUT", "/storage/object/"), 0);
    let files = s.fake.files("alice/gguf", "main").unwrap();
    assert_eq!(&files["model.gguf"].content[..], &big[..]);
    assert_no_auth_on_storage(&s.fake);
}

#[tokio::test]
async fn multipart_parts_go_in_parallel_up_to_the_bound() {
    let s = Setup::new().await;
    s.fake.set_multipart(4096, 1000);
    s.fake.set_part_delay(Duration::from_millis(40));
    let big = binary(12_000, 5);
    let path = s.file("model.gguf", &big);
    let client = HubClient::new(
        Endpoint::parse(&s.fake.url()).unwrap(),
        Token::new(TOKEN),
        ClientOptions {
            parallel_parts: 3,
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let req = request("alice/par", vec![PushFile::new("model.gguf", path)]);
    push(&client, &req).await.unwrap();
    assert_eq!(s.fake.count("PUT", "/storage/part/"), 12);
    // Parts overlap (parallel) and never more than the bound at once.
    let most = s.fake.max_parts_in_flight();
    assert!((2..=3).contains(&most), "{most} parts at once");
    let files = s.fake.files("alice/par", "main").unwrap();
    assert_eq!(&files["model.gguf"].content[..], &big[..]);
}

#[tokio::test]
async fn a_file_over_the_per_file_limit_is_refused_before_anything_is_sent() {
    let s = Setup::new().await;
    let client = HubClient::new(
        Endpoint::parse(&s.fake.url()).unwrap(),
        Token::new(TOKEN),
        ClientOptions {
            max_file_size: 2000,
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let err = push(&client, &request("alice/big", s.folder()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            HubError::FileTooLarge {
                size: 3000,
                limit: 2000,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_user_error());
    assert!(err.hint().unwrap().contains("gguf-split"));
    assert!(!s.fake.repo_exists("alice/big"));
    assert_eq!(s.fake.storage_bytes(), 0);
}

#[tokio::test]
async fn objects_the_hub_has_are_committed_without_sending_bytes() {
    let s = Setup::new().await;
    let bytes = binary(3000, 7);
    s.fake.put_lfs_object(&bytes);
    let req = request("alice/model", s.folder());
    let out = push(&s.client(), &req).await.unwrap();
    assert_eq!(out.files[1].transfer, Transfer::AlreadyStored);
    assert_eq!(s.fake.storage_bytes(), 0);
    assert_eq!(out.bytes_sent, 23);
    assert!(s.fake.files("alice/model", "main").unwrap()["model.safetensors"].lfs);
}

#[tokio::test]
async fn an_interrupted_push_resumes_without_sending_uploaded_objects_again() {
    let s = Setup::new().await;
    s.fake.inject(Fault::Status {
        method: "POST",
        path: "/api/models/alice/model/commit/",
        status: 500,
        message: "boom".into(),
        times: 1,
    });
    let req = request("alice/model", s.folder());
    let err = push(&s.client(), &req).await.unwrap_err();
    assert!(matches!(err, HubError::Http { status: 500, .. }), "{err}");
    assert_eq!(s.fake.commits("alice/model").len(), 1);
    assert_eq!(s.fake.storage_bytes(), 3000);

    let out = push(&s.client(), &req).await.unwrap();
    assert!(out.committed);
    assert_eq!(out.files[1].transfer, Transfer::AlreadyStored);
    assert_eq!(s.fake.storage_bytes(), 3000);
}

#[tokio::test]
async fn an_existing_repository_is_pushed_to() {
    let s = Setup::new().await;
    s.fake.create_repo("team/shared", true);
    let out = push(&s.client(), &request("team/shared", s.folder()))
        .await
        .unwrap();
    assert!(!out.created_repo && out.committed);
    assert_eq!(s.fake.is_private("team/shared"), Some(true));
}

#[tokio::test]
async fn whoami_names_the_user_and_delete_removes_the_repository() {
    let s = Setup::new().await;
    assert_eq!(s.client().whoami().await.unwrap(), "alice");
    push(&s.client(), &request("alice/gone", s.folder()))
        .await
        .unwrap();
    s.client()
        .delete_repo(&"alice/gone".parse().unwrap())
        .await
        .unwrap();
    assert!(!s.fake.repo_exists("alice/gone"));
    let err = s.client_with("hf_nobody").whoami().await.unwrap_err();
    assert!(matches!(err, HubError::Unauthorized { .. }), "{err}");
}

#[tokio::test]
async fn private_flag_creates_a_private_repository() {
    let s = Setup::new().await;
    let mut req = request("alice/secret", s.folder());
    req.private = true;
    push(&s.client(), &req).await.unwrap();
    assert_eq!(s.fake.is_private("alice/secret"), Some(true));
}

#[tokio::test]
async fn wrong_token_is_401_with_a_clear_message_and_nothing_is_created() {
    let s = Setup::new().await;
    let err = push(
        &s.client_with("hf_wrong"),
        &request("alice/model", s.folder()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, HubError::Unauthorized { .. }), "{err}");
    assert!(err.is_user_error());
    assert!(err.to_string().contains("HTTP 401"));
    assert!(err.hint().unwrap().contains("token"));
    assert!(!err.to_string().contains("hf_wrong"));
    assert!(!s.fake.repo_exists("alice/model"));
}

#[tokio::test]
async fn someone_elses_namespace_or_a_read_token_is_403() {
    let s = Setup::new().await;
    let err = push(&s.client(), &request("bob/model", s.folder()))
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::Forbidden { .. }), "{err}");
    assert!(err.to_string().contains("bob"));

    s.fake.create_repo("bob/existing", false);
    let err = push(&s.client(), &request("bob/existing", s.folder()))
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::Forbidden { .. }), "{err}");

    let err = push(
        &s.client_with("hf_alice_read"),
        &request("alice/m", s.folder()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, HubError::Forbidden { .. }), "{err}");
    assert_eq!(s.fake.commits("bob/existing").len(), 1);
}

#[tokio::test]
async fn a_missing_revision_is_named() {
    let s = Setup::new().await;
    let mut req = request("alice/model", s.folder());
    req.revision = "nope".into();
    let err = push(&s.client(), &req).await.unwrap_err();
    assert!(
        matches!(&err, HubError::RevisionNotFound { revision, .. } if revision == "nope"),
        "{err}"
    );

    // An existing branch other than main.
    s.fake.create_branch("alice/model", "dev", "main");
    req.revision = "dev".into();
    let out = push(&s.client(), &req).await.unwrap();
    assert_eq!(s.fake.head("alice/model", "dev").unwrap(), out.commit_id);
    assert_ne!(s.fake.head("alice/model", "main").unwrap(), out.commit_id);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let s = Setup::new().await;
    // Transient: one 503 on the upload, one dropped connection: the push succeeds.
    s.fake.inject(Fault::Status {
        method: "PUT",
        path: "/storage/",
        status: 503,
        message: "SlowDown".into(),
        times: 1,
    });
    s.fake.inject(Fault::DropUpload {
        after_bytes: 1000,
        times: 1,
    });
    let out = push(&s.client(), &request("alice/model", s.folder()))
        .await
        .unwrap();
    assert!(out.committed);
    assert!(s.fake.count("PUT", "/storage/object/") >= 3);

    // Persistent: reported after the retries with the Hub's message.
    s.fake.inject(Fault::Status {
        method: "POST",
        path: "/api/models/alice/other/preupload/",
        status: 502,
        message: "Bad Gateway from upstream".into(),
        times: 10,
    });
    let err = push(&s.client(), &request("alice/other", s.folder()))
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::Http { status: 502, .. }), "{err}");
    assert!(err.to_string().contains("Bad Gateway from upstream"));
    assert!(!err.is_user_error());
    assert_eq!(
        s.fake.count("POST", "/api/models/alice/other/preupload/"),
        3
    );
}

#[tokio::test]
async fn a_file_changed_since_it_was_recorded_is_refused_before_the_commit() {
    let s = Setup::new().await;
    let mut files = s.folder();
    // Same size, other content than recorded: caught while streaming the upload.
    files[1] = files[1].clone().recorded(3000, sha(&binary(3000, 8)));
    let err = push(&s.client(), &request("alice/model", files))
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::FileChanged { .. }), "{err}");
    assert_eq!(s.fake.commits("alice/model").len(), 1);

    // Another size: refused before anything is sent.
    let mut files = s.folder();
    files[0] = files[0].clone().recorded(5, "00");
    let err = push(&s.client(), &request("alice/model2", files))
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::FileChanged { .. }), "{err}");
    assert!(!s.fake.repo_exists("alice/model2"));
}

#[tokio::test]
async fn a_changed_file_is_caught_in_multipart_uploads_too() {
    let s = Setup::new().await;
    s.fake.set_multipart(2048, 1000);
    let path = s.file("m.gguf", &binary(5000, 1));
    let file = PushFile::new("m.gguf", path).recorded(5000, sha(&binary(5000, 2)));
    let err = push(&s.client(), &request("alice/q", vec![file]))
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::FileChanged { .. }), "{err}");
    assert_eq!(s.fake.count("POST", "/lfs-complete/"), 0);
    assert_eq!(s.fake.commits("alice/q").len(), 1);
}

#[tokio::test]
async fn recorded_checksums_are_reused() {
    let s = Setup::new().await;
    let files: Vec<PushFile> = s
        .folder()
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(&f.local).unwrap();
            f.recorded(bytes.len() as u64, sha(&bytes))
        })
        .collect();
    let out = push(&s.client(), &request("alice/model", files))
        .await
        .unwrap();
    assert!(out.committed);
    assert_eq!(out.files[1].sha256, sha(&binary(3000, 7)));
}

#[tokio::test]
async fn the_readme_metadata_is_validated_by_the_hub() {
    let s = Setup::new().await;
    let readme = s.file(
        "README.md",
        b"---\nbase_model: a/b\nbase_model_relation: sideways\n---\n\n# x\n",
    );
    let err = push(
        &s.client(),
        &request("alice/model", vec![PushFile::new("README.md", readme)]),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, HubError::InvalidMetadata { .. }), "{err}");
    assert!(err.to_string().contains("base_model_relation"));
}

#[tokio::test]
async fn an_object_the_hub_refuses_is_named() {
    let s = Setup::new().await;
    s.fake.set_max_file_size(2000);
    let err = push(&s.client(), &request("alice/model", s.folder()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HubError::LfsObject { path, code: 422, .. } if path == "model.safetensors"),
        "{err}"
    );
}

#[tokio::test]
async fn an_empty_binary_file_goes_inline() {
    let s = Setup::new().await;
    let empty = s.file("empty.safetensors", b"");
    let out = push(
        &s.client(),
        &request("alice/e", vec![PushFile::new("empty.safetensors", empty)]),
    )
    .await
    .unwrap();
    assert!(!out.files[0].lfs);
    assert!(!s.fake.files("alice/e", "main").unwrap()["empty.safetensors"].lfs);
}

#[test]
fn a_token_is_never_sent_over_plain_http_to_another_machine() {
    let remote = Endpoint::parse("http://hub.example.com").unwrap();
    let err =
        HubClient::new(remote.clone(), Token::new("hf_x"), ClientOptions::default()).unwrap_err();
    assert!(matches!(err, HubError::InsecureEndpoint { .. }));
    assert!(!err.to_string().contains("hf_x"));
    // Without a token there is nothing to protect.
    assert!(HubClient::new(remote, None, ClientOptions::default()).is_ok());
}

#[test]
fn invalid_repo_ids_are_refused() {
    for bad in ["no-owner", "a/b/c", "me/bad name", "me/x--y"] {
        assert!(matches!(
            bad.parse::<RepoId>(),
            Err(HubError::InvalidRepoId { .. })
        ));
    }
}
