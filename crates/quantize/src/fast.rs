//! Faster k-quant kernels with exactly the bytes of `reference`.
//!
//! The reference search loops are long chains of dependent float additions, so a scalar core
//! spends most of its time waiting on latency. Sub-blocks of a super-block are independent, so
//! here every sub-block is a SIMD lane (8 lanes of 32 values for Q4_K/Q5_K, 16 lanes of 16 for
//! Q6_K) and each lane performs the reference's operations in the reference's order. No
//! reassociation, no fused multiply-add: the same IEEE operations on the same values give the
//! same bits. The data is transposed so that `x[i][j]` is element `i` of sub-block `j`.
//!
//! Tested against `reference` on random and adversarial rows (`tests/fast_vs_reference.rs`).
//! Index loops keep the lane structure visible (and vectorisable).
#![allow(clippy::needless_range_loop)]

use crate::blocks::{
    get_scale_min_k4, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0,
    BlockQ5_1, BlockQ6K, BlockQ8_0, QK, QK_K,
};
use crate::isa::Isa;
use crate::reference::{
    c_f32_to_byte, h, hf, nearest_int as ni, pack_2bit, pack_q2_k_scales, pack_q3_k,
    pack_q3_k_scales, pack_q5, pack_q6, pack_scales_mins, q3_k_scale, Qkx2, GROUP_MAX_EPS,
    QKX2_Q2K, QKX2_Q4K, QKX2_Q5K,
};

/// `make_qkx2_quants(N, p.nmax, …)` on `L` sub-blocks of `N` values at once (`x[i][j]` =
/// element `i` of sub-block `j`). Returns (scales, the_mins); `l[i][j]` receives the quants.
#[inline(always)]
fn qkx2_lanes<const N: usize, const L: usize>(
    p: &Qkx2,
    x: &[[f32; L]; N],
    w: &[[f32; L]; N],
    l: &mut [[i32; L]; N],
) -> ([f32; L], [f32; L]) {
    let nmax = p.nmax;
    let err = |diff: f32| if p.use_mad { diff.abs() } else { diff * diff };
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = w[0];
    let mut sum_x = [0f32; L];
    for j in 0..L {
        sum_x[j] = sum_w[j] * x[0][j];
    }
    for i in 1..N {
        for j in 0..L {
            let v = x[i][j];
            min[j] = if v < min[j] { v } else { min[j] };
            max[j] = if v > max[j] { v } else { max[j] };
            sum_w[j] += w[i][j];
            sum_x[j] += w[i][j] * v;
        }
    }
    let mut flat = [false; L];
    for j in 0..L {
        if min[j] > 0.0 {
            min[j] = 0.0;
        }
        flat[j] = max[j] == min[j];
    }
    let min0 = min;
    let nmaxf = nmax as f32;
    let mut scale = [0f32; L];
    let mut iscale = [0f32; L];
    for j in 0..L {
        iscale[j] = nmaxf / (max[j] - min[j]);
        scale[j] = 1.0 / iscale[j];
    }
    let mut best = [0f32; L];
    for i in 0..N {
        for j in 0..L {
            let q = ni(iscale[j] * (x[i][j] - min[j])).clamp(0, nmax);
            l[i][j] = q;
            let diff = scale[j] * q as f32 + min[j] - x[i][j];
            best[j] += w[i][j] * err(diff);
        }
    }
    let mut laux = [[0f32; L]; N];
    for is in 0..=p.nstep {
        for j in 0..L {
            iscale[j] = (p.rmin + p.rdelta * is as f32 + nmaxf) / (max[j] - min[j]);
        }
        let mut sum_l = [0f32; L];
        let mut sum_l2 = [0f32; L];
        let mut sum_xl = [0f32; L];
        for i in 0..N {
            for j in 0..L {
                let q = ni(iscale[j] * (x[i][j] - min[j])).clamp(0, nmax) as f32;
                laux[i][j] = q;
                let ww = w[i][j];
                sum_l[j] += ww * q;
                sum_l2[j] += ww * q * q;
                sum_xl[j] += ww * q * x[i][j];
            }
        }
        let mut this_scale = [0f32; L];
        let mut this_min = [0f32; L];
        let mut ok = [false; L];
        for j in 0..L {
            let d = sum_w[j] * sum_l2[j] - sum_l[j] * sum_l[j];
            ok[j] = d > 0.0;
            let mut ts = (sum_w[j] * sum_xl[j] - sum_x[j] * sum_l[j]) / d;
            let mut tm = (sum_l2[j] * sum_x[j] - sum_l[j] * sum_xl[j]) / d;
            if tm > 0.0 {
                tm = 0.0;
                ts = sum_xl[j] / sum_l2[j];
            }
            this_scale[j] = ts;
            this_min[j] = tm;
        }
        let mut cur = [0f32; L];
        for i in 0..N {
            for j in 0..L {
                let diff = this_scale[j] * laux[i][j] + this_min[j] - x[i][j];
                cur[j] += w[i][j] * err(diff);
            }
        }
        let mut any = false;
        let mut take = [false; L];
        for j in 0..L {
            take[j] = ok[j] && cur[j] < best[j];
            if take[j] {
                best[j] = cur[j];
                scale[j] = this_scale[j];
                min[j] = this_min[j];
                any = true;
            }
        }
        if any {
            for i in 0..N {
                for j in 0..L {
                    if take[j] {
                        l[i][j] = laux[i][j] as i32;
                    }
                }
            }
        }
    }
    let mut the_min = [0f32; L];
    for j in 0..L {
        if flat[j] {
            scale[j] = 0.0;
            min[j] = min0[j];
            for row in l.iter_mut() {
                row[j] = 0;
            }
        }
        the_min[j] = -min[j];
    }
    (scale, the_min)
}

