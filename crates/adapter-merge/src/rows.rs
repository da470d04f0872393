//! Merging one block of rows: the fused fast path when it applies, else the generic kernel.

use crate::kernel::{merge_rows_generic, Backend};
use crate::update::{LoraUpdate, RowBlock, Scratch};

/// Merges one block of rows. Returns the index (within the block) of the first non-finite output
/// element, if any. Runs the fused kernel when it applies and hands every other block (and any
/// block the fused kernel gives back) to the generic kernel.
pub(crate) fn merge_rows(
    backend: Backend,
    u: &LoraUpdate<'_>,
    block: RowBlock<'_>,
    scratch: &mut Scratch,
) -> Option<usize> {
    if crate::fused::applicable(u, block.w_dtype, block.out_dtype)
        && crate::fused::merge_rows(
            u,
            block.row0,
            block.n_rows,
            block.w,
            block.out_dtype,
            &mut *block.out,
        )
    {
        return None;
    }
    merge_rows_generic(backend, u, block, scratch)
}
