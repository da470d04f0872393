//! The product's flow in a real headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`; `./dev.sh test` installs them): list → Save → confirm → job progress → new
//! saved entry → Deploy q4_K_M to the in-process fake Ollama → deployed entry → Delete.
//!
//! Without chromedriver on PATH this test FAILS with what to install; set
//! `LORAFORGE_SKIP_BROWSER_TESTS=1` to skip it knowingly. With `LORAFORGE_SCREENSHOTS=DIR` it
//! saves a screenshot of each page into DIR (the README's pictures come from `docs/screenshots`).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Store, TOKEN};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver(program: &PathBuf) -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let driver = Driver { child, port };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    driver
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let binary = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(find_on_path)
        .expect("chromedriver is installed but no chromium: apt-get install chromium");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": binary,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    // chromedriver listens on loopback: plain HTTP, no TLS stack needed.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .unwrap()
}

async fn screenshot(client: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("LORAFORGE_SCREENSHOTS") {
        let png = client.screenshot().await.unwrap();
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

/// Wait for an element and return it.
async fn element(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} within {WAIT:?}: {e}"))
}

/// Wait until an element is gone.
async fn gone(client: &Client, css: &str) {
    let start = Instant::now();
    while !client.find_all(Locator::Css(css)).await.unwrap().is_empty() {
        assert!(start.elapsed() < WAIT, "{css} still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Confirm the open dialog after checking it says `expect`.
async fn confirm(client: &Client, expect: &[&str]) {
    let dialog = element(client, "dialog[open]").await;
    let text = dialog.text().await.unwrap();
    for piece in expect {
        assert!(
            text.contains(piece),
            "the dialog does not say {piece:?}: {text}"
        );
    }
    element(client, "dialog[open] [data-confirm]")
        .await
        .click()
        .await
        .unwrap();
}

/// Wait for the live panel of the newest job to say `succeeded`, and return the job id.
async fn job_succeeds(client: &Client) -> String {
    let panel = element(client, "#live-jobs .job-panel").await;
    let id = panel.attr("data-job").await.unwrap().unwrap();
    let done = format!(r#"#live-jobs [data-job="{id}"][data-state="succeeded"]"#);
    let start = Instant::now();
    while client
        .find_all(Locator::Css(&done))
        .await
        .unwrap()
        .is_empty()
    {
        let failed = format!(r#"#live-jobs [data-job="{id}"][data-state="failed"]"#);
        if let Ok(panel) = client.find(Locator::Css(&failed)).await {
            panic!("job {id} failed: {}", panel.text().await.unwrap());
        }
        assert!(start.elapsed() < WAIT, "job {id} did not succeed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = element(client, &format!("{done} .state"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(state, "succeeded");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_deploy_delete_in_a_real_browser() {
    let Some(chromedriver) = find_on_path("chromedriver") else {
        if std::env::var_os("LORAFORGE_SKIP_BROWSER_TESTS").is_some() {
            eprintln!("LORAFORGE_SKIP_BROWSER_TESTS is set: browser test skipped");
            return;
        }
        panic!(
            "chromedriver is not on PATH: install Debian's chromium and chromium-driver \
             (`./dev.sh test` does: apt-get install chromium chromium-driver), or set \
             LORAFORGE_SKIP_BROWSER_TESTS=1 to skip the browser test knowingly"
        );
    };
    let fake = ollama_fake::FakeOllama::start().await.unwrap();
    let store = Store::new();
    let server = store
        .app("127.0.0.1:9")
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    let url = server.url();
    assert!(url.ends_with(&format!("?token={TOKEN}")));
    tokio::spawn(server.run());
    let driver = start_driver(&chromedriver);
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;

    // The printed address trades the token for a cookie and lands on the overview.
    client.goto(&url).await.unwrap();
    assert_eq!(
        client.current_url().await.unwrap().as_str(),
        format!("{base}/")
    );
    element(&client, r#"[data-count="trained"]"#).await;
    screenshot(&client, "overview").await;

    // Trained → Save → the dialog shows the generated parameters → OK → job → succeeded.
    client.goto(&format!("{base}/trained")).await.unwrap();
    let row = format!(r#"tr[data-name="{}"]"#, store.trained);
    screenshot(&client, "trained").await;
    element(&client, &format!(r#"{row} [data-action="save"]"#))
        .await
        .click()
        .await
        .unwrap();
    element(&client, r#"dialog[open] select[name="dtype"]"#).await;
    screenshot(&client, "save-dialog").await;
    confirm(
        &client,
        &[&format!("{}_s_xxxx", store.trained), "auto", "background"],
    )
    .await;
    let save_job = job_succeeds(&client).await;

    // The new saved entry is on the Saved page.
    client.goto(&format!("{base}/saved")).await.unwrap();
    let saved_row = element(
        &client,
        &format!(r#"tr[data-name^="{}_s_"]"#, store.trained),
    )
    .await;
    let saved = saved_row.attr("data-name").await.unwrap().unwrap();
    assert_eq!(common::succeeded(&store.wait_job(&save_job).await), saved);

    // Deploy q4_K_M to the fake Ollama.
    let saved_sel = format!(r#"tr[data-name="{saved}"]"#);
    element(&client, &format!(r#"{saved_sel} [data-action="deploy"]"#))
        .await
        .click()
        .await
        .unwrap();
    element(
        &client,
        r#"dialog[open] select[name="quant"] option[value="q4_K_M"]"#,
    )
    .await
    .click()
    .await
    .unwrap();
    let host = element(&client, r#"dialog[open] input[name="host"]"#).await;
    host.clear().await.unwrap();
    host.send_keys(&fake.url()).await.unwrap();
    screenshot(&client, "deploy-dialog").await;
    confirm(&client, &["Quantization", "Ollama host", "_d_xxxx_q4_K_M"]).await;
    let deploy_job = job_succeeds(&client).await;
    assert_eq!(fake.model_names().len(), 1, "the model is in Ollama");

    client.goto(&format!("{base}/deployed")).await.unwrap();
    let deployed_row = element(&client, &format!(r#"tr[data-name^="{saved}_d_"]"#)).await;
    let deployed = deployed_row.attr("data-name").await.unwrap().unwrap();
    assert!(deployed.ends_with("_q4_K_M"), "{deployed}");
    screenshot(&client, "deployed").await;

    // Jobs: both succeeded, in words.
    client.goto(&format!("{base}/jobs")).await.unwrap();
    for id in [&save_job, &deploy_job] {
        let state = element(&client, &format!(r#"tr[data-name="{id}"] .state"#)).await;
        assert_eq!(state.text().await.unwrap(), "succeeded");
    }
    screenshot(&client, "jobs").await;

    // The entry's page: card, lineage links, files with checksums.
    client.goto(&format!("{base}/saved/{saved}")).await.unwrap();
    element(
        &client,
        &format!(r#"ol.lineage a[href="/trained/{}"]"#, store.trained),
    )
    .await;
    element(&client, "table.files code.sha").await;
    screenshot(&client, "saved-card").await;

    // Delete the saved model: the dialog states the semantics; the row goes; the deployment stays.
    client.goto(&format!("{base}/saved")).await.unwrap();
    screenshot(&client, "saved").await;
    element(&client, &format!(r#"{saved_sel} [data-action="delete"]"#))
        .await
        .click()
        .await
        .unwrap();
    confirm(
        &client,
        &[
            "Removes this saved model's folder",
            "Deployments made from it stay",
        ],
    )
    .await;
    gone(&client, &saved_sel).await;
    assert!(store.registry().saved_models().unwrap().is_empty());
    client.goto(&format!("{base}/deployed")).await.unwrap();
    element(&client, &format!(r#"tr[data-name="{deployed}"]"#)).await;

    // Cancel closes a dialog without doing anything (keyboard: Escape does too).
    client.goto(&format!("{base}/deployed")).await.unwrap();
    element(
        &client,
        &format!(r#"tr[data-name="{deployed}"] [data-action="delete"]"#),
    )
    .await
    .click()
    .await
    .unwrap();
    element(&client, "dialog[open] [data-cancel]")
        .await
        .click()
        .await
        .unwrap();
    gone(&client, "dialog[open]").await;
    assert_eq!(fake.model_names().len(), 1);

    // A job nobody runs yet (queued from outside the page) is cancelled from the Jobs page.
    let queued = store
        .registry()
        .queue_save(&store.trained, "auto")
        .unwrap()
        .id;
    client.goto(&format!("{base}/jobs")).await.unwrap();
    let queued_row = format!(r#"tr[data-name="{queued}"]"#);
    element(&client, &format!(r#"{queued_row} [data-action="cancel"]"#))
        .await
        .click()
        .await
        .unwrap();
    confirm(&client, &["Cancel job", "never starts"]).await;
    element(&client, &format!(r#"{queued_row}[data-state="cancelled"]"#)).await;
    gone(&client, &format!(r#"{queued_row} [data-action="cancel"]"#)).await;
    assert_eq!(
        store.registry().job(&queued).unwrap().state,
        loraforge_registry::JobState::Cancelled
    );
    screenshot(&client, "job-cancelled").await;

    client.close().await.unwrap();
}
