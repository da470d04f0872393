//! Ollama server versions and the features that depend on them.
//!
//! `GET /api/version` answers `{"version": "0.12.3"}`; release candidates read `0.33.0-rc2` and
//! builds from source `0.0.0`. What changed, checked against Ollama's history
//! (`git show <tag>:<file>` on a mirror of `ollama/ollama`):
//!
//! * **0.5.5**: `/api/create` takes the JSON form with `files` (commit `86a622cbd`); older servers
//!   take `{"name", "modelfile"}` and answer the JSON form with an error.
//! * **0.22.0**: `quantize` accepts BF16 sources (the check in `server/create.go` reads "F16,
//!   BF16 and F32" from tag `v0.22.0-rc1` on; `v0.21.x` refuse with "quantization is only
//!   supported for F16 and F32 models"). There is no 0.25–0.29: 0.24.0 is followed by 0.30.0.
//! * **0.30.0**: every imported GGUF is rewritten by `llama-quantize … COPY` (status
//!   `validating GGUF model`), so the model layer gets another digest than the upload; and a
//!   model without a template renders the GGUF's `tokenizer.chat_template` (older servers fall
//!   back to `{{ .Prompt }}`).

use std::fmt;

/// The first version taking the JSON create body with `files` (needed by every deploy).
pub const MIN_JSON_CREATE: ServerVersion = ServerVersion::new(0, 5, 5);
/// The first version that quantizes BF16 sources.
pub const MIN_BF16_QUANTIZE: ServerVersion = ServerVersion::new(0, 22, 0);
/// The first version that rewrites uploaded GGUFs with `llama-quantize COPY` (and renders the
/// GGUF's own chat template when the model has none).
pub const COPY_REWRITE_SINCE: ServerVersion = ServerVersion::new(0, 30, 0);

/// A parsed `major.minor.patch[-pre]` server version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    /// Major.
    pub major: u64,
    /// Minor.
    pub minor: u64,
    /// Patch.
    pub patch: u64,
}

impl ServerVersion {
    /// A version from its three numbers.
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses what `/api/version` reports: an optional `v`, three dot-separated numbers, and an
    /// optional `-pre`/`+build` suffix that is ignored (a release candidate of 0.30.0 already
    /// carries 0.30.0's features). `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let core = text.split(['-', '+']).next().unwrap_or("");
        let mut it = core.split('.');
        let mut num = || -> Option<u64> {
            let part = it.next()?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let v = Self::new(num()?, num()?, num()?);
        if it.next().is_some() {
            return None;
        }
        Some(v)
    }

    /// `0.0.0`: what Ollama reports when built from source without a version; no feature check
    /// can be made against it.
    pub fn is_development(&self) -> bool {
        *self == Self::new(0, 0, 0)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_release_rc_and_dev_versions() {
        assert_eq!(
            ServerVersion::parse("0.12.3"),
            Some(ServerVersion::new(0, 12, 3))
        );
        assert_eq!(
            ServerVersion::parse("v0.33.0-rc2"),
            Some(ServerVersion::new(0, 33, 0))
        );
        assert!(ServerVersion::parse("0.0.0").is_some_and(|v| v.is_development()));
        assert_eq!(ServerVersion::parse("0.5"), None);
        assert_eq!(ServerVersion::parse("0.5.5.1"), None);
        assert_eq!(ServerVersion::parse("x.y.z"), None);
        assert!(ServerVersion::new(0, 5, 4) < MIN_JSON_CREATE);
        assert!(ServerVersion::new(0, 22, 0) >= MIN_BF16_QUANTIZE);
        assert!(ServerVersion::new(0, 21, 2) < MIN_BF16_QUANTIZE);
        assert!(ServerVersion::new(0, 24, 0) < COPY_REWRITE_SINCE);
    }
}
