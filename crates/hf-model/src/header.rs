//! Defensive, header-only reading of safetensors files.
//!
//! Layout (huggingface/safetensors README): `u64` little-endian header length `N`, then `N` bytes
//! of JSON (`{"name": {"dtype", "shape", "data_offsets": [begin, end]}, …, "__metadata__": {…}}`,
//! possibly right-padded with spaces), then the byte buffer. Offsets are relative to the buffer,
//! tensors must cover the buffer exactly: no overlap, no hole, no trailing bytes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{Dtype, HfModelError};

/// Largest header accepted (the `safetensors` crate uses the same 100 MB cap).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// One tensor entry of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Byte range `[begin, end)` relative to the start of the data buffer.
    pub data_offsets: (u64, u64),
}

impl TensorInfo {
    /// Number of elements (product of the shape; 1 for a scalar).
    pub fn element_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of the data in bytes.
    pub fn byte_len(&self) -> u64 {
        self.data_offsets.1 - self.data_offsets.0
    }
}

/// A validated safetensors header.
#[derive(Debug, Clone)]
pub struct SafetensorsHeader {
    /// The file the header was read from.
    pub path: PathBuf,
    /// Absolute file offset where the data buffer starts (`8 + N`).
    pub data_start: u64,
    /// Length of the data buffer in bytes.
    pub data_len: u64,
    /// Tensors sorted by their offset in the buffer.
    pub tensors: Vec<TensorInfo>,
    /// The `__metadata__` map (empty when absent).
    pub metadata: BTreeMap<String, String>,
}

impl SafetensorsHeader {
    /// Total number of elements over all tensors.
    pub fn parameter_count(&self) -> u64 {
        self.tensors.iter().map(|t| t.element_count() as u64).sum()
    }
}

/// Reads and validates the header of one safetensors file without reading its data.
///
/// Errors name the file: header length past the end of the file, JSON that is not a header,
/// unsupported dtypes, shapes whose byte size disagrees with the offsets, offsets outside the
/// buffer, overlapping tensors, holes and trailing bytes.
pub fn read_safetensors_header(path: &Path) -> Result<SafetensorsHeader, HfModelError> {
    let io = |source| HfModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut len_bytes = [0u8; 8];
    if file_len < 8 {
        return Err(HfModelError::TruncatedFile {
            path: path.to_path_buf(),
            file_len,
        });
    }
    file.read_exact(&mut len_bytes).map_err(io)?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_LEN {
        return Err(HfModelError::HeaderTooLarge {
            path: path.to_path_buf(),
            header_len,
            limit: MAX_HEADER_LEN,
        });
    }
    let data_start = header_len + 8;
    if data_start > file_len {
        return Err(HfModelError::HeaderPastEof {
            path: path.to_path_buf(),
            header_len,
            file_len,
        });
    }
    let mut json = vec![0u8; header_len as usize];
    file.read_exact(&mut json).map_err(io)?;
    parse_header(path, &json, data_start, file_len - data_start)
}

/// The top-level entries of a JSON object in file order, repeated keys kept.
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<Entries, A::Error> {
                let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(4096));
                while let Some(entry) = access.next_entry::<String, serde_json::Value>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Validates a header given its JSON bytes and the buffer length.
pub(crate) fn parse_header(
    path: &Path,
    json: &[u8],
    data_start: u64,
    data_len: u64,
) -> Result<SafetensorsHeader, HfModelError> {
    let invalid = |reason: String| HfModelError::InvalidHeader {
        path: path.to_path_buf(),
        reason,
    };
    if json.first() != Some(&b'{') {
        return Err(invalid("the JSON header does not start with '{'".into()));
    }
    // (starting with '{', the header is an object or not JSON at all.)
    // A JSON object read into a map keeps the last of two equal keys; read the entries in
    // order instead so that a repeated tensor name is refused.
    let Entries(map) = serde_json::from_slice(json).map_err(|source| HfModelError::HeaderJson {
        path: path.to_path_buf(),
        source,
    })?;
    let mut seen = std::collections::HashSet::with_capacity(map.len());
    for (name, _) in &map {
        if !seen.insert(name.as_str()) {
            return Err(HfModelError::DuplicateHeaderEntry {
                path: path.to_path_buf(),
                tensor: name.clone(),
            });
        }
    }
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::with_capacity(map.len());
    for (name, entry) in map {
        if name == "__metadata__" {
            let serde_json::Value::Object(m) = entry else {
                return Err(invalid("__metadata__ is not an object".into()));
            };
            for (k, v) in m {
                let serde_json::Value::String(s) = v else {
                    return Err(invalid(format!("__metadata__ value {k:?} is not a string")));
                };
                metadata.insert(k, s);
            }
            continue;
        }
        let dtype_name = entry
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| invalid(format!("tensor {name:?} has no string \"dtype\"")))?;
        let dtype = Dtype::from_safetensors_name(dtype_name).ok_or_else(|| {
            HfModelError::UnsupportedDtype {
                path: path.to_path_buf(),
                tensor: name.clone(),
                dtype: dtype_name.to_string(),
            }
        })?;
        let shape = entry
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| invalid(format!("tensor {name:?} has no \"shape\" array")))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| invalid(format!("tensor {name:?} has a non-integer dimension")))?;
        let offsets = entry
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .filter(|a| a.len() == 2)
            .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
            .ok_or_else(|| {
                invalid(format!(
                    "tensor {name:?} has no [begin, end] \"data_offsets\""
                ))
            })?;
        let (begin, end) = offsets;
        if begin > end || end > data_len {
            return Err(HfModelError::OffsetsOutOfRange {
                path: path.to_path_buf(),
                tensor: name,
                begin,
                end,
                buffer_len: data_len,
            });
        }
        let expected = shape
            .iter()
            .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64));
        if expected != Some(end - begin) {
            return Err(HfModelError::SizeMismatch {
                path: path.to_path_buf(),
                tensor: name,
                dtype,
                shape,
                byte_len: end - begin,
            });
        }
        tensors.push(TensorInfo {
            name,
            dtype,
            shape,
            data_offsets: offsets,
        });
    }
    tensors.sort_by_key(|t| t.data_offsets);
    let mut covered = 0u64;
    let mut previous: Option<&TensorInfo> = None;
    for t in &tensors {
        let (begin, end) = t.data_offsets;
        if begin < covered {
            return Err(HfModelError::OverlappingTensors {
                path: path.to_path_buf(),
                first: previous.map(|p| p.name.clone()).unwrap_or_default(),
                second: t.name.clone(),
            });
        }
        if begin > covered {
            return Err(HfModelError::Hole {
                path: path.to_path_buf(),
                offset: covered,
                next_tensor: t.name.clone(),
                next_offset: begin,
            });
        }
        covered = end;
        previous = Some(t);
    }
    if covered != data_len {
        return Err(HfModelError::TrailingBytes {
            path: path.to_path_buf(),
            covered,
            buffer_len: data_len,
        });
    }
    Ok(SafetensorsHeader {
        path: path.to_path_buf(),
        data_start,
        data_len,
        tensors,
        metadata,
    })
}
