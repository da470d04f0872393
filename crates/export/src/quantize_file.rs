//! GGUF → GGUF quantization: what `llama_model_quantize` (llama.cpp 0c1e57098, default
//! parameters, no importance matrix) writes, byte for byte.
//!
//! Layout choices reproduced (see `quant-policy.md`): tensors in llama.cpp's weights-map order
//! ([`loraforge_quantize::llama_tensor_order`]); every input key-value pair copied in order
//! except `general.file_type`, `general.quantization_version` and `split.*`, then
//! `general.quantization_version = 2` and `general.file_type = <ftype>` appended; each tensor
//! padded with zeros to the alignment; tensor dims written as `ggml_n_dims` counts them
//! (trailing 1s dropped). Input rows are widened to f32 exactly and quantized by
//! `loraforge_quantize::quantize_rows`, in parallel over chunks of whole rows (blocks are
//! independent, so the thread count never changes the bytes).
//!
//! One deliberate difference: an input with a non-default `general.alignment` keeps that key,
//! and we align the data to it; llama.cpp copies the key but always pads to 32, writing a file
//! its own reader then rejects.

use std::io::Write;
use std::path::{Path, PathBuf};

use loraforge_progress::Reporter;
use loraforge_quantize::{
    dequantize_rows, find_non_finite, llama_tensor_order, plan_tensor_types, quantize_rows,
    Fallback, FileType, GgmlType, ModelHparams, QuantizeError, SUPPORTED_TYPES,
};
use serde::Serialize;

use loraforge_gguf::{
    GgufFile, GgufWriter, Metadata, MetadataValue, ReadError, SourceError, TensorInfo,
    TensorSource, WriteError, WriteOptions,
};

use crate::pipeline::Ordered;

/// `GGML_QNT_VERSION`, written as `general.quantization_version`.
pub const GGML_QNT_VERSION: u32 = 2;

/// Keys `llama_model_quantize` drops from the input (split files are merged into one).
pub(crate) const DROPPED_KEYS: [&str; 5] = [
    "general.file_type",
    "general.quantization_version",
    "split.no",
    "split.count",
    "split.tensors.count",
];

/// Elements of f32 a worker converts at a time (4 MiB of f32).
const CHUNK_ELEMS: u64 = 1 << 20;

/// Bytes of an unchanged tensor copied at a time.
const COPY_CHUNK: usize = 8 << 20;

/// Options of [`quantize_file`].
#[derive(Debug, Clone, Default)]
pub struct QuantizeFileOptions {
    /// Worker threads; 0 uses one per core. With 1, the calling thread converts and writes
    /// (one core in all); with more, workers convert ahead while the calling thread writes.
    pub threads: usize,
    /// Accept already-quantized input tensors (they are dequantized to f32 first, as
    /// `llama-quantize --allow-requantize` does).
    pub allow_requantize: bool,
    /// Refuse to write a file where a tensor's row length forced a fallback type.
    pub no_fallback: bool,
}

/// One output tensor of a [`QuantizeFileReport`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TensorReport {
    /// Tensor name.
    pub name: String,
    /// Input type.
    #[serde(serialize_with = "ser_ty")]
    pub from: GgmlType,
    /// Output type.
    #[serde(serialize_with = "ser_ty")]
    pub to: GgmlType,
    /// Dims, `ne[0]` first.
    pub dims: Vec<u64>,
    /// Output bytes.
    pub bytes: u64,
    /// Set when the row length forced a different type than the recipe wanted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackReport>,
}

/// A fallback, as llama.cpp logs it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FallbackReport {
    /// The type the recipe wanted.
    #[serde(serialize_with = "ser_ty")]
    pub wanted: GgmlType,
    /// The type used.
    #[serde(serialize_with = "ser_ty")]
    pub used: GgmlType,
    /// llama.cpp's message.
    pub reason: String,
}

impl From<&Fallback> for FallbackReport {
    fn from(f: &Fallback) -> Self {
        FallbackReport {
            wanted: f.wanted,
            used: f.used,
            reason: f.reason.clone(),
        }
    }
}

fn ser_ty<S: serde::Serializer>(ty: &GgmlType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(ty.name())
}

/// What [`quantize_file`] did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QuantizeFileReport {
    /// The output file.
    pub output: PathBuf,
    /// The file type written (`Q4_K_M` …).
    pub ftype: String,
    /// Input file size.
    pub input_bytes: u64,
    /// Output file size.
    pub output_bytes: u64,
    /// Lowercase hex sha256 of the output file.
    pub sha256: String,
    /// Output tensors in file order.
    pub tensors: Vec<TensorReport>,
    /// Number of tensors that used a fallback type.
    pub n_fallback: usize,
}

