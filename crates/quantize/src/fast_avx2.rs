//! AVX2 versions of the k-quant searches: `make_qkx2_quants` (Q4_K, Q5_K), `make_qx_quants`
//! (Q6_K) and `make_q3_quants` (Q3_K), 8 sub-blocks per register.
//!
//! Explicit intrinsics because the auto-vectoriser handles the per-lane selects poorly. Every
//! lane performs the reference's IEEE operations in the reference's order: `_mm256_mul_ps`,
//! `_mm256_add_ps`, `_mm256_div_ps` are the same correctly rounded operations as the scalar
//! ones, there is no FMA, and the selects reproduce the C `if`s exactly (including `-0.0`).

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

/// `make_qkx2_quants(32, nmax, x, w, L, &the_min, Laux, rmin, 0.1, nstep, false)` for 8
/// sub-blocks in the lanes (`x[i][j]` = element `i` of sub-block `j`). Returns (scales, mins).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn qkx2_x8(
    nmax: i32,
    x: &[[f32; 8]; 32],
    w: &[[f32; 8]; 32],
    l: &mut [[i32; 8]; 32],
    rmin: f32,
    nstep: i32,
) -> ([f32; 8], [f32; 8]) {
    const RDELTA: f32 = 0.1;
    // SAFETY (whole body): AVX2 is available per this function's contract; every load and
    // store goes through `[f32; 8]` / `[i32; 8]` references, i.e. 32 valid bytes.
    unsafe {
        let ldx = |i: usize| _mm256_loadu_ps(x[i].as_ptr());
        let ldw = |i: usize| _mm256_loadu_ps(w[i].as_ptr());
        let zero = _mm256_setzero_ps();
        let magic = _mm256_set1_ps(12_582_912.0);
        let mant = _mm256_set1_epi32(0x007F_FFFF);
        let bias = _mm256_set1_epi32(0x0040_0000);
        let izero = _mm256_setzero_si256();
        let inmax = _mm256_set1_epi32(nmax);
        // nearest_int, then MAX(0, MIN(nmax, l))
        let quant = |v: __m256| {
            let t = _mm256_castps_si256(_mm256_add_ps(v, magic));
            let q = _mm256_sub_epi32(_mm256_and_si256(t, mant), bias);
            _mm256_max_epi32(izero, _mm256_min_epi32(inmax, q))
        };

        let x0 = ldx(0);
        let mut min = x0;
        let mut max = x0;
        let mut sum_w = ldw(0);
        let mut sum_x = _mm256_mul_ps(sum_w, x0);
        for i in 1..32 {
            let v = ldx(i);
            let wi = ldw(i);
            // minps(a, b) = a < b ? a : b — exactly `if (x < min) min = x`.
            min = _mm256_min_ps(v, min);
            max = _mm256_max_ps(v, max);
            sum_w = _mm256_add_ps(sum_w, wi);
            sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(wi, v));
        }
        min = _mm256_blendv_ps(min, zero, _mm256_cmp_ps::<_CMP_GT_OQ>(min, zero));
        let flat = _mm256_cmp_ps::<_CMP_EQ_OQ>(max, min);
        let min0 = min;
        let nmaxf = nmax as f32;
        let iscale = _mm256_div_ps(_mm256_set1_ps(nmaxf), _mm256_sub_ps(max, min));
        let mut scale = _mm256_div_ps(_mm256_set1_ps(1.0), iscale);
        let mut best = zero;
        for i in 0..32 {
            let v = ldx(i);
            let q = quant(_mm256_mul_ps(iscale, _mm256_sub_ps(v, min)));
            _mm256_storeu_si256(l[i].as_mut_ptr().cast(), q);
            let qf = _mm256_cvtepi32_ps(q);
            let diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, qf), min), v);
            best = _mm256_add_ps(best, _mm256_mul_ps(ldw(i), _mm256_mul_ps(diff, diff)));
        }
        let mut laux = [_mm256_setzero_si256(); 32];
        for is in 0..=nstep {
            let num = _mm256_set1_ps(rmin + RDELTA * is as f32 + nmaxf);
            let iscale = _mm256_div_ps(num, _mm256_sub_ps(max, min));
            let mut sum_l = zero;
            let mut sum_l2 = zero;
            let mut sum_xl = zero;
            for i in 0..32 {
                let v = ldx(i);
                let q = quant(_mm256_mul_ps(iscale, _mm256_sub_ps(v, min)));
                laux[i] = q;
                let qf = _mm256_cvtepi32_ps(q);
                let wq = _mm256_mul_ps(ldw(i), qf);
                sum_l = _mm256_add_ps(sum_l, wq);
                sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wq, qf));
                sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wq, v));
            }
            let d = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
            let ok = _mm256_cmp_ps::<_CMP_GT_OQ>(d, zero);
            let mut ts = _mm256_div_ps(
                _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)),
                d,
            );
            let mut tm = _mm256_div_ps(
                _mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)),
                d,
            );
            let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(tm, zero);
            tm = _mm256_blendv_ps(tm, zero, pos);
            ts = _mm256_blendv_ps(ts, _mm256_div_ps(sum_xl, sum_l2), pos);
            let mut cur = zero;
            for i in 0..32 {
                let qf = _mm256_cvtepi32_ps(laux[i]);
                let diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(ts, qf), tm), ldx(i));
                cur = _mm256_add_ps(cur, _mm256_mul_ps(ldw(i), _mm256_mul_ps(diff, diff)));
            }
            let take = _mm256_and_ps(ok, _mm256_cmp_ps::<_CMP_LT_OQ>(cur, best));
            if _mm256_movemask_ps(take) != 0 {
                best = _mm256_blendv_ps(best, cur, take);
                scale = _mm256_blendv_ps(scale, ts, take);
                min = _mm256_blendv_ps(min, tm, take);
                let takei = _mm256_castps_si256(take);
                for i in 0..32 {
                    let p = l[i].as_mut_ptr().cast::<__m256i>();
                    let old = _mm256_loadu_si256(p);
                    _mm256_storeu_si256(p, _mm256_blendv_epi8(old, laux[i], takei));
                }
            }
        }
        if _mm256_movemask_ps(flat) != 0 {
            scale = _mm256_blendv_ps(scale, zero, flat);
            min = _mm256_blendv_ps(min, min0, flat);
            let flati = _mm256_castps_si256(flat);
            for row in l.iter_mut() {
                let p = row.as_mut_ptr().cast::<__m256i>();
                _mm256_storeu_si256(p, _mm256_blendv_epi8(_mm256_loadu_si256(p), izero, flati));
            }
        }
        let the_min = _mm256_xor_ps(min, _mm256_set1_ps(-0.0));
        let mut s = [0f32; 8];
        let mut m = [0f32; 8];
        _mm256_storeu_ps(s.as_mut_ptr(), scale);
        _mm256_storeu_ps(m.as_mut_ptr(), the_min);
        (s, m)
    }
}

