//! The llama.cpp "ftype" mixture: which ggml type each tensor of a model gets.
//!
//! A port of `llama_model_quantize_impl`'s type decisions in `src/llama-quant.cpp` (llama.cpp
//! commit 0c1e57098, the revision bundled in llama-cpp-python 0.3.36) for the file types
//! loraforge offers, without an importance matrix and with default parameters (no type
//! overrides, `pure = false`, output tensor quantized). Pure: names, shapes and hparams in,
//! decisions out — no tensor data.

use crate::{GgmlType, QuantizeError};

pub use loraforge_naming::FileType;

/// The type most tensors of a `ftype` file get (`llama_ftype_get_default_type`).
pub fn default_type(ftype: FileType) -> GgmlType {
    match ftype {
        FileType::F32 => GgmlType::F32,
        FileType::F16 => GgmlType::F16,
        FileType::BF16 => GgmlType::BF16,
        FileType::Q8_0 => GgmlType::Q8_0,
        FileType::Q6K => GgmlType::Q6K,
        FileType::Q5KM | FileType::Q5KS => GgmlType::Q5K,
        FileType::Q5_1 => GgmlType::Q5_1,
        FileType::Q5_0 => GgmlType::Q5_0,
        FileType::Q4KM | FileType::Q4KS => GgmlType::Q4K,
        FileType::Q4_1 => GgmlType::Q4_1,
        FileType::Q4_0 => GgmlType::Q4_0,
        FileType::Q3KL | FileType::Q3KM | FileType::Q3KS => GgmlType::Q3K,
        FileType::Q2K => GgmlType::Q2K,
    }
}

/// The model facts the type rules read (GGUF `<arch>.*` metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelHparams {
    /// `general.architecture` (`llama`, `falcon`, `qwen2` …). It changes decisions through
    /// the "70B" model type (see [`ModelHparams::is_70b`]) and for `falcon` (its own output /
    /// ffn_down / attn_output rules).
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

    /// True when llama.cpp's `load_arch_hparams` gives the model the type `LLM_TYPE_70B` (the
    /// only model type the quantizer looks at): llama with 80 layers, grouped-query attention
    /// and not 8 experts; qwen2, deci and olmo with 80 layers; jais2 with 68.
    pub fn is_70b(&self) -> bool {
        match self.arch.as_str() {
            "llama" => self.n_expert != 8 && self.n_layer == 80 && self.n_head != self.n_head_kv,
            "qwen2" | "deci" | "olmo" => self.n_layer == 80,
            "jais2" => self.n_layer == 68,
            _ => false,
        }
    }

    /// `hparams.n_gqa()`: query heads per key/value head (0 without key/value heads).
    pub fn n_gqa(&self) -> u32 {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
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
    i_ffn_gate: i64,
    i_ffn_up: i64,
    has_output: bool,
}

/// Decide every tensor's type in the given order (which must be the order llama.cpp visits
/// them — the output file's tensor order, see [`llama_tensor_order`] — because the attn_v and
/// ffn_down rules count tensors).
///
/// Errors only when llama.cpp itself refuses: in a mixture-of-experts model, an ffn tensor
/// without a valid `blk.N.` layer ([`QuantizeError::BadLayer`]). Row lengths that fit no block
/// size fall back as llama.cpp does (down to F16), never fail.
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
        i_ffn_gate: 0,
        i_ffn_up: 0,
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

/// `layer_info` of `llama_tensor_get_type_impl`: the layer of an ffn tensor. Dense models count
/// tensors (`counter`); with experts the layer is parsed from the name and must be in range.
fn layer_info(hp: &ModelHparams, counter: i64, name: &str) -> Result<(i64, i64), QuantizeError> {
    let n_layer = i64::from(hp.n_layer);
    if hp.n_expert <= 1 {
        return Ok((counter, n_layer));
    }
    parse_layer(name)
        .filter(|l| (0..n_layer).contains(l))
        .map(|l| (l, n_layer))
        .ok_or_else(|| QuantizeError::BadLayer {
            tensor: name.to_string(),
            n_layer: hp.n_layer,
        })
}

