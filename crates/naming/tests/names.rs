//! Names built from parts, their limits, and parsing them back.
#![allow(clippy::unwrap_used)]

use chrono::NaiveDate;
use loraforge_naming::*;
use proptest::prelude::*;
use uuid::Uuid;

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn prefix(s: &str) -> UuidPrefix {
    s.parse().unwrap()
}

fn trained(base: &str, train: &str) -> TrainedName {
    TrainedName::new(
        TechnicalName::new(base).unwrap(),
        &TrainName::new(train).unwrap(),
        date(2024, 5, 17),
        prefix("3f2a"),
    )
    .unwrap()
}

#[test]
fn product_examples() {
    let t = trained("qw2.5-7-i", "support bot");
    assert_eq!(t.to_string(), "qw2.5-7-i_support-bot_20240517_3f2a");
    let s = SavedName::new(t, prefix("0b1c"));
    assert_eq!(s.to_string(), "qw2.5-7-i_support-bot_20240517_3f2a_s_0b1c");
    let expected = [
        (
            QuantType::NoQuantization,
            "qw2.5-7-i_support-bot_20240517_3f2a_s_0b1c_d_77e0_no_quantization",
        ),
        (
            QuantType::Quantized(FileType::Q8_0),
            "qw2.5-7-i_support-bot_20240517_3f2a_s_0b1c_d_77e0_q8_0",
        ),
        (
            QuantType::Quantized(FileType::Q4KM),
            "qw2.5-7-i_support-bot_20240517_3f2a_s_0b1c_d_77e0_q4_K_M",
        ),
        (
            QuantType::Quantized(FileType::Q4KS),
            "qw2.5-7-i_support-bot_20240517_3f2a_s_0b1c_d_77e0_q4_K_S",
        ),
        (
            QuantType::Quantized(FileType::Q2K),
            "qw2.5-7-i_support-bot_20240517_3f2a_s_0b1c_d_77e0_q2_K",
        ),
    ];
    for (quant, want) in expected {
        let d = DeployedName::new(s.clone(), prefix("77e0"), quant);
        assert_eq!(d.to_string(), want);
        assert_eq!(ParsedName::parse(want).unwrap(), ParsedName::Deployed(d));
    }
}

#[test]
fn uuid_prefix_comes_from_the_training_uuid() {
    let uuid = Uuid::parse_str("c0ffee00-1234-4abc-8def-0123456789ab").unwrap();
    let t = TrainedName::new(
        TechnicalName::new("base").unwrap(),
        &TrainName::new("run").unwrap(),
        date(2025, 12, 31),
        UuidPrefix::of(&uuid),
    )
    .unwrap();
    assert_eq!(t.to_string(), "base_run_20251231_c0ff");
}

#[test]
fn base_names_with_underscores_parse_back() {
    let t = trained("my_base_7b", "x");
    let name = t.to_string();
    assert_eq!(name, "my_base_7b_x_20240517_3f2a");
    let p = ParsedName::parse(&name).unwrap();
    assert_eq!(p.trained().base().as_str(), "my_base_7b");
    assert_eq!(p.trained().train().as_str(), "x");
    assert_eq!(p.trained().date(), date(2024, 5, 17));
    assert_eq!(p.kind(), NameKind::Trained);
}

#[test]
fn train_names_that_look_like_tags_parse_back() {
    // Train names "s" and "d" and a base ending like a saved tail must not confuse the parser.
    for (base, train) in [("b", "s"), ("b", "d"), ("x_s_0000", "d"), ("q4", "q8-0")] {
        let t = trained(base, train);
        let s = SavedName::new(t.clone(), prefix("aaaa"));
        let d = DeployedName::new(
            s.clone(),
            prefix("bbbb"),
            QuantType::Quantized(FileType::Q8_0),
        );
        assert_eq!(ParsedName::parse(&t.to_string()).unwrap(), t.clone().into());
        assert_eq!(ParsedName::parse(&s.to_string()).unwrap(), s.clone().into());
        assert_eq!(ParsedName::parse(&d.to_string()).unwrap(), d.clone().into());
    }
}

#[test]
fn too_long_names_shorten_only_the_train_part() {
    let base = "b".repeat(32);
    let t = trained(&base, &"t".repeat(32));
    // 50 = 32 (base) + 3 (train) + 15 (three '_', date, prefix)
    assert_eq!(t.to_string(), format!("{base}_ttt_20240517_3f2a"));
    assert_eq!(t.to_string().len(), 50);
    let d = DeployedName::new(
        SavedName::new(t, prefix("0000")),
        prefix("ffff"),
        QuantType::NoQuantization,
    );
    let name = d.to_string();
    assert_eq!(name.len(), 80);
    assert!(is_valid_ollama_model_name(&name));
    assert!(name.ends_with("_20240517_3f2a_s_0000_d_ffff_no_quantization"));
    let p = ParsedName::parse(&name).unwrap();
    assert_eq!(p.trained().train().as_str(), "ttt");

    // A short base leaves the whole 32-character train name (9 + 32 + 15 = 56 > 50, so cut to 26).
    let t = trained("qw2.5-7-i", "abcdefghijklmnopqrstuvwxyz012345");
    assert_eq!(t.train().as_str(), "abcdefghijklmnopqrstuvwxyz");
    let t = trained("a", "abcdefghijklmnopqrstuvwxyz012345");
    assert_eq!(t.train().as_str(), "abcdefghijklmnopqrstuvwxyz012345");
}

