//! `base`, `trained` and `saved` commands.

use loraforge_registry::{BaseAddOptions, EntryKind, Registry};

use super::Context;
use crate::args::{BaseCommand, SavedCommand, ShowArgs, TrainedCommand};
use crate::output::{print_json, println_stdout, table};

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
            if context.json {
                return print_json(&record);
            }
            println_stdout(&format!(
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
            ));
            Ok(())
        }
        BaseCommand::List => {
            let records = registry.bases()?;
            if context.json {
                return print_json(&records);
            }
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        r.technical_name.clone(),
                        r.architecture.clone().unwrap_or_default(),
                        if r.has_template {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                        r.model_dir.display().to_string(),
                    ]
                })
                .collect();
            println_stdout(&table(&["NAME", "ARCHITECTURE", "TEMPLATE", "PATH"], &rows));
            Ok(())
        }
        BaseCommand::Show(args) => show(context, &registry, EntryKind::Base, &args),
        BaseCommand::Rm { name, force } => {
            let record = registry.remove_base(&name, force)?;
            if context.json {
                return print_json(&record);
            }
            println_stdout(&format!("removed base model {name}"));
            Ok(())
        }
    }
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
            if context.json {
                return print_json(&record);
            }
            let which = match record.checkpoint {
                Some(step) => format!("checkpoint-{step}"),
                None => "final adapter".to_string(),
            };
            println_stdout(&format!(
                "registered trained model {} ({which})",
                record.name
            ));
            Ok(())
        }
        TrainedCommand::List => {
            let records = registry.trained_models()?;
            if context.json {
                return print_json(&records);
            }
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.base.clone(),
                        r.train_name.clone(),
                        r.date.to_string(),
                        if r.adapter_present {
                            "present".into()
                        } else {
                            "removed".into()
                        },
                    ]
                })
                .collect();
            println_stdout(&table(
                &["NAME", "BASE", "TRAIN NAME", "DATE", "ADAPTER"],
                &rows,
            ));
            Ok(())
        }
        TrainedCommand::Show(args) => show(context, &registry, EntryKind::Trained, &args),
        TrainedCommand::Rm { name, purge } => {
            if purge {
                registry.purge_trained(&name)?;
            } else {
                registry.remove_trained(&name)?;
            }
            if context.json {
                return print_json(&serde_json::json!({ "removed": name, "purged": purge }));
            }
            println_stdout(&format!(
                "removed the adapter files of {name}{}",
                if purge {
                    " and its record"
                } else {
                    "; saved models made from it are unaffected"
                }
            ));
            Ok(())
        }
        TrainedCommand::Save {
            name,
            background,
            dtype,
        } => super::jobs::save(context, &registry, &name, &dtype, background),
    }
}

pub fn saved(context: &Context, command: SavedCommand) -> anyhow::Result<()> {
    let registry = context.registry()?;
    match command {
        SavedCommand::List => {
            let records = registry.saved_models()?;
            if context.json {
                return print_json(&records);
            }
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    let bytes: u64 = r.files.iter().map(|f| f.bytes).sum();
                    vec![
                        r.name.clone(),
                        r.trained.clone(),
                        r.dtype.clone(),
                        format!("{:.1} MB", bytes as f64 / 1e6),
                        r.created.format("%Y-%m-%d %H:%M").to_string(),
                    ]
                })
                .collect();
            println_stdout(&table(
                &["NAME", "TRAINED", "DTYPE", "SIZE", "CREATED"],
                &rows,
            ));
            Ok(())
        }
        SavedCommand::Show(args) => show(context, &registry, EntryKind::Saved, &args),
        SavedCommand::Rm { name } => {
            let record = registry.remove_saved(&name)?;
            if context.json {
                return print_json(&record);
            }
            println_stdout(&format!(
                "removed saved model {name}; its deployments are unaffected"
            ));
            Ok(())
        }
        SavedCommand::Deploy(args) => super::deploy::deploy(context, &registry, args),
    }
}

/// `show NAME`: the card as JSON (`--json`), as Markdown (`--readme`), or the record summary.
pub fn show(
    context: &Context,
    registry: &Registry,
    kind: EntryKind,
    args: &ShowArgs,
) -> anyhow::Result<()> {
    if args.readme {
        println_stdout(&registry.card_readme(kind, &args.name)?);
        return Ok(());
    }
    if context.json {
        let card: serde_json::Value = serde_json::from_str(&registry.card_json(kind, &args.name)?)?;
        return print_json(&card);
    }
    let dir = registry.entry_dir(kind, &args.name)?;
    println_stdout(&registry.card_readme(kind, &args.name)?);
    println_stdout(&format!("\nfiles: {}", dir.display()));
    Ok(())
}
