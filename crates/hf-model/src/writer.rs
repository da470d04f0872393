//! Sharded safetensors writer, laid out like transformers' `save_pretrained`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::model::{INDEX_FILE, SINGLE_FILE};
use crate::{Dtype, HfModelError};

/// Default `max_shard_size` of `save_pretrained` / huggingface_hub: 5 GB (decimal).
pub const DEFAULT_MAX_SHARD_SIZE: u64 = 5_000_000_000;

/// What the writer needs to know about a tensor before any data is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape, row-major.
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// Size of the tensor's data in bytes (`None` on overflow).
    pub fn byte_len(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(self.dtype.size() as u64, |acc, &d| {
                acc.checked_mul(d as u64)
            })
    }
}

/// One output file of the plan.
#[derive(Debug, Clone)]
pub struct PlannedShard {
    /// File name (`model.safetensors` or `model-0000i-of-0000N.safetensors`).
    pub file_name: String,
    /// Indices into the spec list, in the order their bytes appear in the file.
    pub tensors: Vec<usize>,
    /// Bytes of tensor data in this file.
    pub data_len: u64,
}

/// Splits tensors into shards like huggingface_hub's `split_state_dict_into_shards_factory`:
/// tensors in the given (state-dict) order; a tensor larger than `max_shard_size` gets a shard of
/// its own; otherwise a new shard starts when the current one would exceed `max_shard_size`.
/// Inside a file, tensors are laid out as the `safetensors` library does (dtype descending, then
/// name).
pub fn plan_shards(
    specs: &[TensorSpec],
    max_shard_size: u64,
) -> Result<Vec<PlannedShard>, HfModelError> {
    let mut groups: Vec<(Vec<usize>, u64)> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut current_size = 0u64;
    for (i, spec) in specs.iter().enumerate() {
        let size = spec
            .byte_len()
            .ok_or_else(|| HfModelError::TensorTooLarge {
                tensor: spec.name.clone(),
            })?;
        if size > max_shard_size {
            groups.push((vec![i], size));
            continue;
        }
        if current_size + size > max_shard_size {
            groups.push((std::mem::take(&mut current), current_size));
            current_size = 0;
        }
        current.push(i);
        current_size += size;
    }
    if !current.is_empty() || groups.is_empty() {
        groups.push((current, current_size));
    }
    let n = groups.len();
    Ok(groups
        .into_iter()
        .enumerate()
        .map(|(k, (mut tensors, data_len))| {
            tensors.sort_by(|&a, &b| {
                specs[b]
                    .dtype
                    .layout_rank()
                    .cmp(&specs[a].dtype.layout_rank())
                    .then_with(|| specs[a].name.cmp(&specs[b].name))
            });
            let file_name = if n == 1 {
                SINGLE_FILE.to_string()
            } else {
                format!("model-{:05}-of-{:05}.safetensors", k + 1, n)
            };
            PlannedShard {
                file_name,
                tensors,
                data_len,
            }
        })
        .collect())
}

/// Serialises a safetensors header for the given tensors (in layout order), with
/// `{"format":"pt"}` metadata, padded with spaces to a multiple of 8 like the `safetensors` library.
fn header_bytes(specs: &[TensorSpec], order: &[usize]) -> Vec<u8> {
    let mut out = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    let mut offset = 0u64;
    for &i in order {
        let s = &specs[i];
        let len = s.byte_len().unwrap_or(0);
        let shape: Vec<String> = s.shape.iter().map(|d| d.to_string()).collect();
        out.push(',');
        out.push_str(&serde_json::Value::String(s.name.clone()).to_string());
        out.push_str(&format!(
            ":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            s.dtype.safetensors_name(),
            shape.join(","),
            offset,
            offset + len
        ));
        offset += len;
    }
    out.push('}');
    let mut bytes = out.into_bytes();
    while bytes.len() % 8 != 0 {
        bytes.push(b' ');
    }
    bytes
}

struct OpenShard {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Option<Sha256>,
    size: u64,
}

/// A file the writer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Path relative to the output folder.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex (`None` when checksums were turned off).
    pub sha256: Option<String>,
}

