//! Cases of Ollama's own `parser/parser_test.go` (v0.33), restated as facts about our parser:
//! the instructions it reads (`model` for FROM, `role: text` for MESSAGE) or that it refuses.
//! Ollama's "no FROM line" rule is left out on purpose (deployment templates omit FROM).

use loraforge_ollama_client::{parse_commands, Modelfile, ModelfileError, ParamValue};

fn commands(text: &str) -> Vec<(String, String)> {
    parse_commands(text)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .into_iter()
        .map(|c| (c.name, c.args))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(n, a)| ((*n).to_owned(), (*a).to_owned()))
        .collect()
}

#[test]
fn from_lines() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("FROM \"FOO  BAR  \"", &[("model", "FOO  BAR  ")]),
        (
            "FROM \"FOO BAR\"\nPARAMETER param1 value1",
            &[("model", "FOO BAR"), ("param1", "value1")],
        ),
        ("FROM     FOOO BAR    ", &[("model", "FOOO BAR")]),
        ("FROM /what/is/the path ", &[("model", "/what/is/the path")]),
        ("FROM foo", &[("model", "foo")]),
        (
            "FROM llama3:7b-instruct-q4_K_M",
            &[("model", "llama3:7b-instruct-q4_K_M")],
        ),
        (
            "PARAMETER param1 value1\nFROM foo",
            &[("param1", "value1"), ("model", "foo")],
        ),
        (
            "PARAMETER what the \nFROM lemons make lemonade ",
            &[("what", "the"), ("model", "lemons make lemonade")],
        ),
        ("", &[]),
    ];
    for (text, expected) in cases {
        assert_eq!(commands(text), pairs(expected), "{text:?}");
    }
}

#[test]
fn trims_outside_quotes_only() {
    let text = "\nFROM \"     model 1\"\nADAPTER      adapter3\nLICENSE \"MIT       \"\n\
                PARAMETER param1        value1\nTEMPLATE \"\"\"   {{ .Prompt }}   \"\"\"    \n";
    assert_eq!(
        commands(text),
        pairs(&[
            ("model", "     model 1"),
            ("adapter", "adapter3"),
            ("license", "MIT       "),
            ("param1", "value1"),
            ("template", "   {{ .Prompt }}   "),
        ])
    );
}

#[test]
fn messages() {
    assert_eq!(
        commands("\nFROM foo\nMESSAGE system You are a file parser. Always parse things."),
        pairs(&[
            ("model", "foo"),
            (
                "message",
                "system: You are a file parser. Always parse things."
            )
        ])
    );
    assert_eq!(
        commands("\nFROM foo\nMESSAGE system \"\"\"\nYou are a multiline file parser. Always parse things.\n\"\"\"\n\t\t\t"),
        pairs(&[
            ("model", "foo"),
            ("message", "system: \nYou are a multiline file parser. Always parse things.\n")
        ])
    );
    assert!(matches!(
        parse_commands("\nFROM foo\nMESSAGE badguy I'm a bad guy!\n"),
        Err(ModelfileError::InvalidMessageRole { line: 3, .. })
    ));
    for text in ["\nFROM foo\nMESSAGE system\n", "\nFROM foo\nMESSAGE system"] {
        assert!(
            matches!(
                parse_commands(text),
                Err(ModelfileError::MissingArgument { .. })
            ),
            "{text:?}"
        );
    }
}

