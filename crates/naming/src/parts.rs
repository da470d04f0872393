//! The parts names are made of: technical names, train names, UUID prefixes, dates, quant types.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use uuid::Uuid;

use crate::{FileType, NameError};

/// Longest base technical name, in characters.
pub const TECHNICAL_NAME_MAX_LEN: usize = 32;
/// Longest train name a user may give, in characters (after normalization).
pub const TRAIN_NAME_MAX_LEN: usize = 32;

const TECHNICAL: &str = "technical name";
const TRAIN: &str = "train name";

/// Windows device names: a folder called `con` (or `con.anything`) cannot be created there.
const WINDOWS_RESERVED: [&str; 22] = [
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

pub(crate) fn is_windows_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).to_ascii_lowercase();
    WINDOWS_RESERVED.contains(&stem.as_str())
}

/// Checks the characters shared by every rule: control characters and path separators first, so
/// the message names the real problem, then the allowed set.
fn check_char(
    what: &'static str,
    value: &str,
    index: usize,
    c: char,
    allowed: impl Fn(char) -> bool,
    allowed_text: &'static str,
) -> Result<(), NameError> {
    if c.is_control() {
        return Err(NameError::ControlChar {
            what,
            value: value.to_owned(),
            index,
        });
    }
    if c == '/' || c == '\\' {
        return Err(NameError::PathSeparator {
            what,
            value: value.to_owned(),
            found: c,
            index,
        });
    }
    if !allowed(c) {
        return Err(NameError::InvalidChar {
            what,
            value: value.to_owned(),
            found: c,
            index,
            allowed: allowed_text,
        });
    }
    Ok(())
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// A base model's technical name: short, unique, `[a-z0-9][a-z0-9._-]{0,31}` (e.g. `qw2.5-7-i`).
///
/// On top of that pattern, two folder-safety rules: it must not end with `.` (Windows drops
/// trailing dots) and must not be a Windows device name (`con`, `nul`, `com1` … with or without
/// an extension).
///
/// ```
/// use loraforge_naming::TechnicalName;
/// assert_eq!(TechnicalName::new("qw2.5-7-i").unwrap().as_str(), "qw2.5-7-i");
/// assert!(TechnicalName::new("Qwen").is_err()); // uppercase
/// assert!(TechnicalName::new("../etc").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TechnicalName(String);

impl TechnicalName {
    /// Validates `name` exactly as given (no normalization: technical names are chosen once and
    /// must be typed the same way afterwards).
    pub fn new(name: &str) -> Result<TechnicalName, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty { what: TECHNICAL });
        }
        for (index, c) in name.chars().enumerate() {
            check_char(
                TECHNICAL,
                name,
                index,
                c,
                |c| is_lower_alnum(c) || matches!(c, '.' | '_' | '-'),
                "lowercase ASCII letters, digits, '.', '_' and '-'",
            )?;
        }
        // Every character is ASCII from here on, so bytes are characters.
        let first = name.chars().next().unwrap_or('.');
        if !is_lower_alnum(first) {
            return Err(NameError::BadStart {
                what: TECHNICAL,
                value: name.to_owned(),
                found: first,
            });
        }
        if name.len() > TECHNICAL_NAME_MAX_LEN {
            return Err(NameError::TooLong {
                what: TECHNICAL,
                value: name.to_owned(),
                len: name.len(),
                max: TECHNICAL_NAME_MAX_LEN,
            });
        }
        if name.ends_with('.') {
            return Err(NameError::BadEnd {
                what: TECHNICAL,
                value: name.to_owned(),
                found: '.',
            });
        }
        if is_windows_reserved(name) {
            return Err(NameError::Reserved {
                what: TECHNICAL,
                value: name.to_owned(),
            });
        }
        Ok(TechnicalName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The user's name for a training run, normalized so it can sit between `_` separators.
///
/// Rules, applied in this order to the user's input:
///
/// 1. Leading and trailing whitespace is trimmed.
/// 2. A control character (tab, newline, …) inside the name is rejected, and so are `/` and `\`.
/// 3. Every run of spaces, underscores and hyphens that holds at least one space or underscore
///    becomes one `-` (`_` separates the parts of model names, so a train name never contains
///    it and names parse back unambiguously); runs of hyphens alone are kept.
/// 4. ASCII uppercase letters are lowercased (Ollama and case-insensitive file systems treat
///    `Run` and `run` as the same name).
/// 5. Any other character outside `[a-z0-9.-]` (non-ASCII letters, `:`, `*`, …) is rejected.
/// 6. The result must not contain `..`, must start with a letter or digit, and is at most
///    [`TRAIN_NAME_MAX_LEN`] characters.
///
/// So a valid train name matches `[a-z0-9][a-z0-9.-]{0,31}` without `..`, and normalizing it
/// again returns it unchanged. A trained model's name may carry a shortened copy of it (see
/// [`TrainedName`](crate::TrainedName)).
///
/// ```
/// use loraforge_naming::TrainName;
/// assert_eq!(TrainName::new("  My Run_v2 ").unwrap().as_str(), "my-run-v2");
/// assert!(TrainName::new("a/b").is_err());
/// assert!(TrainName::new("..").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrainName(String);

impl TrainName {
    /// Normalizes and validates user input (rules above).
    pub fn new(input: &str) -> Result<TrainName, NameError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(NameError::Empty { what: TRAIN });
        }
        let mut out = String::with_capacity(trimmed.len());
        // The current run of ' ', '_' and '-', and whether it holds a ' ' or '_'.
        let mut run = String::new();
        let mut run_has_separator = false;
        let flush = |out: &mut String, run: &mut String, has_separator: &mut bool| {
            if *has_separator {
                out.push('-');
            } else {
                out.push_str(run);
            }
            run.clear();
            *has_separator = false;
        };
        for (index, c) in trimmed.chars().enumerate() {
            if matches!(c, ' ' | '_' | '-') {
                run.push(c);
                run_has_separator |= c != '-';
                continue;
            }
            flush(&mut out, &mut run, &mut run_has_separator);
            let c = c.to_ascii_lowercase();
            check_char(
                TRAIN,
                trimmed,
                index,
                c,
                |c| is_lower_alnum(c) || c == '.',
                "ASCII letters, digits, '.', '-', and spaces or '_' (which become '-')",
            )?;
            out.push(c);
        }
        flush(&mut out, &mut run, &mut run_has_separator);
        if out.contains("..") {
            return Err(NameError::DotDot {
                what: TRAIN,
                value: input.to_owned(),
            });
        }
        let first = out.chars().next().unwrap_or('-');
        if !is_lower_alnum(first) {
            return Err(NameError::BadStart {
                what: TRAIN,
                value: input.to_owned(),
                found: first,
            });
        }
        if out.len() > TRAIN_NAME_MAX_LEN {
            return Err(NameError::TooLong {
                what: TRAIN,
                value: input.to_owned(),
                len: out.len(),
                max: TRAIN_NAME_MAX_LEN,
            });
        }
        Ok(TrainName(out))
    }

    /// The normalized name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first `max_len` characters (at least one), still a valid train name: the first
    /// character is kept and cutting cannot create `..`.
    pub fn shortened(&self, max_len: usize) -> TrainName {
        let keep = max_len.max(1).min(self.0.len());
        TrainName(self.0[..keep].to_owned())
    }
}

