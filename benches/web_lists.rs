//! Server time of the web UI's list pages with a large store (issue 16: 10,000 entries in under
//! 200 ms, paged beyond `PAGE_SIZE` rows).
//!
//! Builds a real on-disk store (the demo base, one trained model registered the normal way), then
//! clones that trained entry's folder `LORAFORGE_BENCH_ENTRIES` times (default 10,000) with fresh
//! names and UUIDs, and times the router answering — no sockets, so the figure is server time:
//! reading every record, sorting, rendering. Each request is repeated and the best and median runs
//! are printed.
//!
//! `cargo bench -p loraforge-benches --bench web_lists`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "measure.rs"]
#[allow(dead_code)]
mod measure;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use loraforge_registry::{BaseAddOptions, Registry};
use loraforge_web::{ThreadRunner, WebApp, WebOptions};
use tower::ServiceExt as _;

const TOKEN: &str = "bench-token-0123456789abcdef";
const REPEATS: usize = 7;

/// Makes `count` more trained entries next to `template` (an entry folder), each a copy of it
/// under a new name and UUID, the way `trained add` would have named them.
fn clone_trained(store: &Path, template: &str, count: usize) {
    let trained = store.join("trained");
    let entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(trained.join(template).join("entry.json")).unwrap())
            .unwrap();
    let card = std::fs::read(trained.join(template).join("card.json")).unwrap();
    let base = entry["base"].as_str().unwrap().to_string();
    let date = entry["date"].as_str().unwrap().replace('-', "");
    for i in 0..count {
        let uuid = uuid::Uuid::new_v4();
        let train = format!("run-{i:05}");
        let name = format!("{base}_{train}_{date}_{}", &uuid.simple().to_string()[..4]);
        let mut record = entry.clone();
        record["name"] = name.clone().into();
        record["uuid"] = uuid.to_string().into();
        record["train_name"] = train.into();
        let dir = trained.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("entry.json"),
            serde_json::to_vec_pretty(&record).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("card.json"), &card).unwrap();
    }
}

/// The best and median wall time of `REPEATS` answers to `GET path`, and the body size.
async fn time_get(app: &WebApp, path: &str) -> (Duration, Duration, usize) {
    let router = app.router();
    let mut times = Vec::with_capacity(REPEATS);
    let mut size = 0;
    for _ in 0..REPEATS {
        let request = Request::get(path)
            .header(header::HOST, "127.0.0.1:8765")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let start = Instant::now();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        times.push(start.elapsed());
        size = body.len();
    }
    times.sort();
    (times[0], times[REPEATS / 2], size)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let entries = measure::env_usize("LORAFORGE_BENCH_ENTRIES", 10_000);
    let (_guard, dir) = measure::work_dir("web_lists");
    let store = dir.join("store");
    if store.exists() {
        std::fs::remove_dir_all(&store).unwrap();
    }
    let demo =
        loraforge_demo::generate(&dir.join("files"), &loraforge_demo::DemoSpec::default()).unwrap();
    let registry = Registry::open(&store).unwrap();
    registry
        .add_base(
            &demo.base_dir,
            "tiny",
            &BaseAddOptions {
                copy: false,
                template: Some(demo.template.clone()),
            },
        )
        .unwrap();
    let first = registry
        .add_trained(&demo.trainer_dir, "tiny", "bench run", None)
        .unwrap()
        .name
        .to_string();
    let start = Instant::now();
    clone_trained(&store, &first, entries.saturating_sub(1));
    eprintln!(
        "store with {entries} trained entries built in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let app = WebApp::new(
        Registry::open(&store).unwrap(),
        WebOptions {
            token: Some(TOKEN.to_string()),
            ollama_host: "127.0.0.1:11434".to_string(),
            runner: Arc::new(ThreadRunner),
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("| request ({entries} trained entries) | best ms | median ms | body KiB |");
    println!("|---|---|---|---|");
    for path in [
        "/trained",
        "/trained?page=2",
        "/api/v1/trained",
        "/",
        "/saved",
    ] {
        let (best, median, size) = runtime.block_on(time_get(&app, path));
        println!(
            "| GET {path} | {:.1} | {:.1} | {} |",
            best.as_secs_f64() * 1e3,
            median.as_secs_f64() * 1e3,
            size / 1024
        );
    }
}
