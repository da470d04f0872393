//! The client against the in-process fake Ollama server (`tests/ollama-fake`), covering the
//! deploy flow, the documented status codes and error formats, and scripted faults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use loraforge_ollama_client::{
    deploy, deploy_gguf, ChatRequest, Client, ClientError, ClientOptions, CreateRequest,
    DeployRequest, GenerateRequest, Message, Modelfile, OllamaHost,
};
use loraforge_progress::NoProgress;
use ollama_fake::{FakeOllama, Fault};
use serde_json::json;

use crate::common::{client_for, fixture, recorded_digest, Event, Recorder};

const GGUF: &str = "tiny-llama3-f16.gguf";

fn template() -> Modelfile {
    Modelfile::parse(&std::fs::read_to_string(fixture("llama3-deploy.Modelfile")).unwrap()).unwrap()
}

fn gguf() -> PathBuf {
    fixture(GGUF)
}

fn gguf_len() -> u64 {
    std::fs::metadata(gguf()).unwrap().len()
}

/// Writes `len` bytes starting with the GGUF magic into `dir/name`.
fn write_gguf_like(dir: &Path, name: &str, len: usize) -> PathBuf {
    let mut bytes = b"GGUF\x03\x00\x00\x00".to_vec();
    bytes.extend((0..len.saturating_sub(8)).map(|i| (i % 251) as u8));
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

async fn start() -> (FakeOllama, Client) {
    let fake = FakeOllama::start().await.unwrap();
    let client = client_for(&fake.url());
    (fake, client)
}

#[tokio::test]
async fn deploy_uploads_creates_and_verifies() {
    let (fake, client) = start().await;
    let rec = Recorder::default();
    let extra = vec!["<|eot_id|>".to_owned(), "<|end_of_text|>".to_owned()];
    let out = deploy_gguf(
        &client,
        "tiny-llama3:f16",
        &gguf(),
        None,
        &template(),
        &extra,
        &rec,
    )
    .await
    .unwrap();

    // The digest is the file's sha256 as recorded by coreutils.
    assert_eq!(out.upload_digest, recorded_digest(GGUF));
    assert!(out.uploaded);
    assert_eq!(out.bytes_sent, gguf_len());
    let blob = fake.blob(&out.upload_digest).unwrap();
    assert_eq!(blob.size, gguf_len());
    assert_eq!(&blob.head[..4], b"GGUF");

    // The version check, the name's earlier digest, HEAD, one POST, create, then the new
    // digest and show to confirm.
    let blob_path = format!("/api/blobs/{}", out.upload_digest);
    let calls: Vec<(String, String)> = fake
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("GET".to_owned(), "/api/version".to_owned()),
            ("GET".to_owned(), "/api/tags".to_owned()),
            ("HEAD".to_owned(), blob_path.clone()),
            ("POST".to_owned(), blob_path),
            ("POST".to_owned(), "/api/create".to_owned()),
            ("GET".to_owned(), "/api/tags".to_owned()),
            ("POST".to_owned(), "/api/show".to_owned()),
        ]
    );

    // The create body: files map, template, system, typed parameters, stops appended once.
    let body = &fake.create_requests()[0];
    assert_eq!(body["model"], "tiny-llama3:f16");
    assert_eq!(body["files"], json!({ "model.gguf": out.upload_digest }));
    assert_eq!(body["stream"], true);
    assert!(body.get("quantize").is_none());
    assert_eq!(body["system"], "You are a helpful assistant.");
    assert!(body["template"]
        .as_str()
        .unwrap()
        .contains("{{ .Content }}<|eot_id|>"));
    assert_eq!(
        body["parameters"],
        json!({
            "stop": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|end_of_text|>"],
            "num_ctx": 512, "temperature": 0.6, "top_p": 0.9,
        })
    );
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"}])
    );

    // Progress: hashing and upload in bytes, then the server's statuses as messages.
    assert_eq!(rec.phases()[..2], ["hash".to_owned(), "upload".to_owned()]);
    assert_eq!(rec.advanced_in("hash"), gguf_len());
    assert_eq!(rec.advanced_in("upload"), gguf_len());
    let messages = rec.messages();
    assert_eq!(messages.first().map(String::as_str), Some("parsing GGUF"));
    assert_eq!(messages.last().map(String::as_str), Some("success"));
    assert!(messages.contains(&"writing manifest".to_owned()));
    assert_eq!(rec.advanced_in("validating GGUF model"), gguf_len());
    assert_eq!(out.statuses.last().map(String::as_str), Some("success"));

    // The model exists, as Ollama shows it.
    assert!(out.show.template.contains("<|start_header_id|>assistant"));
    assert!(out.show.parameters.contains("<|end_of_text|>"));
    let listed = client.list().await.unwrap();
    assert_eq!(listed.models.len(), 1);
    assert_eq!(listed.models[0].name, "tiny-llama3:f16");
    assert_eq!(fake.model("Tiny-Llama3:F16").unwrap().size, gguf_len());
}

