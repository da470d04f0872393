//! The streaming merge: plan → temp folder → tensors through the shard writer → side files →
//! rename into place.

use std::borrow::Cow;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::Mutex;
use std::time::Instant;

use loraforge_hf_model::{
    decode_f32, encode_f32, Dtype, HfModel, SafetensorsFile, SafetensorsShardWriter, TensorSpec,
    TensorView, WrittenFile, CONFIG_FILE,
};
use loraforge_progress::Reporter;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::config::AdapterConfig;
use crate::kernel::{choose_backend, round_trip, Backend};
use crate::plan::{build_plan, Job, Plan, Source};
use crate::rows::merge_rows;
use crate::update::{LoraUpdate, RowBlock, Scratch};
use crate::{MergeError, MergeOptions, MergeReport, ADAPTER_WEIGHTS_FILE};

/// Elements per piece handed to the writer: at most 4 MiB as f32, small enough that the writer
/// and the hasher still find a piece in the last-level cache.
const PIECE_ELEMS: usize = 1 << 20;
/// Target elements per rayon work item.
const BLOCK_ELEMS: usize = 1 << 16;

/// Tokenizer-related files copied into the output, from one folder only.
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "spiece.model",
];

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> MergeError + '_ {
    move |source| MergeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A piece of output bytes for the writer thread; `release` names a base tensor and the bytes of
/// its data whose mapped pages can be dropped once the piece is written (so a tensor of any size
/// is resident only a piece at a time).
pub(crate) struct Piece<'a> {
    pub bytes: Cow<'a, [u8]>,
    release: Option<(&'a str, Range<usize>)>,
}

/// The whole of a tensor, for [`Piece::release`] on its last piece (also drops the pages that
/// straddle two pieces).
const WHOLE: Range<usize> = 0..usize::MAX;

