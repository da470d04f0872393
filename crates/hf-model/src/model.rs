//! An opened Hugging Face model folder with memory-mapped weights.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::dtype::decode_f32;
use crate::header::{read_safetensors_header, SafetensorsHeader};
use crate::{Dtype, HfModelError};

/// Name of the single-file weights.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Name of the shard index.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Name of the model config.
pub const CONFIG_FILE: &str = "config.json";

struct Shard {
    header: SafetensorsHeader,
    map: Option<Mmap>,
}

/// A Hugging Face model folder: `config.json` and `model.safetensors` or sharded
/// `model-0000i-of-0000N.safetensors` + `model.safetensors.index.json`.
///
/// Weights are memory-mapped and read on demand; headers are validated at open time.
pub struct HfModel {
    dir: PathBuf,
    config: serde_json::Value,
    files: Vec<PathBuf>,
    shards: Vec<Shard>,
    /// tensor name → (shard index, tensor index in that shard's header)
    lookup: HashMap<String, (usize, usize)>,
}

impl std::fmt::Debug for HfModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfModel")
            .field("dir", &self.dir)
            .field("files", &self.files)
            .field("tensors", &self.lookup.len())
            .finish()
    }
}

/// A borrowed view of one tensor's bytes in a memory-mapped file.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    /// Tensor name.
    pub name: &'a str,
    /// Element type.
    pub dtype: Dtype,
    /// Shape, row-major.
    pub shape: &'a [usize],
    /// Little-endian element bytes.
    pub data: &'a [u8],
}

impl TensorView<'_> {
    /// Number of elements.
    pub fn element_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// All elements converted to f32 (exact for every supported dtype).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.element_count()];
        decode_f32(self.dtype, self.data, &mut out);
        out
    }

    /// Converts all elements to f32 into `out`, which must hold exactly `element_count()` values.
    pub fn read_f32_into(&self, out: &mut [f32]) -> Result<(), HfModelError> {
        if out.len() != self.element_count() {
            return Err(HfModelError::BufferSize {
                tensor: self.name.to_string(),
                expected: self.element_count(),
                got: out.len(),
            });
        }
        decode_f32(self.dtype, self.data, out);
        Ok(())
    }
}

