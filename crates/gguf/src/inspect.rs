//! `loraforge inspect`: a serializable summary of a GGUF file (metadata with long arrays
//! shortened, tensor table) and its text rendering.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::metadata::{MetadataArray, MetadataValue};
use crate::reader::GgufFile;

/// How much of the metadata [`inspect`] keeps.
#[derive(Debug, Clone)]
pub struct InspectOptions {
    /// Arrays longer than this show only their first `max_array_items` elements.
    pub max_array_items: usize,
    /// Strings longer than this many characters are cut in the text rendering (JSON keeps them
    /// whole).
    pub max_string_chars: usize,
}

impl Default for InspectOptions {
    fn default() -> Self {
        InspectOptions {
            max_array_items: 8,
            max_string_chars: 80,
        }
    }
}

/// One metadata entry of an [`InspectReport`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetadataSummary {
    /// The key.
    pub key: String,
    /// Type as gguf tools print it: `u32`, `str`, `arr[str]`, `arr[arr]`.
    #[serde(rename = "type")]
    pub value_type: String,
    /// The value; for an array, its first elements.
    pub value: Value,
    /// Array length (arrays only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub len: Option<usize>,
    /// True when `value` holds only the first elements of the array.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One tensor of an [`InspectReport`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TensorSummary {
    /// Tensor name.
    pub name: String,
    /// ggml type name (`f16`, `q4_K` …).
    #[serde(rename = "type")]
    pub ty: String,
    /// Dimensions, `ne[0]` (row length) first.
    pub dims: Vec<u64>,
    /// Absolute offset of the data in the file.
    pub offset: u64,
    /// Data size in bytes.
    pub bytes: u64,
}

/// Summary of a GGUF file, as `loraforge inspect` prints it (text via `Display`, or JSON via
/// `serde`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InspectReport {
    /// The file's path, when it was opened from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// File size in bytes.
    pub file_size: u64,
    /// GGUF version.
    pub version: u32,
    /// Tensor alignment.
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    /// Metadata in file order.
    pub metadata: Vec<MetadataSummary>,
    /// Tensors in file order.
    pub tensors: Vec<TensorSummary>,
    /// Sum of the tensors' data sizes.
    pub tensor_bytes: u64,
    /// Number of tensors per ggml type.
    pub type_counts: BTreeMap<String, usize>,
    #[serde(skip)]
    max_string_chars: usize,
}

/// Summarizes `file`.
pub fn inspect(file: &GgufFile, options: &InspectOptions) -> InspectReport {
    let metadata = file
        .metadata()
        .iter()
        .map(|(key, value)| summarize(key, value, options.max_array_items))
        .collect();
    let mut type_counts = BTreeMap::new();
    let mut tensor_bytes = 0u64;
    let tensors = file
        .tensors()
        .iter()
        .map(|t| {
            *type_counts.entry(t.info.ty.name().to_owned()).or_insert(0) += 1;
            tensor_bytes = tensor_bytes.saturating_add(t.size);
            TensorSummary {
                name: t.info.name.clone(),
                ty: t.info.ty.name().to_owned(),
                dims: t.info.dims.clone(),
                offset: file.data_offset().saturating_add(t.offset),
                bytes: t.size,
            }
        })
        .collect();
    InspectReport {
        path: file.path().map(|p| p.display().to_string()),
        file_size: file.len(),
        version: file.version(),
        alignment: file.alignment(),
        data_offset: file.data_offset(),
        metadata,
        tensors,
        tensor_bytes,
        type_counts,
        max_string_chars: options.max_string_chars,
    }
}

fn summarize(key: &str, value: &MetadataValue, max_items: usize) -> MetadataSummary {
    match value {
        MetadataValue::Array(a) => {
            let (json, truncated) = array_json(a, max_items);
            MetadataSummary {
                key: key.to_owned(),
                value_type: format!("arr[{}]", a.element_type()),
                value: json,
                len: Some(a.len()),
                truncated,
            }
        }
        scalar => MetadataSummary {
            key: key.to_owned(),
            value_type: scalar.value_type().name().to_owned(),
            value: scalar_json(scalar),
            len: None,
            truncated: false,
        },
    }
}

fn float_json(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(v.to_string()))
}

fn scalar_json(v: &MetadataValue) -> Value {
    use MetadataValue as V;
    match v {
        V::U8(x) => (*x).into(),
        V::I8(x) => (*x).into(),
        V::U16(x) => (*x).into(),
        V::I16(x) => (*x).into(),
        V::U32(x) => (*x).into(),
        V::I32(x) => (*x).into(),
        V::F32(x) => float_json(f64::from(*x)),
        V::Bool(x) => (*x).into(),
        V::String(s) => Value::String(s.clone()),
        V::Array(a) => array_json(a, usize::MAX).0,
        V::U64(x) => (*x).into(),
        V::I64(x) => (*x).into(),
        V::F64(x) => float_json(*x),
    }
}

fn array_json(a: &MetadataArray, max_items: usize) -> (Value, bool) {
    let n = a.len().min(max_items);
    let items = (0..n)
        .filter_map(|i| a.get(i))
        .map(|v| match &v {
            MetadataValue::Array(inner) => array_json(inner, max_items).0,
            other => scalar_json(other),
        })
        .collect();
    (Value::Array(items), a.len() > n)
}

fn short(s: &str, max_chars: usize) -> String {
    let escaped: String = s.escape_debug().collect();
    if escaped.chars().count() <= max_chars {
        return format!("\"{escaped}\"");
    }
    let cut: String = escaped.chars().take(max_chars).collect();
    format!("\"{cut}\"… ({} chars)", s.chars().count())
}

fn render(v: &Value, max_chars: usize) -> String {
    match v {
        Value::String(s) => short(s, max_chars),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(|x| render(x, max_chars)).collect();
            format!("[{}]", inner.join(", "))
        }
        other => other.to_string(),
    }
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.path {
            writeln!(f, "file: {p}")?;
        }
        writeln!(
            f,
            "GGUF v{}, {} bytes, alignment {}, data at {}",
            self.version, self.file_size, self.alignment, self.data_offset
        )?;
        writeln!(f, "\nmetadata ({} keys):", self.metadata.len())?;
        for m in &self.metadata {
            let mut value = render(&m.value, self.max_string_chars);
            if let Some(len) = m.len {
                if m.truncated {
                    value = format!(
                        "{}, …] ({len} items)",
                        value.trim_end_matches(']').trim_end_matches(", ")
                    );
                } else {
                    value = format!("{value} ({len} items)");
                }
            }
            writeln!(f, "  {:<44} {:<9} {}", m.key, m.value_type, value)?;
        }
        let counts: Vec<String> = self
            .type_counts
            .iter()
            .map(|(t, n)| format!("{t}: {n}"))
            .collect();
        writeln!(
            f,
            "\ntensors ({}, {} bytes; {}):",
            self.tensors.len(),
            self.tensor_bytes,
            counts.join(", ")
        )?;
        for t in &self.tensors {
            let dims: Vec<String> = t.dims.iter().map(u64::to_string).collect();
            writeln!(
                f,
                "  {:<40} {:<6} {:<20} {:>12} bytes at {}",
                t.name,
                t.ty,
                dims.join(" x "),
                t.bytes,
                t.offset
            )?;
        }
        Ok(())
    }
}
