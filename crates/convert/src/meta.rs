//! Metadata values as the converter produces them, in the exact GGUF value types
//! `convert_hf_to_gguf.py` uses for each key.

/// One GGUF metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `UINT32`.
    U32(u32),
    /// `INT32`.
    I32(i32),
    /// `FLOAT32`.
    F32(f32),
    /// `BOOL`.
    Bool(bool),
    /// `STRING`.
    Str(String),
    /// `ARRAY` of `STRING`.
    StrArray(Vec<String>),
    /// `ARRAY` of `INT32`.
    I32Array(Vec<i32>),
    /// `ARRAY` of `FLOAT32`.
    F32Array(Vec<f32>),
}

/// Ordered key/value list; keys are unique (a duplicate replaces nothing and is a bug upstream).
#[derive(Debug, Default, Clone)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
}

impl Metadata {
    /// Appends `key = value`; a key set twice keeps its first value (the reference raises on
    /// duplicates, we never produce them).
    pub fn push(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        if self.entries.iter().any(|(k, _)| *k == key) {
            return;
        }
        self.entries.push((key, value));
    }

    /// All entries in insertion order.
    pub fn entries(&self) -> &[(String, Value)] {
        &self.entries
    }

    pub(crate) fn extend(&mut self, other: Metadata) {
        for (k, v) in other.entries {
            self.push(k, v);
        }
    }
}