impl HfModel {
    /// Opens a model folder: reads `config.json` (required), validates every safetensors header
    /// (and the index when sharded) and memory-maps the weight files.
    pub fn open(dir: &Path) -> Result<HfModel, HfModelError> {
        let config_path = dir.join(CONFIG_FILE);
        let config_text = match std::fs::read(&config_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(HfModelError::MissingConfig {
                    dir: dir.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(HfModelError::Io {
                    path: config_path,
                    source,
                })
            }
        };
        let config: serde_json::Value =
            serde_json::from_slice(&config_text).map_err(|source| HfModelError::ConfigJson {
                path: config_path.clone(),
                source,
            })?;
        if !config.is_object() {
            return Err(HfModelError::InvalidConfig {
                path: config_path,
                reason: "config.json is not a JSON object".into(),
            });
        }
        let index_path = dir.join(INDEX_FILE);
        let single_path = dir.join(SINGLE_FILE);
        let (files, weight_map) = if index_path.is_file() {
            let (files, map) = read_index(&index_path)?;
            (
                files.into_iter().map(|f| dir.join(f)).collect::<Vec<_>>(),
                Some(map),
            )
        } else if single_path.symlink_metadata().is_ok() {
            // anything by that name, checked below: a device or a link out is refused by name
            (vec![single_path], None)
        } else {
            return Err(HfModelError::NoWeights {
                dir: dir.to_path_buf(),
            });
        };
        for file in &files {
            check_weight_file(dir, file)?;
        }
        let mut shards = Vec::with_capacity(files.len());
        let mut lookup: HashMap<String, (usize, usize)> = HashMap::new();
        for (si, path) in files.iter().enumerate() {
            let shard = open_shard(path)?;
            for (ti, t) in shard.header.tensors.iter().enumerate() {
                if let Some(&(prev, _)) = lookup.get(&t.name) {
                    return Err(HfModelError::DuplicateTensor {
                        tensor: t.name.clone(),
                        first_file: files[prev].clone(),
                        second_file: path.clone(),
                    });
                }
                lookup.insert(t.name.clone(), (si, ti));
            }
            shards.push(shard);
        }
        if let Some(map) = weight_map {
            for (tensor, file) in &map {
                let file = dir.join(file);
                if !matches!(lookup.get(tensor), Some(&(si, _)) if files[si] == file) {
                    return Err(HfModelError::IndexTensorMissing {
                        index: index_path.clone(),
                        tensor: tensor.clone(),
                        file,
                    });
                }
            }
            if map.len() != lookup.len() {
                let missing = lookup
                    .keys()
                    .find(|k| !map.contains_key(*k))
                    .cloned()
                    .unwrap_or_default();
                return Err(HfModelError::InvalidIndex {
                    path: index_path,
                    reason: format!("tensor {missing:?} is in a shard but not in weight_map"),
                });
            }
        }
        Ok(HfModel {
            dir: dir.to_path_buf(),
            config,
            files,
            shards,
            lookup,
        })
    }

    /// The folder this model was opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The raw `config.json`.
    pub fn config(&self) -> &serde_json::Value {
        &self.config
    }

    /// The dtype in `config.json` (`"dtype"`, or the legacy `"torch_dtype"`), if recognised.
    pub fn config_dtype(&self) -> Option<Dtype> {
        self.config
            .get("dtype")
            .and_then(|d| d.as_str())
            .or_else(|| self.config.get("torch_dtype").and_then(|d| d.as_str()))
            .and_then(Dtype::parse_config_dtype)
    }

    /// All tensor names: shard order, then offset order inside each file.
    pub fn tensor_names(&self) -> Vec<&str> {
        self.shards
            .iter()
            .flat_map(|s| s.header.tensors.iter().map(|t| t.name.as_str()))
            .collect()
    }

    /// Whether the model has a tensor of that name.
    pub fn contains(&self, name: &str) -> bool {
        self.lookup.contains_key(name)
    }

    /// The tensor's dtype, shape and bytes.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>, HfModelError> {
        let &(si, ti) = self
            .lookup
            .get(name)
            .ok_or_else(|| HfModelError::TensorNotFound {
                tensor: name.to_string(),
                dir: self.dir.clone(),
            })?;
        shard_view(&self.shards[si], ti)
    }

    /// Tells the kernel this process no longer needs the mapped pages of `name` (they stay in the
    /// page cache; the mapping's resident size drops). Keeps peak RSS bounded while streaming a
    /// model larger than memory. Views still alive stay valid: the pages are re-read on access.
    pub fn release(&self, name: &str) {
        self.release_range(name, 0..usize::MAX);
    }

    /// Like [`HfModel::release`] for the bytes `range` of `name`'s data (clamped to the tensor),
    /// so that a large tensor streamed piece by piece never has more than a piece resident.
    pub fn release_range(&self, name: &str, range: std::ops::Range<usize>) {
        let Some(&(si, ti)) = self.lookup.get(name) else {
            return;
        };
        let shard = &self.shards[si];
        let Some(map) = &shard.map else { return };
        let info = &shard.header.tensors[ti];
        let tensor_start = shard.header.data_start + info.data_offsets.0;
        let tensor_end = shard.header.data_start + info.data_offsets.1;
        let start = tensor_start
            .saturating_add(range.start as u64)
            .min(tensor_end);
        let end = tensor_start
            .saturating_add(range.end as u64)
            .min(tensor_end);
        // Whole pages inside this tensor only, so neighbours are not affected in any way.
        if let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) {
            release_mapped(map, start..end);
        }
    }

    /// Number of parameters (elements) over all tensors, from the headers.
    pub fn parameter_count(&self) -> u64 {
        self.shards.iter().map(|s| s.header.parameter_count()).sum()
    }

    /// Total bytes of tensor data over all files.
    pub fn data_size(&self) -> u64 {
        self.shards.iter().map(|s| s.header.data_len).sum()
    }

    /// The weight files, in shard order.
    pub fn weight_files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The validated headers, in shard order.
    pub fn headers(&self) -> impl Iterator<Item = &SafetensorsHeader> {
        self.shards.iter().map(|s| &s.header)
    }
}

