//! The one error type of this crate.

use crate::GgmlType;

/// Everything that can go wrong when quantizing, dequantizing or choosing types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantizeError {
    /// A buffer does not have the size the row geometry implies.
    #[error("{what} holds {got} {unit}, expected {expected} for {ty} rows of {n_per_row}")]
    LengthMismatch {
        /// Which buffer (`"source"` or `"destination"`).
        what: &'static str,
        /// The type being converted to or from.
        ty: GgmlType,
        /// Elements per row.
        n_per_row: usize,
        /// Size the geometry requires.
        expected: usize,
        /// Size that was passed.
        got: usize,
        /// `"values"` or `"bytes"`.
        unit: &'static str,
    },
    /// The source is not a whole number of rows.
    #[error("{len} values are not a whole number of rows of {n_per_row}")]
    RaggedRows {
        /// Number of values given.
        len: usize,
        /// Elements per row.
        n_per_row: usize,
    },
    /// A row of zero elements was requested.
    #[error("row length must be positive")]
    EmptyRow,
    /// The row length is not a multiple of the type's block size.
    #[error("row length {n} is not a multiple of {ty}'s block size {}", ty.block_size())]
    NotBlockMultiple {
        /// The block type.
        ty: GgmlType,
        /// The row length.
        n: usize,
    },
    /// This crate has no kernel for the type.
    #[error("quantization kernel for {0} is not implemented")]
    Unsupported(GgmlType),
    /// A NaN or infinity was found (row and column, 0-based).
    #[error("non-finite value at row {row}, column {index}")]
    NonFinite {
        /// Row index.
        row: usize,
        /// Column index within the row.
        index: usize,
    },
    /// llama.cpp has no fallback type for this tensor's row length and refuses to quantize.
    #[error("tensor {tensor}: row length {ne0} is not a multiple of {ty}'s block size {} and no fallback type is defined for {ty}", ty.block_size())]
    NoFallback {
        /// Tensor name.
        tensor: String,
        /// The type that does not fit.
        ty: GgmlType,
        /// The row length.
        ne0: u64,
    },
    /// `ggml_validate_row_data` would reject these bytes: a NaN or infinity in a value or in a
    /// block's f16 scale (`d`, `dmin`, `m`).
    #[error("invalid {ty} data: found {what} value at block {block}")]
    InvalidData {
        /// The data's type.
        ty: GgmlType,
        /// Index of the element (F32/F16/BF16) or block within the checked bytes.
        block: usize,
        /// `"nan"` or `"inf"`.
        what: &'static str,
    },
    /// A kernel level was requested that this CPU does not have.
    #[error("the {requested} kernels need a CPU with {requested}; this one has {detected}")]
    IsaUnavailable {
        /// The level asked for.
        requested: crate::Isa,
        /// The widest level this CPU has.
        detected: crate::Isa,
    },
    /// In a mixture-of-experts model, an `ffn_down` tensor whose name has no valid `blk.N.` layer.
    #[error("tensor {tensor}: cannot determine its layer (expected blk.N. with N < {n_layer})")]
    BadLayer {
        /// Tensor name.
        tensor: String,
        /// The model's layer count.
        n_layer: u32,
    },
}

impl QuantizeError {
    /// True when the data or the request is at fault (non-finite values, a row length no type
    /// fits, a tensor name without its layer); false for misuse of the API by a caller
    /// (buffer sizes), which is a bug.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            QuantizeError::NonFinite { .. }
                | QuantizeError::NoFallback { .. }
                | QuantizeError::InvalidData { .. }
                | QuantizeError::BadLayer { .. }
                | QuantizeError::NotBlockMultiple { .. }
                | QuantizeError::Unsupported(_)
                | QuantizeError::IsaUnavailable { .. }
        )
    }

    /// What to do next, when there is something more to say than the message.
    pub fn hint(&self) -> Option<String> {
        match self {
            QuantizeError::NoFallback { .. } => Some(
                "llama.cpp refuses this shape too; choose a type whose block size divides the row length"
                    .into(),
            ),
            QuantizeError::NonFinite { .. } | QuantizeError::InvalidData { .. } => {
                Some("the model has NaN or Inf weights; check the training run".into())
            }
            QuantizeError::IsaUnavailable { detected, .. } => Some(format!(
                "ask for {detected} or lower (`Isa::detected()`); every level writes the same bytes"
            )),
            _ => None,
        }
    }
}