/// Merges the adapter into the base and writes a saved-model folder. See the crate docs.
pub fn merge(options: &MergeOptions, reporter: &dyn Reporter) -> Result<MergeReport, MergeError> {
    let start = Instant::now();
    let out_dir = &options.out_dir;
    options.check_output()?;
    let Prepared {
        base,
        adapter,
        plan,
        warnings,
    } = prepare(options, reporter)?;

    let fixed = options.dtype.fixed();
    let specs = output_specs(&base, fixed)?;
    // Output dtype of the report when neither the options nor config.json name one.
    let first_dtype = specs.first().map_or(Dtype::F32, |s| s.dtype);
    let total_bytes: u64 = specs.iter().filter_map(|s| s.byte_len()).sum();

    // temp folder next to the target
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    // unique per run, removed on every error (drop) and by the CLI's signal handler; stale
    // ones of killed runs are removed here
    let tmp = loraforge_staging::Staged::dir_beside(out_dir)?;

    let mut writer = SafetensorsShardWriter::new(
        tmp.path(),
        specs,
        options.max_shard_size,
        base.parameter_count(),
    )?;
    writer.set_sync(options.fsync);
    // SHA-256 costs about as much as the write: a thread of its own hashes each piece after the
    // writer is done with it, so neither waits for the other.
    writer.set_checksums(false);
    let hash_plan: Option<Vec<ShardToHash>> = options.sha256.then(|| {
        writer
            .shards()
            .iter()
            .enumerate()
            .map(|(i, s)| ShardToHash {
                file_name: s.file_name.clone(),
                prefix: writer.shard_prefix(i).unwrap_or_default(),
                data_len: s.data_len,
            })
            .collect()
    });
    let order: Vec<String> = writer.write_order().iter().map(|s| s.to_string()).collect();

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(worker_threads(options.threads)?)
        .build()
        .map_err(|e| MergeError::Threads {
            reason: e.to_string(),
        })?;
    let backend = choose_backend();

    reporter.begin("merge", Some(total_bytes));
    let buffers: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let ctx = Ctx {
        base: &base,
        adapter: &adapter,
        allow_non_finite: options.allow_non_finite,
        backend,
        pool: &buffers,
    };
    let mut changed = 0usize;
    let (written, hashes) = std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Piece<'_>>(2);
        let (hash_tx, hash_rx) = sync_channel::<Piece<'_>>(4);
        let base_ref = &base;
        let pool_ref = &buffers;
        let hasher = hash_plan
            .map(|plan| scope.spawn(move || hash_shards(plan, hash_rx, base_ref, pool_ref)));
        let hashing = hasher.is_some();
        let handle = scope.spawn(move || -> Result<Vec<WrittenFile>, MergeError> {
            for piece in rx {
                writer.write_chunk(&piece.bytes)?;
                reporter.advance(piece.bytes.len() as u64);
                if hashing {
                    if let Err(unsent) = hash_tx.send(piece) {
                        retire(unsent.0, base_ref, pool_ref);
                    }
                } else {
                    retire(piece, base_ref, pool_ref);
                }
            }
            drop(hash_tx);
            Ok(writer.finish()?)
        });
        let produced = pool.install(|| -> Result<(), MergeError> {
            for name in &order {
                let job = plan
                    .jobs
                    .get(name.as_str())
                    .ok_or_else(|| MergeError::Unsupported {
                        what: format!("internal: no plan for tensor {name}"),
                    })?;
                let out_dtype = fixed.unwrap_or(base.tensor(name)?.dtype);
                if !job.is_copy() {
                    changed += 1;
                }
                let sent =
                    ctx.produce(name, job, out_dtype, &mut |piece| tx.send(piece).is_ok())?;
                if !sent {
                    // the writer stopped: its error is reported below
                    break;
                }
            }
            Ok(())
        });
        drop(tx);
        let written = handle.join().unwrap_or_else(|_| {
            Err(MergeError::Threads {
                reason: "the writer thread panicked".into(),
            })
        });
        let hashes = match hasher.map(|h| h.join()) {
            None => Ok(Vec::new()),
            Some(Ok(hashes)) => Ok(hashes),
            Some(Err(_)) => Err(MergeError::Threads {
                reason: "the hashing thread panicked".into(),
            }),
        };
        produced?;
        Ok::<_, MergeError>((written?, hashes?))
    })?;
    reporter.finish();

    let mut output_files = Vec::with_capacity(written.len());
    for f in written {
        let sha256 = match hashes
            .iter()
            .find(|(name, _)| f.path.as_os_str() == name.as_str())
        {
            Some((_, sha256)) => Some(sha256.clone()),
            // the index, written by `finish` (small)
            None if options.sha256 => {
                let path = tmp.path().join(&f.path);
                let bytes = std::fs::read(&path).map_err(io_err(&path))?;
                Some(hex::encode(Sha256::digest(&bytes)))
            }
            None => None,
        };
        output_files.push((f.path, f.size, sha256));
    }

    let dtype = fixed.or_else(|| base.config_dtype()).unwrap_or(first_dtype);
    let (side_files, tokenizer_source) = write_side_files(
        &base,
        &options.adapter_dir,
        fixed.map(|_| dtype),
        tmp.path(),
        options.sha256,
    )?;
    output_files.extend(side_files);

    // into place (an existing folder is replaced only with `force`, checked above)
    tmp.persist(out_dir)?;

    Ok(MergeReport {
        tensors_total: order.len(),
        tensors_changed: changed,
        output_files,
        dtype,
        elapsed: start.elapsed(),
        bytes_written: total_bytes,
        tokenizer_source,
        ignored_modules: plan.ignored_modules.clone(),
        parameters: base.parameter_count(),
        backend: backend_name(backend),
        warnings,
    })
}

/// A merge's inputs, opened and resolved; everything checked that can be before any output.
pub(crate) struct Prepared {
    pub base: HfModel,
    pub adapter: SafetensorsFile,
    pub plan: Plan,
    pub warnings: Vec<String>,
}

/// Opens the base and resolves the adapter against it ([`resolve`]); the warnings also go to the
/// reporter as messages.
pub(crate) fn prepare(
    options: &MergeOptions,
    reporter: &dyn Reporter,
) -> Result<Prepared, MergeError> {
    let base = HfModel::open(&options.base_dir)?;
    let Resolved {
        adapter,
        plan,
        warnings,
    } = resolve(&base, &options.adapter_dir)?;
    for w in &warnings {
        reporter.message(w);
    }
    Ok(Prepared {
        base,
        adapter,
        plan,
        warnings,
    })
}

/// The adapter of `adapter_dir`, resolved against `base`: its weights file, the plan, and the
/// warnings for the user. Every check that can refuse the adapter runs here, before any output.
pub(crate) struct Resolved {
    pub adapter: SafetensorsFile,
    pub plan: Plan,
    pub warnings: Vec<String>,
}

