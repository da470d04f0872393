//! Ollama Modelfile parsing: the same language as Ollama's own parser (`parser/parser.go`,
//! `ParseFile` + `CreateRequest`, read at v0.33), written independently.
//!
//! The language, as that parser reads it (one character at a time, a small state machine):
//! * An instruction is a run of ASCII letters (case-insensitive) followed by a space or tab;
//!   `#` starts a comment line. Anything else where an instruction should start is an error.
//! * A value runs to the end of the line. At a line break the value read so far, trimmed, is
//!   complete when it does not start with `"` or when it is quoted to its end: `"""…"""` (at
//!   least six characters) or `"…"` (at least two); the quotes are removed. Otherwise the line
//!   break belongs to the value and reading goes on, so a quoted value closes where a *trimmed
//!   line ends with the quote*, not at the first closing quote: `SYSTEM "He said "hi" ok"` is
//!   `He said "hi" ok`, and `SYSTEM """Say "Hello!""""` is `Say "Hello!"`. An empty value is
//!   `""`. Non-printable characters (Go's `strconv.IsPrint`) are dropped, except spaces, tabs
//!   and line breaks inside a quoted value.
//! * `PARAMETER name value`: the name is letters, digits and `_`; the value is typed as
//!   `api.FormatParams` types it (Go's `ParseInt`, `ParseFloat(…, 32)` and `ParseBool`);
//!   `stop` collects every occurrence, other parameters keep the last. Deprecated parameters
//!   are skipped with a warning. (As in Ollama, `PARAMETER template x` sets the template: the
//!   parameter name is the instruction.)
//! * `MESSAGE role text` with role `system`, `user` or `assistant`.
//! * `REQUIRES` is a semantic version with an optional leading `v` (Go's `x/mod/semver`,
//!   shorthands `1` and `1.2` included); only the last `ADAPTER` counts.
//! * A UTF-8 byte order mark is skipped and UTF-16 files (with a BOM) are decoded
//!   ([`Modelfile::parse_bytes`]).
//!
//! One difference on purpose: `FROM` is optional, because deployment templates omit it (the
//! GGUF is the model). [`Modelfile`]'s `Display` writes text that parses back to the same
//! Modelfile for everything the parser can produce.

use std::fmt;

use serde_json::{Map, Value};

use crate::types::{CreateRequest, Message};

/// A parse failure, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelfileError {
    /// A line starts with something that is not one of Ollama's instructions.
    #[error("Modelfile line {line}: unknown instruction {found:?} (expected FROM, TEMPLATE, SYSTEM, PARAMETER, MESSAGE, LICENSE, ADAPTER, REQUIRES, RENDERER, PARSER or DRAFT)")]
    UnknownInstruction {
        /// Line number.
        line: usize,
        /// The text found.
        found: String,
    },
    /// An instruction has no argument.
    #[error("Modelfile line {line}: {instruction} needs an argument")]
    MissingArgument {
        /// Line number.
        line: usize,
        /// The instruction.
        instruction: String,
    },
    /// A `"` or `"""` string is never closed.
    #[error("Modelfile line {line}: {quote} string opened here is never closed")]
    UnterminatedString {
        /// Line where the string starts.
        line: usize,
        /// The opening quote.
        quote: &'static str,
    },
    /// `REQUIRES` is not a semantic version.
    #[error("Modelfile line {line}: REQUIRES must be a valid semantic version (e.g. 0.14.0), got {value:?}")]
    InvalidRequires {
        /// Line number.
        line: usize,
        /// The value as written.
        value: String,
    },
    /// `PARAMETER` names a parameter Ollama does not know.
    #[error("Modelfile line {line}: unknown parameter {name:?}")]
    UnknownParameter {
        /// Line number.
        line: usize,
        /// Parameter name.
        name: String,
    },
    /// A parameter name contains characters other than letters, digits and `_`.
    #[error("Modelfile line {line}: invalid parameter name {name:?}")]
    InvalidParameterName {
        /// Line number.
        line: usize,
        /// Parameter name as written.
        name: String,
    },
    /// A parameter value does not parse as the parameter's type.
    #[error("Modelfile line {line}: parameter {name} expects {expected}, got {value:?}")]
    InvalidParameterValue {
        /// Line number.
        line: usize,
        /// Parameter name.
        name: String,
        /// The value as written.
        value: String,
        /// The expected type.
        expected: &'static str,
    },
    /// `MESSAGE` with a role other than system/user/assistant.
    #[error("Modelfile line {line}: message role {role:?} must be one of \"system\", \"user\" or \"assistant\"")]
    InvalidMessageRole {
        /// Line number.
        line: usize,
        /// The role found.
        role: String,
    },
}

