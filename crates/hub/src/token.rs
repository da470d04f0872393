//! Where the Hub token comes from, following huggingface_hub's `get_token` (`utils/_auth.py`):
//! an explicit token first, then the `HF_TOKEN` environment variable (the older
//! `HUGGING_FACE_HUB_TOKEN` as a fallback), then the token file `HF_TOKEN_PATH`, else
//! `$HF_HOME/token`, else `$XDG_CACHE_HOME/huggingface/token`, else `~/.cache/huggingface/token`.
//! Every value is cleaned like huggingface_hub's `_clean_token`: `\r` and `\n` removed, spaces
//! trimmed, and an empty result counts as absent.
//!
//! The library never reads environment variables: the caller passes their values in
//! [`TokenInputs`].

use std::fmt;
use std::path::{Path, PathBuf};

use crate::HubError;

/// `HF_TOKEN`: the token, when set.
pub const HF_TOKEN_ENV: &str = "HF_TOKEN";
/// `HUGGING_FACE_HUB_TOKEN`: the older name of `HF_TOKEN`, read when `HF_TOKEN` is unset.
pub const HUGGING_FACE_HUB_TOKEN_ENV: &str = "HUGGING_FACE_HUB_TOKEN";
/// `HF_TOKEN_PATH`: the token file, overriding the one under `HF_HOME`.
pub const HF_TOKEN_PATH_ENV: &str = "HF_TOKEN_PATH";
/// `HF_HOME`: huggingface_hub's home folder (the token file is `$HF_HOME/token`).
pub const HF_HOME_ENV: &str = "HF_HOME";
/// `XDG_CACHE_HOME`: `HF_HOME` defaults to `$XDG_CACHE_HOME/huggingface`.
pub const XDG_CACHE_HOME_ENV: &str = "XDG_CACHE_HOME";

/// A Hub access token. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token after cleaning it; `None` when nothing is left.
    pub fn new(value: &str) -> Option<Token> {
        clean(value).map(Token)
    }

    /// The secret itself, for the `Authorization` header only.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden token>")
    }
}

/// Where a token was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The `--token` flag (or another explicit value).
    Explicit,
    /// An environment variable (its name).
    Env(&'static str),
    /// A token file.
    File(PathBuf),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Explicit => f.write_str("--token"),
            TokenSource::Env(name) => f.write_str(name),
            TokenSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The values token resolution looks at; the caller reads the environment. Its `Debug` hides
/// the token values.
#[derive(Clone, Default)]
pub struct TokenInputs {
    /// `--token`.
    pub explicit: Option<String>,
    /// `HF_TOKEN`.
    pub hf_token: Option<String>,
    /// `HUGGING_FACE_HUB_TOKEN`.
    pub hugging_face_hub_token: Option<String>,
    /// `HF_TOKEN_PATH`.
    pub hf_token_path: Option<PathBuf>,
    /// `HF_HOME`.
    pub hf_home: Option<PathBuf>,
    /// `XDG_CACHE_HOME`.
    pub xdg_cache_home: Option<PathBuf>,
    /// The user's home folder.
    pub home: Option<PathBuf>,
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(<hidden>)"
        } else {
            "None"
        })
    }
}

/// Shows whether an optional secret is set, never its value.
struct Redacted<'a>(&'a Option<String>);

impl TokenInputs {
    /// The token file huggingface_hub would read: `HF_TOKEN_PATH`, else `$HF_HOME/token`, else
    /// `$XDG_CACHE_HOME/huggingface/token`, else `~/.cache/huggingface/token`. `None` without
    /// any of them.
    pub fn token_file(&self) -> Option<PathBuf> {
        let non_empty = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        if let Some(path) = non_empty(&self.hf_token_path) {
            return Some(path);
        }
        let hf_home = non_empty(&self.hf_home).or_else(|| {
            non_empty(&self.xdg_cache_home)
                .or_else(|| non_empty(&self.home).map(|h| h.join(".cache")))
                .map(|cache| cache.join("huggingface"))
        })?;
        Some(hf_home.join("token"))
    }
}

impl fmt::Debug for TokenInputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenInputs")
            .field("explicit", &Redacted(&self.explicit))
            .field("hf_token", &Redacted(&self.hf_token))
            .field(
                "hugging_face_hub_token",
                &Redacted(&self.hugging_face_hub_token),
            )
            .field("token_file", &self.token_file())
            .finish()
    }
}

