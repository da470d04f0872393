//! Trained, saved and deployed model names: building them and parsing them back.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};

use crate::parts::{format_date, parse_date, TECHNICAL_NAME_MAX_LEN};
use crate::{NameError, QuantType, TechnicalName, TrainName, UuidPrefix};

/// Longest model name: Ollama's limit on the model part of a name.
pub const MODEL_NAME_MAX_LEN: usize = 80;

/// Longest `_s_xxxx_d_xxxx_{quant}` tail a deployed name adds to its trained name.
const DESCENDANT_SUFFIX_MAX_LEN: usize = "_s_0000_d_0000_no_quantization".len();

/// Longest trained name: short enough that every saved and deployed name made from it stays
/// within [`MODEL_NAME_MAX_LEN`] (80 − 30 = 50).
pub const TRAINED_NAME_MAX_LEN: usize = MODEL_NAME_MAX_LEN - DESCENDANT_SUFFIX_MAX_LEN;

/// What a trained name adds around the base and train names: three `_`, `YYYYMMDD` and 4 hex.
const TRAINED_FIXED_LEN: usize = 3 + 8 + 4;

// Even the longest base technical name leaves room for a 3-character train name.
const _: () = assert!(TRAINED_NAME_MAX_LEN - TRAINED_FIXED_LEN - TECHNICAL_NAME_MAX_LEN >= 3);

/// A trained model's name: `{base}_{train}_{YYYYMMDD}_{xxxx}`.
///
/// `xxxx` is the first four hex digits of the training UUID; the date is the training run's
/// date (or the registration date, UTC, when the trainer files do not record it — the caller
/// decides).
///
/// **Shortening.** A trained name is at most [`TRAINED_NAME_MAX_LEN`] (50) characters, so that the
/// longest deployed name derived from it (`…_s_xxxx_d_xxxx_no_quantization`) is at most 80. When
/// `base` and `train` are too long together, only the train part is cut (its first characters are
/// kept, at least 3); the base, date and UUID prefix are never shortened. The full train name
/// belongs in the model card; [`train`](TrainedName::train) returns the part in the name.
///
/// ```
/// use chrono::NaiveDate;
/// use loraforge_naming::{TechnicalName, TrainName, TrainedName, UuidPrefix};
///
/// let uuid = uuid::Uuid::parse_str("3f2a9c00-0000-4000-8000-000000000000").unwrap();
/// let name = TrainedName::new(
///     TechnicalName::new("qw2.5-7-i").unwrap(),
///     &TrainName::new("support bot").unwrap(),
///     NaiveDate::from_ymd_opt(2024, 5, 17).unwrap(),
///     UuidPrefix::of(&uuid),
/// )
/// .unwrap();
/// assert_eq!(name.to_string(), "qw2.5-7-i_support-bot_20240517_3f2a");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrainedName {
    base: TechnicalName,
    train: TrainName,
    date: NaiveDate,
    uuid_prefix: UuidPrefix,
}

impl TrainedName {
    /// Builds the name, shortening the train part if needed (see the type's documentation).
    /// Fails only for dates whose year is outside 0–9999.
    pub fn new(
        base: TechnicalName,
        train: &TrainName,
        date: NaiveDate,
        uuid_prefix: UuidPrefix,
    ) -> Result<TrainedName, NameError> {
        format_date(date)?;
        let room = TRAINED_NAME_MAX_LEN - TRAINED_FIXED_LEN - base.as_str().len();
        Ok(TrainedName {
            base,
            train: train.shortened(room),
            date,
            uuid_prefix,
        })
    }

    /// The base model's technical name.
    pub fn base(&self) -> &TechnicalName {
        &self.base
    }

    /// The train name as it appears in the name (possibly shortened).
    pub fn train(&self) -> &TrainName {
        &self.train
    }

    /// The training date.
    pub fn date(&self) -> NaiveDate {
        self.date
    }

    /// The training UUID's prefix.
    pub fn uuid_prefix(&self) -> UuidPrefix {
        self.uuid_prefix
    }
}

impl fmt::Display for TrainedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The year was checked to be 0..=9999 when the name was built.
        write!(
            f,
            "{}_{}_{:04}{:02}{:02}_{}",
            self.base,
            self.train,
            self.date.year(),
            self.date.month(),
            self.date.day(),
            self.uuid_prefix
        )
    }
}