/// A typed `PARAMETER` value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// Integer parameters (`num_ctx`, `seed`, `top_k` …).
    Int(i64),
    /// Floating-point parameters (`temperature`, `top_p` …): Go `float32`s in Ollama.
    Float(f32),
    /// Boolean parameters (`use_mmap`).
    Bool(bool),
    /// List parameters (`stop`), one entry per `PARAMETER stop` line.
    List(Vec<String>),
}

impl ParamValue {
    /// The JSON value sent in `/api/create`'s `parameters`.
    pub fn to_json(&self) -> Value {
        match self {
            ParamValue::Int(i) => Value::from(*i),
            // Go encodes a float32 with the shortest decimal that reads back as that float32.
            ParamValue::Float(f) => format!("{f}")
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number),
            ParamValue::Bool(b) => Value::Bool(*b),
            ParamValue::List(l) => Value::Array(l.iter().cloned().map(Value::String).collect()),
        }
    }
}

#[derive(Clone, Copy)]
enum ParamKind {
    Int,
    Float,
    Bool,
    List,
}

/// Parameters of Ollama's `api.Options` and `api.Runner` (json tag → Go kind).
const PARAMETERS: &[(&str, ParamKind)] = &[
    ("num_ctx", ParamKind::Int),
    ("num_batch", ParamKind::Int),
    ("num_gpu", ParamKind::Int),
    ("main_gpu", ParamKind::Int),
    ("use_mmap", ParamKind::Bool),
    ("num_thread", ParamKind::Int),
    ("draft_num_predict", ParamKind::Int),
    ("num_keep", ParamKind::Int),
    ("seed", ParamKind::Int),
    ("num_predict", ParamKind::Int),
    ("top_k", ParamKind::Int),
    ("top_p", ParamKind::Float),
    ("min_p", ParamKind::Float),
    ("typical_p", ParamKind::Float),
    ("repeat_last_n", ParamKind::Int),
    ("temperature", ParamKind::Float),
    ("repeat_penalty", ParamKind::Float),
    ("presence_penalty", ParamKind::Float),
    ("frequency_penalty", ParamKind::Float),
    ("stop", ParamKind::List),
];

/// Parameters Ollama's CLI skips with a warning (`deprecatedParameters` in `parser/parser.go`).
const DEPRECATED_PARAMETERS: &[&str] = &[
    "penalize_newline",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "use_mlock",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
];

/// A parsed Modelfile. Later `TEMPLATE`/`SYSTEM`/`FROM` lines replace earlier ones, as in Ollama.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Modelfile {
    /// `FROM`: a model name or a local path (resolved by the caller; deploy supplies its GGUF).
    pub from: Option<String>,
    /// `TEMPLATE`: the Go prompt template.
    pub template: Option<String>,
    /// `SYSTEM`: the system prompt.
    pub system: Option<String>,
    /// `PARAMETER`s in first-seen order; `stop` collects every occurrence.
    pub parameters: Vec<(String, ParamValue)>,
    /// `MESSAGE`s in order.
    pub messages: Vec<Message>,
    /// `LICENSE` texts in order.
    pub licenses: Vec<String>,
    /// `ADAPTER` path (resolved by the caller): at most one, the last `ADAPTER` line, as in
    /// Ollama.
    pub adapters: Vec<String>,
    /// `REQUIRES`: minimum Ollama version.
    pub requires: Option<String>,
    /// `RENDERER` (newer Ollama versions).
    pub renderer: Option<String>,
    /// `PARSER` (newer Ollama versions).
    pub parser: Option<String>,
    /// `DRAFT`: a draft model path or name (resolved by the caller).
    pub draft: Option<String>,
    /// Non-fatal notes (deprecated parameters skipped), each naming its line.
    pub warnings: Vec<String>,
}

