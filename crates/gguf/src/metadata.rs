//! GGUF metadata values (`gguf_metadata_value_type`) and the ordered key-value map of a file.

use std::fmt;

/// The type tag of a GGUF metadata value, numbered as in `gguf.h` (`enum gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MetadataValueType {
    /// `u8`
    U8 = 0,
    /// `i8`
    I8 = 1,
    /// `u16`
    U16 = 2,
    /// `i16`
    I16 = 3,
    /// `u32`
    U32 = 4,
    /// `i32`
    I32 = 5,
    /// `f32`
    F32 = 6,
    /// `bool`, one byte, 0 or 1.
    Bool = 7,
    /// A string: `u64` byte length and UTF-8 bytes, no NUL.
    String = 8,
    /// An array: `u32` element type, `u64` count, elements.
    Array = 9,
    /// `u64`
    U64 = 10,
    /// `i64`
    I64 = 11,
    /// `f64`
    F64 = 12,
}

impl MetadataValueType {
    /// The type for an on-disk id, or `None` for an unknown id.
    pub fn from_id(id: u32) -> Option<Self> {
        use MetadataValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The on-disk id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// The name gguf tools print (`u8`, `str`, `arr` …, as `gguf_type_name`).
    pub fn name(self) -> &'static str {
        use MetadataValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "str",
            Array => "arr",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// Bytes of one value of a fixed-size type; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        use MetadataValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }
}

impl fmt::Display for MetadataValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One GGUF metadata value.
///
/// Floats compare by value (`NaN != NaN`); use [`MetadataValue::bitwise_eq`] to compare exactly.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    /// `u8`
    U8(u8),
    /// `i8`
    I8(i8),
    /// `u16`
    U16(u16),
    /// `i16`
    I16(i16),
    /// `u32`
    U32(u32),
    /// `i32`
    I32(i32),
    /// `f32`
    F32(f32),
    /// `bool`
    Bool(bool),
    /// UTF-8 string.
    String(String),
    /// A typed array (possibly of arrays).
    Array(MetadataArray),
    /// `u64`
    U64(u64),
    /// `i64`
    I64(i64),
    /// `f64`
    F64(f64),
}

/// A GGUF array: every element has the same type. Arrays of arrays hold inner arrays that each
/// carry their own element type, as GGUF encodes them.
///
/// Note that ggml's own reader (and so llama.cpp) rejects nested arrays; gguf-py accepts them.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataArray {
    /// `u8[]`
    U8(Vec<u8>),
    /// `i8[]`
    I8(Vec<i8>),
    /// `u16[]`
    U16(Vec<u16>),
    /// `i16[]`
    I16(Vec<i16>),
    /// `u32[]`
    U32(Vec<u32>),
    /// `i32[]`
    I32(Vec<i32>),
    /// `f32[]`
    F32(Vec<f32>),
    /// `bool[]`
    Bool(Vec<bool>),
    /// `str[]`
    String(Vec<String>),
    /// `arr[]`: each element an array with its own element type.
    Array(Vec<MetadataArray>),
    /// `u64[]`
    U64(Vec<u64>),
    /// `i64[]`
    I64(Vec<i64>),
    /// `f64[]`
    F64(Vec<f64>),
}