/// Why a file could not be quantized. Nothing is left at the output path in any case.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeFileError {
    /// The input is not a readable GGUF file.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Output and input are the same file.
    #[error("the output `{path}` is the input file; choose another output path")]
    SameFile {
        /// The path.
        path: PathBuf,
    },
    /// A metadata key the type rules need is missing or not an integer.
    #[error(
        "`{path}` lacks metadata `{key}` (an unsigned integer), needed to choose tensor types"
    )]
    MissingMetadata {
        /// The input file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A tensor is already quantized and `allow_requantize` is off.
    #[error("tensor `{tensor}` is already quantized ({ty}); requantizing loses quality — pass --allow-requantize to do it anyway")]
    AlreadyQuantized {
        /// Tensor name.
        tensor: String,
        /// Its type.
        ty: GgmlType,
    },
    /// A tensor's input type has no conversion to f32 here.
    #[error("tensor `{tensor}` has type {ty}, which cannot be converted")]
    UnsupportedInputType {
        /// Tensor name.
        tensor: String,
        /// Its type.
        ty: GgmlType,
    },
    /// The type rules failed (a row length that fits no fallback, as llama.cpp refuses it).
    #[error("cannot choose tensor types")]
    Plan(#[source] QuantizeError),
    /// Fallback types were needed and `no_fallback` is set.
    #[error(
        "{count} tensor(s) need a fallback type (first: {first}); refused because of --no-fallback"
    )]
    Fallbacks {
        /// How many tensors.
        count: usize,
        /// The first fallback's message.
        first: String,
        /// Every tensor concerned.
        tensors: Vec<String>,
    },
    /// The input holds a NaN or an infinity.
    #[error("tensor `{tensor}` has a non-finite value (NaN or Inf) at row {row}, column {column}")]
    NonFinite {
        /// Tensor name.
        tensor: String,
        /// Row (0-based, over all rows of the tensor).
        row: u64,
        /// Column within the row.
        column: u64,
    },
    /// A kernel refused the data.
    #[error("could not convert tensor `{tensor}`")]
    Kernel {
        /// Tensor name.
        tensor: String,
        /// The kernel's error.
        #[source]
        source: QuantizeError,
    },
    /// The worker thread pool could not be created.
    #[error("could not start {threads} worker threads")]
    Threads {
        /// Threads requested.
        threads: usize,
        /// The cause.
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
    /// Writing the output failed.
    #[error(transparent)]
    Write(WriteError),
}

impl QuantizeFileError {
    /// True when the input or the request is at fault (not a GGUF file, a tensor that cannot
    /// be requantized, refused fallbacks …) rather than the machine or a bug.
    pub fn is_user_error(&self) -> bool {
        match self {
            QuantizeFileError::Read(e) => e.is_user_error(),
            QuantizeFileError::Write(e) => e.is_user_error(),
            QuantizeFileError::Kernel { source, .. } => source.is_user_error(),
            QuantizeFileError::Threads { .. } => false,
            QuantizeFileError::SameFile { .. }
            | QuantizeFileError::MissingMetadata { .. }
            | QuantizeFileError::AlreadyQuantized { .. }
            | QuantizeFileError::UnsupportedInputType { .. }
            | QuantizeFileError::Plan(_)
            | QuantizeFileError::Fallbacks { .. }
            | QuantizeFileError::NonFinite { .. } => true,
        }
    }

    /// What to do next, when there is something more to say than the message.
    pub fn hint(&self) -> Option<String> {
        match self {
            QuantizeFileError::Read(e) => e.hint(),
            QuantizeFileError::Write(e) => e.hint(),
            QuantizeFileError::MissingMetadata { .. } => Some(
                "quantize a GGUF written by `loraforge convert` or llama.cpp's converter".into(),
            ),
            QuantizeFileError::Fallbacks { .. } => {
                Some("drop --no-fallback to accept llama.cpp's fallback types".into())
            }
            QuantizeFileError::NonFinite { .. } => {
                Some("the model has NaN or Inf weights; check the training run".into())
            }
            QuantizeFileError::Plan(e) | QuantizeFileError::Kernel { source: e, .. } => e.hint(),
            _ => None,
        }
    }
}

