//! The lane-parallel kernels must write exactly the bytes of the scalar reference port (itself
//! checked against ggml's golden output) on any row, at every instruction-set level the CPU
//! has — each level forced explicitly with `quantize_rows_with_isa`, not just the one dispatch
//! picks.
#![allow(clippy::unwrap_used)]

use loraforge_quantize::{
    quantize_rows, quantize_rows_reference, quantize_rows_with_isa, GgmlType, Isa,
};
use proptest::prelude::*;

const K_TYPES: [GgmlType; 10] = [
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
];

fn same_bytes_at(isa: Isa, x: &[f32], n_per_row: usize) -> Result<(), TestCaseError> {
    for ty in K_TYPES {
        let n = ty.row_size(x.len() as u64).unwrap() as usize;
        let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
        quantize_rows_with_isa(isa, ty, x, n_per_row, &mut a).unwrap();
        quantize_rows_reference(ty, x, n_per_row, &mut b).unwrap();
        prop_assert!(a == b, "{} at {}", ty, isa);
    }
    Ok(())
}

/// Every level this CPU has, and what dispatch picks.
fn same_bytes(x: &[f32]) -> Result<(), TestCaseError> {
    for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
        same_bytes_at(isa, x, x.len())?;
    }
    for ty in K_TYPES {
        let n = ty.row_size(x.len() as u64).unwrap() as usize;
        let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
        quantize_rows(ty, x, x.len(), &mut a).unwrap();
        quantize_rows_reference(ty, x, x.len(), &mut b).unwrap();
        prop_assert!(a == b, "{}", ty);
    }
    Ok(())
}

/// Rows of every kind the searches must get right, named for the failure message: weight-like
/// noise, constant, all-zero, tiny and subnormal, huge, one outlier, negative-only, mixed
/// sub-blocks; 1, 2, 3, 5 and 7 super-blocks per row so the AVX-512 groups of four, pairs and
/// the odd last super-block are all exercised.
fn varied_rows() -> Vec<(String, Vec<f32>)> {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut u = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut gauss = move || ((-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos()) as f32;
    let mut rows = Vec::new();
    for blocks in [1usize, 2, 3, 5, 7] {
        let n = 256 * blocks;
        let noise: Vec<f32> = (0..n).map(|_| gauss() * 0.02).collect();
        let kinds: Vec<(&str, Vec<f32>)> = vec![
            ("weight-like", noise.clone()),
            ("constant", vec![0.375; n]),
            ("constant negative", vec![-1.25; n]),
            ("all-zero", vec![0.0; n]),
            ("tiny", noise.iter().map(|v| v * 1e-30).collect()),
            ("subnormal", noise.iter().map(|v| v * 1e-36).collect()),
            ("huge", noise.iter().map(|v| v * 1e34).collect()),
            ("large", noise.iter().map(|v| v * 1e6).collect()),
            ("one outlier", {
                let mut r = noise.clone();
                r[n / 3] = 50.0;
                r
            }),
            (
                "negative-only",
                noise.iter().map(|v| -v.abs() - 1e-3).collect(),
            ),
            (
                "positive-only",
                noise.iter().map(|v| v.abs() + 1e-3).collect(),
            ),
            ("mixed sub-blocks", {
                let mut r = noise.clone();
                for (i, v) in r.iter_mut().enumerate() {
                    match i / 16 % 6 {
                        0 => *v = 0.0,
                        1 => *v = 0.5,
                        2 => *v *= 1e-20,
                        3 => *v = -v.abs(),
                        _ => {}
                    }
                }
                r
            }),
        ];
        for (name, row) in kinds {
            rows.push((format!("{name}, {blocks} super-blocks"), row));
        }
    }
    rows
}

/// One level against the reference on every row of `varied_rows`, also as 2 rows per buffer.
fn level_equals_reference(isa: Isa) {
    if !isa.is_available() {
        eprintln!(
            "{isa}: this CPU lacks it ({} detected); nothing to check",
            Isa::detected()
        );
        return;
    }
    for (name, row) in varied_rows() {
        same_bytes_at(isa, &row, row.len()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let mut two = varied_rows()[0].1.clone();
    two.extend_from_within(..);
    same_bytes_at(isa, &two, two.len() / 2).unwrap();
}

#[test]
fn portable_equals_reference() {
    level_equals_reference(Isa::Portable);
}

#[test]
fn avx2_equals_reference() {
    level_equals_reference(Isa::Avx2);
}

#[test]
fn avx512_equals_reference() {
    level_equals_reference(Isa::Avx512);
}

#[test]
fn unavailable_level_is_an_error() {
    let x = vec![0.5f32; 256];
    let mut out = vec![0u8; GgmlType::Q4K.row_size(256).unwrap() as usize];
    for isa in Isa::ALL {
        let got = quantize_rows_with_isa(isa, GgmlType::Q4K, &x, 256, &mut out);
        assert_eq!(got.is_ok(), isa.is_available(), "{isa}");
    }
}

/// Values that stress the search: mixed magnitudes, exact zeros, repeated values, tiny and
/// huge entries, all-positive sub-blocks.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -1.0f32..1.0,
        2 => -0.05f32..0.05,
        1 => Just(0.0f32),
        1 => prop::sample::select(vec![0.5f32, -0.5, 1.5, 7.5, -15.5, 0.25]),
        1 => -1e-6f32..1e-6,
        1 => -3e4f32..3e4,
        1 => prop::num::f32::NORMAL.prop_filter("moderate", |v| v.abs() < 1e6 && v.abs() > 1e-30),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn k_quants_fast_equals_reference(row in prop::collection::vec(value(), 256..=256), scale in prop::sample::select(vec![1.0f32, 0.02, 1e-4, 300.0])) {
        let x: Vec<f32> = row.iter().map(|v| v * scale).collect();
        same_bytes(&x)?;
    }

    #[test]
    fn k_quants_fast_equals_reference_with_flat_sub_blocks(base in prop::collection::vec(-2.0f32..2.0, 16..=16), noise in prop::collection::vec(value(), 512..=512), mask in any::<u32>()) {
        // Some 16/32-element runs constant (or zero), the rest noise.
        let x: Vec<f32> = (0..512).map(|i| if mask >> (i / 16 % 32) & 1 == 1 { base[i / 32] } else { noise[i] }).collect();
        same_bytes(&x)?;
    }
}

#[test]
fn k_quants_fast_equals_reference_on_long_gaussian_rows() {
    let mut s = 42u64;
    let mut u = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let x: Vec<f32> = (0..4096 * 4)
        .map(|_| ((-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos() * 0.02) as f32)
        .collect();
    same_bytes(&x).unwrap();
}