impl MetadataArray {
    /// The element type.
    pub fn element_type(&self) -> MetadataValueType {
        use MetadataArray as A;
        use MetadataValueType as T;
        match self {
            A::U8(_) => T::U8,
            A::I8(_) => T::I8,
            A::U16(_) => T::U16,
            A::I16(_) => T::I16,
            A::U32(_) => T::U32,
            A::I32(_) => T::I32,
            A::F32(_) => T::F32,
            A::Bool(_) => T::Bool,
            A::String(_) => T::String,
            A::Array(_) => T::Array,
            A::U64(_) => T::U64,
            A::I64(_) => T::I64,
            A::F64(_) => T::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        use MetadataArray as A;
        match self {
            A::U8(v) => v.len(),
            A::I8(v) => v.len(),
            A::U16(v) => v.len(),
            A::I16(v) => v.len(),
            A::U32(v) => v.len(),
            A::I32(v) => v.len(),
            A::F32(v) => v.len(),
            A::Bool(v) => v.len(),
            A::String(v) => v.len(),
            A::Array(v) => v.len(),
            A::U64(v) => v.len(),
            A::I64(v) => v.len(),
            A::F64(v) => v.len(),
        }
    }

    /// True when the array has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a scalar value (an inner array for arrays of arrays).
    pub fn get(&self, i: usize) -> Option<MetadataValue> {
        use MetadataArray as A;
        use MetadataValue as V;
        Some(match self {
            A::U8(v) => V::U8(*v.get(i)?),
            A::I8(v) => V::I8(*v.get(i)?),
            A::U16(v) => V::U16(*v.get(i)?),
            A::I16(v) => V::I16(*v.get(i)?),
            A::U32(v) => V::U32(*v.get(i)?),
            A::I32(v) => V::I32(*v.get(i)?),
            A::F32(v) => V::F32(*v.get(i)?),
            A::Bool(v) => V::Bool(*v.get(i)?),
            A::String(v) => V::String(v.get(i)?.clone()),
            A::Array(v) => V::Array(v.get(i)?.clone()),
            A::U64(v) => V::U64(*v.get(i)?),
            A::I64(v) => V::I64(*v.get(i)?),
            A::F64(v) => V::F64(*v.get(i)?),
        })
    }

    /// Exact equality, comparing floats by their bits.
    pub fn bitwise_eq(&self, other: &MetadataArray) -> bool {
        use MetadataArray as A;
        match (self, other) {
            (A::F32(a), A::F32(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (A::F64(a), A::F64(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (A::Array(a), A::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.bitwise_eq(y))
            }
            _ => self == other,
        }
    }
}

impl MetadataValue {
    /// The value's type tag.
    pub fn value_type(&self) -> MetadataValueType {
        use MetadataValue as V;
        use MetadataValueType as T;
        match self {
            V::U8(_) => T::U8,
            V::I8(_) => T::I8,
            V::U16(_) => T::U16,
            V::I16(_) => T::I16,
            V::U32(_) => T::U32,
            V::I32(_) => T::I32,
            V::F32(_) => T::F32,
            V::Bool(_) => T::Bool,
            V::String(_) => T::String,
            V::Array(_) => T::Array,
            V::U64(_) => T::U64,
            V::I64(_) => T::I64,
            V::F64(_) => T::F64,
        }
    }

    /// Exact equality, comparing floats by their bits.
    pub fn bitwise_eq(&self, other: &MetadataValue) -> bool {
        use MetadataValue as V;
        match (self, other) {
            (V::F32(a), V::F32(b)) => a.to_bits() == b.to_bits(),
            (V::F64(a), V::F64(b)) => a.to_bits() == b.to_bits(),
            (V::Array(a), V::Array(b)) => a.bitwise_eq(b),
            _ => self == other,
        }
    }

    /// The string, if this is a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetadataValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array, if this is an array value.
    pub fn as_array(&self) -> Option<&MetadataArray> {
        match self {
            MetadataValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The value as an unsigned integer, if it is an integer of any width that fits.
    pub fn as_u64(&self) -> Option<u64> {
        use MetadataValue as V;
        match *self {
            V::U8(v) => Some(v.into()),
            V::U16(v) => Some(v.into()),
            V::U32(v) => Some(v.into()),
            V::U64(v) => Some(v),
            V::I8(v) => u64::try_from(v).ok(),
            V::I16(v) => u64::try_from(v).ok(),
            V::I32(v) => u64::try_from(v).ok(),
            V::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is `f32` or `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetadataValue::F32(v) => Some(v.into()),
            MetadataValue::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a bool, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetadataValue::Bool(v) => Some(v),
            _ => None,
        }
    }
}

macro_rules! from_scalar {
    ($($t:ty => $v:ident),* $(,)?) => {
        $(
            impl From<$t> for MetadataValue {
                fn from(v: $t) -> Self {
                    MetadataValue::$v(v)
                }
            }
            impl From<Vec<$t>> for MetadataArray {
                fn from(v: Vec<$t>) -> Self {
                    MetadataArray::$v(v)
                }
            }
            impl From<Vec<$t>> for MetadataValue {
                fn from(v: Vec<$t>) -> Self {
                    MetadataValue::Array(MetadataArray::$v(v))
                }
            }
        )*
    };
}

from_scalar!(
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, u64 => U64, i64 => I64, f64 => F64,
);

impl From<&str> for MetadataValue {
    fn from(v: &str) -> Self {
        MetadataValue::String(v.to_owned())
    }
}

impl From<Vec<&str>> for MetadataValue {
    fn from(v: Vec<&str>) -> Self {
        MetadataValue::Array(MetadataArray::String(
            v.into_iter().map(str::to_owned).collect(),
        ))
    }
}

impl From<MetadataArray> for MetadataValue {
    fn from(v: MetadataArray) -> Self {
        MetadataValue::Array(v)
    }
}

impl From<Vec<MetadataArray>> for MetadataValue {
    fn from(v: Vec<MetadataArray>) -> Self {
        MetadataValue::Array(MetadataArray::Array(v))
    }
}

/// The metadata of a GGUF file: key-value pairs in file order, keys unique.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, MetadataValue)>,
}

impl Metadata {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`: replaces the value in place when the key exists (keeping its
    /// position), appends otherwise. Returns the previous value.
    pub fn set(
        &mut self,
        key: impl Into<String>,
        value: impl Into<MetadataValue>,
    ) -> Option<MetadataValue> {
        let key = key.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<MetadataValue> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// True when `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Key-value pairs in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &MetadataValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Keys in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no pair.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Exact equality (same keys in the same order, floats compared by bits).
    pub fn bitwise_eq(&self, other: &Metadata) -> bool {
        self.len() == other.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|((ka, va), (kb, vb))| ka == kb && va.bitwise_eq(vb))
    }

    /// Appends without checking for an existing key (the reader checks duplicates itself).
    pub(crate) fn push_unchecked(&mut self, key: String, value: MetadataValue) {
        self.entries.push((key, value));
    }
}

impl<K: Into<String>, V: Into<MetadataValue>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = Metadata::new();
        m.extend(iter);
        m
    }
}

/// Sets each pair in turn, as [`Metadata::set`] does: a key already present keeps its position
/// and takes the new value.
impl<K: Into<String>, V: Into<MetadataValue>> Extend<(K, V)> for Metadata {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.set(k, v);
        }
    }
}

/// The key-value pairs in order, by value.
impl IntoIterator for Metadata {
    type Item = (String, MetadataValue);
    type IntoIter = std::vec::IntoIter<(String, MetadataValue)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keeps_position_and_remove_deletes() {
        let mut m = Metadata::new();
        m.set("a", 1u32);
        m.set("b", "x");
        assert_eq!(m.set("a", 2u32), Some(MetadataValue::U32(1)));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(m.remove("a"), Some(MetadataValue::U32(2)));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(m.get("b").and_then(MetadataValue::as_str), Some("x"));
    }

    #[test]
    fn extend_overwrites_in_place_and_appends_new_keys() {
        let mut m: Metadata = [("a", 1u32), ("b", 2u32)].into_iter().collect();
        let other: Metadata = [("c", 3u32), ("a", 4u32)].into_iter().collect();
        m.extend(other);
        let pairs: Vec<_> = m.into_iter().collect();
        assert_eq!(
            pairs,
            [
                ("a".to_string(), MetadataValue::U32(4)),
                ("b".to_string(), MetadataValue::U32(2)),
                ("c".to_string(), MetadataValue::U32(3)),
            ]
        );
    }

    #[test]
    fn type_ids_follow_gguf_h() {
        for id in 0..13 {
            assert_eq!(MetadataValueType::from_id(id).map(|t| t.id()), Some(id));
        }
        assert_eq!(MetadataValueType::from_id(13), None);
        assert_eq!(MetadataValueType::String.id(), 8);
        assert_eq!(MetadataValueType::F64.id(), 12);
    }
}
