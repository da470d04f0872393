//! Hugging Face model folder → GGUF, like `convert_hf_to_gguf.py` (see the crate docs), and the
//! one entry point for every [`ExportTarget`]: a k-quant target quantizes the converter's
//! lossless stream as `quantize_file` would quantize the converter's file, and an adapter is
//! merged into the weights as they stream (one pass, no intermediate file).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use loraforge_adapter_merge::MergedModel;
use loraforge_gguf::{
    GgufWriter, Metadata, SourceError, TensorInfo, WriteOptions, MAX_TENSOR_NAME_LEN,
};
use loraforge_hf_model::Dtype;
use loraforge_progress::Reporter;
use loraforge_quantize::{llama_tensor_order, plan_tensor_types, FileType, GgmlType};
use serde_json::Value as Json;

use crate::arch::{self, Arch, Hparams, Transform};
use crate::data;
use crate::error::ConvertError;
use crate::pipeline::Ordered;
use crate::quantize_file::{
    check_supported, ggml_dims, quantize_piece, quantized_metadata, recipe_hparams, Named,
};
use crate::source::Weights;
use crate::vocab::{self, PreTokenizerSource};
use crate::ExportTarget;
use crate::QuantizeFileError;

/// One base model of the lineage (`general.base_model.N.*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseModel {
    /// `general.base_model.N.name`.
    pub name: Option<String>,
    /// `general.base_model.N.organization`.
    pub organization: Option<String>,
    /// `general.base_model.N.repo_url`.
    pub repo_url: Option<String>,
}

/// The `general.*` metadata the caller knows (from the model card, the registry …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeneralMetadata {
    /// `general.name`; default: the folder name, title-cased.
    pub name: Option<String>,
    /// `general.author`.
    pub author: Option<String>,
    /// `general.version`.
    pub version: Option<String>,
    /// `general.organization`.
    pub organization: Option<String>,
    /// `general.finetune`.
    pub finetune: Option<String>,
    /// `general.basename`.
    pub basename: Option<String>,
    /// `general.description`.
    pub description: Option<String>,
    /// `general.size_label`; default: computed from the parameter count like gguf-py.
    pub size_label: Option<String>,
    /// `general.license`.
    pub license: Option<String>,
    /// `general.url`.
    pub url: Option<String>,
    /// `general.repo_url`.
    pub repo_url: Option<String>,
    /// `general.base_model.*`.
    pub base_models: Vec<BaseModel>,
    /// `general.tags`.
    pub tags: Vec<String>,
    /// `general.languages`.
    pub languages: Vec<String>,
}

/// Options of [`convert`].
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// What to write (default: matrices in f16, like `convert_hf_to_gguf.py`).
    pub target: ExportTarget,
    /// `general.*` metadata.
    pub general: GeneralMetadata,
    /// Threads converting tensors, the writing thread included (default: one per CPU, as
    /// rayon counts them).
    pub threads: Option<usize>,
    /// Force `tokenizer.ggml.pre` (a llama.cpp pre-tokenizer name) for BPE tokenizers.
    pub pre_tokenizer: Option<String>,
    /// Compute the file's SHA-256 while writing it (default `false`: it costs about as much CPU
    /// as the write; Ollama's blob upload needs it, so the registry turns it on).
    pub sha256: bool,
    /// A PEFT LoRA adapter folder to merge into the model while converting it (one pass: the
    /// merged model is never written). The output is byte-identical to converting the folder
    /// `loraforge merge` writes (auto dtype, default 5 GB shards), provided `general.name` is
    /// the same: by default it comes from the base folder's name here, from the merged
    /// folder's name there ([`GeneralMetadata::name`] sets it). See the crate docs.
    pub adapter: Option<PathBuf>,
}

/// What [`convert`] wrote.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    /// The GGUF file.
    pub path: PathBuf,
    /// Number of tensors.
    pub tensors: usize,
    /// File size in bytes.
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the file, when [`ConvertOptions::sha256`] asked for it.
    pub sha256: Option<String>,
    /// Things the caller should know (pre-tokenizer guessed from its regex, Q8_0 fallbacks …).
    pub warnings: Vec<String>,
    /// `tokenizer.ggml.pre`.
    pub pre_tokenizer: Option<String>,
    /// How `tokenizer.ggml.pre` was decided.
    pub pre_tokenizer_source: Option<PreTokenizerSource>,
    /// GGUF `general.architecture`.
    pub architecture: String,
    /// `general.file_type` written.
    pub file_type: FileType,
    /// Total parameter count (sum of tensor elements).
    pub parameters: u64,
}

