//! PEFT LoRA adapter → LoRA GGUF, the same file as llama.cpp's `convert_lora_to_gguf.py`
//! (llama.cpp 0c1e57098) for the adapters that script converts correctly.
//!
//! Layout the script writes (and llama.cpp's `--lora` reads): `general.architecture` of the
//! base, `general.type = "adapter"`, `adapter.type = "lora"`, the `general.*` keys gguf-py
//! derives from the adapter folder (README front matter: base models, tags, license …; the
//! folder name as `general.name`), `adapter.lora.alpha` (f32), `general.quantization_version`;
//! then per adapted weight `<gguf name>.lora_a` (`[r, in]`) and `.lora_b` (`[out, r]`), in the
//! order of the adapter file, with the base converter's row permutation of Llama Q/K applied to
//! `lora_b` and `token_embd`'s `lora_a` transposed.

use std::path::{Path, PathBuf};

use loraforge_gguf::{GgufWriter, Metadata, SourceError, TensorInfo, WriteOptions};
use loraforge_hf_model::{Dtype, SafetensorsFile};
use loraforge_progress::Reporter;
use loraforge_quantize::{FileType, GgmlType};
use serde_json::Value as Json;

use crate::arch::{self, Arch, Hparams, Transform};
use crate::{ConvertError, ExportTarget};

/// Options of [`convert_lora`].
#[derive(Debug, Clone)]
pub struct LoraConvertOptions {
    /// Output tensor type, as `convert_lora_to_gguf.py --outtype`:
    /// [`ExportTarget::Convert`] with F32 (the script's default, and [`Default`]'s), F16, BF16 or
    /// Q8_0 (`lora_b`, whose rows are `r` long, falls back to f16 as in the script), or
    /// [`ExportTarget::Auto`] (bf16 for bf16 adapters, else f16 — what the script's `auto` means;
    /// the script itself crashes on it in this version). Other targets are refused.
    pub target: ExportTarget,
    /// Compute the file's SHA-256 while writing.
    pub sha256: bool,
}

impl Default for LoraConvertOptions {
    fn default() -> LoraConvertOptions {
        LoraConvertOptions {
            target: ExportTarget::Convert(FileType::F32),
            sha256: false,
        }
    }
}

/// What [`convert_lora`] wrote.
#[derive(Debug, Clone)]
pub struct LoraConvertReport {
    /// The GGUF file.
    pub path: PathBuf,
    /// GGUF `general.architecture`.
    pub architecture: String,
    /// Number of tensors (two per adapted weight).
    pub tensors: usize,
    /// `adapter.lora.alpha`.
    pub alpha: f32,
    /// File size.
    pub bytes: u64,
    /// SHA-256 when asked for.
    pub sha256: Option<String>,
    /// Things the caller should know (Q8_0 fallbacks, scalings llama.cpp will not reproduce).
    pub warnings: Vec<String>,
}

/// Why an adapter cannot become a LoRA GGUF.
#[derive(Debug, thiserror::Error)]
pub enum LoraConvertError {
    /// Reading the base config or mapping names failed.
    #[error(transparent)]
    Convert(Box<ConvertError>),
    /// Reading the adapter failed.
    #[error("cannot read the adapter {path}")]
    Adapter {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: loraforge_hf_model::HfModelError,
    },
    /// `adapter_config.json` is missing or malformed.
    #[error("{path}: {reason}")]
    AdapterConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The adapter holds something a LoRA GGUF cannot carry (the script refuses it too).
    #[error("{tensor}: {reason}")]
    Refused {
        /// The adapter tensor.
        tensor: String,
        /// Why.
        reason: String,
    },
    /// An adapter tensor has no partner or the wrong shape for the base.
    #[error("{tensor}: {reason}")]
    BadTensor {
        /// The adapter tensor.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing the GGUF failed.
    #[error("cannot write {path}")]
    Write {
        /// The output.
        path: PathBuf,
        /// The cause.
        #[source]
        source: loraforge_gguf::WriteError,
    },
}

impl From<ConvertError> for LoraConvertError {
    fn from(error: ConvertError) -> Self {
        // Boxed: ConvertError is large and this Result is returned on every call.
        LoraConvertError::Convert(Box::new(error))
    }
}

impl LoraConvertError {
    /// Whether the error comes from the input (not from a failure underneath).
    pub fn is_user_error(&self) -> bool {
        match self {
            LoraConvertError::Convert(e) => e.is_user_error(),
            LoraConvertError::Write { source, .. } => source.is_user_error(),
            _ => true,
        }
    }