/// The common part of Q4_K / Q5_K: (d, dmin, packed scales, quants `l[i][j]` = element 32j+i).
#[inline(always)]
fn quantize_kx<const AVX2: bool>(
    x: &[f32; QK_K],
    p: &Qkx2,
) -> ([u8; 2], [u8; 2], [u8; 12], [[i32; 8]; 32]) {
    let mut xt = [[0f32; 8]; 32];
    for j in 0..8 {
        for i in 0..32 {
            xt[i][j] = x[32 * j + i];
        }
    }
    let mut sum_x2 = [0f32; 8];
    for row in &xt {
        for j in 0..8 {
            sum_x2[j] += row[j] * row[j];
        }
    }
    let mut av_x = [0f32; 8];
    for j in 0..8 {
        av_x[j] = (sum_x2[j] / 32.0).sqrt();
    }
    let mut w = [[0f32; 8]; 32];
    for i in 0..32 {
        for j in 0..8 {
            w[i][j] = av_x[j] + xt[i][j].abs();
        }
    }
    let mut l = [[0i32; 8]; 32];
    #[cfg(target_arch = "x86_64")]
    let (scales, mins) = if AVX2 {
        // SAFETY: `AVX2 = true` is only instantiated by the AVX2 and AVX-512 entry points,
        // which run only when `Isa::detected()` reports AVX2 or more.
        unsafe { crate::fast_avx2::qkx2_x8(p.nmax, &xt, &w, &mut l, p.rmin, p.nstep) }
    } else {
        qkx2_lanes(p, &xt, &w, &mut l)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (scales, mins) = qkx2_lanes(p, &xt, &w, &mut l);
    let (d, dmin, packed) = finish_kx(&xt, p.nmax, &scales, &mins, &mut l);
    (d, dmin, packed, l)
}

/// Q4_K / Q5_K after the search: pack the scales and mins, then requantize every sub-block
/// whose packed scale is not zero. Returns (d, dmin, packed scales); updates `l`.
#[inline(always)]
fn finish_kx(
    xt: &[[f32; 8]; 32],
    nmax: i32,
    scales: &[f32; 8],
    mins: &[f32; 8],
    l: &mut [[i32; 8]; 32],
) -> ([u8; 2], [u8; 2], [u8; 12]) {
    let (d, dmin, packed, dl, dml) = kx_scales(scales, mins);
    for i in 0..32 {
        for j in 0..8 {
            let q = ni((xt[i][j] + dml[j]) / dl[j]).clamp(0, nmax);
            if dl[j] != 0.0 {
                l[i][j] = q;
            }
        }
    }
    (d, dmin, packed)
}

/// (d, dmin, packed scales and mins, per sub-block effective scale `dl`, effective min `dml`).
type KxScales = ([u8; 2], [u8; 2], [u8; 12], [f32; 8], [f32; 8]);

/// The packed 6-bit scales and mins of a Q4_K / Q5_K super-block.
#[inline(always)]
fn kx_scales(scales: &[f32; 8], mins: &[f32; 8]) -> KxScales {
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..8 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let packed = pack_scales_mins(scales, mins, max_scale, max_min);
    let d = h(max_scale / 63.0);
    let dmin = h(max_min / 63.0);
    let mut dl = [0f32; 8];
    let mut dml = [0f32; 8];
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, &packed);
        dl[j] = hf(d) * f32::from(sc);
        dml[j] = hf(dmin) * f32::from(m);
    }
    (d, dmin, packed, dl, dml)
}

/// What `quantize_kx` returns, written into a Q4_K or Q5_K block.
type KxOut = ([u8; 2], [u8; 2], [u8; 12], [[i32; 8]; 32]);

#[inline(always)]
fn write_q4_k((d, dmin, scales, l): &KxOut, y: &mut BlockQ4K) {
    y.d = *d;
    y.dmin = *dmin;
    y.scales = *scales;
    for c in 0..4 {
        for i in 0..32 {
            y.qs[32 * c + i] = (l[i][2 * c] | (l[i][2 * c + 1] << 4)) as u8;
        }
    }
}

#[inline(always)]
fn write_q5_k((d, dmin, scales, l): &KxOut, y: &mut BlockQ5K) {
    y.d = *d;
    y.dmin = *dmin;
    y.scales = *scales;
    pack_q5_k_quants(|j, i| l[i][j], y);
}

/// Q5_K's `qs` and `qh` from the quants (`quant(j, i)` = element `i` of sub-block `j`, ≤ 31):
/// the reference's "l > 15: subtract 16, set the qh bit" is bit 4 moved to `qh`. Branch-free,
/// because that test is a coin flip per value and mispredicts cost more than the search.
#[inline(always)]
fn pack_q5_k_quants(quant: impl Fn(usize, usize) -> i32, y: &mut BlockQ5K) {
    let mut qh = [0i32; 32];
    for c in 0..4 {
        for i in 0..32 {
            let (l1, l2) = (quant(2 * c, i), quant(2 * c + 1, i));
            qh[i] |= ((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1));
            y.qs[32 * c + i] = ((l1 & 0xF) | ((l2 & 0xF) << 4)) as u8;
        }
    }
    for i in 0..32 {
        y.qh[i] = qh[i] as u8;
    }
}

