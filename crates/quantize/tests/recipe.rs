//! The ftype mixture against llama.cpp: the per-tensor types `llama_model_quantize` chose for
//! the fixture files (`tests/fixtures/quant-files/*.types.txt`), and synthetic llama models whose
//! expected types are written out by hand from `quant-policy.md` (layer lists copied from its
//! worked-values table, not computed with the code under test).
#![allow(clippy::unwrap_used)]

use loraforge_quantize::recipe::{
    llama_tensor_order, plan_tensor_types, FileType, ModelHparams, TensorDecision,
};
use loraforge_quantize::{GgmlType, QuantizeError};
use std::collections::BTreeMap;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../tests/fixtures/quant-files/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn ty_from_name(s: &str) -> GgmlType {
    GgmlType::ALL
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(s))
        .unwrap()
}

/// (name, dims, type) rows of a types.txt file.
fn types_txt(name: &str) -> Vec<(String, Vec<u64>, GgmlType)> {
    fixture(name)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let dims = f[2].split('x').map(|d| d.parse().unwrap()).collect();
            (f[0].to_string(), dims, ty_from_name(f[1]))
        })
        .collect()
}

#[test]
fn fixture_files_get_llama_cpp_types() {
    let models = [
        ("micro-f16", ModelHparams::llama(2, 4, 2), GgmlType::F16),
        (
            "micro-r320-tied-f16",
            ModelHparams::llama(2, 4, 4),
            GgmlType::F16,
        ),
        ("micro-f32", ModelHparams::llama(1, 2, 1), GgmlType::F32),
    ];
    let mut fallbacks_seen = 0;
    for (model, hp, input_ty) in &models {
        for ft in ["q8_0", "q4_K_M", "q4_K_S"] {
            let want = types_txt(&format!("{model}.{ft}.types.txt"));
            // The input: same names and dims; 2-D tensors in the input type, 1-D in F32.
            let input: Vec<_> = want
                .iter()
                .map(|(n, d, _)| {
                    let t = if d.len() >= 2 {
                        *input_ty
                    } else {
                        GgmlType::F32
                    };
                    (n.clone(), d.clone(), t)
                })
                .collect();
            // The types.txt order is llama.cpp's processing order.
            let mut names: Vec<&str> = input.iter().map(|t| t.0.as_str()).collect();
            let listed = names.clone();
            names.reverse();
            llama_tensor_order(&mut names);
            assert_eq!(names, listed, "{model} tensor order");

            let plan = plan_tensor_types(ft.parse::<FileType>().unwrap(), hp, &input).unwrap();
            for ((name, _, want_ty), d) in want.iter().zip(&plan) {
                assert_eq!(&d.name, name);
                assert_eq!(d.ty, *want_ty, "{model}.{ft}: {name}");
                if let Some(f) = &d.fallback {
                    fallbacks_seen += 1;
                    assert_eq!(f.used, d.ty);
                    assert!(f.reason.contains("not divisible by 256"), "{}", f.reason);
                }
            }
        }
    }
    // r320: every 2-D tensor in Q4_K_M / Q4_K_S falls back (token_embd goes to Q8_0 directly).
    assert_eq!(fallbacks_seen, 2 * 14);
}

const LAYER_TENSORS: [&str; 9] = [
    "attn_k",
    "attn_norm",
    "attn_output",
    "attn_q",
    "attn_v",
    "ffn_down",
    "ffn_gate",
    "ffn_norm",
    "ffn_up",
];

