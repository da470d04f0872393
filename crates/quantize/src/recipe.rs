//! The llama.cpp "ftype" mixture: which ggml type each tensor of a model gets.
//!
//! A port of `llama_model_quantize_impl`'s type decisions in `src/llama-quant.cpp` (llama.cpp
//! commit 0c1e57098, the revision bundled in llama-cpp-python 0.3.36) for the file types
//! loraforge offers, without an importance matrix and with default parameters (no type
//! overrides, `pure = false`, output tensor quantized). Pure: names, shapes and hparams in,
//! decisions out — no tensor data.

use crate::{GgmlType, QuantizeError};

pub use loraforge_naming::FileType;

/// The type most tensors of a `ftype` file get (`default_type` in `llama_model_quantize_impl`).
pub fn default_type(ftype: FileType) -> GgmlType {
    match ftype {
        FileType::F32 => GgmlType::F32,
        FileType::F16 => GgmlType::F16,
        FileType::BF16 => GgmlType::BF16,
        FileType::Q8_0 => GgmlType::Q8_0,
        FileType::Q4KM | FileType::Q4KS => GgmlType::Q4K,
    }
}

/// The model facts the type rules read (GGUF `<arch>.*` metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelHparams {
    /// `general.architecture` (`llama`, `falcon`, `qwen2` …). Only `llama` (the 80-layer
    /// "70B" rule) and `falcon` (its own output / ffn_down rules) change decisions.
    pub arch: String,
    /// `<arch>.block_count`.
    pub n_layer: u32,
    /// `<arch>.attention.head_count`.
    pub n_head: u32,
    /// `<arch>.attention.head_count_kv` (equal to `n_head` when absent).
    pub n_head_kv: u32,
    /// `<arch>.expert_count` (0 for dense models).
    pub n_expert: u32,
}

impl ModelHparams {
    /// A dense llama-architecture model.
    pub fn llama(n_layer: u32, n_head: u32, n_head_kv: u32) -> ModelHparams {
        ModelHparams {
            arch: "llama".to_string(),
            n_layer,
            n_head,
            n_head_kv,
            n_expert: 0,
        }
    }

    /// `LLM_TYPE_70B` as far as the quantizer cares: llama, 80 layers, grouped-query attention.
    fn is_llama_70b(&self) -> bool {
        self.arch == "llama" && self.n_layer == 80 && self.n_head != self.n_head_kv
    }

    fn is_falcon(&self) -> bool {
        self.arch == "falcon"
    }
}

/// A type the rules wanted but the row length did not allow (`tensor_type_fallback`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// The type the mixture rules chose.
    pub wanted: GgmlType,
    /// The type actually used.
    pub used: GgmlType,
    /// Why, in llama.cpp's words, e.g. `ncols 320 (x 160) not divisible by 256 (required for
    /// type q4_K) -> falling back to q5_0`.
    pub reason: String,
}

/// The decision for one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorDecision {
    /// GGUF tensor name.
    pub name: String,
    /// The output type.
    pub ty: GgmlType,
    /// Set when the row length forced a different type than the rules wanted.
    pub fallback: Option<Fallback>,
    /// True when the data must be converted (`ty` differs from the input type); false when
    /// the tensor is copied unchanged (not quantizable, or already of type `ty`).
    pub quantize: bool,
}

/// A tensor as the planner sees it: GGUF name, GGUF dims (`ne[0]` = row length first), and the
/// input type.
pub type TensorMeta = (String, Vec<u64>, GgmlType);

/// `ggml_n_dims`: dimensions up to the last one that is not 1 (at least 1).
fn n_dims(ne: &[u64]) -> usize {
    ne.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1)
}

/// Substrings that exclude a tensor from quantization (`tensor_allows_quantization`).
const NOT_QUANTIZED_PARTS: &[&str] = &[
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
];

/// `tensor_allows_quantization` for default parameters: at least 2 dimensions (`ggml_n_dims`),
/// a name ending in `weight`, and none of the excluded kinds (norms, MoE routers, position
/// embeddings, small conv / RWKV / multimodal weights …).
pub fn tensor_allows_quantization(name: &str, ne: &[u64]) -> bool {
    n_dims(ne) >= 2
        && name.ends_with("weight")
        && !NOT_QUANTIZED_PARTS.iter().any(|s| name.contains(s))
        && name != "position_embd.weight"
        && name != "token_types.weight"
}

