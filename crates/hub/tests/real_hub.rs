//! Opt-in: a push to the real Hugging Face Hub. Runs only when `LORAFORGE_TEST_HF_TOKEN` holds a
//! token with write access (`LORAFORGE_TEST_HF_ENDPOINT` may name another Hub); it creates a
//! private repository under the token's user, pushes a small folder (one regular file, one LFS
//! file), pushes it again (nothing sent), and deletes the repository whatever happened.
#![allow(clippy::unwrap_used)]

use loraforge_hub::{
    ClientOptions, Endpoint, HubClient, PushFile, PushOutcome, PushRequest, RepoId, Token,
    Transfer, DEFAULT_ENDPOINT,
};
use loraforge_progress::NoProgress;

const TOKEN_ENV: &str = "LORAFORGE_TEST_HF_TOKEN";
const ENDPOINT_ENV: &str = "LORAFORGE_TEST_HF_ENDPOINT";

#[tokio::test]
async fn push_to_the_real_hub_then_delete() {
    let Some(token) = std::env::var(TOKEN_ENV).ok().and_then(|t| Token::new(&t)) else {
        eprintln!("note: {TOKEN_ENV} is not set; skipping the real-Hub push");
        return;
    };
    let endpoint = std::env::var(ENDPOINT_ENV).unwrap_or_else(|_| DEFAULT_ENDPOINT.to_owned());
    let client = HubClient::new(
        Endpoint::parse(&endpoint).unwrap(),
        Some(token),
        ClientOptions::default(),
    )
    .unwrap();
    let user = client.whoami().await.unwrap();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let repo: RepoId = format!("{user}/loraforge-test-{stamp}-{}", std::process::id())
        .parse()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, br#"{"model_type": "llama"}"#).unwrap();
    let weights = dir.path().join("model.safetensors");
    let bytes: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&weights, &bytes).unwrap();
    let mut request = PushRequest::new(
        repo.clone(),
        vec![
            PushFile::new("config.json", &config),
            PushFile::new("model.safetensors", &weights),
        ],
    );
    request.private = true;

    let first = client.push(&request, &NoProgress).await;
    let second = match &first {
        Ok(_) => Some(client.push(&request, &NoProgress).await),
        Err(_) => None,
    };
    let deleted = client.delete_repo(&repo).await;

    let first: PushOutcome = first.unwrap();
    assert!(first.committed && first.created_repo);
    let weights_file = first
        .files
        .iter()
        .find(|f| f.path == "model.safetensors")
        .unwrap();
    assert!(weights_file.lfs);
    let second = second.unwrap().unwrap();
    assert!(!second.committed);
    assert_eq!(second.bytes_sent, 0);
    assert!(second
        .files
        .iter()
        .all(|f| f.transfer == Transfer::Unchanged));
    deleted.unwrap();
}