impl Modelfile {
    /// Parses Modelfile text. `FROM` is not required: deployment templates usually omit it.
    pub fn parse(text: &str) -> Result<Self, ModelfileError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Self::from_commands(&parse_commands(text)?)
    }

    /// Parses a Modelfile's bytes: UTF-8 (a byte order mark is skipped, invalid sequences
    /// become U+FFFD) or UTF-16 with a byte order mark, like Ollama's `unicode.BOMOverride`.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, ModelfileError> {
        Self::parse(&decode_text(bytes))
    }

    /// Types the instructions read by [`parse_commands`] as Ollama's `CreateRequest` does.
    pub fn from_commands(commands: &[Command]) -> Result<Self, ModelfileError> {
        let mut out = Modelfile::default();
        for c in commands {
            let line = c.line;
            let value = c.args.clone();
            match c.name.as_str() {
                "model" => out.from = Some(value),
                "template" => out.template = Some(value),
                "system" => out.system = Some(value),
                "license" => out.licenses.push(value),
                "adapter" => out.adapters = vec![value],
                "renderer" => out.renderer = Some(value),
                "parser" => out.parser = Some(value),
                "draft" => out.draft = Some(value),
                "requires" => {
                    let v = if value.starts_with('v') {
                        value.clone()
                    } else {
                        format!("v{value}")
                    };
                    if !is_go_semver(&v) {
                        return Err(ModelfileError::InvalidRequires { line, value });
                    }
                    out.requires = Some(v.trim_start_matches('v').to_owned());
                }
                "message" => {
                    let (role, content) = value.split_once(": ").unwrap_or((&value, ""));
                    out.messages.push(Message {
                        role: role.to_owned(),
                        content: content.to_owned(),
                    });
                }
                name => out.parameter_line(line, name, &value)?,
            }
        }
        Ok(out)
    }

    fn parameter_line(&mut self, line: usize, name: &str, raw: &str) -> Result<(), ModelfileError> {
        if DEPRECATED_PARAMETERS.contains(&name) {
            self.warnings.push(format!(
                "line {line}: parameter {name} is deprecated and ignored"
            ));
            return Ok(());
        }
        let Some(&(_, kind)) = PARAMETERS.iter().find(|(n, _)| *n == name) else {
            return Err(ModelfileError::UnknownParameter {
                line,
                name: name.to_owned(),
            });
        };
        let bad = |expected| ModelfileError::InvalidParameterValue {
            line,
            name: name.to_owned(),
            value: raw.to_owned(),
            expected,
        };
        let value = match kind {
            ParamKind::Int => ParamValue::Int(raw.parse::<i64>().map_err(|_| bad("an integer"))?),
            ParamKind::Float => ParamValue::Float(
                parse_go_float32(raw)
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| bad("a finite 32-bit number"))?,
            ),
            ParamKind::Bool => {
                ParamValue::Bool(parse_go_bool(raw).ok_or_else(|| bad("a boolean"))?)
            }
            ParamKind::List => ParamValue::List(vec![raw.to_owned()]),
        };
        match (self.parameters.iter_mut().find(|(n, _)| n == name), value) {
            (Some((_, ParamValue::List(list))), ParamValue::List(new)) => list.extend(new),
            (Some((_, slot)), v) => *slot = v,
            (None, v) => self.parameters.push((name.to_owned(), v)),
        }
        Ok(())
    }

    /// The value of a parameter, if set.
    pub fn parameter(&self, name: &str) -> Option<&ParamValue> {
        self.parameters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The `stop` sequences, in order (empty when none).
    pub fn stop(&self) -> &[String] {
        match self.parameter("stop") {
            Some(ParamValue::List(l)) => l,
            _ => &[],
        }
    }

    /// Adds stop sequences that are not already present (in order).
    pub fn add_stops(&mut self, stops: &[String]) {
        if stops.is_empty() {
            return;
        }
        let idx = match self.parameters.iter().position(|(n, _)| n == "stop") {
            Some(i) => i,
            None => {
                self.parameters
                    .push(("stop".to_owned(), ParamValue::List(Vec::new())));
                self.parameters.len() - 1
            }
        };
        if let Some((_, ParamValue::List(list))) = self.parameters.get_mut(idx) {
            for s in stops {
                if !list.contains(s) {
                    list.push(s.clone());
                }
            }
        }
    }

    /// The parameters as the JSON object `/api/create` takes.
    pub fn parameters_json(&self) -> Map<String, Value> {
        self.parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect()
    }

    /// The Modelfile equivalent of a create request (for records and display): `FROM` names the
    /// first file of `files` (or `from`), `ADAPTER` the adapter files; parameters keep their
    /// JSON types (integers, floats, booleans, string lists; other values are left out).
    pub fn from_create_request(req: &CreateRequest) -> Self {
        let parameters = req
            .parameters
            .iter()
            .filter_map(|(k, v)| {
                let value = match v {
                    Value::Bool(b) => ParamValue::Bool(*b),
                    Value::Number(n) => match n.as_i64() {
                        Some(i) => ParamValue::Int(i),
                        None => ParamValue::Float(n.as_f64()? as f32),
                    },
                    Value::String(s) => ParamValue::List(vec![s.clone()]),
                    Value::Array(items) => ParamValue::List(
                        items
                            .iter()
                            .filter_map(|i| i.as_str().map(str::to_owned))
                            .collect(),
                    ),
                    _ => return None,
                };
                Some((k.clone(), value))
            })
            .collect();
        Self {
            from: req
                .files
                .keys()
                .next()
                .cloned()
                .or_else(|| req.from.clone()),
            template: req.template.clone(),
            system: req.system.clone(),
            parameters,
            messages: req.messages.clone(),
            licenses: req.license.clone(),
            adapters: req.adapters.keys().cloned().collect(),
            requires: req.requires.clone(),
            renderer: req.renderer.clone(),
            parser: req.parser.clone(),
            draft: None,
            warnings: Vec::new(),
        }
    }

    /// Copies TEMPLATE, SYSTEM, PARAMETER, MESSAGE, LICENSE, REQUIRES, RENDERER and PARSER into
    /// a create request (FROM, ADAPTER and DRAFT name local files the caller uploads itself).
    /// Parameters merge into the request's: `stop` lists are appended without duplicates, other
    /// keys are overwritten.
    pub fn apply_to(&self, req: &mut CreateRequest) {
        if let Some(t) = &self.template {
            req.template = Some(t.clone());
        }
        if let Some(s) = &self.system {
            req.system = Some(s.clone());
        }
        if let Some(r) = &self.requires {
            req.requires = Some(r.clone());
        }
        if let Some(r) = &self.renderer {
            req.renderer = Some(r.clone());
        }
        if let Some(p) = &self.parser {
            req.parser = Some(p.clone());
        }
        for (k, v) in &self.parameters {
            match (v, req.parameters.get_mut(k)) {
                (ParamValue::List(new), Some(Value::Array(existing))) => {
                    for s in new {
                        let s = Value::String(s.clone());
                        if !existing.contains(&s) {
                            existing.push(s);
                        }
                    }
                }
                _ => {
                    req.parameters.insert(k.clone(), v.to_json());
                }
            }
        }
        req.messages.extend(self.messages.iter().cloned());
        req.license.extend(self.licenses.iter().cloned());
    }
}

