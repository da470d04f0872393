//! `base`, `trained` and `saved` commands; `trained save` and `saved deploy` hand over to the
//! `jobs` and `deploy` modules (which depend on neither this module nor each other).

use loraforge_progress::Reporter;
use loraforge_registry::{BaseAddOptions, EntryKind, Registry};
use serde::Serialize;

use super::show::show;
use super::Context;
use crate::args::{BaseCommand, SavedCommand, TrainedCommand};
use crate::diagnostics::user_error;
use crate::output::table;

pub fn base(context: &Context, command: BaseCommand) -> anyhow::Result<()> {
    let registry = context.registry()?;
    match command {
        BaseCommand::Add {
            path,
            name,
            template,
            copy,
        } => {
            let record = registry.add_base(&path, &name, &BaseAddOptions { copy, template })?;
            context.emit(&record, |record| {
                format!(
                    "registered base model {} ({}, {})",
                    record.technical_name,
                    record
                        .architecture
                        .as_deref()
                        .unwrap_or("unknown architecture"),
                    if record.copied {
                        "copied into the store"
                    } else {
                        "referenced in place"
                    }
                )
            })
        }
        BaseCommand::List => context.emit(&registry.bases()?, |records| {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        r.technical_name.to_string(),
                        r.architecture.clone().unwrap_or_default(),
                        if r.has_template { "yes" } else { "no" }.into(),
                        r.model_dir.display().to_string(),
                    ]
                })
                .collect();
            table(&["NAME", "ARCHITECTURE", "TEMPLATE", "PATH"], &rows)
        }),
        BaseCommand::Show(args) => show(context, &registry, EntryKind::Base, &args),
        BaseCommand::Rm { name, force } => {
            let record = registry.remove_base(&name, force)?;
            context.emit(&record, |_| format!("removed base model {name}"))
        }
    }
}

/// What `trained rm --json` prints.
#[derive(Serialize)]
struct TrainedRemoved<'a> {
    removed: &'a str,
    purged: bool,
}

pub fn trained(context: &Context, command: TrainedCommand) -> anyhow::Result<()> {
    let registry = context.registry()?;
    match command {
        TrainedCommand::Add {
            path,
            base,
            train_name,
            checkpoint,
        } => {
            let record = registry.add_trained(&path, &base, &train_name, checkpoint)?;
            context.emit(&record, |record| {
                let which = match record.checkpoint {
                    Some(step) => format!("checkpoint-{step}"),
                    None => "final adapter".to_string(),
                };
                format!("registered trained model {} ({which})", record.name)
            })
        }
        TrainedCommand::List { all } => {
            let records: Vec<_> = registry
                .trained_models()?
                .into_iter()
                .filter(|r| all || r.adapter_present)
                .collect();
            context.emit(&records, |records| {
                let rows: Vec<Vec<String>> = records
                    .iter()
                    .map(|r| {
                        vec![
                            r.name.to_string(),
                            r.base.to_string(),
                            r.train_name.to_string(),
                            r.date.to_string(),
                            if r.adapter_present {
                                "present"
                            } else {
                                "removed"
                            }
                            .into(),
                        ]
                    })
                    .collect();
                table(&["NAME", "BASE", "TRAIN NAME", "DATE", "ADAPTER"], &rows)
            })
        }
        TrainedCommand::Show(args) => show(context, &registry, EntryKind::Trained, &args),
        TrainedCommand::Rm { name, purge } => {
            if purge {
                registry.purge_trained(&name)?;
            } else {
                registry.remove_trained(&name)?;
            }
            let removed = TrainedRemoved {
                removed: &name,
                purged: purge,
            };
            context.emit(&removed, |_| {
                format!(
                    "removed the adapter files of {name}{}",
                    if purge {
                        " and its record"
                    } else {
                        "; saved models made from it are unaffected"
                    }
                )
            })
        }
        TrainedCommand::Save {
            name,
            background,
            dtype,
            test_progress_delay_ms,
        } => super::jobs::save(
            context,
            &registry,
            &super::jobs::SaveArgs {
                trained: &name,
                dtype: &dtype,
                background,
                test_progress_delay_ms,
            },
        ),
        TrainedCommand::Export {
            name,
            out,
            gguf,
            outtype,
        } => {
            let gguf = match gguf {
                true => Some(
                    loraforge_export::ExportTarget::for_outtype(&outtype)
                        .ok_or_else(|| user_error(format!("unknown --outtype '{outtype}'")))?,
                ),
                false => None,
            };
            let reporter = context.reporter();
            let export = registry.export_trained(
                &name,
                &out,
                &loraforge_registry::TrainedExportOptions { gguf },
                &reporter,
            )?;
            reporter.finish();
            context.emit(&export, |e| {
                format!(
                    "exported {name} (lora) to {}: {}",
                    e.out_dir.display(),
                    e.files.join(", ")
                )
            })
        }
        TrainedCommand::Push(args) => super::hub::push_trained(context, &registry, args),
    }
}

