//! Element types and the f32 ⇄ f16/bf16 conversions, rounding exactly like torch.

/// An element type loraforge reads and writes in safetensors files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE-754 binary32.
    F32,
    /// IEEE-754 binary16.
    F16,
    /// bfloat16 (the upper half of a binary32).
    BF16,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }

    /// The dtype's name in a safetensors header (`"F32"`, `"F16"`, `"BF16"`).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
        }
    }

    /// Parses a safetensors header dtype name.
    pub fn from_safetensors_name(name: &str) -> Option<Dtype> {
        match name {
            "F32" => Some(Dtype::F32),
            "F16" => Some(Dtype::F16),
            "BF16" => Some(Dtype::BF16),
            _ => None,
        }
    }

    /// Parses a `config.json` dtype (`"float32"`, `"float16"`, `"bfloat16"`, with or without a
    /// `torch.` prefix).
    pub fn parse_config_dtype(name: &str) -> Option<Dtype> {
        match name.strip_prefix("torch.").unwrap_or(name) {
            "float32" | "float" => Some(Dtype::F32),
            "float16" | "half" => Some(Dtype::F16),
            "bfloat16" => Some(Dtype::BF16),
            _ => None,
        }
    }

    /// The dtype's name in `config.json` (`"float32"`, `"float16"`, `"bfloat16"`).
    pub fn config_name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
        }
    }

    /// Rank used by the safetensors writer to order tensors inside a file (larger first, as the
    /// `safetensors` library sorts by dtype, descending, then by name).
    pub(crate) fn layout_rank(self) -> u8 {
        match self {
            Dtype::F16 => 0,
            Dtype::BF16 => 1,
            Dtype::F32 => 2,
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.safetensors_name())
    }
}

/// bf16 bits → f32 (exact).
#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// f16 bits → f32 (exact).
#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// f32 → bf16 bits, round-to-nearest-even like torch (`c10::BFloat16`): any NaN becomes the
/// canonical quiet NaN `0x7FC0`; values past the largest bf16 round to ±inf.
#[inline]
pub fn f32_to_bf16(value: f32) -> u16 {
    if value.is_nan() {
        return 0x7FC0;
    }
    let bits = value.to_bits();
    let rounding_bias = ((bits >> 16) & 1) + 0x7FFF;
    // Cannot overflow: the largest finite f32 plus the bias stays below 2^32 and NaN is excluded.
    (bits.wrapping_add(rounding_bias) >> 16) as u16
}

/// f32 → f16 bits, round-to-nearest-even like torch (`fp16_ieee_from_fp32_value`): a NaN keeps
/// its sign and becomes `0x7E00`; overflow rounds to ±inf; subnormals are rounded correctly.
#[inline]
pub fn f32_to_f16(value: f32) -> u16 {
    if value.is_nan() {
        let sign = ((value.to_bits() >> 16) & 0x8000) as u16;
        return sign | 0x7E00;
    }
    half::f16::from_f32(value).to_bits()
}

/// Decodes little-endian `dtype` elements to f32 (`out.len() * dtype.size() == bytes.len()`).
pub fn decode_f32(dtype: Dtype, bytes: &[u8], out: &mut [f32]) {
    match dtype {
        Dtype::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        Dtype::BF16 => {
            if let Ok(words) = bytemuck::try_cast_slice::<u8, u16>(bytes) {
                if cfg!(target_endian = "little") {
                    for (o, &w) in out.iter_mut().zip(words) {
                        *o = bf16_to_f32(w);
                    }
                    return;
                }
            }
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        Dtype::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
    }
}

/// Encodes f32 values as little-endian `dtype` elements into `out`
/// (`out.len() == values.len() * dtype.size()`), rounding like torch.
pub fn encode_f32(dtype: Dtype, values: &[f32], out: &mut [u8]) {
    match dtype {
        Dtype::F32 => {
            for (v, c) in values.iter().zip(out.chunks_exact_mut(4)) {
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        Dtype::BF16 => {
            if cfg!(target_endian = "little") {
                if let Ok(words) = bytemuck::try_cast_slice_mut::<u8, u16>(out) {
                    for (w, v) in words.iter_mut().zip(values) {
                        *w = f32_to_bf16(*v);
                    }
                    return;
                }
            }
            for (v, c) in values.iter().zip(out.chunks_exact_mut(2)) {
                c.copy_from_slice(&f32_to_bf16(*v).to_le_bytes());
            }
        }
        Dtype::F16 => {
            for (v, c) in values.iter().zip(out.chunks_exact_mut(2)) {
                c.copy_from_slice(&f32_to_f16(*v).to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // 1.0 + 2^-8 is exactly halfway between 1.0 and 1.0 + 2^-7: ties to even (1.0).
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3F80);
        // 1.0 + 3*2^-8 is halfway between 1+2^-7 (odd mantissa) and 1+2^-6: ties to even (up).
        assert_eq!(f32_to_bf16(1.0 + 3.0 / 256.0), 0x3F82);
        assert_eq!(f32_to_bf16(f32::NAN), 0x7FC0);
        assert_eq!(f32_to_bf16(-f32::NAN), 0x7FC0);
        assert_eq!(f32_to_bf16(f32::INFINITY), 0x7F80);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7F80);
        assert_eq!(bf16_to_f32(0x3F80), 1.0);
    }

    #[test]
    fn f16_rounds_like_torch() {
        assert_eq!(f32_to_f16(1.0), 0x3C00);
        // halfway between 1.0 and the next f16 (2^-10 spacing): ties to even.
        assert_eq!(f32_to_f16(1.0 + 1.0 / 2048.0), 0x3C00);
        assert_eq!(f32_to_f16(1.0 + 3.0 / 2048.0), 0x3C02);
        assert_eq!(f32_to_f16(65520.0), 0x7C00);
        assert_eq!(f32_to_f16(f32::NAN), 0x7E00);
        assert_eq!(f32_to_f16(-f32::NAN), 0xFE00);
        // smallest subnormal and half of it (ties to even → 0)
        assert_eq!(f32_to_f16(2f32.powi(-24)), 0x0001);
        assert_eq!(f32_to_f16(2f32.powi(-25)), 0x0000);
        assert_eq!(f16_to_f32(0x3C00), 1.0);
    }

    #[test]
    fn config_names() {
        assert_eq!(Dtype::parse_config_dtype("bfloat16"), Some(Dtype::BF16));
        assert_eq!(Dtype::parse_config_dtype("torch.float16"), Some(Dtype::F16));
        assert_eq!(Dtype::parse_config_dtype("float32"), Some(Dtype::F32));
        assert_eq!(Dtype::parse_config_dtype("int8"), None);
    }
}
