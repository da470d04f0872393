//! Low-level commands that work on files directly, without the store:
//! `merge`, `convert`, `convert-lora`, `quantize`, `inspect`.

use anyhow::Context as _;
use loraforge_progress::Reporter;

use super::Context;
use crate::args::{ConvertArgs, ConvertLoraArgs, InspectArgs, MergeArgs, QuantizeArgs};
use crate::diagnostics::user_error;
use crate::output::{print_json, println_stdout};

pub fn merge(context: &Context, args: MergeArgs) -> anyhow::Result<()> {
    let four_bit = args.save_method == "merged_4bit";
    let max_shard_size = match &args.max_shard_size {
        Some(size) => loraforge_adapter_merge::parse_size(size)?,
        None if four_bit => loraforge_nf4::DEFAULT_MAX_SHARD_SIZE,
        None => loraforge_adapter_merge::parse_size("5GB")?,
    };
    let options = loraforge_adapter_merge::MergeOptions {
        dtype: args.dtype.parse()?,
        max_shard_size,
        threads: args.threads,
        force: args.force,
        allow_non_finite: args.allow_non_finite,
        sha256: args.sha256,
        ..loraforge_adapter_merge::MergeOptions::new(&args.base, &args.adapter, &args.out)
    };
    if four_bit && args.sha256 {
        return Err(user_error(
            "--sha256 lists the merged_16bit files; merged_4bit writes other files",
        ));
    }
    let reporter = context.reporter();
    let (report, nf4) = if four_bit {
        let (report, nf4) = merge_4bit(&options, &reporter)?;
        (report, Some(nf4))
    } else {
        (loraforge_adapter_merge::merge(&options, &reporter)?, None)
    };
    reporter.finish();
    let dtype = report.dtype.safetensors_name().to_ascii_lowercase();
    if context.json {
        return print_json(&serde_json::json!({
            "out": args.out,
            "save_method": args.save_method,
            "dtype": dtype,
            "tensors_total": report.tensors_total,
            "tensors_changed": report.tensors_changed,
            "parameters": report.parameters,
            "bytes_written": nf4.as_ref().map_or(report.bytes_written, |n| n.bytes),
            "seconds": report.elapsed.as_secs_f64(),
            "backend": report.backend,
            "files": if nf4.is_some() { Vec::new() } else {
                report.output_files.iter().map(|(path, bytes, sha256)| serde_json::json!({
                    "path": path, "bytes": bytes, "sha256": sha256,
                })).collect::<Vec<_>>()
            },
            "nf4": nf4.as_ref().map(|n| serde_json::json!({
                "quantized": n.quantized, "kept": n.kept, "bytes": n.bytes,
            })),
            "ignored_modules": report.ignored_modules,
        }));
    }
    match &nf4 {
        Some(nf4) => println_stdout(&format!(
            "merged {} of {} tensors and quantized {} weights to NF4 ({} kept in {dtype}) into {} ({:.1} MB)",
            report.tensors_changed,
            report.tensors_total,
            nf4.quantized,
            nf4.kept,
            args.out.display(),
            nf4.bytes as f64 / 1e6,
        )),
        None => println_stdout(&format!(
            "merged {} of {} tensors into {} ({dtype}, {:.1} MB in {:.2} s)",
            report.tensors_changed,
            report.tensors_total,
            args.out.display(),
            report.bytes_written as f64 / 1e6,
            report.elapsed.as_secs_f64()
        )),
    }
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

/// merged_4bit: the merge quantized to NF4 as it runs (no 16-bit folder), written into a unique
/// temporary folder beside the output and renamed into place. The temporary folder goes on
/// every path (dropped with its `TempDir`).
fn merge_4bit(
    options: &loraforge_adapter_merge::MergeOptions,
    reporter: &dyn Reporter,
) -> anyhow::Result<(
    loraforge_adapter_merge::MergeReport,
    loraforge_nf4::Nf4Report,
)> {
    let start = std::time::Instant::now();
    let out = options.out_dir.clone();
    options.check_output()?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let merged = loraforge_adapter_merge::MergedTensors::open(options, reporter)?;
    let temp = tempfile::Builder::new()
        .prefix(".loraforge-merge-4bit-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a temporary folder in {}", parent.display()))?;
    let quantized = temp.path().join("merged_4bit");
    let nf4 = loraforge_nf4::quantize_merged(
        &merged,
        &quantized,
        &loraforge_nf4::Nf4Options {
            max_shard_size: Some(options.max_shard_size),
            ..Default::default()
        },
        reporter,
    )?;
    if out.exists() {
        std::fs::remove_dir_all(&out)
            .with_context(|| format!("cannot replace {}", out.display()))?;
    }
    std::fs::rename(&quantized, &out)
        .with_context(|| format!("cannot move the result into {}", out.display()))?;
    // The merged_16bit report's terms; no 16-bit files were written.
    let report = loraforge_adapter_merge::MergeReport {
        tensors_total: merged.tensor_names().len(),
        tensors_changed: merged.tensors_changed(),
        output_files: Vec::new(),
        dtype: nf4.dtype,
        elapsed: start.elapsed(),
        bytes_written: nf4.bytes,
        tokenizer_source: merged.tokenizer_source(),
        ignored_modules: merged.ignored_modules().to_vec(),
        parameters: merged.base().parameter_count(),
        backend: merged.backend(),
        warnings: merged.warnings().to_vec(),
    };
    let nf4 = loraforge_nf4::Nf4Report {
        out_dir: out,
        ..nf4
    };
    Ok((report, nf4))
}

pub fn convert_lora(context: &Context, args: ConvertLoraArgs) -> anyhow::Result<()> {
    let target = loraforge_export::ExportTarget::for_outtype(&args.outtype)
        .ok_or_else(|| user_error(format!("unknown --outtype '{}'", args.outtype)))?;
    let reporter = context.reporter();
    let options = loraforge_export::LoraConvertOptions {
        target,
        sha256: args.sha256,
    };
    let report = loraforge_export::convert_lora(
        &args.adapter_dir,
        &args.base,
        &args.out,
        &options,
        &reporter,
    )?;
    reporter.finish();
    for warning in &report.warnings {
        context.status(&format!("warning: {warning}"));
    }
    if context.json {
        return print_json(&serde_json::json!({
            "out": report.path, "architecture": report.architecture,
            "tensors": report.tensors, "alpha": report.alpha, "bytes": report.bytes,
            "sha256": report.sha256, "warnings": report.warnings,
        }));
    }
    println_stdout(&format!(
        "wrote {} (LoRA for {}, {} tensors, alpha {}, {:.1} KB)",
        report.path.display(),
        report.architecture,
        report.tensors,
        report.alpha,
        report.bytes as f64 / 1e3
    ));
    if let Some(sha256) = &report.sha256 {
        println_stdout(&format!("sha256 {sha256}"));
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
        adapter: args.adapter,
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
