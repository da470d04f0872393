//! The ggml tensor types loraforge reads and writes, with their on-disk ids and block geometry.

/// A ggml tensor element type, numbered as in `ggml.h` (`enum ggml_type`).
///
/// Only the types loraforge produces or accepts are listed; any other id found in a file is
/// reported by the reader as unsupported rather than guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32 = 0,
    /// 16-bit IEEE float.
    F16 = 1,
    /// 4-bit, 32 per block, scale only (legacy).
    Q4_0 = 2,
    /// 4-bit, 32 per block, scale and minimum (legacy).
    Q4_1 = 3,
    /// 5-bit, 32 per block, scale only.
    Q5_0 = 6,
    /// 5-bit, 32 per block, scale and minimum.
    Q5_1 = 7,
    /// 8-bit, 32 per block, f16 scale.
    Q8_0 = 8,
    /// 2-bit k-quant, 256 per super-block.
    Q2K = 10,
    /// 3-bit k-quant, 256 per super-block.
    Q3K = 11,
    /// 4-bit k-quant, 256 per super-block.
    Q4K = 12,
    /// 5-bit k-quant, 256 per super-block.
    Q5K = 13,
    /// 6-bit k-quant, 256 per super-block.
    Q6K = 14,
    /// 8-bit k-quant intermediate, 256 per super-block.
    Q8K = 15,
    /// bfloat16.
    BF16 = 30,
}

impl GgmlType {
    /// Every type in this enum, in id order.
    pub const ALL: [GgmlType; 14] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::Q8K,
        GgmlType::BF16,
    ];

    /// The type for a ggml id, or `None` for ids loraforge does not know.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The ggml id written in GGUF tensor infos.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Elements per block (`ggml_blck_size`).
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => {
                32
            }
            GgmlType::Q2K
            | GgmlType::Q3K
            | GgmlType::Q4K
            | GgmlType::Q5K
            | GgmlType::Q6K
            | GgmlType::Q8K => 256,
        }
    }

    /// Bytes per block (`ggml_type_size`).
    pub fn type_size(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q2K => 84,
            GgmlType::Q3K => 110,
            GgmlType::Q4K => 144,
            GgmlType::Q5K => 176,
            GgmlType::Q6K => 210,
            GgmlType::Q8K => 292,
        }
    }

    /// Bytes of one row of `n_per_row` elements, or `None` when the row is not a whole number of
    /// blocks or the size overflows.
    pub fn row_size(self, n_per_row: u64) -> Option<u64> {
        let block = self.block_size() as u64;
        if !n_per_row.is_multiple_of(block) {
            return None;
        }
        (n_per_row / block).checked_mul(self.type_size() as u64)
    }

    /// The name ggml prints (`ggml_type_name`): `f32`, `q4_K`, `bf16` …
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q2K => "q2_K",
            GgmlType::Q3K => "q3_K",
            GgmlType::Q4K => "q4_K",
            GgmlType::Q5K => "q5_K",
            GgmlType::Q6K => "q6_K",
            GgmlType::Q8K => "q8_K",
            GgmlType::BF16 => "bf16",
        }
    }

    /// True for block-quantized types (everything but F32, F16, BF16).
    pub fn is_quantized(self) -> bool {
        !matches!(self, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_rejected() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(39), None);
    }

    #[test]
    fn row_sizes_follow_block_geometry() {
        assert_eq!(GgmlType::Q4K.row_size(4096), Some(16 * 144));
        assert_eq!(GgmlType::Q8_0.row_size(64), Some(68));
        assert_eq!(GgmlType::Q4K.row_size(320), None);
        assert_eq!(GgmlType::F16.row_size(3), Some(6));
    }
}