impl fmt::Display for Modelfile {
    /// Renders the Modelfile back to text that [`Modelfile::parse`] reads as the same
    /// Modelfile. Each value is written bare when it reads back unchanged, else in `"""…"""`,
    /// else in `"…"`. (A few strings cannot be written in Ollama's language at all: a line
    /// ending in `"""` followed by more lines, or non-printable characters; those are written
    /// triple-quoted and read back changed. The parser never produces them.)
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = quote_value;
        if let Some(v) = &self.from {
            writeln!(f, "FROM {}", q(v))?;
        }
        for a in &self.adapters {
            writeln!(f, "ADAPTER {}", q(a))?;
        }
        if let Some(v) = &self.template {
            writeln!(f, "TEMPLATE {}", q(v))?;
        }
        if let Some(v) = &self.system {
            writeln!(f, "SYSTEM {}", q(v))?;
        }
        for (k, v) in &self.parameters {
            match v {
                ParamValue::Int(i) => writeln!(f, "PARAMETER {k} {i}")?,
                ParamValue::Float(x) => writeln!(f, "PARAMETER {k} {x}")?,
                ParamValue::Bool(b) => writeln!(f, "PARAMETER {k} {b}")?,
                ParamValue::List(l) => {
                    for s in l {
                        writeln!(f, "PARAMETER {k} {}", q(s))?;
                    }
                }
            }
        }
        for m in &self.messages {
            writeln!(f, "MESSAGE {} {}", m.role, q(&m.content))?;
        }
        for l in &self.licenses {
            writeln!(f, "LICENSE {}", q(l))?;
        }
        if let Some(v) = &self.requires {
            writeln!(f, "REQUIRES {}", q(v))?;
        }
        if let Some(v) = &self.renderer {
            writeln!(f, "RENDERER {}", q(v))?;
        }
        if let Some(v) = &self.parser {
            writeln!(f, "PARSER {}", q(v))?;
        }
        if let Some(v) = &self.draft {
            writeln!(f, "DRAFT {}", q(v))?;
        }
        Ok(())
    }
}

