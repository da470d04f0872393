//! The merged_4bit writer, for any source of 16/32-bit tensors (a model folder, or a merge in
//! progress).
//!
//! Two passes over the source, each tensor read once:
//! 1. every Linear weight is streamed, quantized as its pieces come (NF4 codes into a spill
//!    file, block scales in memory until the weight is complete), and double-quantized; this
//!    fixes each `nested_offset`, hence each quant-state JSON's length, hence every offset of
//!    every file;
//! 2. the files are laid out (state-dict order, shard split, safetensors layout) and written at
//!    their final offsets: quantized parts from the spill file and memory, kept tensors file to
//!    file from the base when their bytes are the base's (`copy_file_range`), else streamed.
//!
//! Memory: a piece of the source, the block scales of one weight, the small quant-state tensors
//! of all weights (about n/16384 floats each); never a weight-sized buffer.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use loraforge_adapter_merge::MergedTensors;
use loraforge_hf_model::{
    decode_f32, encode_f32, read_safetensors_header, Dtype, HfModel, CONFIG_FILE, INDEX_FILE,
};
use loraforge_progress::Reporter;

use crate::folder::{
    config_dtype, insert_quantization_config, io, quant_state_json, quantization_config_block,
    DEFAULT_MAX_SHARD_SIZE,
};
use crate::layout::{
    header, index_json, shard_file_name, sort_like_save_pretrained, split_shards, HeaderEntry,
};
use crate::quant::{
    double_quantize, dynamic_code, nf4_code, quantize_blocks_checked, BLOCKSIZE, NESTED_BLOCKSIZE,
};
use crate::{Nf4Error, Nf4Options, Nf4Report};

/// A sink for a tensor's bytes, piece by piece, in order.
pub(crate) type Sink<'s> = dyn FnMut(&[u8]) -> Result<(), Nf4Error> + Send + 's;

/// Where the tensors come from.
pub(crate) trait Source {
    /// The tensor names (any order).
    fn names(&self) -> Vec<String>;
    /// The dtype of the bytes [`Source::stream`] gives, and the shape.
    fn info(&self, name: &str) -> Result<(Dtype, Vec<usize>), Nf4Error>;
    /// Streams the tensor's bytes to `sink`, in order, a piece at a time (whole elements).
    fn stream(&self, name: &str, sink: &mut Sink<'_>) -> Result<(), Nf4Error>;
    /// Whether the streamed bytes are exactly those in the source folder's weight file (then a
    /// kept tensor is copied file to file).
    fn same_as_file(&self, name: &str) -> bool;
}

/// A model folder on disk.
pub(crate) struct FolderSource<'a> {
    pub model: &'a HfModel,
}

/// Bytes handed on at a time when streaming a tensor from a file.
const FILE_PIECE: usize = 4 << 20;

impl Source for FolderSource<'_> {
    fn names(&self) -> Vec<String> {
        self.model
            .tensor_names()
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn info(&self, name: &str) -> Result<(Dtype, Vec<usize>), Nf4Error> {
        let t = self.model.tensor(name).map_err(|source| Nf4Error::Model {
            dir: self.model.dir().to_path_buf(),
            source,
        })?;
        Ok((t.dtype, t.shape.to_vec()))
    }

    fn stream(&self, name: &str, sink: &mut Sink<'_>) -> Result<(), Nf4Error> {
        let t = self.model.tensor(name).map_err(|source| Nf4Error::Model {
            dir: self.model.dir().to_path_buf(),
            source,
        })?;
        let mut start = 0;
        for piece in t.data.chunks(FILE_PIECE) {
            sink(piece)?;
            self.model.release_range(name, start..start + piece.len());
            start += piece.len();
        }
        self.model.release(name);
        Ok(())
    }

    fn same_as_file(&self, _name: &str) -> bool {
        true
    }
}