/// One memory-mapped safetensors file (for files outside a model folder, e.g. an adapter).
pub struct SafetensorsFile {
    shard: Shard,
    lookup: HashMap<String, usize>,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.shard.header.path)
            .field("tensors", &self.lookup.len())
            .finish()
    }
}

impl SafetensorsFile {
    /// Validates the header and memory-maps the file.
    pub fn open(path: &Path) -> Result<SafetensorsFile, HfModelError> {
        let shard = open_shard(path)?;
        let lookup = shard
            .header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(SafetensorsFile { shard, lookup })
    }

    /// The validated header.
    pub fn header(&self) -> &SafetensorsHeader {
        &self.shard.header
    }

    /// Tensor names in offset order.
    pub fn tensor_names(&self) -> Vec<&str> {
        self.shard
            .header
            .tensors
            .iter()
            .map(|t| t.name.as_str())
            .collect()
    }

    /// The tensor's dtype, shape and bytes.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>, HfModelError> {
        let &ti = self
            .lookup
            .get(name)
            .ok_or_else(|| HfModelError::TensorNotFound {
                tensor: name.to_string(),
                dir: self.shard.header.path.clone(),
            })?;
        shard_view(&self.shard, ti)
    }
}

fn open_shard(path: &Path) -> Result<Shard, HfModelError> {
    let header = read_safetensors_header(path)?;
    let map = if header.data_len == 0 {
        None
    } else {
        let file = File::open(path).map_err(|source| HfModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the file is opened read-only; loraforge never writes to a file it maps.
        // A concurrent writer outside this process could change the bytes under us (same
        // contract as safetensors/candle).
        let map = unsafe { Mmap::map(&file) }.map_err(|source| HfModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let needed = header.data_start + header.data_len;
        if (map.len() as u64) < needed {
            return Err(HfModelError::TruncatedFile {
                path: path.to_path_buf(),
                file_len: map.len() as u64,
            });
        }
        Some(map)
    };
    Ok(Shard { header, map })
}

fn shard_view(shard: &Shard, ti: usize) -> Result<TensorView<'_>, HfModelError> {
    let info = &shard.header.tensors[ti];
    let (begin, end) = info.data_offsets;
    let data: &[u8] = match &shard.map {
        None => &[],
        Some(map) => {
            let start = (shard.header.data_start + begin) as usize;
            let stop = (shard.header.data_start + end) as usize;
            map.get(start..stop)
                .ok_or_else(|| HfModelError::TruncatedFile {
                    path: shard.header.path.clone(),
                    file_len: map.len() as u64,
                })?
        }
    };
    Ok(TensorView {
        name: &info.name,
        dtype: info.dtype,
        shape: &info.shape,
        data,
    })
}

/// The shard list of a sharded model: what `model.safetensors.index.json` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardIndex {
    /// Shard file names (plain names, no folders), sorted and deduplicated.
    pub files: Vec<String>,
    /// Tensor name → shard file name.
    pub weight_map: std::collections::BTreeMap<String, String>,
}

impl ShardIndex {
    /// Reads and validates an index file: a `weight_map` object of tensor names to plain shard
    /// file names (no path separators), not empty. The one index reader of the workspace: the
    /// memory-mapped [`HfModel`] and the GGUF converter's streaming reader both use it.
    pub fn read(path: &Path) -> Result<ShardIndex, HfModelError> {
        let (files, weight_map) = read_index(path)?;
        Ok(ShardIndex { files, weight_map })
    }

