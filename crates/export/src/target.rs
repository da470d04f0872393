//! What an export writes: the one typed target the CLI and the registry hand to [`crate::convert`].

use std::fmt;

use loraforge_naming::{FileType, QuantType};
use loraforge_quantize::GgmlType;

/// What an export writes, and how.
///
/// Built from the product's vocabulary ([`FileType`], [`QuantType`]); every GGUF loraforge
/// writes from a Hugging Face folder goes through [`crate::convert`] with one of these.
///
/// ```
/// use loraforge_export::{ExportTarget, FileType};
/// use loraforge_naming::QuantType;
///
/// // `convert --outtype`: the converter's own types directly, k-quants through llama-quantize.
/// assert_eq!(ExportTarget::for_outtype("q8_0"), Some(ExportTarget::Convert(FileType::Q8_0)));
/// assert_eq!(ExportTarget::for_outtype("Q4_K_M"), Some(ExportTarget::Quantize(FileType::Q4KM)));
/// assert_eq!(ExportTarget::for_outtype("auto"), Some(ExportTarget::Auto));
/// // Deployment: every quantization through llama-quantize's recipe, as Ollama's quantizer does.
/// assert_eq!(
///     ExportTarget::for_quant(QuantType::Quantized(FileType::Q8_0)),
///     ExportTarget::Quantize(FileType::Q8_0)
/// );
/// assert_eq!(ExportTarget::for_quant(QuantType::NoQuantization), ExportTarget::Source);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportTarget {
    /// Matrices written by the converter itself in this file type's matrix type, as
    /// `convert_hf_to_gguf.py --outtype` does: F32, F16, BF16 or Q8_0 (gguf-py's Q8_0: rows not
    /// a multiple of 32 fall back to f16, as in the reference). Other file types are refused
    /// ([`crate::ConvertError::UnsupportedOutType`]).
    Convert(FileType),
    /// bf16 if the model's first matrix is bf16, else f16 (the reference's `--outtype auto`).
    Auto,
    /// The model's own dtype (of its first matrix: bf16, f16 or f32): nothing is lost.
    Source,
    /// A lossless ([`ExportTarget::Source`]) conversion quantized as it streams with
    /// llama-quantize's recipe for this file type (what [`crate::quantize_file`] does to a
    /// file): byte-identical to `llama-quantize` run on the reference converter's lossless
    /// output, without writing it.
    Quantize(FileType),
}

impl Default for ExportTarget {
    /// F16 matrices, the reference converter's default.
    fn default() -> ExportTarget {
        ExportTarget::Convert(FileType::F16)
    }
}

impl ExportTarget {
    /// Reads `convert --outtype` (case-insensitive): `auto`, `source`, or a [`FileType`] —
    /// written by the converter when `convert_hf_to_gguf.py` writes it (f32, f16, bf16, q8_0),
    /// else converted losslessly and quantized. `None` for anything else.
    pub fn for_outtype(text: &str) -> Option<ExportTarget> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("auto") {
            return Some(ExportTarget::Auto);
        }
        if text.eq_ignore_ascii_case("source") {
            return Some(ExportTarget::Source);
        }
        let file_type: FileType = text.parse().ok()?;
        Some(match ExportTarget::converter_matrix_type(file_type) {
            Some(_) => ExportTarget::Convert(file_type),
            None => ExportTarget::Quantize(file_type),
        })
    }

    /// The `--outtype` values [`ExportTarget::for_outtype`] reads, for messages:
    /// `f32, f16, bf16, q8_0, q4_K_M, q4_K_S, auto`.
    pub fn outtype_names() -> String {
        let mut names: Vec<&str> = FileType::ALL.iter().map(|t| t.as_str()).collect();
        names.push("auto");
        names.join(", ")
    }

    /// The export for a deployment's quantization: the saved model's own precision for
    /// `no_quantization`, else llama-quantize's recipe on a lossless export (what Ollama's own
    /// quantizer does) — for Q8_0 too, rather than the converter's Q8_0.
    pub fn for_quant(quant: QuantType) -> ExportTarget {
        match quant.file_type() {
            None => ExportTarget::Source,
            Some(file_type) => ExportTarget::Quantize(file_type),
        }
    }

    /// The ggml type the converter writes matrices in for `file_type`, when it writes that file
    /// type itself (`convert_hf_to_gguf.py`'s out types); `None` when only quantizing gives it.
    pub fn converter_matrix_type(file_type: FileType) -> Option<GgmlType> {
        match file_type {
            FileType::F32 => Some(GgmlType::F32),
            FileType::F16 => Some(GgmlType::F16),
            FileType::BF16 => Some(GgmlType::BF16),
            FileType::Q8_0 => Some(GgmlType::Q8_0),
            _ => None,
        }
    }
}

impl fmt::Display for ExportTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportTarget::Convert(file_type) => write!(f, "{file_type}"),
            ExportTarget::Auto => f.write_str("auto"),
            ExportTarget::Source => f.write_str("source"),
            ExportTarget::Quantize(file_type) => write!(f, "{file_type} (llama-quantize)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outtypes_parse_case_insensitively() {
        assert_eq!(
            ExportTarget::for_outtype("BF16"),
            Some(ExportTarget::Convert(FileType::BF16))
        );
        assert_eq!(
            ExportTarget::for_outtype("q4_k_s"),
            Some(ExportTarget::Quantize(FileType::Q4KS))
        );
        assert_eq!(
            ExportTarget::for_outtype("Source"),
            Some(ExportTarget::Source)
        );
        assert_eq!(ExportTarget::for_outtype("q3_k"), None);
        assert_eq!(
            ExportTarget::outtype_names(),
            "f32, f16, bf16, q8_0, q6_K, q5_K_M, q5_K_S, q5_1, q5_0, q4_K_M, q4_K_S, q4_1, q4_0, \
             q3_K_L, q3_K_M, q3_K_S, q2_K, auto"
        );
    }
}
