//! The fused fast path for the common LoRA merge: `W [out, in]`, `Δ = B·A` (no transpose, no
//! DoRA, no embedding rounding) and the output in the base's own dtype.
//!
//! The generic path makes four passes over each row block (Δ by axpy into memory, decode `W`,
//! add, encode). Here one pass does it all with Δ held in registers: for a group of 4 rows and
//! 16 columns, `acc = fma(B[i,k], A[k,j], acc)` for `k = 0..r` in order (the sgemm accumulation
//! torch uses, so the result is the same bits as the generic path), then `round(f32(W) + acc·s)`
//! with a separate multiply and add, written straight into the output bytes. `A` is reused across
//! the 4 rows from L1/L2, which is what makes this several times faster than the axpy form.
//! With AVX-512 (F, BW, VL) the group is 8 rows × 32 columns in 16 zmm accumulators, and the
//! column tail is masked instead of scalar: twice the lanes per FMA, same operations per lane.
//!
//! Non-finite results are not encoded here: the block is reported back and the generic path
//! redoes it, so NaN bit patterns and the index in the error stay exactly as before.

use loraforge_hf_model::Dtype;

use crate::update::{Layout, LoraUpdate};

/// A fused kernel's instruction-set level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// AVX2 + FMA (+ F16C for f16): 4 rows × 16 columns per group.
    Avx2,
    /// AVX-512 F/BW/VL: 8 rows × 32 columns per group, masked column tail.
    Avx512,
}

/// Whether the fused kernel can run this update on this CPU.
pub(crate) fn applicable(u: &LoraUpdate<'_>, w_dtype: Dtype, out_dtype: Dtype) -> bool {
    u.layout == Layout::Normal
        && u.round_delta_to.is_none()
        && u.magnitude.is_none()
        && w_dtype == out_dtype
        && level(out_dtype).is_some()
}

/// The widest level this CPU runs for `dtype`, if any.
pub(crate) fn level(dtype: Dtype) -> Option<Level> {
    [Level::Avx512, Level::Avx2]
        .into_iter()
        .find(|l| cpu_supports(*l, dtype))
}