/// `make_q3_quants(16, 4, x, L, do_rmse = true)` for the 8 Q3_K sub-blocks `8h..8h+8`
/// (`x[i][j]` = element `i` of sub-block `j`): the initial rounding, then up to 5 rounds of
/// the per-element coordinate descent, each lane stopping after its first round without a
/// change, as the C loop does. Writes `q + 4` into `l[i][8h..8h+8]` and returns the 8 scales.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn q3_x8(x: &[[f32; 16]; 16], h: usize, l: &mut [[i32; 16]; 16]) -> [f32; 8] {
    const NMAX: i32 = 4;
    let lanes = 8 * (h & 1);
    // SAFETY (whole body): AVX2 per the contract; loads/stores cover `lanes..lanes + 8` of
    // 16-element rows, in bounds because `lanes` is 0 or 8.
    unsafe {
        let ldx = |i: usize| _mm256_loadu_ps(x[i][lanes..lanes + 8].as_ptr());
        let zero = _mm256_setzero_ps();
        let sign = _mm256_set1_ps(-0.0);
        let magic = _mm256_set1_ps(12_582_912.0);
        let mant = _mm256_set1_epi32(0x007F_FFFF);
        let bias = _mm256_set1_epi32(0x0040_0000);
        let lo = _mm256_set1_epi32(-NMAX);
        let hi = _mm256_set1_epi32(NMAX - 1);
        // nearest_int, then MAX(-nmax, MIN(nmax - 1, l))
        let quant = |v: __m256| {
            let t = _mm256_castps_si256(_mm256_add_ps(v, magic));
            let q = _mm256_sub_epi32(_mm256_and_si256(t, mant), bias);
            _mm256_max_epi32(lo, _mm256_min_epi32(hi, q))
        };
        let mut max = zero;
        let mut amax = zero;
        for i in 0..16 {
            let v = ldx(i);
            let ax = _mm256_andnot_ps(sign, v);
            let take = _mm256_cmp_ps::<_CMP_GT_OQ>(ax, amax);
            amax = _mm256_blendv_ps(amax, ax, take);
            max = _mm256_blendv_ps(max, v, take);
        }
        let iscale = _mm256_div_ps(_mm256_set1_ps(-(NMAX as f32)), max);
        let mut sumlx = zero;
        let mut suml2 = zero;
        let mut lq = [_mm256_setzero_si256(); 16];
        for i in 0..16 {
            let v = ldx(i);
            let q = quant(_mm256_mul_ps(iscale, v));
            lq[i] = q;
            let qf = _mm256_cvtepi32_ps(q);
            let w = _mm256_mul_ps(v, v);
            sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w, v), qf));
            suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, qf), qf));
        }
        let mut active = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
        for _itry in 0..5 {
            let mut changed = zero;
            for i in 0..16 {
                let v = ldx(i);
                let w = _mm256_mul_ps(v, v);
                let wv = _mm256_mul_ps(w, v);
                let li = _mm256_cvtepi32_ps(lq[i]);
                let slx = _mm256_sub_ps(sumlx, _mm256_mul_ps(wv, li));
                let sl2 = _mm256_sub_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, li), li));
                let new_l = quant(_mm256_div_ps(_mm256_mul_ps(v, sl2), slx));
                let nl = _mm256_cvtepi32_ps(new_l);
                let slx2 = _mm256_add_ps(slx, _mm256_mul_ps(wv, nl));
                let sl22 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(w, nl), nl));
                let differs = _mm256_xor_ps(
                    _mm256_castsi256_ps(_mm256_cmpeq_epi32(new_l, lq[i])),
                    _mm256_castsi256_ps(_mm256_set1_epi32(-1)),
                );
                let better = _mm256_cmp_ps::<_CMP_GT_OQ>(
                    _mm256_mul_ps(_mm256_mul_ps(slx2, slx2), suml2),
                    _mm256_mul_ps(_mm256_mul_ps(sumlx, sumlx), sl22),
                );
                let take = _mm256_and_ps(
                    _mm256_and_ps(active, _mm256_cmp_ps::<_CMP_GT_OQ>(slx, zero)),
                    _mm256_and_ps(
                        differs,
                        _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(sl22, zero), better),
                    ),
                );
                // Changes are rare: branching around the selects keeps the next element's
                // work off this one's dependency chain (as the branchy C code is).
                if _mm256_movemask_ps(take) != 0 {
                    lq[i] = _mm256_blendv_epi8(lq[i], new_l, _mm256_castps_si256(take));
                    sumlx = _mm256_blendv_ps(sumlx, slx2, take);
                    suml2 = _mm256_blendv_ps(suml2, sl22, take);
                    changed = _mm256_or_ps(changed, take);
                }
            }
            active = _mm256_and_ps(active, changed);
            if _mm256_movemask_ps(active) == 0 {
                break;
            }
        }
        // scale = suml2 > 0 ? sumlx/suml2 : 0
        let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(suml2, zero);
        let mut scale = _mm256_blendv_ps(zero, _mm256_div_ps(sumlx, suml2), pos);
        // amax < GROUP_MAX_EPS: L = 0, scale = 0
        let tiny =
            _mm256_cmp_ps::<_CMP_LT_OQ>(amax, _mm256_set1_ps(crate::reference::GROUP_MAX_EPS));
        scale = _mm256_blendv_ps(scale, zero, tiny);
        let tinyi = _mm256_castps_si256(tiny);
        let off = _mm256_set1_epi32(NMAX);
        for i in 0..16 {
            let q = _mm256_blendv_epi8(_mm256_add_epi32(lq[i], off), _mm256_setzero_si256(), tinyi);
            _mm256_storeu_si256(l[i][lanes..lanes + 8].as_mut_ptr().cast::<__m256i>(), q);
        }
        let mut s = [0f32; 8];
        _mm256_storeu_ps(s.as_mut_ptr(), scale);
        s
    }
}

