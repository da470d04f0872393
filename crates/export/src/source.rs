//! Index of the safetensors weights of a Hugging Face model folder, read with positioned reads.
//!
//! The converter streams each tensor from disk in bounded chunks instead of memory-mapping whole
//! shards, so the resident set stays small on multi-gigabyte models (page cache is not counted in
//! a process's RSS, mapped pages are).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use loraforge_hf_model::{Dtype, ShardIndex, INDEX_FILE};

use crate::error::ConvertError;

/// One tensor as it sits in a shard.
#[derive(Debug, Clone)]
pub(crate) struct SrcTensor {
    pub name: String,
    pub dtype: Dtype,
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

impl Weights {
    pub(crate) fn open(dir: &Path) -> Result<Weights, ConvertError> {
        let index_path = dir.join(INDEX_FILE);
        let mut part_names: Vec<String> = Vec::new();
        let mut index_names: Option<BTreeMap<String, String>> = None;
        if index_path.is_file() {
            let index = ShardIndex::read(&index_path).map_err(|source| ConvertError::Weights {
                dir: dir.to_path_buf(),
                source,
            })?;
            // every shard a plain file inside the folder, links followed (one rule for all
            // commands: hf-model's)
            index
                .shard_paths(dir)
                .map_err(|source| ConvertError::Weights {
                    dir: dir.to_path_buf(),
                    source,
                })?;
            part_names = index.files;
            index_names = Some(index.weight_map);
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

    /// Puts the tensors in the order the converter reads a folder whose weight files hold
    /// `shards` (tensor names per file, in file-name order): by file, then by name. Names in
    /// no shard go last.
    pub(crate) fn order_as(&mut self, shards: &[Vec<String>]) {
        let file_of: std::collections::HashMap<&str, usize> = shards
            .iter()
            .enumerate()
            .flat_map(|(i, names)| names.iter().map(move |n| (n.as_str(), i)))
            .collect();
        let key = |t: &SrcTensor| file_of.get(t.name.as_str()).copied().unwrap_or(usize::MAX);
        self.tensors
            .sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name)));
    }

    pub(crate) fn get(&self, name: &str) -> Option<&SrcTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Reads one shard's header through `loraforge-hf-model` (which validates dtypes, shapes,
/// offsets, overlaps, holes and trailing bytes) and records absolute data offsets.
fn read_header(path: &Path, file_index: usize) -> Result<Vec<SrcTensor>, ConvertError> {
    let header = loraforge_hf_model::read_safetensors_header(path).map_err(|source| {
        ConvertError::InvalidSafetensors {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let mut out = Vec::with_capacity(header.tensors.len());
    for t in header.tensors {
        let offset = header
            .data_start
            .checked_add(t.data_offsets.0)
            .ok_or_else(|| ConvertError::OffsetOverflow {
                path: path.to_path_buf(),
                tensor: t.name.clone(),
            })?;
        out.push(SrcTensor {
            name: t.name,
            dtype: t.dtype,
            shape: t.shape,
            file: file_index,
            offset,
        });
    }
    Ok(out)
}