/// Streams tensors into safetensors shards inside a folder the caller provides.
///
/// The plan is fixed up front ([`plan_shards`]); the caller then writes every tensor's bytes in
/// [`SafetensorsShardWriter::write_order`], in one or several chunks, and calls
/// [`SafetensorsShardWriter::finish`], which writes `model.safetensors.index.json` when there is
/// more than one shard. The writer never holds more than its I/O buffer.
///
/// ```
/// use loraforge_hf_model::{Dtype, SafetensorsShardWriter, TensorSpec};
/// let dir = std::env::temp_dir().join(format!("lf-writer-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let specs = vec![TensorSpec { name: "w".into(), dtype: Dtype::F32, shape: vec![2] }];
/// let mut w = SafetensorsShardWriter::new(&dir, specs, 5_000_000_000, 2).unwrap();
/// w.write_chunk(&[0u8; 8]).unwrap();
/// let files = w.finish().unwrap();
/// assert_eq!(files[0].path, std::path::PathBuf::from("model.safetensors"));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub struct SafetensorsShardWriter {
    dir: PathBuf,
    specs: Vec<TensorSpec>,
    shards: Vec<PlannedShard>,
    parameters: u64,
    /// (shard index, position inside the shard) of the tensor being written
    shard: usize,
    pos: usize,
    /// bytes still expected for the current tensor
    remaining: u64,
    open: Option<OpenShard>,
    written: Vec<WrittenFile>,
    sync: bool,
    checksums: bool,
}

impl SafetensorsShardWriter {
    /// Plans the shards for `specs` (state-dict order) and prepares to write into `dir`.
    /// `total_parameters` goes into the index metadata as transformers writes it.
    pub fn new(
        dir: &Path,
        specs: Vec<TensorSpec>,
        max_shard_size: u64,
        total_parameters: u64,
    ) -> Result<Self, HfModelError> {
        let shards = plan_shards(&specs, max_shard_size)?;
        let mut w = SafetensorsShardWriter {
            dir: dir.to_path_buf(),
            specs,
            shards,
            parameters: total_parameters,
            shard: 0,
            pos: 0,
            remaining: 0,
            open: None,
            written: Vec::new(),
            sync: true,
            checksums: true,
        };
        w.settle()?;
        Ok(w)
    }

    /// Whether each file is `fsync`ed when complete (default `true`).
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    /// Whether the SHA-256 of each file is computed while it is written (default `true`; it
    /// costs about as much CPU as writing the bytes). A caller that wants the hashing off its
    /// writing thread turns this off and hashes [`Self::shard_prefix`] + its chunks itself.
    pub fn set_checksums(&mut self, checksums: bool) {
        self.checksums = checksums;
    }

    /// The planned shards.
    pub fn shards(&self) -> &[PlannedShard] {
        &self.shards
    }

    /// The bytes of shard `shard` that precede its tensor data (the 8-byte header length and the
    /// JSON header): with [`PlannedShard::data_len`], what a caller needs to hash the file from
    /// the chunks it writes, on a thread of its own.
    pub fn shard_prefix(&self, shard: usize) -> Option<Vec<u8>> {
        let header = header_bytes(&self.specs, &self.shards.get(shard)?.tensors);
        let mut prefix = (header.len() as u64).to_le_bytes().to_vec();
        prefix.extend_from_slice(&header);
        Some(prefix)
    }

    /// Tensor names in the order their bytes must be written.
    pub fn write_order(&self) -> Vec<&str> {
        self.shards
            .iter()
            .flat_map(|s| s.tensors.iter().map(|&i| self.specs[i].name.as_str()))
            .collect()
    }

    /// The tensor whose bytes the next chunk belongs to, if any is left.
    pub fn next_tensor(&self) -> Option<&TensorSpec> {
        let shard = self.shards.get(self.shard)?;
        shard.tensors.get(self.pos).map(|&i| &self.specs[i])
    }

    /// Writes a whole tensor; `name` must be the next tensor in [`Self::write_order`].
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<(), HfModelError> {
        let expected = self.next_tensor().map(|s| s.name.clone());
        if expected.as_deref() != Some(name) {
            return Err(HfModelError::WriteOrder {
                expected,
                got: name.to_string(),
            });
        }
        if data.len() as u64 != self.remaining {
            return Err(HfModelError::WriteSize {
                tensor: name.to_string(),
                expected: self.remaining,
                got: data.len() as u64,
            });
        }
        self.write_chunk(data)
    }