#[test]
fn parsing_ignores_case_and_prints_canonically() {
    let p = ParsedName::parse("QW2.5-7-I_Support-Bot_20240517_3F2A_S_0B1C_D_77E0_Q4_k_m").unwrap();
    assert_eq!(
        p.to_string(),
        "qw2.5-7-i_support-bot_20240517_3f2a_s_0b1c_d_77e0_q4_K_M"
    );
}

#[test]
fn typed_parse_checks_the_kind() {
    let t = "base_run_20240517_3f2a";
    assert!(t.parse::<TrainedName>().is_ok());
    assert!(matches!(
        t.parse::<SavedName>(),
        Err(NameError::NotAModelName { .. })
    ));
    assert!(matches!(
        "base_run_20240517_3f2a_s_0000".parse::<DeployedName>(),
        Err(NameError::NotAModelName { .. })
    ));
    assert!("base_run_20240517_3f2a_s_0000".parse::<SavedName>().is_ok());
}

#[test]
fn malformed_names_are_rejected_with_the_part_named() {
    let bad_part = |name: &str| match ParsedName::parse(name) {
        Err(NameError::BadPart { part, .. }) => part,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(bad_part("base_run_20240230_3f2a"), "date");
    assert_eq!(bad_part("base_run_2024051_3f2a"), "date");
    assert_eq!(bad_part("base_run_20240517_3f2g"), "training UUID prefix");
    assert_eq!(bad_part("base_.run_20240517_3f2a"), "train name");
    assert_eq!(bad_part("base_a..b_20240517_3f2a"), "train name");
    assert_eq!(bad_part("-base_run_20240517_3f2a"), "base technical name");
    assert_eq!(bad_part("_run_20240517_3f2a"), "base technical name");
    assert_eq!(
        bad_part("base_run_20240517_3f2a_s_zzzz"),
        "saving UUID prefix"
    );
    assert_eq!(
        bad_part("base_run_20240517_3f2a_s_0000_d_xyz1_q8_0"),
        "deploying UUID prefix"
    );
    assert!(matches!(
        ParsedName::parse("base_20240517_3f2a"),
        Err(NameError::NotAModelName { .. })
    ));
    assert!(matches!(
        ParsedName::parse("base_run_20240517_3f2a_q8_0"),
        Err(NameError::NotAModelName { .. })
    ));
    assert!(matches!(
        ParsedName::parse("base_run_20240517_3f2a_d_0000_q8_0"),
        Err(NameError::NotAModelName { .. })
    ));
    assert!(matches!(
        ParsedName::parse("../x_run_20240517_3f2a"),
        Err(NameError::InvalidChar { found: '/', .. })
    ));
    assert!(matches!(
        ParsedName::parse(""),
        Err(NameError::Empty { .. })
    ));
    let long = format!("{}_run_20240517_3f2a", "b".repeat(70));
    assert!(matches!(
        ParsedName::parse(&long),
        Err(NameError::TooLong { max: 80, .. })
    ));
    // 51 characters: valid parts, but longer than any name loraforge generates.
    let over = format!("{}_{}_20240517_3f2a", "b".repeat(32), "t".repeat(4));
    assert_eq!(over.len(), 51);
    assert!(matches!(
        ParsedName::parse(&over),
        Err(NameError::NotAModelName { .. })
    ));
}

#[test]
fn date_out_of_range_is_an_error() {
    let r = TrainedName::new(
        TechnicalName::new("b").unwrap(),
        &TrainName::new("r").unwrap(),
        date(10000, 1, 1),
        prefix("0000"),
    );
    assert!(matches!(r, Err(NameError::DateOutOfRange { .. })));
    assert_eq!(date_part(date(2024, 1, 2)).unwrap(), "20240102");
}

#[test]
fn validity_checks() {
    assert!(is_valid_ollama_model_name("_a.b-c"));
    assert!(!is_valid_ollama_model_name(".a"));
    assert!(!is_valid_ollama_model_name("-a"));
    assert!(!is_valid_ollama_model_name("a:b"));
    assert!(!is_valid_ollama_model_name(""));
    assert!(!is_valid_ollama_model_name(&"a".repeat(81)));
    assert!(is_valid_folder_name("a b.c"));
    for bad in [
        "", ".", "..", "a/b", "a\\b", "a:b", "a.", "a ", "nul", "COM1.txt", "a\u{0}",
    ] {
        assert!(!is_valid_folder_name(bad), "{bad:?}");
    }
}

#[test]
fn serde_round_trip_as_strings() {
    let d = DeployedName::new(
        SavedName::new(trained("qw", "r"), prefix("0001")),
        prefix("0002"),
        QuantType::Quantized(FileType::Q4KS),
    );
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(json, "\"qw_r_20240517_3f2a_s_0001_d_0002_q4_K_S\"");
    assert_eq!(serde_json::from_str::<DeployedName>(&json).unwrap(), d);
    assert_eq!(
        serde_json::to_string(&QuantType::Quantized(FileType::Q4KM)).unwrap(),
        "\"q4_K_M\""
    );
    assert!(serde_json::from_str::<TechnicalName>("\"Bad\"").is_err());
    assert!(serde_json::from_str::<TrainedName>(&json).is_err());
}

fn technical_name() -> impl Strategy<Value = TechnicalName> {
    "[a-z0-9][a-z0-9._-]{0,31}".prop_filter_map("folder-safe technical name", |s| {
        TechnicalName::new(&s).ok()
    })
}

/// Arbitrary user input: mostly name-like text, sometimes anything at all.
fn train_input() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ A-Za-z0-9._-]{1,60}",
        "[ \t_A-Za-z0-9./\\\\:-]{0,40}",
        any::<String>(),
    ]
}