/// Loads and checks the adapter of `adapter_dir` against `base` (see [`Resolved`]).
pub(crate) fn resolve(base: &HfModel, adapter_dir: &Path) -> Result<Resolved, MergeError> {
    let mut config = AdapterConfig::load(adapter_dir)?;
    config.check_mergeable()?;
    config.resolve_default_targets(base.config().get("model_type").and_then(|v| v.as_str()))?;
    let weights_path = adapter_dir.join(ADAPTER_WEIGHTS_FILE);
    if !weights_path.is_file() {
        let bin = adapter_dir.join("adapter_model.bin");
        if bin.is_file() {
            return Err(MergeError::PickleAdapter { path: bin });
        }
        return Err(MergeError::MissingAdapterWeights {
            dir: adapter_dir.to_path_buf(),
        });
    }
    let adapter = SafetensorsFile::open(&weights_path)?;
    let plan = build_plan(base, &adapter, &config)?;
    let mut warnings = Vec::new();
    for m in &plan.ignored_modules {
        warnings.push(format!(
            "adapter module {m} is not targeted by adapter_config.json: ignored (as PEFT does)"
        ));
    }
    if let Some(w) = base_name_warning(&config, base) {
        warnings.push(w);
    }
    Ok(Resolved {
        adapter,
        plan,
        warnings,
    })
}

/// The merged model's tensors, in the base's order, each in `fixed` or its own dtype.
pub(crate) fn output_specs(
    base: &HfModel,
    fixed: Option<Dtype>,
) -> Result<Vec<TensorSpec>, MergeError> {
    base.tensor_names()
        .into_iter()
        .map(|n| {
            let v = base.tensor(n)?;
            Ok(TensorSpec {
                name: n.to_string(),
                dtype: fixed.unwrap_or(v.dtype),
                shape: v.shape.to_vec(),
            })
        })
        .collect()
}

/// Merges the rows of `w` (whole rows of the base weight from `row0` on, in its dtype) into
/// `out` (the same rows, in the output dtype), block by block. Returns the flat index in the whole
/// tensor of the first non-finite result, if any.
///
/// On a rayon pool thread the blocks are spread over that pool; on any other thread they run on
/// the calling thread. A caller that brings its own threads (the export pipeline runs exactly N)
/// would otherwise hand the work to the global pool and sleep: N more threads on N cores.
pub(crate) fn merge_lora_rows(
    backend: Backend,
    update: &LoraUpdate<'_>,
    row0: usize,
    (w, w_dtype): (&[u8], Dtype),
    (out, out_dtype): (&mut [u8], Dtype),
) -> Option<usize> {
    let cols = update.cols.max(1);
    let (in_size, out_size) = (w_dtype.size(), out_dtype.size());
    let rows_per_block = (BLOCK_ELEMS / cols).max(1);
    let merge_block = |scratch: &mut Scratch, (bi, chunk): (usize, &mut [u8])| {
        let r = bi * rows_per_block;
        let nr = chunk.len() / (cols * out_size);
        let block = RowBlock {
            row0: row0 + r,
            n_rows: nr,
            w: w.get(r * cols * in_size..(r + nr) * cols * in_size)
                .unwrap_or(&[]),
            w_dtype,
            out: chunk,
            out_dtype,
        };
        merge_rows(backend, update, block, scratch).map(|i| (row0 + r) * cols + i)
    };
    let block_bytes = rows_per_block * cols * out_size;
    if rayon::current_thread_index().is_some() {
        out.par_chunks_mut(block_bytes)
            .enumerate()
            .map_init(Scratch::default, merge_block)
            .flatten()
            .min()
    } else {
        let mut scratch = Scratch::default();
        out.chunks_mut(block_bytes)
            .enumerate()
            .filter_map(|job| merge_block(&mut scratch, job))
            .min()
    }
}

/// `lora_B.bias` merged into a bias: `vals` (the base bias as f32, in `dtype`) as PEFT sees it
/// in `out_dtype`, plus `bias · scaling`.
pub(crate) fn add_scaled_bias(
    vals: &mut [f32],
    dtype: Dtype,
    out_dtype: Dtype,
    bias: &[f32],
    scaling: f32,
) {
    if dtype != out_dtype {
        round_trip(out_dtype, vals);
    }
    for (v, b) in vals.iter_mut().zip(bias) {
        *v += *b * scaling;
    }
}

