//! AVX-512 versions of the k-quant scale searches: 16 sub-blocks per register, and `S`
//! independent registers ("streams") interleaved so that one stream's chain of dependent
//! additions overlaps with the others' (each lane's sums are sequential, as in the C code).
//!
//! Same rules as `fast_avx2`: every lane performs the reference's IEEE operations in the
//! reference's order, no FMA, selects reproduce the C `if`s. Two changes of *how*, not *what*,
//! make the loops cheaper than the AVX2 ones:
//!
//! * Rounding in the float domain (`vrndscaleps`, ties to even) then clamping as floats gives
//!   the same value as ggml's `nearest_int` (the 1.5·2^23 trick) followed by the integer clamp,
//!   as long as |t| < 2^22 and t is not NaN. Each search round checks a per-lane bound on |t|
//!   (float rounding is monotonic, so the bound computed from the lane's extremes holds for
//!   every element) and every input is checked finite once; a round that fails either check
//!   runs with the exact integer trick instead, so the bytes never depend on the check.
//! * The quants of the best candidate are not copied on every improvement: the search keeps
//!   the candidate's `iscale` and the `min` it was quantized with, and recomputes the quants
//!   once at the end (the same operations on the same values give the same integers).

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use crate::reference::{Qkx2, GROUP_MAX_EPS};

/// |t| below this rounds identically through `vrndscaleps` and `nearest_int` (which is exact
/// up to 2^22 = 4194304).
const ROUND_LIMIT: f32 = 4_000_000.0;