/// A merge in progress: the merged tensors as the 16-bit merge would write them.
pub(crate) struct MergeSource<'a> {
    pub merged: &'a MergedTensors,
}

impl Source for MergeSource<'_> {
    fn names(&self) -> Vec<String> {
        self.merged
            .tensor_names()
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn info(&self, name: &str) -> Result<(Dtype, Vec<usize>), Nf4Error> {
        let shape = self
            .merged
            .base()
            .tensor(name)
            .map_err(|source| Nf4Error::Model {
                dir: self.merged.base().dir().to_path_buf(),
                source,
            })?
            .shape
            .to_vec();
        Ok((self.merged.output_dtype(name)?, shape))
    }

    fn stream(&self, name: &str, sink: &mut Sink<'_>) -> Result<(), Nf4Error> {
        let mut failed = None;
        self.merged
            .stream(name, &mut |piece: &[u8]| match sink(piece) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            })?;
        failed.map_or(Ok(()), Err)
    }

    fn same_as_file(&self, name: &str) -> bool {
        !self.merged.changes(name)
            && self
                .merged
                .base()
                .tensor(name)
                .ok()
                .zip(self.merged.output_dtype(name).ok())
                .is_some_and(|(t, out)| t.dtype == out)
    }
}

/// The rest of what the writer needs besides the tensors.
pub(crate) struct Inputs {
    /// Where the config came from (for error messages).
    pub config_path: PathBuf,
    /// The 16-bit model's `config.json`.
    pub config_text: String,
    /// Files copied into the output when present: (name in the output, source path).
    pub side_files: Vec<(String, PathBuf)>,
    /// The folder whose `*.safetensors` files hold the source's unchanged tensors.
    pub weights_dir: PathBuf,
}

/// One weight after pass 1.
struct Quantized {
    /// Where its packed codes and then its quantized block scales are in the spill file.
    spill_at: u64,
    packed_len: u64,
    absmax_len: u64,
    nested_absmax: Vec<u8>,
    json: String,
}

/// What an output tensor's bytes are.
enum Data {
    /// A tensor kept in the model dtype.
    Kept(String),
    /// Bytes of the spill file.
    Spill(u64),
    /// Small bytes held in memory.
    Bytes(Vec<u8>),
}

/// One tensor of the output, in state-dict order.
struct Out {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    len: u64,
    data: Data,
}

/// Whether `name` is a Linear weight that transformers quantizes.
fn is_linear(name: &str, shape: &[usize]) -> bool {
    name.ends_with(".weight")
        && shape.len() == 2
        && (name.contains(".layers.") || name.starts_with("layers."))
}

/// Streams NF4 quantization: full blocks are quantized as they arrive (their codes written to
/// the spill file), the bytes of an incomplete block wait for the next piece.
struct BlockStream<'a> {
    dtype: Dtype,
    workers: usize,
    carry: Vec<u8>,
    absmax: Vec<f32>,
    finite: bool,
    spill: &'a File,
    spill_path: &'a Path,
    spill_end: u64,
}

impl BlockStream<'_> {
    fn push(&mut self, mut bytes: &[u8]) -> Result<(), Nf4Error> {
        let block = BLOCKSIZE * self.dtype.size();
        if !self.carry.is_empty() {
            let take = (block - self.carry.len()).min(bytes.len());
            self.carry.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.carry.len() < block {
                return Ok(());
            }
            let carry = std::mem::take(&mut self.carry);
            self.blocks(&carry)?;
        }
        let full = bytes.len() / block * block;
        if full > 0 {
            self.blocks(&bytes[..full])?;
        }
        self.carry.extend_from_slice(&bytes[full..]);
        Ok(())
    }

    /// Quantizes `bytes` (whole blocks, or the final tail) and appends the codes to the spill.
    fn blocks(&mut self, bytes: &[u8]) -> Result<(), Nf4Error> {
        let size = self.dtype.size();
        let dtype = self.dtype;
        let n = bytes.len() / size;
        let decode = |start: usize, out: &mut [f32]| {
            decode_f32(dtype, &bytes[start * size..(start + out.len()) * size], out);
        };
        let (packed, absmax, finite) = quantize_blocks_checked(n, &decode, self.workers);
        self.finite &= finite;
        self.absmax.extend_from_slice(&absmax);
        self.spill
            .write_all_at(&packed, self.spill_end)
            .map_err(io(self.spill_path))?;
        self.spill_end += packed.len() as u64;
        Ok(())
    }

    /// Quantizes the tail, if any; returns the block scales and whether every value was finite.
    fn finish(mut self) -> Result<(Vec<f32>, bool, u64), Nf4Error> {
        if !self.carry.is_empty() {
            let carry = std::mem::take(&mut self.carry);
            self.blocks(&carry)?;
        }
        Ok((self.absmax, self.finite, self.spill_end))
    }
}

