//! Ollama model names, validated as Ollama validates them (`types/model/name.go`).
//!
//! A name is `[host/][namespace/]model[:tag]`; missing parts default to `registry.ollama.ai`,
//! `library` and `latest`. The tag is split at the last `:` only when it comes after the last
//! `/`, then the model is the last `/` segment, the namespace the one before, and the host the
//! rest with any `scheme://` stripped. Every part must start with `[A-Za-z0-9_]`, continue with
//! alphanumerics, `_` or `-`, plus `.` except in the namespace and `:` only in the host; the host
//! is 1–350 bytes, the other parts 1–80. There is no `@digest` syntax (`ParseNameBare` at
//! v0.33 has none): `@` is an invalid character like any other. `/api/create` rejects any name that fails these rules with `400 invalid model name`.

use std::fmt;

/// Ollama's default registry host.
pub const DEFAULT_NAME_HOST: &str = "registry.ollama.ai";
/// Ollama's default namespace.
pub const DEFAULT_NAMESPACE: &str = "library";
/// Ollama's default tag.
pub const DEFAULT_TAG: &str = "latest";

/// Which part of a model name an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePart {
    /// The registry host (`registry.ollama.ai`).
    Host,
    /// The namespace (`library`).
    Namespace,
    /// The model itself.
    Model,
    /// The tag (`latest`).
    Tag,
}

impl NamePart {
    fn max_len(self) -> usize {
        match self {
            NamePart::Host => 350,
            _ => 80,
        }
    }
}

impl fmt::Display for NamePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NamePart::Host => "host",
            NamePart::Namespace => "namespace",
            NamePart::Model => "model",
            NamePart::Tag => "tag",
        })
    }
}

/// Why Ollama would reject a model name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A separator (`/` or `:`) promised a part that is empty, or the name is empty.
    #[error("invalid Ollama model name {name:?}: the {part} is empty")]
    EmptyPart {
        /// The whole name.
        name: String,
        /// The empty part.
        part: NamePart,
    },
    /// A part is longer than Ollama allows.
    #[error("invalid Ollama model name {name:?}: the {part} is {len} bytes long, at most {max} are allowed")]
    TooLong {
        /// The whole name.
        name: String,
        /// The offending part.
        part: NamePart,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A part contains a character Ollama does not accept there.
    #[error("invalid Ollama model name {name:?}: the {part} {value:?} may not contain {ch:?} at byte {at} (allowed: letters, digits, '_', '-'{extra}; the first character must be a letter, digit or '_')")]
    InvalidChar {
        /// The whole name.
        name: String,
        /// The offending part.
        part: NamePart,
        /// The part's text.
        value: String,
        /// The rejected character.
        ch: char,
        /// Its byte offset in the part.
        at: usize,
        /// Extra characters allowed in that part, for the message.
        extra: &'static str,
    },
}

/// A parsed Ollama model name with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelName {
    /// Registry host.
    pub host: String,
    /// Namespace.
    pub namespace: String,
    /// Model.
    pub model: String,
    /// Tag.
    pub tag: String,
}

impl ModelName {
    /// Parses and validates `name` exactly as Ollama's `ParseName(name).IsValid()` does.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let bare = parse_bare(name);
        let parts = [
            (NamePart::Host, bare.host, DEFAULT_NAME_HOST),
            (NamePart::Namespace, bare.namespace, DEFAULT_NAMESPACE),
            (NamePart::Model, bare.model, ""),
            (NamePart::Tag, bare.tag, DEFAULT_TAG),
        ];
        let mut out = Vec::with_capacity(4);
        for (part, value, default) in parts {
            let value = match value {
                Slot::Absent => default,
                Slot::Missing => "",
                Slot::Present(v) => v,
            };
            check_part(name, part, value)?;
            out.push(value.to_owned());
        }
        let mut it = out.into_iter();
        let mut next = || it.next().unwrap_or_default();
        Ok(Self {
            host: next(),
            namespace: next(),
            model: next(),
            tag: next(),
        })
    }

    /// The shortest display form Ollama uses (`model:tag`, with namespace/host when not default).
    pub fn display_shortest(&self) -> String {
        if !self.host.eq_ignore_ascii_case(DEFAULT_NAME_HOST) {
            format!(
                "{}/{}/{}:{}",
                self.host, self.namespace, self.model, self.tag
            )
        } else if !self.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE) {
            format!("{}/{}:{}", self.namespace, self.model, self.tag)
        } else {
            format!("{}:{}", self.model, self.tag)
        }
    }

    /// Case-insensitive equality, as Ollama matches names.
    pub fn eq_fold(&self, other: &ModelName) -> bool {
        self.host.eq_ignore_ascii_case(&other.host)
            && self.namespace.eq_ignore_ascii_case(&other.namespace)
            && self.model.eq_ignore_ascii_case(&other.model)
            && self.tag.eq_ignore_ascii_case(&other.tag)
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}:{}",
            self.host, self.namespace, self.model, self.tag
        )
    }
}

