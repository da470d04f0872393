//! `loraforge-naming`: the product's naming rules, pure (no I/O).
//!
//! Every model loraforge manages has a generated name that encodes its lineage:
//!
//! | stage    | name                                   | type            |
//! |----------|----------------------------------------|-----------------|
//! | base     | technical name, `[a-z0-9][a-z0-9._-]{0,31}` | [`TechnicalName`] |
//! | trained  | `{base}_{train}_{YYYYMMDD}_{xxxx}`     | [`TrainedName`] |
//! | saved    | `{trained}_s_{xxxx}`                   | [`SavedName`]   |
//! | deployed | `{saved}_d_{xxxx}_{quant}`             | [`DeployedName`] |
//!
//! `xxxx` is the first four hex digits of the UUID the stage was given ([`UuidPrefix`]);
//! `train` is the user's train name, normalized by [`TrainName::new`] (no `_`, so names parse
//! back unambiguously); `quant` is a [`QuantType`] (no quantization or a [`FileType`], the one vocabulary of
//! output types). Every generated name is a valid folder name
//! ([`is_valid_folder_name`]) and a valid Ollama model name ([`is_valid_ollama_model_name`], at
//! most 80 characters): trained names are kept to 50 characters by shortening only the train
//! part, so no descendant can exceed 80. [`ParsedName::parse`] reads any of them back.
//! [`find_prefix_collision`] and [`draw_uuid_avoiding`] let the registry avoid two entries with
//! the same prefix.
//!
//! ```
//! use chrono::NaiveDate;
//! use loraforge_naming::*;
//! use uuid::Uuid;
//!
//! let base = TechnicalName::new("qw2.5-7-i")?;
//! let train = TrainName::new("Support Bot")?; // -> "support-bot"
//! let training = Uuid::parse_str("3f2a9c4e-0000-4000-8000-000000000000").unwrap();
//! let trained = TrainedName::new(base, &train, NaiveDate::from_ymd_opt(2024, 5, 17).unwrap(),
//!     UuidPrefix::of(&training))?;
//! let saved = SavedName::new(trained, "0b1c".parse()?);
//! let deployed = DeployedName::new(saved, "77e0".parse()?, QuantType::Quantized(FileType::Q4KM));
//! let name = deployed.to_string();
//! assert_eq!(name, "qw2.5-7-i_support-bot_20240517_3f2a_s_0b1c_d_77e0_q4_K_M");
//! assert!(is_valid_ollama_model_name(&name) && is_valid_folder_name(&name));
//! assert_eq!(ParsedName::parse(&name)?, ParsedName::Deployed(deployed));
//! # Ok::<(), NameError>(())
//! ```
#![deny(missing_docs)]

mod collision;
mod error;
mod file_type;
mod names;
mod parts;

pub use collision::{draw_uuid_avoiding, find_prefix_collision, DEFAULT_DRAW_ATTEMPTS};
pub use error::NameError;
pub use file_type::FileType;
pub use names::{
    date_part, is_valid_folder_name, is_valid_ollama_model_name, DeployedName, NameKind,
    ParsedName, SavedName, TrainedName, MODEL_NAME_MAX_LEN, TRAINED_NAME_MAX_LEN,
};
pub use parts::{
    QuantType, TechnicalName, TrainName, UuidPrefix, TECHNICAL_NAME_MAX_LEN, TRAIN_NAME_MAX_LEN,
};

/// Serializes a name as its string form and deserializes it through `FromStr`, so cards and
/// registry records hold plain strings that are validated when read.
macro_rules! serde_as_string {
    ($($ty:ty),*) => {$(
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_as_string!(
    TechnicalName,
    TrainName,
    UuidPrefix,
    QuantType,
    FileType,
    TrainedName,
    SavedName,
    DeployedName,
    ParsedName
);