/// A saved (merged) model's name: `{trained}_s_{xxxx}`, `xxxx` from the saving UUID.
///
/// ```
/// # use loraforge_naming::{ParsedName, SavedName, UuidPrefix};
/// let trained = ParsedName::parse("qw2.5-7-i_support-bot_20240517_3f2a").unwrap();
/// let saved = SavedName::new(trained.trained().clone(), "0b1c".parse().unwrap());
/// assert_eq!(saved.to_string(), "qw2.5-7-i_support-bot_20240517_3f2a_s_0b1c");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SavedName {
    trained: TrainedName,
    uuid_prefix: UuidPrefix,
}

impl SavedName {
    /// Builds the name (always within the length limits, see [`TrainedName`]).
    pub fn new(trained: TrainedName, uuid_prefix: UuidPrefix) -> SavedName {
        SavedName {
            trained,
            uuid_prefix,
        }
    }

    /// The trained model it was saved from.
    pub fn trained(&self) -> &TrainedName {
        &self.trained
    }

    /// The saving UUID's prefix.
    pub fn uuid_prefix(&self) -> UuidPrefix {
        self.uuid_prefix
    }
}

impl fmt::Display for SavedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_s_{}", self.trained, self.uuid_prefix)
    }
}

/// A deployed model's name: `{saved}_d_{xxxx}_{quant}`, `xxxx` from the deploying UUID.
///
/// It is also the Ollama model name (at most 80 characters, `[A-Za-z0-9_][A-Za-z0-9_.-]*`).
///
/// ```
/// # use loraforge_naming::{DeployedName, FileType, ParsedName, QuantType};
/// let saved = ParsedName::parse("qw2.5-7-i_support-bot_20240517_3f2a_s_0b1c").unwrap();
/// let ParsedName::Saved(saved) = saved else { unreachable!() };
/// let deployed = DeployedName::new(saved, "77e0".parse().unwrap(), QuantType::Quantized(FileType::Q4KM));
/// assert_eq!(deployed.to_string(), "qw2.5-7-i_support-bot_20240517_3f2a_s_0b1c_d_77e0_q4_K_M");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeployedName {
    saved: SavedName,
    uuid_prefix: UuidPrefix,
    quant: QuantType,
}

impl DeployedName {
    /// Builds the name (always within the length limits, see [`TrainedName`]).
    pub fn new(saved: SavedName, uuid_prefix: UuidPrefix, quant: QuantType) -> DeployedName {
        DeployedName {
            saved,
            uuid_prefix,
            quant,
        }
    }

    /// The saved model it was deployed from.
    pub fn saved(&self) -> &SavedName {
        &self.saved
    }

    /// The deploying UUID's prefix.
    pub fn uuid_prefix(&self) -> UuidPrefix {
        self.uuid_prefix
    }

    /// The quantization.
    pub fn quant(&self) -> QuantType {
        self.quant
    }
}

impl fmt::Display for DeployedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_d_{}_{}", self.saved, self.uuid_prefix, self.quant)
    }
}

/// Which lifecycle stage a generated name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NameKind {
    /// `{base}_{train}_{YYYYMMDD}_{xxxx}`.
    Trained,
    /// `{trained}_s_{xxxx}`.
    Saved,
    /// `{saved}_d_{xxxx}_{quant}`.
    Deployed,
}

/// A generated name read back into its parts.
///
/// Parsing ignores ASCII case (Ollama and some file systems fold it), so `…_Q4_K_M` reads as
/// `q4_K_M`; [`Display`](fmt::Display) gives the canonical spelling. Parsing works from the right:
/// the quant, `_d_xxxx` and `_s_xxxx` tails decide the kind, then the last three `_`-separated
/// fields of the trained part are the UUID prefix, the date and the train name (which never
/// contains `_`), and everything before them is the base technical name (which may).
///
/// ```
/// use loraforge_naming::{FileType, NameKind, ParsedName, QuantType};
/// let p = ParsedName::parse("qw2.5-7-i_support-bot_20240517_3f2a_s_0b1c_d_77e0_q4_K_M").unwrap();
/// assert_eq!(p.kind(), NameKind::Deployed);
/// assert_eq!(p.trained().base().as_str(), "qw2.5-7-i");
/// assert_eq!(p.trained().train().as_str(), "support-bot");
/// assert_eq!(p.quant(), Some(QuantType::Quantized(FileType::Q4KM)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ParsedName {
    /// A trained model's name.
    Trained(TrainedName),
    /// A saved model's name.
    Saved(SavedName),
    /// A deployed model's name.
    Deployed(DeployedName),
}