/// Writes the merged_4bit folder `out` from `source`. See the module docs.
pub(crate) fn write_nf4(
    source: &dyn Source,
    inputs: Inputs,
    out: &Path,
    options: &Nf4Options,
    reporter: &dyn Reporter,
) -> Result<Nf4Report, Nf4Error> {
    let Inputs {
        config_path,
        config_text,
        side_files,
        weights_dir,
    } = inputs;
    let config: serde_json::Value =
        serde_json::from_str(&config_text).map_err(|e| Nf4Error::Config {
            path: config_path.clone(),
            reason: e.to_string(),
        })?;
    let names = source.names();
    let dtype = match config_dtype(&config) {
        Some(d) => d,
        None => match names.first() {
            Some(first) => source.info(first)?.0,
            None => {
                return Err(Nf4Error::Config {
                    path: config_path,
                    reason: "no dtype in config.json and no tensors".into(),
                })
            }
        },
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let torch_threads = options.torch_threads.unwrap_or(cpus);
    let workers = options.threads.unwrap_or(cpus);

    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".merged_4bit-")
        .tempdir_in(&parent)
        .map_err(io(&parent))?;
    let spill_path = tmp.path().join("(spill)");
    let spill = tempfile::tempfile_in(tmp.path()).map_err(io(&spill_path))?;

    // Pass 1: quantize every Linear weight.
    reporter.begin("quantize nf4", Some(names.len() as u64));
    let mut infos = HashMap::new();
    let mut quantized: HashMap<String, Quantized> = HashMap::new();
    let mut spill_end = 0u64;
    for name in &names {
        let (t_dtype, shape) = source.info(name)?;
        if !is_linear(name, &shape) {
            infos.insert(name.clone(), (t_dtype, shape));
            continue;
        }
        reporter.message(name);
        let n: usize = shape.iter().product();
        if n == 0 {
            return Err(Nf4Error::BadShape {
                tensor: name.clone(),
                shape,
            });
        }
        let mut blocks = BlockStream {
            dtype: t_dtype,
            workers,
            carry: Vec::new(),
            absmax: Vec::with_capacity(n.div_ceil(BLOCKSIZE)),
            finite: true,
            spill: &spill,
            spill_path: &spill_path,
            spill_end,
        };
        source.stream(name, &mut |piece: &[u8]| blocks.push(piece))?;
        let packed_at = spill_end;
        let (absmax, finite, end) = blocks.finish()?;
        if !finite {
            return Err(Nf4Error::NonFinite {
                tensor: name.clone(),
            });
        }
        let q = double_quantize(Vec::new(), absmax, torch_threads);
        spill
            .write_all_at(&q.absmax, end)
            .map_err(io(&spill_path))?;
        spill_end = end + q.absmax.len() as u64;
        quantized.insert(
            name.clone(),
            Quantized {
                spill_at: packed_at,
                packed_len: end - packed_at,
                absmax_len: q.absmax.len() as u64,
                nested_absmax: q
                    .nested_absmax
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
                json: quant_state_json(dtype, &shape, q.offset),
            },
        );
        infos.insert(name.clone(), (t_dtype, shape));
        reporter.advance(1);
    }

    // Layout: the 4-bit state dict (each quantized weight with its five quant-state tensors),
    // in the order save_pretrained shards it.
    let f32_bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let nf4_map = f32_bytes(&nf4_code());
    let dynamic_map = f32_bytes(&dynamic_code());
    let mut outs: Vec<Out> = Vec::new();
    let mut total_parameters = 0u64;
    for name in &names {
        let (_, shape) = &infos[name];
        let n: usize = shape.iter().product();
        let Some(q) = quantized.get(name) else {
            outs.push(Out {
                name: name.clone(),
                dtype: dtype.safetensors_name(),
                shape: shape.clone(),
                len: (n * dtype.size()) as u64,
                data: Data::Kept(name.clone()),
            });
            total_parameters += n as u64;
            continue;
        };
        let packed = n.div_ceil(2);
        // transformers' num_parameters counts a Params4bit as 2 × its packed bytes
        total_parameters += 2 * packed as u64;
        let blocks = n.div_ceil(BLOCKSIZE);
        let mut part =
            |suffix: &str, dtype: &'static str, shape: Vec<usize>, len: u64, data: Data| {
                outs.push(Out {
                    name: format!("{name}{suffix}"),
                    dtype,
                    shape,
                    len,
                    data,
                })
            };
        part(
            "",
            "U8",
            vec![packed, 1],
            q.packed_len,
            Data::Spill(q.spill_at),
        );
        part(
            ".absmax",
            "U8",
            vec![blocks],
            q.absmax_len,
            Data::Spill(q.spill_at + q.packed_len),
        );
        part(
            ".quant_map",
            "F32",
            vec![16],
            64,
            Data::Bytes(nf4_map.clone()),
        );
        part(
            ".nested_absmax",
            "F32",
            vec![blocks.div_ceil(NESTED_BLOCKSIZE)],
            q.nested_absmax.len() as u64,
            Data::Bytes(q.nested_absmax.clone()),
        );
        part(
            ".nested_quant_map",
            "F32",
            vec![256],
            1024,
            Data::Bytes(dynamic_map.clone()),
        );
        part(
            ".quant_state.bitsandbytes__nf4",
            "U8",
            vec![q.json.len()],
            q.json.len() as u64,
            Data::Bytes(q.json.clone().into_bytes()),
        );
    }
    sort_like_save_pretrained(&mut outs, |o| &o.name);
    let sizes: Vec<u64> = outs.iter().map(|o| o.len).collect();
    let total_size: u64 = sizes.iter().sum();
    let shards = split_shards(
        &sizes,
        options.max_shard_size.unwrap_or(DEFAULT_MAX_SHARD_SIZE),
    );

    // Pass 2: every file at its final size, then each tensor at its offset.
    let mut files = Vec::with_capacity(shards.len());
    let mut at: Vec<(usize, u64)> = vec![(0, 0); outs.len()]; // (file, position) of each out
    let mut weight_map = BTreeMap::new();
    let mut bytes = 0u64;
    for (k, members) in shards.iter().enumerate() {
        let file_name = shard_file_name(k, shards.len());
        let mut entries: Vec<HeaderEntry<'_>> = members
            .iter()
            .map(|&i| {
                let o = &outs[i];
                HeaderEntry {
                    index: i,
                    name: &o.name,
                    dtype: o.dtype,
                    shape: &o.shape,
                    len: o.len,
                }
            })
            .collect();
        let (prefix, offsets) = header(&mut entries);
        let data_len: u64 = entries.iter().map(|e| e.len).sum();
        let path = tmp.path().join(&file_name);
        let file = File::create(&path).map_err(io(&path))?;
        file.set_len(prefix.len() as u64 + data_len)
            .map_err(io(&path))?;
        file.write_all_at(&prefix, 0).map_err(io(&path))?;
        for (e, offset) in entries.iter().zip(offsets) {
            at[e.index] = (k, prefix.len() as u64 + offset);
            weight_map.insert(e.name.to_string(), file_name.clone());
        }
        bytes += prefix.len() as u64 + data_len;
        files.push((file_name, path, file));
    }

    let locations = tensor_locations(&weights_dir);
    let mut kept = 0usize;
    std::thread::scope(|scope| -> Result<(), Nf4Error> {
        // A helper thread asks the kernel to write each piece out as soon as it is in the page
        // cache, so the disk works while the next tensors are produced and the final fsync has
        // little left to do.
        let (tx, rx) = std::sync::mpsc::channel::<(usize, u64, usize)>();
        let files_ref = &files;
        scope.spawn(move || {
            for (k, pos, len) in rx {
                start_writeback(&files_ref[k].2, pos, len);
            }
        });
        for (o, &(k, pos)) in outs.iter().zip(&at) {
            let (_, path, file) = &files[k];
            let hint = |pos: u64, len: usize| {
                let _ = tx.send((k, pos, len)); // a hint: a gone helper only costs time
            };
            match &o.data {
                Data::Bytes(b) => file.write_all_at(b, pos).map_err(io(path))?,
                Data::Spill(from) => {
                    copy_in_pieces(&spill, *from, file, pos, o.len, &hint)
                        .map_err(io(&spill_path))?;
                }
                Data::Kept(name) => {
                    reporter.message(name);
                    let (t_dtype, _) = &infos[name];
                    let located = locations.get(name.as_str()).filter(|l| {
                        *t_dtype == dtype && l.len == o.len && source.same_as_file(name)
                    });
                    if let Some(l) = located {
                        copy_in_pieces(&l.file, l.offset, file, pos, l.len, &hint)
                            .map_err(io(&l.path))?;
                    } else {
                        let t_dtype = *t_dtype;
                        let mut pos = pos;
                        let mut values = Vec::new();
                        let mut converted = Vec::new();
                        source.stream(name, &mut |piece: &[u8]| {
                            let bytes = if t_dtype == dtype {
                                piece
                            } else {
                                values.resize(piece.len() / t_dtype.size(), 0f32);
                                decode_f32(t_dtype, piece, &mut values);
                                converted.resize(values.len() * dtype.size(), 0u8);
                                encode_f32(dtype, &values, &mut converted);
                                &converted
                            };
                            file.write_all_at(bytes, pos).map_err(io(path))?;
                            hint(pos, bytes.len());
                            pos += bytes.len() as u64;
                            Ok(())
                        })?;
                    }
                    kept += 1;
                    reporter.advance(1);
                }
            }
        }
        Ok(())
    })?;
    drop(spill);
    for (_, path, file) in &files {
        file.sync_all().map_err(io(path))?;
    }
    let weight_files: Vec<String> = files.iter().map(|(name, _, _)| name.clone()).collect();
    drop(files);
    if weight_files.len() > 1 {
        let path = tmp.path().join(INDEX_FILE);
        std::fs::write(&path, index_json(total_parameters, total_size, weight_map))
            .map_err(io(&path))?;
    }

    let new_config = match insert_quantization_config(&config_text, dtype) {
        Some(t) => t,
        None => {
            // Not transformers' layout: re-serialise (values equal, formatting may differ).
            let mut v = config.clone();
            let q: serde_json::Value =
                serde_json::from_str(&format!("{{{}}}", quantization_config_block(dtype)))
                    .map_err(|e| Nf4Error::Config {
                        path: config_path.clone(),
                        reason: e.to_string(),
                    })?;
            if let (Some(obj), Some(qobj)) = (v.as_object_mut(), q.as_object()) {
                obj.extend(qobj.clone());
            }
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
    };
    let cfg_out = tmp.path().join(CONFIG_FILE);
    std::fs::write(&cfg_out, new_config).map_err(io(&cfg_out))?;
    for (name, from) in &side_files {
        if from.is_file() {
            let dst = tmp.path().join(name);
            std::fs::copy(from, &dst).map_err(io(&dst))?;
        }
    }
    let kept_dir = tmp.keep();
    std::fs::rename(&kept_dir, out).map_err(|source| {
        let _ = std::fs::remove_dir_all(&kept_dir);
        Nf4Error::Io {
            path: out.to_path_buf(),
            source,
        }
    })?;
    reporter.finish();
    Ok(Nf4Report {
        out_dir: out.to_path_buf(),
        quantized: quantized.len(),
        kept,
        dtype,
        bytes,
        weight_files,
    })
}