/// A llama model in llama.cpp order (hidden 4096 / ffn 11008 style, all rows multiples of 256).
fn llama_model(n_layer: usize, tied: bool) -> Vec<(String, Vec<u64>, GgmlType)> {
    let (h, f, kv, vocab) = (512u64, 1024u64, 128u64, 1000u64);
    let mut t = Vec::new();
    if !tied {
        t.push(("output.weight".to_string(), vec![h, vocab], GgmlType::F16));
    }
    t.push(("output_norm.weight".to_string(), vec![h], GgmlType::F32));
    t.push((
        "token_embd.weight".to_string(),
        vec![h, vocab],
        GgmlType::F16,
    ));
    for i in 0..n_layer {
        for n in LAYER_TENSORS {
            let dims = match n {
                "attn_norm" | "ffn_norm" => vec![h],
                "attn_k" | "attn_v" => vec![h, kv],
                "ffn_down" => vec![f, h],
                "ffn_gate" | "ffn_up" => vec![h, f],
                _ => vec![h, h],
            };
            let ty = if dims.len() == 1 {
                GgmlType::F32
            } else {
                GgmlType::F16
            };
            t.push((format!("blk.{i}.{n}.weight"), dims, ty));
        }
    }
    t
}

fn by_name(plan: &[TensorDecision]) -> BTreeMap<&str, GgmlType> {
    plan.iter().map(|d| (d.name.as_str(), d.ty)).collect()
}

/// Checks one synthetic model: `v_k` / `down_k` are the layers where Q4_K_M upgrades attn_v /
/// ffn_down (else `v_k_else`), `ks_down` the Q4_K_S ffn_down Q5_K layers, `ks_v_all` whether
/// Q4_K_S attn_v is Q5_K on every layer (70B) instead of only layers 0..4.
fn check_model(n: usize, hp: &ModelHparams, q6_layers: &[usize], ks_down: &[usize], big70: bool) {
    let model = llama_model(n, false);
    let m = plan_tensor_types(FileType::Q4KM, hp, &model).unwrap();
    let s = plan_tensor_types(FileType::Q4KS, hp, &model).unwrap();
    let q8 = plan_tensor_types(FileType::Q8_0, hp, &model).unwrap();
    let f16 = plan_tensor_types(FileType::F16, hp, &model).unwrap();
    let (m, s, q8, f16) = (by_name(&m), by_name(&s), by_name(&q8), by_name(&f16));
    use GgmlType::*;
    for plan in [&m, &s] {
        assert_eq!(plan["output.weight"], Q6K);
        assert_eq!(plan["token_embd.weight"], Q4K);
        assert_eq!(plan["output_norm.weight"], F32);
    }
    assert_eq!(q8["output.weight"], Q8_0);
    assert_eq!(q8["token_embd.weight"], Q8_0);
    for i in 0..n {
        let k = |t: &str| format!("blk.{i}.{t}.weight");
        let up = q6_layers.contains(&i);
        let v_m = if up {
            Q6K
        } else if big70 {
            Q5K
        } else {
            Q4K
        };
        assert_eq!(
            m[k("attn_v").as_str()],
            v_m,
            "n={n} Q4_K_M attn_v layer {i}"
        );
        let d_m = if up { Q6K } else { Q4K };
        assert_eq!(
            m[k("ffn_down").as_str()],
            d_m,
            "n={n} Q4_K_M ffn_down layer {i}"
        );
        let v_s = if i < 4 || big70 { Q5K } else { Q4K };
        assert_eq!(
            s[k("attn_v").as_str()],
            v_s,
            "n={n} Q4_K_S attn_v layer {i}"
        );
        let d_s = if ks_down.contains(&i) { Q5K } else { Q4K };
        assert_eq!(
            s[k("ffn_down").as_str()],
            d_s,
            "n={n} Q4_K_S ffn_down layer {i}"
        );
        for t in ["attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"] {
            assert_eq!(m[k(t).as_str()], Q4K);
            assert_eq!(s[k(t).as_str()], Q4K);
        }
        for t in LAYER_TENSORS {
            let want = if t.ends_with("norm") { F32 } else { Q8_0 };
            assert_eq!(q8[k(t).as_str()], want);
            let want = if t.ends_with("norm") { F32 } else { F16 };
            assert_eq!(f16[k(t).as_str()], want);
        }
    }
}

