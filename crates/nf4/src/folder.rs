//! Hugging Face model folder (16/32-bit) → the folder transformers' `save_pretrained` writes for
//! it loaded in 4-bit NF4 with double quantization.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use loraforge_hf_model::{
    decode_f32, encode_f32, read_safetensors_header, Dtype, HfModel, TensorView, CONFIG_FILE,
    SINGLE_FILE,
};
use loraforge_progress::Reporter;

use crate::quant::{
    block_absmax_streamed, dynamic_code, nf4_code, quantize_nf4_checked, quantize_nf4_streamed,
    BLOCKSIZE, NESTED_BLOCKSIZE,
};
use crate::torch_sum::torch_mean;
use crate::Nf4Error;

/// `model_type`s whose Linear layers are exactly the 2-D `*.weight` tensors under `layers.N.`.
pub const SUPPORTED_MODEL_TYPES: &[&str] =
    &["llama", "mistral", "qwen2", "gemma", "gemma2", "phi3"];

/// Files copied next to the weights when present (the tokenizer, so the folder is usable).
const COPIED_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
];

/// Options of [`quantize_folder`].
#[derive(Debug, Clone, Default)]
pub struct Nf4Options {
    /// Intra-op threads of the torch whose output should be matched (only weights with more
    /// than 32768 blocks of 64 — above 2 M elements — depend on it); default: the number of
    /// CPUs, torch's own default on most machines.
    pub torch_threads: Option<usize>,
    /// Threads quantizing each weight (default: the number of CPUs); the bytes do not depend
    /// on it.
    pub threads: Option<usize>,
    /// Bytes of packed codes the first pass may keep for the second (default 128 MiB): the
    /// weights that fit are read and quantized once instead of twice; the bytes do not depend
    /// on it.
    pub cache_bytes: Option<usize>,
}

/// What [`quantize_folder`] wrote.
#[derive(Debug, Clone)]
pub struct Nf4Report {
    /// The output folder.
    pub out_dir: PathBuf,
    /// The weights quantized to NF4.
    pub quantized: usize,
    /// The tensors kept in the model dtype.
    pub kept: usize,
    /// The model dtype (`bnb_4bit_compute_dtype`).
    pub dtype: Dtype,
    /// Bytes of `model.safetensors`.
    pub bytes: u64,
}

enum Plan {
    Keep,
    Quantize,
}

struct Entry {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    len: u64,
    offset: u64,
}

/// Python's `repr(float)` (what `json.dumps` writes for `nested_offset`).
pub(crate) fn python_float_repr(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sci = format!("{x:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mant) = mant.strip_prefix('-').map_or(("", mant), |m| ("-", m));
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    if !(-4..16).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1;
    if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!(
            "{sign}{digits}{}.0",
            "0".repeat(point as usize - digits.len())
        )
    } else {
        let (a, b) = digits.split_at(point as usize);
        format!("{sign}{a}.{b}")
    }
}

/// The packed `quant_state.bitsandbytes__nf4` JSON of `QuantState.as_dict(packed=True)`.
pub(crate) fn quant_state_json(dtype: Dtype, shape: &[usize], offset: f32) -> String {
    let shape: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!(
        "{{\"quant_type\": \"nf4\", \"blocksize\": {BLOCKSIZE}, \"dtype\": \"{}\", \"shape\": [{}], \
         \"nested_blocksize\": {NESTED_BLOCKSIZE}, \"nested_dtype\": \"float32\", \"nested_offset\": {}}}",
        dtype.config_name(),
        shape.join(", "),
        python_float_repr(offset as f64)
    )
}