/// Pool size: the cores by default; a request is capped at [`crate::MAX_THREADS_PER_CPU`] per
/// core (more only adds switching, and `--threads 100000` would exhaust the process); 0 is
/// refused.
pub(crate) fn worker_threads(requested: Option<usize>) -> Result<usize, MergeError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    match requested {
        None => Ok(cpus),
        Some(0) => Err(MergeError::BadThreads { requested: 0 }),
        Some(n) => Ok(n.min(cpus.saturating_mul(crate::MAX_THREADS_PER_CPU))),
    }
}

/// The last path component of a model reference (`org/name`, a local path).
fn short_name(s: &str) -> &str {
    s.trim_end_matches(['/', '\\'])
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(s)
}

/// A note when the adapter names a base that is visibly not this one (shapes decide errors; a
/// name can differ for a local copy, so this is only a warning).
fn base_name_warning(config: &AdapterConfig, base: &HfModel) -> Option<String> {
    let wanted = config.base_model_name_or_path.as_deref()?;
    let dir_name = base
        .dir()
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let config_name = base
        .config()
        .get("_name_or_path")
        .and_then(|v| v.as_str())
        .map(|s| short_name(s).to_string());
    let w = short_name(wanted);
    let known = [dir_name.as_deref(), config_name.as_deref()];
    if known.iter().flatten().any(|n| n.eq_ignore_ascii_case(w))
        || known.iter().all(|n| n.is_none())
    {
        return None;
    }
    Some(format!(
        "the adapter was trained on {wanted:?}; merging into {} (names differ: fine for a local copy of the same model, wrong otherwise — shapes matched)",
        base.dir().display()
    ))
}

/// The bytes of the merged folder's `config.json`: the base's file, or, when the options fix a
/// dtype other than the base's, the config with its dtype updated.
pub(crate) fn merged_config(options: &MergeOptions, base: &HfModel) -> Result<Vec<u8>, MergeError> {
    config_bytes(base, options.dtype.fixed())
}

/// The bytes of `config.json` for a merged model of `base` whose weights are `fixed` (or keep
/// their dtype): the base's file as is, or with its dtype updated when it changes.
fn config_bytes(base: &HfModel, fixed: Option<Dtype>) -> Result<Vec<u8>, MergeError> {
    match fixed {
        Some(dtype) if base.config_dtype() != Some(dtype) => {
            let mut cfg = base.config().clone();
            if let Some(obj) = cfg.as_object_mut() {
                let mut set = false;
                for key in ["dtype", "torch_dtype"] {
                    if obj.contains_key(key) {
                        obj.insert(key.into(), dtype.config_name().into());
                        set = true;
                    }
                }
                if !set {
                    obj.insert("dtype".into(), dtype.config_name().into());
                }
            }
            let mut text = serde_json::to_string_pretty(&cfg).unwrap_or_default();
            text.push('\n');
            Ok(text.into_bytes())
        }
        _ => {
            let config_src = base.dir().join(CONFIG_FILE);
            std::fs::read(&config_src).map_err(io_err(&config_src))
        }
    }
}

/// The folder the merged model's tokenizer files come from: the adapter's when it has any, else
/// the base's (`None`: neither has any).
pub(crate) fn tokenizer_source(options: &MergeOptions) -> Option<PathBuf> {
    tokenizer_dir(&options.adapter_dir, &options.base_dir)
}

fn tokenizer_dir(adapter_dir: &Path, base_dir: &Path) -> Option<PathBuf> {
    let has_tokenizer = |dir: &Path| TOKENIZER_FILES.iter().any(|f| dir.join(f).is_file());
    [adapter_dir, base_dir]
        .into_iter()
        .find(|dir| has_tokenizer(dir))
        .map(Path::to_path_buf)
}

/// [`MergeReport::backend`] for the chosen `B·A` backend.
pub(crate) fn backend_name(backend: Backend) -> &'static str {
    use crate::fused::Level;
    match (crate::fused::report_level(), backend) {
        (None, backend) => backend.name(),
        (Some(Level::Avx2), Backend::Blas) => "fused-avx2-fma (others: openblas-sgemm)",
        (Some(Level::Avx2), Backend::SequentialFma) => "fused-avx2-fma (others: sequential-fma)",
        (Some(Level::Avx512), Backend::Blas) => "fused-avx512 (others: openblas-sgemm)",
        (Some(Level::Avx512), Backend::SequentialFma) => "fused-avx512 (others: sequential-fma)",
    }
}

