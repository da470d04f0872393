//! Reading the JSON files a training run leaves, with errors that name the file and field.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::CardError;

/// A JSON object read from `path`, with typed getters that report wrong types as errors.
pub(crate) struct JsonFile {
    pub(crate) path: PathBuf,
    pub(crate) obj: Map<String, Value>,
}

/// Reads `path` as a JSON object. `Ok(None)` when the file does not exist.
///
/// Python's `json` module writes `NaN`, `Infinity` and `-Infinity` (a diverged loss, say); those
/// tokens are read as `null` when `lenient_numbers` is set.
pub(crate) fn read_optional(
    path: &Path,
    lenient_numbers: bool,
) -> Result<Option<JsonFile>, CardError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CardError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let text = if lenient_numbers {
        non_finite_to_null(&text)
    } else {
        text
    };
    let value: Value = serde_json::from_str(&text).map_err(|source| CardError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    match value {
        Value::Object(obj) => Ok(Some(JsonFile {
            path: path.to_path_buf(),
            obj,
        })),
        _ => Err(CardError::NotAnObject {
            path: path.to_path_buf(),
        }),
    }
}

/// Reads `path` as a JSON object; a missing file is an error.
pub(crate) fn read_required(path: &Path) -> Result<JsonFile, CardError> {
    read_optional(path, false)?.ok_or_else(|| CardError::MissingFile {
        path: path.to_path_buf(),
    })
}

/// Replaces the bare tokens `NaN`, `Infinity`, `-Infinity` outside strings with `null`.
fn non_finite_to_null(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut in_string = false;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if c == '\\' {
                let mut it = rest.chars();
                let escaped: String = it.by_ref().take(2).collect();
                out.push_str(&escaped);
                rest = it.as_str();
                continue;
            }
            if c == '"' {
                in_string = false;
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
        } else {
            let token = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|t| rest.starts_with(t));
            if let Some(token) = token {
                out.push_str("null");
                rest = &rest[token.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

pub(crate) fn describe(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 60 {
        let mut cut = 57;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Typed access to the fields of one JSON object, naming `path` and the field in errors.
pub(crate) struct Fields<'a> {
    pub(crate) path: &'a Path,
    pub(crate) obj: &'a Map<String, Value>,
    /// Prefix for field names in errors (`"log_history[3]."`).
    pub(crate) prefix: String,
}

impl<'a> Fields<'a> {
    pub(crate) fn of(file: &'a JsonFile) -> Fields<'a> {
        Fields {
            path: &file.path,
            obj: &file.obj,
            prefix: String::new(),
        }
    }

    pub(crate) fn nested(&self, obj: &'a Map<String, Value>, prefix: String) -> Fields<'a> {
        Fields {
            path: self.path,
            obj,
            prefix,
        }
    }

    pub(crate) fn bad(&self, field: &str, expected: &'static str, found: &Value) -> CardError {
        CardError::BadField {
            path: self.path.to_path_buf(),
            field: format!("{}{}", self.prefix, field),
            expected,
            found: describe(found),
        }
    }

    /// The value of `key`, `None` when absent or `null`.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn u64(&self, key: &str) -> Result<Option<u64>, CardError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| {
                    // Python writes integral floats for some counters (`"num_train_epochs": 3.0`).
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15)
                        .map(|f| f as u64)
                })
                .map(Some)
                .ok_or_else(|| self.bad(key, "a non-negative integer", v)),
        }
    }

    pub(crate) fn i64(&self, key: &str) -> Result<Option<i64>, CardError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.bad(key, "an integer", v)),
        }
    }

    pub(crate) fn f64(&self, key: &str) -> Result<Option<f64>, CardError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(key, "a number", v)),
        }
    }

    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, CardError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.bad(key, "true or false", v)),
        }
    }

    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, CardError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| self.bad(key, "a string", v)),
        }
    }

    /// A list of strings; a single string is read as a one-element list.
    pub(crate) fn strings(&self, key: &str) -> Result<Vec<String>, CardError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| self.bad(key, "a list of strings", v))
                })
                .collect(),
            Some(v) => Err(self.bad(key, "a list of strings", v)),
        }
    }

    pub(crate) fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, CardError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(v) => Err(self.bad(key, "an object", v)),
        }
    }

    pub(crate) fn array(&self, key: &str) -> Result<&'a [Value], CardError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(v) => Err(self.bad(key, "a list", v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::non_finite_to_null;

    #[test]
    fn non_finite_tokens_become_null_outside_strings() {
        assert_eq!(
            non_finite_to_null(
                r#"{"loss": NaN, "x": -Infinity, "y": [Infinity], "s": "NaN \" Infinity"}"#
            ),
            r#"{"loss": null, "x": null, "y": [null], "s": "NaN \" Infinity"}"#
        );
    }
}
