//! Per-kernel quantization throughput, single thread, in bytes of f32 input per second.
//!
//! Run: `cargo bench -p loraforge-benches --bench quantize_kernels`
//! Input: weight-like rows (N(0, 0.02) with a few hot columns), 16 rows of 4096.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use loraforge_quantize::{
    dequantize_rows, quantize_rows, quantize_rows_reference, quantize_rows_with_isa, GgmlType, Isa,
};

const N_PER_ROW: usize = 4096;
const ROWS: usize = 16;

/// Deterministic weight-like data (xorshift + Box-Muller), no extra dependencies.
fn weights() -> Vec<f32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..ROWS * N_PER_ROW)
        .map(|i| {
            let (u1, u2) = (uniform(), uniform());
            let g = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let hot = if i % N_PER_ROW % 512 == 7 { 8.0 } else { 1.0 };
            (g * 0.02 * hot) as f32
        })
        .collect()
}

fn bench_kernels(c: &mut Criterion) {
    let x = weights();
    let mut group = c.benchmark_group("quantize_rows");
    group.throughput(Throughput::Bytes((x.len() * 4) as u64));
    for ty in [
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ] {
        let Some(row) = ty.row_size(N_PER_ROW as u64) else {
            continue;
        };
        let mut dst = vec![0u8; row as usize * ROWS];
        group.bench_with_input(BenchmarkId::new("fast", ty.name()), &ty, |b, &ty| {
            b.iter(|| quantize_rows(ty, black_box(&x), N_PER_ROW, &mut dst))
        });
        if matches!(
            ty,
            GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K
        ) {
            // Each instruction-set level below the one dispatch picks, forced.
            for isa in Isa::ALL
                .into_iter()
                .filter(|&i| i.is_available() && i < Isa::detected())
            {
                let id = BenchmarkId::new(format!("fast-{isa}"), ty.name());
                group.bench_with_input(id, &ty, |b, &ty| {
                    b.iter(|| quantize_rows_with_isa(isa, ty, black_box(&x), N_PER_ROW, &mut dst))
                });
            }
            group.bench_with_input(BenchmarkId::new("reference", ty.name()), &ty, |b, &ty| {
                b.iter(|| quantize_rows_reference(ty, black_box(&x), N_PER_ROW, &mut dst))
            });
        }
    }
    group.finish();
}

/// Widening of F16/BF16 input rows to f32 (the first step of quantizing an F16 model) and
/// block dequantization, in bytes of f32 output per second.
fn bench_dequantize(c: &mut Criterion) {
    let x = weights();
    let mut y = vec![0f32; x.len()];
    let mut group = c.benchmark_group("dequantize_rows");
    group.throughput(Throughput::Bytes((x.len() * 4) as u64));
    for ty in [
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q6K,
    ] {
        let Some(row) = ty.row_size(N_PER_ROW as u64) else {
            continue;
        };
        let mut q = vec![0u8; row as usize * ROWS];
        if quantize_rows(ty, &x, N_PER_ROW, &mut q).is_err() {
            continue;
        }
        group.bench_with_input(BenchmarkId::from_parameter(ty.name()), &ty, |b, &ty| {
            b.iter(|| dequantize_rows(ty, black_box(&q), N_PER_ROW, &mut y))
        });
    }
    group.finish();
}

/// bitsandbytes NF4 (the merged_4bit save method): the fast block kernel, one thread, against
/// the scalar port it is tested against.
fn bench_nf4(c: &mut Criterion) {
    let x = weights();
    let mut group = c.benchmark_group("nf4");
    group.throughput(Throughput::Bytes((x.len() * 4) as u64));
    group.bench_function("fast", |b| {
        b.iter(|| loraforge_nf4::quantize_blocks(black_box(&x), 1))
    });
    group.bench_function("scalar", |b| {
        b.iter(|| loraforge_nf4::quantize_blocks_scalar(black_box(&x)))
    });
    group.finish();
}

criterion_group!(benches, bench_kernels, bench_dequantize, bench_nf4);
criterion_main!(benches);
