//! Speed and memory at real scale (issue 17, goal 3): a Mistral-7B-shaped synthetic model
//! (hidden 4096, ffn 14336, 32 layers, vocab 32000, 32 / 8 heads, bf16, ≈ 14.5 GB in 5 GB
//! shards like `save_pretrained`) and an r=16 all-linear adapter, then, each in a child process
//! (this binary re-invoked with `--child`) that reports its own peak RSS and CPU time:
//!
//! | step | what runs |
//! |---|---|
//! | `copy` | the base's safetensors copied with 8 MiB reads/writes + fsync (the I/O floor) |
//! | `merge` | `adapter_merge::merge` (what `loraforge merge` runs) |
//! | `convert` | HF bf16 → f16 GGUF (`loraforge convert --outtype f16`) |
//! | `quantize` | that f16 GGUF → Q4_K_M (`loraforge quantize`), 2 threads |
//! | `onepass` | base + adapter → Q4_K_M GGUF in one pass (`loraforge convert --adapter`) |
//! | `save` | `trained save` through the registry (merge into the store, a job) |
//! | `deploy` | `saved deploy --quant q4_K_M` to the in-process fake Ollama (export + upload) |
//!
//! The target is a peak RSS ≤ 512 MiB for every step; the report gives wall time, seconds per
//! GB of base and the ratio to the copy in the same run. Outputs are deleted as soon as the next
//! step no longer needs them, to keep the disk needed near 3× the model: the bench checks the
//! free space first and stops, saying how much it needs, when there is not enough.
//!
//! Run: `LORAFORGE_BENCH_DIR=/big/disk cargo bench -p loraforge-benches --bench scale`
//! Environment: `LORAFORGE_BENCH_SCALE` (`7b`, default, or `1b`: the TinyLlama shape, a quick
//! rehearsal), `LORAFORGE_BENCH_LAYERS` (override the layer count),
//! `LORAFORGE_BENCH_STEPS` (comma list of the steps above, default all),
//! `LORAFORGE_BENCH_ROUNDS` (run quantize and one-pass alternately this many times, best of
//! each; default 1),
//! `LORAFORGE_BENCH_KEEP=1` (keep the generated base and adapter for the next run).
//! Not part of CI: the 7B run needs ~35 GB free and takes tens of minutes on 2 cores.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use loraforge_adapter_merge::{merge, MergeOptions};
use loraforge_benches::measure::{
    copy_safetensors, cpu_seconds, env_usize, run_child, status_field,
};
use loraforge_benches::{generate_adapter, generate_llama, SynthSpec};
use loraforge_export::{convert, quantize_file, ConvertOptions, ExportTarget, FileType};
use loraforge_naming::QuantType;
use loraforge_progress::NoProgress;
use loraforge_registry::{BaseAddOptions, DeployOptions, Registry, RegistryOptions};

const TOKENIZER_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/peft/a_llama_qv/base"
);

const STEPS: [&str; 7] = [
    "copy", "merge", "convert", "quantize", "onepass", "save", "deploy",
];

/// Reads `path` (a file, or every file of a folder) through once, untimed.
fn warm(path: &Path) {
    let files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    let mut sink = vec![0u8; 8 << 20];
    for f in files {
        let mut file = std::fs::File::open(f).unwrap();
        while std::io::Read::read(&mut file, &mut sink).unwrap() > 0 {}
    }
}

/// Mistral-7B-v0.1's shape in bf16.
fn mistral_7b() -> SynthSpec {
    SynthSpec {
        hidden: 4096,
        layers: 32,
        ffn: 14336,
        vocab: 32000,
        heads: 32,
        kv_heads: 8,
        ..SynthSpec::tinyllama()
    }
}

