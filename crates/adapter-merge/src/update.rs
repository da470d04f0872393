//! The types the merge kernels share: one LoRA update, a block of rows to merge, scratch space.
//! Below both the generic kernel (`kernel`) and the fused fast path (`fused`); `rows` picks
//! between them.

use loraforge_hf_model::Dtype;

/// How the low-rank product maps onto the stored weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `W [out, in]`, `A [r, in]`, `B [out, r]`: `Δ = B·A`.
    Normal,
    /// `W [in, out]` (`fan_in_fan_out`) or an embedding `W [vocab, dim]` with `A [r, rows]`,
    /// `B [cols, r]`: `Δ = (B·A)ᵀ`.
    Transposed,
}

/// One LoRA update of a weight of shape `[rows, cols]`.
pub(crate) struct LoraUpdate<'a> {
    pub layout: Layout,
    pub rank: usize,
    pub rows: usize,
    pub cols: usize,
    /// `A` as f32, row-major `[rank, …]`.
    pub a: &'a [f32],
    /// `B` as f32, row-major `[…, rank]`.
    pub b: &'a [f32],
    /// `scaling` as torch uses it (the f64 Python scalar rounded to f32 for an f32 tensor op).
    pub scaling: f32,
    /// Embedding LoRA: PEFT casts `Δ` to the weight dtype before adding (two roundings).
    pub round_delta_to: Option<Dtype>,
    /// DoRA magnitude per output row.
    pub magnitude: Option<&'a [f32]>,
}

impl<'a> LoraUpdate<'a> {
    /// `Δ = B·A` alone: scaling 1, no embedding rounding, no DoRA (the backend probe, tests).
    pub(crate) fn plain(
        layout: Layout,
        rank: usize,
        rows: usize,
        cols: usize,
        a: &'a [f32],
        b: &'a [f32],
    ) -> Self {
        LoraUpdate {
            layout,
            rank,
            rows,
            cols,
            a,
            b,
            scaling: 1.0,
            round_delta_to: None,
            magnitude: None,
        }
    }
}

/// One block of rows of a weight: the base rows in, the merged rows out.
pub(crate) struct RowBlock<'a> {
    /// Index of the block's first row in the whole weight.
    pub row0: usize,
    /// Rows in the block.
    pub n_rows: usize,
    /// The base rows, in `w_dtype`.
    pub w: &'a [u8],
    /// The base weight's dtype.
    pub w_dtype: Dtype,
    /// Receives the merged rows, in `out_dtype`.
    pub out: &'a mut [u8],
    /// The output dtype.
    pub out_dtype: Dtype,
}

/// Reusable f32 buffers of the generic path (one per worker thread).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// Δ for the block, then the merged values.
    pub delta: Vec<f32>,
    /// The base rows decoded to f32.
    pub w: Vec<f32>,
}
