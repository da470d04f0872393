//! `loraforge demo`: the whole lifecycle on a small generated model.

use anyhow::Context as _;
use loraforge_progress::Reporter;
use loraforge_registry::{
    BaseAddOptions, BaseRecord, DeployOptions, EntryKind, ExportedGguf, Job, SavedRecord,
    TrainedRecord,
};
use serde::Serialize;

use super::Context;
use crate::args::DemoArgs;
use crate::diagnostics::one_line;
use crate::output::{print_json, println_stdout};

const DEMO_BASE: &str = "demo-llama";

/// What `demo --json` prints.
#[derive(Serialize)]
struct DemoSummary {
    store: String,
    base: BaseRecord,
    trained: TrainedRecord,
    job: Job,
    saved: SavedRecord,
    gguf: ExportedGguf,
    deployed: serde_json::Value,
}

pub fn demo(context: &Context, args: DemoArgs) -> anyhow::Result<()> {
    let registry = context.registry()?;
    let home = context.home()?;
    let say = |text: &str| {
        if !context.json {
            println_stdout(text);
        }
    };
    say(&format!("loraforge demo — store: {}", registry.location()));

    // 1. A small but real fine-tuning result: llama base + trainer output with a LoRA adapter.
    let files_dir = args.dir.clone().unwrap_or_else(|| home.join("demo-files"));
    if files_dir.exists()
        && args.dir.is_none()
        && !registry
            .bases()?
            .iter()
            .any(|b| b.technical_name.as_str() == DEMO_BASE)
    {
        std::fs::remove_dir_all(&files_dir)
            .with_context(|| format!("cannot clean {}", files_dir.display()))?;
    }
    let demo = if files_dir.join("tiny-llama/config.json").is_file() {
        loraforge_demo::DemoFiles {
            base_dir: files_dir.join("tiny-llama"),
            trainer_dir: files_dir.join("trainer-output"),
            template: files_dir.join("tiny-llama.Modelfile"),
        }
    } else {
        loraforge_demo::generate(&files_dir, &loraforge_demo::DemoSpec::default())?
    };
    say(&format!(
        "1. generated a llama base model and a trainer output with a LoRA adapter in {}",
        files_dir.display()
    ));

    // 2. Register the base (with its deployment template) and the trained adapter.
    let base = match registry.base(DEMO_BASE) {
        Ok(base) => base,
        Err(_) => registry.add_base(
            &demo.base_dir,
            DEMO_BASE,
            &BaseAddOptions {
                copy: false,
                template: Some(demo.template.clone()),
            },
        )?,
    };
    say(&format!("2. base model:    {}", base.technical_name));
    let trained = registry.add_trained(&demo.trainer_dir, DEMO_BASE, "demo run", None)?;
    say(&format!(
        "   trained model: {}   (base _ train name _ date _ training UUID prefix)",
        trained.name
    ));

    // 3. Save: merge the adapter into the base, as a job.
    let job = registry.queue_save(&trained.name.to_string(), "auto")?;
    let reporter = context.reporter();
    let job = registry.run_job(&job.id, &reporter)?;
    reporter.finish();
    let saved_name = job.result.clone().unwrap_or_default();
    let saved = registry.saved(&saved_name)?;
    say(&format!(
        "3. saved model:   {}   (job {}, {:.2} s, {})",
        saved.name, job.id, saved.merge_seconds, saved.dtype
    ));

    // 4. Export to GGUF q4_K_M through loraforge's converter and quantizer.
    let saved_name = saved.name.to_string();
    let q4_k_m = loraforge_naming::QuantType::Quantized(loraforge_naming::FileType::Q4KM);
    let exported = registry.export_gguf(&saved_name, q4_k_m, &reporter)?;
    reporter.finish();
    say(&format!(
        "4. exported GGUF: {} ({:.1} MB, sha256 {}…)",
        exported.path.display(),
        exported.bytes as f64 / 1e6,
        &exported.sha256[..12.min(exported.sha256.len())]
    ));

    // 5. Deploy when an Ollama server answers.
    let runtime = super::deploy::runtime()?;
    let options = DeployOptions {
        host: crate::env::ollama_host(args.host.as_deref()),
        server_quantize: false,
        smoke_test: true,
        stall_timeout: None,
    };
    let deployed = runtime.block_on(registry.deploy(&saved_name, q4_k_m, &options, &reporter));
    drop(reporter);
    let deployed_json = match &deployed {
        Ok(record) => {
            say(&format!(
                "5. deployed model: {} on {}",
                record.name, record.host
            ));
            say(&format!("   try it: ollama run {}", record.ollama_model));
            serde_json::to_value(record)?
        }
        Err(error) => {
            let target = &options.host;
            say(&format!("5. not deployed: {}", one_line(error)));
            say(&format!(
                "   next step: start Ollama (`ollama serve`) or set OLLAMA_HOST (tried {target}), then run\n   loraforge saved deploy {} --quant q4_K_M",
                saved.name
            ));
            serde_json::json!({ "error": one_line(error) })
        }
    };
    say("\nmodel card of the saved model:\n");
    say(&registry.card_readme(EntryKind::Saved, &saved_name)?);
    if context.json {
        print_json(&DemoSummary {
            store: registry.location(),
            base,
            trained,
            job,
            saved,
            gguf: exported,
            deployed: deployed_json,
        })?;
    }
    Ok(())
}