/// What [`qkx2_x8s`] found for 8 sub-blocks (lane `j` = sub-block `j`).
#[derive(Clone, Copy, Default)]
pub(crate) struct Qkx2Lanes8 {
    /// The scale (0 for flat sub-blocks).
    pub scale: [f32; 8],
    /// `-min`.
    pub the_min: [f32; 8],
    /// The search's quants are `clamp(nearest_int(iscale · (x − qmin)), 0, nmax)` …
    pub iscale: [f32; 8],
    /// … (see `iscale`) …
    pub qmin: [f32; 8],
    /// … except in flat sub-blocks (bit `j`), where they are 0.
    pub flat: u8,
}

/// [`qkx2_x8`] for `S` super-blocks at once (`x[s][i][j]` = element `i` of sub-block `j` of
/// super-block `s`), with the weights of Q4_K / Q5_K computed here, interleaved so that the
/// super-blocks' dependent chains overlap. Same two changes of *how* as
/// `fast_avx512::qkx2_x16` (rounding in the float domain where |t| < 2^22 and every input is
/// finite, the best candidate's quants recomputed once at the end instead of copied on every
/// improvement); see there.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn qkx2_x8s<const S: usize>(
    p: &crate::reference::Qkx2,
    x: &[[[f32; 8]; 32]; S],
) -> [Qkx2Lanes8; S] {
    const ROUND_LIMIT: f32 = 4_000_000.0;
    // SAFETY (whole body): AVX2 per the contract; every load and store goes through a
    // `[f32; 8]` reference, i.e. 32 valid bytes.
    unsafe {
        let zero = _mm256_setzero_ps();
        let all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
        let sign = _mm256_set1_ps(-0.0);
        let nmaxf = p.nmax as f32;
        let vnmax = _mm256_set1_ps(nmaxf);
        let magic = _mm256_set1_ps(12_582_912.0);
        let mant = _mm256_set1_epi32(0x007F_FFFF);
        let bias = _mm256_set1_epi32(0x0040_0000);
        let inmax = _mm256_set1_epi32(p.nmax);
        let izero = _mm256_setzero_si256();
        let limit = _mm256_set1_ps(ROUND_LIMIT);
        let inf = _mm256_set1_ps(f32::INFINITY);
        let abs = |v: __m256| _mm256_andnot_ps(sign, v);
        let quant_exact = |t: __m256| {
            let b = _mm256_castps_si256(_mm256_add_ps(t, magic));
            let q = _mm256_sub_epi32(_mm256_and_si256(b, mant), bias);
            _mm256_max_epi32(izero, _mm256_min_epi32(inmax, q))
        };
        let quant_exact_f = |t: __m256| _mm256_cvtepi32_ps(quant_exact(t));
        // maxps(r, 0) returns +0 for r = -0 (the second operand wins ties).
        let quant_fast = |t: __m256| {
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
            _mm256_min_ps(_mm256_max_ps(r, zero), vnmax)
        };
        let ldx = |s: usize, i: usize| _mm256_loadu_ps(x[s][i].as_ptr());

        let mut w = [[[0f32; 8]; 32]; S];
        let mut finite = true;
        for s in 0..S {
            let mut sum_x2 = zero;
            for i in 0..32 {
                let v = ldx(s, i);
                sum_x2 = _mm256_add_ps(sum_x2, _mm256_mul_ps(v, v));
                finite &= _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(abs(v), inf)) == 0xFF;
            }
            let av_x = _mm256_sqrt_ps(_mm256_div_ps(sum_x2, _mm256_set1_ps(32.0)));
            for i in 0..32 {
                _mm256_storeu_ps(w[s][i].as_mut_ptr(), _mm256_add_ps(av_x, abs(ldx(s, i))));
            }
        }
        let ldw = |s: usize, i: usize| _mm256_loadu_ps(w[s][i].as_ptr());

        let mut lo = [zero; S];
        let mut min = [zero; S];
        let mut max = [zero; S];
        let mut sum_w = [zero; S];
        let mut sum_x = [zero; S];
        for s in 0..S {
            let x0 = ldx(s, 0);
            min[s] = x0;
            max[s] = x0;
            sum_w[s] = ldw(s, 0);
            sum_x[s] = _mm256_mul_ps(sum_w[s], x0);
        }
        for i in 1..32 {
            for s in 0..S {
                let v = ldx(s, i);
                let wi = ldw(s, i);
                min[s] = _mm256_min_ps(v, min[s]);
                max[s] = _mm256_max_ps(v, max[s]);
                sum_w[s] = _mm256_add_ps(sum_w[s], wi);
                sum_x[s] = _mm256_add_ps(sum_x[s], _mm256_mul_ps(wi, v));
            }
        }
        let mut flat = [zero; S];
        let mut min0 = [zero; S];
        let mut scale = [zero; S];
        let mut best = [zero; S];
        let mut best_iscale = [zero; S];
        let mut best_qmin = [zero; S];
        for s in 0..S {
            lo[s] = min[s];
            min[s] = _mm256_blendv_ps(min[s], zero, _mm256_cmp_ps::<_CMP_GT_OQ>(min[s], zero));
            flat[s] = _mm256_cmp_ps::<_CMP_EQ_OQ>(max[s], min[s]);
            min0[s] = min[s];
            let iscale = _mm256_div_ps(vnmax, _mm256_sub_ps(max[s], min[s]));
            scale[s] = _mm256_div_ps(_mm256_set1_ps(1.0), iscale);
            best_iscale[s] = iscale;
            best_qmin[s] = min[s];
        }
        for i in 0..32 {
            for s in 0..S {
                let v = ldx(s, i);
                let t = _mm256_mul_ps(best_iscale[s], _mm256_sub_ps(v, min[s]));
                let qf = quant_exact_f(t);
                let diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale[s], qf), min[s]), v);
                best[s] =
                    _mm256_add_ps(best[s], _mm256_mul_ps(ldw(s, i), _mm256_mul_ps(diff, diff)));
            }
        }

        let mut laux = [[zero; 32]; S];
        for is in 0..=p.nstep {
            let num = _mm256_set1_ps(p.rmin + p.rdelta * is as f32 + nmaxf);
            let mut iscale = [zero; S];
            let mut fast = finite;
            for s in 0..S {
                let range = _mm256_sub_ps(max[s], min[s]);
                iscale[s] = _mm256_div_ps(num, range);
                let span = _mm256_max_ps(abs(_mm256_sub_ps(lo[s], min[s])), abs(range));
                let bound = _mm256_mul_ps(abs(iscale[s]), span);
                let ok = _mm256_or_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(bound, limit), flat[s]);
                fast &= _mm256_movemask_ps(ok) == 0xFF;
            }
            let mut sum_l = [zero; S];
            let mut sum_l2 = [zero; S];
            let mut sum_xl = [zero; S];
            macro_rules! pass {
                ($quant:expr) => {
                    for i in 0..32 {
                        for s in 0..S {
                            let v = ldx(s, i);
                            let qf = $quant(_mm256_mul_ps(iscale[s], _mm256_sub_ps(v, min[s])));
                            laux[s][i] = qf;
                            let wq = _mm256_mul_ps(ldw(s, i), qf);
                            sum_l[s] = _mm256_add_ps(sum_l[s], wq);
                            sum_l2[s] = _mm256_add_ps(sum_l2[s], _mm256_mul_ps(wq, qf));
                            sum_xl[s] = _mm256_add_ps(sum_xl[s], _mm256_mul_ps(wq, v));
                        }
                    }
                };
            }
            if fast {
                pass!(quant_fast);
            } else {
                pass!(quant_exact_f);
            }
            let mut ok = [zero; S];
            let mut ts = [zero; S];
            let mut tm = [zero; S];
            for s in 0..S {
                let d = _mm256_sub_ps(
                    _mm256_mul_ps(sum_w[s], sum_l2[s]),
                    _mm256_mul_ps(sum_l[s], sum_l[s]),
                );
                ok[s] = _mm256_cmp_ps::<_CMP_GT_OQ>(d, zero);
                ts[s] = _mm256_div_ps(
                    _mm256_sub_ps(
                        _mm256_mul_ps(sum_w[s], sum_xl[s]),
                        _mm256_mul_ps(sum_x[s], sum_l[s]),
                    ),
                    d,
                );
                tm[s] = _mm256_div_ps(
                    _mm256_sub_ps(
                        _mm256_mul_ps(sum_l2[s], sum_x[s]),
                        _mm256_mul_ps(sum_l[s], sum_xl[s]),
                    ),
                    d,
                );
                let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(tm[s], zero);
                if _mm256_movemask_ps(pos) != 0 {
                    tm[s] = _mm256_blendv_ps(tm[s], zero, pos);
                    ts[s] = _mm256_blendv_ps(ts[s], _mm256_div_ps(sum_xl[s], sum_l2[s]), pos);
                }
            }
            let mut cur = [zero; S];
            for i in 0..32 {
                for s in 0..S {
                    let qf = laux[s][i];
                    let diff =
                        _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(ts[s], qf), tm[s]), ldx(s, i));
                    cur[s] =
                        _mm256_add_ps(cur[s], _mm256_mul_ps(ldw(s, i), _mm256_mul_ps(diff, diff)));
                }
            }
            for s in 0..S {
                let take = _mm256_and_ps(ok[s], _mm256_cmp_ps::<_CMP_LT_OQ>(cur[s], best[s]));
                best[s] = _mm256_blendv_ps(best[s], cur[s], take);
                scale[s] = _mm256_blendv_ps(scale[s], ts[s], take);
                best_iscale[s] = _mm256_blendv_ps(best_iscale[s], iscale[s], take);
                best_qmin[s] = _mm256_blendv_ps(best_qmin[s], min[s], take);
                min[s] = _mm256_blendv_ps(min[s], tm[s], take);
            }
        }

        let mut out = [Qkx2Lanes8::default(); S];
        for s in 0..S {
            // max == min: L = 0, scale 0, the_min = -min.
            let keep = _mm256_xor_ps(flat[s], all);
            let sc = _mm256_and_ps(keep, scale[s]);
            let mn = _mm256_blendv_ps(min[s], min0[s], flat[s]);
            _mm256_storeu_ps(out[s].scale.as_mut_ptr(), sc);
            _mm256_storeu_ps(out[s].the_min.as_mut_ptr(), _mm256_xor_ps(mn, sign));
            _mm256_storeu_ps(out[s].iscale.as_mut_ptr(), best_iscale[s]);
            _mm256_storeu_ps(out[s].qmin.as_mut_ptr(), best_qmin[s]);
            out[s].flat = _mm256_movemask_ps(flat[s]) as u8;
        }
        out
    }
}

