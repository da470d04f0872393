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

/// Elements a streaming pass decodes at a time (a multiple of [`BLOCKSIZE`]): small enough to
/// stay in cache, so no weight-sized f32 copy is ever allocated.
const CHUNK: usize = 16 * 1024;

/// A weight given as a decoder: `decode(start, out)` fills `out` with elements
/// `start..start + out.len()` as f32 (e.g. widened from the file's bf16).
pub type Decode<'a> = &'a (dyn Fn(usize, &mut [f32]) + Sync);

/// The default (torch) `quantize_4bit` kernel: per-block absmax and packed NF4 codes.
///
/// Full blocks are scaled by `x * (1 / max(absmax, 1e-38))` and store the unclamped absmax; the
/// tail block (when `n % 64 != 0`) is scaled by `x / am` with `am = max(absmax, 1e-38)` stored.
/// Full blocks go through `quantize_full_blocks` (lane-parallel, split over `threads`), the
/// same arithmetic as [`quantize_blocks_scalar`], which the tests hold it to.
pub fn quantize_blocks(values: &[f32], threads: usize) -> (Vec<u8>, Vec<f32>) {
    quantize_blocks_streamed(
        values.len(),
        &|start, out: &mut [f32]| out.copy_from_slice(&values[start..start + out.len()]),
        threads,
    )
}

/// [`quantize_blocks`] of `n` elements read through `decode`, `CHUNK` elements at a time
/// per thread.
pub fn quantize_blocks_streamed(n: usize, decode: Decode, threads: usize) -> (Vec<u8>, Vec<f32>) {
    let (packed, absmax, _) = quantize_blocks_checked(n, decode, threads);
    (packed, absmax)
}

/// [`quantize_blocks_streamed`], also telling whether every element was finite.
pub(crate) fn quantize_blocks_checked(
    n: usize,
    decode: Decode,
    threads: usize,
) -> (Vec<u8>, Vec<f32>, bool) {
    let bounds = nf4_bounds();
    let full = n - n % BLOCKSIZE;
    let blocks = full / BLOCKSIZE;
    let mut packed = vec![0u8; n.div_ceil(2)];
    let mut absmax = vec![0f32; n.div_ceil(BLOCKSIZE)];
    let mut finite = {
        let (packed_full, _) = packed.split_at_mut(full / 2);
        let (absmax_full, _) = absmax.split_at_mut(blocks);
        let run = |first_block: usize, packed: &mut [u8], absmax: &mut [f32]| -> bool {
            let mut buf = vec![0f32; CHUNK];
            let mut finite = true;
            let per_chunk = CHUNK / BLOCKSIZE;
            for (i, (p, a)) in packed
                .chunks_mut(CHUNK / 2)
                .zip(absmax.chunks_mut(per_chunk))
                .enumerate()
            {
                let start = (first_block + i * per_chunk) * BLOCKSIZE;
                let buf = &mut buf[..a.len() * BLOCKSIZE];
                decode(start, buf);
                finite &= quantize_full_blocks(buf, p, a, &bounds);
            }
            finite
        };
        // Below about 256 K elements per thread a thread costs more than it saves.
        let threads = threads.clamp(1, (full >> 18).max(1));
        if threads == 1 {
            run(0, packed_full, absmax_full)
        } else {
            let per = blocks.div_ceil(threads);
            std::thread::scope(|scope| {
                let parts = packed_full
                    .chunks_mut(per * BLOCKSIZE / 2)
                    .zip(absmax_full.chunks_mut(per))
                    .enumerate();
                let handles: Vec<_> = parts
                    .map(|(i, (p, a))| {
                        let run = &run;
                        scope.spawn(move || run(i * per, p, a))
                    })
                    .collect();
                handles.into_iter().all(|h| h.join().unwrap_or(false))
            })
        }
    };
    if full < n {
        let mut tail = vec![0f32; n - full];
        decode(full, &mut tail);
        finite &= tail.iter().all(|v| v.is_finite());
        let am = tail.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-38);
        let mut codes: Vec<u8> = tail
            .iter()
            .map(|&v| bucketize(clamp1(v / am), &bounds))
            .collect();
        if codes.len() % 2 == 1 {
            // `torch.nn.functional.pad(scaled, (0, 1))`: a scaled 0.0, i.e. NF4's zero code.
            codes.push(bucketize(0.0, &bounds));
        }
        for (dst, p) in packed[full / 2..].iter_mut().zip(codes.chunks_exact(2)) {
            *dst = (p[0] << 4) | p[1];
        }
        absmax[blocks] = am;
    }
    (packed, absmax, finite)
}