/// `make_qkx2_quants(32, p.nmax, x, w, L, &the_min, Laux, p.rmin, p.rdelta, p.nstep, false)`
/// with the weights of `quantize_row_q4_K_ref` / `quantize_row_q5_K_ref`
/// (`av_x + |x|`, `av_x = sqrt(Σx²/32)`), for `16·S` sub-blocks: `x[s][i][j]` is element `i`
/// of sub-block `j` of stream `s`. Returns per stream the scales, mins and how to recompute the
/// search's quants ([`Qkx2Lanes`]). `p.use_mad` must be false (squared errors; Q4_K and Q5_K).
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn qkx2_x16<const S: usize>(
    p: &Qkx2,
    x: &[[[f32; 16]; 32]; S],
) -> [Qkx2Lanes; S] {
    // SAFETY (whole body): AVX-512F is available per this function's contract; every load and
    // store goes through a `[f32; 16]` / `[i32; 16]` reference, i.e. 64 valid bytes.
    unsafe {
        let zero = _mm512_setzero_ps();
        let nmaxf = p.nmax as f32;
        let vnmax = _mm512_set1_ps(nmaxf);
        let magic = _mm512_set1_ps(12_582_912.0);
        let mant = _mm512_set1_epi32(0x007F_FFFF);
        let bias = _mm512_set1_epi32(0x0040_0000);
        let inmax = _mm512_set1_epi32(p.nmax);
        let izero = _mm512_setzero_si512();
        let limit = _mm512_set1_ps(ROUND_LIMIT);
        let inf = _mm512_set1_ps(f32::INFINITY);
        // nearest_int (exact for every input), then MAX(0, MIN(nmax, l)).
        let quant_exact = |t: __m512| {
            let b = _mm512_castps_si512(_mm512_add_ps(t, magic));
            let q = _mm512_sub_epi32(_mm512_and_si512(b, mant), bias);
            _mm512_max_epi32(izero, _mm512_min_epi32(inmax, q))
        };
        // The same for |t| < 2^22, not NaN. `max(r, 0)` returns +0 for r = -0 (the second
        // operand wins ties), as the integer path does.
        let quant_fast = |t: __m512| {
            let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
            _mm512_min_ps(_mm512_max_ps(r, zero), vnmax)
        };
        let quant_exact_f = |t: __m512| _mm512_cvtepi32_ps(quant_exact(t));
        let ldx = |s: usize, i: usize| _mm512_loadu_ps(x[s][i].as_ptr());

        // Weights, and whether every input of the stream is finite.
        let mut w = [[[0f32; 16]; 32]; S];
        let mut finite = true;
        for s in 0..S {
            let mut sum_x2 = zero;
            for i in 0..32 {
                let v = ldx(s, i);
                sum_x2 = _mm512_add_ps(sum_x2, _mm512_mul_ps(v, v));
                finite &= _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(v), inf) == 0xFFFF;
            }
            let av_x = _mm512_sqrt_ps(_mm512_div_ps(sum_x2, _mm512_set1_ps(32.0)));
            for i in 0..32 {
                let wi = _mm512_add_ps(av_x, _mm512_abs_ps(ldx(s, i)));
                _mm512_storeu_ps(w[s][i].as_mut_ptr(), wi);
            }
        }
        let ldw = |s: usize, i: usize| _mm512_loadu_ps(w[s][i].as_ptr());

        let mut lo = [zero; S]; // the smallest x, before `min` is clamped to ≤ 0
        let mut min = [zero; S];
        let mut max = [zero; S];
        let mut sum_w = [zero; S];
        let mut sum_x = [zero; S];
        for s in 0..S {
            let x0 = ldx(s, 0);
            min[s] = x0;
            max[s] = x0;
            sum_w[s] = ldw(s, 0);
            sum_x[s] = _mm512_mul_ps(sum_w[s], x0);
        }
        for i in 1..32 {
            for s in 0..S {
                let v = ldx(s, i);
                let wi = ldw(s, i);
                // minps(a, b) = a < b ? a : b — exactly `if (x < min) min = x`.
                min[s] = _mm512_min_ps(v, min[s]);
                max[s] = _mm512_max_ps(v, max[s]);
                sum_w[s] = _mm512_add_ps(sum_w[s], wi);
                sum_x[s] = _mm512_add_ps(sum_x[s], _mm512_mul_ps(wi, v));
            }
        }
        let mut flat = [0u16; S];
        let mut min0 = [zero; S];
        let mut scale = [zero; S];
        let mut best = [zero; S];
        // The best candidate's quantization: l = clamp(nearest_int(iscale * (x - qmin))).
        let mut best_iscale = [zero; S];
        let mut best_qmin = [zero; S];
        for s in 0..S {
            lo[s] = min[s];
            min[s] =
                _mm512_mask_mov_ps(min[s], _mm512_cmp_ps_mask::<_CMP_GT_OQ>(min[s], zero), zero);
            flat[s] = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(max[s], min[s]);
            min0[s] = min[s];
            let iscale = _mm512_div_ps(vnmax, _mm512_sub_ps(max[s], min[s]));
            scale[s] = _mm512_div_ps(_mm512_set1_ps(1.0), iscale);
            best_iscale[s] = iscale;
            best_qmin[s] = min[s];
        }
        for i in 0..32 {
            for s in 0..S {
                let v = ldx(s, i);
                let t = _mm512_mul_ps(best_iscale[s], _mm512_sub_ps(v, min[s]));
                let qf = quant_exact_f(t);
                let diff = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(scale[s], qf), min[s]), v);
                best[s] =
                    _mm512_add_ps(best[s], _mm512_mul_ps(ldw(s, i), _mm512_mul_ps(diff, diff)));
            }
        }

        let mut laux = [[zero; 32]; S];
        for is in 0..=p.nstep {
            let num = _mm512_set1_ps(p.rmin + p.rdelta * is as f32 + nmaxf);
            let mut iscale = [zero; S];
            let mut fast = finite;
            for s in 0..S {
                let range = _mm512_sub_ps(max[s], min[s]);
                iscale[s] = _mm512_div_ps(num, range);
                // |iscale·(x − min)| ≤ |iscale|·max(|lo − min|, |max − min|) for every x of
                // the lane (rounding is monotonic). Flat lanes are discarded at the end.
                let span = _mm512_max_ps(
                    _mm512_abs_ps(_mm512_sub_ps(lo[s], min[s])),
                    _mm512_abs_ps(range),
                );
                let bound = _mm512_mul_ps(_mm512_abs_ps(iscale[s]), span);
                fast &= (_mm512_cmp_ps_mask::<_CMP_LT_OQ>(bound, limit) | flat[s]) == 0xFFFF;
            }
            let mut sum_l = [zero; S];
            let mut sum_l2 = [zero; S];
            let mut sum_xl = [zero; S];
            macro_rules! pass {
                ($quant:expr) => {
                    for i in 0..32 {
                        for s in 0..S {
                            let v = ldx(s, i);
                            let qf = $quant(_mm512_mul_ps(iscale[s], _mm512_sub_ps(v, min[s])));
                            laux[s][i] = qf;
                            let wq = _mm512_mul_ps(ldw(s, i), qf);
                            sum_l[s] = _mm512_add_ps(sum_l[s], wq);
                            sum_l2[s] = _mm512_add_ps(sum_l2[s], _mm512_mul_ps(wq, qf));
                            sum_xl[s] = _mm512_add_ps(sum_xl[s], _mm512_mul_ps(wq, v));
                        }
                    }
                };
            }
            if fast {
                pass!(quant_fast);
            } else {
                pass!(quant_exact_f);
            }
            let mut ok = [0u16; S];
            let mut ts = [zero; S];
            let mut tm = [zero; S];
            for s in 0..S {
                let d = _mm512_sub_ps(
                    _mm512_mul_ps(sum_w[s], sum_l2[s]),
                    _mm512_mul_ps(sum_l[s], sum_l[s]),
                );
                ok[s] = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(d, zero);
                ts[s] = _mm512_div_ps(
                    _mm512_sub_ps(
                        _mm512_mul_ps(sum_w[s], sum_xl[s]),
                        _mm512_mul_ps(sum_x[s], sum_l[s]),
                    ),
                    d,
                );
                tm[s] = _mm512_div_ps(
                    _mm512_sub_ps(
                        _mm512_mul_ps(sum_l2[s], sum_x[s]),
                        _mm512_mul_ps(sum_l[s], sum_xl[s]),
                    ),
                    d,
                );
                let pos = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(tm[s], zero);
                if pos != 0 {
                    tm[s] = _mm512_mask_mov_ps(tm[s], pos, zero);
                    ts[s] = _mm512_mask_mov_ps(ts[s], pos, _mm512_div_ps(sum_xl[s], sum_l2[s]));
                }
            }
            let mut cur = [zero; S];
            for i in 0..32 {
                for s in 0..S {
                    let qf = laux[s][i];
                    let diff =
                        _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(ts[s], qf), tm[s]), ldx(s, i));
                    cur[s] =
                        _mm512_add_ps(cur[s], _mm512_mul_ps(ldw(s, i), _mm512_mul_ps(diff, diff)));
                }
            }
            for s in 0..S {
                let take = ok[s] & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(cur[s], best[s]);
                best[s] = _mm512_mask_mov_ps(best[s], take, cur[s]);
                scale[s] = _mm512_mask_mov_ps(scale[s], take, ts[s]);
                best_iscale[s] = _mm512_mask_mov_ps(best_iscale[s], take, iscale[s]);
                best_qmin[s] = _mm512_mask_mov_ps(best_qmin[s], take, min[s]);
                min[s] = _mm512_mask_mov_ps(min[s], take, tm[s]);
            }
        }

        let sign = _mm512_set1_epi32(i32::MIN);
        let mut out = [Qkx2Lanes::default(); S];
        for s in 0..S {
            // max == min: L = 0, scale 0, the_min = -min.
            let keep = !flat[s];
            let sc = _mm512_maskz_mov_ps(keep, scale[s]);
            let mn = _mm512_mask_mov_ps(min0[s], keep, min[s]);
            let the_min = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(mn), sign));
            _mm512_storeu_ps(out[s].scale.as_mut_ptr(), sc);
            _mm512_storeu_ps(out[s].the_min.as_mut_ptr(), the_min);
            _mm512_storeu_ps(out[s].iscale.as_mut_ptr(), best_iscale[s]);
            _mm512_storeu_ps(out[s].qmin.as_mut_ptr(), best_qmin[s]);
            out[s].flat = flat[s];
        }
        out
    }
}

