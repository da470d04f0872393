//! Row-level entry points: geometry checks and dispatch to the block kernels.

use crate::blocks::{
    BlockFormat, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0,
    BlockQ5_1, BlockQ6K, BlockQ8_0,
};
use crate::fast;
use crate::fp::{bf16_to_fp32, fp16_to_fp32, fp32_to_bf16, fp32_to_fp16};
use crate::isa::Isa;
use crate::{GgmlType, QuantizeError};

/// Types [`quantize_rows`] and [`dequantize_rows`] support.
pub const SUPPORTED_TYPES: [GgmlType; 13] = [
    GgmlType::F32,
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
];

/// Check geometry; returns the number of rows.
fn check(
    ty: GgmlType,
    n_values: usize,
    n_bytes: usize,
    n_per_row: usize,
    values_are_src: bool,
) -> Result<usize, QuantizeError> {
    if !SUPPORTED_TYPES.contains(&ty) {
        return Err(QuantizeError::Unsupported(ty));
    }
    if n_per_row == 0 {
        return Err(QuantizeError::EmptyRow);
    }
    if !n_per_row.is_multiple_of(ty.block_size()) {
        return Err(QuantizeError::NotBlockMultiple { ty, n: n_per_row });
    }
    if !n_values.is_multiple_of(n_per_row) {
        return Err(QuantizeError::RaggedRows {
            len: n_values,
            n_per_row,
        });
    }
    let nrows = n_values / n_per_row;
    let row_bytes = (n_per_row / ty.block_size()) * ty.type_size();
    let expected = nrows
        .checked_mul(row_bytes)
        .ok_or(QuantizeError::RaggedRows {
            len: n_values,
            n_per_row,
        })?;
    if n_bytes != expected {
        return Err(QuantizeError::LengthMismatch {
            what: if values_are_src {
                "destination"
            } else {
                "source"
            },
            ty,
            n_per_row,
            expected,
            got: n_bytes,
            unit: "bytes",
        });
    }
    Ok(nrows)
}

// The block loops below run after `check`, which makes `values` a whole number of blocks of
// `B::Values` and `bytes` exactly as many `B` blocks.

/// [`BlockFormat::quantize_ref`] over whole blocks.
fn quantize_blocks<B: BlockFormat>(values: &[f32], bytes: &mut [u8]) {
    let blocks: &mut [B] = bytemuck::cast_slice_mut(bytes);
    for (x, y) in bytemuck::cast_slice::<f32, B::Values>(values)
        .iter()
        .zip(blocks)
    {
        B::quantize_ref(x, y);
    }
}

/// [`BlockFormat::dequantize`] over whole blocks.
fn dequantize_blocks<B: BlockFormat>(bytes: &[u8], values: &mut [f32]) {
    let out: &mut [B::Values] = bytemuck::cast_slice_mut(values);
    for (b, y) in bytemuck::cast_slice::<u8, B>(bytes).iter().zip(out) {
        b.dequantize(y);
    }
}

/// Every block's [`BlockFormat::f16_scales`] must be finite.
fn validate_blocks<B: BlockFormat>(ty: GgmlType, bytes: &[u8]) -> Result<(), QuantizeError> {
    for (i, b) in bytemuck::cast_slice::<u8, B>(bytes).iter().enumerate() {
        for scale in b.f16_scales() {
            check_f16(ty, scale, i)?;
        }
    }
    Ok(())
}

/// Quantize `src` — a whole number of rows of `n_per_row` values — into `dst`, which must be
/// exactly `rows × row_size(ty, n_per_row)` bytes.
///
/// The bytes are identical to ggml's `ggml_quantize_chunk` without an importance matrix
/// (`quantize_row_*_ref`). Supported: [`SUPPORTED_TYPES`] (F32, F16, BF16, Q8_0, Q5_0, Q5_1,
/// Q4_0, Q4_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K).
/// Like ggml, the input is not validated: check it with [`find_non_finite`] first.
pub fn quantize_rows(
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
    dst: &mut [u8],
) -> Result<(), QuantizeError> {
    quantize_rows_at(crate::isa::active_isa(), ty, src, n_per_row, dst)
}