/// (d, dmin, packed scales, quants in natural order: `l[j][i]` = element 32j+i).
#[cfg(target_arch = "x86_64")]
type KxNatural = ([u8; 2], [u8; 2], [u8; 12], [[i32; 32]; 8]);

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn write_q4_k_natural((d, dmin, scales, l): &KxNatural, y: &mut BlockQ4K) {
    y.d = *d;
    y.dmin = *dmin;
    y.scales = *scales;
    for c in 0..4 {
        for i in 0..32 {
            y.qs[32 * c + i] = (l[2 * c][i] | (l[2 * c + 1][i] << 4)) as u8;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn write_q5_k_natural((d, dmin, scales, l): &KxNatural, y: &mut BlockQ5K) {
    y.d = *d;
    y.dmin = *dmin;
    y.scales = *scales;
    pack_q5_k_quants(|j, i| l[j][i], y);
}

#[inline(always)]
fn quantize_block_q4_k<const AVX2: bool>(x: &[f32; QK_K], y: &mut BlockQ4K) {
    write_q4_k(&quantize_kx::<AVX2>(x, &QKX2_Q4K), y);
}

#[inline(always)]
fn quantize_block_q5_k<const AVX2: bool>(x: &[f32; QK_K], y: &mut BlockQ5K) {
    write_q5_k(&quantize_kx::<AVX2>(x, &QKX2_Q5K), y);
}

/// Independent 16-lane registers the AVX-512 searches interleave: enough to hide the latency
/// of each lane's chain of additions, few enough to stay in the 32 registers.
#[cfg(target_arch = "x86_64")]
const AVX512_STREAMS: usize = 2;

/// `2·S` Q4_K / Q5_K super-blocks (`src.len() == 2·S·QK_K`, `dst.len() == 2·S`) through the
/// AVX-512 search: lanes 0..8 of stream `s` are the sub-blocks of super-block `2s`, lanes
/// 8..16 those of super-block `2s + 1`. After the search everything stays in natural order
/// (each sub-block's constants broadcast), so no transposing back.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn kx_group_avx512<B, const S: usize>(
    src: &[f32],
    dst: &mut [B],
    p: &Qkx2,
    write: fn(&KxNatural, &mut B),
) {
    let mut xt = [[[0f32; 16]; 32]; S];
    for s in 0..S {
        // SAFETY: the CPU supports AVX-512F (this function's contract).
        xt[s] = unsafe { crate::fast_avx512::sub_blocks_as_lanes::<32>(&src[2 * QK_K * s..]) };
    }
    // SAFETY: as above.
    let found = unsafe { crate::fast_avx512::qkx2_x16::<S>(p, &xt) };
    for (b, (x, y)) in blocks::<QK_K>(src).zip(dst.iter_mut()).enumerate() {
        let f = &found[b / 2];
        let lanes = 8 * (b % 2)..8 * (b % 2) + 8;
        let mut scales = [0f32; 8];
        let mut mins = [0f32; 8];
        scales.copy_from_slice(&f.scale[lanes.clone()]);
        mins.copy_from_slice(&f.the_min[lanes.clone()]);
        let (d, dmin, packed, dl, dml) = kx_scales(&scales, &mins);
        let mut l = [[0i32; 32]; 8];
        for (j, lane) in lanes.enumerate() {
            let found = (f.iscale[lane], f.qmin[lane], f.flat >> lane & 1 == 1);
            let xs: &[f32; 32] = x[32 * j..32 * j + 32].try_into().expect("32 values");
            // SAFETY: as above.
            unsafe { crate::fast_avx512::requant_kx(xs, p.nmax, dl[j], dml[j], found, &mut l[j]) };
        }
        write(&(d, dmin, packed, l), y);
    }
}

/// Q4_K / Q5_K rows on AVX-512: groups of `2·AVX512_STREAMS` super-blocks, then pairs, then
/// a last odd super-block through the AVX2 kernel.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantize_kx_avx512<B>(
    src: &[f32],
    dst: &mut [B],
    p: &Qkx2,
    write: fn(&KxNatural, &mut B),
    odd: fn(&[f32; QK_K], &mut B),
) {
    const G: usize = 2 * AVX512_STREAMS;
    let whole = dst.len() / G * G;
    let (src_g, src_rest) = src.split_at(whole * QK_K);
    let (dst_g, dst_rest) = dst.split_at_mut(whole);
    for (x, y) in src_g.chunks_exact(G * QK_K).zip(dst_g.chunks_exact_mut(G)) {
        // SAFETY: AVX-512F (this function's contract); `x` and `y` hold G super-blocks.
        unsafe { kx_group_avx512::<B, AVX512_STREAMS>(x, y, p, write) };
    }
    let pairs = dst_rest.len() / 2 * 2;
    let (src_p, src_last) = src_rest.split_at(pairs * QK_K);
    let (dst_p, dst_last) = dst_rest.split_at_mut(pairs);
    for (x, y) in src_p.chunks_exact(2 * QK_K).zip(dst_p.chunks_exact_mut(2)) {
        // SAFETY: as above, with two super-blocks.
        unsafe { kx_group_avx512::<B, 1>(x, y, p, write) };
    }
    for (x, y) in blocks(src_last).zip(dst_last) {
        odd(x, y);
    }
}

type Lanes16 = [f32; 16];

/// `make_qx_quants(16, 32, …, rmse_type = 1, NULL)` on the 16 sub-blocks of a Q6_K block.
/// Returns the scales; `l[i][j]` receives `q + 32` for element `i` of sub-block `j`.
#[inline(always)]
fn qx_x16(x: &[Lanes16; 16], l: &mut [[i32; 16]; 16]) -> Lanes16 {
    const NMAX: i32 = 32;
    const NMAXF: f32 = 32.0;
    let mut max = [0f32; 16];
    let mut amax = [0f32; 16];
    for row in x {
        for j in 0..16 {
            let ax = row[j].abs();
            if ax > amax[j] {
                amax[j] = ax;
                max[j] = row[j];
            }
        }
    }
    let mut w = [[0f32; 16]; 16];
    for i in 0..16 {
        for j in 0..16 {
            w[i][j] = x[i][j] * x[i][j];
        }
    }
    let mut iscale = [0f32; 16];
    for j in 0..16 {
        iscale[j] = -NMAXF / max[j];
    }
    let mut sumlx = [0f32; 16];
    let mut suml2 = [0f32; 16];
    for i in 0..16 {
        for j in 0..16 {
            let q = ni(iscale[j] * x[i][j]).clamp(-NMAX, NMAX - 1);
            l[i][j] = q + NMAX;
            let qf = q as f32;
            sumlx[j] += w[i][j] * x[i][j] * qf;
            suml2[j] += w[i][j] * qf * qf;
        }
    }
    let mut scale = [0f32; 16];
    let mut best = [0f32; 16];
    for j in 0..16 {
        scale[j] = if suml2[j] != 0.0 {
            sumlx[j] / suml2[j]
        } else {
            0.0
        };
        best[j] = scale[j] * sumlx[j];
    }
    let mut laux = [[0i32; 16]; 16];
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        for j in 0..16 {
            iscale[j] = -(NMAXF + 0.1 * is as f32) / max[j];
        }
        let mut sumlx = [0f32; 16];
        let mut suml2 = [0f32; 16];
        for i in 0..16 {
            for j in 0..16 {
                let q = ni(iscale[j] * x[i][j]).clamp(-NMAX, NMAX - 1);
                laux[i][j] = q + NMAX;
                let qf = q as f32;
                sumlx[j] += w[i][j] * x[i][j] * qf;
                suml2[j] += w[i][j] * qf * qf;
            }
        }
        let mut take = [false; 16];
        let mut any = false;
        for j in 0..16 {
            take[j] = suml2[j] > 0.0 && sumlx[j] * sumlx[j] > best[j] * suml2[j];
            if take[j] {
                scale[j] = sumlx[j] / suml2[j];
                best[j] = scale[j] * sumlx[j];
                any = true;
            }
        }
        if any {
            for i in 0..16 {
                for j in 0..16 {
                    if take[j] {
                        l[i][j] = laux[i][j];
                    }
                }
            }
        }
    }
    for j in 0..16 {
        if amax[j] < GROUP_MAX_EPS {
            scale[j] = 0.0;
            for row in l.iter_mut() {
                row[j] = 0;
            }
        }
    }
    scale
}