/// What [`qkx2_x16`] found for 16 sub-blocks (lane `j` = sub-block `j`).
#[derive(Clone, Copy, Default)]
pub(crate) struct Qkx2Lanes {
    /// The scale (0 for flat sub-blocks).
    pub scale: [f32; 16],
    /// `-min`.
    pub the_min: [f32; 16],
    /// The search's quants are `clamp(nearest_int(iscale · (x − qmin)), 0, nmax)` …
    pub iscale: [f32; 16],
    /// … (see `iscale`) …
    pub qmin: [f32; 16],
    /// … except in flat sub-blocks (bit `j`), where they are 0.
    pub flat: u16,
}

/// nearest_int (the 1.5·2^23 trick, exact for every input), clamped to `lo..=hi`.
#[inline(always)]
unsafe fn nearest_clamped(t: __m512, lo: __m512i, hi: __m512i) -> __m512i {
    // SAFETY: only called from AVX-512F functions.
    unsafe {
        let b = _mm512_castps_si512(_mm512_add_ps(t, _mm512_set1_ps(12_582_912.0)));
        let q = _mm512_sub_epi32(
            _mm512_and_si512(b, _mm512_set1_epi32(0x007F_FFFF)),
            _mm512_set1_epi32(0x0040_0000),
        );
        _mm512_max_epi32(lo, _mm512_min_epi32(hi, q))
    }
}

