//! The merge as a stream of tensors for sinks other than a safetensors folder (the one-pass
//! adapter → GGUF export): [`MergedModel`] resolves and checks the adapter up front like
//! [`merge`](crate::merge()), then [`MergedTensor::merge`] turns a caller's base bytes into the merged
//! bytes, a block of rows at a time, with the same kernels and the same rounding as the merged
//! folder [`merge`](crate::merge()) writes with [`crate::OutputDtype::Auto`].

use std::path::{Path, PathBuf};

use loraforge_hf_model::{
    decode_f32, encode_f32, plan_shards, Dtype, HfModel, SafetensorsFile, TensorView,
};

use crate::kernel::{choose_backend, Backend};
use crate::merge::{
    add_scaled_bias, merge_lora_rows, output_specs, resolve, write_side_files, Resolved,
};
use crate::plan::{Plan, Source};
use crate::update::{Layout, LoraUpdate};
use crate::MergeError;

/// An adapter resolved against its base, whose merged tensors are computed on demand.
///
/// Every merged tensor keeps the base tensor's dtype and holds the bytes [`merge`](crate::merge())
/// writes with [`crate::OutputDtype::Auto`] (same plan, same kernels, same rounding), so a
/// consumer that converts them sees exactly what it would read from the merged folder, without
/// that folder being written. The base weights themselves are read by the caller (who may
/// already be streaming them): [`MergedTensor::merge`] takes the base bytes in and gives the
/// merged bytes out.
///
/// ```no_run
/// use loraforge_adapter_merge::MergedModel;
/// use std::path::Path;
///
/// let merged = MergedModel::open(Path::new("base"), Path::new("adapter"))?;
/// if let Some(t) = merged.tensor("model.layers.0.self_attn.q_proj.weight")? {
///     let rows = 4 * t.shape()[1];
///     let base = vec![0u8; rows * t.dtype().size()]; // the base tensor's first 4 rows
///     let mut out = vec![0u8; base.len()];
///     t.merge(0, &base, &mut out)?;
/// }
/// # Ok::<(), loraforge_adapter_merge::MergeError>(())
/// ```
pub struct MergedModel {
    base: HfModel,
    adapter_dir: PathBuf,
    adapter: SafetensorsFile,
    plan: Plan,
    backend: Backend,
    warnings: Vec<String>,
}

impl std::fmt::Debug for MergedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergedModel")
            .field("base", &self.base.dir())
            .field("adapter", &self.adapter_dir)
            .finish_non_exhaustive()
    }
}

impl MergedModel {
    /// Opens the base folder and the adapter folder and resolves the merge: every check
    /// [`merge`](crate::merge()) makes before writing (config, refused initialisations, shapes, ranks,
    /// adapter tensors that match no base tensor …) runs here.
    pub fn open(base_dir: &Path, adapter_dir: &Path) -> Result<MergedModel, MergeError> {
        let base = HfModel::open(base_dir)?;
        let Resolved {
            adapter,
            plan,
            warnings,
        } = resolve(&base, adapter_dir)?;
        Ok(MergedModel {
            base,
            adapter_dir: adapter_dir.to_path_buf(),
            adapter,
            plan,
            backend: choose_backend(),
            warnings,
        })
    }

    /// Things the user should know (modules the config does not target, an adapter trained on
    /// a differently named base), as [`crate::MergeReport::warnings`] has them.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether the merge changes base tensor `name` (LoRA, DoRA, a replacement, a bias add).
    pub fn changes(&self, name: &str) -> bool {
        self.plan.jobs.get(name).is_some_and(|job| !job.is_copy())
    }

    /// The merged folder's weight files as [`merge`](crate::merge()) would shard them with
    /// `max_shard_size` ([`crate::OutputDtype::Auto`]): for each file, in file-name order, the
    /// names of its tensors.
    pub fn shards(&self, max_shard_size: u64) -> Result<Vec<Vec<String>>, MergeError> {
        let specs = output_specs(&self.base, None)?;
        let mut shards = plan_shards(&specs, max_shard_size)?;
        shards.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        Ok(shards
            .into_iter()
            .map(|s| s.tensors.iter().map(|&i| specs[i].name.clone()).collect())
            .collect())
    }

    /// Writes into `dir` the merged folder's files other than the weights, as [`merge`](crate::merge())
    /// writes them: `config.json`, `generation_config.json`, and the tokenizer files of the
    /// adapter folder when it has any, else of the base. Returns the folder the tokenizer came
    /// from.
    pub fn write_side_files(&self, dir: &Path) -> Result<Option<PathBuf>, MergeError> {
        let (_, tokenizer) = write_side_files(&self.base, &self.adapter_dir, None, dir, false)?;
        Ok(tokenizer)
    }