    /// The shard files joined to the model folder `dir`, each checked like [`HfModel::open`]
    /// checks them: a regular file that, through symlinks, stays inside `dir` (or a Hugging Face
    /// cache snapshot's `blobs/`). A file that does not exist is returned unchecked, for the
    /// caller to report as missing with the tensors it should hold.
    pub fn shard_paths(&self, dir: &Path) -> Result<Vec<PathBuf>, HfModelError> {
        self.files
            .iter()
            .map(|f| {
                let path = dir.join(f);
                if path.symlink_metadata().is_ok() {
                    check_weight_file(dir, &path)?;
                }
                Ok(path)
            })
            .collect()
    }
}

/// A name that stays inside the folder it is joined to: no separator, no `.`/`..`, not empty.
fn is_plain_file_name(name: &str) -> bool {
    !(name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0'])
        || Path::new(name).is_absolute())
}

/// Refuses a weight file of `dir` that resolves outside it or is not a regular file. Symlinks
/// are followed: inside the folder, or — in a Hugging Face cache snapshot
/// (`<repo>/snapshots/<rev>/`, whose files link to `<repo>/blobs/`) — inside that repository's
/// cache folder.
fn check_weight_file(dir: &Path, path: &Path) -> Result<(), HfModelError> {
    let io = |source| HfModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let folder = dir.canonicalize().map_err(|source| HfModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let target = path.canonicalize().map_err(io)?;
    let refuse = |problem: &str| HfModelError::ShardOutsideFolder {
        dir: dir.to_path_buf(),
        path: path.to_path_buf(),
        target: target.clone(),
        problem: problem.to_string(),
    };
    let cache_repo = folder
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "snapshots"))
        .and_then(Path::parent);
    let inside = target.parent() == Some(folder.as_path())
        || cache_repo.is_some_and(|repo| target.starts_with(repo.join("blobs")));
    if !inside {
        return Err(refuse("outside the model folder"));
    }
    if !std::fs::metadata(&target).map_err(io)?.is_file() {
        return Err(refuse("which is not a regular file"));
    }
    Ok(())
}

/// Reads `model.safetensors.index.json`: the shard file names (sorted) and the weight map.
fn read_index(
    path: &Path,
) -> Result<(Vec<String>, std::collections::BTreeMap<String, String>), HfModelError> {
    let invalid = |reason: String| HfModelError::InvalidIndex {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read(path).map_err(|source| HfModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| invalid(format!("bad JSON: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| invalid("no \"weight_map\" object".into()))?;
    let mut weight_map = std::collections::BTreeMap::new();
    for (k, v) in map {
        let file = v
            .as_str()
            .ok_or_else(|| invalid(format!("weight_map[{k:?}] is not a string")))?;
        if !is_plain_file_name(file) {
            return Err(invalid(format!(
                "weight_map[{k:?}] = {file:?} is not a file name"
            )));
        }
        weight_map.insert(k.clone(), file.to_string());
    }
    let mut files: Vec<String> = weight_map.values().cloned().collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(invalid("weight_map is empty".into()));
    }
    Ok((files, weight_map))
}

/// Drops from this process the pages of `map` that lie wholly inside the byte range `range`
/// (they stay in the page cache; later reads fault them back in). For read-only file mappings
/// read through once, so that streaming a model larger than memory keeps the resident size
/// bounded; pages shared with bytes outside `range` are kept.
pub fn release_mapped(map: &Mmap, range: std::ops::Range<usize>) {
    const PAGE: usize = 4096;
    let first = range.start.div_ceil(PAGE) * PAGE;
    let last = (range.end.min(map.len()) / PAGE) * PAGE;
    if last > first {
        #[cfg(unix)]
        {
            // SAFETY: `Mmap` is a read-only private file mapping that is never written, so
            // dropping its pages loses nothing: later reads fault them back in from the file.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, last - first)
            };
        }
    }
}