#[test]
fn quoted_values() {
    let ok: &[(&str, &str)] = &[
        (
            "SYSTEM \"\"\"\nThis is a\nmultiline system.\n\"\"\"\n\t\t\t",
            "\nThis is a\nmultiline system.\n",
        ),
        (
            "SYSTEM \"\"\"\nThis is a\nmultiline system.\"\"\"\n",
            "\nThis is a\nmultiline system.",
        ),
        (
            "SYSTEM \"\"\"This is a\nmultiline system.\"\"\"\n",
            "This is a\nmultiline system.",
        ),
        (
            "SYSTEM \"\"\"This is a multiline system.\"\"\"\n",
            "This is a multiline system.",
        ),
        (
            "SYSTEM \"\"\"\nThis is a multiline system with \"quotes\".\n\"\"\"\n",
            "\nThis is a multiline system with \"quotes\".\n",
        ),
        ("SYSTEM \"\"\"\"\"\"\n", ""),
        ("SYSTEM \"\"\n", ""),
        ("SYSTEM \"'\"\n", "'"),
        (
            "SYSTEM \"\"\"''\"'\"\"'\"\"'\"'''''\"\"'\"\"'\"\"\"\n",
            "''\"'\"\"'\"\"'\"'''''\"\"'\"\"'",
        ),
        // The cases: a quote closes where a trimmed line ends with it.
        ("SYSTEM \"He said \"hi\" ok\"\n", "He said \"hi\" ok"),
        ("SYSTEM \"\"\"Say \"Hello!\"\"\"\"\n", "Say \"Hello!\""),
        // An empty argument is "".
        ("SYSTEM \n", ""),
        ("SYSTEM ", ""),
    ];
    for (text, expected) in ok {
        assert_eq!(
            commands(&format!("FROM foo\n{text}")),
            pairs(&[("model", "foo"), ("system", expected)]),
            "{text:?}"
        );
    }
    assert_eq!(
        commands("\nFROM foo\nTEMPLATE \"\"\"\n{{ .Prompt }}\n\"\"\""),
        pairs(&[("model", "foo"), ("template", "\n{{ .Prompt }}\n")])
    );
    for text in [
        "\nFROM foo\nSYSTEM \"\"\"This is a multiline system.\"\"\n\t\t\t",
        "\nFROM foo\nSYSTEM \"\n\t\t\t",
    ] {
        assert!(
            matches!(
                parse_commands(text),
                Err(ModelfileError::UnterminatedString { line: 3, .. })
            ),
            "{text:?}"
        );
    }
}

#[test]
fn parameter_lines() {
    let cases: &[(&str, &str, &str)] = &[
        ("num_ctx 1", "num_ctx", "1"),
        ("top_p 1.0", "top_p", "1.0"),
        ("min_p 0.05", "min_p", "0.05"),
        ("use_mmap true", "use_mmap", "true"),
        ("penalize_newline true", "penalize_newline", "true"),
        ("stop ### User:", "stop", "### User:"),
        ("stop ### User: ", "stop", "### User:"),
        ("stop \"### User:\"", "stop", "### User:"),
        ("stop \"### User: \"", "stop", "### User: "),
        ("stop \"\"\"### User:\"\"\"", "stop", "### User:"),
        ("stop \"\"\"### User:\n\"\"\"", "stop", "### User:\n"),
        ("stop <|endoftext|>", "stop", "<|endoftext|>"),
        ("stop </s>", "stop", "</s>"),
    ];
    for (line, name, value) in cases {
        assert_eq!(
            commands(&format!("FROM foo\nPARAMETER {line}\n")),
            pairs(&[("model", "foo"), (name, value)]),
            "{line:?}"
        );
    }
    assert!(matches!(
        parse_commands("\nFROM foo\nPARAMETER param1\n"),
        Err(ModelfileError::MissingArgument { .. })
    ));
    assert!(matches!(
        parse_commands("\nFROM foo\nBADCOMMAND param1 value1\n"),
        Err(ModelfileError::UnknownInstruction { line: 3, .. })
    ));
    assert_eq!(
        commands("\n# comment\nFROM foo\n\t"),
        pairs(&[("model", "foo")])
    );
}