/// The first of: bare, `"""…"""`, `"…"` that reads back as `value`.
fn quote_value(value: &str) -> String {
    let candidates = [
        value.to_owned(),
        format!("\"\"\"{value}\"\"\""),
        format!("\"{value}\""),
    ];
    let reads_back = |text: &str| {
        parse_commands(&format!("SYSTEM {text}\n"))
            .ok()
            .is_some_and(|c| c.len() == 1 && c.first().is_some_and(|c| c.args == value))
    };
    let fallback = candidates[1].clone();
    candidates
        .into_iter()
        .find(|c| reads_back(c))
        .unwrap_or(fallback)
}

/// One instruction as Ollama's parser reads it: the lower-cased instruction (`model` for
/// `FROM`, the parameter's name for `PARAMETER`, `message` with `role: text` as the value) and
/// its value, unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Instruction name.
    pub name: String,
    /// The value.
    pub args: String,
    /// 1-based line the instruction starts on.
    pub line: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between instructions.
    Between,
    /// Reading an instruction name.
    Instruction,
    /// Reading a value.
    Value,
    /// Reading a parameter name.
    ParamName,
    /// Reading a message role.
    Role,
    /// Inside a comment.
    Comment,
}

/// Reads Modelfile text into instructions, as Ollama's `ParseFile` does (without its
/// "no FROM line" rule).
pub fn parse_commands(text: &str) -> Result<Vec<Command>, ModelfileError> {
    let mut commands = Vec::new();
    let mut state = State::Between;
    let mut buf = String::new();
    let mut name = String::new();
    let mut role: Option<String> = None;
    let mut line = 1usize;
    let mut start_line = 1usize;
    for c in text.chars() {
        let (mut next, keep) = match state {
            State::Between if c == '#' => (State::Comment, None),
            State::Between if is_blank(c) || is_line_break(c) => (State::Between, None),
            State::Between => {
                start_line = line;
                (State::Instruction, Some(c))
            }
            State::Instruction if c.is_ascii_alphabetic() => (State::Instruction, Some(c)),
            State::Instruction if is_blank(c) => (State::Value, None),
            State::Instruction => {
                return Err(if is_line_break(c) && is_instruction(&buf) {
                    ModelfileError::MissingArgument {
                        line: start_line,
                        instruction: buf.to_ascii_uppercase(),
                    }
                } else {
                    ModelfileError::UnknownInstruction {
                        line: start_line,
                        found: format!("{buf}{c}").trim().to_owned(),
                    }
                })
            }
            State::Value if is_blank(c) || is_line_break(c) => (State::Between, Some(c)),
            State::Value => (State::Value, Some(c)),
            State::ParamName if c.is_ascii_alphanumeric() || c == '_' => {
                (State::ParamName, Some(c))
            }
            State::ParamName if is_blank(c) => (State::Value, None),
            State::ParamName => {
                return Err(if is_line_break(c) {
                    ModelfileError::MissingArgument {
                        line: start_line,
                        instruction: format!("PARAMETER {buf}").trim_end().to_owned(),
                    }
                } else {
                    ModelfileError::InvalidParameterName {
                        line: start_line,
                        name: format!("{buf}{c}"),
                    }
                })
            }
            State::Role if c.is_ascii_alphabetic() => (State::Role, Some(c)),
            State::Role if is_blank(c) => (State::Value, None),
            State::Role => {
                return Err(if is_line_break(c) && is_message_role(&buf) {
                    ModelfileError::MissingArgument {
                        line: start_line,
                        instruction: format!("MESSAGE {buf}"),
                    }
                } else {
                    ModelfileError::InvalidMessageRole {
                        line: start_line,
                        role: format!("{buf}{c}").trim().to_owned(),
                    }
                })
            }
            State::Comment if is_line_break(c) => (State::Between, None),
            State::Comment => (State::Comment, None),
        };
        if is_line_break(c) {
            line += 1;
        }
        if next != state {
            match state {
                State::Instruction => {
                    if !is_instruction(&buf) {
                        return Err(ModelfileError::UnknownInstruction {
                            line: start_line,
                            found: buf.clone(),
                        });
                    }
                    name = match buf.to_ascii_lowercase().as_str() {
                        "from" => "model".to_owned(),
                        "parameter" => {
                            next = State::ParamName;
                            String::new()
                        }
                        "message" => {
                            next = State::Role;
                            "message".to_owned()
                        }
                        other => other.to_owned(),
                    };
                }
                State::ParamName => name = buf.clone(),
                State::Role => {
                    if !is_message_role(&buf) {
                        return Err(ModelfileError::InvalidMessageRole {
                            line: start_line,
                            role: buf.clone(),
                        });
                    }
                    role = Some(buf.clone());
                }
                State::Value => match unquote(buf.trim()) {
                    // A blank never ends a value; a line break ends it once it is complete.
                    Some(value) if !is_blank(c) => {
                        let args = match role.take() {
                            Some(r) => format!("{r}: {value}"),
                            None => value.to_owned(),
                        };
                        commands.push(Command {
                            name: name.clone(),
                            args,
                            line: start_line,
                        });
                    }
                    _ => {
                        buf.push(c);
                        continue;
                    }
                },
                State::Between | State::Comment => {}
            }
            buf.clear();
            state = next;
        }
        if let Some(k) = keep.filter(|k| is_go_printable(*k)) {
            buf.push(k);
        }
    }
    match state {
        State::Between | State::Comment => {}
        State::Value => {
            let Some(value) = unquote(buf.trim()) else {
                return Err(ModelfileError::UnterminatedString {
                    line: start_line,
                    quote: if buf.trim_start().starts_with("\"\"\"") {
                        "\"\"\""
                    } else {
                        "\""
                    },
                });
            };
            let args = match role.take() {
                Some(r) => format!("{r}: {value}"),
                None => value.to_owned(),
            };
            commands.push(Command {
                name,
                args,
                line: start_line,
            });
        }
        State::Instruction if is_instruction(&buf) => {
            return Err(ModelfileError::MissingArgument {
                line: start_line,
                instruction: buf.to_ascii_uppercase(),
            })
        }
        State::Instruction => {
            return Err(ModelfileError::UnknownInstruction {
                line: start_line,
                found: buf,
            })
        }
        State::ParamName => {
            return Err(ModelfileError::MissingArgument {
                line: start_line,
                instruction: format!("PARAMETER {buf}").trim_end().to_owned(),
            })
        }
        State::Role => {
            return Err(ModelfileError::MissingArgument {
                line: start_line,
                instruction: format!("MESSAGE {buf}").trim_end().to_owned(),
            })
        }
    }
    Ok(commands)
}

