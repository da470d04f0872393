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

/// Ordered key/value list with unique keys, like gguf-py's `GGUFWriter.kv_data`.
#[derive(Debug, Default, Clone)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
}

impl Metadata {
    /// Appends `key = value`; a key set twice keeps its first position and takes the new value
    /// (gguf-py's `add_key_value` warns "Duplicated key name" and overwrites; Gemma's second
    /// special vocabulary writes `add_bos_token` again, for instance).
    pub fn push(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        if let Some(e) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            e.1 = value;
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
