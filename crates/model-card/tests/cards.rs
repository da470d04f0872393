//! Cards gathered from the PEFT / Transformers fixtures (expected values read from the fixture
//! JSON files and `case.json` by eye), lineage rules, JSON and README rendering, bad input.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use chrono::{NaiveDate, TimeZone, Utc};
use loraforge_model_card::*;
use loraforge_naming::{FileType, QuantType};
use uuid::Uuid;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/peft");

fn case(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

fn trainer_output() -> PathBuf {
    case("i_trainer_checkpoints").join("output")
}

fn card_i() -> ModelCard {
    ModelCard::for_training(
        &case("i_trainer_checkpoints").join("base"),
        &trainer_output(),
    )
    .unwrap()
}

#[test]
fn base_model_details_from_config_and_weights() {
    let b = card_i().base;
    assert_eq!(b.architecture.as_deref(), Some("LlamaForCausalLM"));
    assert_eq!(b.model_type.as_deref(), Some("llama"));
    assert_eq!(b.hidden_size, Some(64));
    assert_eq!(b.num_layers, Some(2));
    assert_eq!(b.num_attention_heads, Some(4));
    assert_eq!(b.num_key_value_heads, Some(2));
    assert_eq!(b.intermediate_size, Some(64));
    assert_eq!(b.vocab_size, Some(1000));
    assert_eq!(b.max_position_embeddings, Some(512));
    assert_eq!(b.tie_word_embeddings, Some(true));
    assert_eq!(b.dtype.as_deref(), Some("bfloat16"));
    // From config.json by hand: embed 1000*64 = 64000; per layer q 64*64 + k 64*32 + v 64*32
    // + o 64*64 + gate/up/down 3*64*64 + 2 norms 2*64 = 24704, times 2 layers = 49408; final
    // norm 64; lm_head tied. 64000 + 49408 + 64 = 113472.
    assert_eq!(b.parameter_count, Some(113_472));
    assert_eq!(b.weight_files, ["model.safetensors"]);
    assert_eq!(b.license, None);
}

#[test]
fn sharded_base_counts_every_shard() {
    let b = BaseModelInfo::read(&case("g_llama_sharded").join("base")).unwrap();
    assert_eq!(
        b.weight_files,
        [
            "model-00001-of-00003.safetensors",
            "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors"
        ]
    );
    // intermediate_size 96: per layer 4096 + 2048 + 2048 + 4096 + 3*64*96 + 128 = 30848;
    // 64000 + 2*30848 + 64 = 125760.
    assert_eq!(b.parameter_count, Some(125_760));
}

#[test]
fn gpt2_style_config_names() {
    let b = BaseModelInfo::read(&case("f_gpt2_conv1d").join("base")).unwrap();
    assert_eq!(b.architecture.as_deref(), Some("GPT2LMHeadModel"));
    assert_eq!(b.hidden_size, Some(64)); // n_embd
    assert_eq!(b.num_layers, Some(2)); // n_layer
    assert_eq!(b.num_attention_heads, Some(4)); // n_head
    assert_eq!(b.vocab_size, Some(1001));
    let a = AdapterInfo::read(&case("f_gpt2_conv1d").join("adapter")).unwrap();
    assert!(a.fan_in_fan_out);
    assert_eq!(
        a.target_modules,
        Some(TargetModules::List(vec!["c_attn".into()]))
    );
}

#[test]
fn adapter_config_of_the_trainer_run() {
    let a = card_i().adapter.unwrap();
    assert_eq!(a.peft_type.as_deref(), Some("LORA"));
    assert_eq!(a.task_type.as_deref(), Some("CAUSAL_LM"));
    assert_eq!(a.r, Some(8));
    assert_eq!(a.lora_alpha, Some(16.0));
    assert_eq!(a.scaling, Some(2.0));
    assert!(!a.use_rslora && !a.use_dora && !a.fan_in_fan_out);
    assert_eq!(
        a.target_modules,
        Some(TargetModules::List(vec!["q_proj".into(), "v_proj".into()]))
    );
    assert!(a.rank_pattern.is_empty() && a.alpha_pattern.is_empty());
    assert_eq!(a.lora_dropout, Some(0.05));
    assert!(a.modules_to_save.is_empty() && a.layers_to_transform.is_empty());
    assert_eq!(
        a.base_model_name_or_path.as_deref(),
        Some("refs-fixtures/public-i_trainer_checkpoints-base")
    );
    assert_eq!(a.peft_version.as_deref(), Some("0.21.2"));
}

#[test]
fn adapter_variants() {
    // rsLoRA: INDEX.json states scaling = alpha/sqrt(r) = 32/4 = 8.
    let b = AdapterInfo::read(&case("b_llama_alllinear_rslora").join("adapter")).unwrap();
    assert!(b.use_rslora);
    assert_eq!(
        (b.r, b.lora_alpha, b.scaling),
        (Some(16), Some(32.0), Some(8.0))
    );
    match b.target_modules {
        Some(TargetModules::List(l)) => assert_eq!(l.len(), 14),
        other => panic!("{other:?}"),
    }
    let c = AdapterInfo::read(&case("c_qwen2_rank_pattern").join("adapter")).unwrap();
    assert_eq!(c.rank_pattern.get("layers.1.self_attn.q_proj"), Some(&12));
    assert_eq!(c.rank_pattern.get("v_proj"), Some(&2));
    assert_eq!(
        c.alpha_pattern.get("layers.2.self_attn.o_proj"),
        Some(&24.0)
    );
    assert_eq!(
        c.alpha_pattern.get("model.layers.0.self_attn.k_proj"),
        Some(&2.0)
    );
    let cb = BaseModelInfo::read(&case("c_qwen2_rank_pattern").join("base")).unwrap();
    assert_eq!(cb.dtype.as_deref(), Some("float16"));
    assert_eq!(cb.architecture.as_deref(), Some("Qwen2ForCausalLM"));
    let d = AdapterInfo::read(&case("d_llama_modules_to_save").join("adapter")).unwrap();
    assert_eq!(d.modules_to_save, ["lm_head", "embed_tokens"]);
    let e = AdapterInfo::read(&case("e_llama_dora").join("adapter")).unwrap();
    assert!(e.use_dora);
    let h = AdapterInfo::read(&case("h_llama_layers_subset").join("adapter")).unwrap();
    assert_eq!(h.layers_to_transform, [0, 2]);
}

#[test]
fn training_args_keep_the_useful_fields_and_drop_tokens() {
    let t = card_i().training_args.unwrap();
    assert_eq!(t.learning_rate, Some(0.01));
    assert_eq!(t.num_train_epochs, Some(3.0));
    assert_eq!(t.max_steps, Some(200));
    assert_eq!(t.per_device_train_batch_size, Some(8));
    assert_eq!(t.gradient_accumulation_steps, Some(1));
    assert_eq!(t.lr_scheduler_type.as_deref(), Some("cosine"));
    assert_eq!(t.warmup_steps, Some(10.0));
    assert_eq!(t.weight_decay, Some(0.0));
    assert_eq!(t.optim.as_deref(), Some("adamw_torch_fused"));
    assert_eq!(t.max_grad_norm, Some(1.0));
    assert_eq!(t.seed, Some(909));
    assert_eq!((t.bf16, t.fp16), (Some(false), Some(false)));
    assert_eq!(t.eval_strategy.as_deref(), Some("steps"));
    assert_eq!(t.save_steps, Some(100.0));
    assert_eq!(
        t.raw.get("output_dir").and_then(|v| v.as_str()),
        Some("output")
    );
    assert!(!t.raw.contains_key("hub_token"));
    assert!(t.raw.contains_key("hub_model_id"));
}

#[test]
fn evaluation_summary_of_the_full_run() {
    let e = card_i().evaluation.unwrap();
    assert_eq!(e.global_step, Some(200));
    assert_eq!(e.max_steps, Some(200));
    assert_eq!(e.epoch, Some(20.0));
    let fl = e.final_loss.unwrap();
    assert_eq!((fl.step, fl.value), (200, 6.669350433349609));
    assert_eq!(e.train_loss, Some(6.7276712417602536));
    let fe = e.final_eval_loss.unwrap();
    assert_eq!((fe.step, fe.value), (200, 6.828880310058594));
    let be = e.best_eval_loss.unwrap();
    assert_eq!(
        (be.step, be.epoch, be.value),
        (50, Some(5.0), 6.813197135925293)
    );
    assert_eq!(e.best_metric, None);
    assert_eq!(e.best_model_checkpoint, None);
    // Checkpoints 100 and 200 exist; eval_loss 6.8238 at step 100 < 6.8289 at step 200.
    assert_eq!(
        e.best_checkpoint_by_eval_loss,
        Some(CheckpointEval {
            checkpoint: "checkpoint-100".into(),
            step: 100,
            eval_loss: 6.823848724365234
        })
    );
    let steps: Vec<u64> = e.eval_history.iter().map(|p| p.step).collect();
    assert_eq!(steps, [50, 100, 150, 200]);
}

#[test]
fn a_checkpoint_uses_its_own_trainer_state() {
    let base = case("i_trainer_checkpoints").join("base");
    let ckpt = trainer_output().join("checkpoint-100");
    let card = ModelCard::for_training(&base, &ckpt).unwrap();
    let e = card.evaluation.unwrap();
    assert_eq!(e.global_step, Some(100));
    assert_eq!(e.final_loss.unwrap().value, 6.706576538085938);
    assert_eq!(e.final_eval_loss.unwrap().value, 6.823848724365234);
    assert_eq!(e.best_eval_loss.unwrap().step, 50);
    assert_eq!(e.train_loss, None); // training had not ended at step 100
                                    // checkpoint-200 is past this state's global step, so only checkpoint-100 competes.
    assert_eq!(
        e.best_checkpoint_by_eval_loss.unwrap().checkpoint,
        "checkpoint-100"
    );
    assert!(card.training_args.is_some());
}

#[test]
fn the_fixture_records_no_training_date() {
    // Transformers 5.23 wrote no date into trainer_state.json or training_args.json, and the
    // run did not report to TensorBoard.
    assert_eq!(card_i().training_date, None);
}

#[test]
fn training_date_from_tensorboard_event_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("output");
    let ckpt = out.join("checkpoint-10");
    let run = out.join("runs").join("Nov14_22-13-20_host");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::create_dir_all(&run).unwrap();
    // 1700000000 is 2023-11-14T22:13:20Z; the later file must not win.
    std::fs::write(run.join("events.out.tfevents.1700000000.host.42.0"), b"").unwrap();
    std::fs::write(run.join("events.out.tfevents.1700090000.host.42.1"), b"").unwrap();
    let want = TrainingDate {
        date: NaiveDate::from_ymd_opt(2023, 11, 14).unwrap(),
        time: Utc.with_ymd_and_hms(2023, 11, 14, 22, 13, 20).unwrap(),
        source: "runs/Nov14_22-13-20_host/events.out.tfevents.1700000000.host.42.0".into(),
    };
    assert_eq!(TrainingDate::find(&out).unwrap(), Some(want.clone()));
    // From a checkpoint folder the run's runs/ is one level up.
    assert_eq!(TrainingDate::find(&ckpt).unwrap(), Some(want));
}