/// Quantizes the GGUF file `input` to `ftype`, writing `output` (through a temp file renamed
/// into place). The output is byte-identical to `llama_model_quantize` with default parameters.
///
/// ```no_run
/// use loraforge_export::{quantize_file, FileType, QuantizeFileOptions};
/// use loraforge_progress::NoProgress;
///
/// let report = quantize_file(
///     "model-f16.gguf".as_ref(),
///     "model-q4_K_M.gguf".as_ref(),
///     "q4_k_m".parse::<FileType>()?,
///     &QuantizeFileOptions::default(),
///     &NoProgress,
/// )?;
/// println!("{} bytes, sha256 {}", report.output_bytes, report.sha256);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn quantize_file(
    input: &Path,
    output: &Path,
    ftype: FileType,
    options: &QuantizeFileOptions,
    reporter: &dyn Reporter,
) -> Result<QuantizeFileReport, QuantizeFileError> {
    let report = quantize_file_inner(input, output, ftype, options, reporter)?;
    reporter.checkpoint("quantize-output");
    Ok(report)
}

/// The work of [`quantize_file`], up to the output renamed into place.
fn quantize_file_inner(
    input: &Path,
    output: &Path,
    ftype: FileType,
    options: &QuantizeFileOptions,
    reporter: &dyn Reporter,
) -> Result<QuantizeFileReport, QuantizeFileError> {
    if same_file(input, output) {
        return Err(QuantizeFileError::SameFile {
            path: output.to_path_buf(),
        });
    }
    let file = GgufFile::open(input)?;
    file.advise_sequential();
    let hparams = hparams_of(&file, input)?;
    let order = output_order(&file);
    let Planned {
        writer,
        plan,
        n_fallback,
    } = plan_output(&file, &hparams, &order, ftype, options)?;

    // 0 means the default, as a rayon pool counts it (`RAYON_NUM_THREADS`, else the CPUs).
    let threads = match options.threads {
        0 => rayon::current_num_threads().max(1),
        n => n,
    };
    let total: u64 = file.tensors().iter().map(|t| t.size).sum();
    reporter.begin("quantize", Some(total));
    let jobs = chunk_jobs(&file, &order, &plan);
    let spare = Spare::default();
    let written = std::thread::scope(|scope| {
        let chunks = jobs
            .iter()
            .flatten()
            .flat_map(|job| (0..job.n_chunks()).map(move |c| (job, c)))
            .map(|(job, c)| {
                let spare = &spare;
                move || {
                    let dst = spare.lock().ok().and_then(|mut s| s.pop());
                    F32_BUF
                        .with(|buf| job.convert(c, &mut buf.borrow_mut(), dst.unwrap_or_default()))
                }
            });
        // Every quantized tensor's chunks, in output order, converted across tensor
        // boundaries by `threads` threads, this one included: it writes and hashes each chunk
        // when its turn comes and quantizes the next ones meanwhile, so that one thread means
        // one core.
        let pipeline = Ordered::start(scope, threads, threads * 8, chunks);
        let mut source = QuantSource {
            file: &file,
            order: &order,
            jobs: &jobs,
            pipeline,
            spare: &spare,
            reporter,
        };
        writer
            .write_to_path(output, &mut source, &WriteOptions { sha256: true })
            .map_err(|e| match e {
                WriteError::Source { source, tensor } => {
                    match source.downcast::<QuantizeFileError>() {
                        Ok(inner) => *inner,
                        Err(source) => {
                            QuantizeFileError::Write(WriteError::Source { tensor, source })
                        }
                    }
                }
                other => QuantizeFileError::Write(other),
            })
    })?;
    reporter.finish();

    Ok(report_of(
        &file,
        &order,
        &Planned {
            writer,
            plan,
            n_fallback,
        },
        ftype,
        written,
    ))
}

