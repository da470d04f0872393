//! A subset of Go's `text/template` parser, enough to refuse what Ollama's `template.Parse`
//! refuses in the templates a deploy sends: unclosed actions, comments, strings and
//! parentheses; `if`/`range`/`with`/`define`/`block` without `end`; `else`, `end`, `break` and
//! `continue` out of place; empty actions; functions that are neither Go's builtins nor
//! Ollama's (`template/template.go` `funcs`). Messages follow Go's
//! (`template: :LINE: …`, the line where the action starts).

/// Go's builtin template functions.
const BUILTINS: &[&str] = &[
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
];
/// The functions Ollama adds.
const OLLAMA_FUNCS: &[&str] = &["json", "currentDate", "yesterdayDate", "toTypeScriptType"];

/// Checks `src` like `template.New("").Funcs(funcs).Parse(src)`.
pub fn check(src: &str) -> Result<(), String> {
    let line = |at: usize| src[..at].matches('\n').count() + 1;
    let fail = |at: usize, msg: &str| Err(format!("template: :{}: {msg}", line(at)));
    let mut open: Vec<&str> = Vec::new();
    let mut pos = 0;
    while let Some(off) = src[pos..].find("{{") {
        let start = pos + off;
        let mut i = start + 2;
        let b = src.as_bytes();
        // "{{- " trims the text before; the marker needs a space after it.
        if b.get(i) == Some(&b'-') && b.get(i + 1).is_some_and(u8::is_ascii_whitespace) {
            i += 2;
        }
        if src[i..].starts_with("/*") {
            let Some(close) = src[i + 2..].find("*/") else {
                return fail(start, "unclosed comment");
            };
            let after = i + 2 + close + 2;
            let end = if src[after..].starts_with("}}") {
                after + 2
            } else if src[after..].starts_with(" -}}") {
                after + 4
            } else {
                return fail(start, "comment ends before closing delimiter");
            };
            pos = end;
            continue;
        }
        let (words, tokens, keyword_first, end) =
            lex_action(src, i).map_err(|m| format!("template: :{}: {m}", line(start)))?;
        pos = end;
        if tokens == 0 {
            return fail(start, "missing value for command");
        }
        let first = match (keyword_first, words.first()) {
            (true, Some(w)) => w.as_str(),
            _ => "",
        };
        match first {
            "if" | "range" | "with" | "define" | "block" => {
                if tokens == 1 {
                    return fail(start, &format!("missing value for {first}"));
                }
                open.push(match first {
                    "if" => "if",
                    "range" => "range",
                    "with" => "with",
                    "define" => "define",
                    _ => "block",
                });
            }
            "else" if !matches!(open.last(), Some(&("if" | "range" | "with"))) => {
                return fail(start, "unexpected {{else}}");
            }
            // The guard pops the block an `end` closes.
            "end" if open.pop().is_none() => return fail(start, "unexpected {{end}}"),
            "break" | "continue" if !open.contains(&"range") => {
                return fail(start, &format!("{{{{{first}}}}} outside {{{{range}}}}"));
            }
            _ => {}
        }
        for w in &words {
            let keyword = matches!(
                w.as_str(),
                "if" | "range"
                    | "with"
                    | "define"
                    | "block"
                    | "else"
                    | "end"
                    | "break"
                    | "continue"
                    | "template"
                    | "true"
                    | "false"
                    | "nil"
            );
            if !keyword && !BUILTINS.contains(&w.as_str()) && !OLLAMA_FUNCS.contains(&w.as_str()) {
                return fail(start, &format!("function \"{w}\" not defined"));
            }
        }
    }
    if !open.is_empty() {
        return fail(src.len(), "unexpected EOF");
    }
    Ok(())
}