/// A value read so far, unquoted: `Some` when it is complete (not quoted, or quoted to its end).
fn unquote(s: &str) -> Option<&str> {
    if s.starts_with("\"\"\"") {
        return (s.len() >= 6 && s.ends_with("\"\"\"")).then(|| &s[3..s.len() - 3]);
    }
    if s.starts_with('"') {
        return (s.len() >= 2 && s.ends_with('"')).then(|| &s[1..s.len() - 1]);
    }
    Some(s)
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_line_break(c: char) -> bool {
    c == '\r' || c == '\n'
}

fn is_message_role(role: &str) -> bool {
    matches!(role, "system" | "user" | "assistant")
}

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    // Format characters (Cf), private use, surrogates and unassigned code points are not
    // printable either; these are the ones a text file can plausibly hold.
    !matches!(c,
        '\u{00ad}' | '\u{0600}'..='\u{0605}' | '\u{061c}' | '\u{06dd}' | '\u{070f}'
        | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}' | '\u{e000}'..='\u{f8ff}' | '\u{f0000}'..='\u{10ffff}'
        | '\u{e0001}' | '\u{e0020}'..='\u{e007f}')
}

/// Decodes a Modelfile's bytes like Go's `unicode.BOMOverride(unicode.UTF8.NewDecoder())`.
fn decode_text(bytes: &[u8]) -> String {
    let utf16 = |rest: &[u8], be: bool| {
        let units = rest.chunks(2).map(|c| match (c.first(), c.get(1)) {
            (Some(&a), Some(&b)) if be => u16::from_be_bytes([a, b]),
            (Some(&a), Some(&b)) => u16::from_le_bytes([a, b]),
            _ => 0xfffd,
        });
        char::decode_utf16(units)
            .map(|r| r.unwrap_or('\u{fffd}'))
            .collect()
    };
    match bytes {
        [0xfe, 0xff, rest @ ..] => utf16(rest, true),
        [0xff, 0xfe, rest @ ..] => utf16(rest, false),
        [0xef, 0xbb, 0xbf, rest @ ..] => String::from_utf8_lossy(rest).into_owned(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// `golang.org/x/mod/semver.IsValid`: `vMAJOR[.MINOR[.PATCH[-pre][+build]]]`, no leading zeros.
fn is_go_semver(v: &str) -> bool {
    fn number(s: &str) -> Option<&str> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let digits = &s[..end];
        let leading_zero = digits.len() > 1 && digits.starts_with('0');
        (!digits.is_empty() && !leading_zero).then(|| &s[end..])
    }
    fn identifiers(s: &str, numeric_rule: bool) -> bool {
        s.split('.').all(|id| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !(numeric_rule
                    && id.len() > 1
                    && id.starts_with('0')
                    && id.bytes().all(|b| b.is_ascii_digit()))
        })
    }
    let Some(rest) = v.strip_prefix('v').and_then(number) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix('.').and_then(number) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix('.').and_then(number) else {
        return false;
    };
    let (rest, build) = match rest.split_once('+') {
        Some((a, b)) => (a, Some(b)),
        None => (rest, None),
    };
    let pre_ok = match rest.strip_prefix('-') {
        Some(pre) => identifiers(pre, true),
        None => rest.is_empty(),
    };
    pre_ok && build.is_none_or(|b| identifiers(b, false))
}

/// Go's `strconv.ParseFloat(s, 32)`: decimal or hexadecimal (`0x1p-2`, underscores allowed
/// between digits) forms, rounded to `f32`; `None` when Go returns an error (bad syntax, or a
/// value out of `f32` range such as `1e40`). Infinities and NaN parse (Ollama then fails to
/// encode them). Hexadecimal mantissas longer than 13 digits are rounded twice.
fn parse_go_float32(s: &str) -> Option<f32> {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity") {
        return Some(if negative {
            f32::NEG_INFINITY
        } else {
            f32::INFINITY
        });
    }
    if lower == "nan" {
        return (s.len() == 3).then_some(f32::NAN);
    }
    let value = if let Some(hex) = lower.strip_prefix("0x") {
        parse_hex_float(hex)?
    } else {
        if !body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        {
            return None;
        }
        body.parse::<f32>().ok()?
    };
    if value.is_infinite() {
        return None;
    }
    Some(if negative { -value } else { value })
}