/// [`quantize_rows`] at an explicit instruction-set level instead of the one dispatch picks,
/// so that tests can check every level the CPU has against [`quantize_rows_reference`]. Same
/// contract and bytes; [`QuantizeError::IsaUnavailable`] when the CPU lacks `isa`.
pub fn quantize_rows_with_isa(
    isa: Isa,
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
    dst: &mut [u8],
) -> Result<(), QuantizeError> {
    if !isa.is_available() {
        return Err(QuantizeError::IsaUnavailable {
            requested: isa,
            detected: Isa::detected(),
        });
    }
    quantize_rows_at(isa, ty, src, n_per_row, dst)
}

fn quantize_rows_at(
    isa: Isa,
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
    dst: &mut [u8],
) -> Result<(), QuantizeError> {
    check(ty, src.len(), dst.len(), n_per_row, true)?;
    match ty {
        GgmlType::F32 => {
            for (o, v) in dst.chunks_exact_mut(4).zip(src) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (o, &v) in dst.chunks_exact_mut(2).zip(src) {
                o.copy_from_slice(&fp32_to_fp16(v).to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for (o, &v) in dst.chunks_exact_mut(2).zip(src) {
                o.copy_from_slice(&fp32_to_bf16(v).to_le_bytes());
            }
        }
        GgmlType::Q8_0 => fast::quantize_q8_0(isa, src, bytemuck::cast_slice_mut(dst)),
        GgmlType::Q5_0 => fast::quantize_q5_0(isa, src, bytemuck::cast_slice_mut(dst)),
        GgmlType::Q5_1 => fast::quantize_q5_1(isa, src, bytemuck::cast_slice_mut(dst)),
        GgmlType::Q4_0 => fast::quantize_q4_0(isa, src, bytemuck::cast_slice_mut(dst)),
        GgmlType::Q4_1 => fast::quantize_q4_1(isa, src, bytemuck::cast_slice_mut(dst)),
        GgmlType::Q2K => fast::quantize_q2_k(isa, src, bytemuck::cast_slice_mut(dst)),
        GgmlType::Q3K => fast::quantize_q3_k(isa, src, bytemuck::cast_slice_mut(dst)),
        GgmlType::Q4K => fast::quantize_q4_k(isa, src, bytemuck::cast_slice_mut(dst)),
        GgmlType::Q5K => fast::quantize_q5_k(isa, src, bytemuck::cast_slice_mut(dst)),
        GgmlType::Q6K => fast::quantize_q6_k(isa, src, bytemuck::cast_slice_mut(dst)),
        other => return Err(QuantizeError::Unsupported(other)),
    }
    Ok(())
}

/// [`quantize_rows`] through the plain scalar port only (the oracle the faster kernels are
/// tested against). Same contract and bytes.
pub fn quantize_rows_reference(
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
    dst: &mut [u8],
) -> Result<(), QuantizeError> {
    check(ty, src.len(), dst.len(), n_per_row, true)?;
    match ty {
        GgmlType::Q8_0 => quantize_blocks::<BlockQ8_0>(src, dst),
        GgmlType::Q5_0 => quantize_blocks::<BlockQ5_0>(src, dst),
        GgmlType::Q5_1 => quantize_blocks::<BlockQ5_1>(src, dst),
        GgmlType::Q4_0 => quantize_blocks::<BlockQ4_0>(src, dst),
        GgmlType::Q4_1 => quantize_blocks::<BlockQ4_1>(src, dst),
        GgmlType::Q2K => quantize_blocks::<BlockQ2K>(src, dst),
        GgmlType::Q3K => quantize_blocks::<BlockQ3K>(src, dst),
        GgmlType::Q4K => quantize_blocks::<BlockQ4K>(src, dst),
        GgmlType::Q5K => quantize_blocks::<BlockQ5K>(src, dst),
        GgmlType::Q6K => quantize_blocks::<BlockQ6K>(src, dst),
        _ => return quantize_rows(ty, src, n_per_row, dst),
    }
    Ok(())
}

/// Inverse of [`quantize_rows`]: ggml's `dequantize_row_*` (and the exact F16/BF16/F32 widening).
/// `src` must be exactly the bytes of `dst.len() / n_per_row` rows.
pub fn dequantize_rows(
    ty: GgmlType,
    src: &[u8],
    n_per_row: usize,
    dst: &mut [f32],
) -> Result<(), QuantizeError> {
    check(ty, dst.len(), src.len(), n_per_row, false)?;
    match ty {
        GgmlType::F32 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => match bytemuck::try_cast_slice::<u8, half::f16>(src) {
            // Aligned little-endian input: `half` converts slices with F16C when the CPU has
            // it (exact, like the scalar path).
            Ok(h) if cfg!(target_endian = "little") => {
                use half::slice::HalfFloatSliceExt;
                h.convert_to_f32_slice(dst);
            }
            _ => {
                for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    *o = fp16_to_fp32(u16::from_le_bytes([b[0], b[1]]));
                }
            }
        },
        GgmlType::BF16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = bf16_to_fp32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        GgmlType::Q8_0 => dequantize_blocks::<BlockQ8_0>(src, dst),
        GgmlType::Q5_0 => dequantize_blocks::<BlockQ5_0>(src, dst),
        GgmlType::Q5_1 => dequantize_blocks::<BlockQ5_1>(src, dst),
        GgmlType::Q4_0 => dequantize_blocks::<BlockQ4_0>(src, dst),
        GgmlType::Q4_1 => dequantize_blocks::<BlockQ4_1>(src, dst),
        GgmlType::Q2K => dequantize_blocks::<BlockQ2K>(src, dst),
        GgmlType::Q3K => dequantize_blocks::<BlockQ3K>(src, dst),
        GgmlType::Q4K => dequantize_blocks::<BlockQ4K>(src, dst),
        GgmlType::Q5K => dequantize_blocks::<BlockQ5K>(src, dst),
        GgmlType::Q6K => dequantize_blocks::<BlockQ6K>(src, dst),
        other => return Err(QuantizeError::Unsupported(other)),
    }
    Ok(())
}

/// The first NaN or infinity in `src` as (row, column), like ggml's row validation reports it.
/// Returns `None` when every value is finite (or `n_per_row` is 0).
pub fn find_non_finite(src: &[f32], n_per_row: usize) -> Option<(usize, usize)> {
    if n_per_row == 0 {
        return None;
    }
    // Chunks are checked without an early exit (so the check vectorizes: exponent bits all
    // ones is NaN or infinity); only a chunk that has a bad value is searched.
    const CHUNK: usize = 256;
    let bad = |v: &f32| (v.to_bits() & 0x7FFF_FFFF) >= 0x7F80_0000;
    let c = src
        .chunks(CHUNK)
        .position(|c| c.iter().fold(false, |any, v| any | bad(v)))?;
    let i = c * CHUNK + src[c * CHUNK..].iter().position(bad)?;
    Some((i / n_per_row, i % n_per_row))
}

/// [`find_non_finite`] as a `Result`: [`QuantizeError::NonFinite`] names the first bad value.
pub fn ensure_finite(src: &[f32], n_per_row: usize) -> Result<(), QuantizeError> {
    match find_non_finite(src, n_per_row) {
        Some((row, index)) => Err(QuantizeError::NonFinite { row, index }),
        None => Ok(()),
    }
}

fn check_f16(ty: GgmlType, h: [u8; 2], block: usize) -> Result<(), QuantizeError> {
    let f = u16::from_le_bytes(h);
    if f & 0x7C00 != 0x7C00 {
        return Ok(());
    }
    let what = if f & 0x03FF == 0 { "inf" } else { "nan" };
    Err(QuantizeError::InvalidData { ty, block, what })
}

/// ggml's `ggml_validate_row_data`, which `llama_model_quantize` runs on every quantized chunk
/// (failing with "quantized data validation failed"): F32/F16/BF16 values must be finite, and
/// the f16 scales of every block (`d`, plus `dmin` / `m` where the format has one) too.
/// `data` must be a whole number of blocks.
pub fn validate_row_data(ty: GgmlType, data: &[u8]) -> Result<(), QuantizeError> {
    if !SUPPORTED_TYPES.contains(&ty) {
        return Err(QuantizeError::Unsupported(ty));
    }
    if !data.len().is_multiple_of(ty.type_size()) {
        return Err(QuantizeError::LengthMismatch {
            what: "data",
            ty,
            n_per_row: ty.block_size(),
            expected: data.len() - data.len() % ty.type_size(),
            got: data.len(),
            unit: "bytes",
        });
    }
    let bad = |block, what| Err(QuantizeError::InvalidData { ty, block, what });
    match ty {
        GgmlType::F32 => {
            for (i, b) in data.chunks_exact(4).enumerate() {
                let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if v.is_nan() {
                    return bad(i, "nan");
                }
                if v.is_infinite() {
                    return bad(i, "inf");
                }
            }
        }
        GgmlType::BF16 => {
            // ggml counts NaNs first, then infinities, over the whole buffer.
            let vals = || {
                data.chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7FFF)
            };
            if let Some(i) = vals().position(|v| v > 0x7F80) {
                return bad(i, "nan");
            }
            if let Some(i) = vals().position(|v| v == 0x7F80) {
                return bad(i, "inf");
            }
        }
        GgmlType::F16 => {
            for (i, b) in data.chunks_exact(2).enumerate() {
                check_f16(ty, [b[0], b[1]], i)?;
            }
        }
        GgmlType::Q8_0 => validate_blocks::<BlockQ8_0>(ty, data)?,
        GgmlType::Q5_0 => validate_blocks::<BlockQ5_0>(ty, data)?,
        GgmlType::Q5_1 => validate_blocks::<BlockQ5_1>(ty, data)?,
        GgmlType::Q4_0 => validate_blocks::<BlockQ4_0>(ty, data)?,
        GgmlType::Q4_1 => validate_blocks::<BlockQ4_1>(ty, data)?,
        GgmlType::Q2K => validate_blocks::<BlockQ2K>(ty, data)?,
        GgmlType::Q3K => validate_blocks::<BlockQ3K>(ty, data)?,
        GgmlType::Q4K => validate_blocks::<BlockQ4K>(ty, data)?,
        GgmlType::Q5K => validate_blocks::<BlockQ5K>(ty, data)?,
        GgmlType::Q6K => validate_blocks::<BlockQ6K>(ty, data)?,
        other => return Err(QuantizeError::Unsupported(other)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first bad value is found wherever it sits relative to the 256-value chunks, for
    /// NaN and both infinities, and the largest finite values are not flagged.
    #[test]
    fn find_non_finite_finds_the_first_bad_value() {
        let n = 1000;
        let mut x = vec![0.5f32; 3 * n];
        x[7] = f32::MAX;
        x[8] = -f32::MAX;
        assert_eq!(find_non_finite(&x, n), None);
        for at in [0, 255, 256, 511, 1000, 2999] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut y = x.clone();
                y[at] = bad;
                if at + 300 < y.len() {
                    y[at + 300] = f32::NAN; // a later one does not matter
                }
                assert_eq!(
                    find_non_finite(&y, n),
                    Some((at / n, at % n)),
                    "{bad} at {at}"
                );
            }
        }
    }

    /// Every f16 scale of every block format is checked, wherever it sits in the block.
    #[test]
    fn validate_row_data_checks_each_f16_scale() {
        // (type, byte offsets of its f16 scales in a block)
        let cases = [
            (GgmlType::Q8_0, &[0][..]),
            (GgmlType::Q5_0, &[0]),
            (GgmlType::Q5_1, &[0, 2]),
            (GgmlType::Q4_0, &[0]),
            (GgmlType::Q4_1, &[0, 2]),
            (GgmlType::Q2K, &[80, 82]),
            (GgmlType::Q3K, &[108]),
            (GgmlType::Q4K, &[0, 2]),
            (GgmlType::Q5K, &[0, 2]),
            (GgmlType::Q6K, &[208]),
        ];
        for (ty, offsets) in cases {
            let size = ty.type_size();
            let mut data = vec![0u8; 2 * size];
            assert_eq!(validate_row_data(ty, &data), Ok(()), "{ty}");
            for &at in offsets {
                let mut bad = data.clone();
                bad[size + at..size + at + 2].copy_from_slice(&0x7C00u16.to_le_bytes());
                assert_eq!(
                    validate_row_data(ty, &bad),
                    Err(QuantizeError::InvalidData {
                        ty,
                        block: 1,
                        what: "inf"
                    }),
                    "{ty} scale at byte {at}"
                );
            }
            // A non-scale byte set to the same pattern is not a scale.
            data[size + 4..size + 6].copy_from_slice(&0x7C00u16.to_le_bytes());
            if !offsets.contains(&4) {
                assert_eq!(validate_row_data(ty, &data), Ok(()), "{ty}");
            }
        }
    }
}
