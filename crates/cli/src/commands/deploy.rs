//! `saved deploy` and `deployed …`.

use loraforge_registry::{DeployOptions, EntryKind, Registry};

use super::Context;
use crate::args::{DeployArgs, DeployedCommand};
use crate::output::{print_json, println_stdout, table, user_error};

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
        host: args.host,
        server_quantize: args.server_quantize,
        smoke_test: args.smoke_test,
    };
    let reporter = context.reporter();
    let record = runtime()?.block_on(registry.deploy(&args.name, quant, &options, &reporter))?;
    drop(reporter);
    if context.json {
        return print_json(&record);
    }
    println_stdout(&format!(
        "deployed {} to {} (digest {})\nrun it: ollama run {}",
        record.name, record.host, record.digest, record.ollama_model
    ));
    Ok(())
}

pub fn deployed(context: &Context, command: DeployedCommand) -> anyhow::Result<()> {
    let registry = context.registry()?;
    match command {
        DeployedCommand::List { check } => {
            let rows_data: Vec<(
                loraforge_registry::DeployedRecord,
                Option<loraforge_registry::DeployedStatus>,
            )> = if check {
                runtime()?
                    .block_on(registry.check_deployed())?
                    .into_iter()
                    .map(|(r, s)| (r, Some(s)))
                    .collect()
            } else {
                registry
                    .deployed_models()?
                    .into_iter()
                    .map(|r| (r, None))
                    .collect()
            };
            if context.json {
                let items: Vec<serde_json::Value> = rows_data
                    .iter()
                    .map(|(record, status)| {
                        let mut value = serde_json::to_value(record).unwrap_or_default();
                        if let (Some(status), Some(object)) = (status, value.as_object_mut()) {
                            object.insert(
                                "status".into(),
                                serde_json::to_value(status).unwrap_or_default(),
                            );
                        }
                        value
                    })
                    .collect();
                return print_json(&items);
            }
            let rows: Vec<Vec<String>> = rows_data
                .iter()
                .map(|(r, status)| {
                    vec![
                        r.name.clone(),
                        r.quant.clone(),
                        r.host.clone(),
                        status
                            .map(|s| format!("{s:?}").to_lowercase())
                            .unwrap_or_else(|| "-".into()),
                        r.created.format("%Y-%m-%d %H:%M").to_string(),
                    ]
                })
                .collect();
            println_stdout(&table(
                &["NAME", "QUANT", "HOST", "STATUS", "DEPLOYED"],
                &rows,
            ));
            Ok(())
        }
        DeployedCommand::Show(args) => {
            super::models::show(context, &registry, EntryKind::Deployed, &args)
        }
        DeployedCommand::Rm { name, forget } => {
            let record = runtime()?.block_on(registry.remove_deployed(&name, forget))?;
            if context.json {
                return print_json(&record);
            }
            println_stdout(&format!(
                "removed {name} from {} and forgot it",
                record.host
            ));
            Ok(())
        }
    }
}
