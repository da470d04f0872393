//! bitsandbytes' NF4 quantization with double quantization of the block scales, bit-exact.
//!
//! Followed: bitsandbytes 0.50.2 `functional.quantize_4bit` (`compress_statistics=True`),
//! `backends/default/ops.py` (`quantize_4bit`, the plain-torch kernel the CPU uses),
//! `csrc/cpu_ops.cpp` (`quantize_cpu_impl`, the CPU kernel of `quantize_blockwise`), and
//! torch 2.15's CPU `mean` (`sum` then divide; `aten/src/ATen/native/cpu/SumKernel.cpp`).

use crate::torch_sum::torch_mean;

/// Elements per NF4 block (`blocksize`, transformers' default for 4-bit).
pub const BLOCKSIZE: usize = 64;
/// Block scales per nested block (`quantize_blockwise(..., blocksize=256)` of the double quant).
pub const NESTED_BLOCKSIZE: usize = 256;

include!("codes.rs");

/// The NF4 code book as f32, ascending (what `weight.quant_map` holds).
pub fn nf4_code() -> [f32; 16] {
    NF4_CODE_BITS.map(f32::from_bits)
}

/// bitsandbytes' 8-bit dynamic map (what `weight.nested_quant_map` holds).
pub fn dynamic_code() -> [f32; 256] {
    DYNAMIC_CODE_BITS.map(f32::from_bits)
}

/// One weight matrix quantized the way `Params4bit` does it.
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Weight {
    /// Two 4-bit codes per byte, first element in the high nibble; `ceil(n/2)` bytes.
    pub packed: Vec<u8>,
    /// 8-bit codes of `absmax - offset` (the double-quantized block scales), one per block of 64.
    pub absmax: Vec<u8>,
    /// Scale of each block of 256 `absmax` codes.
    pub nested_absmax: Vec<f32>,
    /// Mean of the block scales, subtracted before their quantization (`nested_offset`).
    pub offset: f32,
}

/// Midpoints between consecutive NF4 codes, computed in f32 like torch:
/// `(code[:-1] + code[1:]) / 2`.
fn nf4_bounds() -> [f32; 15] {
    let code = nf4_code();
    std::array::from_fn(|i| (code[i] + code[i + 1]) / 2.0)
}

/// `torch.bucketize(x, bounds)` (right=False): the number of bounds strictly below `x`.
#[inline]
fn bucketize(x: f32, bounds: &[f32; 15]) -> u8 {
    bounds.iter().filter(|&&b| b < x).count() as u8
}

/// `torch.clamp(x, -1, 1)` (NaN stays NaN; callers refuse non-finite weights).
#[inline]
fn clamp1(x: f32) -> f32 {
    x.clamp(-1.0, 1.0)
}

/// The default (torch) `quantize_4bit` kernel: per-block absmax and packed NF4 codes.
///
/// Full blocks are scaled by `x * (1 / max(absmax, 1e-38))` and store the unclamped absmax; the
/// tail block (when `n % 64 != 0`) is scaled by `x / am` with `am = max(absmax, 1e-38)` stored.
pub fn quantize_blocks(values: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let bounds = nf4_bounds();
    let n = values.len();
    let full = n - n % BLOCKSIZE;
    let mut codes: Vec<u8> = Vec::with_capacity(n + 1);
    let mut absmax = Vec::with_capacity(n.div_ceil(BLOCKSIZE));
    for block in values[..full].chunks_exact(BLOCKSIZE) {
        let am = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let inv = 1.0 / am.max(1e-38);
        codes.extend(block.iter().map(|&v| bucketize(clamp1(v * inv), &bounds)));
        absmax.push(am);
    }
    if full < n {
        let tail = &values[full..];
        let am = tail.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-38);
        codes.extend(tail.iter().map(|&v| bucketize(clamp1(v / am), &bounds)));
        absmax.push(am);
    }
    if codes.len() % 2 == 1 {
        // `torch.nn.functional.pad(scaled, (0, 1))`: a scaled 0.0, i.e. NF4's zero code.
        codes.push(bucketize(0.0, &bounds));
    }
    let packed = codes.chunks_exact(2).map(|p| (p[0] << 4) | p[1]).collect();
    (packed, absmax)
}

/// `build_quantize_lut`: maps 65536 evenly spaced values of [-1, 1] to the nearest code.
fn build_lut(code: &[f32; 256]) -> Vec<u8> {
    const LUT_SIZE: usize = 65536;
    let mid: Vec<f32> = (0..255).map(|i| 0.5f32 * (code[i] + code[i + 1])).collect();
    let mut lut = vec![0u8; LUT_SIZE];
    let mut ci = 0usize;
    for (i, slot) in lut.iter_mut().enumerate() {
        let val = -1.0f32 + (2.0f32 * i as f32) / (LUT_SIZE - 1) as f32;
        while ci < 255 && mid[ci] < val {
            ci += 1;
        }
        *slot = ci as u8;
    }
    lut
}

