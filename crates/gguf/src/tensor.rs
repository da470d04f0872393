//! Tensor descriptions shared by the reader and the writer, and the format's constants.

use loraforge_quantize::GgmlType;

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The version this crate writes.
pub const GGUF_VERSION: u32 = 3;
/// Alignment of the data section and of every tensor when `general.alignment` is absent
/// (`GGUF_DEFAULT_ALIGNMENT`).
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Largest alignment ggml accepts (`GGUF_MAX_ALIGNMENT`, 1 MiB).
pub const MAX_ALIGNMENT: u64 = 1 << 20;
/// The metadata key that sets the alignment (type `u32`, a power of two).
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Longest tensor name in bytes (`GGML_MAX_NAME` is 64 including the NUL).
pub const MAX_TENSOR_NAME_LEN: usize = 63;
/// Most dimensions a tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// Name, element type and shape of one tensor.
///
/// `dims` are in GGUF (ggml) order: `dims[0]` is the row length (the contiguous dimension), so a
/// PyTorch tensor of shape `[out, in]` has `dims = [in, out]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, at most [`MAX_TENSOR_NAME_LEN`] bytes.
    pub name: String,
    /// Element type.
    pub ty: GgmlType,
    /// Dimensions, `ne[0]` first; at most [`MAX_DIMS`].
    pub dims: Vec<u64>,
}

impl TensorInfo {
    /// A tensor description.
    pub fn new(name: impl Into<String>, ty: GgmlType, dims: impl Into<Vec<u64>>) -> Self {
        TensorInfo {
            name: name.into(),
            ty,
            dims: dims.into(),
        }
    }

    /// Number of elements, or `None` on overflow. A 0-dimensional tensor has one element.
    pub fn n_elements(&self) -> Option<u64> {
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }

    /// Row length (`ne[0]`), 1 for a 0-dimensional tensor.
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows (product of `ne[1..]`), or `None` on overflow.
    pub fn n_rows(&self) -> Option<u64> {
        self.dims
            .iter()
            .skip(1)
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }

    /// Bytes of the tensor data (without padding), or `None` when the row length is not a whole
    /// number of blocks of the type or the size overflows.
    pub fn n_bytes(&self) -> Option<u64> {
        self.ty
            .row_size(self.row_len())?
            .checked_mul(self.n_rows()?)
    }
}

/// `x` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub(crate) fn pad_to(x: u64, align: u64) -> Option<u64> {
    let rem = x % align;
    if rem == 0 {
        Some(x)
    } else {
        x.checked_add(align - rem)
    }
}