/// `llama_tensor_get_type_impl` (the mixture rules) for the quantized file types, without an
/// importance matrix.
fn mixture_type(
    c: &mut Counters,
    ftype: FileType,
    hp: &ModelHparams,
    name: &str,
    nx: u64,
) -> Result<GgmlType, QuantizeError> {
    use FileType as F;
    use GgmlType as T;
    let mut new_type = default_type(ftype);
    let falcon = hp.is_falcon();
    let cat = category(name);

    if cat == Category::Output || (!c.has_output && cat == Category::TokenEmbd) {
        // Output (and the tied embedding that doubles as output).
        if falcon || !nx.is_multiple_of(new_type.block_size() as u64) {
            new_type = T::Q8_0;
        } else if new_type != T::Q8_0 {
            new_type = T::Q6K;
        }
    } else if cat == Category::TokenEmbd {
        // Untied embedding: only the IQ / ternary file types have a rule.
    } else if is_attn_v_like(cat) {
        match ftype {
            F::Q2K => {
                new_type = if hp.n_gqa() >= 4 { T::Q4K } else { T::Q3K };
            }
            F::Q3KM => {
                new_type = if c.i_attention_wv < 2 { T::Q5K } else { T::Q4K };
            }
            F::Q3KL => new_type = T::Q5K,
            F::Q4KM | F::Q5KM if use_more_bits(c.i_attention_wv, c.n_attention_wv) => {
                new_type = T::Q6K;
            }
            F::Q4KS if c.i_attention_wv < 4 => new_type = T::Q5K,
            _ => {}
        }
        if hp.is_70b() && matches!(new_type, T::Q3K | T::Q4K) {
            new_type = T::Q5K;
        }
        if hp.n_expert == 8 {
            new_type = T::Q8_0;
        }
        c.i_attention_wv += 1;
    } else if cat == Category::AttentionK {
        if hp.n_expert == 8 {
            new_type = T::Q8_0;
        }
    } else if cat == Category::FfnDown {
        let (i_layer, n_layer) = layer_info(hp, c.i_ffn_down, name)?;
        match ftype {
            F::Q2K => new_type = T::Q3K,
            F::Q3KM => {
                new_type = if i_layer < n_layer / 16 {
                    T::Q5K
                } else if !falcon || use_more_bits(i_layer, n_layer) {
                    T::Q4K
                } else {
                    T::Q3K
                };
            }
            F::Q3KL => new_type = if falcon { T::Q4K } else { T::Q5K },
            F::Q4KM => {
                if falcon {
                    new_type = if i_layer < n_layer / 16 {
                        T::Q6K
                    } else if use_more_bits(i_layer, n_layer) {
                        T::Q5K
                    } else {
                        T::Q4K
                    };
                } else if use_more_bits(i_layer, n_layer) {
                    new_type = T::Q6K;
                }
            }
            F::Q5KM if use_more_bits(i_layer, n_layer) => new_type = T::Q6K,
            F::Q4KS if !falcon && i_layer < n_layer / 8 => new_type = T::Q5K,
            _ => {}
        }
        c.i_ffn_down += 1;
    } else if cat == Category::AttentionOutput {
        if falcon {
            if ftype == F::Q3KL {
                new_type = T::Q4K;
            }
        } else if hp.n_expert == 8 {
            if matches!(ftype, F::Q2K | F::Q3KS | F::Q3KM | F::Q4KS | F::Q4KM) {
                new_type = T::Q5K;
            }
        } else {
            match ftype {
                F::Q2K => new_type = T::Q3K,
                F::Q3KM => new_type = T::Q4K,
                F::Q3KL => new_type = T::Q5K,
                _ => {}
            }
        }
    } else if matches!(cat, Category::FfnGate | Category::FfnUp) {
        // No rule for these file types, but llama.cpp still resolves the layer (and fails on
        // an expert tensor without a valid `blk.N.`).
        let counter = if cat == Category::FfnGate {
            &mut c.i_ffn_gate
        } else {
            &mut c.i_ffn_up
        };
        layer_info(hp, *counter, name)?;
        *counter += 1;
    }
    // (ATTENTION_QKV's own branch is unreachable in this revision: attn_qkv takes the attn_v
    // rule above. attn_q: no rule for these file types.)
    Ok(new_type)
}

/// `llama_tensor_get_type` for the quantized file types: the mixture rules, then the shape
/// fallback.
fn tensor_get_type(
    c: &mut Counters,
    ftype: FileType,
    hp: &ModelHparams,
    name: &str,
    ne: &[u64],
) -> Result<(GgmlType, Option<Fallback>), QuantizeError> {
    let nx = ne.first().copied().unwrap_or(0);
    let new_type = mixture_type(c, ftype, hp, name, nx)?;
    tensor_type_fallback(name, ne, new_type)
}

/// `tensor_type_fallback`: when the row length `ne[0]` is not a multiple of the chosen type's
/// block size, llama.cpp picks a type with 32-element blocks (Q2_K/Q3_K → Q4_0, Q4_K → Q5_0,
/// Q5_K → Q5_1, Q6_K → Q8_0; a 32-block type keeps itself), and F16 when even that does not
/// divide the row.
fn tensor_type_fallback(
    name: &str,
    ne: &[u64],
    new_type: GgmlType,
) -> Result<(GgmlType, Option<Fallback>), QuantizeError> {
    let nx = ne.first().copied().unwrap_or(0);
    let block = new_type.block_size() as u64;
    if nx % block == 0 {
        return Ok((new_type, None));
    }
    let used = match new_type {
        GgmlType::Q2K | GgmlType::Q3K => GgmlType::Q4_0,
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q5K => GgmlType::Q5_1,
        GgmlType::Q6K => GgmlType::Q8_0,
        other if block <= 32 => other,
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
