//! End-to-end GGUF quantization: a synthetic F16 llama GGUF of the TinyLlama-1.1B shape
//! (hidden 2048, 22 layers, ffn 5632, vocab 32000, 32 heads / 4 kv heads; ≈ 2.2 GB) is written
//! to a temp dir, copied once (the I/O floor), then quantized with `quantize_file` to each type
//! with 1 and 2 threads. Reports wall time, MB/s of F16 input, the ratio to the copy, and the
//! peak RSS of each run (VmHWM, reset between runs through `/proc/self/clear_refs`), and the
//! CPU seconds it used (user + system, all threads) — on a shared machine wall time measures
//! the contention, CPU time what the work costs.
//!
//! Run: `cargo bench -p loraforge-benches --bench quantize_e2e`
//! Environment: `LORAFORGE_BENCH_DIR` (temp dir parent, default the system temp dir),
//! `LORAFORGE_BENCH_LAYERS` (default 22), `LORAFORGE_BENCH_TYPES` (default `all`: every
//! quantized file type, Q8_0 … Q2_K), `LORAFORGE_BENCH_THREADS` (default `1,2`),
//! `LORAFORGE_BENCH_LLAMA_CPP=1` to also run llama.cpp's own quantizer on the same input in the
//! same run (through `llama-cpp-python`, set up once with `pip install llama-cpp-python==0.3.36`,
//! which builds llama.cpp from source; `LORAFORGE_BENCH_PYTHON` names the Python that has it,
//! default `python3`) and compare its output bytes and time with ours. With llama.cpp, a closing
//! table lists per type the single-thread seconds of both, the ratio and whether the bytes are
//! identical. `LORAFORGE_BENCH_MAX_ISA=portable|avx2|avx512` caps the kernels' instruction set
//! (through `loraforge_quantize::set_isa_limit`; the bytes do not change), to report e.g. the
//! AVX2 figures of an AVX-512 machine. `LORAFORGE_BENCH_ROUNDS=N` (default 1) runs ours N
//! times per type and thread count and keeps the fastest (llama.cpp runs once).
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use loraforge_benches::measure::{cpu_seconds, env_usize, status_field};
use loraforge_export::{quantize_file, FileType, QuantizeFileOptions};
use loraforge_gguf::{GgufWriter, SourceError, TensorInfo, WriteOptions};
use loraforge_progress::NoProgress;
use loraforge_quantize::{fp32_to_fp16, set_isa_limit, GgmlType, Isa};

const HIDDEN: u64 = 2048;
const FFN: u64 = 5632;
const VOCAB: u64 = 32000;
const HEADS: u32 = 32;
const KV_HEADS: u32 = 4;

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

/// f16 bytes of weight-like values: N(0, 0.02)-ish (sum of 4 uniforms), a few hot columns.
fn noise_pool() -> Vec<u8> {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let n = (1 << 22) + 7; // odd length: tensors do not all start at the same phase
    let mut out = Vec::with_capacity(n * 2);
    for i in 0..n {
        let g = (uniform() + uniform() + uniform() + uniform()) * 0.035;
        let g = if i % 997 == 3 { g * 12.0 } else { g };
        out.extend_from_slice(&fp32_to_fp16(g).to_le_bytes());
    }
    out
}

fn write_model(path: &Path, layers: u32) -> u64 {
    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama")
        .set("general.name", "bench-tinyllama-shape")
        .set("llama.context_length", 2048u32)
        .set("llama.embedding_length", HIDDEN as u32)
        .set("llama.block_count", layers)
        .set("llama.feed_forward_length", FFN as u32)
        .set("llama.rope.dimension_count", 64u32)
        .set("llama.attention.head_count", HEADS)
        .set("llama.attention.head_count_kv", KV_HEADS)
        .set("llama.attention.layer_norm_rms_epsilon", 1e-5f32)
        .set("general.file_type", 1u32);
    let kv = HIDDEN / u64::from(HEADS) * u64::from(KV_HEADS);
    let mut tensors = vec![
        ("token_embd.weight".to_owned(), vec![HIDDEN, VOCAB]),
        ("output_norm.weight".to_owned(), vec![HIDDEN]),
        ("output.weight".to_owned(), vec![HIDDEN, VOCAB]),
    ];
    for l in 0..layers {
        for (name, dims) in [
            ("attn_norm", vec![HIDDEN]),
            ("attn_q", vec![HIDDEN, HIDDEN]),
            ("attn_k", vec![HIDDEN, kv]),
            ("attn_v", vec![HIDDEN, kv]),
            ("attn_output", vec![HIDDEN, HIDDEN]),
            ("ffn_norm", vec![HIDDEN]),
            ("ffn_gate", vec![HIDDEN, FFN]),
            ("ffn_up", vec![HIDDEN, FFN]),
            ("ffn_down", vec![FFN, HIDDEN]),
        ] {
            tensors.push((format!("blk.{l}.{name}.weight"), dims));
        }
    }
    for (name, dims) in tensors {
        let ty = if dims.len() == 1 {
            GgmlType::F32
        } else {
            GgmlType::F16
        };
        w.add_tensor(TensorInfo::new(name, ty, dims)).unwrap();
    }
    let pool = noise_pool();
    let mut phase = 0usize;
    let mut source = |_: usize, t: &TensorInfo, out: &mut dyn Write| -> Result<(), SourceError> {
        let mut left = t.n_bytes().unwrap() as usize;
        if t.ty == GgmlType::F32 {
            let ones: Vec<u8> = (0..left / 4).flat_map(|_| 1.0f32.to_le_bytes()).collect();
            out.write_all(&ones)?;
            return Ok(());
        }
        while left > 0 {
            let start = phase % (pool.len() / 2) * 2;
            let n = left.min(pool.len() - start);
            out.write_all(&pool[start..start + n])?;
            left -= n;
            phase = phase.wrapping_add(n / 2 + 4099);
        }
        Ok(())
    };
    w.write_to_path(path, &mut source, &WriteOptions::default())
        .unwrap()
        .bytes
}