/// The 16 sub-blocks of 16 values as columns, so each lane of a 16-wide search is one sub-block.
#[inline(always)]
fn transpose_sub_blocks(x: &[f32; QK_K]) -> [[f32; 16]; 16] {
    let mut xt = [[0f32; 16]; 16];
    for j in 0..16 {
        for i in 0..16 {
            xt[i][j] = x[16 * j + i];
        }
    }
    xt
}

/// The first scale of largest magnitude (as ggml's loops pick it: strictly greater wins) and
/// that magnitude.
#[inline(always)]
fn largest_by_magnitude(scales: &[f32; 16]) -> (f32, f32) {
    let mut max_scale = 0.0f32;
    let mut max_abs = 0.0f32;
    for &s in scales {
        if s.abs() > max_abs {
            max_abs = s.abs();
            max_scale = s;
        }
    }
    (max_scale, max_abs)
}

#[inline(always)]
fn quantize_block_q6_k<const AVX2: bool>(x: &[f32; QK_K], y: &mut BlockQ6K) {
    let xt = transpose_sub_blocks(x);
    let mut lt = [[0i32; 16]; 16];
    #[cfg(target_arch = "x86_64")]
    let scales = if AVX2 {
        // SAFETY: `AVX2 = true` is only instantiated by the AVX2 and AVX-512 entry points,
        // which run only when `Isa::detected()` reports AVX2 or more.
        let (scales, iscale, tiny) = unsafe { crate::fast_avx2::qx_x8s(&xt) };
        // The search's quants, recomputed from the best candidate.
        for i in 0..16 {
            for j in 0..16 {
                let q = ni(iscale[j] * xt[i][j]).clamp(-32, 31) + 32;
                lt[i][j] = if tiny >> j & 1 == 1 { 0 } else { q };
            }
        }
        scales
    } else {
        qx_x16(&xt, &mut lt)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let scales = qx_x16(&xt, &mut lt);
    finish_q6_k(&xt, &scales, &mut lt, y);
}

/// Q6_K after the search: the 8-bit scales, then requantize every sub-block whose scale is
/// not zero, and pack.
#[inline(always)]
fn finish_q6_k(
    xt: &[[f32; 16]; 16],
    scales: &[f32; 16],
    lt: &mut [[i32; 16]; 16],
    y: &mut BlockQ6K,
) {
    let Some(dl) = q6_k_scales(scales, y) else {
        return;
    };
    for i in 0..16 {
        for j in 0..16 {
            let q = ni(xt[i][j] / dl[j]).clamp(-32, 31) + 32;
            if dl[j] != 0.0 {
                lt[i][j] = q;
            }
        }
    }
    let mut l = [0u8; QK_K];
    for j in 0..16 {
        for i in 0..16 {
            l[16 * j + i] = lt[i][j] as u8;
        }
    }
    pack_q6(&l, y);
}

/// Q4_K / Q5_K rows on AVX2: pairs of super-blocks through the two-stream search, then a
/// last odd super-block through the one-block kernel.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_kx_avx2<B>(
    src: &[f32],
    dst: &mut [B],
    p: &Qkx2,
    write: fn(&KxOut, &mut B),
    odd: fn(&[f32; QK_K], &mut B),
) {
    let pairs = dst.len() / 2 * 2;
    let (src_p, src_last) = src.split_at(pairs * QK_K);
    let (dst_p, dst_last) = dst.split_at_mut(pairs);
    for (x, y) in src_p.chunks_exact(2 * QK_K).zip(dst_p.chunks_exact_mut(2)) {
        let mut xt = [[[0f32; 8]; 32]; 2];
        for s in 0..2 {
            for j in 0..8 {
                for i in 0..32 {
                    xt[s][i][j] = x[QK_K * s + 32 * j + i];
                }
            }
        }
        // SAFETY: AVX2 (this function's contract).
        let found = unsafe { crate::fast_avx2::qkx2_x8s::<2>(p, &xt) };
        for s in 0..2 {
            let f = &found[s];
            // The search's quants, recomputed from the best candidate.
            let mut l = [[0i32; 8]; 32];
            for i in 0..32 {
                for j in 0..8 {
                    let q = ni(f.iscale[j] * (xt[s][i][j] - f.qmin[j])).clamp(0, p.nmax);
                    l[i][j] = if f.flat >> j & 1 == 1 { 0 } else { q };
                }
            }
            let (d, dmin, packed) = finish_kx(&xt[s], p.nmax, &f.scale, &f.the_min, &mut l);
            write(&(d, dmin, packed, l), &mut y[s]);
        }
    }
    for (x, y) in blocks(src_last).zip(dst_last) {
        odd(x, y);
    }
}