/// `tensor_category` of llama-quant.cpp: broad roles by name, tested in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    AttentionQ,
    AttentionV,
    AttentionK,
    AttentionQkv,
    AttentionKvB,
    AttentionOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

fn category(name: &str) -> Category {
    if name == "output.weight" {
        return Category::Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return Category::TokenEmbd;
    }
    const BY_PART: [(&str, Category); 9] = [
        ("attn_qkv.weight", Category::AttentionQkv),
        ("attn_kv_b.weight", Category::AttentionKvB),
        ("attn_v.weight", Category::AttentionV),
        ("attn_k.weight", Category::AttentionK),
        ("attn_q.weight", Category::AttentionQ),
        ("attn_output.weight", Category::AttentionOutput),
        ("ffn_up", Category::FfnUp),
        ("ffn_gate", Category::FfnGate),
        ("ffn_down", Category::FfnDown),
    ];
    BY_PART
        .iter()
        .find(|(part, _)| name.contains(part))
        .map_or(Category::Other, |(_, c)| *c)
}

/// `category_is_attn_v`: attention-V-like tensors (more sensitive to quantization).
fn is_attn_v_like(c: Category) -> bool {
    matches!(
        c,
        Category::AttentionV | Category::AttentionQkv | Category::AttentionKvB
    )
}

/// `use_more_bits` of `llama_tensor_get_type`.
fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The layer number in `blk.N.` as `sscanf(name, "blk.%d.", …)` converts it.
fn parse_layer(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?.trim_start();
    let (sign, digits) = match rest.as_bytes().first() {
        Some(b'-') => (-1, &rest[1..]),
        Some(b'+') => (1, &rest[1..]),
        _ => (1, rest),
    };
    let len = digits.bytes().take_while(u8::is_ascii_digit).count();
    let v: i64 = digits[..len].parse().ok()?;
    Some(sign * v)
}

struct Counters {
    n_attention_wv: i64,
    i_attention_wv: i64,
    i_ffn_down: i64,
    has_output: bool,
}

/// Decide every tensor's type in the given order (which must be the order llama.cpp visits
/// them — the output file's tensor order, see [`llama_tensor_order`] — because the attn_v and
/// ffn_down rules count tensors).
///
/// Errors only when llama.cpp itself refuses: a tensor whose row length fits no fallback
/// (e.g. Q8_0 with `ne[0] % 32 != 0`).
pub fn plan_tensor_types(
    ftype: FileType,
    hparams: &ModelHparams,
    tensors: &[TensorMeta],
) -> Result<Vec<TensorDecision>, QuantizeError> {
    let mut c = Counters {
        n_attention_wv: tensors
            .iter()
            .filter(|t| is_attn_v_like(category(&t.0)))
            .count() as i64,
        i_attention_wv: 0,
        i_ffn_down: 0,
        has_output: tensors.iter().any(|t| category(&t.0) == Category::Output),
    };
    let default_type = default_type(ftype);
    tensors
        .iter()
        .map(|(name, ne, input)| {
            if !tensor_allows_quantization(name, ne) {
                return Ok(TensorDecision {
                    name: name.clone(),
                    ty: *input,
                    fallback: None,
                    quantize: false,
                });
            }
            let (ty, fallback) = if default_type.is_quantized() {
                tensor_get_type(&mut c, ftype, hparams, name, ne)?
            } else {
                (default_type, None)
            };
            Ok(TensorDecision {
                name: name.clone(),
                ty,
                fallback,
                quantize: ty != *input,
            })
        })
        .collect()
}