#[test]
fn missing_optional_files_are_fine() {
    let card = ModelCard::for_training(
        &case("a_llama_qv").join("base"),
        &case("a_llama_qv").join("adapter"),
    )
    .unwrap();
    assert!(card.adapter.is_some());
    assert_eq!(card.training_args, None);
    assert_eq!(card.evaluation, None);
    assert_eq!(card.training_date, None);
    let base_only = ModelCard::for_base(&case("a_llama_qv").join("base")).unwrap();
    assert_eq!(base_only.adapter, None);
    // A base folder without safetensors weights has no parameter count.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    let b = BaseModelInfo::read(dir.path()).unwrap();
    assert_eq!((b.parameter_count, b.weight_files.len()), (None, 0));
}

/// A trainer folder copied from the fixture with one file replaced.
fn trainer_copy_with(file: &str, content: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "adapter_config.json",
        "trainer_state.json",
        "training_args.json",
    ] {
        std::fs::copy(trainer_output().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join(file), content).unwrap();
    dir
}

#[test]
fn malformed_files_are_named_in_errors() {
    let base = case("i_trainer_checkpoints").join("base");
    for file in [
        "trainer_state.json",
        "training_args.json",
        "adapter_config.json",
    ] {
        let dir = trainer_copy_with(file, "{ not json");
        let err = ModelCard::for_training(&base, dir.path()).unwrap_err();
        match &err {
            CardError::Json { path, .. } => assert_eq!(path, &dir.path().join(file)),
            other => panic!("{file}: {other:?}"),
        }
        assert!(err.to_string().contains(file), "{err}");
    }
    let dir = trainer_copy_with("trainer_state.json", "[1, 2]");
    assert!(matches!(
        ModelCard::for_training(&base, dir.path()),
        Err(CardError::NotAnObject { .. })
    ));
    let dir = trainer_copy_with("adapter_config.json", r#"{"r": "eight"}"#);
    match ModelCard::for_training(&base, dir.path()).unwrap_err() {
        CardError::BadField {
            field, expected, ..
        } => assert_eq!((field.as_str(), expected), ("r", "a non-negative integer")),
        other => panic!("{other:?}"),
    }
    let dir = trainer_copy_with(
        "trainer_state.json",
        r#"{"log_history": [{"step": 1, "loss": 1.0}, {"step": "two", "loss": 0.5}]}"#,
    );
    match ModelCard::for_training(&base, dir.path()).unwrap_err() {
        CardError::BadField { field, .. } => assert_eq!(field, "log_history[1].step"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_required_files() {
    let dir = tempfile::tempdir().unwrap();
    match ModelCard::for_base(dir.path()).unwrap_err() {
        CardError::MissingFile { path } => assert_eq!(path, dir.path().join("config.json")),
        other => panic!("{other:?}"),
    }
    let base = case("a_llama_qv").join("base");
    match ModelCard::for_training(&base, dir.path()).unwrap_err() {
        CardError::MissingFile { path } => {
            assert_eq!(path, dir.path().join("adapter_config.json"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_weights_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"\xff\xff\xff\xff\xff\xff\xff\x7fjunk",
    )
    .unwrap();
    assert!(matches!(
        BaseModelInfo::read(dir.path()),
        Err(CardError::Weights { .. })
    ));
}

#[test]
fn nan_losses_written_by_python_are_skipped() {
    let base = case("i_trainer_checkpoints").join("base");
    let dir = trainer_copy_with(
        "trainer_state.json",
        r#"{"global_step": 3, "log_history": [
            {"step": 1, "loss": 2.5}, {"step": 2, "loss": NaN}, {"step": 3, "eval_loss": Infinity}]}"#,
    );
    let e = ModelCard::for_training(&base, dir.path())
        .unwrap()
        .evaluation
        .unwrap();
    assert_eq!(e.final_loss.unwrap().value, 2.5);
    assert_eq!(e.final_eval_loss, None);
}

#[test]
fn license_from_the_base_readme() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    std::fs::write(
        dir.path().join("README.md"),
        "---\nlanguage: en\nlicense: apache-2.0\n---\n# A model\nlicense: not-this\n",
    )
    .unwrap();
    let card = ModelCard::for_base(dir.path()).unwrap();
    assert_eq!(card.license.as_deref(), Some("apache-2.0"));
    assert!(card.to_readme().contains("\nlicense: apache-2.0\n"));
}

#[test]
fn sha256_matches_the_fixture_generator() {
    // sha256 of "abc" (FIPS 180-2 test vector).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("abc"), "abc").unwrap();
    assert_eq!(
        sha256_file(&dir.path().join("abc")).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    // case.json records the checksums of the files the real tools wrote.
    let ckpt = trainer_output().join("checkpoint-100");
    let sums = checksum_dir(&ckpt, &loraforge_progress::NoProgress).unwrap();
    let paths: Vec<&str> = sums.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "README.md",
            "adapter_config.json",
            "adapter_model.safetensors",
            "trainer_state.json",
            "training_args.json"
        ]
    );
    let model = &sums[2];
    assert_eq!(model.size, 15368);
    assert_eq!(
        model.sha256,
        "210ee03ef4d050086b8545d63d86cf74df9750839f81cab254d155c9b3d247d1"
    );
    assert_eq!(
        sums[3].sha256,
        "f5b3f0b3991d40709682e461e54842c10c486086093c66e4af0cf7f33ed581d4"
    );
    let one = checksum_files(&trainer_output(), &["adapter_model.safetensors"]).unwrap();
    assert_eq!(
        one[0].sha256,
        "8e5a82e604b0b29ba275ced48339e0d8a654c5d7788523f62bb32df9c57e09a4"
    );
}

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

fn at(h: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 17, h, 0, 0).unwrap()
}

/// base → trained → saved → deployed on the trainer fixture.
fn full_card() -> ModelCard {
    let mut card = card_i();
    card.train_name = Some("Support Bot".into());
    card.push_step(
        LineageStep::new(
            Stage::Base,
            "tiny-llama",
            uuid("11111111-0000-4000-8000-000000000000"),
            "registered base model",
        )
        .with_date(at(8))
        .with_dtype("bfloat16"),
    )
    .unwrap();
    card.push_step(
        LineageStep::new(
            Stage::Trained,
            "tiny-llama_support-bot_20240517_3f2a",
            uuid("3f2a9c4e-0000-4000-8000-000000000000"),
            "registered PEFT adapter",
        )
        .with_date(at(9))
        .with_source("checkpoint-200")
        .with_files(checksum_files(&trainer_output(), &["adapter_model.safetensors"]).unwrap()),
    )
    .unwrap();
    card.push_step(
        LineageStep::new(
            Stage::Saved,
            "tiny-llama_support-bot_20240517_3f2a_s_0b1c",
            uuid("0b1c0000-0000-4000-8000-000000000000"),
            "merged the adapter into the base",
        )
        .with_date(at(10))
        .with_dtype("bfloat16"),
    )
    .unwrap();
    card.push_step(
        LineageStep::new(
            Stage::Deployed,
            "tiny-llama_support-bot_20240517_3f2a_s_0b1c_d_77e0_q4_K_M",
            uuid("77e00000-0000-4000-8000-000000000000"),
            "deployed to Ollama",
        )
        .with_date(at(11)),
    )
    .unwrap();
    card
}

#[test]
fn lineage_steps_follow_the_naming_rules() {
    let card = full_card();
    assert_eq!(card.lineage.len(), 4);
    // The deployed step's quantization was filled in from its name.
    assert_eq!(
        card.current().unwrap().quantization,
        Some(QuantType::Quantized(FileType::Q4KM))
    );
    assert_eq!(
        card.name(),
        Some("tiny-llama_support-bot_20240517_3f2a_s_0b1c_d_77e0_q4_K_M")
    );
    let tool = &card.lineage[0].tool;
    assert_eq!(tool.name, "loraforge");
    assert_eq!(tool.version, env!("CARGO_PKG_VERSION"));
}

/// Which lineage check refused a step (`None` for any other error).
fn order_reason(err: &CardError) -> Option<&'static str> {
    match err {
        CardError::LineageOrder { reason, .. } => Some(reason),
        _ => None,
    }
}

#[test]
fn lineage_rejects_inconsistent_steps() {
    let base = || {
        let mut c = card_i();
        c.push_step(LineageStep::new(
            Stage::Base,
            "tiny-llama",
            Uuid::new_v4(),
            "registered",
        ))
        .unwrap();
        c
    };
    let trained_uuid = uuid("3f2a9c4e-0000-4000-8000-000000000000");
    // Wrong parent.
    let err = base()
        .push_step(LineageStep::new(
            Stage::Trained,
            "other-base_run_20240517_3f2a",
            trained_uuid,
            "x",
        ))
        .unwrap_err();
    assert_eq!(
        order_reason(&err),
        Some("its name does not extend the previous step's name"),
        "{err:?}"
    );
    // UUID prefix not the UUID's.
    let err = base()
        .push_step(LineageStep::new(
            Stage::Trained,
            "tiny-llama_run_20240517_ffff",
            trained_uuid,
            "x",
        ))
        .unwrap_err();
    assert_eq!(
        order_reason(&err),
        Some("the UUID prefix in its name is not its UUID's"),
        "{err:?}"
    );
    // Skipping a stage.
    let err = base()
        .push_step(LineageStep::new(
            Stage::Saved,
            "tiny-llama_run_20240517_3f2a_s_3f2a",
            trained_uuid,
            "x",
        ))
        .unwrap_err();
    assert_eq!(
        order_reason(&err),
        Some("stages go base → trained → saved → deployed, one each"),
        "{err:?}"
    );
    // A name that is not a trained name.
    let err = base()
        .push_step(LineageStep::new(Stage::Trained, "../x", trained_uuid, "x"))
        .unwrap_err();
    assert!(matches!(err, CardError::StepName { .. }), "{err:?}");
    // Quantization contradicting the name.
    let mut c = full_card();
    c.lineage.pop();
    let err = c
        .derive(
            LineageStep::new(
                Stage::Deployed,
                "tiny-llama_support-bot_20240517_3f2a_s_0b1c_d_77e0_q4_K_M",
                uuid("77e00000-0000-4000-8000-000000000000"),
                "x",
            )
            .with_quantization(QuantType::Quantized(FileType::Q8_0)),
        )
        .unwrap_err();
    assert_eq!(
        order_reason(&err),
        Some("its quantization differs from the one in its name"),
        "{err:?}"
    );
}

#[test]
fn json_round_trip_with_stable_versioned_layout() {
    let card = full_card();
    let json = card.to_json().unwrap();
    assert!(json.starts_with("{\n  \"schema\": \"loraforge.model-card/1\",\n"));
    assert!(json.ends_with("}\n"));
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "schema",
            "license",
            "train_name",
            "base",
            "adapter",
            "training_args",
            "evaluation",
            "training_date",
            "lineage"
        ]
    );
    assert_eq!(value["lineage"][3]["quantization"], "q4_K_M");
    assert_eq!(
        value["lineage"][1]["uuid"],
        "3f2a9c4e-0000-4000-8000-000000000000"
    );
    assert_eq!(value["lineage"][1]["date"], "2024-05-17T09:00:00Z");
    assert_eq!(value["base"]["parameter_count"], 113472);
    let back = ModelCard::from_json(&json).unwrap();
    assert_eq!(back, card);
    assert_eq!(back.to_json().unwrap(), json);
}