/// One tensor of the output, in file order.
struct Planned {
    src: usize,
    name: String,
    transform: Transform,
    ty: GgmlType,
    dims: Vec<u64>,
}

/// Exports the Hugging Face model folder `model_dir` to the GGUF file `out`, as
/// [`ConvertOptions::target`] says, merging [`ConvertOptions::adapter`] in on the way when one
/// is given. Every target is one pass over the weights: read, (merge,) convert and (quantize,)
/// write, with no intermediate file.
///
/// Nothing is written to `out` unless the whole export succeeds (temp file + rename).
pub fn convert(
    model_dir: &Path,
    out: &Path,
    options: &ConvertOptions,
    reporter: &dyn Reporter,
) -> Result<ConvertReport, ConvertError> {
    let report = match &options.adapter {
        Some(adapter) => convert_merged(model_dir, adapter, out, options, reporter)?,
        None => convert_with_threads(&Inputs::folder(model_dir), out, options, reporter)?,
    };
    reporter.checkpoint("convert-output");
    Ok(report)
}

/// Where a conversion reads from.
struct Inputs<'a> {
    /// `config.json`, the tokenizer files, `generation_config.json`.
    meta_dir: &'a Path,
    /// The safetensors weights.
    weights_dir: &'a Path,
    /// The folder whose name gives the default `general.name`.
    name_dir: &'a Path,
    /// The adapter merged into the weights on the way.
    merge: Option<&'a MergedModel>,
    /// With `merge`: the merged folder's weight files (tensor names per file, in order).
    merged_shards: Option<&'a [Vec<String>]>,
}

