//! Scalar reference kernels: a straight port of ggml's `quantize_row_*_ref` and
//! `dequantize_row_*` (`ggml/src/ggml-quants.c`, llama.cpp commit 0c1e57098 / ggml 0.25.3).
//!
//! Every float operation happens in the same order and precision as the C code compiled without
//! FMA contraction, so the bytes are identical. These functions are the oracle for the faster
//! kernels in `fast`; keep them simple and do not optimise them. Index loops mirror the C.
#![allow(clippy::needless_range_loop)]

use crate::blocks::{
    get_scale_min_k4, BlockFormat, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K,
    BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, QK, QK_K,
};
use crate::fp::{fp16_to_fp32, fp32_to_fp16};

/// `GROUP_MAX_EPS`.
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: round half to even via the 1.5·2^23 trick (exact for |x| ≤ 4194303;
/// beyond that it reproduces the same wrapped bits as the C code).
#[inline(always)]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    (val.to_bits() as i32 & 0x007F_FFFF) - 0x0040_0000
}

/// C's `(int8_t)f` and `(uint8_t)f` as gcc compiles them for x86-64: `cvttss2si` (truncation
/// toward zero; NaN and out-of-range values give `INT_MIN`), then the low 8 bits. The legacy
/// quantizers reach NaN and ±inf when a block's scale is so small that `1/d` overflows
/// (subnormal inputs), and then store 0; Rust's saturating `as i8` would store 127 or -128.
#[inline(always)]
pub(crate) fn c_f32_to_byte(f: f32) -> u8 {
    // NaN is outside every range too.
    let i = if (-2_147_483_648.0..2_147_483_648.0).contains(&f) {
        f as i32
    } else {
        i32::MIN
    };
    i as u8
}

#[inline(always)]
pub(crate) fn h(x: f32) -> [u8; 2] {
    fp32_to_fp16(x).to_le_bytes()
}

#[inline(always)]
pub(crate) fn hf(b: [u8; 2]) -> f32 {
    fp16_to_fp32(u16::from_le_bytes(b))
}

/// `quantize_row_q8_0_ref` for one block.
pub fn quantize_block_q8_0(x: &[f32; QK], y: &mut BlockQ8_0) {
    let mut amax = 0.0f32;
    for &v in x {
        // C: amax = MAX(amax, fabsf(v)) with MAX(a,b) = a > b ? a : b
        let a = v.abs();
        amax = if amax > a { amax } else { a };
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = h(d);
    for (q, &v) in y.qs.iter_mut().zip(x) {
        // roundf: half away from zero; then the C float→int8 conversion.
        *q = c_f32_to_byte((v * id).round()) as i8;
    }
}

/// `dequantize_row_q8_0` for one block.
pub fn dequantize_block_q8_0(b: &BlockQ8_0, y: &mut [f32; QK]) {
    let d = hf(b.d);
    for (o, &q) in y.iter_mut().zip(&b.qs) {
        *o = f32::from(q) * d;
    }
}

pub(crate) fn pack_q5(xi: &[u8; QK], qs: &mut [u8; QK / 2]) -> [u8; 4] {
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let (a, b) = (xi[j], xi[j + QK / 2]);
        qs[j] = (a & 0x0F) | ((b & 0x0F) << 4);
        qh |= u32::from((a & 0x10) >> 4) << j;
        qh |= u32::from((b & 0x10) >> 4) << (j + QK / 2);
    }
    qh.to_le_bytes()
}

fn unpack_q5(qh: [u8; 4], qs: &[u8; QK / 2]) -> [i32; QK] {
    let qh = u32::from_le_bytes(qh);
    let mut q = [0i32; QK];
    for j in 0..QK / 2 {
        let xh0 = (((qh >> j) << 4) & 0x10) as i32;
        let xh1 = ((qh >> (j + 12)) & 0x10) as i32;
        q[j] = i32::from(qs[j] & 0x0F) | xh0;
        q[j + QK / 2] = i32::from(qs[j] >> 4) | xh1;
    }
    q
}