/// The final quants of one Q4_K / Q5_K sub-block of 32 values, in natural order: with a
/// non-zero packed scale `dl`, `clamp(nearest_int((x + dml) / dl), 0, nmax)` (the reference's
/// second pass); otherwise the search's own quants (see [`Qkx2Lanes`]).
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn requant_kx(
    x: &[f32; 32],
    nmax: i32,
    dl: f32,
    dml: f32,
    found: (f32, f32, bool),
    out: &mut [i32; 32],
) {
    let (iscale, qmin, flat) = found;
    // SAFETY: AVX-512F per the contract; loads and stores cover 16 of the 32 elements each.
    unsafe {
        let lo = _mm512_setzero_si512();
        let hi = _mm512_set1_epi32(nmax);
        for h in 0..2 {
            let v = _mm512_loadu_ps(x[16 * h..].as_ptr());
            let q = if dl != 0.0 {
                let t = _mm512_div_ps(_mm512_add_ps(v, _mm512_set1_ps(dml)), _mm512_set1_ps(dl));
                nearest_clamped(t, lo, hi)
            } else if flat {
                lo
            } else {
                let t = _mm512_mul_ps(
                    _mm512_set1_ps(iscale),
                    _mm512_sub_ps(v, _mm512_set1_ps(qmin)),
                );
                nearest_clamped(t, lo, hi)
            };
            _mm512_storeu_si512(out[16 * h..].as_mut_ptr().cast(), q);
        }
    }
}

/// The final quants (`q + 32`) of one Q6_K sub-block of 16 values, in natural order: with a
/// non-zero scale `dl`, `clamp(nearest_int(x / dl), -32, 31)`; otherwise the search's quants
/// `clamp(nearest_int(iscale · x))`, or 0 in a sub-block below `GROUP_MAX_EPS`.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn requant_q6(
    x: &[f32; 16],
    dl: f32,
    iscale: f32,
    tiny: bool,
    out: &mut [u8; 16],
) {
    // SAFETY: AVX-512F per the contract; one 64-byte load of `x`, one 16-byte store to `out`.
    unsafe {
        let lo = _mm512_set1_epi32(-32);
        let hi = _mm512_set1_epi32(31);
        let v = _mm512_loadu_ps(x.as_ptr());
        let q = if dl != 0.0 {
            nearest_clamped(_mm512_div_ps(v, _mm512_set1_ps(dl)), lo, hi)
        } else if tiny {
            lo
        } else {
            nearest_clamped(_mm512_mul_ps(_mm512_set1_ps(iscale), v), lo, hi)
        };
        let q = _mm512_add_epi32(q, _mm512_set1_epi32(32));
        _mm_storeu_si128(out.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(q));
    }
}

/// `xt[i][j] = x[N·j + i]`: 16 sub-blocks of `N` consecutive values (N a multiple of 16) as
/// lanes, through 16×16 register transposes (gathers are slower on this path).
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn sub_blocks_as_lanes<const N: usize>(x: &[f32]) -> [[f32; 16]; N] {
    assert!(
        x.len() >= 16 * N && N.is_multiple_of(16),
        "16 sub-blocks of {N}"
    );
    let mut xt = [[0f32; 16]; N];
    // SAFETY: AVX-512F per the contract; every load reads 16 values at N·j + 16h + 15 <
    // 16·N ≤ x.len() (asserted above); each store writes one `[f32; 16]`.
    unsafe {
        for h in 0..N / 16 {
            let mut r = [_mm512_setzero_ps(); 16];
            for (j, row) in r.iter_mut().enumerate() {
                *row = _mm512_loadu_ps(x.as_ptr().add(N * j + 16 * h));
            }
            for (i, col) in transpose_16x16(&r).iter().enumerate() {
                _mm512_storeu_ps(xt[16 * h + i].as_mut_ptr(), *col);
            }
        }
    }
    xt
}