/// The first four hex digits of a UUID (its first two bytes), as used in model names.
///
/// ```
/// use loraforge_naming::UuidPrefix;
/// let uuid = uuid::Uuid::parse_str("3f2a9c00-0000-4000-8000-000000000000").unwrap();
/// assert_eq!(UuidPrefix::of(&uuid).to_string(), "3f2a");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UuidPrefix(u16);

impl UuidPrefix {
    /// The prefix of `uuid` (the first four characters of its hyphenated lowercase form).
    pub fn of(uuid: &Uuid) -> UuidPrefix {
        let bytes = uuid.as_bytes();
        UuidPrefix(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    /// The prefix as a number.
    pub fn value(self) -> u16 {
        self.0
    }
}

impl fmt::Display for UuidPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}", self.0)
    }
}

impl FromStr for UuidPrefix {
    type Err = NameError;

    /// Exactly four hex digits, either case.
    fn from_str(s: &str) -> Result<UuidPrefix, NameError> {
        let bad = || NameError::BadUuidPrefix {
            value: s.to_owned(),
        };
        if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        u16::from_str_radix(s, 16)
            .map(UuidPrefix)
            .map_err(|_| bad())
    }
}

/// The quantization of a deployed model, as the product spells it in names: `no_quantization`
/// (keep the saved model's precision) or a quantized [`FileType`].
///
/// Parsing ignores case, so `Q4_K_M` and `q4_k_m` both give `Quantized(FileType::Q4KM)`;
/// display uses the canonical spelling. The unquantized file types (`f32`, `f16`, `bf16`) also
/// parse, as an explicit precision, so that every value displays and parses back; [`QuantType::ALL`]
/// lists the choices the product offers.
///
/// ```
/// use loraforge_naming::{FileType, QuantType};
/// assert_eq!("Q4_K_M".parse::<QuantType>().unwrap(), QuantType::Quantized(FileType::Q4KM));
/// assert_eq!(QuantType::Quantized(FileType::Q4KM).to_string(), "q4_K_M");
/// assert_eq!(QuantType::NoQuantization.ollama_quantize(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuantType {
    /// Keep the saved model's precision: `no_quantization`.
    NoQuantization,
    /// Write this file type (a quantized one, in the product's choices).
    Quantized(FileType),
}