#[cfg(target_arch = "x86_64")]
fn cpu_supports(level: Level, dtype: Dtype) -> bool {
    use std::arch::is_x86_feature_detected as has;
    match level {
        Level::Avx2 => has!("avx2") && has!("fma") && (dtype != Dtype::F16 || has!("f16c")),
        Level::Avx512 => has!("avx512f") && has!("avx512bw") && has!("avx512vl"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_supports(_level: Level, _dtype: Dtype) -> bool {
    false
}

/// The fused level used for bf16 weights (the common case), for the report.
pub(crate) fn report_level() -> Option<Level> {
    level(Dtype::BF16)
}

/// Merges rows `row0 .. row0 + n_rows` of `u` (whose base rows are `w`, in `dtype`) into `out`
/// (same dtype) with the widest level this CPU has. Returns `false` when the block must be redone
/// by the generic path: a result was not finite, or the slices do not have the lengths the update
/// implies (never expected; the plan checked the shapes).
pub(crate) fn merge_rows(
    u: &LoraUpdate<'_>,
    row0: usize,
    n_rows: usize,
    w: &[u8],
    dtype: Dtype,
    out: &mut [u8],
) -> bool {
    level(dtype).is_some_and(|l| merge_rows_at(l, u, row0, n_rows, w, dtype, out))
}

/// [`merge_rows`] at a given level (`false`, as for a non-finite result, when this CPU does not
/// run it). Every level writes the same bits.
pub(crate) fn merge_rows_at(
    level: Level,
    u: &LoraUpdate<'_>,
    row0: usize,
    n_rows: usize,
    w: &[u8],
    dtype: Dtype,
    out: &mut [u8],
) -> bool {
    let bytes = n_rows * u.cols * dtype.size();
    let lengths_fit = u.a.len() >= u.rank * u.cols
        && u.b.len() >= (row0 + n_rows) * u.rank
        && w.len() == bytes
        && out.len() == bytes;
    if !lengths_fit || !cpu_supports(level, dtype) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let io = match dtype {
            Dtype::F32 => Io::F32,
            Dtype::BF16 => Io::Bf16,
            Dtype::F16 => Io::F16,
        };
        // SAFETY: the CPU features were checked by `cpu_supports`, and the slice lengths above
        // bound every pointer the kernels form.
        unsafe {
            match level {
                Level::Avx2 => avx2::merge_rows(io, u, row0, n_rows, w, out),
                Level::Avx512 => avx512::merge_rows(io, u, row0, n_rows, w, out),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Element encoding of `W` and the output.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum Io {
    F32,
    Bf16,
    F16,
}

#[cfg(target_arch = "x86_64")]
impl Io {
    fn size(self) -> usize {
        match self {
            Io::F32 => 4,
            Io::Bf16 | Io::F16 => 2,
        }
    }
}

/// How a kernel walks `n_rows` rows: `(first row, rows)` groups of the widest size that still
/// fits, among `widest`, 4 and 1 (so after the `widest`-row groups at most one of 4, then single
/// rows).
#[cfg(target_arch = "x86_64")]
fn row_groups(n_rows: usize, widest: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut first = 0;
    std::iter::from_fn(move || {
        let left = n_rows - first;
        let rows = [widest, 4, 1].into_iter().find(|&r| r <= left)?;
        let group = (first, rows);
        first += rows;
        Some(group)
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use loraforge_hf_model::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};

    use super::Io;
    use crate::update::LoraUpdate;

    /// Rows handled together: 4 rows × 16 columns = 8 accumulators, plus two `A` vectors and a
    /// broadcast, fits the 16 ymm registers.
    const ROWS: usize = 4;

    /// # Safety
    /// AVX2, FMA (and F16C for `Io::F16`) must be available; `u.a` holds `rank × cols`, `u.b`
    /// at least `(row0 + n_rows) × rank`, `w` and `out` exactly `n_rows × cols` elements.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn merge_rows(
        io: Io,
        u: &LoraUpdate<'_>,
        row0: usize,
        n_rows: usize,
        w: &[u8],
        out: &mut [u8],
    ) -> bool {
        let row_bytes = u.cols * io.size();
        let mut non_finite = 0;
        for (i, rows) in super::row_groups(n_rows, ROWS) {
            // SAFETY: rows i..i+rows are inside the block (caller's contract).
            non_finite |= unsafe {
                let (w, out) = (
                    w.as_ptr().add(i * row_bytes),
                    out.as_mut_ptr().add(i * row_bytes),
                );
                match rows {
                    ROWS => row_group::<ROWS>(io, u, row0 + i, w, out),
                    _ => row_group::<1>(io, u, row0 + i, w, out),
                }
            };
        }
        non_finite == 0
    }

    /// `R` rows starting at absolute row `row`; returns non-zero if any result is not finite.
    #[inline(always)]
    unsafe fn row_group<const R: usize>(
        io: Io,
        u: &LoraUpdate<'_>,
        row: usize,
        w: *const u8,
        out: *mut u8,
    ) -> i32 {
        let (cols, rank) = (u.cols, u.rank);
        let (a, b) = (u.a.as_ptr(), u.b.as_ptr());
        let size = io.size();
        // SAFETY (whole body): pointers stay within the slices per the caller's contract: `A`
        // rows are `cols` long, `B` rows `rank` long, and `j + 16 <= cols` in the vector loop.
        unsafe {
            let scale = _mm256_set1_ps(u.scaling);
            let mut non_finite = 0;
            let mut j = 0;
            while j + 16 <= cols {
                let mut lo = [_mm256_setzero_ps(); R];
                let mut hi = [_mm256_setzero_ps(); R];
                for k in 0..rank {
                    let ak = a.add(k * cols + j);
                    let a_lo = _mm256_loadu_ps(ak);
                    let a_hi = _mm256_loadu_ps(ak.add(8));
                    for r in 0..R {
                        let bk = _mm256_set1_ps(*b.add((row + r) * rank + k));
                        lo[r] = _mm256_fmadd_ps(bk, a_lo, lo[r]);
                        hi[r] = _mm256_fmadd_ps(bk, a_hi, hi[r]);
                    }
                }
                for r in 0..R {
                    let at = (r * cols + j) * size;
                    let w_lo = load8(io, w.add(at));
                    let w_hi = load8(io, w.add(at + 8 * size));
                    // Δ·s then + W: two roundings, as torch does (no FMA here).
                    let d_lo = _mm256_add_ps(w_lo, _mm256_mul_ps(lo[r], scale));
                    let d_hi = _mm256_add_ps(w_hi, _mm256_mul_ps(hi[r], scale));
                    non_finite |= store8(io, d_lo, out.add(at));
                    non_finite |= store8(io, d_hi, out.add(at + 8 * size));
                }
                j += 16;
            }
            // Column tail, element by element in the same operation order.
            for r in 0..R {
                for jj in j..cols {
                    let mut acc = 0f32;
                    for k in 0..rank {
                        acc = (*b.add((row + r) * rank + k)).mul_add(*a.add(k * cols + jj), acc);
                    }
                    let at = (r * cols + jj) * size;
                    let wv = load1(io, w.add(at));
                    let d = wv + acc * u.scaling;
                    if !store1(io, d, out.add(at)) {
                        non_finite |= 1;
                    }
                }
            }
            non_finite
        }
    }

    #[inline(always)]
    unsafe fn load8(io: Io, p: *const u8) -> __m256 {
        // SAFETY: the caller guarantees 8 readable elements at `p`.
        unsafe {
            match io {
                Io::F32 => _mm256_loadu_ps(p.cast()),
                Io::Bf16 => {
                    let h = _mm_loadu_si128(p.cast());
                    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                }
                Io::F16 => _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
            }
        }
    }

    /// Stores 8 values rounded to nearest-even; returns non-zero if any is not finite after
    /// rounding (those lanes are redone by the generic path).
    #[inline(always)]
    unsafe fn store8(io: Io, v: __m256, p: *mut u8) -> i32 {
        // SAFETY: the caller guarantees 8 writable elements at `p`.
        unsafe {
            match io {
                Io::F32 => {
                    _mm256_storeu_ps(p.cast(), v);
                    let exp = _mm256_set1_epi32(0x7F80_0000);
                    let e = _mm256_and_si256(_mm256_castps_si256(v), exp);
                    _mm256_movemask_epi8(_mm256_cmpeq_epi32(e, exp))
                }
                Io::Bf16 => {
                    let bits = _mm256_castps_si256(v);
                    let lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
                    let bias = _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF));
                    let rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, bias), 16);
                    let packed = _mm_packus_epi32(
                        _mm256_castsi256_si128(rounded),
                        _mm256_extracti128_si256(rounded, 1),
                    );
                    _mm_storeu_si128(p.cast(), packed);
                    // A NaN can wrap in the add above, so test the f32 too.
                    let exp = _mm256_set1_epi32(0x7F80);
                    let inf = _mm256_cmpeq_epi32(_mm256_and_si256(rounded, exp), exp);
                    let nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
                    _mm256_movemask_epi8(_mm256_or_si256(inf, nan))
                }
                Io::F16 => {
                    let h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
                    _mm_storeu_si128(p.cast(), h);
                    let exp = _mm_set1_epi16(0x7C00);
                    _mm_movemask_epi8(_mm_cmpeq_epi16(_mm_and_si128(h, exp), exp))
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn load1(io: Io, p: *const u8) -> f32 {
        // SAFETY: the caller guarantees one readable element at `p` (unaligned reads).
        unsafe {
            match io {
                Io::F32 => p.cast::<f32>().read_unaligned(),
                Io::Bf16 => bf16_to_f32(p.cast::<u16>().read_unaligned()),
                Io::F16 => f16_to_f32(p.cast::<u16>().read_unaligned()),
            }
        }
    }

    /// Stores one value; returns whether it is finite after rounding.
    #[inline(always)]
    unsafe fn store1(io: Io, v: f32, p: *mut u8) -> bool {
        // SAFETY: the caller guarantees one writable element at `p` (unaligned writes).
        unsafe {
            match io {
                Io::F32 => {
                    p.cast::<f32>().write_unaligned(v);
                    v.is_finite()
                }
                Io::Bf16 => {
                    let h = f32_to_bf16(v);
                    p.cast::<u16>().write_unaligned(h);
                    h & 0x7F80 != 0x7F80
                }
                Io::F16 => {
                    let h = f32_to_f16(v);
                    p.cast::<u16>().write_unaligned(h);
                    h & 0x7C00 != 0x7C00
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::Io;
    use crate::update::LoraUpdate;

    /// Rows handled together: 8 rows × 32 columns = 16 zmm accumulators, plus two `A` vectors
    /// and the broadcasts, inside the 32 zmm registers.
    const ROWS: usize = 8;

    /// # Safety
    /// AVX-512 F, BW and VL must be available; `u.a` holds `rank × cols`, `u.b` at least
    /// `(row0 + n_rows) × rank`, `w` and `out` exactly `n_rows × cols` elements.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn merge_rows(
        io: Io,
        u: &LoraUpdate<'_>,
        row0: usize,
        n_rows: usize,
        w: &[u8],
        out: &mut [u8],
    ) -> bool {
        let row_bytes = u.cols * io.size();
        let mut non_finite = 0;
        for (i, rows) in super::row_groups(n_rows, ROWS) {
            // SAFETY: rows i..i+rows are inside the block (caller's contract).
            non_finite |= unsafe {
                let (w, out) = (
                    w.as_ptr().add(i * row_bytes),
                    out.as_mut_ptr().add(i * row_bytes),
                );
                match rows {
                    ROWS => row_group::<ROWS>(io, u, row0 + i, w, out),
                    4 => row_group::<4>(io, u, row0 + i, w, out),
                    _ => row_group::<1>(io, u, row0 + i, w, out),
                }
            };
        }
        non_finite == 0
    }

    /// `R` rows starting at absolute row `row`; returns non-zero if any result is not finite.
    #[inline(always)]
    unsafe fn row_group<const R: usize>(
        io: Io,
        u: &LoraUpdate<'_>,
        row: usize,
        w: *const u8,
        out: *mut u8,
    ) -> u32 {
        let (cols, rank) = (u.cols, u.rank);
        let (a, b) = (u.a.as_ptr(), u.b.as_ptr());
        let size = io.size();
        // SAFETY (whole body): pointers stay within the slices per the caller's contract: `A`
        // rows are `cols` long, `B` rows `rank` long; full vectors need `j + 32 <= cols` (or
        // `j + 16`), and the tail touches only the lanes its mask selects, all `< cols`.
        unsafe {
            let scale = _mm512_set1_ps(u.scaling);
            let mut non_finite = 0u32;
            let mut j = 0;
            while j + 32 <= cols {
                let mut lo = [_mm512_setzero_ps(); R];
                let mut hi = [_mm512_setzero_ps(); R];
                for k in 0..rank {
                    let ak = a.add(k * cols + j);
                    let a_lo = _mm512_loadu_ps(ak);
                    let a_hi = _mm512_loadu_ps(ak.add(16));
                    for r in 0..R {
                        let bk = _mm512_set1_ps(*b.add((row + r) * rank + k));
                        lo[r] = _mm512_fmadd_ps(bk, a_lo, lo[r]);
                        hi[r] = _mm512_fmadd_ps(bk, a_hi, hi[r]);
                    }
                }
                for r in 0..R {
                    let at = (r * cols + j) * size;
                    non_finite |= finish16(io, lo[r], scale, w.add(at), out.add(at), !0);
                    let at = at + 16 * size;
                    non_finite |= finish16(io, hi[r], scale, w.add(at), out.add(at), !0);
                }
                j += 32;
            }
            // The last 1..=31 columns: 16 at a time, the final ones under a lane mask.
            while j < cols {
                let left = cols - j;
                let mask: __mmask16 = if left >= 16 { !0 } else { (1u16 << left) - 1 };
                let mut acc = [_mm512_setzero_ps(); R];
                for k in 0..rank {
                    let ak = _mm512_maskz_loadu_ps(mask, a.add(k * cols + j));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let bk = _mm512_set1_ps(*b.add((row + r) * rank + k));
                        *acc = _mm512_fmadd_ps(bk, ak, *acc);
                    }
                }
                for (r, acc) in acc.into_iter().enumerate() {
                    let at = (r * cols + j) * size;
                    non_finite |= finish16(io, acc, scale, w.add(at), out.add(at), mask);
                }
                j += 16;
            }
            non_finite
        }
    }

    /// `out = round(W + Δ·s)` for the lanes in `mask` (Δ·s then + W: two roundings, as torch
    /// does; no FMA). Returns non-zero if any of those lanes is not finite after rounding (the
    /// generic path redoes the block).
    #[inline(always)]
    unsafe fn finish16(
        io: Io,
        delta: __m512,
        scale: __m512,
        w: *const u8,
        out: *mut u8,
        mask: __mmask16,
    ) -> u32 {
        // SAFETY: the caller guarantees the lanes in `mask` are readable at `w` and writable at
        // `out`; masked loads and stores touch no other lane.
        unsafe {
            let wv = load16(io, w, mask);
            let v = _mm512_add_ps(wv, _mm512_mul_ps(delta, scale));
            u32::from(store16(io, v, out, mask))
        }
    }

    #[inline(always)]
    unsafe fn load16(io: Io, p: *const u8, mask: __mmask16) -> __m512 {
        // SAFETY: the caller guarantees the lanes in `mask` are readable at `p`.
        unsafe {
            match io {
                Io::F32 => _mm512_maskz_loadu_ps(mask, p.cast()),
                Io::Bf16 => {
                    let h = _mm256_maskz_loadu_epi16(mask, p.cast());
                    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                }
                Io::F16 => _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p.cast())),
            }
        }
    }

    /// Stores the lanes in `mask` rounded to nearest-even; returns the lanes among them that
    /// are not finite after rounding.
    #[inline(always)]
    unsafe fn store16(io: Io, v: __m512, p: *mut u8, mask: __mmask16) -> __mmask16 {
        // SAFETY: the caller guarantees the lanes in `mask` are writable at `p`.
        unsafe {
            match io {
                Io::F32 => {
                    _mm512_mask_storeu_ps(p.cast(), mask, v);
                    let exp = _mm512_set1_epi32(0x7F80_0000);
                    let e = _mm512_and_si512(_mm512_castps_si512(v), exp);
                    _mm512_mask_cmpeq_epi32_mask(mask, e, exp)
                }
                Io::Bf16 => {
                    // The same integer rounding as the AVX2 kernel and `f32_to_bf16`.
                    let bits = _mm512_castps_si512(v);
                    let lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
                    let bias = _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF));
                    let rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16);
                    _mm256_mask_storeu_epi16(p.cast(), mask, _mm512_cvtepi32_epi16(rounded));
                    // A NaN can wrap in the add above, so test the f32 too.
                    let exp = _mm512_set1_epi32(0x7F80);
                    let inf = _mm512_cmpeq_epi32_mask(_mm512_and_si512(rounded, exp), exp);
                    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                    (inf | nan) & mask
                }
                Io::F16 => {
                    let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
                    _mm256_mask_storeu_epi16(p.cast(), mask, h);
                    let exp = _mm256_set1_epi16(0x7C00);
                    _mm256_mask_cmpeq_epi16_mask(mask, _mm256_and_si256(h, exp), exp)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::tests::values;
    use crate::kernel::{merge_rows_generic, Backend};
    use crate::update::{RowBlock, Scratch};
    use loraforge_hf_model::encode_f32;
    use proptest::prelude::*;

    /// One block to merge both ways: a `rows`×`cols` weight of `dtype` with a rank-`rank` update,
    /// merged from row `row0` on; weights drawn at `w_scale`, A and B at `ab_scale`.
    struct Case {
        dtype: Dtype,
        rows: usize,
        cols: usize,
        rank: usize,
        row0: usize,
        w_scale: f32,
        ab_scale: f32,
        seed: u32,
    }

    impl Case {
        /// The usual case: the whole tensor, unit weights, A and B at 0.5.
        fn new(dtype: Dtype, rows: usize, cols: usize, rank: usize, seed: u32) -> Case {
            Case {
                dtype,
                rows,
                cols,
                rank,
                row0: 0,
                w_scale: 1.0,
                ab_scale: 0.5,
                seed,
            }
        }
    }

    /// The fused levels this CPU runs (for bf16; f16 may need F16C besides, checked per call).
    fn levels() -> Vec<Level> {
        [Level::Avx2, Level::Avx512]
            .into_iter()
            .filter(|l| cpu_supports(*l, Dtype::BF16))
            .collect()
    }

    /// Runs the fused path at `level` and the generic path on the same block; returns (fused
    /// handled it, both outputs).
    fn both(level: Level, case: Case) -> (bool, Vec<u8>, Vec<u8>) {
        let Case {
            dtype,
            rows,
            cols,
            rank,
            row0,
            w_scale,
            ab_scale,
            seed,
        } = case;
        let a = values(rank * cols, seed, ab_scale);
        let b = values(rows * rank, seed.wrapping_add(1), ab_scale);
        let w_vals = values(rows * cols, seed.wrapping_add(2), w_scale);
        let mut w = vec![0u8; rows * cols * dtype.size()];
        encode_f32(dtype, &w_vals, &mut w);
        let u = LoraUpdate {
            scaling: 0.7,
            ..LoraUpdate::plain(Layout::Normal, rank, rows, cols, &a, &b)
        };
        let n = rows - row0;
        let row_bytes = cols * dtype.size();
        let w_block = &w[row0 * row_bytes..];
        let mut fused = vec![0u8; n * row_bytes];
        let handled = merge_rows_at(level, &u, row0, n, w_block, dtype, &mut fused);
        let mut generic = vec![0u8; n * row_bytes];
        merge_rows_generic(
            Backend::SequentialFma,
            &u,
            RowBlock {
                row0,
                n_rows: n,
                w: w_block,
                w_dtype: dtype,
                out: &mut generic,
                out_dtype: dtype,
            },
            &mut Scratch::default(),
        );
        (handled, fused, generic)
    }

    #[test]
    fn fused_equals_generic_bit_for_bit_on_awkward_shapes() {
        for level in levels() {
            for dtype in [Dtype::BF16, Dtype::F16, Dtype::F32] {
                if !cpu_supports(level, dtype) {
                    continue;
                }
                // column tails (cols % 16 != 0, % 32 != 0), row tails (n % 4 != 0, % 8 in 4..8),
                // blocks starting mid-tensor
                for &(rows, cols, rank, row0) in &[
                    (9usize, 37usize, 16usize, 0usize),
                    (13, 64, 8, 3),
                    (4, 16, 1, 0),
                    (7, 5, 3, 2),
                    (8, 48, 64, 1),
                    (21, 100, 16, 0),
                    (12, 47, 16, 0),
                    (17, 32, 5, 1),
                ] {
                    let (handled, fused, generic) = both(
                        level,
                        Case {
                            row0,
                            ab_scale: 0.3,
                            ..Case::new(dtype, rows, cols, rank, 7)
                        },
                    );
                    assert!(handled, "{level:?} {dtype:?} {rows}x{cols} r{rank}");
                    assert_eq!(
                        fused, generic,
                        "{level:?} {dtype:?} {rows}x{cols} r{rank} from {row0}"
                    );
                }
            }
        }
    }

    #[test]
    fn non_finite_results_are_left_to_the_generic_path() {
        for level in levels() {
            // Products of ~1e40 overflow f32 itself: Δ is ±inf (or NaN) for every dtype.
            for dtype in [Dtype::F16, Dtype::BF16, Dtype::F32] {
                if !cpu_supports(level, dtype) {
                    continue;
                }
                let (handled, _, generic) = both(
                    level,
                    Case {
                        ab_scale: 1e20,
                        ..Case::new(dtype, 6, 32, 4, 3)
                    },
                );
                assert!(!handled, "{level:?} {dtype:?} overflow must be handed back");
                let exp: u32 = match dtype {
                    Dtype::F16 => 0x7C00,
                    Dtype::BF16 => 0x7F80,
                    Dtype::F32 => 0x7F80_0000,
                };
                let any_non_finite = generic.chunks_exact(dtype.size()).any(|c| {
                    let mut le = [0u8; 4];
                    le[..c.len()].copy_from_slice(c);
                    u32::from_le_bytes(le) & exp == exp
                });
                assert!(
                    any_non_finite,
                    "{dtype:?}: the generic path sees the overflow too"
                );
            }
            if !cpu_supports(level, Dtype::F16) {
                continue;
            }
            // Close to f16's largest value, adding Δ rounds past it: inf after rounding only,
            // in a full vector and in a masked column tail.
            for cols in [32, 21] {
                let (handled, _, _) = both(
                    level,
                    Case {
                        w_scale: 2.0 * 65500.0,
                        ab_scale: 300.0,
                        ..Case::new(Dtype::F16, 6, cols, 4, 3)
                    },
                );
                assert!(
                    !handled,
                    "{level:?} f16 rounding overflow ({cols} columns) must be handed back"
                );
            }
        }
    }

    #[test]
    fn a_non_finite_value_outside_the_tail_mask_is_not_seen() {
        // Only the lanes of real columns count: a block whose columns are all finite is
        // handled, whatever lies in memory past the row (here: the next row, all infinite).
        for level in levels() {
            let (rows, cols, rank) = (2usize, 21usize, 4usize);
            let a = values(rank * cols, 5, 0.5);
            let b = values(rows * rank, 6, 0.5);
            let mut w_vals = values(rows * cols, 7, 1.0);
            for v in &mut w_vals[cols..] {
                *v = f32::INFINITY;
            }
            let mut w = vec![0u8; rows * cols * 4];
            encode_f32(Dtype::F32, &w_vals, &mut w);
            let u = LoraUpdate::plain(Layout::Normal, rank, rows, cols, &a, &b);
            let mut out = vec![0u8; cols * 4];
            assert!(
                merge_rows_at(level, &u, 0, 1, &w[..cols * 4], Dtype::F32, &mut out),
                "{level:?}: row 0 is finite"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn fused_equals_generic_for_any_small_block(
            rows in 1usize..20,
            cols in 1usize..100,
            rank in 1usize..20,
            seed in any::<u32>(),
            w_scale in prop_oneof![Just(1e-3f32), Just(1.0f32), Just(100.0f32)],
            dtype in prop_oneof![Just(Dtype::BF16), Just(Dtype::F16), Just(Dtype::F32)],
        ) {
            for level in levels() {
                if !cpu_supports(level, dtype) {
                    continue;
                }
                let (handled, fused, generic) = both(level, Case {
                    w_scale,
                    ..Case::new(dtype, rows, cols, rank, seed)
                });
                prop_assert!(handled);
                prop_assert_eq!(fused, generic);
            }
        }
    }
}
