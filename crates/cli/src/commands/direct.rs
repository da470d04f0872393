//! Low-level commands that work on files directly, without the store:
//! `merge`, `convert`, `quantize`, `inspect`.

use loraforge_progress::Reporter;

use super::Context;
use crate::args::{ConvertArgs, InspectArgs, MergeArgs, QuantizeArgs};
use crate::diagnostics::user_error;
use crate::output::{print_json, println_stdout};

pub fn merge(context: &Context, args: MergeArgs) -> anyhow::Result<()> {
    let options = loraforge_adapter_merge::MergeOptions {
        dtype: args.dtype.parse()?,
        max_shard_size: loraforge_adapter_merge::parse_size(&args.max_shard_size)?,
        threads: args.threads,
        force: args.force,
        allow_non_finite: args.allow_non_finite,
        sha256: args.sha256,
        ..loraforge_adapter_merge::MergeOptions::new(&args.base, &args.adapter, &args.out)
    };
    let reporter = context.reporter();
    let report = loraforge_adapter_merge::merge(&options, &reporter)?;
    reporter.finish();
    if context.json {
        return print_json(&serde_json::json!({
            "out": args.out,
            "dtype": report.dtype.safetensors_name().to_ascii_lowercase(),
            "tensors_total": report.tensors_total,
            "tensors_changed": report.tensors_changed,
            "parameters": report.parameters,
            "bytes_written": report.bytes_written,
            "seconds": report.elapsed.as_secs_f64(),
            "backend": report.backend,
            "files": report.output_files.iter().map(|(path, bytes, sha256)| serde_json::json!({
                "path": path, "bytes": bytes, "sha256": sha256,
            })).collect::<Vec<_>>(),
            "ignored_modules": report.ignored_modules,
        }));
    }
    println_stdout(&format!(
        "merged {} of {} tensors into {} ({}, {:.1} MB in {:.2} s)",
        report.tensors_changed,
        report.tensors_total,
        args.out.display(),
        report.dtype.safetensors_name().to_ascii_lowercase(),
        report.bytes_written as f64 / 1e6,
        report.elapsed.as_secs_f64()
    ));
    for (path, _, sha256) in &report.output_files {
        if let Some(sha256) = sha256 {
            println_stdout(&format!("sha256 {sha256}  {}", path.display()));
        }
    }
    for module in &report.ignored_modules {
        context.status(&format!(
            "note: adapter module {module} is not targeted by its config; ignored as PEFT does"
        ));
    }
    Ok(())
}

pub fn convert(context: &Context, args: ConvertArgs) -> anyhow::Result<()> {
    let target = loraforge_export::ExportTarget::for_outtype(&args.outtype).ok_or_else(|| {
        user_error(format!(
            "unknown --outtype '{}'; valid: {}",
            args.outtype,
            loraforge_export::ExportTarget::outtype_names()
        ))
    })?;
    let reporter = context.reporter();
    let options = loraforge_export::ConvertOptions {
        target,
        threads: args.threads,
        sha256: args.sha256,
        ..Default::default()
    };
    let report = loraforge_export::convert(&args.model_dir, &args.out, &options, &reporter)?;
    reporter.finish();
    for warning in &report.warnings {
        context.status(&format!("warning: {warning}"));
    }
    if context.json {
        return print_json(&serde_json::json!({
            "out": args.out, "tensors": report.tensors, "bytes": report.bytes,
            "sha256": report.sha256, "architecture": report.architecture,
            "file_type": report.file_type.llama_ftype(), "parameters": report.parameters,
            "pre_tokenizer": report.pre_tokenizer, "warnings": report.warnings,
        }));
    }
    println_stdout(&format!(
        "wrote {} ({} tensors, {:.1} MB, pre-tokenizer {})",
        args.out.display(),
        report.tensors,
        report.bytes as f64 / 1e6,
        report.pre_tokenizer.as_deref().unwrap_or("n/a")
    ));
    if let Some(sha256) = &report.sha256 {
        println_stdout(&format!("sha256 {sha256}"));
    }
    Ok(())
}

pub fn quantize(context: &Context, args: QuantizeArgs) -> anyhow::Result<()> {
    let ftype: loraforge_export::FileType = args
        .file_type
        .parse()
        .map_err(|e: loraforge_naming::NameError| user_error(e.to_string()))?;
    let reporter = context.reporter();
    let report = loraforge_export::quantize_file(
        &args.input,
        &args.output,
        ftype,
        &loraforge_export::QuantizeFileOptions {
            threads: args.threads.unwrap_or(0),
            allow_requantize: args.allow_requantize,
            no_fallback: args.no_fallback,
        },
        &reporter,
    )?;
    reporter.finish();
    if context.json {
        return print_json(&report);
    }
    for tensor in &report.tensors {
        if let Some(fallback) = &tensor.fallback {
            context.status(&format!(
                "fallback: {}: {} instead of {} ({})",
                tensor.name, fallback.used, fallback.wanted, fallback.reason
            ));
        }
    }
    println_stdout(&format!(
        "wrote {} ({}, {:.1} MB -> {:.1} MB, {} fallback tensors)",
        args.output.display(),
        report.ftype,
        report.input_bytes as f64 / 1e6,
        report.output_bytes as f64 / 1e6,
        report.n_fallback
    ));
    Ok(())
}

pub fn inspect(context: &Context, args: InspectArgs) -> anyhow::Result<()> {
    let file = loraforge_gguf::GgufFile::open(&args.file)?;
    let report = loraforge_gguf::inspect(&file, &loraforge_gguf::InspectOptions::default());
    if context.json {
        return print_json(&report);
    }
    println_stdout(&report.to_string());
    Ok(())
}