/// Q4_K rows on AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_q4_k_avx2_rows(src: &[f32], dst: &mut [BlockQ4K]) {
    // SAFETY: AVX2 (this function's contract).
    unsafe { quantize_kx_avx2(src, dst, &QKX2_Q4K, write_q4_k, quantize_block_q4_k::<true>) }
}

/// Q5_K rows on AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_q5_k_avx2_rows(src: &[f32], dst: &mut [BlockQ5K]) {
    // SAFETY: AVX2 (this function's contract).
    unsafe { quantize_kx_avx2(src, dst, &QKX2_Q5K, write_q5_k, quantize_block_q5_k::<true>) }
}

/// Q4_K rows on AVX-512.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantize_q4_k_avx512(src: &[f32], dst: &mut [BlockQ4K]) {
    // SAFETY: AVX-512F (this function's contract), which includes AVX2 for the odd block.
    unsafe {
        quantize_kx_avx512(
            src,
            dst,
            &QKX2_Q4K,
            write_q4_k_natural,
            quantize_block_q4_k::<true>,
        )
    }
}

/// Q5_K rows on AVX-512.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantize_q5_k_avx512(src: &[f32], dst: &mut [BlockQ5K]) {
    // SAFETY: AVX-512F (this function's contract), which includes AVX2 for the odd block.
    unsafe {
        quantize_kx_avx512(
            src,
            dst,
            &QKX2_Q5K,
            write_q5_k_natural,
            quantize_block_q5_k::<true>,
        )
    }
}

/// Q6_K's 8-bit scales and `d` into `y`; returns each sub-block's effective scale, or `None`
/// (with `y` all zero) when every scale is below `GROUP_MAX_EPS`.
#[inline(always)]
fn q6_k_scales(scales: &[f32; 16], y: &mut BlockQ6K) -> Option<[f32; 16]> {
    let (max_scale, max_abs_scale) = largest_by_magnitude(scales);
    if max_abs_scale < GROUP_MAX_EPS {
        *y = bytemuck::Zeroable::zeroed();
        y.d = h(0.0);
        return None;
    }
    let iscale = -128.0 / max_scale;
    y.d = h(1.0 / iscale);
    let dd = hf(y.d);
    let mut dl = [0f32; 16];
    for j in 0..16 {
        y.scales[j] = ni(iscale * scales[j]).min(127) as i8;
        dl[j] = dd * f32::from(y.scales[j]);
    }
    Some(dl)
}

/// Q6_K rows on AVX-512: groups of `AVX512_STREAMS` super-blocks (all 16 sub-blocks of one
/// super-block in a register), then single super-blocks.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantize_q6_k_avx512(src: &[f32], dst: &mut [BlockQ6K]) {
    /// # Safety
    /// The CPU must support AVX-512F; `src` holds `S` super-blocks, `dst` `S` blocks.
    #[inline(always)]
    unsafe fn group<const S: usize>(src: &[f32], dst: &mut [BlockQ6K]) {
        let mut xt = [[[0f32; 16]; 16]; S];
        for s in 0..S {
            // SAFETY: the CPU supports AVX-512F (this function's contract).
            xt[s] = unsafe { crate::fast_avx512::sub_blocks_as_lanes::<16>(&src[QK_K * s..]) };
        }
        // SAFETY: as above.
        let found = unsafe { crate::fast_avx512::qx_x16::<S>(&xt) };
        for ((x, y), f) in blocks::<QK_K>(src).zip(dst.iter_mut()).zip(&found) {
            let Some(dl) = q6_k_scales(&f.scale, y) else {
                continue;
            };
            let mut l = [0u8; QK_K];
            for j in 0..16 {
                let xs: &[f32; 16] = x[16 * j..16 * j + 16].try_into().expect("16 values");
                let out: &mut [u8; 16] = (&mut l[16 * j..16 * j + 16]).try_into().expect("16");
                let tiny = f.tiny >> j & 1 == 1;
                // SAFETY: as above.
                unsafe { crate::fast_avx512::requant_q6(xs, dl[j], f.iscale[j], tiny, out) };
            }
            pack_q6(&l, y);
        }
    }
    const G: usize = AVX512_STREAMS;
    let whole = dst.len() / G * G;
    let (src_g, src_rest) = src.split_at(whole * QK_K);
    let (dst_g, dst_rest) = dst.split_at_mut(whole);
    for (x, y) in src_g.chunks_exact(G * QK_K).zip(dst_g.chunks_exact_mut(G)) {
        // SAFETY: AVX-512F (this function's contract); `x` and `y` hold G super-blocks.
        unsafe { group::<G>(x, y) };
    }
    for (x, y) in src_rest
        .chunks_exact(QK_K)
        .zip(dst_rest.chunks_exact_mut(1))
    {
        // SAFETY: as above, with one super-block.
        unsafe { group::<1>(x, y) };
    }
}