fn any_date() -> impl Strategy<Value = NaiveDate> {
    (0i32..=9999, 1u32..=12, 1u32..=31)
        .prop_filter_map("real date", |(y, m, d)| NaiveDate::from_ymd_opt(y, m, d))
}

fn any_uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn any_quant() -> impl Strategy<Value = QuantType> {
    prop::sample::select(QuantType::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn train_names_are_valid_and_normalization_is_idempotent(input in train_input()) {
        if let Ok(t) = TrainName::new(&input) {
            let s = t.as_str();
            prop_assert!(!s.is_empty() && s.len() <= TRAIN_NAME_MAX_LEN);
            prop_assert!(s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'));
            prop_assert!(s.chars().next().unwrap().is_ascii_alphanumeric());
            prop_assert!(!s.contains(".."));
            prop_assert_eq!(TrainName::new(s).unwrap(), t.clone());
        } else {
            // Rejections only happen for the documented reasons.
            let trimmed = input.trim();
            prop_assert!(
                trimmed.is_empty()
                    || trimmed.chars().any(|c| !(c.is_ascii_alphanumeric() || " _.-".contains(c)))
                    || trimmed.contains("..")
                    || !trimmed.starts_with(|c: char| c.is_ascii_alphanumeric())
                    || trimmed.len() > TRAIN_NAME_MAX_LEN,
                "rejected {:?} for no documented reason", input
            );
        }
    }

    #[test]
    fn every_generated_name_is_valid_and_parses_back(
        base in technical_name(),
        train in train_input(),
        date in any_date(),
        training in any_uuid(),
        saving in any_uuid(),
        deploying in any_uuid(),
        quant in any_quant(),
    ) {
        let Ok(train) = TrainName::new(&train) else { return Ok(()) };
        let t = TrainedName::new(base.clone(), &train, date, UuidPrefix::of(&training)).unwrap();
        let s = SavedName::new(t.clone(), UuidPrefix::of(&saving));
        let d = DeployedName::new(s.clone(), UuidPrefix::of(&deploying), quant);
        for (name, parsed) in [
            (t.to_string(), ParsedName::from(t.clone())),
            (s.to_string(), ParsedName::from(s.clone())),
            (d.to_string(), ParsedName::from(d.clone())),
        ] {
            prop_assert!(name.len() <= MODEL_NAME_MAX_LEN, "{} too long", name);
            prop_assert!(is_valid_ollama_model_name(&name), "{} not an Ollama name", name);
            prop_assert!(is_valid_folder_name(&name), "{} not a folder name", name);
            prop_assert_eq!(ParsedName::parse(&name).unwrap(), parsed.clone());
            prop_assert_eq!(ParsedName::parse(&name.to_ascii_uppercase()).unwrap(), parsed);
        }
        prop_assert!(t.to_string().len() <= TRAINED_NAME_MAX_LEN);
        // Never shortened: base, date, prefixes, quant. The train part is a prefix of the input.
        prop_assert_eq!(t.base(), &base);
        prop_assert_eq!(t.date(), date);
        prop_assert!(train.as_str().starts_with(t.train().as_str()));
        prop_assert_eq!(
            t.train().as_str().len(),
            train.as_str().len().min(TRAINED_NAME_MAX_LEN - 15 - base.as_str().len())
        );
        let tail = format!("_d_{}_{}", UuidPrefix::of(&deploying), quant);
        prop_assert!(d.to_string().ends_with(&tail));
    }

    #[test]
    fn parse_never_panics_on_arbitrary_text(s in any::<String>()) {
        let _ = ParsedName::parse(&s);
    }

    #[test]
    fn parse_never_panics_and_accepts_only_canonical_shapes(s in "[A-Za-z0-9_.-]{0,90}") {
        if let Ok(p) = ParsedName::parse(&s) {
            prop_assert_eq!(p.to_string().to_ascii_lowercase(), s.to_ascii_lowercase());
        }
    }
}
