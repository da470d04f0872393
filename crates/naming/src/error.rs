//! The one error type of this crate.

use chrono::NaiveDate;

/// Why a name, or one part of a name, was rejected.
///
/// `what` fields say which kind of name was being checked (`"technical name"`, `"train name"`);
/// `value` fields carry the offending input so the message can be shown to a user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The input is empty (after trimming, for train names).
    #[error("{what} is empty")]
    Empty {
        /// Which kind of name.
        what: &'static str,
    },
    /// The input is longer than the kind of name allows.
    #[error("{what} {value:?} is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// Which kind of name.
        what: &'static str,
        /// The rejected input.
        value: String,
        /// Its length in characters.
        len: usize,
        /// The maximum length.
        max: usize,
    },
    /// The first character is not a lowercase ASCII letter or a digit.
    #[error("{what} {value:?} must start with a lowercase letter or a digit, not {found:?}")]
    BadStart {
        /// Which kind of name.
        what: &'static str,
        /// The rejected input.
        value: String,
        /// The first character.
        found: char,
    },
    /// The input ends with a character that folders cannot end with.
    #[error("{what} {value:?} must not end with {found:?}")]
    BadEnd {
        /// Which kind of name.
        what: &'static str,
        /// The rejected input.
        value: String,
        /// The last character.
        found: char,
    },
    /// A character outside the allowed set.
    #[error("{what} {value:?} contains {found:?} at position {index}; allowed are {allowed}")]
    InvalidChar {
        /// Which kind of name.
        what: &'static str,
        /// The rejected input.
        value: String,
        /// The offending character.
        found: char,
        /// Its position (in characters, from 0).
        index: usize,
        /// The allowed characters, for the message.
        allowed: &'static str,
    },
    /// A `/` or `\`: names are single path components.
    #[error("{what} {value:?} contains the path separator {found:?} at position {index}")]
    PathSeparator {
        /// Which kind of name.
        what: &'static str,
        /// The rejected input.
        value: String,
        /// `/` or `\`.
        found: char,
        /// Its position (in characters, from 0).
        index: usize,
    },
    /// A control character (including tab and newline inside the name).
    #[error("{what} {value:?} contains a control character at position {index}")]
    ControlChar {
        /// Which kind of name.
        what: &'static str,
        /// The rejected input.
        value: String,
        /// Its position (in characters, from 0).
        index: usize,
    },
    /// The input contains `..`.
    #[error("{what} {value:?} contains \"..\"")]
    DotDot {
        /// Which kind of name.
        what: &'static str,
        /// The rejected input.
        value: String,
    },
    /// A name that Windows reserves for devices (`con`, `nul`, `com1` …), unusable as a folder.
    #[error("{what} {value:?} is reserved by Windows and cannot be a folder name")]
    Reserved {
        /// Which kind of name.
        what: &'static str,
        /// The rejected input.
        value: String,
    },
    /// The date cannot be written with four year digits.
    #[error("date {date} cannot be written as YYYYMMDD (the year must be 0 to 9999)")]
    DateOutOfRange {
        /// The date.
        date: NaiveDate,
    },
    /// Not eight digits forming a real calendar date.
    #[error("{value:?} is not a YYYYMMDD date")]
    BadDate {
        /// The rejected text.
        value: String,
    },
    /// Not four hexadecimal digits.
    #[error("{value:?} is not a 4-hex-digit UUID prefix")]
    BadUuidPrefix {
        /// The rejected text.
        value: String,
    },
    /// Not one of the quantization spellings.
    #[error("{value:?} is not a quantization type; expected {expected}")]
    UnknownQuant {
        /// The rejected text.
        value: String,
        /// The valid spellings (`no_quantization, q8_0, q4_K_M or q4_K_S`).
        expected: String,
    },
    /// Not one of the output file types.
    #[error("unknown quantization type {given:?}; valid types: {valid}")]
    UnknownFileType {
        /// What was given.
        given: String,
        /// Comma-separated list of the valid names, as `llama-quantize` spells them.
        valid: String,
    },
    /// A file type `llama-quantize` offers only with an importance matrix (`IQ*`, `Q2_K_S`).
    #[error("{given} needs an importance matrix (imatrix), which loraforge does not compute; quantize with llama.cpp's llama-quantize --imatrix, or choose a k-quant such as Q4_K_M, Q3_K_M or Q2_K")]
    NeedsImatrix {
        /// The type asked for, in llama-quantize's spelling.
        given: String,
    },
    /// The text does not have the shape of a trained, saved or deployed name.
    #[error("{name:?} is not a loraforge model name: {reason}")]
    NotAModelName {
        /// The rejected text.
        name: String,
        /// What is wrong with its shape.
        reason: &'static str,
    },
    /// The text has the shape of a model name but one of its parts is invalid.
    #[error("in model name {name:?}, the {part} is invalid")]
    BadPart {
        /// The whole name.
        name: String,
        /// Which part (`"base technical name"`, `"train name"`, `"date"` …).
        part: &'static str,
        /// Why the part was rejected.
        #[source]
        source: Box<NameError>,
    },
    /// Every drawn UUID's prefix was already taken.
    #[error("no UUID with an unused 4-hex prefix was found in {attempts} draws")]
    PrefixSpaceExhausted {
        /// How many UUIDs were drawn.
        attempts: u32,
    },
}