/// `norm_to_lut_index`: `(uint16)((clamp(v) + 1) * 0.5 * 65535 + 0.5)`, all in f32.
#[inline]
fn lut_index(v: f32) -> usize {
    let v = v.clamp(-1.0, 1.0);
    (((v + 1.0) * 0.5f32 * 65535.0f32) + 0.5f32) as u16 as usize
}

/// The CPU kernel of `quantize_blockwise` (`cquantize_blockwise_cpu_fp32`) with the dynamic map.
pub fn quantize_blockwise_dynamic(values: &[f32], blocksize: usize) -> (Vec<u8>, Vec<f32>) {
    let lut = build_lut(&dynamic_code());
    let mut out = vec![0u8; values.len()];
    let mut absmax = Vec::with_capacity(values.len().div_ceil(blocksize));
    for (block, dst) in values.chunks(blocksize).zip(out.chunks_mut(blocksize)) {
        let am = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        absmax.push(am);
        if am == 0.0 {
            continue;
        }
        let inv = 1.0f32 / am;
        for (o, &v) in dst.iter_mut().zip(block) {
            *o = lut[lut_index(v * inv)];
        }
    }
    (out, absmax)
}

/// The block scales `quantize_blocks` computes, without the codes.
fn block_absmax(values: &[f32]) -> Vec<f32> {
    let full = values.len() - values.len() % BLOCKSIZE;
    let mut absmax: Vec<f32> = values[..full]
        .chunks_exact(BLOCKSIZE)
        .map(|b| b.iter().fold(0f32, |m, v| m.max(v.abs())))
        .collect();
    if full < values.len() {
        let tail = &values[full..];
        absmax.push(tail.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-38));
    }
    absmax
}

/// `nested_offset`: the mean of the block scales (torch's `absmax.mean()`).
pub fn scale_offset(values: &[f32], torch_threads: usize) -> f32 {
    torch_mean(&block_absmax(values), torch_threads)
}

/// `quantize_4bit(A, blocksize=64, compress_statistics=True, quant_type="nf4")` on CPU.
///
/// `torch_threads` is the thread count of the torch that would run the reference: the mean of
/// the block scales is a parallel reduction over more than 32768 blocks, so its rounding depends
/// on it (below that it does not).
pub fn quantize_nf4(values: &[f32], torch_threads: usize) -> Nf4Weight {
    let (packed, absmax) = quantize_blocks(values);
    let offset = torch_mean(&absmax, torch_threads);
    let centered: Vec<f32> = absmax.iter().map(|a| a - offset).collect();
    let (qabsmax, nested_absmax) = quantize_blockwise_dynamic(&centered, NESTED_BLOCKSIZE);
    Nf4Weight {
        packed,
        absmax: qabsmax,
        nested_absmax,
        offset,
    }
}

/// NF4 → f32 (`dequantize_4bit` after `dequantize_blockwise` of the scales), for checks.
pub fn dequantize_nf4(w: &Nf4Weight, n: usize) -> Vec<f32> {
    let nf4 = nf4_code();
    let dynamic = dynamic_code();
    let scales: Vec<f32> = w
        .absmax
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            dynamic[q as usize]
                * w.nested_absmax
                    .get(i / NESTED_BLOCKSIZE)
                    .copied()
                    .unwrap_or(0.0)
                + w.offset
        })
        .collect();
    (0..n)
        .map(|i| {
            let byte = w.packed.get(i / 2).copied().unwrap_or(0);
            let q = if i % 2 == 0 { byte >> 4 } else { byte & 0xF };
            nf4[q as usize] * scales.get(i / BLOCKSIZE).copied().unwrap_or(0.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn codes_are_sorted_and_span_minus_one_to_one() {
        let c = nf4_code();
        assert_eq!((c[0], c[7], c[15]), (-1.0, 0.0, 1.0));
        assert!(c.windows(2).all(|w| w[0] < w[1]));
        let d = dynamic_code();
        assert!(d.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(d[255], 1.0);
    }

    #[test]
    fn ties_go_to_the_lower_code() {
        let b = nf4_bounds();
        assert_eq!(bucketize(b[10], &b), 10);
        assert_eq!(bucketize(f32::from_bits(b[10].to_bits() + 1), &b), 11);
    }

    #[test]
    fn round_trip_error_is_bounded_by_the_code_spacing() {
        let values: Vec<f32> = (0..1000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 300.0)
            .collect();
        let w = quantize_nf4(&values, 1);
        let back = dequantize_nf4(&w, values.len());
        for (a, b) in values.iter().zip(&back) {
            assert!((a - b).abs() < 0.05, "{a} vs {b}");
        }
    }

    #[test]
    fn odd_counts_pad_one_zero_code() {
        let (packed, absmax) = quantize_blocks(&[1.0, -1.0, 0.5]);
        assert_eq!(packed.len(), 2);
        assert_eq!(absmax, vec![1.0]);
        assert_eq!(packed[0], 0xF0);
        assert_eq!(packed[1] & 0x0F, 7);
    }
}