impl ParsedName {
    /// Reads a trained, saved or deployed name (see the type's documentation).
    pub fn parse(name: &str) -> Result<ParsedName, NameError> {
        parse(name)
    }

    /// The stage the name belongs to.
    pub fn kind(&self) -> NameKind {
        match self {
            ParsedName::Trained(_) => NameKind::Trained,
            ParsedName::Saved(_) => NameKind::Saved,
            ParsedName::Deployed(_) => NameKind::Deployed,
        }
    }

    /// The trained name at the root of this name.
    pub fn trained(&self) -> &TrainedName {
        match self {
            ParsedName::Trained(t) => t,
            ParsedName::Saved(s) => s.trained(),
            ParsedName::Deployed(d) => d.saved().trained(),
        }
    }

    /// The saved name inside this name, if it is a saved or deployed name.
    pub fn saved(&self) -> Option<&SavedName> {
        match self {
            ParsedName::Trained(_) => None,
            ParsedName::Saved(s) => Some(s),
            ParsedName::Deployed(d) => Some(d.saved()),
        }
    }

    /// The quantization, if it is a deployed name.
    pub fn quant(&self) -> Option<QuantType> {
        match self {
            ParsedName::Deployed(d) => Some(d.quant()),
            _ => None,
        }
    }
}

impl fmt::Display for ParsedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParsedName::Trained(t) => t.fmt(f),
            ParsedName::Saved(s) => s.fmt(f),
            ParsedName::Deployed(d) => d.fmt(f),
        }
    }
}

impl From<TrainedName> for ParsedName {
    fn from(n: TrainedName) -> ParsedName {
        ParsedName::Trained(n)
    }
}

impl From<SavedName> for ParsedName {
    fn from(n: SavedName) -> ParsedName {
        ParsedName::Saved(n)
    }
}

impl From<DeployedName> for ParsedName {
    fn from(n: DeployedName) -> ParsedName {
        ParsedName::Deployed(n)
    }
}

fn not_a_name(name: &str, reason: &'static str) -> NameError {
    NameError::NotAModelName {
        name: name.to_owned(),
        reason,
    }
}

fn bad_part<'a>(name: &'a str, part: &'static str) -> impl FnOnce(NameError) -> NameError + 'a {
    move |source| NameError::BadPart {
        name: name.to_owned(),
        part,
        source: Box::new(source),
    }
}

/// Splits `{rest}_{tag}_{xxxx}` into `rest` and the prefix, if `s` ends that way.
fn split_tagged<'a>(
    s: &'a str,
    tag: u8,
    whole: &str,
    part: &'static str,
) -> Result<Option<(&'a str, UuidPrefix)>, NameError> {
    let b = s.as_bytes();
    let Some(cut) = b.len().checked_sub(7) else {
        return Ok(None);
    };
    if b.get(cut..cut + 3) != Some(&[b'_', tag, b'_'][..]) {
        return Ok(None);
    }
    let prefix = s[cut + 3..].parse().map_err(bad_part(whole, part))?;
    Ok(Some((&s[..cut], prefix)))
}

fn parse_trained(s: &str, whole: &str) -> Result<TrainedName, NameError> {
    let fields: Vec<&str> = s.rsplitn(4, '_').collect();
    let [prefix, date, train, base] = fields[..] else {
        return Err(not_a_name(
            whole,
            "expected {base}_{train}_{YYYYMMDD}_{xxxx}, optionally followed by _s_{xxxx} and _d_{xxxx}_{quant}",
        ));
    };
    let uuid_prefix = prefix
        .parse()
        .map_err(bad_part(whole, "training UUID prefix"))?;
    let date = parse_date(date).map_err(bad_part(whole, "date"))?;
    let train = TrainName::new(train).map_err(bad_part(whole, "train name"))?;
    let base = TechnicalName::new(base).map_err(bad_part(whole, "base technical name"))?;
    if s.len() > TRAINED_NAME_MAX_LEN {
        return Err(not_a_name(
            whole,
            "its trained part is longer than 50 characters, so loraforge did not generate it",
        ));
    }
    Ok(TrainedName {
        base,
        train,
        date,
        uuid_prefix,
    })
}