#[test]
fn layer_upgrades_follow_the_worked_values_table() {
    let gqa = |n| ModelHparams::llama(n, 32, 8);
    check_model(1, &gqa(1), &[0], &[], false);
    check_model(2, &gqa(2), &[1], &[], false);
    check_model(8, &gqa(8), &[0, 3, 6, 7], &[0], false);
    check_model(16, &gqa(16), &[0, 1, 4, 7, 10, 13, 14, 15], &[0, 1], false);
    check_model(
        22,
        &gqa(22),
        &[0, 1, 4, 7, 10, 13, 16, 19, 20, 21],
        &[0, 1],
        false,
    );
    let l32 = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];
    check_model(32, &gqa(32), &l32, &[0, 1, 2, 3], false);
    let mut l80: Vec<usize> = (0..10).collect();
    l80.extend([
        12, 15, 18, 21, 24, 27, 30, 33, 36, 39, 42, 45, 48, 51, 54, 57, 60, 63, 66, 69,
    ]);
    l80.extend(70..80);
    let ks80: Vec<usize> = (0..10).collect();
    // 80 layers with GQA is llama.cpp's "70B": attn_v Q4_K becomes Q5_K.
    check_model(80, &gqa(80), &l80, &ks80, true);
    // 80 layers without GQA ("65B"): no such rule.
    check_model(80, &ModelHparams::llama(80, 64, 64), &l80, &ks80, false);
}

#[test]
fn medium_model_matches_the_policy_strings_and_counts() {
    let hp = ModelHparams::llama(22, 32, 4);
    let model = llama_model(22, false);
    let enc = |t: GgmlType| match t {
        GgmlType::Q4K => '4',
        GgmlType::Q5K => '5',
        GgmlType::Q6K => '6',
        GgmlType::Q8_0 => '8',
        _ => '?',
    };
    let expect = [
        (
            FileType::Q4KM,
            "6644644644644644644666",
            "6644644644644644644666",
        ),
        (
            FileType::Q4KS,
            "5555444444444444444444",
            "5544444444444444444444",
        ),
        (
            FileType::Q8_0,
            "8888888888888888888888",
            "8888888888888888888888",
        ),
    ];
    for (ft, v, d) in expect {
        let plan = plan_tensor_types(ft, &hp, &model).unwrap();
        let row = |t: &str| -> String {
            plan.iter()
                .filter(|x| x.name.ends_with(&format!(".{t}.weight")))
                .map(|x| enc(x.ty))
                .collect()
        };
        assert_eq!(row("attn_v"), v, "{ft}");
        assert_eq!(row("ffn_down"), d, "{ft}");
        let mut counts = BTreeMap::new();
        for x in &plan {
            *counts.entry(x.ty).or_insert(0) += 1;
        }
        let want: BTreeMap<_, _> = match ft {
            FileType::Q4KM => [
                (GgmlType::Q4K, 135),
                (GgmlType::Q6K, 21),
                (GgmlType::F32, 45),
            ]
            .into(),
            FileType::Q4KS => [
                (GgmlType::Q4K, 149),
                (GgmlType::Q5K, 6),
                (GgmlType::Q6K, 1),
                (GgmlType::F32, 45),
            ]
            .into(),
            _ => [(GgmlType::Q8_0, 156), (GgmlType::F32, 45)].into(),
        };
        assert_eq!(counts, want, "{ft}");
        // norms are copied, the rest converted from F16
        assert!(plan.iter().all(|x| x.quantize == (x.ty != GgmlType::F32)));
    }
}

#[test]
fn tied_embeddings_are_treated_as_output() {
    let hp = ModelHparams::llama(16, 32, 8);
    let model = llama_model(16, true);
    for ft in [FileType::Q4KM, FileType::Q4KS] {
        let plan = plan_tensor_types(ft, &hp, &model).unwrap();
        assert_eq!(by_name(&plan)["token_embd.weight"], GgmlType::Q6K);
    }
    let plan = plan_tensor_types(FileType::Q8_0, &hp, &model).unwrap();
    assert_eq!(by_name(&plan)["token_embd.weight"], GgmlType::Q8_0);
}

