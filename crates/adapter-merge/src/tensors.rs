//! [`MergedTensors`]: the merge as a source of merged tensors, for writers other than the
//! 16-bit safetensors one (the `merged_4bit` NF4 writer quantizes the merged rows as they come,
//! with no 16-bit folder in between).

use std::path::PathBuf;
use std::sync::Mutex;

use loraforge_hf_model::{Dtype, HfModel, SafetensorsFile};
use loraforge_progress::Reporter;

use crate::kernel::{choose_backend, Backend};
use crate::merge::{
    backend_name, merged_config, prepare, retire, tokenizer_source, worker_threads, Ctx, Prepared,
};
use crate::plan::Plan;
use crate::{MergeError, MergeOptions};

/// A resolved merge (base and adapter opened, every check of [`crate::merge`] done) that hands
/// out each merged tensor on request, in any order, as the bytes [`crate::merge`] would write
/// for it: the same values, rounded to the same output dtype.
///
/// Only [`MergeOptions::base_dir`], [`MergeOptions::adapter_dir`], [`MergeOptions::dtype`],
/// [`MergeOptions::threads`] and [`MergeOptions::allow_non_finite`] matter here; the output
/// folder is the caller's business.
///
/// ```no_run
/// use loraforge_adapter_merge::{MergeOptions, MergedTensors};
/// use loraforge_progress::NoProgress;
///
/// let merged = MergedTensors::open(&MergeOptions::new("base", "adapter", "unused"), &NoProgress)?;
/// for name in merged.tensor_names() {
///     let mut bytes = 0usize;
///     merged.stream(name, &mut |piece: &[u8]| {
///         bytes += piece.len();
///         true // false stops the stream
///     })?;
///     println!("{name}: {bytes} bytes of {:?}", merged.output_dtype(name)?);
/// }
/// # Ok::<(), loraforge_adapter_merge::MergeError>(())
/// ```
pub struct MergedTensors {
    base: HfModel,
    adapter: SafetensorsFile,
    plan: Plan,
    options: MergeOptions,
    warnings: Vec<String>,
    backend: Backend,
    pool: rayon::ThreadPool,
    buffers: Mutex<Vec<Vec<u8>>>,
}

impl MergedTensors {
    /// Opens and resolves the merge (the warnings also go to `reporter` as messages).
    pub fn open(options: &MergeOptions, reporter: &dyn Reporter) -> Result<Self, MergeError> {
        let Prepared {
            base,
            adapter,
            plan,
            warnings,
        } = prepare(options, reporter)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(worker_threads(options.threads)?)
            .build()
            .map_err(|e| MergeError::Threads {
                reason: e.to_string(),
            })?;
        Ok(MergedTensors {
            base,
            adapter,
            plan,
            options: options.clone(),
            warnings,
            backend: choose_backend(),
            pool,
            buffers: Mutex::new(Vec::new()),
        })
    }

    /// The base model (its tensors' names, shapes, dtypes and files).
    pub fn base(&self) -> &HfModel {
        &self.base
    }

    /// The merged model's tensor names, in the base's order (the same set as the base's).
    pub fn tensor_names(&self) -> Vec<&str> {
        self.base.tensor_names()
    }

    /// The dtype `name`'s merged bytes are in (the base tensor's, or the fixed output dtype).
    pub fn output_dtype(&self, name: &str) -> Result<Dtype, MergeError> {
        Ok(match self.options.dtype.fixed() {
            Some(d) => d,
            None => self.base.tensor(name)?.dtype,
        })
    }

    /// Whether the merge changes `name`'s values (LoRA, DoRA, a replacement, a bias add); an
    /// unchanged tensor's merged bytes are the base's (converted when the output dtype differs).
    pub fn changes(&self, name: &str) -> bool {
        self.plan.jobs.get(name).is_some_and(|job| !job.is_copy())
    }

    /// How many tensors the merge changes.
    pub fn tensors_changed(&self) -> usize {
        self.plan.jobs.values().filter(|job| !job.is_copy()).count()
    }

    /// Streams `name`'s merged bytes to `sink`, in order, a piece at a time (at most 4 MiB of
    /// f32-equivalent; a LoRA-updated matrix in whole rows). `sink` returns `false` to stop:
    /// then this returns `Ok(false)`. Refuses inf/NaN in a merged result like [`crate::merge`]
    /// (unless [`MergeOptions::allow_non_finite`]). The base's mapped pages are released as
    /// the pieces are consumed, so memory stays bounded by a piece.
    pub fn stream(
        &self,
        name: &str,
        sink: &mut (dyn FnMut(&[u8]) -> bool + Send),
    ) -> Result<bool, MergeError> {
        let job = self
            .plan
            .jobs
            .get(name)
            .ok_or_else(|| MergeError::Unsupported {
                what: format!("internal: no plan for tensor {name}"),
            })?;
        let out_dtype = self.output_dtype(name)?;
        let ctx = Ctx {
            base: &self.base,
            adapter: &self.adapter,
            allow_non_finite: self.options.allow_non_finite,
            backend: self.backend,
            pool: &self.buffers,
        };
        let (base, buffers) = (&self.base, &self.buffers);
        self.pool.install(|| {
            ctx.produce(name, job, out_dtype, &mut |piece| {
                let go_on = sink(&piece.bytes);
                retire(piece, base, buffers);
                go_on
            })
        })
    }

    /// The bytes of the merged folder's `config.json` ([`crate::merge`] writes the same).
    pub fn config_json(&self) -> Result<Vec<u8>, MergeError> {
        merged_config(&self.options, &self.base)
    }

    /// The folder [`crate::merge`] copies the tokenizer files from (the adapter's when it has
    /// any, else the base's; `None`: neither has any).
    pub fn tokenizer_source(&self) -> Option<PathBuf> {
        tokenizer_source(&self.options)
    }

    /// Warnings about the merge (ignored modules, a differently named base).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// LoRA modules of the adapter its config does not target (ignored, as PEFT does).
    pub fn ignored_modules(&self) -> &[String] {
        &self.plan.ignored_modules
    }

    /// How `B·A` is computed (as [`crate::MergeReport::backend`]).
    pub fn backend(&self) -> &'static str {
        backend_name(self.backend)
    }
}
