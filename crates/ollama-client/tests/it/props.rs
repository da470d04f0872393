//! Property tests: the parsers never panic on arbitrary input, and a Modelfile renders to text
//! that parses back to the same Modelfile.

use loraforge_ollama_client::{validate_model_name, Message, Modelfile, OllamaHost, ParamValue};
use proptest::prelude::*;

fn value_text() -> impl Strategy<Value = String> {
    // Printable text with tabs, newlines, quotes and template braces. Ollama's language cannot
    // write a value with a line (other than the last) that ends in a triple quote: any quoted
    // form closes there.
    proptest::string::string_regex("[ -~\t\n]{0,40}")
        .unwrap()
        .prop_filter("representable in a Modelfile", |s| {
            let lines: Vec<&str> = s.split('\n').collect();
            lines
                .iter()
                .take(lines.len().saturating_sub(1))
                .all(|l| !l.trim_end_matches([' ', '\t']).ends_with("\"\"\""))
        })
}

fn modelfile() -> impl Strategy<Value = Modelfile> {
    (
        proptest::option::of(value_text()),
        proptest::option::of(value_text()),
        proptest::collection::vec(value_text(), 0..4),
        proptest::option::of(0i64..1_000_000),
        proptest::option::of(0.0f32..2.0),
        proptest::collection::vec((0usize..3, value_text()), 0..3),
        proptest::collection::vec(value_text(), 0..2),
    )
        .prop_map(
            |(template, system, stops, num_ctx, temperature, messages, licenses)| {
                let mut m = Modelfile {
                    template,
                    system,
                    licenses,
                    ..Default::default()
                };
                if !stops.is_empty() {
                    m.parameters.push(("stop".into(), ParamValue::List(stops)));
                }
                if let Some(n) = num_ctx {
                    m.parameters.push(("num_ctx".into(), ParamValue::Int(n)));
                }
                if let Some(t) = temperature {
                    m.parameters
                        .push(("temperature".into(), ParamValue::Float(t)));
                }
                m.messages = messages
                    .into_iter()
                    .map(|(r, content)| Message {
                        role: ["system", "user", "assistant"][r].into(),
                        content,
                    })
                    .collect();
                m
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn modelfile_parse_never_panics(text in "(?s).{0,300}") {
        let _ = Modelfile::parse(&text);
    }

    #[test]
    fn modelfile_parse_never_panics_on_instruction_soup(
        lines in proptest::collection::vec(
            "(FROM|TEMPLATE|SYSTEM|PARAMETER|MESSAGE|LICENSE|ADAPTER|#|parameter stop|MESSAGE user|\"\"\"|\")[ -~]{0,20}",
            0..8,
        )
    ) {
        let _ = Modelfile::parse(&lines.join("\n"));
    }

    #[test]
    fn modelfile_renders_and_parses_back(m in modelfile()) {
        let text = m.to_string();
        let parsed = Modelfile::parse(&text);
        prop_assert!(parsed.is_ok(), "{text:?}: {parsed:?}");
        prop_assert_eq!(parsed.unwrap(), m, "{}", text);
    }

    #[test]
    fn names_and_hosts_never_panic(s in "(?s).{0,120}") {
        let _ = validate_model_name(&s);
        let host = OllamaHost::parse(&s);
        let _ = host.url();
        let _ = host.to_string();
    }
}