/// Child mode: one step, then print `elapsed_s peak_rss_kib cpu_s bytes_written`.
fn child(args: &[String]) {
    let step = args[0].as_str();
    let root = PathBuf::from(&args[1]);
    let base = root.join("base");
    let adapter = root.join("adapter");
    let t = Instant::now();
    let bytes = match step {
        "copy" => copy_safetensors(&base, &root.join("copy"), true).unwrap(),
        "merge" => {
            let report = merge(
                &MergeOptions::new(&base, &adapter, root.join("merged")),
                &NoProgress,
            )
            .unwrap();
            report.bytes_written
        }
        "convert" => {
            let options = ConvertOptions {
                target: ExportTarget::for_outtype("f16").unwrap(),
                ..Default::default()
            };
            convert(&base, &root.join("f16.gguf"), &options, &NoProgress).unwrap();
            file_size(&root.join("f16.gguf"))
        }
        "quantize" => {
            let options = loraforge_export::QuantizeFileOptions {
                threads: 2,
                ..Default::default()
            };
            let report = quantize_file(
                &root.join("f16.gguf"),
                &root.join("q4_K_M.gguf"),
                FileType::Q4KM,
                &options,
                &NoProgress,
            )
            .unwrap();
            report.output_bytes
        }
        "onepass" => {
            let out = root.join("onepass.q4_K_M.gguf");
            let options = ConvertOptions {
                target: ExportTarget::Quantize(FileType::Q4KM),
                adapter: Some(adapter.clone()),
                ..Default::default()
            };
            convert(&base, &out, &options, &NoProgress).unwrap();
            file_size(&out)
        }
        "save" => {
            let registry = store(&root);
            registry
                .add_base(&base, "bench-7b", &BaseAddOptions::default())
                .unwrap();
            let trained = registry
                .add_trained(&adapter, "bench-7b", "scale", None)
                .unwrap()
                .name
                .to_string();
            let job = registry.queue_save(&trained, "auto").unwrap();
            let job = registry.run_job(&job.id, &NoProgress).unwrap();
            let saved = job.result.expect("the save job succeeded");
            std::fs::write(root.join("saved-name"), &saved).unwrap();
            registry
                .saved(&saved)
                .unwrap()
                .files
                .iter()
                .map(|f| f.bytes)
                .sum()
        }
        "deploy" => {
            let registry = store(&root);
            let saved = std::fs::read_to_string(root.join("saved-name")).unwrap();
            let options = DeployOptions {
                host: loraforge_ollama_client::OllamaHost::parse(&args[2]),
                server_quantize: false,
                smoke_test: false,
                stall_timeout: None,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime
                .block_on(registry.deploy(
                    &saved,
                    QuantType::Quantized(FileType::Q4KM),
                    &options,
                    &NoProgress,
                ))
                .unwrap();
            let exported = registry
                .export_gguf(&saved, QuantType::Quantized(FileType::Q4KM), &NoProgress)
                .unwrap();
            exported.bytes
        }
        other => panic!("unknown step {other}"),
    };
    let elapsed = t.elapsed().as_secs_f64();
    let hwm = status_field("self", "VmHWM:").unwrap_or(0);
    println!("{elapsed} {hwm} {} {bytes}", cpu_seconds());
}

fn store(root: &Path) -> Registry {
    Registry::open_with(&root.join("store"), RegistryOptions::default()).unwrap()
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Free bytes on the file system holding `dir` (`df`, to keep the bench free of FFI).
fn free_bytes(dir: &Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

/// What each step leaves on disk at its peak, as multiples of the base's bytes (q4_K_M ≈ 0.3):
/// copy 1, merge 1, convert 1, quantize f16 + q4, save 1 (the saved model), deploy the saved
/// model + the cached q4_K_M (the export streams into the quantizer, no intermediate file).
fn disk_needed(base_bytes: u64, steps: &[&str], have_base: bool) -> u64 {
    let b = base_bytes as f64;
    let peak = steps
        .iter()
        .map(|s| match *s {
            "quantize" => 1.35,
            "deploy" => 1.4,
            _ => 1.05,
        })
        .fold(0.0, f64::max);
    let base = if have_base { 0.0 } else { 1.0 };
    ((base + peak) * b) as u64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        // As the CLI's `main` does: OpenBLAS's idle workers would busy-wait ~0.1 s.
        loraforge_adapter_merge::single_threaded_blas();
        child(&args[i + 1..]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        println!("scale: bench");
        return;
    }
    if args.iter().any(|a| a == "--test") {
        return; // `cargo test --benches`: nothing quick to check here
    }

    let scale = std::env::var("LORAFORGE_BENCH_SCALE").unwrap_or_else(|_| "7b".into());
    let mut spec = match scale.as_str() {
        "7b" => mistral_7b(),
        "1b" => SynthSpec::tinyllama(),
        other => panic!("LORAFORGE_BENCH_SCALE={other}: use 7b or 1b"),
    };
    if let Some(layers) = std::env::var("LORAFORGE_BENCH_LAYERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        spec.layers = layers;
    }
    let steps: Vec<String> = std::env::var("LORAFORGE_BENCH_STEPS")
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect())
        .unwrap_or_else(|_| STEPS.iter().map(|s| s.to_string()).collect());
    let steps: Vec<&str> = STEPS
        .iter()
        .copied()
        .filter(|s| steps.iter().any(|x| x == s))
        .collect();

    let parent = std::env::var_os("LORAFORGE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let root = parent.join(format!("scale-{scale}-l{}", spec.layers));
    std::fs::create_dir_all(&root).unwrap();
    let base = root.join("base");
    let adapter = root.join("adapter");
    let have_base =
        base.join("config.json").is_file() && adapter.join("adapter_config.json").is_file();
    let gb = spec.data_bytes() as f64 / 1e9;
    let needed = disk_needed(spec.data_bytes(), &steps, have_base);
    let free = free_bytes(&root).unwrap_or(u64::MAX);
    println!(
        "model: llama hidden {} layers {} ffn {} vocab {} heads {}/{} bf16, {gb:.2} GB; adapter r=16 all-linear",
        spec.hidden, spec.layers, spec.ffn, spec.vocab, spec.heads, spec.kv_heads
    );
    println!(
        "disk: {:.1} GB needed in {}, {:.1} GB free",
        needed as f64 / 1e9,
        root.display(),
        free as f64 / 1e9
    );
    if free < needed {
        eprintln!(
            "not enough free disk: the steps {steps:?} need about {:.1} GB at their peak in {}; \
             point LORAFORGE_BENCH_DIR at a larger disk or pick fewer steps (LORAFORGE_BENCH_STEPS)",
            needed as f64 / 1e9,
            root.display()
        );
        std::process::exit(2);
    }
    if !have_base {
        let t = Instant::now();
        generate_llama(&base, &spec).unwrap();
        generate_adapter(&adapter, &spec, 16).unwrap();
        println!("generated in {:.0} s", t.elapsed().as_secs_f64());
    }
    for f in ["tokenizer.model", "tokenizer_config.json"] {
        std::fs::copy(Path::new(TOKENIZER_FIXTURE).join(f), base.join(f)).unwrap();
    }

    let fake = steps
        .contains(&"deploy")
        .then(|| ollama_fake::FakeOllama::spawn().unwrap());
    // With `LORAFORGE_BENCH_ROUNDS` > 1, quantize and one-pass run alternately that many
    // times (best of each reported): on this VM one run of either varies by up to 1.5x.
    let rounds = env_usize("LORAFORGE_BENCH_ROUNDS", 1).max(1);
    let pair = rounds > 1 && steps.contains(&"quantize") && steps.contains(&"onepass");
    let mut schedule: Vec<&str> = Vec::new();
    for step in &steps {
        match *step {
            "quantize" if pair => {
                for _ in 0..rounds {
                    schedule.extend(["quantize", "onepass"]);
                }
            }
            "onepass" if pair => {}
            other => schedule.push(other),
        }
    }
    let last_quantize = schedule.iter().rposition(|s| *s == "quantize");
    let mut copy_s = None;
    let mut rows = Vec::new();
    for (run, step) in schedule.iter().enumerate() {
        let mut child_args = vec![step.to_string(), root.display().to_string()];
        if let Some(fake) = &fake {
            child_args.push(fake.url());
        }
        // Each step starts with its input in the page cache: on this 24 GiB machine the
        // outputs of the steps before evict the base, and a step reading cold input would
        // measure the disk, not the work (the one-pass step, after quantize, always did).
        match *step {
            "quantize" => warm(&root.join("f16.gguf")),
            "deploy" => {}
            _ => warm(&base),
        }
        let fields = run_child(&child_args);
        let secs: f64 = fields[0].parse().unwrap();
        let rss_mib = fields[1].parse::<f64>().unwrap() / 1024.0;
        let cpu: f64 = fields[2].parse().unwrap();
        let bytes: f64 = fields[3].parse().unwrap();
        if *step == "copy" {
            copy_s = Some(secs);
        }
        let ratio = copy_s.map_or("-".to_string(), |c| format!("{:.2}x", secs / c));
        println!(
            "{step:>8}: {secs:7.1} s  {:5.2} s/GB  CPU {cpu:6.1} s  peak RSS {rss_mib:6.0} MiB{}  wrote {:.2} GB  vs copy {ratio}",
            secs / gb,
            if rss_mib <= 512.0 { "" } else { " (> 512)" },
            bytes / 1e9
        );
        rows.push((step.to_string(), secs, cpu, rss_mib));
        // Free what later steps do not read.
        match *step {
            "copy" => remove(&root.join("copy")),
            "merge" => remove(&root.join("merged")),
            "onepass" => remove(&root.join("onepass.q4_K_M.gguf")),
            "quantize" => {
                if Some(run) == last_quantize {
                    remove(&root.join("f16.gguf"));
                }
                remove(&root.join("q4_K_M.gguf"));
            }
            _ => {}
        }
    }
    remove(&root.join("f16.gguf"));
    remove(&root.join("store"));
    remove(&root.join("saved-name"));
    if std::env::var("LORAFORGE_BENCH_KEEP").map_or(true, |v| v != "1") {
        remove(&root);
    }
    // The best run of a step (the fastest wall time) and its CPU seconds.
    let secs_of = |name: &str| {
        rows.iter()
            .filter(|r| r.0 == name)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|r| (r.1, r.2))
    };
    if let (Some((q, qc)), Some((o, oc))) = (secs_of("quantize"), secs_of("onepass")) {
        println!(
            "one-pass / quantize-only (best of {}): {q:.1} s vs {o:.1} s, {:.2}x wall, {:.2}x CPU (target <= 1.2x)",
            if pair { rounds } else { 1 },
            o / q,
            oc / qc
        );
    }
    let worst = rows.iter().map(|r| r.3).fold(0.0, f64::max);
    println!(
        "peak RSS of the largest step: {worst:.0} MiB ({})",
        if worst <= 512.0 {
            "within 512 MiB"
        } else {
            "over the 512 MiB target"
        }
    );
}

fn remove(path: &Path) {
    let _ = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
}
