//! The Hub's address (`HF_ENDPOINT`), repository ids and paths inside a repository.

use std::fmt;
use std::net::IpAddr;

use crate::HubError;

/// `HF_ENDPOINT`: the Hub's base URL.
pub const HF_ENDPOINT_ENV: &str = "HF_ENDPOINT";
/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A Hub base URL: `scheme://host[:port][/prefix]`, without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: reqwest::Url,
    text: String,
}

impl Endpoint {
    /// Parses `HF_ENDPOINT` (huggingface_hub strips trailing `/`). Only http and https.
    pub fn parse(value: &str) -> Result<Endpoint, HubError> {
        let text = value.trim().trim_end_matches('/').to_owned();
        let fail = |reason| HubError::InvalidEndpoint {
            value: value.to_owned(),
            reason,
        };
        let url = reqwest::Url::parse(&text).map_err(|_| fail("not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fail("the scheme must be http or https"));
        }
        if url.host_str().unwrap_or("").is_empty() {
            return Err(fail("it names no host"));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(fail("it must not carry a query, a fragment or credentials"));
        }
        Ok(Endpoint { url, text })
    }

    /// The public Hub, `https://huggingface.co`.
    pub fn public() -> Endpoint {
        Endpoint::parse(DEFAULT_ENDPOINT).unwrap_or_else(|_| unreachable!("constant URL"))
    }

    /// True when the host is this machine (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn is_loopback(&self) -> bool {
        is_loopback_url(&self.url)
    }

    /// True when a token may be sent here: https, or plain http to this machine.
    pub fn may_carry_token(&self) -> bool {
        self.url.scheme() == "https" || self.is_loopback()
    }

    /// `endpoint + "/" + path` (path without a leading `/`).
    pub(crate) fn join(&self, path: &str) -> String {
        format!("{}/{}", self.text, path)
    }

    /// True when `url` has this endpoint's scheme, host and port: the only URLs that may
    /// receive the token.
    pub(crate) fn same_origin(&self, url: &str) -> bool {
        match reqwest::Url::parse(url) {
            Ok(u) => u.origin() == self.url.origin(),
            Err(_) => false,
        }
    }

    /// `scheme://host:port` of any URL, for messages (never the path or query of a pre-signed
    /// URL).
    pub(crate) fn origin_of(url: &str) -> String {
        match reqwest::Url::parse(url) {
            Ok(u) => u.origin().ascii_serialization(),
            Err(_) => "(invalid URL)".to_owned(),
        }
    }

    /// The endpoint as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn is_loopback_url(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A model repository id, `owner/name`, checked with huggingface_hub's `validate_repo_id` rules
/// (letters, digits, `-`, `_`, `.`; no `--` or `..`; not starting or ending with `-` or `.`;
/// at most 96 characters; not ending in `.git`). The owner is required: loraforge never guesses
/// the namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoId {
    owner: String,
    name: String,
}

impl RepoId {
    /// Parses `owner/name`.
    pub fn parse(value: &str) -> Result<RepoId, HubError> {
        let fail = |reason| HubError::InvalidRepoId {
            repo_id: value.to_owned(),
            reason,
        };
        let (owner, name) = value
            .split_once('/')
            .ok_or_else(|| fail("expected owner/name"))?;
        if name.contains('/') {
            return Err(fail("expected exactly one `/` (owner/name)"));
        }
        for part in [owner, name] {
            if part.is_empty() || part.len() > 96 {
                return Err(fail("each part must have 1 to 96 characters"));
            }
            if !part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(fail("use only letters, digits, `-`, `_` and `.`"));
            }
            if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
                return Err(fail("a part cannot start or end with `-` or `.`"));
            }
        }
        if value.contains("--") || value.contains("..") {
            return Err(fail("`--` and `..` are not allowed"));
        }
        if name.ends_with(".git") {
            return Err(fail("the name cannot end with `.git`"));
        }
        Ok(RepoId {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The user or organization.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The repository name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

impl std::str::FromStr for RepoId {
    type Err = HubError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RepoId::parse(s)
    }
}

/// Checks a path inside the repository the way huggingface_hub's `_validate_path_in_repo` does
/// (no leading `/`, no `.`/`..` components, nothing under `.git/`), and returns it.
pub fn validate_path_in_repo(path: &str) -> Result<&str, HubError> {
    let fail = |reason| HubError::InvalidPathInRepo {
        path: path.to_owned(),
        reason,
    };
    if path.is_empty() {
        return Err(fail("it is empty"));
    }
    if path.starts_with('/') || path.contains('\\') {
        return Err(fail("use a relative, `/`-separated path"));
    }
    for part in path.split('/') {
        match part {
            "" => return Err(fail("it has an empty component")),
            "." | ".." => return Err(fail("`.` and `..` components are not allowed")),
            ".git" | ".cache" => {
                return Err(fail("files under .git/ or .cache/ cannot be uploaded"))
            }
            _ => {}
        }
    }
    Ok(path)
}

/// Percent-encodes a revision for a URL path segment, like huggingface_hub's
/// `quote(revision, safe="")` (a branch `refs/pr/1` becomes `refs%2Fpr%2F1`).
pub(crate) fn quote_revision(revision: &str) -> String {
    const SAFE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(revision, SAFE).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_follow_huggingface_hub() {
        for ok in ["me/model", "Org-1/my_model.v2", "a/b"] {
            assert_eq!(RepoId::parse(ok).unwrap().to_string(), ok);
        }
        for bad in [
            "model",
            "a/b/c",
            "/model",
            "me/",
            "me/my model",
            "me/-x",
            "me/x.",
            "me/a--b",
            "me/a..b",
            "me/x.git",
            "me/é",
        ] {
            assert!(
                matches!(RepoId::parse(bad), Err(HubError::InvalidRepoId { .. })),
                "{bad}"
            );
        }
        let long = format!("me/{}", "x".repeat(97));
        assert!(RepoId::parse(&long).is_err());
    }

    #[test]
    fn endpoints_and_token_safety() {
        let e = Endpoint::parse("https://huggingface.co/").unwrap();
        assert_eq!(e.as_str(), "https://huggingface.co");
        assert!(e.may_carry_token());
        assert!(e.same_origin("https://huggingface.co/api/x"));
        assert!(!e.same_origin("https://cdn-lfs.huggingface.co/x"));
        assert!(!e.same_origin("http://huggingface.co/x"));
        for local in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
        ] {
            assert!(Endpoint::parse(local).unwrap().may_carry_token(), "{local}");
        }
        assert!(!Endpoint::parse("http://hub.example.com")
            .unwrap()
            .may_carry_token());
        for bad in ["ftp://x", "huggingface.co", "https://", "https://u:p@h"] {
            assert!(
                matches!(Endpoint::parse(bad), Err(HubError::InvalidEndpoint { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn paths_in_repo() {
        assert!(validate_path_in_repo("a/b.gguf").is_ok());
        for bad in ["", "/a", "a//b", "../a", "a/./b", ".git/config", "a\\b"] {
            assert!(validate_path_in_repo(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn revisions_are_quoted_whole() {
        assert_eq!(quote_revision("main"), "main");
        assert_eq!(quote_revision("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(quote_revision("v1.0 rc"), "v1.0%20rc");
    }
}