    /// What to do next, where there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            LoraConvertError::Refused { .. } => Some(
                "merge the adapter instead (`loraforge merge`) and convert the merged model".into(),
            ),
            LoraConvertError::BadTensor { .. } => {
                Some("check that --base is the model the adapter was trained on".into())
            }
            LoraConvertError::Convert(e) => e.hint(),
            LoraConvertError::Write { source, .. } => source.hint(),
            _ => None,
        }
    }
}

struct Pair {
    base_name: String,
    a: Option<(String, Dtype, Vec<usize>, Vec<f32>)>,
    b: Option<(String, Dtype, Vec<usize>, Vec<f32>)>,
}

/// Converts the PEFT adapter in `adapter_dir` (for the base model in `base_dir`, of which only
/// `config.json` is read) into the LoRA GGUF `out`.
pub fn convert_lora(
    adapter_dir: &Path,
    base_dir: &Path,
    out: &Path,
    options: &LoraConvertOptions,
    reporter: &dyn Reporter,
) -> Result<LoraConvertReport, LoraConvertError> {
    let cfg_path = adapter_dir.join("adapter_config.json");
    let bad_cfg = |reason: String| LoraConvertError::AdapterConfig {
        path: cfg_path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| bad_cfg(e.to_string()))?;
    let lcfg: Json = serde_json::from_str(&text).map_err(|e| bad_cfg(e.to_string()))?;
    if let Some(t) = lcfg.get("peft_type").and_then(Json::as_str) {
        if t != "LORA" {
            return Err(bad_cfg(format!(
                "peft_type {t:?}: only LoRA adapters have a LoRA GGUF"
            )));
        }
    }
    let alpha = lcfg
        .get("lora_alpha")
        .and_then(Json::as_f64)
        .ok_or_else(|| bad_cfg("no numeric lora_alpha".into()))? as f32;
    let mut warnings = Vec::new();
    let r = lcfg.get("r").and_then(Json::as_f64);
    if lcfg.get("use_rslora").and_then(Json::as_bool) == Some(true) {
        warnings.push(format!(
            "use_rslora: PEFT scales by alpha/sqrt(r); llama.cpp applies alpha/r from this file{}",
            r.map(|r| format!(
                " ({} instead of {})",
                alpha / r as f32,
                alpha / (r as f32).sqrt()
            ))
            .unwrap_or_default()
        ));
    }
    for k in ["rank_pattern", "alpha_pattern"] {
        if lcfg
            .get(k)
            .and_then(Json::as_object)
            .is_some_and(|m| !m.is_empty())
        {
            warnings.push(format!(
                "{k}: the file carries one lora_alpha ({alpha}); llama.cpp scales every module by alpha/its rank"
            ));
        }
    }
    if lcfg
        .get("invocation_string")
        .and_then(Json::as_str)
        .is_some()
        && lcfg
            .get("alora_invocation_tokens")
            .is_none_or(Json::is_null)
    {
        return Err(bad_cfg(
            "aLoRA invocation_string without alora_invocation_tokens is not supported".into(),
        ));
    }

    // The base: architecture and hparams (config.json only).
    let base_cfg_path = base_dir.join("config.json");
    let base_text = std::fs::read_to_string(&base_cfg_path).map_err(|source| ConvertError::Io {
        path: base_cfg_path.clone(),
        source,
    })?;
    let base_cfg: Json =
        serde_json::from_str(&base_text).map_err(|source| ConvertError::InvalidJson {
            path: base_cfg_path.clone(),
            source,
        })?;
    let base_obj = base_cfg
        .as_object()
        .cloned()
        .ok_or_else(|| ConvertError::JsonShape {
            path: base_cfg_path.clone(),
            problem: "the top level is not an object".into(),
        })?;
    let hf_arch = base_cfg
        .get("text_config")
        .and_then(|t| t.get("architectures"))
        .or_else(|| base_cfg.get("architectures"))
        .and_then(|a| a.get(0))
        .and_then(Json::as_str)
        .ok_or(ConvertError::MissingHparam {
            key: "architectures".into(),
            expected: "a list with the model class name",
        })?
        .to_string();
    let arch = Arch::from_hf(&hf_arch)?;
    let hp = Hparams::new(base_obj, arch)?;

    // The base's weight shapes, when its weights are there (the script reads only config.json;
    // checking them catches an adapter made for another base).
    let base_shapes: Option<std::collections::HashMap<String, Vec<usize>>> =
        loraforge_hf_model::HfModel::open(base_dir).ok().map(|m| {
            m.tensor_names()
                .iter()
                .filter_map(|n| m.tensor(n).ok().map(|t| (n.to_string(), t.shape.to_vec())))
                .collect()
        });

    // The adapter tensors, in file order (safetensors' `load_file` order).
    let st_path = adapter_dir.join("adapter_model.safetensors");
    let file = SafetensorsFile::open(&st_path).map_err(|source| LoraConvertError::Adapter {
        path: st_path.clone(),
        source,
    })?;
    let mut pairs: Vec<Pair> = Vec::new();
    for info in &file.header().tensors {
        let name = info.name.as_str();
        let mut base_name = name
            .replace("base_model.model.", "")
            .replace(".lora_A.weight", ".weight")
            .replace(".lora_B.weight", ".weight")
            .replace(".lora_embedding_A", ".weight")
            .replace(".lora_embedding_B", ".weight");
        base_name = base_name.replace("language_model.", "");
        if arch == Arch::Llama {
            base_name = base_name.replace("text_model.", "");
        }
        if arch.norm_plus_one() && base_name == "lm_head.weight" {
            continue; // GemmaModel.filter_tensors drops lm_head
        }
        let is_a = name.contains(".lora_A.weight") || name.contains(".lora_embedding_A");
        let is_b = name.contains(".lora_B.weight") || name.contains(".lora_embedding_B");
        if !is_a && !is_b {
            if name.contains(".base_layer.weight") {
                continue;
            }
            let reason = if name.ends_with("lora_magnitude_vector") {
                "DoRA magnitude vector: llama.cpp's LoRA format has no DoRA (the script stops here too)"
            } else if name.contains(".embed_tokens.weight") || name.contains(".lm_head.weight") {
                "a full embedding / lm_head copy (modules_to_save or new tokens): not a lora_A or lora_B tensor, the script refuses it"
            } else if name.contains("_layernorm") || name.contains(".norm") {
                "a norm weight inside the adapter (mergekit-extract-lora) is not supported yet"
            } else {
                "not a lora_A or lora_B tensor (the script refuses it)"
            };
            return Err(LoraConvertError::Refused {
                tensor: name.to_string(),
                reason: reason.into(),
            });
        }
        let view = file
            .tensor(name)
            .map_err(|source| LoraConvertError::Adapter {
                path: st_path.clone(),
                source,
            })?;
        let entry = Some((
            name.to_string(),
            view.dtype,
            view.shape.to_vec(),
            view.to_f32_vec(),
        ));
        let idx = match pairs.iter().position(|p| p.base_name == base_name) {
            Some(i) => i,
            None => {
                pairs.push(Pair {
                    base_name: base_name.clone(),
                    a: None,
                    b: None,
                });
                pairs.len() - 1
            }
        };
        if is_a {
            pairs[idx].a = entry;
        } else {
            pairs[idx].b = entry;
        }
    }
    let tied = base_cfg.get("tie_word_embeddings").and_then(Json::as_bool) == Some(true)
        || base_shapes
            .as_ref()
            .is_some_and(|s| !s.contains_key("lm_head.weight"));
    if tied
        && pairs
            .iter()
            .any(|p| p.base_name.ends_with("embed_tokens.weight"))
    {
        warnings.push(
            "a LoRA on the token embedding of a base with tied embeddings: llama.cpp (0c1e57098) \
             also applies it to the output projection, where its A/B layout does not fit, and \
             aborts (GGML_ASSERT ggml_can_mul_mat); merge the adapter and convert instead"
                .into(),
        );
    }

    // Out type.
    let first_dtype = pairs
        .iter()
        .find_map(|p| p.a.as_ref().map(|a| a.1))
        .unwrap_or(Dtype::F32);
    let matrix_ty = match options.target {
        ExportTarget::Auto if first_dtype == Dtype::BF16 => GgmlType::BF16,
        ExportTarget::Auto => GgmlType::F16,
        ExportTarget::Convert(file_type) => ExportTarget::converter_matrix_type(file_type)
            .ok_or_else(|| ConvertError::UnsupportedOutType(file_type.to_string()))?,
        other @ (ExportTarget::Source | ExportTarget::Quantize(_)) => {
            return Err(ConvertError::UnsupportedOutType(other.to_string()).into())
        }
    };

    // Tensors: (name, type, ggml dims, data in the adapter's (f16 or f32) precision as f32).
    struct Out {
        name: String,
        ty: GgmlType,
        dims: Vec<u64>,
        src_dtype: Dtype,
        values: Vec<f32>,
    }
    let mut outs: Vec<Out> = Vec::new();
    let mut total_params: i64 = 0;
    for p in pairs {
        let (Some(a), Some(b)) = (p.a, p.b) else {
            return Err(LoraConvertError::BadTensor {
                tensor: p.base_name,
                reason: "has lora_A without lora_B or the reverse".into(),
            });
        };
        let Some((gguf_name, transform)) = arch::map_tensor(arch, &hp, &p.base_name)? else {
            continue;
        };
        let checked = base_shapes
            .as_ref()
            .filter(|_| transform != Transform::Transpose);
        if let Some(want) = checked.and_then(|m| m.get(&p.base_name)) {
            let got = if gguf_name.contains("token_embd.weight") {
                vec![
                    a.2.get(1).copied().unwrap_or(0),
                    b.2.first().copied().unwrap_or(0),
                ]
            } else {
                vec![
                    b.2.first().copied().unwrap_or(0),
                    a.2.get(1).copied().unwrap_or(0),
                ]
            };
            if *want != got {
                return Err(LoraConvertError::BadTensor {
                    tensor: a.0,
                    reason: format!(
                        "the adapter's delta is {got:?} but the base's {} is {want:?}: an adapter for another base",
                        p.base_name
                    ),
                });
            }
        }
        if a.2.len() != 2 || b.2.len() != 2 || a.2[0] != b.2[1] {
            return Err(LoraConvertError::BadTensor {
                tensor: a.0,
                reason: format!("lora_A {:?} and lora_B {:?} do not pair up", a.2, b.2),
            });
        }
        // LoraTorchTensor: mixed dtypes and anything but f16/f32 become f32.
        let dtype = if a.1 == b.1 && a.1 == Dtype::F16 {
            Dtype::F16
        } else {
            Dtype::F32
        };
        let (r, inner) = (a.2[0], a.2[1]);
        let outer = b.2[0];
        let (mut a_vals, mut a_shape) = (a.3, vec![r, inner]);
        let mut b_vals = b.3;
        match transform {
            Transform::None => {}
            Transform::Permute(h) => {
                let bytes: Vec<u8> = b_vals.iter().flat_map(|v| v.to_le_bytes()).collect();
                let permuted =
                    crate::data::permute_rows(&bytes, &[outer, r], h, 4).ok_or_else(|| {
                        LoraConvertError::BadTensor {
                            tensor: b.0.clone(),
                            reason: format!(
                                "{outer} rows do not split into {h} heads of even size"
                            ),
                        }
                    })?;
                b_vals = permuted
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
            }
            Transform::Transpose => {
                return Err(LoraConvertError::Refused {
                    tensor: a.0,
                    reason: "a Conv1D (GPT-2) LoRA: the script transposes A and B into a file \
                             llama.cpp rejects or applies transposed"
                        .into(),
                })
            }
            Transform::AddOne => {
                return Err(LoraConvertError::Refused {
                    tensor: a.0,
                    reason: "a LoRA on a norm weight".into(),
                })
            }
        }
        if gguf_name.contains("token_embd.weight") {
            // lora_a = lora_a.T
            let mut t = vec![0f32; a_vals.len()];
            for i in 0..r {
                for j in 0..inner {
                    t[j * r + i] = a_vals[i * inner + j];
                }
            }
            a_vals = t;
            a_shape = vec![inner, r];
        }
        total_params += (outer * inner) as i64;
        for (suffix, shape, vals) in [
            ("lora_a", a_shape.clone(), a_vals),
            ("lora_b", vec![outer, r], b_vals),
        ] {
            let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
            let mut ty = matrix_ty;
            if ty == GgmlType::Q8_0 && !dims[0].is_multiple_of(32) {
                warnings.push(format!(
                    "{gguf_name}.{suffix}: rows of {} are not a multiple of 32, written as f16",
                    dims[0]
                ));
                ty = GgmlType::F16;
            }
            outs.push(Out {
                name: format!("{gguf_name}.{suffix}"),
                ty,
                dims,
                src_dtype: dtype,
                values: vals,
            });
        }
    }
    if outs.is_empty() {
        return Err(LoraConvertError::BadTensor {
            tensor: st_path.display().to_string(),
            reason: "no lora_A/lora_B pairs for this base".into(),
        });
    }

    // Metadata in the script's order.
    let mut md = Metadata::new();
    md.set("general.architecture", arch.gguf_name());
    md.set("general.type", "adapter");
    md.set("adapter.type", "lora");
    crate::lora_meta::model_card_metadata(&mut md, adapter_dir, -total_params)?;
    md.set("adapter.lora.alpha", alpha);
    if let Some(tokens) = lcfg.get("alora_invocation_tokens").and_then(Json::as_array) {
        let t: Vec<u32> = tokens
            .iter()
            .filter_map(Json::as_u64)
            .map(|v| v as u32)
            .collect();
        md.set("adapter.alora.invocation_tokens", t);
    }
    md.set("general.quantization_version", 2u32);

    let mut writer = GgufWriter::with_metadata(md);
    let werr = |source: loraforge_gguf::WriteError| LoraConvertError::Write {
        path: out.to_path_buf(),
        source,
    };
    for o in &outs {
        writer
            .add_tensor(TensorInfo::new(o.name.clone(), o.ty, o.dims.clone()))
            .map_err(werr)?;
    }
    reporter.begin("convert-lora", Some(outs.len() as u64));
    let mut source =
        |index: usize, info: &TensorInfo, w: &mut dyn std::io::Write| -> Result<(), SourceError> {
            let o = outs.get(index).ok_or("tensor index out of range")?;
            let row_len = usize::try_from(o.dims.first().copied().unwrap_or(1))?;
            let src: Vec<u8> = match o.src_dtype {
                Dtype::F16 => o
                    .values
                    .iter()
                    .flat_map(|v| loraforge_hf_model::f32_to_f16(*v).to_le_bytes())
                    .collect(),
                _ => o.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            };
            let mut dst = Vec::new();
            crate::data::convert(o.src_dtype, &src, info.ty, row_len, &mut dst)?;
            w.write_all(&dst)?;
            reporter.advance(1);
            Ok(())
        };
    let written = writer
        .write_to_path(
            out,
            &mut source,
            &WriteOptions {
                sha256: options.sha256,
            },
        )
        .map_err(werr)?;
    reporter.finish();
    Ok(LoraConvertReport {
        path: out.to_path_buf(),
        architecture: arch.gguf_name().into(),
        tensors: outs.len(),
        alpha,
        bytes: written.bytes,
        sha256: written.sha256,
        warnings,
    })
}
