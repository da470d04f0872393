//! `loraforge-adapter-merge`: merges a PEFT LoRA adapter into its base model, giving the same
//! weights as PEFT's `merge_and_unload()` + `save_pretrained()` — streaming one tensor at a time
//! from memory-mapped files, the low-rank products on BLAS (`cblas_sgemm`, OpenBLAS).
//!
//! Principal items:
//! - [`merge`] with [`MergeOptions`] → [`MergeReport`]: the whole job, written into a temporary
//!   folder next to the target and renamed into place at the end (nothing appears on error);
//! - [`AdapterConfig`]: `adapter_config.json` with PEFT's rank/alpha patterns, target matching
//!   and the refusals (PiSSA/OLoRA/CorDA/LoftQ initialisations);
//! - [`MergedTensors`]: the same merge as a source of merged tensors for other writers (the
//!   `merged_4bit` NF4 writer);
//! - [`parse_size`]: transformers' `max_shard_size` strings (`"5GB"` = 5·10⁹, `"5GiB"` = 5·2³⁰);
//! - [`MergedModel`] / [`MergedTensor`]: the same merge as a stream of tensors for another sink
//!   (the one-pass adapter → GGUF export of `loraforge-export`): checked up front, then merged a
//!   block of rows at a time from base bytes the caller reads, without writing the merged folder;
//! - [`single_threaded_blas`]: OpenBLAS with one thread and its idle workers stopped (they
//!   busy-wait for ~0.1 s after every process start); a program linking this crate calls it
//!   first, as the `loraforge` CLI does.
//!
//! ```no_run
//! use loraforge_adapter_merge::{merge, MergeOptions, OutputDtype};
//! use loraforge_progress::NoProgress;
//!
//! let options = MergeOptions {
//!     base_dir: "base".into(),
//!     adapter_dir: "adapter".into(),
//!     out_dir: "merged".into(),
//!     dtype: OutputDtype::Auto,
//!     max_shard_size: loraforge_adapter_merge::parse_size("5GB").unwrap(),
//!     threads: None,
//!     force: false,
//!     allow_non_finite: false,
//!     fsync: true,
//!     sha256: false,
//! };
//! let report = merge(&options, &NoProgress).unwrap();
//! println!("{} of {} tensors changed", report.tensors_changed, report.tensors_total);
//! ```
//!
//! Semantics (PEFT 0.21.2): `Δ = (B·A)·s` in f32 with `s = α/r` (or `α/√r` with rsLoRA, per-module
//! `rank_pattern`/`alpha_pattern`), transposed for `fan_in_fan_out`; `W' = round(f32(W) + Δ)`
//! (one round-to-nearest-even); embedding LoRA rounds `Δ` to the weight dtype first; DoRA
//! `W' = round(m/‖f32(W)+Δ‖_row · (f32(W)+Δ))`; `lora_B.bias` adds `s·b_B`; `modules_to_save`
//! and saved biases replace the base tensor.
//!
//! Exactness: torch accumulates each element of `B·A` over `k = 0..r` in order with fused
//! multiply-adds. OpenBLAS's `cblas_sgemm` does the same with some cores (SkylakeX) but not with
//! others (its Haswell kernel splits the sum: 1-ulp differences on `b_llama_alllinear_rslora`, 8-ulp
//! ones after DoRA's normalisation). At start the merge probes sgemm against a sequential-FMA
//! reference and uses it only if it agrees bit for bit; otherwise it uses its own sequential-FMA
//! loop. The common case — `W [out, in]` kept in its own dtype, no DoRA — skips both: a fused
//! kernel (AVX-512 where the CPU has it, else AVX2/FMA) accumulates the same way with `Δ` in
//! registers and decodes, adds and rounds in the same pass (about a third of the CPU time; same
//! bytes). DoRA's row norm follows torch's
//! vectorised reduction (8 f32 lanes, AVX2). Result: every fixture case a–i is 100%
//! bit-identical to PEFT.
#![deny(missing_docs)]

extern crate blas_src;

mod config;
mod fused;
mod kernel;
mod merge;
mod plan;
mod rows;
mod stream;
mod tensors;
mod update;

use std::path::PathBuf;
use std::time::Duration;