/// Quantizes the GGUF file `input` to several file types in one pass: every tensor is read
/// and widened to f32 once, then quantized to each output's type (once per distinct type) and
/// written to each output. Each output is the same file [`quantize_file`] writes for its type
/// (checked by the tests). All are written through temp files, renamed into place once every
/// one is complete; on an error before that, no output path is touched. Reports in the order
/// of `outputs`.
///
/// ```no_run
/// use loraforge_export::{quantize_file_multi, FileType, QuantizeFileOptions};
/// use loraforge_progress::NoProgress;
///
/// let outputs = [
///     ("m.q4_K_M.gguf".into(), FileType::Q4KM),
///     ("m.q8_0.gguf".into(), FileType::Q8_0),
/// ];
/// let reports = quantize_file_multi(
///     "m-bf16.gguf".as_ref(),
///     &outputs,
///     &QuantizeFileOptions::default(),
///     &NoProgress,
/// )?;
/// assert_eq!(reports.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn quantize_file_multi(
    input: &Path,
    outputs: &[(PathBuf, FileType)],
    options: &QuantizeFileOptions,
    reporter: &dyn Reporter,
) -> Result<Vec<QuantizeFileReport>, QuantizeFileError> {
    for (path, _) in outputs {
        if same_file(input, path) {
            return Err(QuantizeFileError::SameFile { path: path.clone() });
        }
    }
    let file = GgufFile::open(input)?;
    file.advise_sequential();
    let hparams = hparams_of(&file, input)?;
    let order = output_order(&file);
    let planned: Vec<Planned> = outputs
        .iter()
        .map(|(_, ftype)| plan_output(&file, &hparams, &order, *ftype, options))
        .collect::<Result<_, _>>()?;
    let layouts: Vec<loraforge_gguf::GgufLayout> = planned
        .iter()
        .map(|p| p.writer.layout().map_err(QuantizeFileError::Write))
        .collect::<Result<_, _>>()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .build()
        .map_err(|source| QuantizeFileError::Threads {
            threads: options.threads,
            source,
        })?;

    let file_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| QuantizeFileError::Write(WriteError::File { path, source })
    };
    let mut sinks = Vec::with_capacity(outputs.len());
    for ((path, _), layout) in outputs.iter().zip(&layouts) {
        loraforge_staging::check_output(path, loraforge_staging::OutputKind::File)
            .map_err(|e| QuantizeFileError::Write(e.into()))?;
        let (temp, f) = loraforge_staging::Staged::file_beside(path)
            .map_err(|e| QuantizeFileError::Write(e.into()))?;
        loraforge_staging::preallocate(&f, layout.file_size).map_err(file_error(path))?;
        let mut sink = Sink {
            temp,
            out: std::io::BufWriter::with_capacity(1 << 20, f),
            hasher: sha2::Sha256::default(),
        };
        sink.write(&layout.header).map_err(file_error(path))?;
        sinks.push(sink);
    }

    let total: u64 = file.tensors().iter().map(|t| t.size).sum();
    reporter.begin("quantize", Some(total));
    let threads = pool.current_num_threads().max(1);
    for (index, &input_index) in order.iter().enumerate() {
        let entry = &file.tensors()[input_index];
        let data = file.tensor_data(input_index);
        reporter.message(&entry.info.name);
        // The distinct output types this tensor is quantized to; copies take the input bytes.
        let mut types: Vec<GgmlType> = Vec::new();
        for p in &planned {
            let d = &p.plan[index];
            if d.quantize && !types.contains(&d.ty) {
                types.push(d.ty);
            }
        }
        let copied = planned.iter().any(|p| !p.plan[index].quantize);
        if copied {
            for (sink, ((path, _), p)) in sinks.iter_mut().zip(outputs.iter().zip(&planned)) {
                if !p.plan[index].quantize {
                    sink.write(data).map_err(file_error(path))?;
                }
            }
        }
        if !types.is_empty() {
            let n_per_row = usize::try_from(entry.info.row_len()).unwrap_or(0);
            let n_rows = usize::try_from(entry.info.n_rows().unwrap_or(0)).unwrap_or(0);
            let rows_per_chunk = (CHUNK_ELEMS as usize / n_per_row.max(1))
                .min(n_rows.div_ceil(threads * 4))
                .max(1);
            let job = ChunkJob {
                tensor: &entry.info.name,
                data,
                from: entry.info.ty,
                to: types[0],
                n_per_row,
                n_rows,
                rows_per_chunk,
                first_row: 0,
            };
            // Batches of chunks converted in parallel, written in order: memory stays bounded
            // by a batch of every type.
            let batch = threads * 4;
            let n_chunks = job.n_chunks();
            let mut first = 0;
            while first < n_chunks {
                let last = (first + batch).min(n_chunks);
                use rayon::prelude::*;
                let converted: Vec<Vec<Vec<u8>>> = pool.install(|| {
                    (first..last)
                        .into_par_iter()
                        .map(|c| {
                            F32_BUF.with(|buf| {
                                let mut buf = buf.borrow_mut();
                                job.widen(c, &mut buf)?;
                                types
                                    .iter()
                                    .map(|&to| job.quantize(c, &buf, to))
                                    .collect::<Result<Vec<_>, _>>()
                            })
                        })
                        .collect::<Result<Vec<_>, QuantizeFileError>>()
                })?;
                for (c, per_type) in (first..last).zip(&converted) {
                    for (sink, ((path, _), p)) in sinks.iter_mut().zip(outputs.iter().zip(&planned))
                    {
                        let d = &p.plan[index];
                        if let Some(k) = types.iter().position(|&t| d.quantize && t == d.ty) {
                            sink.write(&per_type[k]).map_err(file_error(path))?;
                        }
                    }
                    let (start, len) = job.input_range(c);
                    file.release_tensor_range(input_index, start..start + len);
                    reporter.advance(len);
                }
                first = last;
            }
        } else {
            reporter.advance(entry.size);
        }
        for ((sink, layout), (path, _)) in sinks.iter_mut().zip(&layouts).zip(outputs) {
            let size = layout.tensor_sizes[index];
            let pad = size.next_multiple_of(layout.alignment) - size;
            sink.write(&vec![0u8; pad as usize])
                .map_err(file_error(path))?;
        }
    }
    reporter.finish();

    let mut reports = Vec::with_capacity(outputs.len());
    for (((sink, layout), (path, ftype)), p) in
        sinks.into_iter().zip(&layouts).zip(outputs).zip(&planned)
    {
        let Sink { temp, out, hasher } = sink;
        out.into_inner()
            .map_err(|e| file_error(path)(e.into_error()))?;
        temp.persist(path)
            .map_err(|e| QuantizeFileError::Write(e.into()))?;
        use sha2::Digest;
        let written = loraforge_gguf::WrittenFile {
            path: path.clone(),
            bytes: layout.file_size,
            sha256: Some(hex::encode(hasher.finalize())),
        };
        reports.push(report_of(&file, &order, p, *ftype, written));
    }
    Ok(reports)
}

