//! Opt-in: runs against a real Ollama when `LORAFORGE_TEST_OLLAMA_HOST` is set (any
//! `OLLAMA_HOST` form). Deploys the tiny llama-3 GGUF fixture, runs one generate, deletes it.
//! Without the variable it prints a note and passes.

use loraforge_ollama_client::{
    deploy_gguf, Client, ClientOptions, GenerateRequest, Modelfile, OllamaHost,
};
use loraforge_progress::NoProgress;
use serde_json::json;

use crate::common::{fixture, recorded_digest};

/// Opt-in variable of this test: when set, it runs against this real Ollama server.
const TEST_OLLAMA_HOST_ENV: &str = "LORAFORGE_TEST_OLLAMA_HOST";

#[tokio::test]
async fn deploy_and_generate_on_a_real_ollama() {
    let Ok(host) = std::env::var(TEST_OLLAMA_HOST_ENV) else {
        eprintln!("note: {TEST_OLLAMA_HOST_ENV} is not set; skipping the real-Ollama deploy test");
        return;
    };
    let client = Client::new(ClientOptions::with_host(OllamaHost::parse(&host))).unwrap();
    let version = client.version().await.unwrap();
    eprintln!("real Ollama {version} at {}", client.base_url());

    let name = "loraforge-test-tiny-llama3:f16";
    let template =
        Modelfile::parse(&std::fs::read_to_string(fixture("llama3-deploy.Modelfile")).unwrap())
            .unwrap();
    let known = recorded_digest("tiny-llama3-f16.gguf");
    let out = deploy_gguf(
        &client,
        name,
        &fixture("tiny-llama3-f16.gguf"),
        Some(&known),
        &template,
        &["<|end_of_text|>".to_owned()],
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(out.upload_digest, known);
    eprintln!(
        "upload digest {}, model digest {:?}, model layer digest {:?}, notes {:?}",
        out.upload_digest, out.model_digest, out.model_layer_digest, out.notes
    );
    assert!(out.show.template.contains("<|start_header_id|>"));
    assert!(client
        .list()
        .await
        .unwrap()
        .models
        .iter()
        .any(|m| m.name == name));

    let gen = client
        .generate(&GenerateRequest {
            model: name.to_owned(),
            prompt: "hi".to_owned(),
            options: json!({"num_predict": 1, "temperature": 0})
                .as_object()
                .unwrap()
                .clone(),
            keep_alive: Some(json!(0)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(gen.done);

    client.delete(name).await.unwrap();
    assert!(client.delete(name).await.unwrap_err().is_not_found());
}