/// How many quantized file types there are.
const N_QUANTIZED: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < FileType::ALL.len() {
        if FileType::ALL[i].is_quantized() {
            n += 1;
        }
        i += 1;
    }
    n
};

impl QuantType {
    /// The product's choices, in its order: `no_quantization`, then every quantized
    /// [`FileType`] in [`FileType::ALL`]'s order.
    pub const ALL: [QuantType; 1 + N_QUANTIZED] = {
        let mut all = [QuantType::NoQuantization; 1 + N_QUANTIZED];
        let (mut i, mut n) = (0, 1);
        while i < FileType::ALL.len() {
            if FileType::ALL[i].is_quantized() {
                all[n] = QuantType::Quantized(FileType::ALL[i]);
                n += 1;
            }
            i += 1;
        }
        all
    };

    /// The canonical spelling used in names.
    pub fn as_str(self) -> &'static str {
        match self {
            QuantType::NoQuantization => "no_quantization",
            QuantType::Quantized(file_type) => file_type.as_str(),
        }
    }

    /// The file type to write, `None` for no quantization.
    pub fn file_type(self) -> Option<FileType> {
        match self {
            QuantType::NoQuantization => None,
            QuantType::Quantized(file_type) => Some(file_type),
        }
    }

    /// The value for the `quantize` field of Ollama's `/api/create` (which quantizes to
    /// `q8_0`, `q4_K_M` and `q4_K_S`), `None` for no quantization or a type Ollama cannot make.
    pub fn ollama_quantize(self) -> Option<&'static str> {
        const OLLAMA_QUANTIZES: [FileType; 3] = [FileType::Q8_0, FileType::Q4KM, FileType::Q4KS];
        self.file_type()
            .filter(|t| OLLAMA_QUANTIZES.contains(t))
            .map(FileType::as_str)
    }

    /// Every spelling that parses: [`QuantType::ALL`] and the unquantized file types.
    pub(crate) fn parseable() -> impl Iterator<Item = QuantType> {
        std::iter::once(QuantType::NoQuantization)
            .chain(FileType::ALL.into_iter().map(QuantType::Quantized))
    }
}

impl fmt::Display for QuantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QuantType {
    type Err = NameError;

    fn from_str(s: &str) -> Result<QuantType, NameError> {
        QuantType::parseable()
            .find(|q| q.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| NameError::UnknownQuant {
                value: s.to_owned(),
                expected: QuantType::expected(),
            })
    }
}

impl QuantType {
    /// `no_quantization, q8_0, q4_K_M or q4_K_S`: the choices, for messages.
    fn expected() -> String {
        let names: Vec<&str> = QuantType::ALL.iter().map(|q| q.as_str()).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }
}

/// Writes `date` as `YYYYMMDD`.
pub(crate) fn format_date(date: NaiveDate) -> Result<String, NameError> {
    if !(0..=9999).contains(&date.year()) {
        return Err(NameError::DateOutOfRange { date });
    }
    Ok(format!(
        "{:04}{:02}{:02}",
        date.year(),
        date.month(),
        date.day()
    ))
}

