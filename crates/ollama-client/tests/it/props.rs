//! Property tests: the parsers never panic on arbitrary input, and a Modelfile renders to text
//! that parses back to the same Modelfile.

use loraforge_ollama_client::{validate_model_name, Message, Modelfile, OllamaHost, ParamValue};
use proptest::prelude::*;

fn value_text() -> impl Strategy<Value = String> {
    // Printable text with newlines, quotes and template braces, but never a triple quote
    // (a Modelfile value cannot contain its own delimiter).
    proptest::string::string_regex("[ -~\n]{1,40}")
        .unwrap()
        .prop_filter("no triple quote", |s| !s.contains("\"\"\""))
        .prop_filter("not only blanks", |s| !s.trim().is_empty())
        .prop_filter("no quote at the edges", |s| {
            !s.starts_with('"') && !s.ends_with('"')
        })
}

fn modelfile() -> impl Strategy<Value = Modelfile> {
    (
        proptest::option::of(value_text()),
        proptest::option::of(value_text()),
        proptest::collection::vec(value_text(), 0..4),
        proptest::option::of(0i64..1_000_000),
        proptest::option::of(0.0f64..2.0),
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

/// What parsing keeps of a value written on one line without quotes: surrounding blanks go.
fn normalise(m: &Modelfile) -> Modelfile {
    let fix = |s: &String| {
        if s.contains('\n') || s.starts_with(' ') || s.ends_with(' ') || s.contains('"') {
            s.clone()
        } else {
            s.trim().to_owned()
        }
    };
    let mut m = m.clone();
    m.template = m.template.as_ref().map(fix);
    m.system = m.system.as_ref().map(fix);
    m.licenses = m.licenses.iter().map(fix).collect();
    for (_, v) in &mut m.parameters {
        if let ParamValue::List(l) = v {
            *l = l.iter().map(fix).collect();
        }
    }
    for msg in &mut m.messages {
        msg.content = fix(&msg.content);
    }
    m
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
        prop_assert_eq!(parsed.unwrap(), normalise(&m), "{}", text);
    }

    #[test]
    fn names_and_hosts_never_panic(s in "(?s).{0,120}") {
        let _ = validate_model_name(&s);
        let host = OllamaHost::parse(&s);
        let _ = host.url();
        let _ = host.to_string();
    }
}