impl<'a> Inputs<'a> {
    /// A plain model folder.
    fn folder(dir: &'a Path) -> Inputs<'a> {
        Inputs {
            meta_dir: dir,
            weights_dir: dir,
            name_dir: dir,
            merge: None,
            merged_shards: None,
        }
    }
}

/// [`convert`] with an adapter: the merge is resolved and checked first (nothing is written if
/// it is refused); the merged folder's side files (config, tokenizer, generation config —
/// exactly what `loraforge merge` would write beside the weights) go to a small temporary
/// folder beside `out`, and the weights are merged tensor by tensor while they stream.
fn convert_merged(
    base_dir: &Path,
    adapter_dir: &Path,
    out: &Path,
    options: &ConvertOptions,
    reporter: &dyn Reporter,
) -> Result<ConvertReport, ConvertError> {
    let config_path = base_dir.join("config.json");
    if !config_path.is_file() {
        return Err(ConvertError::MissingConfig { path: config_path });
    }
    if !adapter_dir.is_dir() {
        return Err(ConvertError::MissingAdapter {
            path: adapter_dir.to_path_buf(),
        });
    }
    check_output_path(adapter_dir, out)?;
    let adapter_err = |source| ConvertError::Adapter {
        adapter: adapter_dir.to_path_buf(),
        base: base_dir.to_path_buf(),
        source: Box::new(source),
    };
    let merged = MergedModel::open(base_dir, adapter_dir).map_err(adapter_err)?;
    let shards = merged
        .shards(loraforge_hf_model::DEFAULT_MAX_SHARD_SIZE)
        .map_err(adapter_err)?;
    check_output_path(base_dir, out)?;
    let side = loraforge_staging::Staged::dir_beside(out)?;
    merged.write_side_files(side.path()).map_err(adapter_err)?;
    for w in merged.warnings() {
        reporter.message(w);
    }
    let inputs = Inputs {
        meta_dir: side.path(),
        weights_dir: base_dir,
        name_dir: base_dir,
        merge: Some(&merged),
        merged_shards: Some(&shards),
    };
    let mut report = convert_with_threads(&inputs, out, options, reporter)?;
    report
        .warnings
        .splice(0..0, merged.warnings().iter().cloned());
    Ok(report)
}

/// [`convert`] on `options.threads` threads.
fn convert_with_threads(
    inputs: &Inputs<'_>,
    out: &Path,
    options: &ConvertOptions,
    reporter: &dyn Reporter,
) -> Result<ConvertReport, ConvertError> {
    let threads = options
        .threads
        .map_or_else(rayon::current_num_threads, |n| n.max(1));
    convert_inner(inputs, out, options, threads, reporter)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Refuses an output path inside the model folder.
fn check_output_path(dir: &Path, out: &Path) -> Result<(), ConvertError> {
    loraforge_staging::check_output(out, loraforge_staging::OutputKind::File)?;
    let dir_c = dir.canonicalize().map_err(io_err(dir))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent_c = parent.canonicalize().map_err(io_err(&parent))?;
    if parent_c.starts_with(&dir_c) {
        return Err(ConvertError::OutputInsideInput {
            out: out.to_path_buf(),
            dir: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Python's `str.title()`: upper-case a cased character that follows an uncased one.
pub(crate) fn python_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_cased = false;
    for c in s.chars() {
        let cased = c.is_lowercase() || c.is_uppercase();
        if cased {
            if prev_cased {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
        } else {
            out.push(c);
        }
        prev_cased = cased;
    }
    out
}

/// gguf-py `model_weight_count_rounded_notation(n, min_digits=2)`.
fn size_label(n: u64) -> String {
    let nf = n as f64;
    let (scaled, suffix) = if nf > 1e12 {
        (nf * 1e-12, "T")
    } else if nf > 1e9 {
        (nf * 1e-9, "B")
    } else if nf > 1e6 {
        (nf * 1e-6, "M")
    } else {
        (nf * 1e-3, "K")
    };
    let rounded = scaled.round_ties_even() as u64;
    let digits = rounded.to_string().trim_start_matches('0').len();
    let fix = 2usize.saturating_sub(digits);
    format!("{scaled:.fix$}{suffix}")
}

/// Checks what ggml's GGUF reader checks about a tensor name.
fn check_tensor_name(name: &str) -> Result<(), ConvertError> {
    if name.len() > MAX_TENSOR_NAME_LEN {
        return Err(ConvertError::TensorNameTooLong {
            name: name.to_string(),
            len: name.len(),
        });
    }
    Ok(())
}

/// `general.*`: sampling defaults from `dir`'s `generation_config.json`, the name from
/// `name_dir`'s name unless `g` gives one.
fn general_metadata(
    md: &mut Metadata,
    (dir, name_dir): (&Path, &Path),
    g: &GeneralMetadata,
    parameters: u64,
) -> Result<(), ConvertError> {
    // Sampling defaults from generation_config.json (gguf-py Metadata.load).
    let gen_path = dir.join("generation_config.json");
    if gen_path.is_file() {
        let text = std::fs::read_to_string(&gen_path).map_err(io_err(&gen_path))?;
        let gen: Json =
            serde_json::from_str(&text).map_err(|source| ConvertError::InvalidJson {
                path: gen_path.clone(),
                source,
            })?;
        let f = |k: &str| gen.get(k).and_then(|v| v.as_f64()).map(|v| v as f32);
        if let Some(v) = gen.get("top_k").and_then(|v| v.as_i64()) {
            md.set("general.sampling.top_k", v as i32);
        }
        if let Some(v) = f("top_p") {
            md.set("general.sampling.top_p", v);
        }
        if let Some(v) = f("min_p") {
            md.set("general.sampling.min_p", v);
        }
        if let Some(v) = f("temperature") {
            md.set("general.sampling.temp", v);
        }
        if let Some(v) = f("repetition_penalty") {
            md.set("general.sampling.penalty_repeat", v);
        }
    }
    let dir_name = name_dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
    let name = g.name.clone().unwrap_or_else(|| python_title(&dir_name));
    md.set("general.name", name);
    let opt = |md: &mut Metadata, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            md.set(k, v.clone());
        }
    };
    opt(md, "general.author", &g.author);
    opt(md, "general.version", &g.version);
    opt(md, "general.organization", &g.organization);
    opt(md, "general.finetune", &g.finetune);
    opt(md, "general.basename", &g.basename);
    opt(md, "general.description", &g.description);
    let label = g
        .size_label
        .clone()
        .or_else(|| (parameters > 0).then(|| size_label(parameters)));
    opt(md, "general.size_label", &label);
    opt(md, "general.license", &g.license);
    opt(md, "general.url", &g.url);
    opt(md, "general.repo_url", &g.repo_url);
    if !g.base_models.is_empty() {
        md.set("general.base_model.count", g.base_models.len() as u32);
        for (i, b) in g.base_models.iter().enumerate() {
            opt(md, &format!("general.base_model.{i}.name"), &b.name);
            opt(
                md,
                &format!("general.base_model.{i}.organization"),
                &b.organization,
            );
            opt(md, &format!("general.base_model.{i}.repo_url"), &b.repo_url);
        }
    }
    if !g.tags.is_empty() {
        md.set("general.tags", g.tags.clone());
    }
    if !g.languages.is_empty() {
        md.set("general.languages", g.languages.clone());
    }
    Ok(())
}

fn convert_inner(
    inputs: &Inputs<'_>,
    out: &Path,
    options: &ConvertOptions,
    threads: usize,
    reporter: &dyn Reporter,
) -> Result<ConvertReport, ConvertError> {
    let mut warnings = Vec::new();
    let config_path = inputs.meta_dir.join("config.json");
    if !config_path.is_file() {
        return Err(ConvertError::MissingConfig { path: config_path });
    }
    check_output_path(inputs.weights_dir, out)?;
    let text = std::fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
    let config: Json = serde_json::from_str(&text).map_err(|source| ConvertError::InvalidJson {
        path: config_path.clone(),
        source,
    })?;
    let config = config
        .as_object()
        .cloned()
        .ok_or_else(|| ConvertError::JsonShape {
            path: config_path.clone(),
            problem: "the top level is not an object".into(),
        })?;
    let hf_arch = config
        .get("text_config")
        .and_then(|t| t.get("architectures"))
        .or_else(|| config.get("architectures"))
        .and_then(|a| a.get(0))
        .and_then(|a| a.as_str())
        .ok_or(ConvertError::MissingHparam {
            key: "architectures".into(),
            expected: "a list with the model class name",
        })?
        .to_string();
    let arch = Arch::from_hf(&hf_arch)?;
    let hp = Hparams::new(config, arch)?;

    let mut weights = Weights::open(inputs.weights_dir)?;
    if let Some(shards) = inputs.merged_shards {
        // The order the converter would read the merged folder in (its own shards).
        weights.order_as(shards);
    }
    let has = |name: &str| {
        weights.get(name).is_some()
            || name
                .strip_prefix("model.")
                .or_else(|| name.strip_prefix("transformer."))
                .is_some_and(|n| weights.get(n).is_some())
    };
    for bid in 0..hp.block_count {
        for t in arch::required_layer_tensors(arch, bid) {
            if !has(&t) {
                return Err(ConvertError::MissingLayerTensor {
                    layer: bid,
                    tensor: t,
                });
            }
        }
    }
    let embd = arch::embedding_names(arch)
        .iter()
        .find_map(|n| weights.get(n))
        .ok_or_else(|| ConvertError::MissingLayerTensor {
            layer: 0,
            tensor: arch::embedding_names(arch)[0].to_string(),
        })?;
    if let Some(vs) = hp.vocab_size {
        let rows = embd.shape.first().copied().unwrap_or(0);
        if rows != vs {
            return Err(ConvertError::VocabSizeMismatch {
                config_vocab: vs,
                embedding_rows: rows,
                tensor: embd.name.clone(),
            });
        }
    }

    // Resolve the out type.
    let first_matrix = weights
        .tensors
        .iter()
        .find(|t| t.shape.len() >= 2)
        .map(|t| t.dtype);
    let lossless = match first_matrix {
        Some(Dtype::BF16) => FileType::BF16,
        Some(Dtype::F32) => FileType::F32,
        _ => FileType::F16,
    };
    // `file_type`: what the converter writes; `quantize`: then llama-quantize's recipe to this
    // type (k-quant targets), on the stream.
    let (file_type, quantize) = match options.target {
        ExportTarget::Auto if lossless == FileType::BF16 => (FileType::BF16, None),
        ExportTarget::Auto => (FileType::F16, None),
        ExportTarget::Source => (lossless, None),
        ExportTarget::Convert(file_type) => (file_type, None),
        ExportTarget::Quantize(ftype) => (lossless, Some(ftype)),
    };
    let matrix_ty = ExportTarget::converter_matrix_type(file_type)
        .ok_or_else(|| ConvertError::UnsupportedOutType(file_type.to_string()))?;

    // Plan the tensors.
    let mut plan: Vec<Planned> = Vec::new();
    // Tensors the reference generates (`generate_extra_tensors`), written first: Llama 3's
    // `rope_freqs`, Phi-3 LongRoPE's `rope_factors_long` / `rope_factors_short`.
    let mut extra: Vec<(&str, Vec<f32>)> = Vec::new();
    let mut phi3_attn_factor = None;
    if arch == Arch::Llama {
        if let Some(r) = arch::llama3_rope_factors(&hp) {
            extra.push(("rope_freqs.weight", r));
        }
    }
    if arch == Arch::Phi3 {
        if let Some(r) = arch::phi3_rope_factors(&hp)? {
            phi3_attn_factor = Some(r.attn_factor);
            extra.push(("rope_factors_long.weight", r.long));
            extra.push(("rope_factors_short.weight", r.short));
        }
    }
    for (i, t) in weights.tensors.iter().enumerate() {
        let Some((name, transform)) = arch::map_tensor(arch, &hp, &t.name)? else {
            continue;
        };
        check_tensor_name(&name)?;
        if plan.iter().any(|p| p.name == name) {
            return Err(ConvertError::UnmappedTensor {
                tensor: t.name.clone(),
                arch: format!(
                    "{} (maps to {name}, which another tensor already has)",
                    arch.gguf_name()
                ),
            });
        }
        let mut shape = t.shape.clone();
        if transform == Transform::Transpose {
            if shape.len() != 2 {
                return Err(ConvertError::ShapeMismatch {
                    tensor: t.name.clone(),
                    expected: "2 dimensions (Conv1D weight)".into(),
                    got: t.shape.clone(),
                });
            }
            shape.swap(0, 1);
        }
        if let Transform::Permute(h) = transform {
            let rows = shape.first().copied().unwrap_or(0);
            if h == 0 || rows % h != 0 || (rows / h) % 2 != 0 {
                return Err(ConvertError::ShapeMismatch {
                    tensor: t.name.clone(),
                    expected: format!("rows divisible into {h} heads of even size"),
                    got: t.shape.clone(),
                });
            }
        }
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        let force_f32 = shape.len() <= 1
            || name.ends_with("_norm.weight")
            || name == "position_embd.weight"
            || !name.ends_with(".weight");
        let mut ty = if force_f32 { GgmlType::F32 } else { matrix_ty };
        if ty == GgmlType::Q8_0 && dims.first().copied().unwrap_or(0) % 32 != 0 {
            warnings.push(format!(
                "{name}: row length {} is not a multiple of 32, written as f16 instead of q8_0",
                dims[0]
            ));
            ty = GgmlType::F16;
        }
        plan.push(Planned {
            src: i,
            name,
            transform,
            ty,
            dims,
        });
    }
    let parameters: u64 = plan
        .iter()
        .map(|p| p.dims.iter().product::<u64>())
        .sum::<u64>()
        + extra.iter().map(|(_, r)| r.len() as u64).sum::<u64>();

    // Metadata in the reference's order. Each value's Rust type picks its GGUF type (`u32` is
    // UINT32, `Vec<String>` a string array …), so literals carry a suffix; a key set twice keeps
    // its first position and takes the new value, as gguf-py's `add_key_value` does.
    let mut md = Metadata::new();
    md.set("general.architecture", arch.gguf_name());
    if let Some(f) = phi3_attn_factor {
        // Written while the reference generates the factor tensors, before any other metadata.
        md.set(format!("{}.rope.scaling.attn_factor", arch.gguf_name()), f);
    }
    md.set("general.type", "model");
    general_metadata(
        &mut md,
        (inputs.meta_dir, inputs.name_dir),
        &options.general,
        parameters,
    )?;
    md.extend(arch::hparam_metadata(
        arch,
        &hp,
        file_type.llama_ftype(),
        &mut warnings,
    )?);
    md.set("general.quantization_version", 2u32);
    let vocab = vocab::build(
        inputs.meta_dir,
        &hp.raw,
        arch.vocab_kind(),
        options.pre_tokenizer.as_deref(),
    )?;
    warnings.extend(vocab.warnings);
    md.extend(vocab.metadata);

    // The output: the converter's tensors in its order, or (k-quant targets) llama-quantize's
    // header, tensor order and types over the same tensors.
    let write_err = |source: loraforge_gguf::WriteError| ConvertError::Write {
        path: out.to_path_buf(),
        source,
    };
    let converted: Vec<(String, Vec<u64>, GgmlType)> = extra
        .iter()
        .map(|(name, r)| (name.to_string(), vec![r.len() as u64], GgmlType::F32))
        .chain(plan.iter().map(|p| (p.name.clone(), p.dims.clone(), p.ty)))
        .collect();
    let output = match quantize {
        None => Output::converted(md, &converted).map_err(write_err)?,
        Some(ftype) => Output::quantized(md, &converted, ftype, out)?,
    };
    if output.n_fallback > 0 {
        warnings.push(format!(
            "{} tensors used a fallback type (rows not a multiple of 256)",
            output.n_fallback
        ));
    }
    let writer = &output.writer;
    let layout = writer.layout().map_err(write_err)?;
    let maps: Vec<memmap2::Mmap> = weights
        .files
        .iter()
        .map(|f| {
            let file = File::open(f).map_err(io_err(f))?;
            // SAFETY: mapped read-only; the headers were checked against the file's size. A
            // file truncated by another process while it is read would fault (SIGBUS), as it
            // would for every reader that maps model files (transformers, llama.cpp).
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(f))?;
            #[cfg(unix)]
            let _ = map.advise(memmap2::Advice::Sequential);
            Ok(map)
        })
        .collect::<Result<_, ConvertError>>()?;
    reporter.begin("convert", Some(layout.file_size));
    let n_extra = extra.len();
    // Written buffers go back to the workers for reuse, but only a few: a quantized tensor is
    // emitted in more (smaller) pieces than it is read in, and an unbounded return queue would
    // grow with the whole output (GBs at 7B).
    let (buf_tx, buf_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let recycled = std::sync::Mutex::new(buf_rx);
    let written = std::thread::scope(|scope| {
        // Every tensor is cut into pieces (row blocks, heads) that the workers read, merge,
        // convert and quantize ahead of this thread, which writes (and hashes) them in order:
        // no barrier between pieces or tensors, memory bounded by the pieces in flight.
        let recycled = &recycled;
        let plan = &plan;
        let weights = &weights;
        let output = &output;
        let maps = &maps;
        let merge = inputs.merge;
        let tensors =
            output
                .order
                .iter()
                .zip(&output.quantize_to)
                .filter_map(move |(&item, &to)| {
                    // Generated tensors are written by the writer itself.
                    let p = item.checked_sub(n_extra).and_then(|i| plan.get(i))?;
                    Some((p, to))
                });
        let jobs = tensors.flat_map(move |(p, to)| {
            let t = &weights.tensors[p.src];
            let row_len = usize::try_from(p.dims.first().copied().unwrap_or(1)).unwrap_or(1);
            let resolved = (|| -> Result<_, SourceError> {
                let map = maps
                    .get(t.file)
                    .ok_or_else(|| format!("no shard {}", t.file))?;
                let merged = match merge {
                    Some(m) => m
                        .tensor(&t.name)
                        .map_err(|e| format!("tensor {}: {e}", t.name))?,
                    None => None,
                };
                let pieces = data::pieces(t, p.transform, row_len)?;
                Ok((map, std::sync::Arc::new(merged), pieces))
            })();
            let pieces: Vec<Result<_, SourceError>> = match resolved {
                Ok((map, merged, pieces)) => pieces
                    .into_iter()
                    .map(|piece| Ok((map, merged.clone(), piece)))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            pieces.into_iter().map(move |piece| {
                move || -> Result<Vec<u8>, SourceError> {
                    let (map, merged, piece) = piece?;
                    let take_buf = || {
                        recycled
                            .lock()
                            .ok()
                            .and_then(|r| r.try_recv().ok())
                            .unwrap_or_default()
                    };
                    let reader = (map, (*merged).as_ref());
                    run_piece(reader, t, p, (row_len, piece, to), take_buf)
                        .map_err(|e| format!("tensor {}: {e}", t.name).into())
                }
            })
        });
        // `threads` threads in all, this one included: it writes each piece when its turn
        // comes and converts the next ones meanwhile.
        let mut pieces = Ordered::start(scope, threads, threads.max(1) * 3, jobs);
        // The writing thread hashes as it writes (`WriteOptions::sha256`), like `quantize`: on
        // few cores a hasher thread of its own would take a core from the workers. The writer
        // checks each tensor's byte count; a written buffer goes back to the workers.
        let mut source =
            |index: usize, info: &TensorInfo, w: &mut dyn Write| -> Result<(), SourceError> {
                let item = output.order.get(index).copied().unwrap_or(usize::MAX);
                if let Some((name, r)) = extra.get(item) {
                    let bytes: Vec<u8> = r.iter().flat_map(|v| v.to_le_bytes()).collect();
                    let mut put = |bytes: Vec<u8>| -> Result<(), SourceError> {
                        w.write_all(&bytes)?;
                        let _ = buf_tx.try_send(bytes);
                        Ok(())
                    };
                    return match output.quantize_to.get(index).copied().flatten() {
                        None => put(bytes),
                        Some(to) => {
                            let from = (GgmlType::F32, to);
                            put(quantize_piece(name, &bytes, from, r.len(), 0)
                                .map_err(|e| Box::new(e) as SourceError)?)
                        }
                    };
                }
                reporter.message(&info.name);
                let expected = info.n_bytes().ok_or("tensor size overflows")?;
                let mut done = 0u64;
                while done < expected {
                    let chunk = pieces.next().ok_or("the reader stopped early")???;
                    w.write_all(&chunk)?;
                    done += chunk.len() as u64;
                    reporter.advance(chunk.len() as u64);
                    let _ = buf_tx.try_send(chunk);
                }
                Ok(())
            };
        let r = writer.write_to_path(
            out,
            &mut source,
            &WriteOptions {
                sha256: options.sha256,
            },
        );
        // Stops the workers (after an error) before the scope waits for them.
        drop(pieces);
        r.map_err(write_err)
    })?;
    reporter.finish();
    Ok(ConvertReport {
        path: out.to_path_buf(),
        tensors: writer.tensors().len(),
        bytes: written.bytes,
        sha256: written.sha256,
        warnings,
        pre_tokenizer: vocab.pre,
        pre_tokenizer_source: vocab.pre_source,
        architecture: arch.gguf_name().into(),
        file_type: quantize.unwrap_or(file_type),
        parameters,
    })
}

/// What [`convert_inner`] writes: the header, and for each output tensor (in file order) the
/// converted tensor it holds and the type it is then quantized to.
struct Output {
    writer: GgufWriter,
    /// Output index → index into the converted tensors (generated ones first, then the plan).
    order: Vec<usize>,
    /// Output index → quantize the converted data to this type (`None`: written as converted).
    quantize_to: Vec<Option<GgmlType>>,
    /// Tensors whose row length forced a fallback type.
    n_fallback: usize,
}

impl Output {
    /// The converter's own file: `metadata`, the tensors as converted, in their order.
    fn converted(
        metadata: Metadata,
        converted: &[(String, Vec<u64>, GgmlType)],
    ) -> Result<Output, loraforge_gguf::WriteError> {
        let mut writer = GgufWriter::with_metadata(metadata);
        for (name, dims, ty) in converted {
            writer.add_tensor(TensorInfo::new(name.clone(), *ty, dims.clone()))?;
        }
        Ok(Output {
            writer,
            order: (0..converted.len()).collect(),
            quantize_to: vec![None; converted.len()],
            n_fallback: 0,
        })
    }

    /// What `quantize_file` would write for `ftype` from the converter's file (`metadata` and
    /// `converted`): its metadata, llama.cpp's tensor order, the recipe's type per tensor.
    fn quantized(
        metadata: Metadata,
        converted: &[(String, Vec<u64>, GgmlType)],
        ftype: FileType,
        out: &Path,
    ) -> Result<Output, ConvertError> {
        let quantize_err = |e: QuantizeFileError| ConvertError::Quantize(Box::new(e));
        let mut named: Vec<Named> = converted
            .iter()
            .enumerate()
            .map(|(i, (name, _, _))| Named(name.clone(), i))
            .collect();
        llama_tensor_order(&mut named);
        let order: Vec<usize> = named.into_iter().map(|n| n.1).collect();
        let metas: Vec<(String, Vec<u64>, GgmlType)> =
            order.iter().map(|&i| converted[i].clone()).collect();
        let hparams = recipe_hparams(&metadata).map_err(|key| {
            quantize_err(QuantizeFileError::MissingMetadata {
                path: out.to_path_buf(),
                key,
            })
        })?;
        let decisions = plan_tensor_types(ftype, &hparams, &metas)
            .map_err(|e| quantize_err(QuantizeFileError::Plan(e)))?;
        check_supported(&metas, &decisions).map_err(quantize_err)?;
        let mut writer = GgufWriter::with_metadata(quantized_metadata(&metadata, ftype));
        for ((name, dims, _), d) in metas.iter().zip(&decisions) {
            writer
                .add_tensor(TensorInfo::new(name.clone(), d.ty, ggml_dims(dims)))
                .map_err(|source| ConvertError::Write {
                    path: out.to_path_buf(),
                    source,
                })?;
        }
        Ok(Output {
            writer,
            order,
            quantize_to: decisions
                .iter()
                .map(|d| d.quantize.then_some(d.ty))
                .collect(),
            n_fallback: decisions.iter().filter(|d| d.fallback.is_some()).count(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_title_matches_str_title() {
        assert_eq!(python_title("a_llama_qv"), "A_Llama_Qv");
        assert_eq!(python_title("f_gpt2_conv1d"), "F_Gpt2_Conv1D");
    }

    #[test]
    fn size_labels_follow_gguf_py() {
        assert_eq!(size_label(126_000), "126K");
        assert_eq!(size_label(8_030_261_248), "8.0B");
        assert_eq!(size_label(1_235_814_400), "1.2B");
        assert_eq!(size_label(494_032_768), "494M");
    }

    #[test]
    fn long_tensor_names_are_refused() {
        let long = format!("blk.0.{}.weight", "x".repeat(60));
        assert!(matches!(
            check_tensor_name(&long),
            Err(ConvertError::TensorNameTooLong { len, .. }) if len == long.len()
        ));
        assert!(check_tensor_name("blk.0.attn_q.weight").is_ok());
    }
}

/// Piece `piece` of tensor `t` (planned as `p`), read from its shard `map` and merged with
/// `merge` when the adapter changes it, converted and, with `to`, quantized. Runs on a pipeline
/// thread; `take_buf` supplies a recycled output buffer.
fn run_piece(
    (map, merge): (
        &memmap2::Mmap,
        Option<&loraforge_adapter_merge::MergedTensor<'_>>,
    ),
    t: &crate::source::SrcTensor,
    p: &Planned,
    (row_len, piece, to): (usize, data::Piece, Option<GgmlType>),
    take_buf: impl FnOnce() -> Vec<u8>,
) -> Result<Vec<u8>, SourceError> {
    // This thread's buffers, taken for the piece and put back after it (not borrowed across the
    // callbacks below).
    let (mut merge_buf, mut converted) =
        PIECE_SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let mut reader = data::TensorReader {
        map,
        merge,
        scratch: &mut merge_buf,
    };
    let out = match to {
        None => {
            let mut dst = take_buf();
            data::produce_piece(
                &mut reader,
                t,
                p.transform,
                (p.ty, row_len),
                piece,
                &mut dst,
            )
            .map(|()| dst)
        }
        Some(to) => {
            let first_row = data::first_row_of(t, p.transform, row_len, piece);
            data::quantize_produced_piece(
                &mut reader,
                t,
                p.transform,
                (p.ty, row_len),
                piece,
                &mut converted,
                |bytes| {
                    quantize_piece(&p.name, bytes, (p.ty, to), row_len, first_row)
                        .map_err(|e| Box::new(e) as SourceError)
                },
            )
        }
    };
    PIECE_SCRATCH.with(|s| *s.borrow_mut() = (merge_buf, converted));
    out
}

thread_local! {
    /// Each worker's buffers for a piece: the merged bytes, and the converted bytes of a piece
    /// that is then quantized. Reused across pieces.
    static PIECE_SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}