/// One output of [`quantize_file_multi`]: its temp file, buffered, and its running sha256.
struct Sink {
    temp: loraforge_staging::Staged,
    out: std::io::BufWriter<std::fs::File>,
    hasher: sha2::Sha256,
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use sha2::Digest;
        self.hasher.update(bytes);
        self.out.write_all(bytes)
    }
}

/// The report of one written output.
fn report_of(
    file: &GgufFile,
    order: &[usize],
    planned: &Planned,
    ftype: FileType,
    written: loraforge_gguf::WrittenFile,
) -> QuantizeFileReport {
    let tensors = order
        .iter()
        .zip(&planned.plan)
        .zip(planned.writer.tensors())
        .map(|((&i, d), out)| TensorReport {
            name: d.name.clone(),
            from: file.tensors()[i].info.ty,
            to: d.ty,
            dims: out.dims.clone(),
            bytes: out.n_bytes().unwrap_or(0),
            fallback: d.fallback.as_ref().map(FallbackReport::from),
        })
        .collect();
    QuantizeFileReport {
        output: written.path,
        ftype: ftype.llama_name(),
        input_bytes: file.len(),
        output_bytes: written.bytes,
        sha256: written.sha256.unwrap_or_default(),
        tensors,
        n_fallback: planned.n_fallback,
    }
}

/// The input's tensors in llama.cpp's output order (the same for every file type).
fn output_order(file: &GgufFile) -> Vec<usize> {
    let mut named: Vec<Named> = file
        .tensors()
        .iter()
        .enumerate()
        .map(|(i, t)| Named(t.info.name.clone(), i))
        .collect();
    llama_tensor_order(&mut named);
    named.into_iter().map(|n| n.1).collect()
}

/// One output's header (metadata + tensor infos), per-tensor decisions and fallback count.
struct Planned {
    writer: GgufWriter,
    plan: Vec<loraforge_quantize::TensorDecision>,
    n_fallback: usize,
}

/// llama.cpp's per-tensor types for `ftype`, checked against the input and the options, and
/// the output's header.
fn plan_output(
    file: &GgufFile,
    hparams: &ModelHparams,
    order: &[usize],
    ftype: FileType,
    options: &QuantizeFileOptions,
) -> Result<Planned, QuantizeFileError> {
    let metas: Vec<(String, Vec<u64>, GgmlType)> = order
        .iter()
        .map(|&i| {
            let t = &file.tensors()[i].info;
            (t.name.clone(), t.dims.clone(), t.ty)
        })
        .collect();
    let plan = plan_tensor_types(ftype, hparams, &metas).map_err(QuantizeFileError::Plan)?;

    for (&i, d) in order.iter().zip(&plan) {
        let ty = file.tensors()[i].info.ty;
        if d.quantize && ty.is_quantized() && !options.allow_requantize {
            return Err(QuantizeFileError::AlreadyQuantized {
                tensor: d.name.clone(),
                ty,
            });
        }
    }
    check_supported(&metas, &plan)?;
    let fallbacks: Vec<&Fallback> = plan.iter().filter_map(|d| d.fallback.as_ref()).collect();
    if options.no_fallback && !fallbacks.is_empty() {
        return Err(QuantizeFileError::Fallbacks {
            count: fallbacks.len(),
            first: fallbacks[0].reason.clone(),
            tensors: plan
                .iter()
                .filter(|d| d.fallback.is_some())
                .map(|d| d.name.clone())
                .collect(),
        });
    }

    let mut writer = GgufWriter::with_metadata(quantized_metadata(file.metadata(), ftype));
    for (&i, d) in order.iter().zip(&plan) {
        let t = &file.tensors()[i].info;
        writer
            .add_tensor(TensorInfo::new(t.name.clone(), d.ty, ggml_dims(&t.dims)))
            .map_err(QuantizeFileError::Write)?;
    }

    let n_fallback = fallbacks.len();
    Ok(Planned {
        writer,
        plan,
        n_fallback,
    })
}