#[test]
fn from_json_checks_schema_and_lineage() {
    let json = full_card().to_json().unwrap();
    let other = json.replace("loraforge.model-card/1", "loraforge.model-card/2");
    assert!(matches!(
        ModelCard::from_json(&other),
        Err(CardError::UnsupportedSchema { .. })
    ));
    assert!(matches!(
        ModelCard::from_json("{}"),
        Err(CardError::UnsupportedSchema { .. })
    ));
    let tampered = json.replace("_d_77e0_", "_d_77e1_");
    assert!(matches!(
        ModelCard::from_json(&tampered),
        Err(CardError::LineageOrder { .. })
    ));
    assert!(matches!(
        ModelCard::from_json("{\"schema\": \"loraforge.model-card/1\"}"),
        Err(CardError::CardJson { .. })
    ));
}

#[test]
fn readme_has_front_matter_and_sections() {
    let readme = full_card().to_readme();
    assert!(readme.starts_with(
        "---\nbase_model: refs-fixtures/public-i_trainer_checkpoints-base\nlibrary_name: gguf\ntags:\n- loraforge\n- llama\n- lora\n- deployed\n- q4_K_M\n---\n\n"
    ), "{readme}");
    assert!(!readme.contains("\nlicense:"));
    for needle in [
        "# tiny-llama_support-bot_20240517_3f2a_s_0b1c_d_77e0_q4_K_M\n",
        "## Model details",
        "| Parameters (base) | 113,472 |",
        "| Attention heads | 4 (2 key/value) |",
        "## Training",
        "| Scaling | 2 (alpha / r) |",
        "| Target modules | `q_proj`, `v_proj` |",
        "| Learning rate | 0.01 |",
        "## Evaluation",
        "| Final eval loss | 6.828880310058594 (step 200) |",
        "| Best eval loss | 6.813197135925293 (step 50) |",
        "| Best checkpoint (eval loss) | `checkpoint-100` (6.823848724365234) |",
        "| 150 | 15 | 6.82769775390625 |",
        "## Lineage",
        "| deployed | `tiny-llama_support-bot_20240517_3f2a_s_0b1c_d_77e0_q4_K_M` |",
        "8e5a82e604b0b29ba275ced48339e0d8a654c5d7788523f62bb32df9c57e09a4",
        "schema `loraforge.model-card/1`",
    ] {
        assert!(readme.contains(needle), "missing {needle:?} in\n{readme}");
    }
    // A trained model's README is a PEFT adapter card.
    let mut trained = full_card();
    trained.lineage.truncate(2);
    let readme = trained.to_readme();
    assert!(readme.contains("\nlibrary_name: peft\n"));
    assert!(readme.contains("\nbase_model_relation: adapter\nlibrary_name: peft\n"));
    assert!(readme.contains("A LoRA adapter for `tiny-llama`, trained as `Support Bot`."));
}

