//! Index of the safetensors weights of a Hugging Face model folder, read with positioned reads.
//!
//! The converter streams each tensor from disk in bounded chunks instead of memory-mapping whole
//! shards, so the resident set stays small on multi-gigabyte models (page cache is not counted in
//! a process's RSS, mapped pages are).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::ConvertError;

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SrcDtype {
    F32,
    F16,
    BF16,
}

impl SrcDtype {
    pub(crate) fn size(self) -> usize {
        match self {
            SrcDtype::F32 => 4,
            SrcDtype::F16 | SrcDtype::BF16 => 2,
        }
    }
}

/// One tensor as it sits in a shard.
#[derive(Debug, Clone)]
pub(crate) struct SrcTensor {
    pub name: String,
    pub dtype: SrcDtype,
    pub shape: Vec<usize>,
    /// Index into [`Weights::files`].
    pub file: usize,
    /// Absolute byte offset of the first element in the file.
    pub offset: u64,
}

impl SrcTensor {
    pub(crate) fn n_elements(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }
}

/// All tensors of a model folder in the converter's order: shards sorted by file name, tensors of
/// each shard sorted by name (what `convert_hf_to_gguf.py` iterates).
#[derive(Debug)]
pub(crate) struct Weights {
    pub files: Vec<PathBuf>,
    pub tensors: Vec<SrcTensor>,
}

/// Largest safetensors header accepted (the format's own cap is 100 MB).
const MAX_HEADER: u64 = 100_000_000;

impl Weights {
    pub(crate) fn open(dir: &Path) -> Result<Weights, ConvertError> {
        let index_path = dir.join("model.safetensors.index.json");
        let mut part_names: Vec<String> = Vec::new();
        let mut index_names: Option<BTreeMap<String, String>> = None;
        if index_path.is_file() {
            let text = std::fs::read_to_string(&index_path).map_err(|source| ConvertError::Io {
                path: index_path.clone(),
                source,
            })?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| ConvertError::InvalidJson {
                    path: index_path.clone(),
                    message: e.to_string(),
                })?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| ConvertError::InvalidJson {
                    path: index_path.clone(),
                    message: "no \"weight_map\" object".into(),
                })?;
            let mut names = BTreeMap::new();
            for (k, f) in map {
                let f = f.as_str().ok_or_else(|| ConvertError::InvalidJson {
                    path: index_path.clone(),
                    message: format!("weight_map entry {k:?} is not a file name"),
                })?;
                names.insert(k.clone(), f.to_string());
            }
            let mut parts: Vec<String> = names.values().cloned().collect();
            parts.sort();
            parts.dedup();
            part_names = parts;
            index_names = Some(names);
        } else {
            let rd = std::fs::read_dir(dir).map_err(|source| ConvertError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("model") && n.ends_with(".safetensors") {
                    part_names.push(n);
                }
            }
            part_names.sort();
        }
        if part_names.is_empty() {
            return Err(ConvertError::NoWeights {
                dir: dir.to_path_buf(),
            });
        }
        let mut files = Vec::new();
        let mut tensors = Vec::new();
        for (fi, part) in part_names.iter().enumerate() {
            let path = dir.join(part);
            if !path.is_file() {
                let missing: Vec<String> = index_names
                    .as_ref()
                    .map(|m| {
                        m.iter()
                            .filter(|(_, f)| *f == part)
                            .map(|(k, _)| k.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                return Err(ConvertError::MissingShard {
                    path,
                    tensors: missing,
                });
            }
            let mut t = read_header(&path, fi)?;
            t.sort_by(|a, b| a.name.cmp(&b.name));
            tensors.extend(t);
            files.push(path);
        }
        if let Some(names) = &index_names {
            let have: std::collections::BTreeSet<&str> =
                tensors.iter().map(|t| t.name.as_str()).collect();
            let missing: Vec<String> = names
                .keys()
                .filter(|k| !have.contains(k.as_str()))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(ConvertError::IndexMismatch {
                    path: index_path,
                    missing,
                });
            }
        }
        Ok(Weights { files, tensors })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&SrcTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

fn read_header(path: &Path, file_index: usize) -> Result<Vec<SrcTensor>, ConvertError> {
    let bad = |message: String| ConvertError::InvalidSafetensors {
        path: path.to_path_buf(),
        message,
    };
    let io = |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    let mut len_buf = [0u8; 8];
    f.read_exact(&mut len_buf)
        .map_err(|_| bad("file shorter than the 8-byte header length".into()))?;
    let header_len = u64::from_le_bytes(len_buf);
    if header_len > MAX_HEADER || header_len.saturating_add(8) > file_len {
        return Err(bad(format!(
            "header length {header_len} does not fit the file ({file_len} bytes)"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header).map_err(io)?;
    let v: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("header is not a JSON object".into()))?;
    let data_start = 8 + header_len;
    let data_len = file_len - data_start;
    let mut out = Vec::new();
    for (name, meta) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dtype = match meta.get("dtype").and_then(|d| d.as_str()) {
            Some("F32") => SrcDtype::F32,
            Some("F16") => SrcDtype::F16,
            Some("BF16") => SrcDtype::BF16,
            Some(other) => {
                return Err(ConvertError::UnsupportedDtype {
                    tensor: name.clone(),
                    dtype: other.to_string(),
                })
            }
            None => return Err(bad(format!("tensor {name:?} has no dtype"))),
        };
        let shape: Vec<usize> = meta
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad(format!("tensor {name:?} has no shape")))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| bad(format!("tensor {name:?} has a non-integer dimension")))?;
        let offs = meta
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .filter(|a| a.len() == 2)
            .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
            .ok_or_else(|| bad(format!("tensor {name:?} has no valid data_offsets")))?;
        let n_el = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| bad(format!("tensor {name:?}: element count overflows")))?;
        let want = n_el
            .checked_mul(dtype.size() as u64)
            .ok_or_else(|| bad(format!("tensor {name:?}: byte size overflows")))?;
        if offs.1 < offs.0 || offs.1 - offs.0 != want || offs.1 > data_len {
            return Err(bad(format!(
                "tensor {name:?}: data_offsets {:?} do not match shape {shape:?} x {} bytes within {data_len} data bytes",
                offs,
                dtype.size()
            )));
        }
        out.push(SrcTensor {
            name: name.clone(),
            dtype,
            shape,
            file: file_index,
            offset: data_start + offs.0,
        });
    }
    Ok(out)
}