#[test]
fn rows_not_divisible_by_256_fall_back_and_say_why() {
    let hp = ModelHparams::llama(8, 32, 8);
    let t = |n: &str, d: Vec<u64>| (n.to_string(), d, GgmlType::F16);
    let model = vec![
        t("output.weight", vec![320, 1000]),
        t("token_embd.weight", vec![320, 1000]),
        t("blk.0.attn_v.weight", vec![320, 64]),
        t("blk.0.ffn_down.weight", vec![864, 320]),
        t("blk.0.ffn_up.weight", vec![330, 864]),
        t("blk.1.ffn_down.weight", vec![864, 320]),
    ];
    let m = plan_tensor_types(FileType::Q4KM, &hp, &model).unwrap();
    use GgmlType::*;
    let got: Vec<_> = m
        .iter()
        .map(|d| (d.ty, d.fallback.as_ref().map(|f| f.wanted)))
        .collect();
    assert_eq!(
        got,
        [
            (Q8_0, None),      // output: straight to Q8_0, not a fallback
            (Q5_0, Some(Q4K)), // untied token_embd
            (Q8_0, Some(Q6K)), // attn_v layer 0 (use_more_bits)
            (Q8_0, Some(Q6K)), // ffn_down layer 0
            (F16, Some(Q4K)),  // 330 % 32 != 0 → F16
            (Q5_0, Some(Q4K)), // ffn_down layer 1
        ]
    );
    assert_eq!(
        m[4].fallback.as_ref().unwrap().reason,
        "ncols 330 (x 864) not divisible by 256 (required for type q4_K) (must use F16 due to unusual shape) -> falling back to f16"
    );
    let s = plan_tensor_types(FileType::Q4KS, &hp, &model).unwrap();
    assert_eq!(s[2].ty, Q5_1); // Q5_K → Q5_1
    assert_eq!(s[3].ty, Q5_1);

    // A 32-block type keeps itself where it fits and becomes F16 where it does not (llama.cpp's
    // `tensor_type_fallback` default branch): Q8_0 on rows of 330 → F16.
    let q8 = plan_tensor_types(FileType::Q8_0, &hp, &model).unwrap();
    let got: Vec<_> = q8.iter().map(|d| d.ty).collect();
    assert_eq!(got, [Q8_0, Q8_0, Q8_0, Q8_0, F16, Q8_0]);
    let f = q8[4].fallback.as_ref().unwrap();
    assert_eq!((f.wanted, f.used), (Q8_0, F16));
    assert_eq!(
        f.reason,
        "ncols 330 (x 864) not divisible by 32 (required for type q8_0) (must use F16 due to unusual shape) -> falling back to f16"
    );
    // Q2_K / Q3_K fall back to Q4_0.
    let q3 = plan_tensor_types(FileType::Q3KS, &hp, &model).unwrap();
    let got: Vec<_> = q3.iter().map(|d| d.ty).collect();
    assert_eq!(got, [Q8_0, Q4_0, Q4_0, Q4_0, F16, Q4_0]);
}

#[test]
fn one_dimensional_and_excluded_tensors_are_copied() {
    let hp = ModelHparams::llama(1, 8, 8);
    let t = |n: &str, d: Vec<u64>, ty| (n.to_string(), d, ty);
    use GgmlType::*;
    let model = vec![
        t("rope_freqs.weight", vec![64], F32),
        t("blk.0.attn_q.bias", vec![256, 256], F16),
        t("blk.0.attn_q.weight", vec![256, 1], F16), // 1-D for ggml_n_dims
        t("blk.0.ffn_gate_inp.weight", vec![256, 8], F16),
        t("blk.0.attn_q_norm.weight", vec![256, 256], F32),
        t("blk.0.attn_output.weight", vec![256, 256], Q4K),
        t("blk.0.ssm_conv1d.weight", vec![4, 256], F32),
        t("v.blk.0.patch_embd.weight", vec![256, 256], F16),
        t("position_embd.weight", vec![256, 256], F16),
    ];
    let plan = plan_tensor_types(FileType::Q4KM, &hp, &model).unwrap();
    for (d, m) in plan.iter().zip(&model) {
        assert_eq!(d.ty, m.2, "{}", d.name);
        assert!(!d.quantize, "{}", d.name);
    }
}