/// Pool size: the cores by default; a request is capped at [`crate::MAX_THREADS_PER_CPU`] per
/// core (more only adds switching, and `--threads 100000` would exhaust the process); 0 is
/// A file written: path relative to the output folder, size, SHA-256 when asked for.
type OutputFile = (PathBuf, u64, Option<String>);

/// Writes the merged folder's files other than the weights into `dir`: `config.json` (its dtype
/// set to `fixed_dtype` when one is given and differs), `generation_config.json`, and the
/// tokenizer files of the adapter folder when it has any, else of the base. Returns the files
/// (name, size, SHA-256 when `checksums`) and the folder the tokenizer came from.
pub(crate) fn write_side_files(
    base: &HfModel,
    adapter_dir: &Path,
    fixed_dtype: Option<Dtype>,
    dir: &Path,
    checksums: bool,
) -> Result<(Vec<OutputFile>, Option<PathBuf>), MergeError> {
    let base_dir = base.dir();
    let mut output_files = Vec::new();
    let config_bytes = config_bytes(base, fixed_dtype)?;
    output_files.push(write_side_file(dir, CONFIG_FILE, &config_bytes, checksums)?);
    let gen = base_dir.join("generation_config.json");
    if gen.is_file() {
        let bytes = std::fs::read(&gen).map_err(io_err(&gen))?;
        output_files.push(write_side_file(
            dir,
            "generation_config.json",
            &bytes,
            checksums,
        )?);
    }
    let tokenizer_source = tokenizer_dir(adapter_dir, base_dir);
    if let Some(src) = &tokenizer_source {
        for f in TOKENIZER_FILES {
            let p = src.join(f);
            if p.is_file() {
                let bytes = std::fs::read(&p).map_err(io_err(&p))?;
                output_files.push(write_side_file(dir, f, &bytes, checksums)?);
            }
        }
    }
    Ok((output_files, tokenizer_source))
}

fn write_side_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    checksum: bool,
) -> Result<(PathBuf, u64, Option<String>), MergeError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(io_err(&path))?;
    Ok((
        PathBuf::from(name),
        bytes.len() as u64,
        checksum.then(|| hex::encode(Sha256::digest(bytes))),
    ))
}

/// What the hashing thread needs to know of one output file.
struct ShardToHash {
    file_name: String,
    /// The bytes before the tensor data (header length and header).
    prefix: Vec<u8>,
    data_len: u64,
}

/// Drops the mapped pages a written piece came from and gives its buffer back for reuse.
pub(crate) fn retire(piece: Piece<'_>, base: &HfModel, pool: &Mutex<Vec<Vec<u8>>>) {
    if let Some((name, range)) = piece.release {
        base.release_range(name, range);
    }
    if let Cow::Owned(buf) = piece.bytes {
        if let Ok(mut p) = pool.lock() {
            if p.len() < 4 {
                p.push(buf);
            }
        }
    }
}

/// Hashes each shard from its prefix and the pieces the writer wrote, in order (a piece never
/// spans two files). Returns `(file name, sha256)` for the shards it completed; fewer when the
/// writer stopped early (its error is the one reported).
fn hash_shards(
    plan: Vec<ShardToHash>,
    pieces: std::sync::mpsc::Receiver<Piece<'_>>,
    base: &HfModel,
    pool: &Mutex<Vec<Vec<u8>>>,
) -> Vec<(String, String)> {
    let mut pieces = pieces.into_iter();
    let mut hashes = Vec::with_capacity(plan.len());
    'shards: for shard in plan {
        let mut hasher = Sha256::new();
        hasher.update(&shard.prefix);
        let mut left = shard.data_len;
        while left > 0 {
            let Some(piece) = pieces.next() else {
                break 'shards;
            };
            hasher.update(&piece.bytes);
            left = left.saturating_sub(piece.bytes.len() as u64);
            retire(piece, base, pool);
        }
        hashes.push((shard.file_name, hex::encode(hasher.finalize())));
    }
    for piece in pieces {
        retire(piece, base, pool);
    }
    hashes
}

pub(crate) struct Ctx<'a> {
    pub base: &'a HfModel,
    pub adapter: &'a SafetensorsFile,
    pub allow_non_finite: bool,
    pub backend: Backend,
    /// Output buffers handed back by the writer, reused to avoid page faults on fresh memory.
    pub pool: &'a Mutex<Vec<Vec<u8>>>,
}

impl<'a> Ctx<'a> {
    /// An output buffer of `len` bytes. Its content is unspecified (a reused buffer keeps old
    /// bytes): every caller overwrites all of it, so it is not cleared again.
    fn buffer(&self, len: usize) -> Vec<u8> {
        let mut buf = self
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        buf.resize(len, 0);
        buf
    }