/// Q2_K: the 16 sub-blocks of 16 as lanes of `make_qkx2_quants(16, 3, …, use_mad = true)`.
#[inline(always)]
fn quantize_block_q2_k<const AVX2: bool>(x: &[f32; QK_K], y: &mut BlockQ2K) {
    let mut xt = [[0f32; 16]; 16];
    let mut w = [[0f32; 16]; 16];
    for j in 0..16 {
        for i in 0..16 {
            xt[i][j] = x[16 * j + i];
            w[i][j] = xt[i][j].abs();
        }
    }
    let mut lt = [[0i32; 16]; 16];
    let (scales, mins) = qkx2_lanes(&QKX2_Q2K, &xt, &w, &mut lt);
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..16 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    (y.scales, y.d, y.dmin) = pack_q2_k_scales(&scales, &mins, max_scale, max_min);
    let (d, dmin) = (hf(y.d), hf(y.dmin));
    let mut dl = [0f32; 16];
    let mut dml = [0f32; 16];
    for j in 0..16 {
        dl[j] = d * f32::from(y.scales[j] & 0xF);
        dml[j] = dmin * f32::from(y.scales[j] >> 4);
    }
    for i in 0..16 {
        for j in 0..16 {
            let q = ni((xt[i][j] + dml[j]) / dl[j]).clamp(0, 3);
            if dl[j] != 0.0 {
                lt[i][j] = q;
            }
        }
    }
    let mut l = [0u8; QK_K];
    for j in 0..16 {
        for i in 0..16 {
            l[16 * j + i] = lt[i][j] as u8;
        }
    }
    pack_2bit(&l, &mut y.qs);
}

/// `make_q3_quants(16, 4, …, do_rmse = true)` on the 16 sub-blocks of a Q3_K block at once.
/// Returns the scales; `l[i][j]` receives `q + 4` for element `i` of sub-block `j`.
#[inline(always)]
fn q3_x16(x: &[Lanes16; 16], l: &mut [[i32; 16]; 16]) -> Lanes16 {
    const NMAX: i32 = 4;
    let mut max = [0f32; 16];
    let mut amax = [0f32; 16];
    for row in x {
        for j in 0..16 {
            let ax = row[j].abs();
            if ax > amax[j] {
                amax[j] = ax;
                max[j] = row[j];
            }
        }
    }
    let mut w = [[0f32; 16]; 16];
    for i in 0..16 {
        for j in 0..16 {
            w[i][j] = x[i][j] * x[i][j];
        }
    }
    let mut iscale = [0f32; 16];
    for j in 0..16 {
        iscale[j] = -(NMAX as f32) / max[j];
    }
    let mut sumlx = [0f32; 16];
    let mut suml2 = [0f32; 16];
    for i in 0..16 {
        for j in 0..16 {
            let q = ni(iscale[j] * x[i][j]).clamp(-NMAX, NMAX - 1);
            l[i][j] = q;
            let qf = q as f32;
            sumlx[j] += w[i][j] * x[i][j] * qf;
            suml2[j] += w[i][j] * qf * qf;
        }
    }
    // Lanes whose search stopped (a round without a change) stay as they are.
    let mut active = [true; 16];
    for _itry in 0..5 {
        let mut changed = [false; 16];
        for i in 0..16 {
            for j in 0..16 {
                let (v, ww) = (x[i][j], w[i][j]);
                let li = l[i][j] as f32;
                let slx = sumlx[j] - ww * v * li;
                let sl2 = suml2[j] - ww * li * li;
                let new_l = ni(v * sl2 / slx).clamp(-NMAX, NMAX - 1);
                let nl = new_l as f32;
                let slx2 = slx + ww * v * nl;
                let sl22 = sl2 + ww * nl * nl;
                let take = active[j]
                    && slx > 0.0
                    && new_l != l[i][j]
                    && sl22 > 0.0
                    && slx2 * slx2 * suml2[j] > sumlx[j] * sumlx[j] * sl22;
                if take {
                    l[i][j] = new_l;
                    sumlx[j] = slx2;
                    suml2[j] = sl22;
                    changed[j] = true;
                }
            }
        }
        let mut any = false;
        for j in 0..16 {
            active[j] &= changed[j];
            any |= active[j];
        }
        if !any {
            break;
        }
    }
    let mut scale = [0f32; 16];
    for j in 0..16 {
        scale[j] = if suml2[j] > 0.0 {
            sumlx[j] / suml2[j]
        } else {
            0.0
        };
    }
    for i in 0..16 {
        for j in 0..16 {
            l[i][j] += NMAX;
        }
    }
    for j in 0..16 {
        if amax[j] < GROUP_MAX_EPS {
            scale[j] = 0.0;
            for row in l.iter_mut() {
                row[j] = 0;
            }
        }
    }
    scale
}