/// `make_qx_quants(16, 32, x, L, rmse_type = 1, NULL)` for all 16 sub-blocks of a Q6_K
/// super-block (`x[i][j]` = element `i` of sub-block `j`), the two halves interleaved
/// as independent streams, with the changes of `fast_avx512::qx_x16` (float rounding when
/// every input of a kept sub-block is finite, `w·x` computed once, the best candidate's quants
/// recomputed by the caller from its `iscale`). Returns (scales, best iscales, bit `j` set when
/// sub-block `j` is below `GROUP_MAX_EPS`: scale 0, quants 0).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn qx_x8s(x: &[[f32; 16]; 16]) -> ([f32; 16], [f32; 16], u16) {
    const NMAX: i32 = 32;
    const NMAXF: f32 = 32.0;
    const S: usize = 2;
    // SAFETY (whole body): AVX2 per the contract; loads and stores cover `8s..8s + 8` of
    // 16-element rows, in bounds for s < 2.
    unsafe {
        let zero = _mm256_setzero_ps();
        let sign = _mm256_set1_ps(-0.0);
        let magic = _mm256_set1_ps(12_582_912.0);
        let mant = _mm256_set1_epi32(0x007F_FFFF);
        let bias = _mm256_set1_epi32(0x0040_0000);
        let ilo = _mm256_set1_epi32(-NMAX);
        let ihi = _mm256_set1_epi32(NMAX - 1);
        let flo = _mm256_set1_ps(-NMAXF);
        let fhi = _mm256_set1_ps(NMAXF - 1.0);
        let inf = _mm256_set1_ps(f32::INFINITY);
        let quant_exact_f = |t: __m256| {
            let b = _mm256_castps_si256(_mm256_add_ps(t, magic));
            let q = _mm256_sub_epi32(_mm256_and_si256(b, mant), bias);
            _mm256_cvtepi32_ps(_mm256_max_epi32(ilo, _mm256_min_epi32(ihi, q)))
        };
        // |t| ≤ 33 in a kept sub-block whose inputs are all finite (see qx_x16). A -0 result
        // only ever adds ±0 to a sum that starts at +0, like the integer path's +0.
        let quant_fast = |t: __m256| {
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
            _mm256_min_ps(_mm256_max_ps(r, flo), fhi)
        };
        let ldx = |s: usize, i: usize| _mm256_loadu_ps(x[i][8 * s..8 * s + 8].as_ptr());

        let mut max = [zero; S];
        let mut amax = [zero; S];
        let mut finite = [_mm256_castsi256_ps(_mm256_set1_epi32(-1)); S];
        for i in 0..16 {
            for s in 0..S {
                let v = ldx(s, i);
                let ax = _mm256_andnot_ps(sign, v);
                let take = _mm256_cmp_ps::<_CMP_GT_OQ>(ax, amax[s]);
                amax[s] = _mm256_blendv_ps(amax[s], ax, take);
                max[s] = _mm256_blendv_ps(max[s], v, take);
                finite[s] = _mm256_and_ps(finite[s], _mm256_cmp_ps::<_CMP_LT_OQ>(ax, inf));
            }
        }
        let eps = _mm256_set1_ps(crate::reference::GROUP_MAX_EPS);
        let mut tiny = [zero; S];
        let mut fast = true;
        for s in 0..S {
            tiny[s] = _mm256_cmp_ps::<_CMP_LT_OQ>(amax[s], eps);
            fast &= _mm256_movemask_ps(_mm256_or_ps(finite[s], tiny[s])) == 0xFF;
        }
        let mut w = [[zero; 16]; S];
        let mut wx = [[zero; 16]; S];
        for s in 0..S {
            for i in 0..16 {
                let v = ldx(s, i);
                w[s][i] = _mm256_mul_ps(v, v);
                wx[s][i] = _mm256_mul_ps(w[s][i], v);
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
                iscale[s] = _mm256_div_ps(_mm256_set1_ps(num), max[s]);
            }
            let mut sumlx = [zero; S];
            let mut suml2 = [zero; S];
            macro_rules! pass {
                ($quant:expr) => {
                    for i in 0..16 {
                        for s in 0..S {
                            let qf = $quant(_mm256_mul_ps(iscale[s], ldx(s, i)));
                            sumlx[s] = _mm256_add_ps(sumlx[s], _mm256_mul_ps(wx[s][i], qf));
                            suml2[s] = _mm256_add_ps(
                                suml2[s],
                                _mm256_mul_ps(_mm256_mul_ps(w[s][i], qf), qf),
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
                    let nz = _mm256_cmp_ps::<_CMP_NEQ_UQ>(suml2[s], zero);
                    scale[s] = _mm256_and_ps(nz, _mm256_div_ps(sumlx[s], suml2[s]));
                    best[s] = _mm256_mul_ps(scale[s], sumlx[s]);
                    best_iscale[s] = iscale[s];
                    continue;
                }
                let take = _mm256_and_ps(
                    _mm256_cmp_ps::<_CMP_GT_OQ>(suml2[s], zero),
                    _mm256_cmp_ps::<_CMP_GT_OQ>(
                        _mm256_mul_ps(sumlx[s], sumlx[s]),
                        _mm256_mul_ps(best[s], suml2[s]),
                    ),
                );
                if _mm256_movemask_ps(take) != 0 {
                    let new_scale = _mm256_div_ps(sumlx[s], suml2[s]);
                    scale[s] = _mm256_blendv_ps(scale[s], new_scale, take);
                    best[s] = _mm256_blendv_ps(best[s], _mm256_mul_ps(new_scale, sumlx[s]), take);
                    best_iscale[s] = _mm256_blendv_ps(best_iscale[s], iscale[s], take);
                }
            }
        }
        let mut scales = [0f32; 16];
        let mut iscales = [0f32; 16];
        let mut tiny_bits = 0u16;
        for s in 0..S {
            // amax < GROUP_MAX_EPS: scale = 0 (the caller zeroes the quants).
            let kept = _mm256_andnot_ps(tiny[s], scale[s]);
            _mm256_storeu_ps(scales[8 * s..].as_mut_ptr(), kept);
            _mm256_storeu_ps(iscales[8 * s..].as_mut_ptr(), best_iscale[s]);
            tiny_bits |= (_mm256_movemask_ps(tiny[s]) as u16) << (8 * s);
        }
        (scales, iscales, tiny_bits)
    }
}
