//! Ollama model-name rules (`types/model/name.go`, summarised in the reference's §2.5).

use loraforge_ollama_client::{validate_model_name, NameError, NamePart};

#[test]
fn accepts_names_ollama_accepts() {
    for name in [
        "mistral",
        "my-model:latest",
        "qw2.5-7-i_mytrain_20250101_ab12_s_cd34_d_ef56_q4_K_M",
        "user/model:v1.2",
        "_private:1",
        "example.com:5000/ns/model:tag",
        "https://example.com/ns/model",
        "Model:Q4_K_M",
    ] {
        assert!(
            validate_model_name(name).is_ok(),
            "{name:?} should be valid"
        );
    }
}

#[test]
fn defaults_are_filled() {
    let n = validate_model_name("llama3").unwrap();
    assert_eq!(n.to_string(), "registry.ollama.ai/library/llama3:latest");
    assert_eq!(n.display_shortest(), "llama3:latest");
    let n = validate_model_name("me/llama3:8b").unwrap();
    assert_eq!(
        (n.namespace.as_str(), n.model.as_str(), n.tag.as_str()),
        ("me", "llama3", "8b")
    );
    assert_eq!(n.display_shortest(), "me/llama3:8b");
    assert!(n.eq_fold(&validate_model_name("ME/Llama3:8B").unwrap()));
}

#[test]
fn rejects_names_ollama_rejects() {
    let cases: &[(&str, NamePart)] = &[
        ("", NamePart::Model),
        ("my model", NamePart::Model),
        ("model:", NamePart::Tag),
        (":tag", NamePart::Model),
        ("-model", NamePart::Model),
        ("mödel", NamePart::Model),
        ("ns.dotted/model", NamePart::Namespace),
        ("/model", NamePart::Namespace),
        ("model:ta/g", NamePart::Namespace), // ":" before the last "/" stays in the namespace
        ("model:t:g", NamePart::Model),
        ("a/b/c/d", NamePart::Host), // host "a/b" contains '/'
        // Ollama has no `@digest` syntax: the `@` stays in the model part.
        ("m@d", NamePart::Model),
        ("model@sha256:abc", NamePart::Model), // tag "abc", model "model@sha256"
    ];
    for (name, part) in cases {
        let err = validate_model_name(name).unwrap_err();
        let got = match &err {
            NameError::EmptyPart { part, .. }
            | NameError::TooLong { part, .. }
            | NameError::InvalidChar { part, .. } => *part,
        };
        assert_eq!(got, *part, "{name:?}: {err}");
    }
}

#[test]
fn length_limits() {
    let ok = "m".repeat(80);
    assert!(validate_model_name(&ok).is_ok());
    let long = "m".repeat(81);
    assert!(matches!(
        validate_model_name(&long),
        Err(NameError::TooLong {
            part: NamePart::Model,
            len: 81,
            max: 80,
            ..
        })
    ));
    let long_tag = format!("m:{}", "t".repeat(81));
    assert!(matches!(
        validate_model_name(&long_tag),
        Err(NameError::TooLong {
            part: NamePart::Tag,
            ..
        })
    ));
}