    /// The merge of base tensor `name`, or `None` when the merge leaves it unchanged (read it
    /// from the base as it is). The adapter's matrices are decoded to f32 here, once per
    /// tensor.
    pub fn tensor(&self, name: &str) -> Result<Option<MergedTensor<'_>>, MergeError> {
        let Some(job) = self.plan.jobs.get(name).filter(|job| !job.is_copy()) else {
            return Ok(None);
        };
        let base = self.base.tensor(name)?;
        let replacement = match &job.source {
            Source::Base => None,
            Source::Adapter(key) => Some(self.adapter.tensor(key)?),
        };
        let lora = match &job.lora {
            None => None,
            Some(l) => Some(LoraData {
                a: self.adapter.tensor(&l.a_key)?.to_f32_vec(),
                b: self.adapter.tensor(&l.b_key)?.to_f32_vec(),
                magnitude: match &l.magnitude_key {
                    Some(k) => Some(self.adapter.tensor(k)?.to_f32_vec()),
                    None => None,
                },
                layout: l.layout,
                rank: l.rank,
                scaling: l.scaling,
                embedding: l.embedding,
            }),
        };
        let bias = match &job.bias_add {
            None => None,
            Some((key, scaling)) => Some((self.adapter.tensor(key)?.to_f32_vec(), *scaling)),
        };
        Ok(Some(MergedTensor {
            name: name.to_string(),
            dtype: base.dtype,
            shape: base.shape.to_vec(),
            replacement,
            lora,
            bias,
            backend: self.backend,
            job_is_lora: job.lora.is_some(),
        }))
    }
}

/// A LoRA update's matrices, decoded once per tensor.
struct LoraData {
    a: Vec<f32>,
    b: Vec<f32>,
    magnitude: Option<Vec<f32>>,
    layout: Layout,
    rank: usize,
    scaling: f32,
    embedding: bool,
}

/// One tensor of a [`MergedModel`] that the merge changes.
pub struct MergedTensor<'a> {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    /// The adapter's full replacement of the base tensor (`modules_to_save` …).
    replacement: Option<TensorView<'a>>,
    lora: Option<LoraData>,
    /// `lora_B.bias` and its scaling.
    bias: Option<(Vec<f32>, f32)>,
    backend: Backend,
    job_is_lora: bool,
}

impl std::fmt::Debug for MergedTensor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergedTensor")
            .field("name", &self.name)
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl MergedTensor<'_> {
    /// The dtype of the base tensor, which the merged tensor keeps.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The tensor's shape (the base's).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Writes into `out` the merged values of elements `first ..` (row-major), given in `base`
    /// the base tensor's bytes of the same elements; both in [`MergedTensor::dtype`] and of the
    /// same length. A LoRA-updated tensor is merged in whole rows: `first` and the length must
    /// be multiples of the row length. Called on a rayon pool thread, the rows are spread over
    /// that pool; on any other thread they are merged on the calling thread. Fails with
    /// [`MergeError::NonFinite`] where [`merge`](crate::merge()) does.
    pub fn merge(&self, first: usize, base: &[u8], out: &mut [u8]) -> Result<(), MergeError> {
        let size = self.dtype.size();
        let total: usize = self.shape.iter().product();
        let n = base.len() / size;
        let row_len = match self.shape.as_slice() {
            [_, cols] if self.job_is_lora => (*cols).max(1),
            _ => 1,
        };
        let fits = base.len().is_multiple_of(size)
            && out.len() == base.len()
            && first.checked_add(n).is_some_and(|end| end <= total)
            && first.is_multiple_of(row_len)
            && n.is_multiple_of(row_len);
        if !fits {
            return Err(MergeError::BadRange {
                tensor: self.name.clone(),
                first,
                len: n,
                row_len,
                elements: total,
            });
        }
        // The starting value: the base's bytes, or the adapter's replacement of them.
        let (start, start_dtype) = match &self.replacement {
            None => (base, self.dtype),
            Some(r) => {
                let rs = r.dtype.size();
                let bytes = r.data.get(first * rs..(first + n) * rs).unwrap_or(&[]);
                (bytes, r.dtype)
            }
        };
        if let Some(l) = &self.lora {
            let (rows, cols) = (self.shape[0], self.shape[1]);
            let update = LoraUpdate {
                layout: l.layout,
                rank: l.rank,
                rows,
                cols,
                a: &l.a,
                b: &l.b,
                scaling: l.scaling,
                round_delta_to: l.embedding.then_some(self.dtype),
                magnitude: l.magnitude.as_deref(),
            };
            let row0 = first / cols.max(1);
            let bad = merge_lora_rows(
                self.backend,
                &update,
                row0,
                (start, start_dtype),
                (out, self.dtype),
            );
            if let Some(index) = bad {
                return Err(MergeError::NonFinite {
                    tensor: self.name.clone(),
                    index,
                });
            }
            return Ok(());
        }
        if self.bias.is_none() && start_dtype == self.dtype {
            out.copy_from_slice(start);
            return Ok(());
        }
        let mut vals = vec![0f32; n];
        decode_f32(start_dtype, start, &mut vals);
        if let Some((bias, scaling)) = &self.bias {
            let bias = bias.get(first..first + n).unwrap_or(&[]);
            add_scaled_bias(&mut vals, start_dtype, self.dtype, bias, *scaling);
        }
        encode_f32(self.dtype, &vals, out);
        Ok(())
    }
}