#[tokio::test]
async fn second_deploy_reuses_the_blob_and_the_known_digest() {
    let (fake, client) = start().await;
    let first = deploy_gguf(&client, "m1", &gguf(), None, &template(), &[], &NoProgress)
        .await
        .unwrap();
    assert!(first.uploaded);

    let rec = Recorder::default();
    let known = recorded_digest(GGUF);
    let second = deploy_gguf(&client, "m2", &gguf(), Some(&known), &template(), &[], &rec)
        .await
        .unwrap();
    assert!(!second.uploaded);
    assert_eq!(second.bytes_sent, 0);
    assert_eq!(second.upload_digest, known);
    // No hashing (the digest was known) and no upload (HEAD said 200).
    assert!(!rec.phases().iter().any(|p| p == "hash" || p == "upload"));
    assert_eq!(fake.count_prefix("POST", "/api/blobs/"), 1);
    assert_eq!(fake.count_prefix("HEAD", "/api/blobs/"), 2);
    assert_eq!(fake.model_names().len(), 2);
}

#[tokio::test]
async fn known_digest_in_another_spelling_is_normalised() {
    let (fake, client) = start().await;
    let known = recorded_digest(GGUF)
        .replace("sha256:", "sha256-")
        .to_ascii_uppercase();
    let known = known.replacen("SHA256-", "sha256-", 1);
    let out = deploy_gguf(
        &client,
        "m",
        &gguf(),
        Some(&known),
        &Modelfile::default(),
        &[],
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(out.upload_digest, recorded_digest(GGUF));
    assert!(fake.has_blob(&out.upload_digest));
}

#[tokio::test]
async fn a_file_changed_since_its_digest_was_recorded_is_refused() {
    let (fake, client) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::copy(gguf(), &path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let known = recorded_digest(GGUF);
    let err = deploy_gguf(
        &client,
        "m",
        &path,
        Some(&known),
        &template(),
        &[],
        &NoProgress,
    )
    .await
    .unwrap_err();
    match err {
        ClientError::DigestMismatch {
            path: p,
            expected,
            server_computed,
            local_now,
        } => {
            assert_eq!(p, path);
            assert_eq!(expected, known);
            // What the changed bytes really hash to, on both sides.
            let real = loraforge_ollama_client::sha256_file(&path, &NoProgress)
                .await
                .unwrap();
            assert_eq!(server_computed, real);
            assert_eq!(local_now, real);
            assert_ne!(server_computed, expected);
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert_eq!(fake.count("POST", "/api/create"), 0);
    assert!(fake.model_names().is_empty());
    assert!(!fake.has_blob(&known));
}

#[tokio::test]
async fn a_server_side_digest_mismatch_on_an_intact_file_is_not_blamed_on_the_file() {
    let (fake, client) = start().await;
    let known = recorded_digest(GGUF);
    let wrong = format!("sha256:{}", "0".repeat(64));
    // The server hashes what it received to something else (a proxy or its disk mangled it).
    fake.inject(Fault::Status {
        method: "POST",
        path: "/api/blobs/",
        status: 400,
        message: format!("digest mismatch, expected \"{known}\", got \"{wrong}\""),
        times: 1,
    });
    let err = deploy_gguf(
        &client,
        "m",
        &gguf(),
        Some(&known),
        &template(),
        &[],
        &NoProgress,
    )
    .await
    .unwrap_err();
    match &err {
        ClientError::UploadCorrupted {
            path,
            expected,
            server_computed,
        } => {
            assert_eq!(path, &gguf());
            assert_eq!(expected, &known);
            assert_eq!(server_computed, &wrong);
        }
        other => panic!("expected UploadCorrupted, got {other:?}"),
    }
    let text = err.to_string();
    assert!(!text.contains("changed since"), "{text}");
    assert!(text.contains("the server computed"), "{text}");
    assert!(text.contains("not in the file"), "{text}");
    assert_eq!(fake.count("POST", "/api/create"), 0);
}

#[tokio::test]
async fn invalid_inputs_are_refused_before_any_request() {
    let (fake, client) = start().await;
    let m = template();
    let err = deploy_gguf(&client, "my model", &gguf(), None, &m, &[], &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::InvalidName(_)), "{err:?}");
    let err = deploy_gguf(
        &client,
        "ok",
        &gguf(),
        Some("sha256:1234"),
        &m,
        &[],
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::InvalidDigest { .. }), "{err:?}");
    let missing = Path::new("/nonexistent/model.gguf");
    let err = deploy_gguf(&client, "ok", missing, None, &m, &[], &NoProgress)
        .await
        .unwrap_err();
    match &err {
        ClientError::Io { path, .. } => assert_eq!(path, missing),
        other => panic!("expected Io, got {other:?}"),
    }
    let req = DeployRequest {
        model_name: "ok",
        gguf_path: &gguf(),
        known_digest: None,
        modelfile: &m,
        extra_stop: &[],
        quantize: Some("q5_K_M"),
        source_type: None,
    };
    let err = deploy(&client, &req, &NoProgress).await.unwrap_err();
    assert!(
        matches!(err, ClientError::UnsupportedQuantize { .. }),
        "{err:?}"
    );
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[tokio::test]
async fn server_quantize_is_passed_through() {
    let (fake, client) = start().await;
    let m = template();
    let req = DeployRequest {
        model_name: "m:q4_K_M",
        gguf_path: &gguf(),
        known_digest: None,
        modelfile: &m,
        extra_stop: &[],
        quantize: Some("q4_K_M"),
        source_type: Some("F16"),
    };
    let rec = Recorder::default();
    let out = deploy(&client, &req, &rec).await.unwrap();
    assert_eq!(fake.create_requests()[0]["quantize"], "q4_K_M");
    assert!(rec
        .messages()
        .contains(&"quantizing F16 model to Q4_K_M".to_owned()));
    assert_eq!(out.show.details.quantization_level, "Q4_K_M");
}

#[tokio::test]
async fn blob_upload_answers_201_then_200() {
    let (fake, client) = start().await;
    let digest = recorded_digest(GGUF);
    assert!(!client.blob_exists(&digest).await.unwrap());
    let first = client
        .upload_blob(&gguf(), &digest, &NoProgress)
        .await
        .unwrap();
    assert!(first.uploaded, "201 Created");
    assert!(client.blob_exists(&digest).await.unwrap());
    let second = client
        .upload_blob(&gguf(), &digest, &NoProgress)
        .await
        .unwrap();
    assert!(!second.uploaded, "200 OK: already present");
    assert_eq!(fake.count_prefix("POST", "/api/blobs/"), 2);
}

/// The fake answers as `ollama-api.md` §1 documents (raw HTTP, no client logic involved).
#[tokio::test]
async fn fake_server_blob_routes_follow_the_reference() {
    let fake = FakeOllama::start().await.unwrap();
    let http = reqwest::Client::new();
    let url = |d: &str| format!("{}/api/blobs/{d}", fake.url());
    let digest = recorded_digest(GGUF);
    let bytes = std::fs::read(gguf()).unwrap();

    let r = http.head(url("sha256:abc")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http.post(url("md5:abc")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"error": "invalid digest format"})
    );
    assert_eq!(http.head(url(&digest)).send().await.unwrap().status(), 404);

    let wrong = format!("sha256:{}", "0".repeat(64));
    let r = http
        .post(url(&wrong))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let msg = r.json::<serde_json::Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        msg,
        format!("digest mismatch, expected \"{wrong}\", got \"{digest}\"")
    );
    // manifest.NewLayer renames the received bytes into place under the digest it computed
    // before the handler compares: the mismatched upload is stored under its real digest.
    assert_eq!(http.head(url(&digest)).send().await.unwrap().status(), 200);
    assert_eq!(http.head(url(&wrong)).send().await.unwrap().status(), 404);
    let bytes2 = b"GGUF fresh bytes".to_vec();
    let digest2 = {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes2)))
    };
    assert_eq!(
        http.post(url(&digest2))
            .body(bytes2)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        http.post(url(&digest))
            .body(bytes)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(http.head(url(&digest)).send().await.unwrap().status(), 200);
    let dash = digest.replace("sha256:", "sha256-");
    assert_eq!(http.head(url(&dash)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn create_validation_errors_carry_ollamas_message() {
    let (fake, client) = start().await;
    let digest = fake.put_blob(&std::fs::read(gguf()).unwrap());
    let not_gguf = fake.put_blob(b"PK\x03\x04 this is a zip, not a gguf");
    let not_gguf_named = not_gguf.clone();
    let unknown = format!("sha256:{}", "ab".repeat(32));
    let cases: Vec<(CreateRequest, u16, &str)> = vec![
        (
            CreateRequest {
                model: "bad name".into(),
                files: [("model.gguf".into(), digest.clone())].into(),
                ..Default::default()
            },
            400,
            "invalid model name",
        ),
        (
            CreateRequest {
                model: "m".into(),
                files: [("/abs/model.gguf".into(), digest.clone())].into(),
                ..Default::default()
            },
            400,
            "file path must be relative",
        ),
        (
            CreateRequest {
                model: "m".into(),
                files: [("../model.gguf".into(), digest.clone())].into(),
                ..Default::default()
            },
            400,
            "file path must be relative",
        ),
        (
            CreateRequest {
                model: "m".into(),
                files: [("model.gguf".into(), String::new())].into(),
                ..Default::default()
            },
            400,
            "invalid digest format",
        ),
        (
            CreateRequest {
                model: "m".into(),
                files: [("weights.bin".into(), not_gguf)].into(),
                ..Default::default()
            },
            400,
            "unknown type",
        ),
    ];
    for (req, status, text) in cases {
        let rec = Recorder::default();
        match client.create(&req, &rec).await {
            Err(ClientError::Http {
                status: s, message, ..
            }) => {
                assert_eq!(s, status, "{req:?}");
                assert!(
                    message.contains(text),
                    "{message:?} should contain {text:?}"
                );
            }
            other => panic!("{req:?}: expected Http error, got {other:?}"),
        }
        assert!(
            rec.messages().is_empty(),
            "no progress before an HTTP error"
        );
    }

    // Once the handler's goroutine has sent a progress line, Ollama's streamResponse can no
    // longer set a status: the error arrives as HTTP 200 and an error line (server/create.go
    // ggufLayersWithMediaType sends "parsing GGUF" before it opens the blob; parseFromModel
    // pulls a missing `from` model, sending "pulling manifest" first).
    let streamed: Vec<(CreateRequest, &str, &str)> = vec![
        (
            CreateRequest {
                model: "m".into(),
                files: [("model.gguf".into(), unknown)].into(),
                ..Default::default()
            },
            "parsing GGUF",
            "no such file or directory",
        ),
        (
            CreateRequest {
                model: "m".into(),
                files: [("model.gguf".into(), "sha256:1234".to_owned())].into(),
                ..Default::default()
            },
            "parsing GGUF",
            "invalid digest format",
        ),
        (
            CreateRequest {
                model: "m".into(),
                files: [("model.gguf".into(), not_gguf_named)].into(),
                ..Default::default()
            },
            "parsing GGUF",
            "supplied file was not in GGUF format",
        ),
        (
            CreateRequest {
                model: "m".into(),
                from: Some("absent".into()),
                ..Default::default()
            },
            "pulling manifest",
            "pull model manifest",
        ),
    ];
    for (req, first, text) in streamed {
        let rec = Recorder::default();
        match client.create(&req, &rec).await {
            Err(ClientError::Stream { message, .. }) => {
                assert!(
                    message.contains(text),
                    "{message:?} should contain {text:?}"
                );
            }
            other => panic!("{req:?}: expected a streamed error, got {other:?}"),
        }
        assert_eq!(rec.messages(), [first.to_owned()], "{req:?}");
    }
    assert!(fake.model_names().is_empty());
}

#[tokio::test]
async fn an_error_line_mid_stream_fails_create_and_deploy() {
    let (fake, client) = start().await;
    fake.inject(Fault::CreateErrorAfter {
        after_lines: 2,
        message: "failed to validate GGUF with llama-quantize".into(),
    });
    let rec = Recorder::default();
    let err = deploy_gguf(&client, "m", &gguf(), None, &template(), &[], &rec)
        .await
        .unwrap_err();
    match err {
        ClientError::Stream { message, .. } => {
            assert_eq!(message, "failed to validate GGUF with llama-quantize")
        }
        other => panic!("expected Stream, got {other:?}"),
    }
    assert_eq!(rec.messages(), ["parsing GGUF", "validating GGUF model"]);
    assert!(
        fake.model_names().is_empty(),
        "no model after a failed create"
    );
    assert_eq!(
        fake.count("POST", "/api/show"),
        0,
        "no verification after failure"
    );
}

#[tokio::test]
async fn server_side_quantize_errors_arrive_mid_stream() {
    let (fake, client) = start().await;
    let digest = fake.put_blob(&std::fs::read(gguf()).unwrap());
    let req = CreateRequest {
        model: "m".into(),
        files: [("model.gguf".into(), digest)].into(),
        quantize: Some("q5_K_M".into()),
        ..Default::default()
    };
    let err = client.create(&req, &NoProgress).await.unwrap_err();
    match err {
        ClientError::Stream { message, .. } => {
            assert!(
                message.starts_with("unsupported quantization type Q5_K_M"),
                "{message}"
            )
        }
        other => panic!("expected Stream, got {other:?}"),
    }
}

#[tokio::test]
async fn create_streams_progress_with_totals() {
    let (fake, client) = start().await;
    let digest = fake.put_blob(&std::fs::read(gguf()).unwrap());
    let req = CreateRequest {
        model: "m".into(),
        files: [("model.gguf".into(), digest)].into(),
        ..Default::default()
    };
    let rec = Recorder::default();
    let out = client.create(&req, &rec).await.unwrap();
    assert_eq!(
        out.statuses.first().map(String::as_str),
        Some("parsing GGUF")
    );
    assert_eq!(out.statuses.last().map(String::as_str), Some("success"));
    let events = rec.events();
    assert!(events.contains(&Event::Begin(
        "validating GGUF model".into(),
        Some(gguf_len())
    )));
    assert_eq!(events.first(), Some(&Event::Begin("create".into(), None)));
    assert_eq!(events.last(), Some(&Event::Finish));
}

#[tokio::test]
async fn management_endpoints() {
    let (fake, client) = start().await;
    assert_eq!(client.version().await.unwrap(), ollama_fake::FAKE_VERSION);
    fake.set_version("0.5.5");
    assert_eq!(client.version().await.unwrap(), "0.5.5");
    client.heartbeat().await.unwrap();
    assert!(client.list().await.unwrap().models.is_empty());
    deploy_gguf(
        &client,
        "orig",
        &gguf(),
        None,
        &template(),
        &[],
        &NoProgress,
    )
    .await
    .unwrap();

    client.copy("orig", "me/copy:v2").await.unwrap();
    let names: Vec<String> = client
        .list()
        .await
        .unwrap()
        .models
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"orig:latest".to_owned()) && names.contains(&"me/copy:v2".to_owned()));
    let err = client.copy("absent", "x").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");

    let show = client.show("ORIG").await.unwrap();
    assert_eq!(show.system, "You are a helpful assistant.");
    assert_eq!(show.model_info["general.architecture"], "llama");
    let err = client.show("absent").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Http { status: 404, message, .. } if message == "model 'absent' not found"),
        "{err:?}"
    );

    assert!(client.ps().await.unwrap().models.is_empty());
    let gen = client
        .generate(&GenerateRequest {
            model: "orig".into(),
            prompt: "hi".into(),
            options: json!({"num_predict": 1, "temperature": 0})
                .as_object()
                .unwrap()
                .clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(gen.done && !gen.response.is_empty());
    assert_eq!(gen.metrics.eval_count, Some(5));
    assert_eq!(client.ps().await.unwrap().models[0].name, "orig:latest");
    let chat = client
        .chat(&ChatRequest {
            model: "orig".into(),
            messages: vec![Message {
                role: "user".into(),
                content: "ping".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(chat.message.role, "assistant");
    assert_eq!(chat.message.content, "You said: ping");
    let err = client
        .generate(&GenerateRequest {
            model: "absent".into(),
            prompt: "hi".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.is_not_found());
}

#[tokio::test]
async fn delete_removes_the_model_and_reports_404_when_missing() {
    let (fake, client) = start().await;
    let out = deploy_gguf(&client, "m", &gguf(), None, &template(), &[], &NoProgress)
        .await
        .unwrap();
    client.delete("m").await.unwrap();
    assert!(fake.model_names().is_empty());
    // RemoveLayers removes the manifest's layers no other manifest uses. From 0.30 the model
    // layer is llama-quantize's copy, so the uploaded blob stays until the server restarts.
    assert!(!fake.has_blob(out.model_layer_digest.as_deref().unwrap()));
    assert!(
        fake.has_blob(&out.upload_digest),
        "the upload is not a layer"
    );
    let err = client.delete("m").await.unwrap_err();
    match &err {
        ClientError::Http {
            status: 404,
            message,
            ..
        } => assert_eq!(message, "model 'm' not found"),
        other => panic!("expected 404, got {other:?}"),
    }
    assert!(err.is_not_found());
    assert_eq!(
        fake.count("DELETE", "/api/delete"),
        2,
        "a 404 is not retried"
    );
}

#[tokio::test]
async fn unreachable_server_has_a_hint() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = client_for(&format!("127.0.0.1:{port}"));
    let err = client.version().await.unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("ollama serve") && text.contains("OLLAMA_HOST"),
        "{text}"
    );
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    let err = deploy_gguf(&client, "m", &gguf(), None, &template(), &[], &NoProgress)
        .await
        .unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
}

#[tokio::test]
async fn idempotent_calls_retry_server_errors() {
    let (fake, client) = start().await;
    fake.inject(Fault::Status {
        method: "GET",
        path: "/api/tags",
        status: 500,
        message: "busy".into(),
        times: 2,
    });
    assert!(client.list().await.unwrap().models.is_empty());
    assert_eq!(fake.count("GET", "/api/tags"), 3);

    fake.inject(Fault::Status {
        method: "GET",
        path: "/api/tags",
        status: 503,
        message: "overloaded".into(),
        times: 10,
    });
    let err = client.list().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Http { status: 503, message, .. } if message == "overloaded"),
        "{err:?}"
    );
    assert_eq!(fake.count("GET", "/api/tags"), 6, "1 + 2 retries");
}

#[tokio::test]
async fn create_is_not_retried() {
    let (fake, client) = start().await;
    fake.inject(Fault::Status {
        method: "POST",
        path: "/api/create",
        status: 500,
        message: "out of disk".into(),
        times: 1,
    });
    let err = deploy_gguf(&client, "m", &gguf(), None, &template(), &[], &NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Http { status: 500, message, .. } if message == "out of disk"),
        "{err:?}"
    );
    assert_eq!(fake.count("POST", "/api/create"), 1);
    assert!(fake.model_names().is_empty());
}

#[tokio::test]
async fn server_errors_at_each_deploy_step() {
    let steps: [(&'static str, &'static str); 4] = [
        ("HEAD", "/api/blobs/"),
        ("POST", "/api/blobs/"),
        ("POST", "/api/create"),
        ("POST", "/api/show"),
    ];
    for (method, path) in steps {
        let (fake, client) = start().await;
        fake.inject(Fault::Status {
            method,
            path,
            status: 500,
            message: format!("{method} {path} failed"),
            times: 10,
        });
        let err = deploy_gguf(&client, "m", &gguf(), None, &template(), &[], &NoProgress)
            .await
            .unwrap_err();
        match &err {
            // A HEAD response has no body, so the reason phrase stands in for Ollama's message.
            ClientError::Http {
                status: 500,
                message,
                ..
            } if method == "HEAD" => {
                assert_eq!(message, "Internal Server Error")
            }
            ClientError::Http {
                status: 500,
                message,
                ..
            } => assert_eq!(message, &format!("{method} {path} failed")),
            other => panic!("{method} {path}: expected Http 500, got {other:?}"),
        }
        if path != "/api/show" {
            assert!(
                fake.model_names().is_empty(),
                "{method} {path}: no model after a failure"
            );
        }
    }
    // Create succeeded but show says 404: not confirmed.
    let (fake, client) = start().await;
    fake.inject(Fault::Status {
        method: "POST",
        path: "/api/show",
        status: 404,
        message: "model 'm' not found".into(),
        times: 1,
    });
    let err = deploy_gguf(&client, "m", &gguf(), None, &template(), &[], &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotCreated { .. }), "{err:?}");
}