#[test]
fn write_and_read_back_from_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let card = full_card();
    card.write_to_dir(dir.path()).unwrap();
    assert_eq!(ModelCard::read_from_dir(dir.path()).unwrap(), card);
    let readme = std::fs::read_to_string(dir.path().join(README_FILE)).unwrap();
    assert_eq!(readme, card.to_readme());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "temporary files left: {names:?}");
}

#[test]
fn checkpoints_of_the_trainer_output() {
    let found = find_checkpoints(&trainer_output()).unwrap();
    let steps: Vec<u64> = found.iter().map(|c| c.step).collect();
    assert_eq!(steps, [100, 200]); // case.json: "checkpoints": ["checkpoint-100", "checkpoint-200"]
    assert_eq!(found[1].dir, trainer_output().join("checkpoint-200"));
    assert!(find_checkpoints(&case("a_llama_qv").join("adapter"))
        .unwrap()
        .is_empty());
}

#[cfg(unix)]
#[test]
fn checksum_dir_skips_symlinked_folders() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub").join("abc"), "abc").unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("sub").join("loop")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("sub").join("abc"), dir.path().join("link"))
        .unwrap();
    let sums = checksum_dir(dir.path(), &loraforge_progress::NoProgress).unwrap();
    let got: Vec<(&str, u64)> = sums.iter().map(|f| (f.path.as_str(), f.size)).collect();
    assert_eq!(got, [("link", 3), ("sub/abc", 3)]);
}
