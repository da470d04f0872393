//! `OLLAMA_HOST` parsing, following Ollama's own `envconfig.Host()`.
//!
//! Ollama (`envconfig/config.go`, `Host()`) reads `OLLAMA_HOST`, trims spaces and then quotes
//! (`"` and `'`), then spaces again, and:
//! * splits an optional `scheme://`; without one the scheme is `http` and the default port
//!   `11434`; with `http://` the default port is `80`, with `https://` it is `443`;
//! * cuts the first `/` off as a path prefix (a reverse proxy path such as `/ollama`);
//! * splits `host:port` like Go's `net.SplitHostPort`; when that fails the whole text is the host
//!   (an IP literal, bracketed or not, is normalised), an empty host becomes `127.0.0.1`;
//! * an unparsable or out-of-range port falls back to the default port;
//! * the bare value `ollama.com` means `https://ollama.com:443`.
//!
//! This crate reads no environment variable: the caller passes `OLLAMA_HOST`'s value to
//! [`OllamaHost::parse`]. Parsing never fails, exactly like Ollama; whether the result can be connected to is checked by
//! [`OllamaHost::url`].

use std::fmt;
use std::net::IpAddr;

use crate::error::ClientError;

/// Host used when `OLLAMA_HOST` is unset or names no host.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// Port used when `OLLAMA_HOST` has no scheme and no port.
pub const DEFAULT_PORT: u16 = 11434;

/// A parsed Ollama server address: scheme, host, port and an optional path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OllamaHost {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

impl Default for OllamaHost {
    fn default() -> Self {
        Self {
            scheme: "http".to_owned(),
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_PORT,
            path: String::new(),
        }
    }
}

impl OllamaHost {
    /// Parses a value the way Ollama parses `OLLAMA_HOST` (see the module docs). Never fails.
    pub fn parse(value: &str) -> Self {
        let value = clean_env_value(value);
        let value = value.trim();
        let (mut scheme, mut hostport, default_port) = match value.split_once("://") {
            None => ("http".to_owned(), value.to_owned(), DEFAULT_PORT),
            Some((scheme, rest)) => {
                let port = match scheme {
                    "http" => 80,
                    "https" => 443,
                    _ => DEFAULT_PORT,
                };
                (scheme.to_owned(), rest.to_owned(), port)
            }
        };
        if value == "ollama.com" {
            scheme = "https".to_owned();
            hostport = "ollama.com:443".to_owned();
        }
        let (hostport, path) = match hostport.split_once('/') {
            Some((hp, path)) => (hp.to_owned(), path.to_owned()),
            None => (hostport, String::new()),
        };
        let (host, port_text) = match split_host_port(&hostport) {
            Some((host, port)) => (host.to_owned(), port.to_owned()),
            None => {
                let trimmed = hostport.trim_matches(|c| c == '[' || c == ']');
                let host = if let Ok(ip) = trimmed.parse::<IpAddr>() {
                    canonical_ip(ip)
                } else if !hostport.is_empty() {
                    hostport.clone()
                } else {
                    DEFAULT_HOST.to_owned()
                };
                (host, String::new())
            }
        };
        // Go: strconv.ParseInt(port, 10, 32), rejected when negative or above 65535.
        let port = port_text
            .parse::<i64>()
            .ok()
            .and_then(|n| u16::try_from(n).ok())
            .unwrap_or(default_port);
        Self {
            scheme,
            host,
            port,
            path,
        }
    }

    /// The scheme (`http` unless the value named another one).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The host name or IP address (IPv6 without brackets; may be empty for `:port`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path prefix after the host (without the leading `/`), empty when none.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The base URL requests go to. Fails for schemes other than `http`/`https` and for hosts
    /// that do not form a URL. An empty host (`OLLAMA_HOST=:1234`) connects to `127.0.0.1`, as
    /// Go's dialer connects an empty host to the local system.
    pub fn url(&self) -> Result<reqwest::Url, ClientError> {
        let invalid = |reason: String| ClientError::InvalidHost {
            value: self.to_string(),
            reason,
        };
        if self.scheme != "http" && self.scheme != "https" {
            return Err(invalid(format!(
                "unsupported scheme {:?}; use http:// or https://",
                self.scheme
            )));
        }
        let host = if self.host.is_empty() {
            DEFAULT_HOST
        } else {
            &self.host
        };
        let mut text = format!("{}://{}/", self.scheme, join_host_port(host, self.port));
        if !self.path.is_empty() {
            text.push_str(self.path.trim_end_matches('/'));
            text.push('/');
        }
        let url = reqwest::Url::parse(&text).map_err(|e| invalid(e.to_string()))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host".to_owned()));
        }
        Ok(url)
    }
}

impl fmt::Display for OllamaHost {
    /// Ollama's own rendering: `scheme://host:port[/path]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}",
            self.scheme,
            join_host_port(&self.host, self.port)
        )?;
        if !self.path.is_empty() {
            write!(f, "/{}", self.path)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for OllamaHost {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(s))
    }
}

/// Ollama's `envconfig.Var`: trim spaces, then surrounding quotes.
fn clean_env_value(value: &str) -> &str {
    value.trim().trim_matches(|c| c == '"' || c == '\'')
}

/// Go's `net.JoinHostPort`: brackets around hosts containing `:`.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Go's `net.IP.String()`: IPv4-mapped IPv6 addresses print as IPv4.
fn canonical_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// Go's `net.SplitHostPort`: `None` where Go returns an error.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    let colon = s.rfind(':')?;
    let host = if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']')? + 1;
        // The closing bracket must be followed directly by the last colon.
        if close + 1 != colon {
            return None;
        }
        let host = s.get(1..close)?;
        if host.contains('[') || host.contains(']') {
            return None;
        }
        host
    } else {
        let host = s.get(..colon)?;
        if host.contains(':') || host.contains('[') || host.contains(']') {
            return None;
        }
        host
    };
    let port = s.get(colon + 1..)?;
    if port.contains('[') || port.contains(']') {
        return None;
    }
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_split_host_port_rules() {
        assert_eq!(split_host_port("a:1"), Some(("a", "1")));
        assert_eq!(split_host_port("[::1]:2"), Some(("::1", "2")));
        assert_eq!(split_host_port(":3"), Some(("", "3")));
        assert_eq!(split_host_port("a:"), Some(("a", "")));
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("[::1]"), None);
        assert_eq!(split_host_port("a"), None);
    }
}