#[tokio::test]
async fn a_connection_dropped_mid_upload_is_retried() {
    let (fake, client) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_gguf_like(dir.path(), "big.gguf", 4 << 20);
    fake.inject(Fault::DropUpload {
        after_bytes: 256 << 10,
        times: 1,
    });
    let rec = Recorder::default();
    let up = client.push_blob(&path, None, &rec).await.unwrap();
    assert!(up.uploaded);
    assert_eq!(up.bytes_sent, 4 << 20);
    assert_eq!(fake.count_prefix("POST", "/api/blobs/"), 2);
    assert_eq!(fake.blob(&up.digest).unwrap().size, 4 << 20);
    assert_eq!(
        rec.phases().iter().filter(|p| *p == "upload").count(),
        2,
        "the upload restarted"
    );
}

#[tokio::test]
async fn a_connection_dropped_on_every_attempt_fails() {
    let (fake, client) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_gguf_like(dir.path(), "big.gguf", 2 << 20);
    fake.inject(Fault::DropUpload {
        after_bytes: 64 << 10,
        times: 10,
    });
    let err = client
        .push_blob(&path, None, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");
    assert_eq!(fake.count_prefix("POST", "/api/blobs/"), 3);
    assert!(fake.model_names().is_empty());
}

#[tokio::test]
async fn slow_responses_time_out() {
    let fake = FakeOllama::start().await.unwrap();
    let mut o = ClientOptions::with_host(OllamaHost::parse(&fake.url()));
    o.request_timeout = Duration::from_millis(200);
    o.stall_timeout = Duration::from_millis(200);
    o.retries = 1;
    o.retry_backoff = Duration::from_millis(1);
    let client = Client::new(o).unwrap();

    fake.inject(Fault::Delay {
        method: "GET",
        path: "/api/tags",
        delay: Duration::from_secs(5),
        times: 2,
    });
    let err = client.list().await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out"));
    // A silent create stream is not a timeout: see faults.rs.
}

#[tokio::test]
async fn malformed_responses_are_protocol_errors() {
    let (fake, client) = start().await;
    fake.inject(Fault::Body {
        method: "GET",
        path: "/api/version",
        status: 200,
        body: "<html>proxy login</html>".into(),
        times: 1,
    });
    let err = client.version().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Protocol { message, .. } if message.contains("<html>proxy login</html>")),
        "{err:?}"
    );

    // A non-JSON error body: the text stands in for Ollama's message.
    fake.inject(Fault::Body {
        method: "GET",
        path: "/api/tags",
        status: 404,
        body: "404 page not found".into(),
        times: 1,
    });
    let err = client.list().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Http { status: 404, message, .. } if message == "404 page not found"),
        "{err:?}"
    );

    let digest = fake.put_blob(&std::fs::read(gguf()).unwrap());
    let req = CreateRequest {
        model: "m".into(),
        files: [("model.gguf".into(), digest)].into(),
        ..Default::default()
    };
    fake.inject(Fault::Body {
        method: "POST",
        path: "/api/create",
        status: 200,
        body: "{\"status\":\"parsing GGUF\"}\nnot json\n".into(),
        times: 1,
    });
    let err = client.create(&req, &NoProgress).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Protocol { message, .. } if message.contains("not json")),
        "{err:?}"
    );

    // A stream that stops without "success" (no trailing newline either).
    fake.inject(Fault::Body {
        method: "POST",
        path: "/api/create",
        status: 200,
        body: "{\"status\":\"parsing GGUF\"}\n{\"status\":\"writing manifest\"}".into(),
        times: 1,
    });
    let err = client.create(&req, &NoProgress).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Protocol { message, .. } if message.contains("writing manifest")),
        "{err:?}"
    );

    // Split across arbitrary chunks is fine; a final line without a newline still counts.
    fake.inject(Fault::Body {
        method: "POST",
        path: "/api/create",
        status: 200,
        body: "{\"status\":\"a\"}\n\n{\"status\":\"success\"}".into(),
        times: 1,
    });
    let out = client.create(&req, &NoProgress).await.unwrap();
    assert_eq!(out.statuses, ["a", "success"]);
}

/// The server answers 200 without reading the body when it has the blob; the client must take
/// that early answer even though most of a large body was never sent.
#[tokio::test]
async fn an_early_200_on_a_large_reupload_is_success() {
    let (fake, client) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_gguf_like(dir.path(), "big.gguf", 16 << 20);
    let digest = loraforge_ollama_client::sha256_file(&path, &NoProgress)
        .await
        .unwrap();
    assert!(
        client
            .upload_blob(&path, &digest, &NoProgress)
            .await
            .unwrap()
            .uploaded
    );
    let again = client
        .upload_blob(&path, &digest, &NoProgress)
        .await
        .unwrap();
    assert!(!again.uploaded);
    assert_eq!(fake.count_prefix("POST", "/api/blobs/"), 2);
}