/// `llama_tensor_get_type` for the quantized file types.
fn tensor_get_type(
    c: &mut Counters,
    ftype: FileType,
    hp: &ModelHparams,
    name: &str,
    ne: &[u64],
) -> Result<(GgmlType, Option<Fallback>), QuantizeError> {
    let mut new_type = default_type(ftype);
    let nx = ne.first().copied().unwrap_or(0);
    let q4km = ftype == FileType::Q4KM;
    let q4ks = ftype == FileType::Q4KS;
    let n_layer = i64::from(hp.n_layer);

    let cat = category(name);

    if cat == Category::Output || (!c.has_output && cat == Category::TokenEmbd) {
        // Output (and the tied embedding that doubles as output).
        if hp.is_falcon() || nx % new_type.block_size() as u64 != 0 {
            new_type = GgmlType::Q8_0;
        } else if new_type != GgmlType::Q8_0 {
            new_type = GgmlType::Q6K;
        }
    } else if cat == Category::TokenEmbd {
        // Untied embedding: no rule for Q8_0 / Q4_K_M / Q4_K_S (keeps the default type).
    } else if is_attn_v_like(cat) {
        if q4km && use_more_bits(c.i_attention_wv, c.n_attention_wv) {
            new_type = GgmlType::Q6K;
        } else if q4ks && c.i_attention_wv < 4 {
            new_type = GgmlType::Q5K;
        }
        if hp.is_llama_70b() && matches!(new_type, GgmlType::Q3K | GgmlType::Q4K) {
            new_type = GgmlType::Q5K;
        }
        if hp.n_expert == 8 {
            new_type = GgmlType::Q8_0;
        }
        c.i_attention_wv += 1;
    } else if cat == Category::AttentionK {
        if hp.n_expert == 8 {
            new_type = GgmlType::Q8_0;
        }
    } else if cat == Category::FfnDown {
        let i_layer = if hp.n_expert > 1 {
            parse_layer(name)
                .filter(|l| (0..n_layer).contains(l))
                .ok_or_else(|| QuantizeError::BadLayer {
                    tensor: name.to_string(),
                    n_layer: hp.n_layer,
                })?
        } else {
            c.i_ffn_down
        };
        if q4km {
            if hp.is_falcon() {
                new_type = if i_layer < n_layer / 16 {
                    GgmlType::Q6K
                } else if use_more_bits(i_layer, n_layer) {
                    GgmlType::Q5K
                } else {
                    GgmlType::Q4K
                };
            } else if use_more_bits(i_layer, n_layer) {
                new_type = GgmlType::Q6K;
            }
        } else if q4ks && !hp.is_falcon() && i_layer < n_layer / 8 {
            new_type = GgmlType::Q5K;
        }
        c.i_ffn_down += 1;
    } else if cat == Category::AttentionOutput
        && !hp.is_falcon()
        && hp.n_expert == 8
        && (q4km || q4ks)
    {
        new_type = GgmlType::Q5K;
    }
    // (ATTENTION_QKV's own branch is unreachable in this revision: attn_qkv takes the attn_v
    // rule above. attn_q, ffn_gate, ffn_up: no rule for these file types.)

    // Shape fallback (`tensor_type_fallback`).
    let block = new_type.block_size() as u64;
    if nx % block == 0 {
        return Ok((new_type, None));
    }
    let used = match new_type {
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q5K => GgmlType::Q5_1,
        GgmlType::Q6K => GgmlType::Q8_0,
        other => {
            return Err(QuantizeError::NoFallback {
                tensor: name.to_string(),
                ty: other,
                ne0: nx,
            })
        }
    };
    let used = if nx % used.block_size() as u64 != 0 {
        GgmlType::F16
    } else {
        used
    };
    let ny = ne.get(1).copied().unwrap_or(1);
    Ok((
        used,
        Some(Fallback {
            wanted: new_type,
            used,
            reason: format!(
                "ncols {nx} (x {ny}) not divisible by {block} (required for type {new_type}){} -> falling back to {used}",
                if used == GgmlType::F16 {
                    " (must use F16 due to unusual shape)"
                } else {
                    ""
                }
            ),
        }),
    ))
}

/// Sort tensor names into the order `llama_model_quantize` visits and writes them: by the layer
/// number of `blk.N.` (-1 for other tensors), then by name, byte-wise.
pub fn llama_tensor_order<T: AsRef<str>>(names: &mut [T]) {
    names.sort_by(|a, b| {
        let (a, b) = (a.as_ref(), b.as_ref());
        let la = parse_layer_prefix(a);
        let lb = parse_layer_prefix(b);
        la.cmp(&lb).then_with(|| a.as_bytes().cmp(b.as_bytes()))
    });
}

/// `sscanf(name, "blk.%d.", &layer)` with `layer = -1` beforehand: the integer right after
/// `blk.` (the trailing `.` is not required for the assignment to happen), else -1.
fn parse_layer_prefix(name: &str) -> i64 {
    parse_layer(name).unwrap_or(-1)
}