#[inline(always)]
fn quantize_block_q3_k<const AVX2: bool>(x: &[f32; QK_K], y: &mut BlockQ3K) {
    let xt = transpose_sub_blocks(x);
    let mut lt = [[0i32; 16]; 16];
    #[cfg(target_arch = "x86_64")]
    let scales = if AVX2 {
        // SAFETY: `AVX2 = true` is only instantiated by the AVX2 entry points, which run only
        // after `is_x86_feature_detected!("avx2")`.
        let (a, b) = unsafe {
            (
                crate::fast_avx2::q3_x8(&xt, 0, &mut lt),
                crate::fast_avx2::q3_x8(&xt, 1, &mut lt),
            )
        };
        let mut s = [0f32; 16];
        s[..8].copy_from_slice(&a);
        s[8..].copy_from_slice(&b);
        s
    } else {
        q3_x16(&xt, &mut lt)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let scales = q3_x16(&xt, &mut lt);
    let (max_scale, _) = largest_by_magnitude(&scales);
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        y.scales = pack_q3_k_scales(&scales, iscale);
        y.d = h(1.0 / iscale);
    } else {
        y.scales = [0; 12];
        y.d = h(0.0);
    }
    let dd = hf(y.d);
    let mut dl = [0f32; 16];
    for j in 0..16 {
        dl[j] = dd * f32::from(q3_k_scale(&y.scales, j) - 32);
    }
    for i in 0..16 {
        for j in 0..16 {
            let q = ni(xt[i][j] / dl[j]).clamp(-4, 3) + 4;
            if dl[j] != 0.0 {
                lt[i][j] = q;
            }
        }
    }
    let mut l = [0u8; QK_K];
    for j in 0..16 {
        for i in 0..16 {
            l[16 * j + i] = lt[i][j] as u8;
        }
    }
    pack_q3_k(&mut l, y);
}

/// `quantize_row_q4_0_ref` for one block, written so the compiler can vectorise it: the
/// reference's running "first largest |x|" becomes a maximum and then the first index that
/// reaches it (the same element, so the same signed `max`).
#[inline(always)]
fn quantize_block_q4_0<const AVX2: bool>(x: &[f32; QK], y: &mut BlockQ4_0) {
    let mut ax = [0f32; QK];
    for j in 0..QK {
        ax[j] = x[j].abs();
    }
    let amax = ax.iter().fold(0.0f32, |m, &a| if m < a { a } else { m });
    // No element beats the initial 0: `max` stays +0 (not a -0 from the row).
    let max = if amax > 0.0 {
        ax.iter().position(|&a| a == amax).map_or(0.0, |i| x[i])
    } else {
        0.0
    };
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = h(d);
    let mut q = [0u8; QK];
    for j in 0..QK {
        q[j] = (c_f32_to_byte(x[j] * id + 8.5) as i8).min(15) as u8;
    }
    for j in 0..QK / 2 {
        y.qs[j] = q[j] | (q[j + QK / 2] << 4);
    }
}

/// `quantize_row_q4_1_ref` for one block, vectorisable (min and max are order-free).
#[inline(always)]
fn quantize_block_q4_1<const AVX2: bool>(x: &[f32; QK], y: &mut BlockQ4_1) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        min = if v < min { v } else { min };
        max = if v > max { v } else { max };
    }
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = h(d);
    y.m = h(min);
    let mut q = [0u8; QK];
    for j in 0..QK {
        q[j] = (c_f32_to_byte((x[j] - min) * id + 0.5) as i8).min(15) as u8;
    }
    for j in 0..QK / 2 {
        y.qs[j] = q[j] | (q[j + QK / 2] << 4);
    }
}

/// The largest |x| of a block, as 8 running maxima (max is exact: the order does not matter
/// for finite values, and the compiler keeps the lanes in one vector register).
#[inline(always)]
fn abs_max(x: &[f32; QK]) -> f32 {
    let mut lanes = [0f32; 8];
    for chunk in x.chunks_exact(8) {
        for (m, v) in lanes.iter_mut().zip(chunk) {
            let a = v.abs();
            *m = if *m < a { a } else { *m };
        }
    }
    lanes.iter().fold(0.0f32, |m, &a| if m < a { a } else { m })
}

/// The reference's "first element of largest |x|" (its signed value), +0 when every |x| is 0.
#[inline(always)]
fn first_abs_max(x: &[f32; QK]) -> f32 {
    let amax = abs_max(x);
    if amax > 0.0 {
        x.iter().find(|v| v.abs() == amax).copied().unwrap_or(0.0)
    } else {
        0.0
    }
}

/// `quantize_row_q8_0_ref` for one block, vectorisable.
#[inline(always)]
fn quantize_block_q8_0<const AVX2: bool>(x: &[f32; QK], y: &mut BlockQ8_0) {
    let d = abs_max(x) / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = h(d);
    for (q, &v) in y.qs.iter_mut().zip(x) {
        *q = c_f32_to_byte((v * id).round()) as i8;
    }
}

/// `quantize_row_q5_0_ref` for one block, vectorisable (as Q4_0: the first largest |x|).
#[inline(always)]
fn quantize_block_q5_0<const AVX2: bool>(x: &[f32; QK], y: &mut BlockQ5_0) {
    let d = first_abs_max(x) / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = h(d);
    let mut xi = [0u8; QK];
    for (o, &v) in xi.iter_mut().zip(x) {
        *o = (c_f32_to_byte(v * id + 16.5) as i8).min(31) as u8;
    }
    y.qh = pack_q5(&xi, &mut y.qs);
}