    /// Produces one tensor's output bytes as pieces; returns `false` if the writer went away.
    pub fn produce(
        &self,
        name: &'a str,
        job: &Job,
        out_dtype: Dtype,
        send: &mut dyn FnMut(Piece<'a>) -> bool,
    ) -> Result<bool, MergeError> {
        let source: TensorView<'a> = match &job.source {
            Source::Base => self.base.tensor(name)?,
            Source::Adapter(key) => self.adapter.tensor(key)?,
        };
        let is_base = matches!(job.source, Source::Base);
        let release = |range: Range<usize>| is_base.then_some((name, range));
        if let Some(lora) = &job.lora {
            let a = self.adapter.tensor(&lora.a_key)?.to_f32_vec();
            let b = self.adapter.tensor(&lora.b_key)?.to_f32_vec();
            let magnitude = match &lora.magnitude_key {
                Some(k) => Some(self.adapter.tensor(k)?.to_f32_vec()),
                None => None,
            };
            let (rows, cols) = (source.shape[0], source.shape[1]);
            let update = LoraUpdate {
                layout: lora.layout,
                rank: lora.rank,
                rows,
                cols,
                a: &a,
                b: &b,
                scaling: lora.scaling,
                round_delta_to: lora.embedding.then_some(out_dtype),
                magnitude: magnitude.as_deref(),
            };
            let in_size = source.dtype.size();
            let out_size = out_dtype.size();
            let rows_per_piece = (PIECE_ELEMS / cols.max(1)).max(1);
            let mut row0 = 0;
            while row0 < rows {
                let n = rows_per_piece.min(rows - row0);
                let w = source
                    .data
                    .get(row0 * cols * in_size..(row0 + n) * cols * in_size)
                    .unwrap_or(&[]);
                let mut out = self.buffer(n * cols * out_size);
                let bad = merge_lora_rows(
                    self.backend,
                    &update,
                    row0,
                    (w, source.dtype),
                    (&mut out, out_dtype),
                );
                if let (Some(index), false) = (bad, self.allow_non_finite) {
                    return Err(MergeError::NonFinite {
                        tensor: name.to_string(),
                        index,
                    });
                }
                let read = row0 * cols * in_size..(row0 + n) * cols * in_size;
                row0 += n;
                let last = row0 >= rows;
                if !send(Piece {
                    bytes: Cow::Owned(out),
                    release: release(if last { WHOLE } else { read }),
                }) {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        if let Some((key, scaling)) = &job.bias_add {
            let bias = self.adapter.tensor(key)?.to_f32_vec();
            let mut vals = source.to_f32_vec();
            add_scaled_bias(&mut vals, source.dtype, out_dtype, &bias, *scaling);
            let mut out = self.buffer(vals.len() * out_dtype.size());
            encode_f32(out_dtype, &vals, &mut out);
            return Ok(send(Piece {
                bytes: Cow::Owned(out),
                release: release(WHOLE),
            }));
        }
        if source.dtype == out_dtype {
            // Straight from the mapping, a piece at a time.
            let piece_bytes = PIECE_ELEMS * out_dtype.size();
            let mut start = 0;
            loop {
                let end = (start + piece_bytes).min(source.data.len());
                let last = end >= source.data.len();
                if !send(Piece {
                    bytes: Cow::Borrowed(&source.data[start..end]),
                    release: release(if last { WHOLE } else { start..end }),
                }) {
                    return Ok(false);
                }
                if last {
                    return Ok(true);
                }
                start = end;
            }
        }
        // dtype conversion, piecewise
        let count = source.element_count();
        let in_size = source.dtype.size();
        let mut start = 0;
        let mut vals = Vec::new();
        while start < count {
            let n = PIECE_ELEMS.min(count - start);
            vals.resize(n, 0.0);
            let bytes = source
                .data
                .get(start * in_size..(start + n) * in_size)
                .unwrap_or(&[]);
            decode_f32(source.dtype, bytes, &mut vals);
            let mut out = self.buffer(n * out_dtype.size());
            encode_f32(out_dtype, &vals, &mut out);
            let read = start * in_size..(start + n) * in_size;
            start += n;
            if !send(Piece {
                bytes: Cow::Owned(out),
                release: release(if start >= count { WHOLE } else { read }),
            }) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