/// Transpose 16 rows of 16 floats: in 32-bit pairs, 64-bit pairs, then 128-bit blocks twice.
#[inline(always)]
unsafe fn transpose_16x16(r: &[__m512; 16]) -> [__m512; 16] {
    // SAFETY: only called from AVX-512F functions.
    unsafe {
        let mut t = [_mm512_setzero_ps(); 16];
        for k in 0..8 {
            t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
            t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
        }
        let mut u = [_mm512_setzero_ps(); 16];
        for k in 0..4 {
            let b = 4 * k;
            u[b] = _mm512_shuffle_ps::<0x44>(t[b], t[b + 2]);
            u[b + 1] = _mm512_shuffle_ps::<0xEE>(t[b], t[b + 2]);
            u[b + 2] = _mm512_shuffle_ps::<0x44>(t[b + 1], t[b + 3]);
            u[b + 3] = _mm512_shuffle_ps::<0xEE>(t[b + 1], t[b + 3]);
        }
        for k in 0..2 {
            let b = 8 * k;
            for m in 0..4 {
                t[b + m] = _mm512_shuffle_f32x4::<0x88>(u[b + m], u[b + 4 + m]);
                t[b + 4 + m] = _mm512_shuffle_f32x4::<0xDD>(u[b + m], u[b + 4 + m]);
            }
        }
        for m in 0..8 {
            u[m] = _mm512_shuffle_f32x4::<0x88>(t[m], t[8 + m]);
            u[8 + m] = _mm512_shuffle_f32x4::<0xDD>(t[m], t[8 + m]);
        }
        u
    }
}

