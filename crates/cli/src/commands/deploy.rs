//! `saved deploy` and `deployed …`.

use loraforge_registry::{DeployOptions, DeployedRecord, DeployedStatus, EntryKind, Registry};
use serde::Serialize;

use super::show::show;
use super::Context;
use crate::args::{DeployArgs, DeployedCommand};
use crate::diagnostics::user_error;
use crate::output::table;

/// The async runtime for the Ollama calls (the rest of the CLI is synchronous).
pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

pub fn deploy(context: &Context, registry: &Registry, args: DeployArgs) -> anyhow::Result<()> {
    let quant: loraforge_naming::QuantType = args
        .quant
        .parse()
        .map_err(|e: loraforge_naming::NameError| user_error(e.to_string()))?;
    let options = DeployOptions {
        host: crate::env::ollama_host(args.host.as_deref()),
        server_quantize: args.server_quantize,
        smoke_test: args.smoke_test,
        stall_timeout: args.stall_timeout.map(std::time::Duration::from_secs),
    };
    let reporter = context.reporter();
    let record = runtime()?.block_on(registry.deploy(&args.name, quant, &options, &reporter))?;
    drop(reporter);
    context.emit(&record, |record| {
        let mut text = format!(
            "deployed {} to {}\n  upload digest (GGUF sent): {}\n",
            record.name, record.host, record.digest
        );
        if let Some(d) = &record.model_digest {
            text.push_str(&format!("  model digest (ollama list): {d}\n"));
        }
        if let Some(d) = &record.model_layer_digest {
            text.push_str(&format!(
                "  model layer digest (stored by the server): {d}\n"
            ));
        }
        for note in &record.notes {
            text.push_str(&format!("note: {note}\n"));
        }
        text.push_str(&format!("run it: ollama run {}", record.ollama_model));
        text
    })
}

/// One row of `deployed list`: the record, plus the server's answer with `--check`.
#[derive(Serialize)]
struct DeployedRow {
    #[serde(flatten)]
    record: DeployedRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<DeployedStatus>,
}

pub fn deployed(context: &Context, command: DeployedCommand) -> anyhow::Result<()> {
    let registry = context.registry()?;
    match command {
        DeployedCommand::List { check } => {
            let rows: Vec<DeployedRow> = if check {
                runtime()?
                    .block_on(registry.check_deployed())?
                    .into_iter()
                    .map(|(record, status)| DeployedRow {
                        record,
                        status: Some(status),
                    })
                    .collect()
            } else {
                registry
                    .deployed_models()?
                    .into_iter()
                    .map(|record| DeployedRow {
                        record,
                        status: None,
                    })
                    .collect()
            };
            context.emit(&rows, |rows| {
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|DeployedRow { record: r, status }| {
                        vec![
                            r.name.to_string(),
                            r.quant.to_string(),
                            r.host.clone(),
                            status
                                .map(|s| format!("{s:?}").to_lowercase())
                                .unwrap_or_else(|| "-".into()),
                            r.created.format("%Y-%m-%d %H:%M").to_string(),
                        ]
                    })
                    .collect();
                table(&["NAME", "QUANT", "HOST", "STATUS", "DEPLOYED"], &cells)
            })
        }
        DeployedCommand::Show(args) => show(context, &registry, EntryKind::Deployed, &args),
        DeployedCommand::Rm { name, forget } => {
            let record = runtime()?.block_on(registry.remove_deployed(&name, forget))?;
            context.emit(&record, |record| {
                format!("removed {name} from {} and forgot it", record.host)
            })
        }
    }
}