    /// Appends bytes of the current tensor (see [`Self::next_tensor`]); moves to the next tensor
    /// (and file) when the current one is complete. A chunk may not span two tensors.
    pub fn write_chunk(&mut self, data: &[u8]) -> Result<(), HfModelError> {
        let Some(spec) = self.next_tensor() else {
            return Err(HfModelError::WriteOrder {
                expected: None,
                got: format!("{} more bytes", data.len()),
            });
        };
        if data.len() as u64 > self.remaining {
            return Err(HfModelError::WriteSize {
                tensor: spec.name.clone(),
                expected: self.remaining,
                got: data.len() as u64,
            });
        }
        if self.open.is_none() {
            self.open_shard()?;
        }
        if let Some(open) = self.open.as_mut() {
            let OpenShard {
                path,
                out,
                hasher,
                size,
            } = open;
            if let Some(hasher) = hasher {
                hasher.update(data);
            }
            out.write_all(data).map_err(|source| HfModelError::Io {
                path: path.clone(),
                source,
            })?;
            *size += data.len() as u64;
        }
        self.remaining -= data.len() as u64;
        if self.remaining == 0 {
            self.pos += 1;
            self.settle()?;
        }
        Ok(())
    }

    /// Skips past zero-byte tensors and closes finished shards.
    fn settle(&mut self) -> Result<(), HfModelError> {
        loop {
            let Some(shard) = self.shards.get(self.shard) else {
                return Ok(());
            };
            if let Some(&i) = shard.tensors.get(self.pos) {
                self.remaining = self.specs[i].byte_len().unwrap_or(0);
                if self.remaining > 0 {
                    return Ok(());
                }
                if self.open.is_none() {
                    self.open_shard()?;
                }
                self.pos += 1;
                continue;
            }
            // current shard complete
            if self.open.is_none() {
                self.open_shard()?;
            }
            self.close_shard()?;
            self.shard += 1;
            self.pos = 0;
        }
    }

    fn open_shard(&mut self) -> Result<(), HfModelError> {
        let path = self.dir.join(&self.shards[self.shard].file_name);
        let prefix = self.shard_prefix(self.shard).unwrap_or_default();
        let io = |source| HfModelError::Io {
            path: path.clone(),
            source,
        };
        let file = File::create(&path).map_err(io)?;
        let data_len = self.shards[self.shard].data_len;
        loraforge_staging::preallocate(&file, prefix.len() as u64 + data_len).map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&prefix).map_err(io)?;
        let hasher = self.checksums.then(|| Sha256::new_with_prefix(&prefix));
        let size = prefix.len() as u64;
        self.open = Some(OpenShard {
            path,
            out,
            hasher,
            size,
        });
        Ok(())
    }

    fn close_shard(&mut self) -> Result<(), HfModelError> {
        if let Some(open) = self.open.take() {
            let path = open.path.clone();
            let io = |source| HfModelError::Io {
                path: path.clone(),
                source,
            };
            let file = open.out.into_inner().map_err(|e| io(e.into_error()))?;
            if self.sync {
                file.sync_all().map_err(io)?;
            }
            let name = path.file_name().map(PathBuf::from).unwrap_or_default();
            self.written.push(WrittenFile {
                path: name,
                size: open.size,
                sha256: open.hasher.map(|h| hex::encode(h.finalize())),
            });
        }
        Ok(())
    }

    /// Checks every tensor was written, closes the last file and writes the index when sharded.
    /// Returns the files written (paths relative to the folder, sizes, SHA-256), index last.
    pub fn finish(mut self) -> Result<Vec<WrittenFile>, HfModelError> {
        if let Some(spec) = self.next_tensor() {
            return Err(HfModelError::WriteIncomplete {
                tensor: spec.name.clone(),
            });
        }
        self.close_shard()?;
        let mut files = std::mem::take(&mut self.written);
        if self.shards.len() > 1 {
            let mut weight_map = BTreeMap::new();
            for s in &self.shards {
                for &i in &s.tensors {
                    weight_map.insert(self.specs[i].name.clone(), s.file_name.clone());
                }
            }
            let total: u64 = self.shards.iter().map(|s| s.data_len).sum();
            let mut metadata = serde_json::Map::new();
            metadata.insert("total_parameters".into(), self.parameters.into());
            metadata.insert("total_size".into(), total.into());
            let mut root = serde_json::Map::new();
            root.insert("metadata".into(), metadata.into());
            root.insert(
                "weight_map".into(),
                serde_json::to_value(&weight_map).unwrap_or_default(),
            );
            let mut text =
                serde_json::to_string_pretty(&serde_json::Value::Object(root)).unwrap_or_default();
            text.push('\n');
            let path = self.dir.join(INDEX_FILE);
            std::fs::write(&path, &text).map_err(|source| HfModelError::Io {
                path: path.clone(),
                source,
            })?;
            files.push(WrittenFile {
                path: PathBuf::from(INDEX_FILE),
                size: text.len() as u64,
                sha256: self
                    .checksums
                    .then(|| hex::encode(Sha256::digest(text.as_bytes()))),
            });
        }
        Ok(files)
    }
}