pub fn saved(context: &Context, command: SavedCommand) -> anyhow::Result<()> {
    let registry = context.registry()?;
    match command {
        SavedCommand::List => context.emit(&registry.saved_models()?, |records| {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    let bytes: u64 = r.files.iter().map(|f| f.bytes).sum();
                    vec![
                        r.name.to_string(),
                        r.trained.to_string(),
                        r.dtype.clone(),
                        format!("{:.1} MB", bytes as f64 / 1e6),
                        r.created.format("%Y-%m-%d %H:%M").to_string(),
                    ]
                })
                .collect();
            table(&["NAME", "TRAINED", "DTYPE", "SIZE", "CREATED"], &rows)
        }),
        SavedCommand::Show(args) => show(context, &registry, EntryKind::Saved, &args),
        SavedCommand::Rm { name } => {
            let record = registry.remove_saved(&name)?;
            context.emit(&record, |_| {
                format!("removed saved model {name}; its deployments are unaffected")
            })
        }
        SavedCommand::Deploy(args) => super::deploy::deploy(context, &registry, args),
        SavedCommand::Verify { name } => {
            let reporter = context.reporter();
            let record = registry.verify_saved(&name, &reporter)?;
            reporter.finish();
            context.emit(&record.files, |files| {
                format!(
                    "saved model {name}: {} files, {} bytes, every SHA-256 as recorded",
                    files.len(),
                    files.iter().map(|f| f.bytes).sum::<u64>()
                )
            })
        }
        SavedCommand::Export {
            name,
            format,
            quant,
            out,
        } => {
            if format == "gguf" {
                return export_gguf(context, &registry, &name, &quant, &out);
            }
            if !quant.is_empty() {
                return Err(user_error("--quant goes with --format gguf".to_string()));
            }
            let format = match format.as_str() {
                "merged_4bit" => loraforge_registry::SavedExportFormat::Merged4bit,
                _ => loraforge_registry::SavedExportFormat::Merged16bit,
            };
            let reporter = context.reporter();
            let export = registry.export_saved(&name, format, &out, &reporter)?;
            reporter.finish();
            context.emit(&export, |e| {
                format!(
                    "exported {name} ({}) to {}: {}",
                    e.save_method,
                    e.out_dir.display(),
                    e.files.join(", ")
                )
            })
        }
        SavedCommand::Push(args) => super::hub::push_saved(context, &registry, args),
    }
}

/// `saved export NAME --format gguf --quant A,B,… --out DIR`.
fn export_gguf(
    context: &Context,
    registry: &Registry,
    name: &str,
    quant: &[String],
    out: &std::path::Path,
) -> anyhow::Result<()> {
    if quant.is_empty() {
        return Err(user_error(
            "--format gguf needs --quant TYPE[,TYPE…] (e.g. q4_K_M,q5_K_M,q8_0)".to_string(),
        ));
    }
    let quants = quant
        .iter()
        .map(|q| q.parse::<loraforge_naming::QuantType>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| user_error(e.to_string()))?;
    let reporter = context.reporter();
    let files = registry.export_saved_gguf(name, &quants, out, &reporter)?;
    reporter.finish();
    context.emit(&files, |files| {
        let mut text = format!("exported {name} as GGUF to {}:", out.display());
        for f in files {
            text.push_str(&format!(
                "\n  {} ({}, {} bytes, sha256 {})",
                f.path.display(),
                f.file_type,
                f.bytes,
                f.sha256
            ));
        }
        text
    })
}