/// Full blocks of 64: `values.len() / 64` blocks into 32 packed bytes and one absmax each,
/// compiled with AVX2 when the CPU has it (wider lanes only, no FMA: the same bytes); whether
/// every value was finite.
fn quantize_full_blocks(
    values: &[f32],
    packed: &mut [u8],
    absmax: &mut [f32],
    bounds: &[f32; 15],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { full_blocks_avx2(values, packed, absmax, bounds) };
    }
    full_blocks(values, packed, absmax, bounds)
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn full_blocks_avx2(
    values: &[f32],
    packed: &mut [u8],
    absmax: &mut [f32],
    bounds: &[f32; 15],
) -> bool {
    full_blocks(values, packed, absmax, bounds)
}

/// Written so the compiler keeps the 64 lanes of a block in vector registers: the absmax as 8
/// running maxima (max is exact, so the order does not matter for finite values; a plain
/// comparison instead of `f32::max`, whose NaN rule costs a blend per lane), the bucket as a
/// sum of 15 comparisons per lane (the count `bucketize` takes).
#[inline(always)]
fn full_blocks(values: &[f32], packed: &mut [u8], absmax: &mut [f32], bounds: &[f32; 15]) -> bool {
    let mut ok = [true; 8];
    let blocks = values
        .chunks_exact(BLOCKSIZE)
        .zip(packed.chunks_exact_mut(BLOCKSIZE / 2))
        .zip(absmax.iter_mut());
    for ((block, dst), am_slot) in blocks {
        let block: &[f32; BLOCKSIZE] = block.try_into().unwrap_or(&[0.0; BLOCKSIZE]);
        let mut lanes = [0f32; 8];
        for chunk in block.chunks_exact(8) {
            for ((m, o), v) in lanes.iter_mut().zip(ok.iter_mut()).zip(chunk) {
                let a = v.abs();
                *o &= a <= f32::MAX;
                *m = if a > *m { a } else { *m };
            }
        }
        let am = lanes.iter().fold(0f32, |m, &v| if v > m { v } else { m });
        let inv = 1.0 / am.max(1e-38);
        let mut codes = [0u32; BLOCKSIZE];
        for (c, &v) in codes.iter_mut().zip(block) {
            let x = clamp1(v * inv);
            let mut n = 0u32;
            for &b in bounds {
                n += u32::from(b < x);
            }
            *c = n;
        }
        for (d, pair) in dst.iter_mut().zip(codes.chunks_exact(2)) {
            *d = ((pair[0] << 4) | pair[1]) as u8;
        }
        *am_slot = am;
    }
    ok.iter().all(|&o| o)
}

/// The scalar port of the torch kernel, element by element: the oracle the fast path is tested
/// against.
pub fn quantize_blocks_scalar(values: &[f32]) -> (Vec<u8>, Vec<f32>) {
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
    let copy = |start: usize, out: &mut [f32]| {
        out.copy_from_slice(&values[start..start + out.len()]);
    };
    block_absmax_streamed(values.len(), &copy, 1).0
}