fn parse_saved(s: &str, whole: &str) -> Result<Option<SavedName>, NameError> {
    let Some((trained, uuid_prefix)) = split_tagged(s, b's', whole, "saving UUID prefix")? else {
        return Ok(None);
    };
    Ok(Some(SavedName {
        trained: parse_trained(trained, whole)?,
        uuid_prefix,
    }))
}

fn parse(name: &str) -> Result<ParsedName, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what: "model name" });
    }
    if let Some((index, found)) = name
        .chars()
        .enumerate()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(NameError::InvalidChar {
            what: "model name",
            value: name.to_owned(),
            found,
            index,
            allowed: "ASCII letters, digits, '_', '.' and '-'",
        });
    }
    if name.len() > MODEL_NAME_MAX_LEN {
        return Err(NameError::TooLong {
            what: "model name",
            value: name.to_owned(),
            len: name.len(),
            max: MODEL_NAME_MAX_LEN,
        });
    }
    let lower = name.to_ascii_lowercase();
    for quant in QuantType::parseable() {
        let Some(rest) = lower
            .strip_suffix(&quant.as_str().to_ascii_lowercase())
            .and_then(|r| r.strip_suffix('_'))
        else {
            continue;
        };
        let Some((saved, uuid_prefix)) = split_tagged(rest, b'd', name, "deploying UUID prefix")?
        else {
            return Err(not_a_name(
                name,
                "it ends with a quantization type but not with _d_{xxxx}_{quant}",
            ));
        };
        let Some(saved) = parse_saved(saved, name)? else {
            return Err(not_a_name(
                name,
                "a deployed name must start with a saved name ({trained}_s_{xxxx})",
            ));
        };
        return Ok(ParsedName::Deployed(DeployedName {
            saved,
            uuid_prefix,
            quant,
        }));
    }
    if let Some(saved) = parse_saved(&lower, name)? {
        return Ok(ParsedName::Saved(saved));
    }
    Ok(ParsedName::Trained(parse_trained(&lower, name)?))
}

impl FromStr for ParsedName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<ParsedName, NameError> {
        parse(s)
    }
}

impl FromStr for TrainedName {
    type Err = NameError;
    /// Parses a name that must be a trained name.
    fn from_str(s: &str) -> Result<TrainedName, NameError> {
        match parse(s)? {
            ParsedName::Trained(t) => Ok(t),
            ParsedName::Saved(_) => Err(not_a_name(s, "it is a saved name, not a trained name")),
            ParsedName::Deployed(_) => {
                Err(not_a_name(s, "it is a deployed name, not a trained name"))
            }
        }
    }
}

impl FromStr for SavedName {
    type Err = NameError;
    /// Parses a name that must be a saved name.
    fn from_str(s: &str) -> Result<SavedName, NameError> {
        match parse(s)? {
            ParsedName::Saved(n) => Ok(n),
            ParsedName::Trained(_) => Err(not_a_name(s, "it is a trained name, not a saved name")),
            ParsedName::Deployed(_) => {
                Err(not_a_name(s, "it is a deployed name, not a saved name"))
            }
        }
    }
}

impl FromStr for DeployedName {
    type Err = NameError;
    /// Parses a name that must be a deployed name.
    fn from_str(s: &str) -> Result<DeployedName, NameError> {
        match parse(s)? {
            ParsedName::Deployed(n) => Ok(n),
            ParsedName::Trained(_) => {
                Err(not_a_name(s, "it is a trained name, not a deployed name"))
            }
            ParsedName::Saved(_) => Err(not_a_name(s, "it is a saved name, not a deployed name")),
        }
    }
}

/// Whether `name` is a valid Ollama model name (the model part, without namespace or tag):
/// `[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most [`MODEL_NAME_MAX_LEN`] characters.
pub fn is_valid_ollama_model_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() <= MODEL_NAME_MAX_LEN
        && (first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Whether `name` can be a folder name on Linux, macOS and Windows: one non-empty path
/// component of at most 255 bytes, not `.` or `..`, no control characters, no `/ \ < > : " | ? *`,
/// not ending with `.` or a space, not a Windows device name.
pub fn is_valid_folder_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.ends_with('.')
        && !name.ends_with(' ')
        && !name.chars().any(|c| {
            c.is_control() || matches!(c, '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*')
        })
        && !crate::parts::is_windows_reserved(name)
}

/// Writes `date` as it appears in names (`YYYYMMDD`); fails for years outside 0–9999.
pub fn date_part(date: NaiveDate) -> Result<String, NameError> {
    format_date(date)
}
