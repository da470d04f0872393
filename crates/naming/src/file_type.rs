//! The one vocabulary of output types: the GGUF file types loraforge writes.

use std::fmt;
use std::str::FromStr;

use crate::NameError;

/// Declares [`FileType`] from one table: variant, `llama_ftype` id, spelling. Adding an output
/// type is adding one line here (and its per-tensor recipe in `loraforge-quantize`); parsing,
/// display, serde, [`FileType::ALL`] and the lists in error messages follow from it.
macro_rules! file_types {
    ($($(#[$doc:meta])* $variant:ident = $id:literal, $name:literal;)*) => {
        /// The type of a GGUF file loraforge writes: its precision or quantization mixture.
        ///
        /// This is llama.cpp's `llama_ftype` (written as `general.file_type`), and the single
        /// set of output-type names: `loraforge quantize TYPE`, `convert --outtype TYPE`, the
        /// export target and the quantization part of deployed names all use it. Spelled as in
        /// names and file names (`q4_K_M`, [`FileType::as_str`]) or as `llama-quantize` prints it
        /// (`Q4_K_M`, [`FileType::llama_name`]); parsing ignores case.
        ///
        /// Which ggml type each tensor gets for a file type (the recipe) is
        /// `loraforge-quantize`'s business; this enum only names the choices.
        ///
        /// ```
        /// use loraforge_naming::FileType;
        /// let q: FileType = "Q4_K_M".parse()?;
        /// assert_eq!(q, FileType::Q4KM);
        /// assert_eq!((q.to_string(), q.llama_name(), q.llama_ftype()), ("q4_K_M".into(), "Q4_K_M".into(), 15));
        /// assert!(q.is_quantized() && !FileType::BF16.is_quantized());
        /// # Ok::<(), loraforge_naming::NameError>(())
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum FileType {
            $($(#[$doc])* $variant,)*
        }

        impl FileType {
            /// Every file type, in the order they are listed to users.
            pub const ALL: [FileType; [$($id),*].len()] = [$(FileType::$variant),*];

            /// The `general.file_type` value (`enum llama_ftype` in `llama.h`).
            pub const fn llama_ftype(self) -> u32 {
                match self {
                    $(FileType::$variant => $id,)*
                }
            }

            /// The spelling used in names, file names and `--outtype`: `f16`, `q8_0`, `q4_K_M` …
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(FileType::$variant => $name,)*
                }
            }
        }
    };
}

file_types! {
    /// All tensors f32 (`LLAMA_FTYPE_ALL_F32`).
    F32 = 0, "f32";
    /// Matrices f16 (`LLAMA_FTYPE_MOSTLY_F16`).
    F16 = 1, "f16";
    /// Matrices bf16 (`LLAMA_FTYPE_MOSTLY_BF16`).
    BF16 = 32, "bf16";
    /// 8-bit blocks (`LLAMA_FTYPE_MOSTLY_Q8_0`).
    Q8_0 = 7, "q8_0";
    /// 6-bit k-quant (`LLAMA_FTYPE_MOSTLY_Q6_K`).
    Q6K = 18, "q6_K";
    /// 5-bit k-quant mixture, medium (`LLAMA_FTYPE_MOSTLY_Q5_K_M`).
    Q5KM = 17, "q5_K_M";
    /// 5-bit k-quant mixture, small (`LLAMA_FTYPE_MOSTLY_Q5_K_S`).
    Q5KS = 16, "q5_K_S";
    /// 5-bit legacy blocks with a minimum (`LLAMA_FTYPE_MOSTLY_Q5_1`).
    Q5_1 = 9, "q5_1";
    /// 5-bit legacy blocks (`LLAMA_FTYPE_MOSTLY_Q5_0`).
    Q5_0 = 8, "q5_0";
    /// 4-bit k-quant mixture, medium (`LLAMA_FTYPE_MOSTLY_Q4_K_M`).
    Q4KM = 15, "q4_K_M";
    /// 4-bit k-quant mixture, small (`LLAMA_FTYPE_MOSTLY_Q4_K_S`).
    Q4KS = 14, "q4_K_S";
    /// 4-bit legacy blocks with a minimum (`LLAMA_FTYPE_MOSTLY_Q4_1`).
    Q4_1 = 3, "q4_1";
    /// 4-bit legacy blocks (`LLAMA_FTYPE_MOSTLY_Q4_0`).
    Q4_0 = 2, "q4_0";
    /// 3-bit k-quant mixture, large (`LLAMA_FTYPE_MOSTLY_Q3_K_L`).
    Q3KL = 13, "q3_K_L";
    /// 3-bit k-quant mixture, medium (`LLAMA_FTYPE_MOSTLY_Q3_K_M`).
    Q3KM = 12, "q3_K_M";
    /// 3-bit k-quant mixture, small (`LLAMA_FTYPE_MOSTLY_Q3_K_S`).
    Q3KS = 11, "q3_K_S";
    /// 2-bit k-quant mixture (`LLAMA_FTYPE_MOSTLY_Q2_K`).
    Q2K = 10, "q2_K";
}

/// File types `llama-quantize` offers only with an importance matrix (it refuses or warns
/// without one), which loraforge does not compute.
const NEEDS_IMATRIX: [&str; 13] = [
    "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M",
    "IQ4_NL", "IQ4_XS", "Q2_K_S",
];

impl FileType {
    /// The name `llama-quantize` prints and accepts: `F16`, `Q8_0`, `Q4_K_M` …
    pub fn llama_name(self) -> String {
        self.as_str().to_ascii_uppercase()
    }

    /// True for block-quantized mixtures; false for the float types F32, F16 and BF16.
    pub const fn is_quantized(self) -> bool {
        !matches!(self, FileType::F32 | FileType::F16 | FileType::BF16)
    }

    /// `llama-quantize`'s names of every file type, comma-separated (for error messages).
    pub fn llama_names() -> String {
        FileType::ALL.map(FileType::llama_name).join(", ")
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FileType {
    type Err = NameError;

    /// Parses a type name case-insensitively (`q4_K_M`, `Q4_K_M`, `q4_k_m`, `f16` …).
    fn from_str(s: &str) -> Result<FileType, NameError> {
        let t = s.trim();
        if let Some(name) = NEEDS_IMATRIX.iter().find(|n| n.eq_ignore_ascii_case(t)) {
            return Err(NameError::NeedsImatrix {
                given: (*name).to_owned(),
            });
        }
        FileType::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| NameError::UnknownFileType {
                given: s.to_owned(),
                valid: FileType::llama_names(),
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn file_type_names_parse_case_insensitively() {
        for (s, ft, id) in [
            ("q4_K_M", FileType::Q4KM, 15),
            ("Q4_K_M", FileType::Q4KM, 15),
            ("q4_k_m", FileType::Q4KM, 15),
            ("Q4_K_S", FileType::Q4KS, 14),
            ("q8_0", FileType::Q8_0, 7),
            ("F16", FileType::F16, 1),
            ("bf16", FileType::BF16, 32),
            ("f32", FileType::F32, 0),
            ("q2_k", FileType::Q2K, 10),
            ("Q3_K_S", FileType::Q3KS, 11),
            ("q3_k_m", FileType::Q3KM, 12),
            ("Q3_K_L", FileType::Q3KL, 13),
            ("q4_0", FileType::Q4_0, 2),
            ("Q4_1", FileType::Q4_1, 3),
            ("q5_0", FileType::Q5_0, 8),
            ("q5_1", FileType::Q5_1, 9),
            ("q5_k_s", FileType::Q5KS, 16),
            ("Q5_K_M", FileType::Q5KM, 17),
            ("q6_k", FileType::Q6K, 18),
        ] {
            assert_eq!(s.parse::<FileType>().unwrap(), ft);
            assert_eq!(ft.llama_ftype(), id);
        }
        let err = "q4_K".parse::<FileType>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown quantization type \"q4_K\"; valid types: F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, \
             Q5_K_S, Q5_1, Q5_0, Q4_K_M, Q4_K_S, Q4_1, Q4_0, Q3_K_L, Q3_K_M, Q3_K_S, Q2_K"
        );
        // Importance-matrix types are named as such, with what to do instead.
        for s in ["iq2_xxs", "IQ4_NL", "iq3_m", "Q2_K_S"] {
            let err = s.parse::<FileType>().unwrap_err();
            assert!(
                matches!(&err, NameError::NeedsImatrix { given } if given.eq_ignore_ascii_case(s)),
                "{err:?}"
            );
            assert!(err.to_string().contains("importance matrix"), "{err}");
        }
    }

    #[test]
    fn spellings_round_trip() {
        for ft in FileType::ALL {
            assert_eq!(ft.to_string().parse::<FileType>().unwrap(), ft);
            assert_eq!(ft.llama_name().parse::<FileType>().unwrap(), ft);
        }
        assert_eq!(FileType::Q4KS.llama_name(), "Q4_K_S");
        assert_eq!(FileType::BF16.as_str(), "bf16");
    }
}