#[test]
fn multibyte_and_utf16() {
    let text =
        "FROM foo\nADAPTER adapter1\nSYSTEM 你好世界\nTEMPLATE \"\"\"{{ .Prompt }} 👋\"\"\"\n";
    let expect = pairs(&[
        ("model", "foo"),
        ("adapter", "adapter1"),
        ("system", "你好世界"),
        ("template", "{{ .Prompt }} 👋"),
    ]);
    assert_eq!(commands(text), expect);
    let parsed = Modelfile::parse(text).unwrap();
    for bom_be in [false, true] {
        let mut bytes = if bom_be {
            vec![0xfe, 0xff]
        } else {
            vec![0xff, 0xfe]
        };
        for unit in text.encode_utf16() {
            bytes.extend(if bom_be {
                unit.to_be_bytes()
            } else {
                unit.to_le_bytes()
            });
        }
        assert_eq!(Modelfile::parse_bytes(&bytes).unwrap(), parsed);
    }
    let mut utf8_bom = vec![0xef, 0xbb, 0xbf];
    utf8_bom.extend(text.as_bytes());
    assert_eq!(Modelfile::parse_bytes(&utf8_bom).unwrap(), parsed);
}

#[test]
fn non_printable_runes_are_dropped() {
    assert_eq!(
        commands("SYSTEM a\u{0}b\u{200b}c\u{7}\n"),
        pairs(&[("system", "abc")])
    );
    // Tabs and line breaks stay inside quotes.
    assert_eq!(
        commands("SYSTEM \"\"\"a\tb\r\nc\"\"\"\n"),
        pairs(&[("system", "a\tb\r\nc")])
    );
}

#[test]
fn typed_rules_of_create_request() {
    // Only the last ADAPTER counts.
    let m = Modelfile::parse("ADAPTER a.gguf\nADAPTER b.gguf\n").unwrap();
    assert_eq!(m.adapters, ["b.gguf"]);
    // REQUIRES: semver with an optional leading v, shorthands included.
    for (text, stored) in [
        ("0.14.0", "0.14.0"),
        ("v0.14.0", "0.14.0"),
        ("1", "1"),
        ("1.2", "1.2"),
        ("0.5.5-rc1+build.7", "0.5.5-rc1+build.7"),
    ] {
        let m = Modelfile::parse(&format!("REQUIRES {text}\n")).unwrap();
        assert_eq!(m.requires.as_deref(), Some(stored), "{text}");
    }
    for bad in [
        "01.2.3", "1.2.3.4", "latest", "1.2-rc1", "vv1.0.0", "1.2.3-01",
    ] {
        assert!(
            matches!(
                Modelfile::parse(&format!("REQUIRES {bad}\n")),
                Err(ModelfileError::InvalidRequires { line: 1, .. })
            ),
            "{bad}"
        );
    }
    // Floats follow Go's ParseFloat(…, 32).
    let float = |v: &str| {
        Modelfile::parse(&format!("PARAMETER temperature {v}\n"))
            .map(|m| m.parameter("temperature").cloned())
    };
    assert_eq!(float("0x1p-2").unwrap(), Some(ParamValue::Float(0.25)));
    assert_eq!(float("0x_1.8p1").unwrap(), Some(ParamValue::Float(3.0)));
    assert_eq!(float("1e-50").unwrap(), Some(ParamValue::Float(0.0)));
    assert_eq!(float("+.5").unwrap(), Some(ParamValue::Float(0.5)));
    for bad in ["1e40", "0x1", "1_0", "NaN", "inf", "0x1p", "."] {
        assert!(
            matches!(
                float(bad),
                Err(ModelfileError::InvalidParameterValue { .. })
            ),
            "{bad}"
        );
    }
    // `PARAMETER template x` sets the template, as in Ollama.
    let m = Modelfile::parse("PARAMETER template x\n").unwrap();
    assert_eq!(m.template.as_deref(), Some("x"));
}

#[test]
fn display_writes_what_parses_back() {
    for value in [
        "Say \"Hello!\"",
        "\"quoted\"",
        "He said \"hi\" ok",
        "",
        "  padded  ",
        "line\nbreak \"q\"",
        "\"",
        "\"\"\"x",
        "a\"\nb",
    ] {
        let m = Modelfile {
            system: Some(value.to_owned()),
            ..Default::default()
        };
        let text = m.to_string();
        assert_eq!(Modelfile::parse(&text).unwrap(), m, "{value:?} → {text:?}");
    }
}