/// The part after `0x` of a Go hexadecimal float: mantissa digits, optional point, `p` exponent.
fn parse_hex_float(hex: &str) -> Option<f32> {
    let (mantissa, exponent) = hex.split_once('p')?;
    // Underscores must sit between digits (or right after the `0x` prefix).
    let bytes = mantissa.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'_' {
            let before_ok = i == 0 || bytes.get(i - 1).is_some_and(u8::is_ascii_hexdigit);
            let after_ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit);
            if !(before_ok && after_ok) {
                return None;
            }
        }
    }
    let mantissa: String = mantissa.chars().filter(|c| *c != '_').collect();
    let (int, frac) = mantissa.split_once('.').unwrap_or((&mantissa, ""));
    if (int.is_empty() && frac.is_empty())
        || !int
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    let exp_digits = exponent.trim_start_matches(['+', '-']);
    if exp_digits.is_empty()
        || !exp_digits.bytes().all(|b| b.is_ascii_digit())
        || exponent.len() - exp_digits.len() > 1
    {
        return None;
    }
    let exp: i32 = exponent.parse().unwrap_or(if exponent.starts_with('-') {
        i32::MIN / 2
    } else {
        i32::MAX / 2
    });
    let mut value = 0f64;
    for d in int.bytes().chain(frac.bytes()) {
        value = value * 16.0 + f64::from((d as char).to_digit(16)?);
    }
    let shift = i64::from(exp) - 4 * frac.len() as i64;
    let shift = i32::try_from(shift.clamp(-2000, 2000)).ok()?;
    Some((value * 2f64.powi(shift)) as f32)
}

fn is_instruction(word: &str) -> bool {
    matches!(
        word.to_ascii_lowercase().as_str(),
        "from"
            | "template"
            | "system"
            | "parameter"
            | "message"
            | "license"
            | "adapter"
            | "requires"
            | "renderer"
            | "parser"
            | "draft"
    )
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}
