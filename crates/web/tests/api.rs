//! The router driven without sockets: every route, the token/cookie/CSRF/Origin rules, traversal,
//! status codes, and Save → Deploy → Delete through the API against the in-process fake Ollama.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use common::{succeeded, Store, TOKEN};
use serde_json::{json, Value};
use tower::ServiceExt as _;

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn request(method: Method, path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1:8765")
}

fn bearer(method: Method, path: &str) -> axum::http::request::Builder {
    request(method, path).header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
}

async fn get(app: &Router, path: &str) -> Answer {
    send(app, bearer(Method::GET, path).body(Body::empty()).unwrap()).await
}

async fn post_json(app: &Router, path: &str, body: Value) -> Answer {
    send(
        app,
        bearer(Method::POST, path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

/// Open a browser-like session: `?token=` → cookie; returns (cookie header, CSRF token).
async fn session(app: &Router) -> (String, String) {
    let answer = send(
        app,
        request(Method::GET, &format!("/saved?token={TOKEN}&page=1"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(
        answer.headers[header::LOCATION],
        "/saved?page=1",
        "token dropped from the address"
    );
    let set_cookie = answer.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let page = send(
        app,
        request(Method::GET, "/saved")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    let marker = r#"<meta name="csrf-token" content=""#;
    let start = html.find(marker).unwrap() + marker.len();
    let csrf = html[start..start + html[start..].find('"').unwrap()].to_string();
    assert_eq!(csrf.len(), 64);
    (cookie, csrf)
}

#[tokio::test]
async fn every_route_needs_the_token() {
    let store = Store::new();
    let app = store.app("127.0.0.1:9").router();
    for path in [
        "/",
        "/base",
        "/trained",
        "/jobs",
        &format!("/trained/{}", store.trained),
        "/assets/app.js",
        "/api/v1/base",
        "/api/v1/jobs",
        "/nowhere",
    ] {
        let answer = send(
            &app,
            request(Method::GET, path).body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        let wrong = send(
            &app,
            request(Method::GET, path)
                .header(header::AUTHORIZATION, "Bearer not-the-token")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let api = send(
        &app,
        request(Method::GET, "/api/v1/base")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(api.json()["error"].as_str().unwrap().contains("token"));
    assert!(api.json()["hint"].is_string());
    let wrong_query = send(
        &app,
        request(Method::GET, "/?token=nope")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(wrong_query.status, StatusCode::UNAUTHORIZED);
    let forged_cookie = send(
        &app,
        request(Method::GET, "/")
            .header(header::COOKIE, "loraforge_session=forged")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(forged_cookie.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_valid_bearer_gets_the_overview_directly() {
    let store = Store::new();
    let app = store.app("127.0.0.1:9").router();
    let answer = get(&app, "/").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = answer.text();
    assert!(
        html.contains(r#"data-count="trained"><span class="count">1</span>"#),
        "{html}"
    );
    assert!(html.contains("No job is running"));
}

#[tokio::test]
async fn the_token_query_opens_a_cookie_session_and_mutations_need_csrf() {
    let store = Store::new();
    let app = store.app("127.0.0.1:9").router();
    let (cookie, csrf) = session(&app).await;
    let path = format!("/api/v1/trained/{}/save", store.trained);
    let without = send(
        &app,
        request(Method::POST, &path)
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(without.status, StatusCode::FORBIDDEN, "{}", without.text());
    assert!(without.json()["error"].as_str().unwrap().contains("CSRF"));
    let wrong = send(
        &app,
        request(Method::POST, &path)
            .header(header::COOKIE, &cookie)
            .header("x-csrf-token", "0".repeat(64))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let with = send(
        &app,
        request(Method::POST, &path)
            .header(header::COOKIE, &cookie)
            .header("x-csrf-token", &csrf)
            .header(header::ORIGIN, "http://127.0.0.1:8765")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(with.status, StatusCode::ACCEPTED, "{}", with.text());
    let job = with.json()["job"].as_str().unwrap().to_string();
    succeeded(&store.wait_job(&job).await);
}

#[tokio::test]
async fn a_cross_site_origin_is_refused_even_with_the_bearer_token() {
    let store = Store::new();
    let app = store.app("127.0.0.1:9").router();
    let save = format!("/api/v1/trained/{}/save", store.trained);
    let delete = format!("/api/v1/trained/{}", store.trained);
    for (method, path) in [(Method::POST, &save), (Method::DELETE, &delete)] {
        for origin in ["http://evil.example", "null", "http://127.0.0.1:9999"] {
            let answer = send(
                &app,
                bearer(method.clone(), path)
                    .header(header::ORIGIN, origin)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{method} {path} from {origin}"
            );
        }
        let fetch_site = send(
            &app,
            bearer(method.clone(), path)
                .header("sec-fetch-site", "cross-site")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(fetch_site.status, StatusCode::FORBIDDEN);
    }
    assert!(
        store.registry().jobs().unwrap().is_empty(),
        "nothing was queued"
    );
    assert!(
        store
            .registry()
            .trained(&store.trained)
            .unwrap()
            .adapter_present
    );
    // Reading stays allowed from anywhere with the token (GET changes nothing).
    let read = send(
        &app,
        bearer(Method::GET, "/api/v1/trained")
            .header(header::ORIGIN, "http://evil.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
}

#[tokio::test]
async fn traversal_and_invalid_names_get_4xx_before_any_lookup() {
    let store = Store::new();
    let app = store.app("127.0.0.1:9").router();
    for path in [
        "/trained/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/saved/%2e%2e",
        "/api/v1/saved/%2E%2E%2Fstore",
        "/base/..",
        "/base/../../etc/passwd",
        "/api/v1/base/a%5cb",
        "/assets/..%2f..%2fCargo.toml",
    ] {
        let answer = get(&app, path).await;
        assert!(answer.status.is_client_error(), "{path}: {}", answer.status);
    }
    for path in [
        "/api/v1/trained/Not%20A%20Name",
        "/api/v1/saved/tiny",
        "/api/v1/base/UPPER",
        "/trained/x_y",
        "/api/v1/jobs/not-a-uuid",
    ] {
        let answer = get(&app, path).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            answer.text()
        );
    }
    let invalid = get(&app, "/api/v1/saved/tiny").await.json();
    assert!(invalid["error"]
        .as_str()
        .unwrap()
        .contains("not a valid saved model name"));
    assert!(invalid["hint"].is_string());
    let missing = get(&app, &format!("/api/v1/saved/{}_s_0000", store.trained)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text());
    assert!(missing.json()["error"]
        .as_str()
        .unwrap()
        .contains("no saved model named"));
    assert_eq!(
        get(&app, "/api/v1/models").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/nowhere/at/all").await.status,
        StatusCode::NOT_FOUND
    );
    let unknown_job = get(&app, &format!("/api/v1/jobs/{}", uuid::Uuid::nil())).await;
    assert_eq!(unknown_job.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn lists_and_show_equal_the_cli_json() {
    let store = Store::new();
    let app = store.app("127.0.0.1:9").router();
    let registry = store.registry();
    let expect = [
        (
            "base",
            serde_json::to_value(registry.bases().unwrap()).unwrap(),
        ),
        (
            "trained",
            serde_json::to_value(registry.trained_models().unwrap()).unwrap(),
        ),
        ("saved", json!([])),
        ("deployed", json!([])),
        ("jobs", json!([])),
    ];
    for (stage, value) in expect {
        let answer = get(&app, &format!("/api/v1/{stage}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{stage}");
        assert_eq!(answer.json(), value, "{stage}");
    }
    let card = get(&app, &format!("/api/v1/trained/{}", store.trained)).await;
    assert_eq!(card.status, StatusCode::OK);
    let stored: Value = serde_json::from_str(
        &registry
            .card_json(loraforge_registry::EntryKind::Trained, &store.trained)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(card.json(), stored);
    let base = get(&app, "/api/v1/base/tiny").await;
    assert_eq!(base.status, StatusCode::OK);
}

#[tokio::test]
async fn every_page_renders_with_its_actions_and_dialogs() {
    let store = Store::new();
    let app = store.app("ollama.example:11434").router();
    let trained = get(&app, "/trained").await;
    assert_eq!(trained.status, StatusCode::OK);
    let html = trained.text();
    assert!(html.contains(&format!(r#"<tr data-name="{}">"#, store.trained)));
    assert!(html.contains(r#"data-action="save""#));
    assert!(html.contains(r#"data-action="delete""#));
    assert!(html.contains(&format!(r#"data-pattern="{}_s_xxxx""#, store.trained)));
    assert!(html.contains("data-confirm"));
    assert!(html.contains(
        "Removes only this trained model&#39;s adapter files. Saved models made from it stay"
    ));
    assert!(html.contains(r#"<span class="n-train" title="train name">web-run</span>"#));
    assert!(!html.contains("alert(") && !html.contains("confirm("));
    let saved = get(&app, "/saved").await.text();
    assert!(saved.contains(r#"<select name="quant""#));
    for quant in ["no_quantization", "q8_0", "q4_K_M", "q4_K_S"] {
        assert!(
            saved.contains(&format!(r#"<option value="{quant}""#)),
            "{quant}"
        );
    }
    assert!(saved.contains(r#"name="host" id="dlg-host" value="ollama.example:11434""#));
    assert!(saved.contains("No saved models yet."));
    assert!(saved.contains("Removes this saved model&#39;s folder. Deployments made from it stay"));
    let base = get(&app, "/base").await.text();
    assert!(base.contains(r#"<tr data-name="tiny">"#));
    let deployed = get(&app, "/deployed").await.text();
    assert!(deployed.contains("No deployed models yet."));
    let jobs = get(&app, "/jobs").await.text();
    assert!(jobs.contains("No jobs yet."));
    let detail = get(&app, &format!("/trained/{}", store.trained)).await;
    assert_eq!(detail.status, StatusCode::OK);
    let detail = detail.text();
    assert!(detail.contains(r#"<ol class="lineage">"#));
    assert!(
        detail.contains(r#"<a href="/base/tiny">"#),
        "lineage links to the base"
    );
    assert!(detail.contains(r#"<tr data-file="#), "files with checksums");
    assert!(detail.contains(r#"<code class="sha">"#));
    for asset in ["/assets/app.js", "/assets/style.css"] {
        let answer = get(&app, asset).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(!answer.body.is_empty());
    }
    assert_eq!(
        get(&app, "/assets/other.js").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&app, "/models").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_deploy_and_delete_through_the_api() {
    let fake = ollama_fake::FakeOllama::start().await.unwrap();
    let store = Store::new();
    let app = store.app(&fake.url()).router();

    // Save: 202 with the job id; the job runs in the background; its events end in succeeded.
    let answer = post_json(
        &app,
        &format!("/api/v1/trained/{}/save", store.trained),
        json!({"dtype": "auto"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let job = answer.json()["job"].as_str().unwrap().to_string();
    let events = get(&app, &format!("/api/v1/jobs/{job}/events")).await;
    assert_eq!(events.status, StatusCode::OK);
    assert!(events.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let stream = events.text();
    assert!(stream.contains("event: job"), "{stream}");
    assert!(
        stream.contains(r#""state":"succeeded""#),
        "the stream ends with the final state: {stream}"
    );
    let saved = succeeded(&store.wait_job(&job).await);
    let saved_page = get(&app, "/saved").await.text();
    assert!(saved_page.contains(&format!(r#"<tr data-name="{saved}">"#)));
    let jobs_page = get(&app, "/jobs").await.text();
    assert!(jobs_page.contains(&format!(r#"<tr data-name="{job}""#)));
    assert!(jobs_page.contains(r#"<td class="state">succeeded</td>"#));
    let job_json = get(&app, &format!("/api/v1/jobs/{job}")).await.json();
    assert_eq!(job_json["state"], "succeeded");

    // Deploy errors are user errors with hints.
    let bad = post_json(
        &app,
        &format!("/api/v1/saved/{saved}/deploy"),
        json!({"quant": "q9_K"}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["hint"].as_str().unwrap().contains("q4_K_M"));
    let no_body = send(
        &app,
        bearer(Method::POST, &format!("/api/v1/saved/{saved}/deploy"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(no_body.status, StatusCode::BAD_REQUEST);
    let missing = post_json(
        &app,
        &format!("/api/v1/saved/{}_s_0000/deploy", store.trained),
        json!({"quant": "q8_0"}),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // Deploy is a job too.
    let answer = post_json(
        &app,
        &format!("/api/v1/saved/{saved}/deploy"),
        json!({"quant": "q4_K_M", "host": fake.url()}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let job = answer.json()["job"].as_str().unwrap().to_string();
    let deployed = succeeded(&store.wait_job(&job).await);
    assert!(deployed.starts_with(&format!("{saved}_d_")) && deployed.ends_with("_q4_K_M"));
    assert_eq!(fake.model_names().len(), 1);
    let listed = get(&app, "/api/v1/deployed").await.json();
    assert_eq!(listed[0]["name"], deployed.as_str());
    let deployed_page = get(&app, &format!("/deployed/{deployed}")).await;
    assert_eq!(deployed_page.status, StatusCode::OK);
    assert!(
        deployed_page
            .text()
            .contains(&format!(r#"<a href="/saved/{saved}">"#)),
        "lineage links back"
    );

    // Delete semantics: the saved model goes, its deployment stays.
    let answer = send(
        &app,
        bearer(Method::DELETE, &format!("/api/v1/saved/{saved}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(
        get(&app, &format!("/api/v1/saved/{saved}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/api/v1/deployed")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The base is in use: 409 with a hint.
    let in_use = send(
        &app,
        bearer(Method::DELETE, "/api/v1/base/tiny")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(in_use.status, StatusCode::CONFLICT, "{}", in_use.text());
    // The trained model loses its adapter files only; the list page hides it, the card stays.
    let answer = send(
        &app,
        bearer(
            Method::DELETE,
            &format!("/api/v1/trained/{}", store.trained),
        )
        .body(Body::empty())
        .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        json!({"removed": store.trained, "purged": false})
    );
    assert!(!get(&app, "/trained")
        .await
        .text()
        .contains(&format!(r#"<tr data-name="{}">"#, store.trained)));
    // The API lists live entries as `trained list --json` does; `?all=1` as `--all`.
    assert_eq!(get(&app, "/api/v1/trained").await.json(), json!([]));
    let all = get(&app, "/api/v1/trained?all=1").await.json();
    assert_eq!(all[0]["name"], store.trained.as_str());
    assert_eq!(all[0]["adapter_present"], false);
    assert_eq!(
        get(&app, &format!("/trained/{}", store.trained))
            .await
            .status,
        StatusCode::OK
    );
    let again = post_json(
        &app,
        &format!("/api/v1/trained/{}/save", store.trained),
        json!({}),
    )
    .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.text());
    // The deployment goes from Ollama too.
    let answer = send(
        &app,
        bearer(Method::DELETE, &format!("/api/v1/deployed/{deployed}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert!(fake.model_names().is_empty());
}

#[tokio::test]
async fn an_unreachable_ollama_fails_the_deploy_job_with_its_error() {
    let store = Store::new();
    let registry = store.registry();
    let job = registry.queue_save(&store.trained, "auto").unwrap();
    registry
        .run_job(&job.id, &loraforge_progress::NoProgress)
        .unwrap();
    let saved = registry.saved_models().unwrap()[0].name.clone();
    // Port 9 (discard) on loopback: nothing listens.
    let app = store.app("127.0.0.1:9").router();
    let answer = post_json(
        &app,
        &format!("/api/v1/saved/{saved}/deploy"),
        json!({"quant": "q8_0"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let job = store.wait_job(answer.json()["job"].as_str().unwrap()).await;
    assert_eq!(job.state, loraforge_registry::JobState::Failed);
    assert!(job.error.unwrap().contains("127.0.0.1:9"));
    let page = get(&app, "/jobs").await.text();
    assert!(page.contains(r#"<td class="state">failed</td>"#));
    assert!(page.contains("loraforge jobs show"));
}

/// Leaves every job queued (a worker that never comes), so the test decides what happens next.
struct HeldRunner;

impl loraforge_web::JobRunner for HeldRunner {
    fn start(
        &self,
        _registry: std::sync::Arc<loraforge_registry::Registry>,
        _job: &loraforge_registry::Job,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_job_is_cancelled_from_the_jobs_page_and_the_api() {
    let store = Store::new();
    let app = loraforge_web::WebApp::new(
        store.registry(),
        loraforge_web::WebOptions {
            token: Some(TOKEN.to_string()),
            ollama_host: "127.0.0.1:9".to_string(),
            runner: std::sync::Arc::new(HeldRunner),
        },
    )
    .router();
    let answer = post_json(
        &app,
        &format!("/api/v1/trained/{}/save", store.trained),
        json!({}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    let job = answer.json()["job"].as_str().unwrap().to_string();
    let page = get(&app, "/jobs").await.text();
    let cancel = format!(
        r#"<button type="button" data-action="cancel" data-stage="jobs" data-name="{job}">Cancel</button>"#
    );
    assert!(page.contains(&cancel), "{page}");
    assert!(page.contains(r#"<template id="tpl-cancel">"#));

    // Mutations need the token like every other.
    let anonymous = send(
        &app,
        request(Method::POST, &format!("/api/v1/jobs/{job}/cancel"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let cancelled = post_json(&app, &format!("/api/v1/jobs/{job}/cancel"), json!({})).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text());
    assert_eq!(cancelled.json()["state"], "cancelled");
    assert_eq!(
        store.registry().job(&job).unwrap().state,
        loraforge_registry::JobState::Cancelled
    );
    let page = get(&app, "/jobs").await.text();
    assert!(page.contains(r#"<td class="state">cancelled</td>"#));
    assert!(!page.contains(&cancel), "a final job has no Cancel button");
    // Cancelling again answers the final record; ids are checked before any lookup.
    let again = post_json(&app, &format!("/api/v1/jobs/{job}/cancel"), json!({})).await;
    assert_eq!(again.json()["state"], "cancelled");
    let bad = post_json(&app, "/api/v1/jobs/..%2Fx/cancel", json!({})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let unknown = post_json(
        &app,
        &format!("/api/v1/jobs/{}/cancel", uuid::Uuid::new_v4()),
        json!({}),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text());
}

#[tokio::test]
async fn a_public_address_needs_an_explicit_token() {
    let store = Store::new();
    let random = loraforge_web::WebApp::new(store.registry(), loraforge_web::WebOptions::default());
    let addr: std::net::SocketAddr = "0.0.0.0:0".parse().unwrap();
    let refused = random.clone().bind(addr).await.unwrap_err();
    assert!(matches!(
        refused,
        loraforge_web::WebError::PublicBindWithoutToken { .. }
    ));
    assert!(refused.is_user_error() && refused.hint().unwrap().contains("LORAFORGE_SERVE_TOKEN"));
    let loopback = random.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert!(loopback.url().contains("?token="));
    let explicit = store.app("127.0.0.1:9").bind(addr).await.unwrap();
    assert_ne!(explicit.local_addr().port(), 0);
}