/// The dims ggml writes: trailing dimensions of 1 dropped, at least one kept (`ggml_n_dims`).
pub(crate) fn ggml_dims(dims: &[u64]) -> Vec<u64> {
    let n = dims.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1);
    (0..n).map(|i| dims.get(i).copied().unwrap_or(1)).collect()
}

/// A tensor name and its index in the input, sortable by [`llama_tensor_order`].
pub(crate) struct Named(pub(crate) String, pub(crate) usize);

impl AsRef<str> for Named {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// True when `output` names the same file as `input` (or would, once created).
fn same_file(input: &Path, output: &Path) -> bool {
    let Ok(inp) = input.canonicalize() else {
        return false;
    };
    if let Ok(out) = output.canonicalize() {
        return out == inp;
    }
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match (parent.canonicalize(), output.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name) == inp,
        _ => false,
    }
}

fn hparams_of(file: &GgufFile, path: &Path) -> Result<ModelHparams, QuantizeFileError> {
    recipe_hparams(file.metadata()).map_err(|key| QuantizeFileError::MissingMetadata {
        path: path.to_path_buf(),
        key,
    })
}

/// The output's metadata: every key of the input's `metadata` in order except
/// [`DROPPED_KEYS`], then `general.quantization_version` and `general.file_type` (what
/// `llama_model_quantize` writes).
pub(crate) fn quantized_metadata(metadata: &Metadata, ftype: FileType) -> Metadata {
    let mut out = Metadata::new();
    for (key, value) in metadata.iter() {
        if !DROPPED_KEYS.contains(&key) {
            out.set(key, value.clone());
        }
    }
    out.set("general.quantization_version", GGML_QNT_VERSION);
    out.set("general.file_type", ftype.llama_ftype());
    out
}

/// Refuses a plan that quantizes from or to a type the kernels do not have.
pub(crate) fn check_supported(
    metas: &[(String, Vec<u64>, GgmlType)],
    plan: &[loraforge_quantize::TensorDecision],
) -> Result<(), QuantizeFileError> {
    for ((_, _, ty), d) in metas.iter().zip(plan) {
        if d.quantize && !(SUPPORTED_TYPES.contains(ty) && SUPPORTED_TYPES.contains(&d.ty)) {
            let bad = if SUPPORTED_TYPES.contains(ty) {
                d.ty
            } else {
                *ty
            };
            return Err(QuantizeFileError::UnsupportedInputType {
                tensor: d.name.clone(),
                ty: bad,
            });
        }
    }
    Ok(())
}

/// Quantizes `data` (whole rows of `n_per_row` values of type `from`, rows `first_row ..` of
/// `tensor`) to `to` on this thread, exactly as [`quantize_file`] does (widened to f32,
/// checked finite, `quantize_rows`).
pub(crate) fn quantize_piece(
    tensor: &str,
    data: &[u8],
    (from, to): (GgmlType, GgmlType),
    n_per_row: usize,
    first_row: usize,
) -> Result<Vec<u8>, QuantizeFileError> {
    let in_row = usize::try_from(from.row_size(n_per_row as u64).unwrap_or(0)).unwrap_or(0);
    let n_rows = data.len().checked_div(in_row).unwrap_or(0);
    let job = ChunkJob {
        tensor,
        data,
        from,
        to,
        n_per_row,
        n_rows,
        rows_per_chunk: n_rows.max(1),
        first_row,
    };
    F32_BUF.with(|buf| job.convert(0, &mut buf.borrow_mut(), Vec::new()))
}