/// The block scales of `n` elements read through `decode` (`CHUNK` at a time per thread,
/// split over `threads`), and whether every element is finite.
pub fn block_absmax_streamed(n: usize, decode: Decode, threads: usize) -> (Vec<f32>, bool) {
    let mut absmax = vec![0f32; n.div_ceil(BLOCKSIZE)];
    let run = |first_block: usize, absmax: &mut [f32]| -> bool {
        let mut buf = vec![0f32; CHUNK];
        let mut finite = true;
        for (i, a) in absmax.chunks_mut(CHUNK / BLOCKSIZE).enumerate() {
            let start = (first_block + i * (CHUNK / BLOCKSIZE)) * BLOCKSIZE;
            let buf = &mut buf[..(n - start).min(a.len() * BLOCKSIZE)];
            decode(start, buf);
            finite &= absmax_of_blocks(buf, a);
        }
        finite
    };
    let blocks = absmax.len();
    let threads = threads.clamp(1, (n >> 20).max(1));
    let finite = if threads == 1 {
        run(0, &mut absmax)
    } else {
        let per = blocks.div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = absmax
                .chunks_mut(per)
                .enumerate()
                .map(|(i, a)| {
                    let run = &run;
                    scope.spawn(move || run(i * per, a))
                })
                .collect();
            handles.into_iter().all(|h| h.join().unwrap_or(false))
        })
    };
    if !n.is_multiple_of(BLOCKSIZE) {
        if let Some(last) = absmax.last_mut() {
            *last = last.max(1e-38); // the tail block's `max(absmax, 1e-38)`
        }
    }
    (absmax, finite)
}

/// The absmax of each block of 64 of `values` (the last may be shorter) into `out`; whether
/// every value is finite. AVX2 when the CPU has it.
fn absmax_of_blocks(values: &[f32], out: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { absmax_of_blocks_avx2(values, out) };
    }
    absmax_of_blocks_portable(values, out)
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn absmax_of_blocks_avx2(values: &[f32], out: &mut [f32]) -> bool {
    absmax_of_blocks_portable(values, out)
}

#[inline(always)]
fn absmax_of_blocks_portable(values: &[f32], out: &mut [f32]) -> bool {
    let mut finite = true;
    for (block, am) in values.chunks(BLOCKSIZE).zip(out.iter_mut()) {
        let mut lanes = [0f32; 8];
        let mut ok = [true; 8];
        for chunk in block.chunks(8) {
            for ((m, o), v) in lanes.iter_mut().zip(ok.iter_mut()).zip(chunk) {
                let a = v.abs();
                *o &= a <= f32::MAX;
                *m = if a > *m { a } else { *m };
            }
        }
        finite &= ok.iter().all(|&o| o);
        *am = lanes.iter().fold(0f32, |m, &v| if v > m { v } else { m });
    }
    finite
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
    quantize_nf4_threads(values, torch_threads, 1)
}

/// [`quantize_nf4`] with the blocks split over `threads` threads (same bytes for any count).
pub fn quantize_nf4_threads(values: &[f32], torch_threads: usize, threads: usize) -> Nf4Weight {
    quantize_nf4_streamed(
        values.len(),
        &|start, out: &mut [f32]| out.copy_from_slice(&values[start..start + out.len()]),
        torch_threads,
        threads,
    )
}

/// [`quantize_nf4_threads`] of `n` elements read through `decode`, a chunk at a time.
pub fn quantize_nf4_streamed(
    n: usize,
    decode: Decode,
    torch_threads: usize,
    threads: usize,
) -> Nf4Weight {
    let (packed, absmax) = quantize_blocks_streamed(n, decode, threads);
    double_quantize(packed, absmax, torch_threads)
}

/// [`quantize_nf4_streamed`], or `None` when an element is NaN or infinite (the kernel would
/// give such a weight codes without meaning, where torch's would differ).
pub fn quantize_nf4_checked(
    n: usize,
    decode: Decode,
    torch_threads: usize,
    threads: usize,
) -> Option<Nf4Weight> {
    let (packed, absmax, finite) = quantize_blocks_checked(n, decode, threads);
    finite.then(|| double_quantize(packed, absmax, torch_threads))
}