/// `make_qx_quants(16, 32, x, L, rmse_type = 1, NULL)` for the 16 sub-blocks of `S` Q6_K
/// super-blocks (`x[s][i][j]` = element `i` of sub-block `j` of super-block `s`). Returns the
/// scales and how to recompute the search's quants ([`QxLanes`]).
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn qx_x16<const S: usize>(x: &[[[f32; 16]; 16]; S]) -> [QxLanes; S] {
    const NMAX: i32 = 32;
    const NMAXF: f32 = 32.0;
    // SAFETY (whole body): AVX-512F per the contract; every load and store goes through a
    // `[f32; 16]` / `[i32; 16]` reference, i.e. 64 valid bytes.
    unsafe {
        let zero = _mm512_setzero_ps();
        let magic = _mm512_set1_ps(12_582_912.0);
        let mant = _mm512_set1_epi32(0x007F_FFFF);
        let bias = _mm512_set1_epi32(0x0040_0000);
        let ilo = _mm512_set1_epi32(-NMAX);
        let ihi = _mm512_set1_epi32(NMAX - 1);
        let flo = _mm512_set1_ps(-NMAXF);
        let fhi = _mm512_set1_ps(NMAXF - 1.0);
        let inf = _mm512_set1_ps(f32::INFINITY);
        // nearest_int (exact for every input), then MAX(-nmax, MIN(nmax - 1, l)).
        let quant_exact = |t: __m512| {
            let b = _mm512_castps_si512(_mm512_add_ps(t, magic));
            let q = _mm512_sub_epi32(_mm512_and_si512(b, mant), bias);
            _mm512_max_epi32(ilo, _mm512_min_epi32(ihi, q))
        };
        // The same for finite |t| < 2^22. Here |t| ≤ (32.9 / |max|)·|x| ≤ 33 when every x of
        // the lane is finite (max is the lane's largest |x|), so the check is per call.
        let quant_fast = |t: __m512| {
            let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
            _mm512_min_ps(_mm512_max_ps(r, flo), fhi)
        };
        let quant_exact_f = |t: __m512| _mm512_cvtepi32_ps(quant_exact(t));
        let ldx = |s: usize, i: usize| _mm512_loadu_ps(x[s][i].as_ptr());

        let mut max = [zero; S];
        let mut amax = [zero; S];
        let mut fast = true;
        let mut finite = [0xFFFFu16; S];
        for i in 0..16 {
            for s in 0..S {
                let v = ldx(s, i);
                let ax = _mm512_abs_ps(v);
                let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(ax, amax[s]);
                amax[s] = _mm512_mask_mov_ps(amax[s], take, ax);
                max[s] = _mm512_mask_mov_ps(max[s], take, v);
                finite[s] &= _mm512_cmp_ps_mask::<_CMP_LT_OQ>(ax, inf);
            }
        }
        let eps = _mm512_set1_ps(GROUP_MAX_EPS);
        let mut tiny = [0u16; S];
        for s in 0..S {
            // Lanes with amax < GROUP_MAX_EPS are discarded at the end: anything goes there.
            tiny[s] = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(amax[s], eps);
            fast &= (finite[s] | tiny[s]) == 0xFFFF;
        }
        // w = x², and w·x, which the C code evaluates as `w * x[i] * l` = (w·x)·l.
        let mut w = [[zero; 16]; S];
        let mut wx = [[zero; 16]; S];
        for s in 0..S {
            for i in 0..16 {
                let v = ldx(s, i);
                w[s][i] = _mm512_mul_ps(v, v);
                wx[s][i] = _mm512_mul_ps(w[s][i], v);
            }
        }
        let mut scale = [zero; S];
        let mut best = [zero; S];
        let mut best_iscale = [zero; S];
        for is in -10i32..=9 {
            if is == 0 {
                continue;
            }
            // is = -10 stands for the first, unconditional candidate (iscale = -nmax / max).
            let num = if is == -10 {
                -NMAXF
            } else {
                -(NMAXF + 0.1 * is as f32)
            };
            let mut iscale = [zero; S];
            for s in 0..S {
                iscale[s] = _mm512_div_ps(_mm512_set1_ps(num), max[s]);
            }
            let mut sumlx = [zero; S];
            let mut suml2 = [zero; S];
            macro_rules! pass {
                ($quant:expr) => {
                    for i in 0..16 {
                        for s in 0..S {
                            let qf = $quant(_mm512_mul_ps(iscale[s], ldx(s, i)));
                            sumlx[s] = _mm512_add_ps(sumlx[s], _mm512_mul_ps(wx[s][i], qf));
                            suml2[s] = _mm512_add_ps(
                                suml2[s],
                                _mm512_mul_ps(_mm512_mul_ps(w[s][i], qf), qf),
                            );
                        }
                    }
                };
            }
            if fast {
                pass!(quant_fast);
            } else {
                pass!(quant_exact_f);
            }
            for s in 0..S {
                if is == -10 {
                    // scale = suml2 ? sumlx/suml2 : 0; best = scale·sumlx
                    let nz = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(suml2[s], zero);
                    scale[s] = _mm512_maskz_mov_ps(nz, _mm512_div_ps(sumlx[s], suml2[s]));
                    best[s] = _mm512_mul_ps(scale[s], sumlx[s]);
                    best_iscale[s] = iscale[s];
                    continue;
                }
                let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(suml2[s], zero)
                    & _mm512_cmp_ps_mask::<_CMP_GT_OQ>(
                        _mm512_mul_ps(sumlx[s], sumlx[s]),
                        _mm512_mul_ps(best[s], suml2[s]),
                    );
                if take != 0 {
                    let new_scale = _mm512_div_ps(sumlx[s], suml2[s]);
                    scale[s] = _mm512_mask_mov_ps(scale[s], take, new_scale);
                    best[s] = _mm512_mask_mov_ps(best[s], take, _mm512_mul_ps(new_scale, sumlx[s]));
                    best_iscale[s] = _mm512_mask_mov_ps(best_iscale[s], take, iscale[s]);
                }
            }
        }
        let mut out = [QxLanes::default(); S];
        for s in 0..S {
            // amax < GROUP_MAX_EPS: L = 0, scale = 0.
            _mm512_storeu_ps(
                out[s].scale.as_mut_ptr(),
                _mm512_maskz_mov_ps(!tiny[s], scale[s]),
            );
            _mm512_storeu_ps(out[s].iscale.as_mut_ptr(), best_iscale[s]);
            out[s].tiny = tiny[s];
        }
        out
    }
}

/// What [`qx_x16`] found for the 16 sub-blocks of a Q6_K super-block (lane `j` = sub-block `j`).
#[derive(Clone, Copy, Default)]
pub(crate) struct QxLanes {
    /// The scale (0 below `GROUP_MAX_EPS`).
    pub scale: [f32; 16],
    /// The search's quants are `clamp(nearest_int(iscale · x), -32, 31) + 32` …
    pub iscale: [f32; 16],
    /// … except in sub-blocks below `GROUP_MAX_EPS` (bit `j`), where they are 0.
    pub tiny: u16,
}