pub use config::{AdapterConfig, ModuleSelector, ADAPTER_CONFIG_FILE, DEFAULT_LORA_TARGETS};
pub use kernel::single_threaded_blas;
pub use loraforge_hf_model::{Dtype, HfModelError};
pub use merge::merge;
pub use stream::{MergedModel, MergedTensor};
pub use tensors::MergedTensors;

/// File name of the adapter weights.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// The most worker threads a merge starts per CPU core, whatever [`MergeOptions::threads`] asks.
pub const MAX_THREADS_PER_CPU: usize = 4;

/// Output dtype of the merged model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputDtype {
    /// Each tensor keeps the base's dtype.
    #[default]
    Auto,
    /// float32.
    F32,
    /// float16.
    F16,
    /// bfloat16.
    BF16,
}

impl OutputDtype {
    /// The fixed dtype, or `None` for `Auto`.
    pub fn fixed(self) -> Option<Dtype> {
        match self {
            OutputDtype::Auto => None,
            OutputDtype::F32 => Some(Dtype::F32),
            OutputDtype::F16 => Some(Dtype::F16),
            OutputDtype::BF16 => Some(Dtype::BF16),
        }
    }
}

impl std::str::FromStr for OutputDtype {
    type Err = MergeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(OutputDtype::Auto),
            "f32" | "float32" => Ok(OutputDtype::F32),
            "f16" | "float16" => Ok(OutputDtype::F16),
            "bf16" | "bfloat16" => Ok(OutputDtype::BF16),
            _ => Err(MergeError::BadDtype { value: s.into() }),
        }
    }
}

/// What to merge and where.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    /// The base model folder.
    pub base_dir: PathBuf,
    /// The adapter folder (`adapter_config.json` + `adapter_model.safetensors`).
    pub adapter_dir: PathBuf,
    /// The output folder (must not exist unless `force`).
    pub out_dir: PathBuf,
    /// Output dtype.
    pub dtype: OutputDtype,
    /// Largest shard in bytes (see [`parse_size`]; transformers' default is 5 GB).
    pub max_shard_size: u64,
    /// Worker threads (`None`: all cores; at most [`MAX_THREADS_PER_CPU`] per core; 0 is
    /// refused).
    pub threads: Option<usize>,
    /// Replace an existing output folder.
    pub force: bool,
    /// Write the model even if the merge produced inf/NaN.
    pub allow_non_finite: bool,
    /// `fsync` every weight file before the folder is renamed into place (default `true`;
    /// `save_pretrained` does not, so turn it off to compare like with like).
    pub fsync: bool,
    /// Compute the SHA-256 of every output file for the report (default `false`, like
    /// `save_pretrained`; the registry turns it on because it records them). Hashing runs on a
    /// second thread and costs about as much CPU as writing the bytes.
    pub sha256: bool,
}

impl MergeOptions {
    /// Options with the defaults: auto dtype, 5 GB shards, all cores, no force, fsync, no
    /// checksums.
    pub fn new(
        base_dir: impl Into<PathBuf>,
        adapter_dir: impl Into<PathBuf>,
        out_dir: impl Into<PathBuf>,
    ) -> Self {
        MergeOptions {
            base_dir: base_dir.into(),
            adapter_dir: adapter_dir.into(),
            out_dir: out_dir.into(),
            dtype: OutputDtype::Auto,
            max_shard_size: loraforge_hf_model::DEFAULT_MAX_SHARD_SIZE,
            threads: None,
            force: false,
            allow_non_finite: false,
            fsync: true,
            sha256: false,
        }
    }
}