/// `quantize_row_q5_0_ref` for one block.
pub fn quantize_block_q5_0(x: &[f32; QK], y: &mut BlockQ5_0) {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = h(d);
    let mut xi = [0u8; QK];
    for (o, &v) in xi.iter_mut().zip(x) {
        // (int8_t)(x*id + 16.5f), then MIN(31, ·)
        let t = c_f32_to_byte(v * id + 16.5) as i8;
        *o = t.min(31) as u8;
    }
    y.qh = pack_q5(&xi, &mut y.qs);
}

/// `dequantize_row_q5_0` for one block.
pub fn dequantize_block_q5_0(b: &BlockQ5_0, y: &mut [f32; QK]) {
    let d = hf(b.d);
    for (o, q) in y.iter_mut().zip(unpack_q5(b.qh, &b.qs)) {
        *o = (q - 16) as f32 * d;
    }
}

/// `quantize_row_q5_1_ref` for one block.
pub fn quantize_block_q5_1(x: &[f32; QK], y: &mut BlockQ5_1) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = h(d);
    y.m = h(min);
    let mut xi = [0u8; QK];
    for (o, &v) in xi.iter_mut().zip(x) {
        // (uint8_t)((x - min)*id + 0.5f)
        *o = c_f32_to_byte((v - min) * id + 0.5);
    }
    y.qh = pack_q5(&xi, &mut y.qs);
}

/// `dequantize_row_q5_1` for one block.
pub fn dequantize_block_q5_1(b: &BlockQ5_1, y: &mut [f32; QK]) {
    let d = hf(b.d);
    let m = hf(b.m);
    for (o, q) in y.iter_mut().zip(unpack_q5(b.qh, &b.qs)) {
        *o = q as f32 * d + m;
    }
}

/// The constant arguments of `make_qkx2_quants`: `nmax`, the search grid
/// (`rmin + rdelta * is`, `is = 0..=nstep`) and whether errors are absolute (`use_mad`) or
/// squared.
pub(crate) struct Qkx2 {
    pub nmax: i32,
    pub rmin: f32,
    pub rdelta: f32,
    pub nstep: i32,
    pub use_mad: bool,
}

/// Q4_K: `make_qkx2_quants(32, 15, …, -1.f, 0.1f, 20, false)`.
pub(crate) const QKX2_Q4K: Qkx2 = Qkx2 {
    nmax: 15,
    rmin: -1.0,
    rdelta: 0.1,
    nstep: 20,
    use_mad: false,
};
/// Q5_K: `make_qkx2_quants(32, 31, …, -0.5f, 0.1f, 15, false)`.
pub(crate) const QKX2_Q5K: Qkx2 = Qkx2 {
    nmax: 31,
    rmin: -0.5,
    rdelta: 0.1,
    nstep: 15,
    use_mad: false,
};
/// Q2_K: `make_qkx2_quants(16, 3, …, -0.5f, 0.1f, 15, true)`.
pub(crate) const QKX2_Q2K: Qkx2 = Qkx2 {
    nmax: 3,
    rmin: -0.5,
    rdelta: 0.1,
    nstep: 15,
    use_mad: true,
};

/// `make_qkx2_quants`: asymmetric (scale, min) search for one sub-block of `x.len()` values.
/// Returns the scale and stores `-min` in `the_min`.
pub(crate) fn make_qkx2_quants(
    p: &Qkx2,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    the_min: &mut f32,
    l_aux: &mut [u8],
) -> f32 {
    let err = |diff: f32| if p.use_mad { diff.abs() } else { diff * diff };
    let (nmax, rmin, rdelta, nstep) = (p.nmax, p.rmin, p.rdelta, p.nstep);
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        *the_min = -min;
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min));
        let l = l.clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if nstep < 1 {
        *the_min = -min;
        return scale;
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let mut sum_l = 0.0f32;
        let mut sum_l2 = 0.0f32;
        let mut sum_xl = 0.0f32;
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            l_aux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(l_aux[i]) + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&l_aux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    scale
}

