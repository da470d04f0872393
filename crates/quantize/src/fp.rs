//! Scalar float conversions exactly as ggml does them (`ggml-impl.h`).
//!
//! * f32 → f16: `ggml_compute_fp32_to_fp16`, the branch-free "FP16" library algorithm ggml uses
//!   when no hardware conversion is compiled in: round to nearest even, overflow to ±inf, and
//!   every NaN becomes the quiet NaN `0x7E00` with the input's sign.
//! * f16 → f32: exact.
//! * f32 → bf16: `ggml_compute_fp32_to_bf16`: NaN keeps its upper bits and is forced quiet
//!   (`| 0x40`), everything else rounds to nearest even (overflowing to ±inf).
//! * bf16 → f32: exact (the 16 bits become the top of the f32).

/// Convert an `f32` to IEEE binary16 bits as ggml's `GGML_FP32_TO_FP16` does.
#[inline]
pub fn fp32_to_fp16(f: f32) -> u16 {
    // Scaling by 2^112 then 2^-110 makes the FPU do the mantissa rounding for normal results
    // and produces infinity for values beyond the f16 range.
    let scale_to_inf = f32::from_bits(0x7780_0000); // 2^112
    let scale_to_zero = f32::from_bits(0x0880_0000); // 2^-110
    let mut base = (f.abs() * scale_to_inf) * scale_to_zero;

    let w = f.to_bits();
    let shl1_w = w.wrapping_add(w);
    let sign = w & 0x8000_0000;
    let bias = (shl1_w & 0xFF00_0000).max(0x7100_0000);

    base += f32::from_bits((bias >> 1) + 0x0780_0000);
    let bits = base.to_bits();
    let exp_bits = (bits >> 13) & 0x0000_7C00;
    let mantissa_bits = bits & 0x0000_0FFF;
    let nonsign = exp_bits + mantissa_bits;
    let magnitude = if shl1_w > 0xFF00_0000 {
        0x7E00
    } else {
        nonsign
    };
    ((sign >> 16) | magnitude) as u16
}

/// Convert IEEE binary16 bits to `f32` (exact).
#[inline]
pub fn fp16_to_fp32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// Convert an `f32` to bfloat16 bits as ggml's `GGML_FP32_TO_BF16` does.
#[inline]
pub fn fp32_to_bf16(f: f32) -> u16 {
    let u = f.to_bits();
    if (u & 0x7FFF_FFFF) > 0x7F80_0000 {
        // NaN: truncate and force the quiet bit.
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7FFF + ((u >> 16) & 1)) >> 16) as u16
}

/// Convert bfloat16 bits to `f32` (exact).
#[inline]
pub fn bf16_to_fp32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp16_matches_ieee_round_to_nearest_even() {
        // Independent oracle: the `half` crate implements IEEE RNE for finite values.
        let samples = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            65504.0,
            65519.99,
            65520.0,
            1e5,
            -1e5,
            5.96e-8,
            2.98e-8,
            2.99e-8,
            1e-10,
            0.1,
            1.0009766,
            f32::from_bits(0x3F80_1000),
            2.5e-5,
        ];
        for x in samples {
            assert_eq!(fp32_to_fp16(x), half::f16::from_f32(x).to_bits(), "{x}");
        }
        let mut s = 0x1234_5678u32;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let x = f32::from_bits(s);
            if x.is_finite() {
                assert_eq!(fp32_to_fp16(x), half::f16::from_f32(x).to_bits(), "{x:e}");
            }
        }
        assert_eq!(fp32_to_fp16(f32::INFINITY), 0x7C00);
        assert_eq!(fp32_to_fp16(f32::NEG_INFINITY), 0xFC00);
        assert_eq!(fp32_to_fp16(f32::NAN), 0x7E00);
        assert_eq!(fp32_to_fp16(-f32::NAN), 0xFE00);
    }

    #[test]
    fn bf16_rounds_to_nearest_even_and_keeps_nan_quiet() {
        assert_eq!(fp32_to_bf16(1.0), 0x3F80);
        // 1 + 2^-8 is exactly half way between 1 and 1 + 2^-7: ties to even (1.0).
        assert_eq!(fp32_to_bf16(f32::from_bits(0x3F80_8000)), 0x3F80);
        assert_eq!(fp32_to_bf16(f32::from_bits(0x3F81_8000)), 0x3F82);
        assert_eq!(fp32_to_bf16(f32::from_bits(0x3F80_8001)), 0x3F81);
        assert_eq!(fp32_to_bf16(f32::from_bits(0x7F80_0001)), 0x7FC0);
        assert_eq!(fp32_to_bf16(f32::MAX), 0x7F80);
        assert_eq!(bf16_to_fp32(0xC040), -3.0);
    }
}
