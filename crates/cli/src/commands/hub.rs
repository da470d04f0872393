//! `trained push` and `saved push`: resolve the Hub endpoint and token from the environment,
//! then let the registry push.

use anyhow::Context as _;
use loraforge_hub::{ClientOptions, Endpoint, HubClient, RepoId};
use loraforge_registry::{HubPushOptions, HubPushRecord, Registry, SavedPushFormat};

use super::deploy::runtime;
use super::Context;
use crate::args::{HubArgs, SavedPushArgs, TrainedPushArgs};
use crate::diagnostics::user_error;
use crate::output::{print_json, println_stdout};

/// The client and options for `args`: `HF_ENDPOINT` (default the public Hub), the token.
fn prepare(context: &Context, args: HubArgs) -> anyhow::Result<(HubClient, HubPushOptions)> {
    let repo = RepoId::parse(&args.repo_id)?;
    let endpoint = Endpoint::parse(&crate::env::hub_endpoint())?;
    let (token, source) = loraforge_hub::require_token(&crate::env::hub_token_inputs(args.token))?;
    context.status(&format!(
        "pushing to {endpoint} with the token from {source}"
    ));
    let client = HubClient::new(endpoint, Some(token), ClientOptions::default())?;
    let options = HubPushOptions {
        repo,
        revision: args.revision,
        private: args.private,
    };
    Ok((client, options))
}

pub fn push_trained(
    context: &Context,
    registry: &Registry,
    args: TrainedPushArgs,
) -> anyhow::Result<()> {
    let name = args.name;
    let gguf = match args.gguf {
        true => Some(
            loraforge_export::ExportTarget::for_outtype(&args.outtype)
                .ok_or_else(|| user_error(format!("unknown --outtype '{}'", args.outtype)))?,
        ),
        false => None,
    };
    let (client, options) = prepare(context, args.hub)?;
    let reporter = context.reporter();
    let record = runtime()?
        .block_on(registry.push_trained(&name, &client, &options, gguf, &reporter))
        .with_context(|| format!("cannot push {name} to {}", options.repo))?;
    drop(reporter);
    report(context, &name, &record)
}

pub fn push_saved(
    context: &Context,
    registry: &Registry,
    args: SavedPushArgs,
) -> anyhow::Result<()> {
    let name = args.name;
    let format = match args.format.as_str() {
        "merged_16bit" | "merged_4bit" if !args.quant.is_empty() => {
            return Err(user_error("--quant goes with --format gguf"));
        }
        "merged_16bit" => SavedPushFormat::Merged16bit,
        "merged_4bit" => SavedPushFormat::Merged4bit,
        _ => {
            let texts = if args.quant.is_empty() {
                vec!["q4_K_M".to_string()]
            } else {
                args.quant
            };
            let mut quants = Vec::new();
            for text in texts {
                let quant: loraforge_naming::QuantType = text
                    .parse()
                    .map_err(|e: loraforge_naming::NameError| user_error(e.to_string()))?;
                if !quants.contains(&quant) {
                    quants.push(quant);
                }
            }
            SavedPushFormat::Gguf(quants)
        }
    };
    let (client, options) = prepare(context, args.hub)?;
    let reporter = context.reporter();
    let record = runtime()?
        .block_on(registry.push_saved(&name, &client, &options, &format, &reporter))
        .with_context(|| format!("cannot push {name} to {}", options.repo))?;
    drop(reporter);
    report(context, &name, &record)
}

fn report(context: &Context, name: &str, record: &HubPushRecord) -> anyhow::Result<()> {
    if context.json {
        return print_json(record);
    }
    let what = if record.committed {
        format!(
            "pushed {name} ({}) to {}@{}: commit {}, {} files, {} bytes sent",
            record.format,
            record.repo,
            record.revision,
            record.commit_id,
            record.files.len(),
            record.bytes_sent
        )
    } else {
        format!(
            "{}@{} already has {name} ({}): nothing sent, it is at commit {}",
            record.repo, record.revision, record.format, record.commit_id
        )
    };
    println_stdout(&what);
    if let Some(url) = &record.commit_url {
        println_stdout(url);
    }
    Ok(())
}

/// The pushes of an entry, one line each, for `show`.
pub fn pushes_text(records: &[HubPushRecord]) -> Option<String> {
    if records.is_empty() {
        return None;
    }
    let mut out = String::from("pushed to the Hub:");
    for r in records {
        out.push_str(&format!(
            "\n  {}@{} {} ({}, {} files, {})",
            r.repo,
            r.revision,
            r.commit_id,
            r.format,
            r.files.len(),
            r.pushed.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    Some(out)
}