/// Pack 8 six-bit scales and mins as `quantize_row_q4_K_ref` does.
pub(crate) fn pack_scales_mins(
    scales: &[f32; 8],
    mins: &[f32; 8],
    max_scale: f32,
    max_min: f32,
) -> [u8; 12] {
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut out = [0u8; 12];
    for j in 0..8 {
        // C: uint8_t ls = nearest_int(...) truncates to 8 bits, then MIN(63, ls).
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            out[j] = ls;
            out[j + 4] = lm;
        } else {
            out[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            out[j - 4] |= (ls >> 4) << 6;
            out[j] |= (lm >> 4) << 6;
        }
    }
    out
}

/// The shared part of `quantize_row_q4_K_ref` / `quantize_row_q5_K_ref`: returns
/// (d, dmin, packed scales, L with values 0..=nmax).
fn quantize_kx(x: &[f32; QK_K], p: &Qkx2) -> ([u8; 2], [u8; 2], [u8; 12], [u8; QK_K]) {
    let nmax = p.nmax;
    let mut l = [0u8; QK_K];
    let mut l_aux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; 8];
    let mut scales = [0f32; 8];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        scales[j] = make_qkx2_quants(
            p,
            xs,
            &weights,
            &mut l[32 * j..32 * j + 32],
            &mut mins[j],
            &mut l_aux,
        );
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let packed = pack_scales_mins(&scales, &mins, max_scale, max_min);
    let d = h(max_scale / 63.0);
    let dmin = h(max_min / 63.0);
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, &packed);
        let dj = hf(d) * f32::from(sc);
        if dj == 0.0 {
            continue;
        }
        let dm = hf(dmin) * f32::from(m);
        for ii in 0..32 {
            let q = nearest_int((x[32 * j + ii] + dm) / dj);
            l[32 * j + ii] = q.clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, l)
}

