//! A store with one base and one trained model made from the demo generator, for the web tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use loraforge_registry::{BaseAddOptions, JobState, Registry};
use loraforge_web::{ThreadRunner, WebApp, WebOptions};

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct Store {
    pub dir: tempfile::TempDir,
    pub trained: String,
}

impl Store {
    pub fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let demo = loraforge_demo::generate(
            &dir.path().join("files"),
            &loraforge_demo::DemoSpec::default(),
        )
        .unwrap();
        let registry = Registry::open(&dir.path().join("store")).unwrap();
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
        let trained = registry
            .add_trained(&demo.trainer_dir, "tiny", "web run", None)
            .unwrap()
            .name;
        Store {
            dir,
            trained: trained.to_string(),
        }
    }

    pub fn registry(&self) -> Registry {
        Registry::open(&self.dir.path().join("store")).unwrap()
    }

    pub fn app(&self, ollama_host: &str) -> WebApp {
        WebApp::new(
            self.registry(),
            WebOptions {
                token: Some(TOKEN.to_string()),
                ollama_host: ollama_host.to_string(),
                runner: Arc::new(ThreadRunner),
            },
        )
    }

    /// Wait until a job is final (the store is the source of truth) and return its state.
    pub async fn wait_job(&self, id: &str) -> loraforge_registry::Job {
        let registry = self.registry();
        let start = Instant::now();
        loop {
            let job = registry.job(id).unwrap();
            if job.state.is_final() {
                return job;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "job {id} still {:?}",
                job.state
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn succeeded(job: &loraforge_registry::Job) -> String {
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "job failed: {:?}",
        job.error
    );
    job.result.clone().unwrap()
}