impl MergeOptions {
    /// Checks the output folder before any work: a path that can take a folder, absent unless
    /// [`MergeOptions::force`], and neither the base nor the adapter folder (nor containing
    /// them). [`merge`] calls it; a caller writing the merge elsewhere (merged_4bit) too.
    pub fn check_output(&self) -> Result<(), MergeError> {
        let out_dir = &self.out_dir;
        loraforge_staging::check_output(out_dir, loraforge_staging::OutputKind::Folder)?;
        if out_dir.exists() && !self.force {
            return Err(MergeError::OutputExists {
                path: out_dir.clone(),
            });
        }
        if let Ok(out) = out_dir.canonicalize() {
            for input in [&self.base_dir, &self.adapter_dir] {
                if input
                    .canonicalize()
                    .is_ok_and(|i| i == out || i.starts_with(&out))
                {
                    return Err(MergeError::OutputIsInput {
                        path: out_dir.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// What a merge did.
#[derive(Debug, Clone)]
pub struct MergeReport {
    /// Tensors written.
    pub tensors_total: usize,
    /// Tensors whose values the adapter changed (LoRA, DoRA, replacements, bias adds).
    pub tensors_changed: usize,
    /// Files written: path relative to the output folder, size, SHA-256 (hex; `None` when
    /// [`MergeOptions::sha256`] is off).
    pub output_files: Vec<(PathBuf, u64, Option<String>)>,
    /// Output dtype (the config's dtype when `Auto` kept mixed dtypes).
    pub dtype: Dtype,
    /// Wall time.
    pub elapsed: Duration,
    /// Bytes of tensor data written.
    pub bytes_written: u64,
    /// Where the tokenizer files came from (`None`: neither folder had any).
    pub tokenizer_source: Option<PathBuf>,
    /// LoRA modules in the adapter file that its config does not target; PEFT ignores them
    /// when loading, and so does the merge.
    pub ignored_modules: Vec<String>,
    /// Parameters in the merged model.
    pub parameters: u64,
    /// How `B·A` was computed: `"openblas-sgemm"` when OpenBLAS's kernel on this CPU reproduces
    /// torch's accumulation bit for bit (checked at start), else `"sequential-fma"`.
    pub backend: &'static str,
    /// Things the user should know (modules ignored, adapter trained on a differently named
    /// base); also sent to the reporter as messages.
    pub warnings: Vec<String>,
}

/// Parses a size like transformers' `max_shard_size`: a number of bytes, or a number with a unit
/// (`KB`/`MB`/`GB`/`TB` decimal, `KiB`/`MiB`/`GiB`/`TiB` binary, `B`), case-insensitive,
/// optional fraction (`"1.5GB"`).
pub fn parse_size(text: &str) -> Result<u64, MergeError> {
    let bad = || MergeError::BadSize {
        value: text.to_string(),
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_uppercase();
    let mult: u64 = match unit.as_str() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        "TIB" => 1 << 40,
        _ => return Err(bad()),
    };
    if num.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).filter(|&v| v > 0).ok_or_else(bad);
    }
    let f: f64 = num.parse().map_err(|_| bad())?;
    let v = f * mult as f64;
    if !(v.is_finite() && v >= 1.0 && v < u64::MAX as f64) {
        return Err(bad());
    }
    Ok(v as u64)
}

/// Everything that can go wrong in a merge. Nothing is left in the output location on error.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Reading the base model (or writing the output) failed.
    #[error(transparent)]
    Model(#[from] HfModelError),
    /// The output path cannot take a folder, or the temporary folder failed.
    #[error(transparent)]
    Staging(#[from] loraforge_staging::StagingError),
    /// I/O error on a file.
    #[error("I/O error on {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The adapter folder has no `adapter_config.json`.
    #[error("{dir} has no adapter_config.json: not a PEFT adapter folder")]
    NotAnAdapter {
        /// The folder.
        dir: PathBuf,
    },
    /// The adapter config is malformed.
    #[error("{path}: {reason}")]
    AdapterConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The adapter weights are a pickle.
    #[error("{path} is a pickle (torch.save); loraforge does not unpickle files. Convert it to safetensors first: in Python, `PeftModel.from_pretrained(base, adapter_dir).save_pretrained(out_dir, safe_serialization=True)`, or `safetensors.torch.save_file(torch.load(path, weights_only=True), \"adapter_model.safetensors\", metadata={{\"format\": \"pt\"}})`")]
    PickleAdapter {
        /// The `.bin` file.
        path: PathBuf,
    },
    /// No adapter weights file.
    #[error("{dir} has no adapter_model.safetensors")]
    MissingAdapterWeights {
        /// The folder.
        dir: PathBuf,
    },
    /// An initialisation that rewrites the base weights.
    #[error("the adapter was initialised with {method:?}, which modifies the base weights at init; merging it onto the original base gives a wrong model. Re-save it with PEFT's `path_initial_model_for_weight_conversion` (converts it to a plain LoRA) and merge that")]
    BaseRewritingInit {
        /// `init_lora_weights`.
        method: String,
    },
    /// A feature loraforge does not merge.
    #[error("unsupported adapter feature: {what}")]
    Unsupported {
        /// What.
        what: String,
    },
    /// Adapter tensors that do not correspond to any base tensor.
    #[error("{} adapter tensor(s) in {adapter} match no tensor of the base at {base}: {}{}", keys.len(), keys.join(", "), adapter_base.as_ref().map(|b| format!(" — the adapter was trained on {b:?}; is this the right base?")).unwrap_or_default())]
    UnmatchedAdapterTensors {
        /// The adapter file.
        adapter: PathBuf,
        /// The base folder.
        base: PathBuf,
        /// The adapter keys.
        keys: Vec<String>,
        /// `base_model_name_or_path` of the adapter.
        adapter_base: Option<String>,
    },
    /// `target_modules` is absent and PEFT has no default targets for the base's architecture.
    #[error("{path} has no target_modules and PEFT has no default targets for model_type {}; add target_modules to the adapter config", model_type.as_deref().map(|t| format!("{t:?}")).unwrap_or_else(|| "(none in config.json)".into()))]
    NoDefaultTargets {
        /// The adapter config.
        path: PathBuf,
        /// `model_type` of the base's `config.json`.
        model_type: Option<String>,
    },
    /// `target_modules` matches no module of the base (PEFT: "Target modules … not found in the
    /// base model").
    #[error("target_modules {targets} in {path} match no module of the base at {base}: the adapter would change nothing. Check target_modules, or that this is the base the adapter was trained on")]
    NoModuleTargeted {
        /// The adapter config.
        path: PathBuf,
        /// The base folder.
        base: PathBuf,
        /// The selector, as written.
        targets: String,
    },
    /// The adapter's LoRA tensors all sit on modules its config does not target: PEFT would load
    /// none of them and the merge would return the base unchanged.
    #[error("every LoRA module in {adapter} ({}) is outside target_modules in its adapter_config.json: PEFT ignores them all and the merge would change nothing. Fix target_modules in the adapter config", modules.join(", "))]
    AllModulesIgnored {
        /// The adapter weights file.
        adapter: PathBuf,
        /// The ignored modules.
        modules: Vec<String>,
    },
    /// The adapter changes no tensor of the base (no LoRA pair, no saved module).
    #[error("{adapter} holds no LoRA tensors or saved modules for the base at {base}: the merge would change nothing")]
    NothingToMerge {
        /// The adapter weights file.
        adapter: PathBuf,
        /// The base folder.
        base: PathBuf,
    },
    /// `use_dora: true` but a targeted module has no magnitude vector: merging it as plain LoRA
    /// would give a different model than PEFT's.
    #[error("adapter_config.json sets use_dora but LoRA module {module} has no lora_magnitude_vector in the adapter weights; the file is incomplete (merging it as plain LoRA would be wrong)")]
    DoraWithoutMagnitude {
        /// The module.
        module: String,
    },
    /// A module has only one of its LoRA matrices.
    #[error("LoRA module {module} has no {missing} tensor in the adapter")]
    IncompleteModule {
        /// The module.
        module: String,
        /// What is missing.
        missing: String,
    },
    /// `lora_A` and `lora_B` disagree on the rank.
    #[error(
        "LoRA module {module}: lora_A {a_shape:?} and lora_B {b_shape:?} disagree on the rank"
    )]
    RankMismatch {
        /// The module.
        module: String,
        /// A's shape.
        a_shape: Vec<usize>,
        /// B's shape.
        b_shape: Vec<usize>,
    },
    /// The tensors' rank is not the rank the config gives the module.
    #[error("LoRA module {module}: adapter_config.json gives rank {config_rank} (r / rank_pattern), the tensors have rank {tensor_rank}")]
    ConfigRankMismatch {
        /// The module.
        module: String,
        /// Rank from the config.
        config_rank: u64,
        /// Rank from the tensors.
        tensor_rank: usize,
    },
    /// A and B do not fit the base weight.
    #[error("base tensor {tensor} has shape {weight_shape:?}, which lora_A {a_shape:?} / lora_B {b_shape:?} do not fit{}", adapter_base.as_ref().map(|b| format!(" — the adapter was trained on {b:?}, apparently a different model than this base")).unwrap_or_default())]
    LoraShape {
        /// The base tensor.
        tensor: String,
        /// Its shape.
        weight_shape: Vec<usize>,
        /// A's shape (or the magnitude vector's).
        a_shape: Vec<usize>,
        /// B's shape.
        b_shape: Vec<usize>,
        /// `base_model_name_or_path` of the adapter.
        adapter_base: Option<String>,
    },
    /// A replacement tensor's shape differs from the base's.
    #[error("adapter tensor {key} {adapter_shape:?} would replace base tensor {tensor} {base_shape:?}: shapes differ{}", adapter_base.as_ref().map(|b| format!(" — the adapter was trained on {b:?}")).unwrap_or_default())]
    ReplacementShape {
        /// The adapter key.
        key: String,
        /// The base tensor.
        tensor: String,
        /// Adapter shape.
        adapter_shape: Vec<usize>,
        /// Base shape.
        base_shape: Vec<usize>,
        /// `base_model_name_or_path` of the adapter.
        adapter_base: Option<String>,
    },
    /// `lora_B.bias` on a layer whose base has no bias.
    #[error("LoRA module {module} has lora_B.bias but the base layer has no bias")]
    LoraBiasWithoutBase {
        /// The module.
        module: String,
    },
    /// Two adapter modules update the same base tensor.
    #[error("two adapter modules update base tensor {tensor}")]
    DoubleUpdate {
        /// The tensor.
        tensor: String,
    },
    /// The merge produced inf or NaN.
    #[error("merging produced a non-finite value (inf/NaN) in {tensor} at element {index}; pass allow_non_finite (--allow-non-finite) to write it anyway")]
    NonFinite {
        /// The tensor.
        tensor: String,
        /// Flat element index.
        index: usize,
    },
    /// The output folder exists.
    #[error("output folder {path} already exists (use --force to replace it)")]
    OutputExists {
        /// The folder.
        path: PathBuf,
    },
    /// The output folder is (or contains) the base or the adapter.
    #[error(
        "output folder {path} is the base or adapter folder (or contains it); choose another --out"
    )]
    OutputIsInput {
        /// The folder.
        path: PathBuf,
    },
    /// Unparseable size.
    #[error("{value:?} is not a size (examples: 5GB, 500MB, 2GiB, 1000000)")]
    BadSize {
        /// The text.
        value: String,
    },
    /// Unknown dtype name.
    #[error("{value:?} is not an output dtype (auto, bf16, f16, f32)")]
    BadDtype {
        /// The text.
        value: String,
    },
    /// `threads` is 0.
    #[error("{requested} worker threads: a merge needs at least one")]
    BadThreads {
        /// The request.
        requested: usize,
    },
    /// [`MergedTensor::merge`] was called with a range that is not whole rows of the tensor,
    /// or lies outside it (a bug in the caller).
    #[error("cannot merge elements {first}..{first}+{len} of {tensor} ({elements} elements, rows of {row_len}): not whole rows inside the tensor")]
    BadRange {
        /// The tensor.
        tensor: String,
        /// First element asked for.
        first: usize,
        /// Elements asked for.
        len: usize,
        /// The row length the merge needs whole rows of.
        row_len: usize,
        /// Elements in the tensor.
        elements: usize,
    },
    /// A worker thread pool could not be built.
    #[error("could not start worker threads: {reason}")]
    Threads {
        /// Why.
        reason: String,
    },
}

impl MergeError {
    /// True when the base, the adapter or the options are at fault (the user can fix it),
    /// false when something failed underneath (I/O, threads).
    pub fn is_user_error(&self) -> bool {
        match self {
            MergeError::Model(e) => e.is_user_error(),
            MergeError::Io { .. } | MergeError::Threads { .. } | MergeError::BadRange { .. } => {
                false
            }
            _ => true,
        }
    }

    /// What to do next, when there is something specific to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            MergeError::Model(e) => e.hint(),
            MergeError::UnmatchedAdapterTensors { .. }
            | MergeError::LoraShape { .. }
            | MergeError::ReplacementShape { .. } => Some(
                "check that the base model is the one the adapter was trained on (its adapter_config.json names it in base_model_name_or_path)".into(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes_follow_transformers_units() {
        assert_eq!(parse_size("5GB").unwrap(), 5_000_000_000);
        assert_eq!(parse_size("100KB").unwrap(), 100_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5 gb").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("GB").is_err());
        assert!(parse_size("5XB").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn dtype_names() {
        assert_eq!("bf16".parse::<OutputDtype>().unwrap(), OutputDtype::BF16);
        assert_eq!("auto".parse::<OutputDtype>().unwrap(), OutputDtype::Auto);
        assert!("int4".parse::<OutputDtype>().is_err());
    }
}