/// Peak resident set size since the last reset, in MiB.
fn peak_rss_mib() -> f64 {
    status_field("self", "VmHWM:").map_or(f64::NAN, |kb| kb as f64 / 1024.0)
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// What llama.cpp's `llama_model_quantize` did, run in a Python child process.
struct Reference {
    secs: f64,
    cpu: f64,
    peak_rss_mib: f64,
    sha256: String,
}

const LLAMA_CPP_SCRIPT: &str = r#"
import ctypes, hashlib, json, resource, sys, time
import llama_cpp
src, dst, ftype, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
params = llama_cpp.llama_model_quantize_default_params()
params.nthread = threads
params.ftype = ftype
t = time.perf_counter()
c = time.process_time()
rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
secs, cpu = time.perf_counter() - t, time.process_time() - c
h = hashlib.sha256()
with open(dst, "rb") as f:
    for block in iter(lambda: f.read(1 << 24), b""):
        h.update(block)
print(json.dumps({"rc": rc, "secs": secs, "cpu": cpu, "sha256": h.hexdigest(),
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"#;

fn llama_cpp_quantize(input: &Path, out: &Path, ty: FileType, threads: usize) -> Option<Reference> {
    let python = env_or("LORAFORGE_BENCH_PYTHON", "python3");
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(LLAMA_CPP_SCRIPT)
        .arg(input)
        .arg(out)
        .arg(ty.llama_ftype().to_string())
        .arg(threads.to_string())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let _ = std::fs::remove_file(out);
    let line = String::from_utf8_lossy(&output.stdout);
    let v: serde_json::Value = serde_json::from_str(line.lines().last()?).ok()?;
    if v["rc"] != 0 {
        return None;
    }
    Some(Reference {
        secs: v["secs"].as_f64()?,
        cpu: v["cpu"].as_f64()?,
        peak_rss_mib: v["maxrss_kb"].as_f64()? / 1024.0,
        sha256: v["sha256"].as_str()?.to_owned(),
    })
}

fn main() {
    let with_llama_cpp = std::env::var("LORAFORGE_BENCH_LLAMA_CPP").is_ok_and(|v| v == "1");
    if let Ok(max) = std::env::var("LORAFORGE_BENCH_MAX_ISA") {
        let cap = Isa::ALL
            .into_iter()
            .find(|i| i.name() == max)
            .unwrap_or_else(|| {
                panic!("LORAFORGE_BENCH_MAX_ISA={max}: expected portable, avx2 or avx512")
            });
        set_isa_limit(cap);
    }
    println!(
        "kernels: {} (CPU has {})",
        loraforge_quantize::active_isa(),
        Isa::detected()
    );
    let layers: u32 = env_or("LORAFORGE_BENCH_LAYERS", "22").parse().unwrap();
    let types: Vec<FileType> = match env_or("LORAFORGE_BENCH_TYPES", "all").as_str() {
        "all" => FileType::ALL
            .into_iter()
            .filter(|t| t.is_quantized())
            .collect(),
        list => list
            .split(',')
            .map(|t| t.parse::<FileType>().unwrap())
            .collect(),
    };
    let threads: Vec<usize> = env_or("LORAFORGE_BENCH_THREADS", "1,2")
        .split(',')
        .map(|t| t.trim().parse().unwrap())
        .collect();
    let rounds = env_usize("LORAFORGE_BENCH_ROUNDS", 1).max(1);
    let parent = std::env::var_os("LORAFORGE_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).unwrap();
    let dir = tempfile::tempdir_in(parent).unwrap();
    let input = dir.path().join("bench-f16.gguf");

    let t = Instant::now();
    let size = write_model(&input, layers);
    println!(
        "synthetic F16 llama: {layers} layers, {:.2} GB, written in {:.1} s",
        size as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );

    // The I/O floor: copying the same bytes (input warm in the page cache, as for the runs).
    let copy_path = dir.path().join("copy.gguf");
    let t = Instant::now();
    std::fs::copy(&input, &copy_path).unwrap();
    let copy_s = t.elapsed().as_secs_f64();
    std::fs::remove_file(&copy_path).unwrap();
    println!(
        "file copy: {copy_s:.2} s ({:.0} MB/s)",
        size as f64 / 1e6 / copy_s
    );

    println!(
        "\n{:<8} {:>7} {:>9} {:>10} {:>9} {:>8} {:>14} {:>12} {:>8}",
        "type",
        "threads",
        "wall s",
        "MB/s in",
        "× copy",
        "cpu s",
        "MB/s per cpu",
        "peak RSS MiB",
        "out GB"
    );
    // (type, llama.cpp s, ours s, identical) of the single-thread runs
    let mut summary: Vec<(FileType, f64, f64, bool)> = Vec::new();
    for ty in &types {
        let mut shas = Vec::new();
        let mut single = None;
        // Best of `rounds` (by wall time) per thread count, the thread counts taking turns
        // round by round: on a shared VM a run can lose a core to a neighbour for a while,
        // which says nothing about the code, and turns keep a slow spell from landing on one
        // thread count only.
        let mut bests: Vec<Option<(f64, f64, f64, loraforge_export::QuantizeFileReport)>> =
            vec![None; threads.len()];
        for _ in 0..rounds {
            for (&n, best) in threads.iter().zip(bests.iter_mut()) {
                let out = dir.path().join(format!("out-{ty}-{n}.gguf"));
                reset_peak_rss();
                let cpu0 = cpu_seconds();
                let t = Instant::now();
                let report = quantize_file(
                    &input,
                    &out,
                    *ty,
                    &QuantizeFileOptions {
                        threads: n,
                        ..Default::default()
                    },
                    &NoProgress,
                )
                .unwrap();
                let secs = t.elapsed().as_secs_f64();
                let cpu = cpu_seconds() - cpu0;
                let rss = peak_rss_mib();
                std::fs::remove_file(&out).unwrap();
                if best.as_ref().is_none_or(|b| secs < b.0) {
                    *best = Some((secs, cpu, rss, report));
                }
            }
        }
        for (&n, best) in threads.iter().zip(bests) {
            let (secs, cpu, rss, report) = best.unwrap();
            println!(
                "{:<8} {:>7} {:>9.2} {:>10.1} {:>9.2} {:>8.2} {:>14.1} {:>12.0} {:>8.3}",
                ty.llama_name(),
                n,
                secs,
                size as f64 / 1e6 / secs,
                secs / copy_s,
                cpu,
                size as f64 / 1e6 / cpu,
                rss,
                report.output_bytes as f64 / 1e9
            );
            if with_llama_cpp {
                let ref_out = dir.path().join(format!("ref-{ty}-{n}.gguf"));
                match llama_cpp_quantize(&input, &ref_out, *ty, n) {
                    Some(r) => {
                        if n == 1 {
                            summary.push((*ty, r.secs, secs, r.sha256 == report.sha256));
                        }
                        println!(
                        "{:<8} {:>7} {:>9.2} {:>10.1} {:>9.2} {:>8.2} {:>14.1} {:>12.0}   llama.cpp; ours is {:.2}× faster (wall), {:.2}× (cpu); bytes {}",
                        "  llama",
                        n,
                        r.secs,
                        size as f64 / 1e6 / r.secs,
                        r.secs / copy_s,
                        r.cpu,
                        size as f64 / 1e6 / r.cpu,
                        r.peak_rss_mib,
                        r.secs / secs,
                        r.cpu / cpu,
                        if r.sha256 == report.sha256 { "IDENTICAL" } else { "DIFFER" }
                    )
                    }
                    None => println!("  llama.cpp run failed (is llama-cpp-python installed?)"),
                }
            }
            if n == 1 {
                single = Some(secs);
            } else if let Some(s1) = single {
                println!(
                    "{:<8} {:>7} speed-up over 1 thread: {:.2}×",
                    "",
                    n,
                    s1 / secs
                );
            }
            shas.push(report.sha256);
        }
        assert!(
            shas.windows(2).all(|w| w[0] == w[1]),
            "{ty}: output depends on the thread count"
        );
    }
    if !summary.is_empty() {
        println!(
            "\nsingle thread, same input, same run:\n{:<8} {:>12} {:>9} {:>7} {:>10}",
            "type", "llama.cpp s", "ours s", "ratio", "identical"
        );
        for (ty, theirs, ours, same) in &summary {
            println!(
                "{:<8} {:>12.2} {:>9.2} {:>6.2}× {:>10}",
                ty.llama_name(),
                theirs,
                ours,
                theirs / ours,
                if *same { "yes" } else { "NO" }
            );
        }
    }
}