/// `BitsAndBytesConfig(...).to_dict()` as transformers writes it into config.json (indent 2,
/// nested under the top level).
fn quantization_config_block(dtype: Dtype) -> String {
    format!(
        "  \"quantization_config\": {{\n    \"_load_in_4bit\": true,\n    \"_load_in_8bit\": false,\n    \
         \"bnb_4bit_compute_dtype\": \"{}\",\n    \"bnb_4bit_quant_storage\": \"uint8\",\n    \
         \"bnb_4bit_quant_type\": \"nf4\",\n    \"bnb_4bit_use_double_quant\": true,\n    \
         \"llm_int8_enable_fp32_cpu_offload\": false,\n    \"llm_int8_has_fp16_weight\": false,\n    \
         \"llm_int8_skip_modules\": null,\n    \"llm_int8_threshold\": 6.0,\n    \"load_in_4bit\": true,\n    \
         \"load_in_8bit\": false,\n    \"quant_method\": \"bitsandbytes\"\n  }}",
        dtype.config_name()
    )
}

/// Inserts `quantization_config` into a config.json written by transformers (keys sorted,
/// indent 2), at its sorted place, leaving every other byte as it was.
pub(crate) fn insert_quantization_config(text: &str, dtype: Dtype) -> Option<String> {
    let block = quantization_config_block(dtype);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let is_top_key = |l: &str| l.starts_with("  \"") && !l.starts_with("   ");
    let key_of = |l: &str| l[3..].split('"').next().map(str::to_string);
    let mut out = String::with_capacity(text.len() + block.len() + 2);
    let mut inserted = false;
    let mut last_top = None;
    for (i, l) in lines.iter().enumerate() {
        if is_top_key(l) {
            last_top = Some(i);
            if !inserted && key_of(l).is_some_and(|k| k.as_str() > "quantization_config") {
                out.push_str(&block);
                out.push_str(",\n");
                inserted = true;
            }
        }
        out.push_str(l);
    }
    if inserted {
        return Some(out);
    }
    // Last key: append after the final top-level entry, before the closing brace.
    let last = last_top?;
    let close = lines.iter().rposition(|l| l.trim_end() == "}")?;
    if close <= last {
        return None;
    }
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i == close {
            out.push_str(&block);
            out.push('\n');
        }
        if i + 1 == close && l.ends_with('\n') {
            out.push_str(&l[..l.len() - 1]);
            out.push_str(",\n");
            continue;
        }
        out.push_str(l);
    }
    Some(out)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Nf4Error + '_ {
    move |source| Nf4Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Quantizes the model folder `src` into the new folder `out`: `model.safetensors` and