#[test]
fn moe_ffn_down_needs_a_layer_in_its_name() {
    let mut hp = ModelHparams::llama(2, 8, 8);
    hp.n_expert = 8;
    let t = |n: &str| (n.to_string(), vec![256u64, 256, 8], GgmlType::F16);
    // With experts the layer comes from the name, not the counter; 8 experts bump attn_v to Q8_0.
    let ok = [t("blk.1.ffn_down_exps.weight"), t("blk.0.attn_v.weight")];
    let plan = plan_tensor_types(FileType::Q4KM, &hp, &ok).unwrap();
    assert_eq!(plan[0].ty, GgmlType::Q6K); // layer 1 of 2: use_more_bits
    assert_eq!(plan[1].ty, GgmlType::Q8_0);
    let bad = [t("blk.7.ffn_down_exps.weight")];
    assert!(matches!(
        plan_tensor_types(FileType::Q4KM, &hp, &bad),
        Err(QuantizeError::BadLayer { n_layer: 2, .. })
    ));
}

/// llama.cpp's own `llama_tensor_get_type` (through `llama_quant_compute_types`, see
/// `tests/fixtures/quant-files/make_recipe_oracle.py`) on mock models: llama at many depths and
/// head ratios, 80 layers with and without GQA, tied embeddings, rows that are not multiples of
/// 256 or 32, phi3 and falcon fused attention, 8 and 4 experts — for every file type.
#[test]
fn every_file_type_matches_llama_cpp_on_mock_models() {
    let text = fixture("recipes.txt");
    let mut models = 0;
    let mut checked = 0;
    let mut hp = ModelHparams::llama(1, 1, 1);
    let mut model: Vec<(String, Vec<u64>, GgmlType)> = Vec::new();
    let mut name = String::new();
    let mut failures = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (kind, rest) = line.split_once(' ').unwrap();
        match kind {
            "model" => {
                let mut f = rest.split(' ');
                name = f.next().unwrap().to_string();
                let kv: BTreeMap<&str, &str> = f.map(|p| p.split_once('=').unwrap()).collect();
                let n = |k: &str| kv[k].parse::<u32>().unwrap();
                hp = ModelHparams {
                    arch: kv["arch"].to_string(),
                    n_layer: n("n_layer"),
                    n_head: n("n_head"),
                    n_head_kv: n("n_head_kv"),
                    n_expert: n("n_expert"),
                };
                model.clear();
                models += 1;
            }
            "tensor" => {
                let (t, dims) = rest.split_once(' ').unwrap();
                let dims = dims.split('x').map(|d| d.parse().unwrap()).collect();
                model.push((t.to_string(), dims, GgmlType::F16));
            }
            "types" => {
                let mut f = rest.split(' ');
                let ft: FileType = f.next().unwrap().parse().unwrap();
                let want: Vec<GgmlType> = f.map(ty_from_name).collect();
                assert_eq!(want.len(), model.len(), "{name} {ft}");
                let plan = plan_tensor_types(ft, &hp, &model).unwrap();
                for ((d, w), (t, ..)) in plan.iter().zip(&want).zip(&model) {
                    if d.ty != *w {
                        failures.push(format!("{name} {ft} {t}: ours {} llama.cpp {w}", d.ty));
                    }
                    checked += 1;
                }
            }
            other => panic!("unexpected line kind {other}"),
        }
    }
    assert!(models >= 60, "{models} models");
    assert!(checked > 100_000, "{checked} decisions");
    assert!(
        failures.is_empty(),
        "{} mismatches, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
}
