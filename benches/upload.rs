//! Deploy's blob upload to a loopback server (issue 17: ≥ 1 GB/s), and what a recorded SHA-256
//! saves.
//!
//! A `LORAFORGE_BENCH_UPLOAD_MB`-sized file (default 2048) is uploaded with the Ollama client's
//! `push_blob` to an in-process server on 127.0.0.1 that answers `HEAD /api/blobs/…` with 404
//! and reads and discards the `POST` body: the figure is the client's sending rate (the real
//! server also hashes what it receives; that is its cost, not ours). In the same run:
//! - reading the same file from the page cache (the floor a sender cannot beat),
//! - `sha256_file`, what the upload would cost on top if the digest recorded by the store were
//!   computed again (`push_blob` with a known digest never hashes).
//!
//! `cargo bench -p loraforge-benches --bench upload`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "measure.rs"]
#[allow(dead_code)]
mod measure;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::head;
use loraforge_ollama_client::{sha256_file, Client, ClientOptions, OllamaHost};
use loraforge_progress::NoProgress;

const ROUNDS: usize = 3;

/// Writes `megabytes` MiB of incompressible bytes (one random MiB repeated with a counter, so no
/// two MiB are equal).
fn make_file(path: &Path, megabytes: usize) {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    for chunk in block.chunks_exact_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..megabytes {
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
}

/// A sink for blob uploads: HEAD says "not here", POST reads the body and counts it.
async fn start_sink(received: Arc<AtomicU64>) -> std::net::SocketAddr {
    async fn upload(State(received): State<Arc<AtomicU64>>, body: Body) -> StatusCode {
        use futures_util::StreamExt as _;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                Err(_) => return StatusCode::BAD_REQUEST,
            }
        }
        StatusCode::CREATED
    }
    let app = axum::Router::new()
        .route(
            "/api/blobs/{digest}",
            head(|| async { StatusCode::NOT_FOUND }).post(upload),
        )
        .with_state(received);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn read_file(path: &Path) -> Duration {
    let start = Instant::now();
    let mut file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    while file.read(&mut buf).unwrap() > 0 {}
    start.elapsed()
}

fn gbps(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64() / 1e9
}

fn main() {
    let megabytes = measure::env_usize("LORAFORGE_BENCH_UPLOAD_MB", 2048);
    let (_guard, dir) = measure::work_dir("upload");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("blob.gguf");
    if std::fs::metadata(&path).map(|m| m.len()).ok() != Some((megabytes as u64) << 20) {
        make_file(&path, megabytes);
    }
    let bytes = std::fs::metadata(&path).unwrap().len();
    read_file(&path); // warm the page cache

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let addr = runtime.block_on(start_sink(received.clone()));
    let client = Client::new(ClientOptions::with_host(OllamaHost::parse(
        &addr.to_string(),
    )))
    .unwrap();
    // The digest the store recorded when it wrote the file; the sink does not check it.
    let recorded = format!("sha256:{}", "ab".repeat(32));

    let (mut read_best, mut upload_best, mut hash_best) =
        (Duration::MAX, Duration::MAX, Duration::MAX);
    for round in 0..ROUNDS {
        let read = read_file(&path);
        received.store(0, Ordering::Relaxed);
        let start = Instant::now();
        let upload = runtime
            .block_on(client.push_blob(&path, Some(&recorded), &NoProgress))
            .unwrap();
        let upload_time = start.elapsed();
        assert!(upload.uploaded && upload.bytes_sent == bytes, "{upload:?}");
        assert_eq!(received.load(Ordering::Relaxed), bytes);
        let start = Instant::now();
        runtime.block_on(sha256_file(&path, &NoProgress)).unwrap();
        let hash_time = start.elapsed();
        println!(
            "round {round}: read {:.2} GB/s | upload {:.2} GB/s ({:.2} s) = {:.2}x the read time | sha256 {:.2} GB/s ({:.2} s)",
            gbps(bytes, read),
            gbps(bytes, upload_time),
            upload_time.as_secs_f64(),
            upload_time.as_secs_f64() / read.as_secs_f64(),
            gbps(bytes, hash_time),
            hash_time.as_secs_f64(),
        );
        read_best = read_best.min(read);
        upload_best = upload_best.min(upload_time);
        hash_best = hash_best.min(hash_time);
    }
    println!(
        "best of {ROUNDS}, {:.2} GB file: upload {:.2} GB/s (target >= 1 GB/s), {:.2}x the page-cache read ({:.2} GB/s); \
         hashing it again would add {:.2} s ({:.2} GB/s), {:.0}% of the upload time",
        bytes as f64 / 1e9,
        gbps(bytes, upload_best),
        upload_best.as_secs_f64() / read_best.as_secs_f64(),
        gbps(bytes, read_best),
        hash_best.as_secs_f64(),
        gbps(bytes, hash_best),
        100.0 * hash_best.as_secs_f64() / upload_best.as_secs_f64(),
    );
}