/// `config.json` as transformers' `save_pretrained` writes them for the model loaded with
/// `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
/// bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=<model dtype>)` on CPU; the
/// generation config and tokenizer files are copied.
///
/// Nothing appears at `out` unless everything succeeded (temp folder renamed into place).
pub fn quantize_folder(
    src: &Path,
    out: &Path,
    options: &Nf4Options,
    reporter: &dyn Reporter,
) -> Result<Nf4Report, Nf4Error> {
    if out.exists() {
        return Err(Nf4Error::OutputExists {
            path: out.to_path_buf(),
        });
    }
    let config_path = src.join(CONFIG_FILE);
    let config_text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let config: serde_json::Value =
        serde_json::from_str(&config_text).map_err(|e| Nf4Error::Config {
            path: config_path.clone(),
            reason: e.to_string(),
        })?;
    if let Some(q) = config.get("quantization_config") {
        return Err(Nf4Error::AlreadyQuantized {
            path: config_path,
            method: q
                .get("quant_method")
                .and_then(|m| m.as_str())
                .unwrap_or("unknown")
                .to_string(),
        });
    }
    let model_type = config
        .get("model_type")
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_string();
    if !SUPPORTED_MODEL_TYPES.contains(&model_type.as_str()) {
        return Err(Nf4Error::UnsupportedArchitecture {
            model_type,
            supported: SUPPORTED_MODEL_TYPES.join(", "),
        });
    }
    let model = HfModel::open(src).map_err(|source| Nf4Error::Model {
        dir: src.to_path_buf(),
        source,
    })?;
    let names: Vec<String> = model.tensor_names().iter().map(|s| s.to_string()).collect();
    let first = names
        .first()
        .map(|n| model.tensor(n))
        .transpose()
        .map_err(|source| Nf4Error::Model {
            dir: src.to_path_buf(),
            source,
        })?;
    let dtype = model
        .config_dtype()
        .or(first.map(|t| t.dtype))
        .ok_or_else(|| Nf4Error::Config {
            path: config_path.clone(),
            reason: "no dtype in config.json and no tensors".into(),
        })?;
    let threads = options
        .torch_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let workers = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let tensor = |name: &str| {
        model.tensor(name).map_err(|source| Nf4Error::Model {
            dir: src.to_path_buf(),
            source,
        })
    };

    // Plan: which tensors are Linear weights (quantized) and the offsets of every output tensor.
    // Pass 1 computes each weight's block scales to learn its `nested_offset` (the JSON's
    // length is part of the header); pass 2 quantizes and writes. Pass 1 quantizes the first
    // weights outright and keeps them (up to `cache_bytes` of codes), so that those are read
    // and quantized once; the rest get only their scales in pass 1.
    let mut cache = std::collections::HashMap::new();
    let mut cached_bytes = 0usize;
    let cache_limit = options.cache_bytes.unwrap_or(CACHE_BYTES);
    let mut plans = Vec::new();
    let mut entries: Vec<(Entry, u8)> = Vec::new();
    let mut offsets_json = std::collections::HashMap::new();
    for name in &names {
        let t = tensor(name)?;
        let linear = name.ends_with(".weight")
            && t.shape.len() == 2
            && (name.contains(".layers.") || name.starts_with("layers."));
        if !linear {
            entries.push((
                Entry {
                    name: name.clone(),
                    dtype: dtype.safetensors_name(),
                    shape: t.shape.to_vec(),
                    len: (t.element_count() * dtype.size()) as u64,
                    offset: 0,
                },
                rank(dtype.safetensors_name()),
            ));
            plans.push((name.clone(), Plan::Keep));
            continue;
        }
        let n = t.element_count();
        if n == 0 {
            return Err(Nf4Error::BadShape {
                tensor: name.clone(),
                shape: t.shape.to_vec(),
            });
        }
        let non_finite = || Nf4Error::NonFinite {
            tensor: name.clone(),
        };
        let nested_offset = if cached_bytes + n.div_ceil(2) <= cache_limit {
            let q =
                quantize_nf4_checked(n, &decoder(&t), threads, workers).ok_or_else(non_finite)?;
            cached_bytes += q.packed.len();
            let offset = q.offset;
            cache.insert(name.clone(), q);
            offset
        } else {
            let (absmax, finite) = block_absmax_streamed(n, &decoder(&t), workers);
            if !finite {
                return Err(non_finite());
            }
            torch_mean(&absmax, threads)
        };
        let json = quant_state_json(dtype, t.shape, nested_offset);
        model.release(name);
        let blocks = n.div_ceil(BLOCKSIZE);
        let u8e = |suffix: &str, len: usize, shape: Vec<usize>| {
            (
                Entry {
                    name: format!("{name}{suffix}"),
                    dtype: "U8",
                    shape,
                    len: len as u64,
                    offset: 0,
                },
                rank("U8"),
            )
        };
        let f32e = |suffix: &str, len: usize| {
            (
                Entry {
                    name: format!("{name}{suffix}"),
                    dtype: "F32",
                    shape: vec![len],
                    len: (len * 4) as u64,
                    offset: 0,
                },
                rank("F32"),
            )
        };
        entries.push(u8e("", n.div_ceil(2), vec![n.div_ceil(2), 1]));
        entries.push(u8e(".absmax", blocks, vec![blocks]));
        entries.push(f32e(".quant_map", 16));
        entries.push(f32e(".nested_absmax", blocks.div_ceil(NESTED_BLOCKSIZE)));
        entries.push(f32e(".nested_quant_map", 256));
        entries.push(u8e(
            ".quant_state.bitsandbytes__nf4",
            json.len(),
            vec![json.len()],
        ));
        offsets_json.insert(name.clone(), json);
        plans.push((name.clone(), Plan::Quantize));
    }
    // The safetensors library's layout: dtype descending (F32 > BF16 > F16 > U8), then name.
    entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.name.cmp(&b.0.name)));
    let mut header = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    let mut offset = 0u64;
    for (e, _) in entries.iter_mut() {
        e.offset = offset;
        let shape: Vec<String> = e.shape.iter().map(|d| d.to_string()).collect();
        header.push_str(&format!(
            ",{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            serde_json::Value::String(e.name.clone()),
            e.dtype,
            shape.join(","),
            offset,
            offset + e.len
        ));
        offset += e.len;
    }
    header.push('}');
    let mut header = header.into_bytes();
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let data_start = 8 + header.len() as u64;
    let total = data_start + offset;
    let at: std::collections::HashMap<&str, u64> = entries
        .iter()
        .map(|(e, _)| (e.name.as_str(), data_start + e.offset))
        .collect();

    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".merged_4bit-")
        .tempdir_in(&parent)
        .map_err(io(&parent))?;
    let st_path = tmp.path().join(SINGLE_FILE);
    let file = File::create(&st_path).map_err(io(&st_path))?;
    file.set_len(total).map_err(io(&st_path))?;
    let mut prefix = (header.len() as u64).to_le_bytes().to_vec();
    prefix.extend_from_slice(&header);
    file.write_all_at(&prefix, 0).map_err(io(&st_path))?;
    let f32_bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let nf4 = f32_bytes(&nf4_code());
    let dynamic = f32_bytes(&dynamic_code());
    let locations = tensor_locations(src);
    reporter.begin("quantize nf4", Some(plans.len() as u64));
    // A helper thread asks the kernel to write each piece out as soon as it is in the page
    // cache, so the disk works while the next weights are quantized and the final fsync has
    // little left to do (the pass is otherwise compute, then a long fsync).
    let (quantized, kept) = std::thread::scope(|scope| -> Result<(usize, usize), Nf4Error> {
        let (tx, rx) = std::sync::mpsc::channel::<(u64, usize)>();
        let file_ref = &file;
        scope.spawn(move || {
            for (pos, len) in rx {
                start_writeback(file_ref, pos, len);
            }
        });
        let put = |name: &str, bytes: &[u8]| -> Result<(), Nf4Error> {
            let mut pos = at.get(name).copied().unwrap_or(0);
            for piece in bytes.chunks(WRITE_PIECE) {
                file.write_all_at(piece, pos).map_err(io(&st_path))?;
                let _ = tx.send((pos, piece.len())); // a hint: a gone helper only costs time
                pos += piece.len() as u64;
            }
            Ok(())
        };
        let (mut quantized, mut kept) = (0usize, 0usize);
        for (name, plan) in &plans {
            let t = tensor(name)?;
            reporter.message(name);
            match plan {
                Plan::Keep => {
                    let located = locations
                        .get(name.as_str())
                        .filter(|l| t.dtype == dtype && l.len == t.data.len() as u64);
                    if let Some(l) = located {
                        let mut pos = at.get(name.as_str()).copied().unwrap_or(0);
                        let mut from = l.offset;
                        let mut left = l.len;
                        while left > 0 {
                            let len = left.min(WRITE_PIECE as u64);
                            copy_range(&l.file, from, &file, pos, len).map_err(io(&l.path))?;
                            let _ = tx.send((pos, len as usize)); // a hint, as in `put`
                            (pos, from, left) = (pos + len, from + len, left - len);
                        }
                    } else if t.dtype == dtype {
                        put(name, t.data)?;
                    } else {
                        let values = t.to_f32_vec();
                        let mut bytes = vec![0u8; values.len() * dtype.size()];
                        encode_f32(dtype, &values, &mut bytes);
                        put(name, &bytes)?;
                    }
                    kept += 1;
                }
                Plan::Quantize => {
                    let q = match cache.remove(name) {
                        Some(q) => q,
                        None => {
                            quantize_nf4_streamed(t.element_count(), &decoder(&t), threads, workers)
                        }
                    };
                    put(name, &q.packed)?;
                    put(&format!("{name}.absmax"), &q.absmax)?;
                    put(&format!("{name}.quant_map"), &nf4)?;
                    put(
                        &format!("{name}.nested_absmax"),
                        &f32_bytes(&q.nested_absmax),
                    )?;
                    put(&format!("{name}.nested_quant_map"), &dynamic)?;
                    let json = offsets_json.get(name).map(String::as_str).unwrap_or("");
                    put(
                        &format!("{name}.quant_state.bitsandbytes__nf4"),
                        json.as_bytes(),
                    )?;
                    quantized += 1;
                }
            }
            model.release(name);
            reporter.advance(1);
        }
        Ok((quantized, kept))
    })?;
    file.sync_all().map_err(io(&st_path))?;
    drop(file);

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
    for f in COPIED_FILES {
        let p = src.join(f);
        if p.is_file() {
            let dst = tmp.path().join(f);
            std::fs::copy(&p, &dst).map_err(io(&dst))?;
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
        quantized,
        kept,
        dtype,
        bytes: total,
    })
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