/// The metadata keys the type recipe needs, from a GGUF's metadata (`Err`: the missing key).
pub(crate) fn recipe_hparams(m: &Metadata) -> Result<ModelHparams, String> {
    let arch = m
        .get("general.architecture")
        .and_then(MetadataValue::as_str)
        .ok_or_else(|| "general.architecture".to_owned())?
        .to_owned();
    // Per-layer arrays (some architectures) count by their first element, as llama.cpp's
    // `get_key_or_arr` fills every layer from them.
    let int = |key: &str| -> Option<u32> {
        let v = m.get(key)?;
        let v = match v {
            MetadataValue::Array(a) => a.get(0)?,
            other => other.clone(),
        };
        v.as_u64().and_then(|x| u32::try_from(x).ok())
    };
    let key = |k: &str| format!("{arch}.{k}");
    let n_layer = int(&key("block_count")).ok_or_else(|| key("block_count"))?;
    let n_head = int(&key("attention.head_count")).unwrap_or(0);
    let n_head_kv = int(&key("attention.head_count_kv")).unwrap_or(n_head);
    let n_expert = int(&key("expert_count")).unwrap_or(0);
    Ok(ModelHparams {
        arch,
        n_layer,
        n_head,
        n_head_kv,
        n_expert,
    })
}

/// One tensor to convert, cut into chunks of whole rows.
#[derive(Clone, Copy)]
struct ChunkJob<'a> {
    tensor: &'a str,
    data: &'a [u8],
    from: GgmlType,
    to: GgmlType,
    n_per_row: usize,
    n_rows: usize,
    rows_per_chunk: usize,
    /// Row of the tensor where `data` starts (for error messages).
    first_row: usize,
}

impl ChunkJob<'_> {
    fn n_chunks(&self) -> usize {
        self.n_rows.div_ceil(self.rows_per_chunk)
    }

    fn in_row(&self) -> usize {
        self.from.row_size(self.n_per_row as u64).unwrap_or(0) as usize
    }

    /// Rows `r0..r1` of chunk `c`.
    fn rows(&self, c: usize) -> (usize, usize) {
        let r0 = c * self.rows_per_chunk;
        (r0, (r0 + self.rows_per_chunk).min(self.n_rows))
    }

    /// (start, length) in bytes of the input that chunk `c` reads.
    fn input_range(&self, c: usize) -> (u64, u64) {
        let (r0, r1) = self.rows(c);
        (
            (r0 * self.in_row()) as u64,
            ((r1 - r0) * self.in_row()) as u64,
        )
    }

    /// Widens chunk `c` to f32 (in `buf`), checks it is finite, and quantizes it into `dst`
    /// (a spare buffer to reuse, or empty).
    fn convert(
        &self,
        c: usize,
        buf: &mut Vec<f32>,
        mut dst: Vec<u8>,
    ) -> Result<Vec<u8>, QuantizeFileError> {
        self.widen(c, buf)?;
        self.quantize_into(c, buf, self.to, &mut dst)?;
        Ok(dst)
    }

    /// Chunk `c` widened to f32 into `buf`, checked finite.
    fn widen(&self, c: usize, buf: &mut Vec<f32>) -> Result<(), QuantizeFileError> {
        let kernel = |source| QuantizeFileError::Kernel {
            tensor: self.tensor.to_owned(),
            source,
        };
        let (r0, r1) = self.rows(c);
        let in_row = self.in_row();
        let src = self.data.get(r0 * in_row..r1 * in_row).ok_or_else(|| {
            kernel(QuantizeError::LengthMismatch {
                what: "source",
                ty: self.from,
                n_per_row: self.n_per_row,
                expected: r1 * in_row,
                got: self.data.len(),
                unit: "bytes",
            })
        })?;
        buf.resize((r1 - r0) * self.n_per_row, 0.0);
        dequantize_rows(self.from, src, self.n_per_row, buf).map_err(kernel)?;
        if let Some((row, col)) = find_non_finite(buf, self.n_per_row) {
            return Err(QuantizeFileError::NonFinite {
                tensor: self.tensor.to_owned(),
                row: (self.first_row + r0 + row) as u64,
                column: col as u64,
            });
        }
        Ok(())
    }

    /// Chunk `c`, widened in `buf` by [`ChunkJob::widen`], quantized to `to`.
    fn quantize(&self, c: usize, buf: &[f32], to: GgmlType) -> Result<Vec<u8>, QuantizeFileError> {
        let mut dst = Vec::new();
        self.quantize_into(c, buf, to, &mut dst)?;
        Ok(dst)
    }

    /// As [`ChunkJob::quantize`], into `dst` (resized; the kernels write every byte of it).
    fn quantize_into(
        &self,
        c: usize,
        buf: &[f32],
        to: GgmlType,
        dst: &mut Vec<u8>,
    ) -> Result<(), QuantizeFileError> {
        let (r0, r1) = self.rows(c);
        let out_row = to.row_size(self.n_per_row as u64).unwrap_or(0) as usize;
        dst.resize((r1 - r0) * out_row, 0);
        quantize_rows(to, buf, self.n_per_row, dst).map_err(|source| QuantizeFileError::Kernel {
            tensor: self.tensor.to_owned(),
            source,
        })
    }
}