/// Checks a model name the way Ollama's `/api/create` does, before anything is uploaded.
pub fn validate_model_name(name: &str) -> Result<ModelName, NameError> {
    ModelName::parse(name)
}

enum Slot<'a> {
    Absent,
    Missing,
    Present(&'a str),
}

struct Bare<'a> {
    host: Slot<'a>,
    namespace: Slot<'a>,
    model: Slot<'a>,
    tag: Slot<'a>,
}

/// Ollama's `ParseNameBare`.
fn parse_bare(name: &str) -> Bare<'_> {
    let mut s = name;
    let mut bare = Bare {
        host: Slot::Absent,
        namespace: Slot::Absent,
        model: Slot::Absent,
        tag: Slot::Absent,
    };
    let last_colon = s.rfind(':');
    let last_slash = s.rfind('/');
    if last_colon.is_some() && last_colon > last_slash {
        let (before, after) = cut_promised(s, ':');
        bare.tag = after;
        s = match before {
            Slot::Present(b) => b,
            _ => "",
        };
        if matches!(before, Slot::Missing) {
            bare.model = Slot::Missing;
            return bare;
        }
    }
    let Some(slash) = s.rfind('/') else {
        bare.model = present(s);
        return bare;
    };
    bare.model = present(&s[slash + 1..]);
    let rest = &s[..slash];
    if rest.is_empty() {
        bare.namespace = Slot::Missing;
        return bare;
    }
    let Some(slash) = rest.rfind('/') else {
        bare.namespace = present(rest);
        return bare;
    };
    bare.namespace = present(&rest[slash + 1..]);
    let host = &rest[..slash];
    let host = match host.split_once("://") {
        Some((_, h)) => h,
        None => host,
    };
    bare.host = present(host);
    bare
}

fn present(s: &str) -> Slot<'_> {
    if s.is_empty() {
        Slot::Missing
    } else {
        Slot::Present(s)
    }
}

fn cut_promised(s: &str, sep: char) -> (Slot<'_>, Slot<'_>) {
    match s.rfind(sep) {
        Some(i) => (present(&s[..i]), present(&s[i + sep.len_utf8()..])),
        None => (present(s), Slot::Absent),
    }
}

fn check_part(name: &str, part: NamePart, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::EmptyPart {
            name: name.to_owned(),
            part,
        });
    }
    if value.len() > part.max_len() {
        return Err(NameError::TooLong {
            name: name.to_owned(),
            part,
            len: value.len(),
            max: part.max_len(),
        });
    }
    for (at, ch) in value.char_indices() {
        let ok = if at == 0 {
            ch.is_ascii_alphanumeric() || ch == '_'
        } else {
            match ch {
                '_' | '-' => true,
                '.' => part != NamePart::Namespace,
                ':' => part == NamePart::Host,
                c => c.is_ascii_alphanumeric(),
            }
        };
        if !ok {
            return Err(NameError::InvalidChar {
                name: name.to_owned(),
                part,
                value: value.to_owned(),
                ch,
                at,
                extra: match part {
                    NamePart::Host => ", '.', ':'",
                    NamePart::Namespace => "",
                    _ => ", '.'",
                },
            });
        }
    }
    Ok(())
}
