//! ggml block layouts (`ggml-common.h`), mirrored byte for byte.
//!
//! Half-precision fields are stored as raw little-endian bytes (`[u8; 2]`) so every block has
//! alignment 1 and a block slice can be viewed over any byte buffer.

use bytemuck::{Pod, Zeroable};

/// Elements per legacy block (`QK8_0`, `QK5_0`, `QK5_1`).
pub const QK: usize = 32;
/// Elements per k-quant super-block (`QK_K`).
pub const QK_K: usize = 256;
/// Bytes of packed 6-bit scales and mins in Q4_K / Q5_K (`K_SCALE_SIZE`).
pub const K_SCALE_SIZE: usize = 12;

/// `block_q8_0`: `x = d * qs[i]`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Scale, f16.
    pub d: [u8; 2],
    /// Quants.
    pub qs: [i8; QK],
}

/// `block_q4_0`: `x = d * (q - 8)`, 4-bit q.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// Scale, f16.
    pub d: [u8; 2],
    /// Quants: element j in the low half of byte j, element j+16 in the high half.
    pub qs: [u8; QK / 2],
}

/// `block_q4_1`: `x = d * q + m`, 4-bit q.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4_1 {
    /// Scale, f16.
    pub d: [u8; 2],
    /// Minimum, f16.
    pub m: [u8; 2],
    /// Quants, as in [`BlockQ4_0`].
    pub qs: [u8; QK / 2],
}

/// `block_q5_0`: `x = d * (q - 16)`, q = low nibble | 5th bit from `qh`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5_0 {
    /// Scale, f16.
    pub d: [u8; 2],
    /// 5th bits, a little-endian u32 (bit j for element j).
    pub qh: [u8; 4],
    /// Low nibbles: element j in the low half of byte j, element j+16 in the high half.
    pub qs: [u8; QK / 2],
}

/// `block_q5_1`: `x = d * q + m`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5_1 {
    /// Scale, f16.
    pub d: [u8; 2],
    /// Minimum, f16.
    pub m: [u8; 2],
    /// 5th bits, a little-endian u32.
    pub qh: [u8; 4],
    /// Low nibbles, as in [`BlockQ5_0`].
    pub qs: [u8; QK / 2],
}

/// `block_q2_K`: 16 sub-blocks of 16, `x = d*(sc & 0xF)*q - dmin*(sc >> 4)`, 2-bit q.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ2K {
    /// Per sub-block: 4-bit scale (low nibble) and 4-bit min (high nibble).
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants: for each 128-element half h, byte `32h + l` holds elements
    /// `128h + l + 32s` in bits `2s..2s+2` (s = 0..4).
    pub qs: [u8; QK_K / 4],
    /// Super-block scale for the quantized scales, f16.
    pub d: [u8; 2],
    /// Super-block scale for the quantized mins, f16.
    pub dmin: [u8; 2],
}

/// `block_q3_K`: 16 sub-blocks of 16, `x = d * (sc - 32) * (q - 4)`, 3-bit q. `d` is last.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ3K {
    /// High (3rd) bits: element j is bit `j / 32` of byte `j % 32`.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits, packed as in [`BlockQ2K`].
    pub qs: [u8; QK_K / 4],
    /// 6-bit scales: low nibbles in bytes 0..8 (sub-blocks 0..8 low half, 8..16 high half),
    /// high 2 bits of sub-block j in byte `8 + j % 4`, bits `2 (j / 4)..`.
    pub scales: [u8; 12],
    /// Super-block scale, f16.
    pub d: [u8; 2],
}

/// `block_q4_K`: 8 sub-blocks of 32, `x = d*sc*q - dmin*m`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4K {
    /// Super-block scale for the quantized scales, f16.
    pub d: [u8; 2],
    /// Super-block scale for the quantized mins, f16.
    pub dmin: [u8; 2],
    /// 6-bit scales and mins, packed (see `get_scale_min_k4`).
    pub scales: [u8; K_SCALE_SIZE],
    /// 4-bit quants.
    pub qs: [u8; QK_K / 2],
}

/// `block_q5_K`: as Q4_K plus a 5th bit per element.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5K {
    /// Super-block scale, f16.
    pub d: [u8; 2],
    /// Super-block min scale, f16.
    pub dmin: [u8; 2],
    /// 6-bit scales and mins, packed.
    pub scales: [u8; K_SCALE_SIZE],
    /// High (5th) bits.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits.
    pub qs: [u8; QK_K / 2],
}

/// `block_q6_K`: 16 sub-blocks of 16, `x = d * scales[i] * (q - 32)`. `d` is last.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct BlockQ6K {
    /// Low 4 bits.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits.
    pub qh: [u8; QK_K / 4],
    /// 8-bit sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale, f16.
    pub d: [u8; 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);
const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);
const _: () = assert!(std::mem::align_of::<BlockQ6K>() == 1);
const _: () = assert!(std::mem::align_of::<BlockQ3K>() == 1);

/// One ggml block format: its layout (`Self`), the `f32` values one block holds, its scalar
/// reference kernels and the f16 scales `ggml_validate_row_data` checks. The row entry points in
/// `kernels` dispatch through it; the implementations sit beside the kernels in `reference`.
pub(crate) trait BlockFormat: Pod {
    /// The values of one block: `[f32; QK]` or `[f32; QK_K]`.
    type Values: Pod;
    /// `quantize_row_*_ref` for one block.
    fn quantize_ref(x: &Self::Values, y: &mut Self);
    /// `dequantize_row_*` for one block.
    fn dequantize(&self, y: &mut Self::Values);
    /// The f16 scales: `d`, then `dmin` / `m` where the format has one.
    fn f16_scales(&self) -> impl Iterator<Item = [u8; 2]>;
}

/// `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8).
#[inline]
pub fn get_scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}