/// Reads a tensor's elements as f32 a range at a time (no weight-sized copy).
fn decoder<'a>(t: &'a TensorView<'a>) -> impl Fn(usize, &mut [f32]) + Sync + 'a {
    let size = t.dtype.size();
    move |start, out: &mut [f32]| {
        decode_f32(
            t.dtype,
            &t.data[start * size..(start + out.len()) * size],
            out,
        );
    }
}

/// Default of [`Nf4Options::cache_bytes`].
const CACHE_BYTES: usize = 128 << 20;

/// Bytes written (and handed to the writeback helper) at a time.
const WRITE_PIECE: usize = 8 << 20;

/// Order of dtypes in a safetensors file (the library sorts by its `Dtype` enum, descending).
fn rank(dtype: &str) -> u8 {
    match dtype {
        "F32" => 3,
        "BF16" => 2,
        "F16" => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        assert_eq!(
            python_float_repr(0.05262501910328865),
            "0.05262501910328865"
        );
        assert_eq!(python_float_repr(1e-05), "1e-05");
        assert_eq!(python_float_repr(1.5e-7), "1.5e-07");
        assert_eq!(python_float_repr(0.0001), "0.0001");
        assert_eq!(python_float_repr(3.0), "3.0");
        assert_eq!(python_float_repr(-0.25), "-0.25");
        assert_eq!(python_float_repr(1e16), "1e+16");
        assert_eq!(python_float_repr(123456.5), "123456.5");
    }

    #[test]
    fn quantization_config_goes_to_its_sorted_place() {
        let text = "{\n  \"a\": 1,\n  \"z\": {\n    \"q\": 2\n  }\n}\n";
        let out = insert_quantization_config(text, Dtype::BF16).unwrap();
        assert!(out.starts_with("{\n  \"a\": 1,\n  \"quantization_config\": {"));
        assert!(out.ends_with("  },\n  \"z\": {\n    \"q\": 2\n  }\n}\n"));
        let last = insert_quantization_config("{\n  \"a\": 1\n}\n", Dtype::F16).unwrap();
        assert!(last.starts_with("{\n  \"a\": 1,\n  \"quantization_config\""));
        let v: serde_json::Value = serde_json::from_str(&last).unwrap();
        assert_eq!(
            v["quantization_config"]["bnb_4bit_compute_dtype"],
            "float16"
        );
    }
}