/// `quantize_row_q4_K_ref` for one super-block.
pub fn quantize_block_q4_k(x: &[f32; QK_K], y: &mut BlockQ4K) {
    let (d, dmin, scales, l) = quantize_kx(x, &QKX2_Q4K);
    y.d = d;
    y.dmin = dmin;
    y.scales = scales;
    for c in 0..4 {
        for i in 0..32 {
            y.qs[32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
        }
    }
}

/// `quantize_row_q5_K_ref` for one super-block.
pub fn quantize_block_q5_k(x: &[f32; QK_K], y: &mut BlockQ5K) {
    let (d, dmin, scales, l) = quantize_kx(x, &QKX2_Q5K);
    y.d = d;
    y.dmin = dmin;
    y.scales = scales;
    y.qh = [0; 32];
    let (mut m1, mut m2) = (1u8, 2u8);
    for c in 0..4 {
        for j in 0..32 {
            let mut l1 = l[64 * c + j];
            if l1 > 15 {
                l1 -= 16;
                y.qh[j] |= m1;
            }
            let mut l2 = l[64 * c + j + 32];
            if l2 > 15 {
                l2 -= 16;
                y.qh[j] |= m2;
            }
            y.qs[32 * c + j] = l1 | (l2 << 4);
        }
        m1 <<= 2;
        m2 <<= 2;
    }
}

/// `dequantize_row_q4_K` for one super-block.
pub fn dequantize_block_q4_k(b: &BlockQ4K, y: &mut [f32; QK_K]) {
    let d = hf(b.d);
    let min = hf(b.dmin);
    for c in 0..4 {
        let (sc1, m1) = get_scale_min_k4(2 * c, &b.scales);
        let (sc2, m2) = get_scale_min_k4(2 * c + 1, &b.scales);
        let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
        for l in 0..32 {
            let q = b.qs[32 * c + l];
            y[64 * c + l] = d1 * f32::from(q & 0xF) - m1;
            y[64 * c + 32 + l] = d2 * f32::from(q >> 4) - m2;
        }
    }
}

/// `dequantize_row_q5_K` for one super-block.
pub fn dequantize_block_q5_k(b: &BlockQ5K, y: &mut [f32; QK_K]) {
    let d = hf(b.d);
    let min = hf(b.dmin);
    let (mut u1, mut u2) = (1u8, 2u8);
    for c in 0..4 {
        let (sc1, m1) = get_scale_min_k4(2 * c, &b.scales);
        let (sc2, m2) = get_scale_min_k4(2 * c + 1, &b.scales);
        let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
        for l in 0..32 {
            let q = b.qs[32 * c + l];
            let h1 = if b.qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if b.qh[l] & u2 != 0 { 16 } else { 0 };
            y[64 * c + l] = d1 * f32::from((q & 0xF) + h1) - m1;
            y[64 * c + 32 + l] = d2 * f32::from((q >> 4) + h2) - m2;
        }
        u1 <<= 2;
        u2 <<= 2;
    }
}

/// `make_qx_quants` with `rmse_type = 1` and no importance weights (all Q6_K needs).
pub(crate) fn make_qx_quants_rmse1(nmax: i32, x: &[f32], l_out: &mut [u8]) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = -nmaxf / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as u8;
        let w = x[i] * x[i];
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmaxf + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
            let w = v * v;
            let lf = l as f32;
            sumlx += w * v * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
                l_out[i] = (nmax + l) as u8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// `quantize_row_q6_K_ref` for one super-block.
pub fn quantize_block_q6_k(x: &[f32; QK_K], y: &mut BlockQ6K) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 16];
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    for ib in 0..16 {
        let scale =
            make_qx_quants_rmse1(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
        scales[ib] = scale;
        let abs_scale = scale.abs();
        if abs_scale > max_abs_scale {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        *y = bytemuck::Zeroable::zeroed();
        y.d = h(0.0);
        return;
    }
    let iscale = -128.0 / max_scale;
    y.d = h(1.0 / iscale);
    for ib in 0..16 {
        // C: MIN(127, nearest_int(...)) stored into an int8_t (wraps like `as i8`).
        y.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
    }
    let dd = hf(y.d);
    for j in 0..16 {
        let d = dd * f32::from(y.scales[j]);
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let q = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
            l[16 * j + ii] = (q + 32) as u8;
        }
    }
    pack_q6(&l, y);
}

/// Pack 256 six-bit values (0..64) into `ql`/`qh` as `quantize_row_q6_K_ref` does.
pub(crate) fn pack_q6(l: &[u8; QK_K], y: &mut BlockQ6K) {
    for half in 0..2 {
        let j = 128 * half;
        for i in 0..32 {
            let q1 = l[j + i] & 0xF;
            let q2 = l[j + i + 32] & 0xF;
            let q3 = l[j + i + 64] & 0xF;
            let q4 = l[j + i + 96] & 0xF;
            y.ql[64 * half + i] = q1 | (q3 << 4);
            y.ql[64 * half + i + 32] = q2 | (q4 << 4);
            y.qh[32 * half + i] = (l[j + i] >> 4)
                | ((l[j + i + 32] >> 4) << 2)
                | ((l[j + i + 64] >> 4) << 4)
                | ((l[j + i + 96] >> 4) << 6);
        }
    }
}

