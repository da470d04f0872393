//! Measures hashing and blob-upload throughput against the in-process fake Ollama server.
//!
//! `cargo run --release -p loraforge-ollama-client --example upload_throughput -- [MiB]`
//! (default 256 MiB). The file is written to a temp dir, hashed once, uploaded once, and deployed
//! a second time to show the HEAD skip. Prints MiB/s per step.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Instant;

use loraforge_ollama_client::{deploy_gguf, sha256_file, Client, Modelfile};
use loraforge_progress::NoProgress;

#[tokio::main]
async fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut block = vec![0u8; 1 << 20];
        block[..4].copy_from_slice(b"GGUF");
        for i in 0..mib {
            block[4] = i as u8;
            f.write_all(&block).unwrap();
        }
    }
    let bytes = (mib as f64) * 1.0;
    let fake = ollama_fake::FakeOllama::start().await.unwrap();
    let client = Client::for_host(&fake.url()).unwrap();

    let t = Instant::now();
    let digest = sha256_file(&path, &NoProgress).await.unwrap();
    let hash_s = t.elapsed().as_secs_f64();
    println!(
        "hash    {mib} MiB in {hash_s:.3} s = {:.0} MiB/s",
        bytes / hash_s
    );

    let template = Modelfile::parse("TEMPLATE {{ .Prompt }}\nPARAMETER stop </s>\n").unwrap();
    let t = Instant::now();
    let out = deploy_gguf(
        &client,
        "bench",
        &path,
        Some(&digest),
        &template,
        &[],
        &NoProgress,
    )
    .await
    .unwrap();
    let up_s = t.elapsed().as_secs_f64();
    assert!(out.uploaded);
    println!(
        "deploy  {mib} MiB (upload + server-side sha256 + create + show) in {up_s:.3} s = {:.0} MiB/s",
        bytes / up_s
    );

    let t = Instant::now();
    let again = deploy_gguf(
        &client,
        "bench2",
        &path,
        Some(&digest),
        &template,
        &[],
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(!again.uploaded);
    println!(
        "redeploy (HEAD 200, no upload) in {:.3} s",
        t.elapsed().as_secs_f64()
    );
}