/// Reads a `YYYYMMDD` date (eight ASCII digits forming a real calendar day).
pub(crate) fn parse_date(s: &str) -> Result<NaiveDate, NameError> {
    let bad = || NameError::BadDate {
        value: s.to_owned(),
    };
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let year: i32 = s[0..4].parse().map_err(|_| bad())?;
    let month: u32 = s[4..6].parse().map_err(|_| bad())?;
    let day: u32 = s[6..8].parse().map_err(|_| bad())?;
    NaiveDate::from_ymd_opt(year, month, day).ok_or_else(bad)
}

macro_rules! display_and_fromstr_as_str {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
display_and_fromstr_as_str!(TechnicalName);
display_and_fromstr_as_str!(TrainName);

impl FromStr for TechnicalName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<TechnicalName, NameError> {
        TechnicalName::new(s)
    }
}

impl FromStr for TrainName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<TrainName, NameError> {
        TrainName::new(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn technical_name_examples() {
        assert!(TechnicalName::new("qw2.5-7-i").is_ok());
        assert!(TechnicalName::new("a").is_ok());
        assert!(TechnicalName::new("llama_3-8b").is_ok());
        assert!(TechnicalName::new(&"a".repeat(32)).is_ok());
        assert!(matches!(
            TechnicalName::new(&"a".repeat(33)),
            Err(NameError::TooLong {
                len: 33,
                max: 32,
                ..
            })
        ));
        assert!(matches!(
            TechnicalName::new(""),
            Err(NameError::Empty { .. })
        ));
        assert!(matches!(
            TechnicalName::new("-x"),
            Err(NameError::BadStart { found: '-', .. })
        ));
        assert!(matches!(
            TechnicalName::new("Qwen"),
            Err(NameError::InvalidChar {
                found: 'Q',
                index: 0,
                ..
            })
        ));
        assert!(matches!(
            TechnicalName::new("a/b"),
            Err(NameError::PathSeparator {
                found: '/',
                index: 1,
                ..
            })
        ));
        assert!(matches!(
            TechnicalName::new("a\\b"),
            Err(NameError::PathSeparator { found: '\\', .. })
        ));
        assert!(matches!(
            TechnicalName::new("a\nb"),
            Err(NameError::ControlChar { index: 1, .. })
        ));
        assert!(matches!(
            TechnicalName::new("abc."),
            Err(NameError::BadEnd { found: '.', .. })
        ));
        assert!(matches!(
            TechnicalName::new("nul"),
            Err(NameError::Reserved { .. })
        ));
        assert!(matches!(
            TechnicalName::new("com1.x"),
            Err(NameError::Reserved { .. })
        ));
    }

    #[test]
    fn train_name_normalization() {
        assert_eq!(TrainName::new("my run").unwrap().as_str(), "my-run");
        assert_eq!(TrainName::new("  My   Run \t").unwrap().as_str(), "my-run");
        assert_eq!(TrainName::new("a_b__c _ d").unwrap().as_str(), "a-b-c-d");
        assert_eq!(TrainName::new("v1.2-final").unwrap().as_str(), "v1.2-final");
        assert_eq!(TrainName::new("a--b").unwrap().as_str(), "a--b");
        assert_eq!(TrainName::new("a - b").unwrap().as_str(), "a-b");
        assert_eq!(TrainName::new("a_-_b").unwrap().as_str(), "a-b");
        assert_eq!(TrainName::new("run_").unwrap().as_str(), "run-");
        assert_eq!(TrainName::new(&"x".repeat(32)).unwrap().as_str().len(), 32);
    }

    #[test]
    fn train_name_rejections() {
        assert!(matches!(
            TrainName::new("   "),
            Err(NameError::Empty { .. })
        ));
        assert!(matches!(
            TrainName::new("../x"),
            Err(NameError::PathSeparator { found: '/', .. })
        ));
        assert!(matches!(
            TrainName::new("a..b"),
            Err(NameError::DotDot { .. })
        ));
        assert!(matches!(
            TrainName::new(".."),
            Err(NameError::DotDot { .. })
        ));
        assert!(matches!(
            TrainName::new("a\\b"),
            Err(NameError::PathSeparator { found: '\\', .. })
        ));
        assert!(matches!(
            TrainName::new("a\tb"),
            Err(NameError::ControlChar { index: 1, .. })
        ));
        assert!(matches!(
            TrainName::new("a\u{7f}"),
            Err(NameError::ControlChar { .. })
        ));
        assert!(matches!(
            TrainName::new("café"),
            Err(NameError::InvalidChar { found: 'é', .. })
        ));
        assert!(matches!(
            TrainName::new("a:b"),
            Err(NameError::InvalidChar { found: ':', .. })
        ));
        assert!(matches!(
            TrainName::new("_x"),
            Err(NameError::BadStart { found: '-', .. })
        ));
        assert!(matches!(
            TrainName::new(".hidden"),
            Err(NameError::BadStart { found: '.', .. })
        ));
        assert!(matches!(
            TrainName::new(&"x".repeat(33)),
            Err(NameError::TooLong { len: 33, .. })
        ));
    }

    #[test]
    fn train_name_shortened() {
        let t = TrainName::new("abcdef").unwrap();
        assert_eq!(t.shortened(3).as_str(), "abc");
        assert_eq!(t.shortened(0).as_str(), "a");
        assert_eq!(t.shortened(99).as_str(), "abcdef");
    }

    #[test]
    fn uuid_prefix() {
        let u = Uuid::parse_str("ABCD1234-0000-4000-8000-000000000000").unwrap();
        assert_eq!(UuidPrefix::of(&u).to_string(), "abcd");
        let z = Uuid::parse_str("000f1234-0000-4000-8000-000000000000").unwrap();
        assert_eq!(UuidPrefix::of(&z).to_string(), "000f");
        assert_eq!("ABCD".parse::<UuidPrefix>().unwrap(), UuidPrefix::of(&u));
        for bad in ["abc", "abcde", "abcg", "+abc", ""] {
            assert!(matches!(
                bad.parse::<UuidPrefix>(),
                Err(NameError::BadUuidPrefix { .. })
            ));
        }
    }

    #[test]
    fn quant_spellings() {
        let spelled: Vec<_> = QuantType::ALL.iter().map(|q| q.as_str()).collect();
        assert_eq!(
            spelled,
            [
                "no_quantization",
                "q8_0",
                "q6_K",
                "q5_K_M",
                "q5_K_S",
                "q5_1",
                "q5_0",
                "q4_K_M",
                "q4_K_S",
                "q4_1",
                "q4_0",
                "q3_K_L",
                "q3_K_M",
                "q3_K_S",
                "q2_K"
            ]
        );
        assert_eq!(
            "NO_QUANTIZATION".parse::<QuantType>().unwrap(),
            QuantType::NoQuantization
        );
        assert_eq!(
            "q4_k_s".parse::<QuantType>().unwrap(),
            QuantType::Quantized(FileType::Q4KS)
        );
        assert_eq!(
            "Q8_0".parse::<QuantType>().unwrap(),
            QuantType::Quantized(FileType::Q8_0)
        );
        assert_eq!(
            "q5_K_M".parse::<QuantType>().unwrap(),
            QuantType::Quantized(FileType::Q5KM)
        );
        assert!(matches!(
            "q5_K".parse::<QuantType>(),
            Err(NameError::UnknownQuant { .. })
        ));
        assert_eq!(
            QuantType::Quantized(FileType::Q8_0).ollama_quantize(),
            Some("q8_0")
        );
    }

    #[test]
    fn dates() {
        let d = NaiveDate::from_ymd_opt(2024, 3, 9).unwrap();
        assert_eq!(format_date(d).unwrap(), "20240309");
        assert_eq!(parse_date("20240309").unwrap(), d);
        assert_eq!(
            format_date(NaiveDate::from_ymd_opt(7, 1, 2).unwrap()).unwrap(),
            "00070102"
        );
        assert!(matches!(
            format_date(NaiveDate::from_ymd_opt(10000, 1, 1).unwrap()),
            Err(NameError::DateOutOfRange { .. })
        ));
        assert!(matches!(
            format_date(NaiveDate::from_ymd_opt(-1, 1, 1).unwrap()),
            Err(NameError::DateOutOfRange { .. })
        ));
        for bad in ["20240230", "2024030", "2024-3-9", "2024030a", "202403091"] {
            assert!(
                matches!(parse_date(bad), Err(NameError::BadDate { .. })),
                "{bad}"
            );
        }
    }
}