/// Bytes copied (and handed to the writeback helper) at a time.
const WRITE_PIECE: u64 = 8 << 20;

/// Copies `len` bytes at `from_pos` of `from` to `to_pos` of `to`, a piece at a time, calling
/// `written` after each piece.
fn copy_in_pieces(
    from: &File,
    from_pos: u64,
    to: &File,
    to_pos: u64,
    len: u64,
    written: &dyn Fn(u64, usize),
) -> std::io::Result<()> {
    let (mut from_pos, mut to_pos, mut left) = (from_pos, to_pos, len);
    while left > 0 {
        let n = left.min(WRITE_PIECE);
        copy_range(from, from_pos, to, to_pos, n)?;
        written(to_pos, n as usize);
        (from_pos, to_pos, left) = (from_pos + n, to_pos + n, left - n);
    }
    Ok(())
}

/// Where a tensor's bytes lie in a weight file of the source folder.
struct Location {
    file: File,
    path: PathBuf,
    offset: u64,
    len: u64,
}

/// The tensors of `src`'s `*.safetensors` files, so kept tensors are copied file to file by the
/// kernel (`copy_file_range`) instead of through the memory map; tensors missing here (any
/// file that cannot be read) are copied from the map.
fn tensor_locations(src: &Path) -> std::collections::HashMap<String, Location> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir(src) else {
        return out;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        if path.extension() != Some(std::ffi::OsStr::new("safetensors")) {
            continue;
        }
        let (Ok(header), Ok(file)) = (read_safetensors_header(&path), File::open(&path)) else {
            continue;
        };
        for t in header.tensors {
            let (Ok(file), (begin, end)) = (file.try_clone(), t.data_offsets) else {
                continue;
            };
            out.insert(
                t.name,
                Location {
                    file,
                    path: path.clone(),
                    offset: header.data_start + begin,
                    len: end - begin,
                },
            );
        }
    }
    out
}

/// Copies `len` bytes at `from_pos` of `from` to `to_pos` of `to` (std's `io::copy` between
/// files is `copy_file_range` on Linux: no pass through user memory).
fn copy_range(from: &File, from_pos: u64, to: &File, to_pos: u64, len: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let (mut from, mut to) = (from, to);
    from.seek(SeekFrom::Start(from_pos))?;
    to.seek(SeekFrom::Start(to_pos))?;
    let copied = std::io::copy(&mut from.take(len), &mut to)?;
    if copied != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Asks the kernel to start writing `len` bytes at `pos` to disk now, so that the final fsync
/// finds most of the file already written (the disk works while the next weights are
/// quantized). Only a hint: errors are ignored, the fsync at the end is what counts.
fn start_writeback(file: &File, pos: u64, len: usize) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(pos), Ok(len)) = (i64::try_from(pos), i64::try_from(len)) else {
            return;
        };
        // SAFETY: plain syscall on an open descriptor we own; no memory is passed.
        let _ = unsafe {
            libc::sync_file_range(file.as_raw_fd(), pos, len, libc::SYNC_FILE_RANGE_WRITE)
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, pos, len);
}
