//! Where each tensor of a 4-bit save goes: transformers' `state_dict()` order, huggingface_hub's
//! shard split, the `safetensors` library's layout inside each file, the shard index.

use std::collections::BTreeMap;

/// One dot-separated part of a name, as transformers' `dot_natural_key` sorts it: numbers
/// (numerically) before text; text alphabetically, then by its trailing number (none first).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KeyPart<'a> {
    Number(u128),
    Text(&'a str, Option<u128>),
}

/// transformers' `dot_natural_key`: the name split on `.`, digit parts as numbers, other parts
/// as (text without trailing digits, trailing number).
fn dot_natural_key(name: &str) -> Vec<KeyPart<'_>> {
    let number = |digits: &str| digits.parse::<u128>().unwrap_or(u128::MAX);
    name.split('.')
        .map(|part| {
            if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                return KeyPart::Number(number(part));
            }
            let text = part.trim_end_matches(|c: char| c.is_ascii_digit());
            let trailing = &part[text.len()..];
            KeyPart::Text(text, (!trailing.is_empty()).then(|| number(trailing)))
        })
        .collect()
}

/// Sorts names the way transformers 5.23's `save_pretrained` orders the state dict it shards:
/// `revert_weight_conversion` sorts every model loaded with `from_pretrained` by
/// `dot_natural_key` (so `layers.2` before `layers.10`, `bias` before `weight`, `lm_head`
/// before `model.…`).
pub(crate) fn sort_like_save_pretrained<T>(items: &mut [T], name: impl Fn(&T) -> &str) {
    items.sort_by(|a, b| dot_natural_key(name(a)).cmp(&dot_natural_key(name(b))));
}

/// huggingface_hub's `split_state_dict_into_shards_factory` over tensor sizes in state-dict
/// order: a tensor larger than `max_shard_size` gets a shard of its own (placed before the shard
/// being filled, which goes on filling); otherwise a new shard starts when the tensor would
/// take the current one past `max_shard_size`. Returns the shards as index lists.
pub(crate) fn split_shards(sizes: &[u64], max_shard_size: u64) -> Vec<Vec<usize>> {
    let mut shards = Vec::new();
    let mut current = Vec::new();
    let mut current_size = 0u64;
    for (i, &size) in sizes.iter().enumerate() {
        if size > max_shard_size {
            shards.push(vec![i]);
            continue;
        }
        if current_size + size > max_shard_size {
            shards.push(std::mem::take(&mut current));
            current_size = 0;
        }
        current.push(i);
        current_size += size;
    }
    if !current.is_empty() || shards.is_empty() {
        shards.push(current);
    }
    shards
}

/// The file name of shard `k` (0-based) of `n`: `model.safetensors` alone, else
/// `model-0000k-of-0000n.safetensors`.
pub(crate) fn shard_file_name(k: usize, n: usize) -> String {
    if n == 1 {
        loraforge_hf_model::SINGLE_FILE.to_string()
    } else {
        format!("model-{:05}-of-{:05}.safetensors", k + 1, n)
    }
}

/// Order of dtypes in a safetensors file (the library sorts by its `Dtype` enum, descending).
pub(crate) fn dtype_rank(dtype: &str) -> u8 {
    match dtype {
        "F32" => 3,
        "BF16" => 2,
        "F16" => 1,
        _ => 0,
    }
}

/// A tensor as the safetensors header lists it.
pub(crate) struct HeaderEntry<'a> {
    /// The caller's index of the tensor.
    pub index: usize,
    pub name: &'a str,
    pub dtype: &'a str,
    pub shape: &'a [usize],
    pub len: u64,
}

/// Sorts `entries` into the `safetensors` library's layout (dtype descending, then name) and
/// returns the header bytes (8-byte length, JSON with `{"format":"pt"}` metadata padded with
/// spaces to a multiple of 8) and each entry's data offset, in the sorted order.
pub(crate) fn header(entries: &mut [HeaderEntry<'_>]) -> (Vec<u8>, Vec<u64>) {
    entries.sort_by(|a, b| {
        dtype_rank(b.dtype)
            .cmp(&dtype_rank(a.dtype))
            .then_with(|| a.name.cmp(b.name))
    });
    let mut json = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    let mut offsets = Vec::with_capacity(entries.len());
    let mut offset = 0u64;
    for e in entries.iter() {
        offsets.push(offset);
        let shape: Vec<String> = e.shape.iter().map(|d| d.to_string()).collect();
        json.push_str(&format!(
            ",{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            serde_json::Value::String(e.name.to_string()),
            e.dtype,
            shape.join(","),
            offset,
            offset + e.len
        ));
        offset += e.len;
    }
    json.push('}');
    let mut json = json.into_bytes();
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    (out, offsets)
}

/// `model.safetensors.index.json` as transformers writes it: `json.dumps(index, indent=2,
/// sort_keys=True) + "\n"` of `{"metadata": {"total_parameters", "total_size"}, "weight_map"}`.
pub(crate) fn index_json(
    total_parameters: u64,
    total_size: u64,
    weight_map: BTreeMap<String, String>,
) -> String {
    let index = serde_json::json!({
        "metadata": {"total_parameters": total_parameters, "total_size": total_size},
        "weight_map": weight_map,
    });
    let mut text = serde_json::to_string_pretty(&index).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_like_dot_natural_key() {
        let mut names = vec![
            "model.norm.weight",
            "model.layers.10.input_layernorm.weight",
            "model.layers.2.self_attn.q_proj.weight.absmax",
            "model.layers.2.self_attn.q_proj.weight",
            "model.layers.2.self_attn.q_proj.bias",
            "model.layers.2.mlp.down_proj.weight",
            "lm_head.weight",
            "model.embed_tokens.weight",
            "model.h11.x",
            "model.h2.x",
            "model.h.x",
        ];
        sort_like_save_pretrained(&mut names, |n| n);
        assert_eq!(
            names,
            [
                "lm_head.weight",
                "model.embed_tokens.weight",
                "model.h.x",
                "model.h2.x",
                "model.h11.x",
                "model.layers.2.mlp.down_proj.weight",
                "model.layers.2.self_attn.q_proj.bias",
                "model.layers.2.self_attn.q_proj.weight",
                "model.layers.2.self_attn.q_proj.weight.absmax",
                "model.layers.10.input_layernorm.weight",
                "model.norm.weight",
            ]
        );
    }

    /// huggingface_hub's docstring example: limit 10, sizes [6, 6, 2, 6, 2, 2] →
    /// [6], [6+2], [6+2+2]; and a tensor above the limit gets its own shard, ahead of the one
    /// being filled.
    #[test]
    fn shards_split_like_huggingface_hub() {
        assert_eq!(
            split_shards(&[6, 6, 2, 6, 2, 2], 10),
            vec![vec![0], vec![1, 2], vec![3, 4, 5]]
        );
        assert_eq!(
            split_shards(&[3, 12, 4, 5], 10),
            vec![vec![1], vec![0, 2], vec![3]]
        );
        assert_eq!(split_shards(&[], 10), vec![Vec::<usize>::new()]);
        assert_eq!(split_shards(&[10, 0], 10), vec![vec![0, 1]]);
        assert_eq!(shard_file_name(1, 3), "model-00002-of-00003.safetensors");
        assert_eq!(shard_file_name(0, 1), "model.safetensors");
    }
}