/// Lexes one action from `i` (just after `{{` and any trim marker) to its `}}`; returns the
/// bare identifiers in it (keywords and function names; fields, variables, strings and numbers
/// are left out), how many operands and identifiers it has, whether the first of them is an
/// identifier, and the offset after the closing delimiter.
fn lex_action(src: &str, mut i: usize) -> Result<(Vec<String>, usize, bool, usize), String> {
    let b = src.as_bytes();
    let mut words = Vec::new();
    let mut keyword_first = false;
    let mut parens = 0usize;
    let mut tokens = 0usize;
    loop {
        if src[i..].starts_with("}}") || src[i..].starts_with(" -}}") {
            if parens > 0 {
                return Err("unclosed left paren".into());
            }
            let end = if src[i..].starts_with("}}") {
                i + 2
            } else {
                i + 4
            };
            return Ok((words, tokens, keyword_first, end));
        }
        let Some(&c) = b.get(i) else {
            return Err("unclosed action".into());
        };
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'"' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None | Some(b'\n') => return Err("unterminated quoted string".into()),
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                tokens += 1;
            }
            b'`' => {
                let Some(close) = src[i + 1..].find('`') else {
                    return Err("unterminated raw quoted string".into());
                };
                i += close + 2;
                tokens += 1;
            }
            b'\'' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None | Some(b'\n') => return Err("unterminated character constant".into()),
                        Some(b'\\') => i += 2,
                        Some(b'\'') => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                tokens += 1;
            }
            b'(' => {
                parens += 1;
                i += 1;
            }
            b')' => {
                if parens == 0 {
                    return Err("unexpected right paren".into());
                }
                parens -= 1;
                i += 1;
            }
            b'|' | b'=' | b',' | b':' => i += 1,
            b'.' | b'$' => {
                // A field chain or a variable: `.Messages`, `$.System`, `$i`, `.`.
                i += 1;
                while b
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
                {
                    i += 1;
                }
                tokens += 1;
            }
            c if c.is_ascii_digit() || c == b'-' || c == b'+' => {
                i += 1;
                while b
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'_')
                {
                    i += 1;
                }
                tokens += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let from = i;
                while b
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    i += 1;
                }
                keyword_first |= tokens == 0;
                words.push(src[from..i].to_owned());
                // A field access on the result (`(index .X 0).Y`) is not a word.
                while b.get(i).is_some_and(|c| *c == b'.') {
                    i += 1;
                }
                tokens += 1;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
                return Err(format!(
                    "unrecognized character in action: U+{:04X} '{ch}'",
                    ch as u32
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn accepts_real_templates() {
        for t in [
            "{{ .Prompt }}",
            "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}",
            "{{- range $i, $m := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 }}{{ if eq $m.Role \"user\" }}U: {{ $m.Content }}{{ else if eq $m.Role \"assistant\" }}A: {{ $m.Content }}{{ if not $last }}<end>{{ end }}{{ end }}{{ end }}",
            "{{/* a comment */}}x{{- /* trimmed */ -}}",
            "{{ if .Tools }}{{ json .Tools }}{{ end }}{{ currentDate }}",
            "{{ range .Messages }}{{ if eq .Role \"x\" }}{{ break }}{{ end }}{{ end }}",
            "text with }} and { braces",
            "{{ \"}}\" }}",
        ] {
            assert_eq!(check(t), Ok(()), "{t:?}");
        }
    }

    #[test]
    fn refuses_what_go_refuses() {
        for (t, msg) in [
            ("{{ .Prompt", "template: :1: unclosed action"),
            ("{{ if .System }}x", "template: :1: unexpected EOF"),
            ("x\n{{ end }}", "template: :2: unexpected {{end}}"),
            ("{{ else }}", "template: :1: unexpected {{else}}"),
            ("{{ }}", "template: :1: missing value for command"),
            ("{{ if }}{{ end }}", "template: :1: missing value for if"),
            ("{{ foo .X }}", "template: :1: function \"foo\" not defined"),
            ("{{ \"abc }}", "template: :1: unterminated quoted string"),
            ("{{ (len .X }}", "template: :1: unclosed left paren"),
            ("{{ break }}", "template: :1: {{break}} outside {{range}}"),
            (
                "{{/* x */ }}",
                "template: :1: comment ends before closing delimiter",
            ),
        ] {
            assert_eq!(check(t), Err(msg.to_owned()), "{t:?}");
        }
    }
}
