//! Save-method throughput (issue 14): `merged_4bit` (the merge quantized to bitsandbytes NF4 with
//! double quantization as it runs, as `loraforge merge --save-method merged_4bit` does it) against `merged_16bit`
//! (the merge alone) on the same TinyLlama-shaped bf16 model and r=16 all-linear adapter, in one
//! run. Target: merged_4bit ≤ 1.5 × merged_16bit.
//!
//! Each save runs in a child process (this binary re-invoked with `--child`) and reports its wall
//! time, CPU time and peak RSS; each side is run 3 times alternately and the best runs are
//! compared (the machine may be shared). Page cache warm, default merge options (fsync on, no
//! SHA-256), the merge's default thread count.
//!
//! Run: `cargo bench -p loraforge-benches --bench save_methods`
//! Environment: `LORAFORGE_BENCH_DIR` (keep the generated model), `LORAFORGE_BENCH_LAYERS`
//! (default 22), `LORAFORGE_BENCH_RANK` (default 16), `LORAFORGE_BENCH_ROUNDS` (default 3).
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use loraforge_adapter_merge::{merge, MergeOptions, MergedTensors};
use loraforge_benches::measure::{cpu_seconds, env_usize, run_child, status_field, work_dir};
use loraforge_benches::{generate_adapter, generate_llama, SynthSpec};
use loraforge_nf4::{quantize_merged, Nf4Options};
use loraforge_progress::NoProgress;

/// Child mode: one save, then print `elapsed_s peak_rss_kib cpu_s merge_s out_bytes`.
fn child(args: &[String]) {
    let (base, adapter, out, method) = (&args[0], &args[1], &args[2], &args[3]);
    let out = Path::new(out);
    let _ = std::fs::remove_dir_all(out);
    let t = Instant::now();
    let (merge_s, bytes) = if method == "merged_4bit" {
        // As the CLI: the merge quantized to NF4 as it runs (no 16-bit folder); `merge_s` is
        // the time to open and plan the merge.
        let merged =
            MergedTensors::open(&MergeOptions::new(base, adapter, out), &NoProgress).unwrap();
        let merge_s = t.elapsed().as_secs_f64();
        let report = quantize_merged(&merged, out, &Nf4Options::default(), &NoProgress).unwrap();
        (merge_s, report.bytes)
    } else {
        let report = merge(&MergeOptions::new(base, adapter, out), &NoProgress).unwrap();
        (t.elapsed().as_secs_f64(), report.bytes_written)
    };
    let elapsed = t.elapsed().as_secs_f64();
    let hwm = status_field("self", "VmHWM:").unwrap_or(0);
    println!("{elapsed} {hwm} {} {merge_s} {bytes}", cpu_seconds());
}

struct Run {
    secs: f64,
    rss_kib: f64,
    cpu: f64,
    merge_s: f64,
    bytes: f64,
}

fn save(base: &Path, adapter: &Path, out: &Path, method: &str) -> Run {
    let f = run_child(&[
        base.as_os_str(),
        adapter.as_os_str(),
        out.as_os_str(),
        method.as_ref(),
    ]);
    let _ = std::fs::remove_dir_all(out);
    let num = |i: usize| f[i].parse::<f64>().unwrap();
    Run {
        secs: num(0),
        rss_kib: num(1),
        cpu: num(2),
        merge_s: num(3),
        bytes: num(4),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        // As the CLI's `main` does: OpenBLAS's idle workers would busy-wait ~0.1 s.
        loraforge_adapter_merge::single_threaded_blas();
        child(&args[i + 1..]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let layers = env_usize("LORAFORGE_BENCH_LAYERS", 22);
    let rank = env_usize("LORAFORGE_BENCH_RANK", 16);
    let rounds = env_usize("LORAFORGE_BENCH_ROUNDS", 3).max(1);
    let spec = SynthSpec {
        layers,
        ..SynthSpec::tinyllama()
    };
    let (_keep, root) = work_dir(&format!("merge-l{layers}-r{rank}"));
    let (base, adapter) = (root.join("base"), root.join("adapter"));
    if !base.join("config.json").is_file() {
        generate_llama(&base, &spec).unwrap();
    }
    if !adapter.join("adapter_config.json").is_file() {
        generate_adapter(&adapter, &spec, rank).unwrap();
    }
    let gb = spec.data_bytes() as f64 / 1e9;
    println!(
        "model: llama hidden {} layers {} ffn {} vocab {} bf16, {gb:.2} GB; adapter r={rank} all-linear",
        spec.hidden, spec.layers, spec.ffn, spec.vocab
    );
    // Warm the page cache with the base.
    let mut sink = vec![0u8; 8 << 20];
    for e in std::fs::read_dir(&base).unwrap() {
        let mut f = std::fs::File::open(e.unwrap().path()).unwrap();
        while f.read(&mut sink).unwrap() > 0 {}
    }

    let out = root.join("saved");
    let mut best: [Option<Run>; 2] = [None, None];
    let methods = ["merged_16bit", "merged_4bit"];
    for round in 1..=rounds {
        for (slot, method) in best.iter_mut().zip(methods) {
            let run = save(&base, &adapter, &out, method);
            println!(
                "round {round} {method}: {:.2} s (merge/open {:.2} s), CPU {:.1} s, peak RSS {:.0} MiB, {:.1} MB written",
                run.secs,
                run.merge_s,
                run.cpu,
                run.rss_kib / 1024.0,
                run.bytes / 1e6
            );
            if slot.as_ref().is_none_or(|b| run.secs < b.secs) {
                *slot = Some(run);
            }
        }
    }
    let [Some(b16), Some(b4)] = best else {
        return;
    };
    println!(
        "best of {rounds}: merged_16bit {:.2} s ({:.2} GB/s of base), merged_4bit {:.2} s ({:.2} GB/s; open {:.2} s + merge/nf4 {:.2} s), ratio {:.2}x (target <= 1.5x)",
        b16.secs,
        gb / b16.secs,
        b4.secs,
        gb / b4.secs,
        b4.merge_s,
        b4.secs - b4.merge_s,
        b4.secs / b16.secs
    );
}