/// Finds the token: explicit, else `HF_TOKEN`, else `HUGGING_FACE_HUB_TOKEN`, else the token
/// file (a missing file means no token; an unreadable one is an error). Returns `None` when
/// there is none.
pub fn resolve_token(inputs: &TokenInputs) -> Result<Option<(Token, TokenSource)>, HubError> {
    if let Some(token) = inputs.explicit.as_deref().and_then(Token::new) {
        return Ok(Some((token, TokenSource::Explicit)));
    }
    if let Some(token) = inputs.hf_token.as_deref().and_then(Token::new) {
        return Ok(Some((token, TokenSource::Env(HF_TOKEN_ENV))));
    }
    if let Some(token) = inputs
        .hugging_face_hub_token
        .as_deref()
        .and_then(Token::new)
    {
        return Ok(Some((token, TokenSource::Env(HUGGING_FACE_HUB_TOKEN_ENV))));
    }
    let Some(path) = inputs.token_file() else {
        return Ok(None);
    };
    match read_token_file(&path)? {
        Some(token) => Ok(Some((token, TokenSource::File(path)))),
        None => Ok(None),
    }
}

/// Like [`resolve_token`], but no token is an error ([`HubError::NoToken`]).
pub fn require_token(inputs: &TokenInputs) -> Result<(Token, TokenSource), HubError> {
    resolve_token(inputs)?.ok_or_else(|| HubError::NoToken {
        token_file: inputs.token_file().map_or_else(
            || "~/.cache/huggingface/token".to_owned(),
            |p| p.display().to_string(),
        ),
    })
}

fn read_token_file(path: &Path) -> Result<Option<Token>, HubError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Token::new(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HubError::TokenFile {
            path: path.to_owned(),
            source,
        }),
    }
}

/// huggingface_hub's `_clean_token`.
fn clean(value: &str) -> Option<String> {
    let cleaned = value.replace(['\r', '\n'], "");
    let cleaned = cleaned.trim();
    (!cleaned.is_empty()).then(|| cleaned.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn inputs(home: &Path) -> TokenInputs {
        TokenInputs {
            home: Some(home.to_owned()),
            ..TokenInputs::default()
        }
    }

    #[test]
    fn explicit_beats_env_beats_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".cache/huggingface/token");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "hf_file\n").unwrap();
        let mut i = inputs(dir.path());
        let (t, s) = resolve_token(&i).unwrap().unwrap();
        assert_eq!((t.secret(), s), ("hf_file", TokenSource::File(file)));
        i.hugging_face_hub_token = Some("hf_old".into());
        let (t, s) = resolve_token(&i).unwrap().unwrap();
        assert_eq!(
            (t.secret(), s),
            ("hf_old", TokenSource::Env(HUGGING_FACE_HUB_TOKEN_ENV))
        );
        i.hf_token = Some(" hf_env \r\n".into());
        let (t, s) = resolve_token(&i).unwrap().unwrap();
        assert_eq!((t.secret(), s), ("hf_env", TokenSource::Env(HF_TOKEN_ENV)));
        i.explicit = Some("hf_flag".into());
        let (t, s) = resolve_token(&i).unwrap().unwrap();
        assert_eq!((t.secret(), s), ("hf_flag", TokenSource::Explicit));
    }

    #[test]
    fn empty_values_count_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let mut i = inputs(dir.path());
        i.explicit = Some("  ".into());
        i.hf_token = Some("\n".into());
        assert!(resolve_token(&i).unwrap().is_none());
        let err = require_token(&i).unwrap_err();
        assert!(matches!(err, HubError::NoToken { .. }));
        assert!(err.to_string().contains(".cache/huggingface/token"));
    }

    #[test]
    fn token_file_location_follows_huggingface_hub() {
        let mut i = TokenInputs {
            home: Some("/home/u".into()),
            ..TokenInputs::default()
        };
        assert_eq!(
            i.token_file().unwrap(),
            Path::new("/home/u/.cache/huggingface/token")
        );
        i.xdg_cache_home = Some("/xdg".into());
        assert_eq!(i.token_file().unwrap(), Path::new("/xdg/huggingface/token"));
        i.hf_home = Some("/hf".into());
        assert_eq!(i.token_file().unwrap(), Path::new("/hf/token"));
        i.hf_token_path = Some("/elsewhere/t".into());
        assert_eq!(i.token_file().unwrap(), Path::new("/elsewhere/t"));
        assert_eq!(TokenInputs::default().token_file(), None);
    }

    #[test]
    fn unreadable_token_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let i = TokenInputs {
            // A directory cannot be read as a file.
            hf_token_path: Some(dir.path().to_owned()),
            ..TokenInputs::default()
        };
        assert!(matches!(resolve_token(&i), Err(HubError::TokenFile { .. })));
    }

    #[test]
    fn token_is_never_shown() {
        let t = Token::new("hf_secret").unwrap();
        assert!(!format!("{t:?} {t}").contains("hf_secret"));
        let i = TokenInputs {
            explicit: Some("hf_secret".into()),
            ..TokenInputs::default()
        };
        assert!(!format!("{i:?}").contains("hf_secret"));
    }
}
