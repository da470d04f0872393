//! The lane-parallel k-quant kernels must write exactly the bytes of the scalar reference port
//! (itself checked against ggml's golden output) on any row.
#![allow(clippy::unwrap_used)]

use loraforge_quantize::{quantize_rows, quantize_rows_reference, GgmlType};
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

fn same_bytes(x: &[f32]) -> Result<(), TestCaseError> {
    for ty in K_TYPES {
        let n = ty.row_size(x.len() as u64).unwrap() as usize;
        let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
        quantize_rows(ty, x, x.len(), &mut a).unwrap();
        quantize_rows_reference(ty, x, x.len(), &mut b).unwrap();
        prop_assert_eq!(a, b, "{}", ty);
    }
    Ok(())
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