/// The double quantization of the block scales (`compress_statistics=True`).
pub(crate) fn double_quantize(
    packed: Vec<u8>,
    absmax: Vec<f32>,
    torch_threads: usize,
) -> Nf4Weight {
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

    /// The streamed block scales (any thread count) equal the plain fold, tail included, and a
    /// NaN or infinity anywhere is reported.
    #[test]
    fn streamed_absmax_equals_the_fold() {
        let values: Vec<f32> = (0..(3 << 20) + 37)
            .map(|i| ((i as u64 * 2_654_435_761) % 10_007) as f32 / 10_007.0 - 0.5)
            .collect();
        let want: Vec<f32> = values
            .chunks(BLOCKSIZE)
            .map(|b| {
                let am = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                if b.len() < BLOCKSIZE {
                    am.max(1e-38)
                } else {
                    am
                }
            })
            .collect();
        let copy = |v: &[f32]| {
            let v = v.to_vec();
            move |start: usize, out: &mut [f32]| out.copy_from_slice(&v[start..start + out.len()])
        };
        for threads in [1, 2, 3] {
            assert_eq!(
                block_absmax_streamed(values.len(), &copy(&values), threads),
                (want.clone(), true)
            );
        }
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut v = values.clone();
            v[(2 << 20) + 5] = bad;
            assert!(!block_absmax_streamed(v.len(), &copy(&v), 2).1, "{bad}");
        }
    }

    /// Values on and around every bucket bound (after scaling), zeros, tiny and huge blocks,
    /// lengths with and without a tail: the fast path (1 and 3 threads) equals the scalar port.
    #[test]
    fn fast_blocks_equal_the_scalar_port() {
        let bounds = nf4_bounds();
        let mut values = Vec::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        for block in 0..40_000usize {
            let scale = [1.0f32, 1e-30, 3.5e4, 0.37][block % 4];
            for j in 0..BLOCKSIZE {
                let v = match (block + j) % 5 {
                    // absmax 1 in the unscaled blocks: the bounds stay exact ties
                    _ if j == 0 && block % 4 == 0 => 1.0,
                    0 => bounds[j % 15],
                    1 => f32::from_bits(bounds[j % 15].to_bits() + 1),
                    2 => f32::from_bits(bounds[j % 15].to_bits().wrapping_sub(1)),
                    3 if block % 7 == 0 => 0.0,
                    _ => next(),
                };
                values.push(v * scale);
            }
        }
        for len in [
            values.len(),
            values.len() - 1,
            values.len() - 63,
            130,
            64,
            3,
            1,
        ] {
            let want = quantize_blocks_scalar(&values[..len]);
            for threads in [1, 3] {
                assert_eq!(
                    quantize_blocks(&values[..len], threads),
                    want,
                    "len {len}, {threads} threads"
                );
            }
        }
    }

    /// The checked entry point (the folder's one-pass path) gives the same weight as the
    /// unchecked one, and refuses a NaN or infinity wherever it sits: in a full block on either
    /// thread's half, or in the tail.
    #[test]
    fn checked_quantization_equals_plain_and_refuses_non_finite() {
        let n = (2 << 20) + 37; // two threads' worth of full blocks, then a 37-element tail
        let values: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1999) as f32 - 999.5).collect();
        let copy = |v: &[f32]| {
            let v = v.to_vec();
            move |start: usize, out: &mut [f32]| out.copy_from_slice(&v[start..start + out.len()])
        };
        for threads in [1, 2] {
            assert_eq!(
                quantize_nf4_checked(n, &copy(&values), 4, threads),
                Some(quantize_nf4(&values, 4)),
                "{threads} threads"
            );
        }
        for at in [0, 63, (1 << 20) + 64, n - 40, n - 1] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut v = values.clone();
                v[at] = bad;
                for threads in [1, 2] {
                    assert!(
                        quantize_nf4_checked(n, &copy(&v), 4, threads).is_none(),
                        "{bad} at {at}, {threads} threads"
                    );
                }
            }
        }
    }

    #[test]
    fn odd_counts_pad_one_zero_code() {
        let (packed, absmax) = quantize_blocks(&[1.0, -1.0, 0.5], 1);
        assert_eq!(packed.len(), 2);
        assert_eq!(absmax, vec![1.0]);
        assert_eq!(packed[0], 0xF0);
        assert_eq!(packed[1] & 0x0F, 7);
    }
}
