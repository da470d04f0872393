//! `loraforge serve`: the web UI over the store, with jobs run by detached worker processes.

use std::sync::Arc;

use std::path::PathBuf;

use loraforge_registry::{Job, Registry};
use loraforge_web::{JobRunner, WebApp, WebOptions};

use super::Context;
use crate::args::ServeArgs;
use crate::diagnostics::user_error;
use crate::output::{print_json, println_stdout};

/// Jobs started from the web UI run as `loraforge jobs run ID` worker processes, like
/// `trained save --background`: they outlive the server and `jobs cancel` stops only them.
struct WorkerProcesses {
    home: PathBuf,
    test_progress_delay_ms: Option<u64>,
}

impl JobRunner for WorkerProcesses {
    fn start(&self, registry: Arc<Registry>, job: &Job) -> std::io::Result<()> {
        super::jobs::spawn_worker(&self.home, &registry, job, self.test_progress_delay_ms)
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
    }
}

pub fn serve(context: &Context, args: ServeArgs) -> anyhow::Result<()> {
    let token = crate::env::serve_token().map_err(user_error)?;
    let ollama_host = crate::env::ollama_host(None).to_string();
    let registry = context.registry()?;
    let home = context.home()?;
    let app = WebApp::new(
        registry,
        WebOptions {
            token,
            ollama_host,
            runner: Arc::new(WorkerProcesses {
                home: home.clone(),
                test_progress_delay_ms: args.test_progress_delay_ms,
            }),
        },
    );
    super::deploy::runtime()?.block_on(async move {
        let server = app.bind(args.bind).await?;
        if context.json {
            print_json(&serde_json::json!({ "url": server.url(), "home": home }))?;
        } else {
            println_stdout(&server.url());
        }
        context.status(&format!(
            "loraforge web UI for the store at {} — open the address above; Ctrl-C stops it",
            home.display()
        ));
        server.run().await?;
        Ok::<(), anyhow::Error>(())
    })
}