/// A chunk of a tensor, quantized.
type Converted = Result<Vec<u8>, QuantizeFileError>;

/// Chunk buffers the writer is done with, for the workers to quantize later chunks into: a
/// fresh buffer per chunk would be zeroed and faulted in every time.
type Spare = std::sync::Mutex<Vec<Vec<u8>>>;

struct QuantSource<'a> {
    file: &'a GgufFile,
    order: &'a [usize],
    /// Per output tensor, its chunks when it is quantized.
    jobs: &'a [Option<ChunkJob<'a>>],
    /// Every quantized tensor's chunks, quantized, in output order.
    pipeline: Ordered<'a, Converted>,
    /// Where written chunk buffers go back to.
    spare: &'a Spare,
    reporter: &'a dyn Reporter,
}

impl TensorSource for QuantSource<'_> {
    fn write_tensor(
        &mut self,
        index: usize,
        info: &TensorInfo,
        out: &mut dyn Write,
    ) -> Result<(), SourceError> {
        let input_index = self.order[index];
        let data = self.file.tensor_data(input_index);
        self.reporter.message(&info.name);
        let Some(job) = self.jobs.get(index).copied().flatten() else {
            for (k, piece) in data.chunks(COPY_CHUNK).enumerate() {
                out.write_all(piece)?;
                let start = (k * COPY_CHUNK) as u64;
                self.file
                    .release_tensor_range(input_index, start..start + piece.len() as u64);
                self.reporter.advance(piece.len() as u64);
            }
            return Ok(());
        };
        for c in 0..job.n_chunks() {
            let converted = self
                .pipeline
                .next()
                .ok_or("the conversion stopped early")??;
            let bytes = converted.map_err(|e| Box::new(e) as SourceError)?;
            out.write_all(&bytes)?;
            if let Ok(mut spare) = self.spare.lock() {
                spare.push(bytes);
            }
            let (start, len) = job.input_range(c);
            self.file
                .release_tensor_range(input_index, start..start + len);
            self.reporter.advance(len);
        }
        Ok(())
    }
}

/// The chunks of each output tensor that `plan` quantizes (`None` for copied tensors), cut
/// so that `threads` workers share even small tensors.
fn chunk_jobs<'a>(
    file: &'a GgufFile,
    order: &[usize],
    plan: &[loraforge_quantize::TensorDecision],
) -> Vec<Option<ChunkJob<'a>>> {
    order
        .iter()
        .zip(plan)
        .map(|(&input_index, decision)| {
            if !decision.quantize {
                return None;
            }
            let entry = &file.tensors()[input_index];
            let n_per_row = usize::try_from(entry.info.row_len()).unwrap_or(0);
            let n_rows = usize::try_from(entry.info.n_rows().unwrap_or(0)).unwrap_or(0);
            // Chunks of whole rows, CHUNK_ELEMS values where the tensor has them. Cutting small
            // tensors finer gains nothing (the pipeline runs across tensor boundaries) and
            // costs: the pipeline bounds the chunks in flight by count, and a window full of
            // tiny chunks leaves a worker idle while another finishes a big one.
            let rows_per_chunk = (CHUNK_ELEMS as usize / n_per_row.max(1)).max(1);
            Some(ChunkJob {
                tensor: &entry.info.name,
                data: file.tensor_data(input_index),
                from: entry.info.ty,
                to: decision.ty,
                n_per_row,
                n_rows,
                rows_per_chunk,
                first_row: 0,
            })
        })
        .collect()
}

thread_local! {
    /// Each worker's f32 staging buffer, reused across chunks.
    static F32_BUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::ggml_dims;

    #[test]
    fn dims_are_written_as_ggml_n_dims_reports_them() {
        assert_eq!(ggml_dims(&[4096, 1]), [4096]);
        assert_eq!(ggml_dims(&[4096, 1, 1, 1]), [4096]);
        assert_eq!(ggml_dims(&[]), [1]);
        assert_eq!(ggml_dims(&[1, 1]), [1]);
        assert_eq!(ggml_dims(&[2, 1, 3]), [2, 1, 3]);
        assert_eq!(ggml_dims(&[1, 5]), [1, 5]);
    }
}
