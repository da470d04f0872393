//! Modelfile parsing (syntax of Ollama's `docs/modelfile.mdx` / `parser/parser.go`).

use loraforge_ollama_client::{CreateRequest, Message, Modelfile, ModelfileError, ParamValue};
use serde_json::json;

use crate::common::fixture;

#[test]
fn parses_the_deployment_template_fixture() {
    let text = std::fs::read_to_string(fixture("llama3-deploy.Modelfile")).unwrap();
    let m = Modelfile::parse(&text).unwrap();
    let template = m.template.as_deref().unwrap();
    assert!(template.starts_with("{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n"));
    assert!(template.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"));
    assert_eq!(m.system.as_deref(), Some("You are a helpful assistant."));
    assert_eq!(
        m.stop(),
        ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    );
    assert_eq!(m.parameter("num_ctx"), Some(&ParamValue::Int(512)));
    assert_eq!(m.parameter("temperature"), Some(&ParamValue::Float(0.6)));
    assert_eq!(m.parameter("top_p"), Some(&ParamValue::Float(0.9)));
    assert_eq!(
        m.messages,
        vec![
            Message {
                role: "user".into(),
                content: "Hi there".into()
            },
            Message {
                role: "assistant".into(),
                content: "Hello! How can I help?".into()
            },
        ]
    );
    assert!(m.from.is_none());
}

#[test]
fn instructions_are_case_insensitive_and_values_typed() {
    let m = Modelfile::parse(
        "from llama3\nFrom ./model.gguf\nAdApTeR ./lora.gguf\nparameter seed -42\nPARAMETER use_mmap false\n\
         PARAMETER repeat_penalty 1.1\nLICENSE MIT\nlicense \"\"\"two\nlines\"\"\"\nREQUIRES 0.5.5\n",
    )
    .unwrap();
    assert_eq!(
        m.from.as_deref(),
        Some("./model.gguf"),
        "the last FROM wins"
    );
    assert_eq!(m.adapters, ["./lora.gguf"]);
    assert_eq!(m.parameter("seed"), Some(&ParamValue::Int(-42)));
    assert_eq!(m.parameter("use_mmap"), Some(&ParamValue::Bool(false)));
    assert_eq!(m.parameter("repeat_penalty"), Some(&ParamValue::Float(1.1)));
    assert_eq!(m.licenses, ["MIT", "two\nlines"]);
    assert_eq!(m.requires.as_deref(), Some("0.5.5"));
}

#[test]
fn quoting_comments_and_blank_lines() {
    let m = Modelfile::parse(
        "# leading comment\n\n   \nSYSTEM \"  padded  \"\n# another\nTEMPLATE {{ .Prompt }} # not a comment\r\n\
         PARAMETER stop \"<|im_end|>\"\nPARAMETER stop </s>\n",
    )
    .unwrap();
    assert_eq!(m.system.as_deref(), Some("  padded  "));
    assert_eq!(m.template.as_deref(), Some("{{ .Prompt }} # not a comment"));
    assert_eq!(m.stop(), ["<|im_end|>", "</s>"]);
}

#[test]
fn empty_and_comment_only_files_parse() {
    assert_eq!(Modelfile::parse("").unwrap(), Modelfile::default());
    assert_eq!(
        Modelfile::parse("# nothing\n\n").unwrap(),
        Modelfile::default()
    );
}

#[test]
fn deprecated_parameters_are_skipped_with_a_warning() {
    let m = Modelfile::parse("PARAMETER mirostat 2\nPARAMETER num_ctx 8\n").unwrap();
    assert!(m.parameter("mirostat").is_none());
    assert_eq!(m.warnings.len(), 1);
    assert!(m.warnings[0].contains("line 1") && m.warnings[0].contains("mirostat"));
}

#[test]
fn errors_name_their_line() {
    let cases: Vec<(&str, ModelfileError)> = vec![
        (
            "FROM x\nFROBNICATE y\n",
            ModelfileError::UnknownInstruction {
                line: 2,
                found: "FROBNICATE".into(),
            },
        ),
        (
            "FROM x\n\nSYSTEM\n",
            ModelfileError::MissingArgument {
                line: 3,
                instruction: "SYSTEM".into(),
            },
        ),
        (
            "FROM x\nTEMPLATE \"\"\"{{ .Prompt }}\n\nno end",
            ModelfileError::UnterminatedString {
                line: 2,
                quote: "\"\"\"",
            },
        ),
        (
            "SYSTEM \"open",
            ModelfileError::UnterminatedString {
                line: 1,
                quote: "\"",
            },
        ),
        (
            "SYSTEM \"a\" b\n",
            ModelfileError::UnterminatedString {
                line: 1,
                quote: "\"",
            },
        ),
        (
            "REQUIRES soon\n",
            ModelfileError::InvalidRequires {
                line: 1,
                value: "soon".into(),
            },
        ),
        (
            "\n\nPARAMETER bogus 1\n",
            ModelfileError::UnknownParameter {
                line: 3,
                name: "bogus".into(),
            },
        ),
        (
            "PARAMETER num_ctx lots\n",
            ModelfileError::InvalidParameterValue {
                line: 1,
                name: "num_ctx".into(),
                value: "lots".into(),
                expected: "an integer",
            },
        ),
        (
            "PARAMETER temperature warm\n",
            ModelfileError::InvalidParameterValue {
                line: 1,
                name: "temperature".into(),
                value: "warm".into(),
                expected: "a finite 32-bit number",
            },
        ),
        (
            "PARAMETER use_mmap yes\n",
            ModelfileError::InvalidParameterValue {
                line: 1,
                name: "use_mmap".into(),
                value: "yes".into(),
                expected: "a boolean",
            },
        ),
        (
            "PARAMETER num-ctx 1\n",
            ModelfileError::InvalidParameterName {
                line: 1,
                name: "num-".into(),
            },
        ),
        (
            "PARAMETER num_ctx\n",
            ModelfileError::MissingArgument {
                line: 1,
                instruction: "PARAMETER num_ctx".into(),
            },
        ),
        (
            "MESSAGE robot hello\n",
            ModelfileError::InvalidMessageRole {
                line: 1,
                role: "robot".into(),
            },
        ),
        (
            "MESSAGE User hello\n",
            ModelfileError::InvalidMessageRole {
                line: 1,
                role: "User".into(),
            },
        ),
        (
            "FROM x\n  \"\"\"\n",
            ModelfileError::UnknownInstruction {
                line: 2,
                found: "\"\"".into(),
            },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(Modelfile::parse(text).unwrap_err(), expected, "{text:?}");
    }
    let msg = Modelfile::parse("a\nb\nPARAMETER bogus 1")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("line 1"), "{msg}");
}

#[test]
fn maps_onto_a_create_request() {
    let m = Modelfile::parse(
        "TEMPLATE \"{{ .Prompt }}\"\nSYSTEM sys\nPARAMETER stop a\nPARAMETER num_ctx 4096\n\
         PARAMETER temperature 0.5\nMESSAGE user hi\nLICENSE L\n",
    )
    .unwrap();
    let mut req = CreateRequest {
        model: "m".into(),
        parameters: json!({"stop": ["b", "a"], "num_ctx": 1})
            .as_object()
            .unwrap()
            .clone(),
        ..Default::default()
    };
    m.apply_to(&mut req);
    let body = serde_json::to_value(&req).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "m",
            "template": "{{ .Prompt }}",
            "system": "sys",
            "parameters": {"stop": ["b", "a"], "num_ctx": 4096, "temperature": 0.5},
            "messages": [{"role": "user", "content": "hi"}],
            "license": ["L"],
        })
    );
}

#[test]
fn display_round_trips() {
    let text = std::fs::read_to_string(fixture("llama3-deploy.Modelfile")).unwrap();
    let m = Modelfile::parse(&text).unwrap();
    let again = Modelfile::parse(&m.to_string()).unwrap();
    assert_eq!(again, m);
}

#[test]
fn a_create_request_renders_as_a_modelfile() {
    let text = std::fs::read_to_string(fixture("llama3-deploy.Modelfile")).unwrap();
    let template = Modelfile::parse(&text).unwrap();
    let mut req = CreateRequest {
        model: "m".into(),
        files: [("model.gguf".into(), format!("sha256:{}", "0".repeat(64)))].into(),
        ..Default::default()
    };
    template.apply_to(&mut req);
    let back = Modelfile::from_create_request(&req);
    assert_eq!(back.from.as_deref(), Some("model.gguf"));
    let expected = Modelfile {
        from: Some("model.gguf".into()),
        ..template
    };
    assert_eq!(back, expected);
    assert!(back
        .to_string()
        .starts_with("FROM model.gguf\nTEMPLATE \"\"\"{{- if .System }}"));
}