/// `quantize_row_q5_1_ref` for one block, vectorisable (min and max are order-free).
#[inline(always)]
fn quantize_block_q5_1<const AVX2: bool>(x: &[f32; QK], y: &mut BlockQ5_1) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        min = if v < min { v } else { min };
        max = if v > max { v } else { max };
    }
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = h(d);
    y.m = h(min);
    let mut xi = [0u8; QK];
    for (o, &v) in xi.iter_mut().zip(x) {
        *o = c_f32_to_byte((v - min) * id + 0.5);
    }
    y.qh = pack_q5(&xi, &mut y.qs);
}

fn blocks<const N: usize>(x: &[f32]) -> impl Iterator<Item = &[f32; N]> {
    x.chunks_exact(N).filter_map(|c| c.try_into().ok())
}

/// Defines the row loop of one block kernel at each [`Isa`] level: portable (SSE2 on x86-64),
/// compiled with AVX2 enabled, and, for the k-quants that have one, the AVX-512 search. AVX2
/// and AVX-512 only widen the lanes; they bring no FMA (Rust never contracts `a * b + c`), so
/// every level produces identical bytes.
macro_rules! dispatch {
    (@avx2_rows $src:ident, $dst:ident, $kernel:ident) => {
        for (x, y) in blocks($src).zip($dst) {
            $kernel::<true>(x, y);
        }
    };
    (@avx2_rows $src:ident, $dst:ident, $kernel:ident, $rows:expr) => {
        // SAFETY: AVX2, as for the enclosing function.
        unsafe { $rows($src, $dst) }
    };
    ($name:ident, $avx2:ident, $block:ty, $kernel:ident $(, avx2 = $rows2:expr)? $(, avx512 = $avx512:expr)?) => {
        /// # Safety
        /// The CPU must support AVX2.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $avx2(src: &[f32], dst: &mut [$block]) {
            dispatch!(@avx2_rows src, dst, $kernel $(, $rows2)?);
        }

        /// The row loop at `isa`, or at what the CPU has if that is less.
        pub(crate) fn $name(isa: Isa, src: &[f32], dst: &mut [$block]) {
            let isa = isa.min(Isa::detected());
            #[cfg(target_arch = "x86_64")]
            {
                $(
                if isa == Isa::Avx512 {
                    // SAFETY: the CPU supports AVX-512F (`Isa::detected`).
                    unsafe { $avx512(src, dst) };
                    return;
                }
                )?
                if isa >= Isa::Avx2 {
                    // SAFETY: the CPU supports AVX2 (`Isa::detected`).
                    unsafe { $avx2(src, dst) };
                    return;
                }
            }
            for (x, y) in blocks(src).zip(dst) {
                $kernel::<false>(x, y);
            }
        }
    };
}

dispatch!(
    quantize_q8_0,
    quantize_q8_0_avx2,
    BlockQ8_0,
    quantize_block_q8_0
);
dispatch!(
    quantize_q5_0,
    quantize_q5_0_avx2,
    BlockQ5_0,
    quantize_block_q5_0
);
dispatch!(
    quantize_q5_1,
    quantize_q5_1_avx2,
    BlockQ5_1,
    quantize_block_q5_1
);
dispatch!(
    quantize_q4_0,
    quantize_q4_0_avx2,
    BlockQ4_0,
    quantize_block_q4_0
);
dispatch!(
    quantize_q4_1,
    quantize_q4_1_avx2,
    BlockQ4_1,
    quantize_block_q4_1
);
dispatch!(
    quantize_q2_k,
    quantize_q2_k_avx2,
    BlockQ2K,
    quantize_block_q2_k
);
dispatch!(
    quantize_q3_k,
    quantize_q3_k_avx2,
    BlockQ3K,
    quantize_block_q3_k
);
dispatch!(
    quantize_q4_k,
    quantize_q4_k_avx2,
    BlockQ4K,
    quantize_block_q4_k,
    avx2 = quantize_q4_k_avx2_rows,
    avx512 = quantize_q4_k_avx512
);
dispatch!(
    quantize_q5_k,
    quantize_q5_k_avx2,
    BlockQ5K,
    quantize_block_q5_k,
    avx2 = quantize_q5_k_avx2_rows,
    avx512 = quantize_q5_k_avx512
);
dispatch!(
    quantize_q6_k,
    quantize_q6_k_avx2,
    BlockQ6K,
    quantize_block_q6_k,
    avx512 = quantize_q6_k_avx512
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GgmlType;

    /// The portable lane kernels equal the scalar reference (every level is covered by
    /// `tests/fast_vs_reference.rs`).
    #[test]
    fn portable_lanes_equal_reference() {
        let mut s = 7u64;
        let mut u = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64) as f32
        };
        for scale in [1.0f32, 0.02, 1e-7, 5e4] {
            let mut x: Vec<f32> = (0..QK_K * 8).map(|_| (u() - 0.5) * scale).collect();
            x[0..32].fill(0.0);
            x[300..340].fill(0.25 * scale);
            x[600] = 40.0 * scale;
            for v in x[1024..1280].iter_mut() {
                *v = v.abs();
            }
            for ty in [
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
                let n = ty.row_size(x.len() as u64).expect("whole blocks") as usize;
                let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
                crate::quantize_rows_with_isa(Isa::Portable, ty, &x, x.len(), &mut a)
                    .expect("portable");
                crate::quantize_rows_reference(ty, &x, x.len(), &mut b).expect("reference");
                assert!(a == b, "{ty} scale {scale}");
            }
        }
    }
}