/// `dequantize_row_q6_K` for one super-block.
pub fn dequantize_block_q6_k(b: &BlockQ6K, y: &mut [f32; QK_K]) {
    let d = hf(b.d);
    for half in 0..2 {
        let (ql, qh, sc) = (
            &b.ql[64 * half..],
            &b.qh[32 * half..],
            &b.scales[8 * half..],
        );
        let out = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = i32::from((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
            let q2 = i32::from((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            let q3 = i32::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            let q4 = i32::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            out[l] = d * f32::from(sc[is]) * q1 as f32;
            out[l + 32] = d * f32::from(sc[is + 2]) * q2 as f32;
            out[l + 64] = d * f32::from(sc[is + 4]) * q3 as f32;
            out[l + 96] = d * f32::from(sc[is + 6]) * q4 as f32;
        }
    }
}

/// `quantize_row_q4_0_ref` for one block.
pub fn quantize_block_q4_0(x: &[f32; QK], y: &mut BlockQ4_0) {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = h(d);
    for j in 0..QK / 2 {
        // MIN(15, (int8_t)(x*id + 8.5f))
        let xi0 = (c_f32_to_byte(x[j] * id + 8.5) as i8).min(15) as u8;
        let xi1 = (c_f32_to_byte(x[j + QK / 2] * id + 8.5) as i8).min(15) as u8;
        y.qs[j] = xi0 | (xi1 << 4);
    }
}

/// `dequantize_row_q4_0` for one block.
pub fn dequantize_block_q4_0(b: &BlockQ4_0, y: &mut [f32; QK]) {
    let d = hf(b.d);
    for j in 0..QK / 2 {
        y[j] = (i32::from(b.qs[j] & 0x0F) - 8) as f32 * d;
        y[j + QK / 2] = (i32::from(b.qs[j] >> 4) - 8) as f32 * d;
    }
}

/// `quantize_row_q4_1_ref` for one block.
pub fn quantize_block_q4_1(x: &[f32; QK], y: &mut BlockQ4_1) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = h(d);
    y.m = h(min);
    for j in 0..QK / 2 {
        // MIN(15, (int8_t)((x - min)*id + 0.5f))
        let xi0 = (c_f32_to_byte((x[j] - min) * id + 0.5) as i8).min(15) as u8;
        let xi1 = (c_f32_to_byte((x[j + QK / 2] - min) * id + 0.5) as i8).min(15) as u8;
        y.qs[j] = xi0 | (xi1 << 4);
    }
}

/// `dequantize_row_q4_1` for one block.
pub fn dequantize_block_q4_1(b: &BlockQ4_1, y: &mut [f32; QK]) {
    let d = hf(b.d);
    let m = hf(b.m);
    for j in 0..QK / 2 {
        y[j] = f32::from(b.qs[j] & 0x0F) * d + m;
        y[j + QK / 2] = f32::from(b.qs[j] >> 4) * d + m;
    }
}

/// Pack 256 two-bit values as `quantize_row_q2_K_ref` / `quantize_row_q3_K_ref` do: for each
/// half of 128, byte `32h + l` holds elements `128h + l + 32s` at bits `2s`.
pub(crate) fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for half in 0..2 {
        let j = 128 * half;
        for i in 0..32 {
            qs[32 * half + i] =
                l[j + i] | (l[j + i + 32] << 2) | (l[j + i + 64] << 4) | (l[j + i + 96] << 6);
        }
    }
}

/// The 2-bit value of element `e` (0..256) in [`pack_2bit`]'s layout.
#[inline]
fn unpack_2bit(qs: &[u8; QK_K / 4], e: usize) -> u8 {
    let (half, r) = (e / 128, e % 128);
    (qs[32 * half + r % 32] >> (2 * (r / 32))) & 3
}

/// Q2_K's 4-bit sub-block scales and mins, packed, with the super-block `d` and `dmin`
/// (the middle part of `quantize_row_q2_K_ref`).
pub(crate) fn pack_q2_k_scales(
    scales: &[f32; 16],
    mins: &[f32; 16],
    max_scale: f32,
    max_min: f32,
) -> ([u8; 16], [u8; 2], [u8; 2]) {
    const Q4SCALE: f32 = 15.0;
    let mut packed = [0u8; 16];
    let mut d = h(0.0);
    let mut dmin = h(0.0);
    if max_scale > 0.0 {
        let iscale = Q4SCALE / max_scale;
        for j in 0..16 {
            // uint8_t = int: keeps the low 8 bits.
            packed[j] = nearest_int(iscale * scales[j]) as u8;
        }
        d = h(max_scale / Q4SCALE);
    }
    if max_min > 0.0 {
        let iscale = Q4SCALE / max_min;
        for j in 0..16 {
            packed[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
        }
        dmin = h(max_min / Q4SCALE);
    }
    (packed, d, dmin)
}

/// `quantize_row_q2_K_ref` for one super-block.
pub fn quantize_block_q2_k(x: &[f32; QK_K], y: &mut BlockQ2K) {
    let mut l = [0u8; QK_K];
    let mut l_aux = [0u8; 16];
    let mut weights = [0f32; 16];
    let mut mins = [0f32; 16];
    let mut scales = [0f32; 16];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..16 {
        let xs = &x[16 * j..16 * j + 16];
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = v.abs();
        }
        scales[j] = make_qkx2_quants(
            &QKX2_Q2K,
            xs,
            &weights,
            &mut l[16 * j..16 * j + 16],
            &mut mins[j],
            &mut l_aux,
        );
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    (y.scales, y.d, y.dmin) = pack_q2_k_scales(&scales, &mins, max_scale, max_min);
    for j in 0..16 {
        let d = hf(y.d) * f32::from(y.scales[j] & 0xF);
        if d == 0.0 {
            continue;
        }
        let dm = hf(y.dmin) * f32::from(y.scales[j] >> 4);
        for ii in 0..16 {
            let q = nearest_int((x[16 * j + ii] + dm) / d);
            l[16 * j + ii] = q.clamp(0, 3) as u8;
        }
    }
    pack_2bit(&l, &mut y.qs);
}

/// `dequantize_row_q2_K` for one super-block.
pub fn dequantize_block_q2_k(b: &BlockQ2K, y: &mut [f32; QK_K]) {
    let d = hf(b.d);
    let min = hf(b.dmin);
    for (e, o) in y.iter_mut().enumerate() {
        let sc = b.scales[e / 16];
        let dl = d * f32::from(sc & 0xF);
        let ml = min * f32::from(sc >> 4);
        *o = dl * f32::from(unpack_2bit(&b.qs, e)) - ml;
    }
}

/// `make_q3_quants(n, nmax, x, L, do_rmse = true)`: symmetric scale with a few rounds of
/// coordinate descent on the weighted (x²) error. `l_out` receives `q + nmax`.
pub(crate) fn make_q3_quants_rmse(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = l as i8;
        let w = x[i] * x[i];
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    for _itry in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let w = x[i] * x[i];
            let li = f32::from(l_out[i]);
            let mut slx = sumlx - w * x[i] * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != i32::from(l_out[i]) {
                    let nl = new_l as f32;
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l_out[i] = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    for v in &mut l_out[..n] {
        *v += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Sub-block `j`'s 6-bit scale (0..64) from the packed Q3_K `scales`.
#[inline]
pub(crate) fn q3_k_scale(scales: &[u8; 12], j: usize) -> i8 {
    let low = if j < 8 {
        scales[j] & 0xF
    } else {
        scales[j - 8] >> 4
    };
    (low | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i8
}

/// Quantize Q3_K's 16 sub-block scales to 6 bits and pack them (the `max_scale != 0` branch
/// of `quantize_row_q3_K_ref`).
pub(crate) fn pack_q3_k_scales(scales: &[f32; 16], iscale: f32) -> [u8; 12] {
    let mut out = [0u8; 12];
    for j in 0..16 {
        // int8_t l = nearest_int(...); l = MAX(-32, MIN(31, l)) + 32;
        let l = ((nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32) as u8;
        if j < 8 {
            out[j] = l & 0xF;
        } else {
            out[j - 8] |= (l & 0xF) << 4;
        }
        out[j % 4 + 8] |= (l >> 4) << (2 * (j / 4));
    }
    out
}

/// The packing tail of `quantize_row_q3_K_ref`: `l` (0..8) into `hmask` and `qs`.
pub(crate) fn pack_q3_k(l: &mut [u8; QK_K], y: &mut BlockQ3K) {
    y.hmask = [0; QK_K / 8];
    for (j, v) in l.iter_mut().enumerate() {
        if *v > 3 {
            y.hmask[j % 32] |= 1 << (j / 32);
            *v -= 4;
        }
    }
    pack_2bit(l, &mut y.qs);
}

/// `quantize_row_q3_K_ref` for one super-block.
pub fn quantize_block_q3_k(x: &[f32; QK_K], y: &mut BlockQ3K) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let mut max_scale = 0.0f32;
    let mut amax = 0.0f32;
    for j in 0..16 {
        scales[j] = make_q3_quants_rmse(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
        let scale = scales[j].abs();
        if scale > amax {
            amax = scale;
            max_scale = scales[j];
        }
    }
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        y.scales = pack_q3_k_scales(&scales, iscale);
        y.d = h(1.0 / iscale);
    } else {
        y.scales = [0; 12];
        y.d = h(0.0);
    }
    for j in 0..16 {
        let sc = q3_k_scale(&y.scales, j) - 32;
        let d = hf(y.d) * f32::from(sc);
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let q = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
            l[16 * j + ii] = (q + 4) as i8;
        }
    }
    let mut lu = [0u8; QK_K];
    for (o, &v) in lu.iter_mut().zip(&l) {
        *o = v as u8;
    }
    pack_q3_k(&mut lu, y);
}

/// `dequantize_row_q3_K` for one super-block.
pub fn dequantize_block_q3_k(b: &BlockQ3K, y: &mut [f32; QK_K]) {
    let d_all = hf(b.d);
    for (e, o) in y.iter_mut().enumerate() {
        let dl = d_all * f32::from(q3_k_scale(&b.scales, e / 16) - 32);
        let high = if b.hmask[e % 32] & (1 << (e / 32)) != 0 {
            0
        } else {
            4
        };
        *o = dl * f32::from(unpack_2bit(&b.qs, e) as i8 - high);
    }
}

/// Each block type's [`BlockFormat`]: its values, the kernels above and its f16 scales.
macro_rules! block_formats {
    ($($block:ty: [f32; $n:expr], $quantize:ident, $dequantize:ident, [$($scale:ident),+];)*) => {$(
        impl BlockFormat for $block {
            type Values = [f32; $n];

            fn quantize_ref(x: &[f32; $n], y: &mut Self) {
                $quantize(x, y)
            }

            fn dequantize(&self, y: &mut [f32; $n]) {
                $dequantize(self, y)
            }

            fn f16_scales(&self) -> impl Iterator<Item = [u8; 2]> {
                [$(self.$scale),+].into_iter()
            }
        }
    )*};
}

block_formats! {
    BlockQ8_0: [f32; QK], quantize_block_q8_0, dequantize_block_q8_0, [d];
    BlockQ4_0: [f32; QK], quantize_block_q4_0, dequantize_block_q4_0, [d];
    BlockQ4_1: [f32; QK], quantize_block_q4_1, dequantize_block_q4_1, [d, m];
    BlockQ2K: [f32; QK_K], quantize_block_q2_k, dequantize_block_q2_k, [d, dmin];
    BlockQ3K: [f32; QK_K], quantize_block_q3_k, dequantize_block_q3_k, [d];
    BlockQ5_0: [f32; QK], quantize_block_q5_0, dequantize_block_q5_0, [d];
    BlockQ5_1: [f32; QK], quantize_block_q5_1, dequantize_block_q5_1, [d, m];
    BlockQ4K: [f32; QK_K], quantize_block_q4_k, dequantize_block_q4_k, [d, dmin];
    BlockQ5K: [f32; QK_K], quantize_block_q5_k, dequantize_block_q5_k, [d, dmin];
    BlockQ6K: [f32; QK_K], quantize_block_q6_k, dequantize_block_q6_k, [d];
}
