//! Ollama Modelfile parsing (the deployment template of a base model).
//!
//! Syntax (Ollama `docs/modelfile.mdx`, `parser/parser.go`): one `INSTRUCTION arguments` per
//! line, instructions case-insensitive and in any order, `#` starts a comment line. Values are the
//! rest of the line (trimmed), a `"quoted string"`, or a `"""triple-quoted string"""` that may
//! span lines. `PARAMETER name value` is typed as Ollama's `api.FormatParams` types it (integers,
//! floats, booleans; `stop` repeats and collects into a list); unknown parameters are errors and
//! Ollama's deprecated ones are skipped with a warning. `MESSAGE role text` takes the roles
//! `system`, `user` and `assistant`. Every error names its line.

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
    /// Text follows a closing quote on the same line.
    #[error("Modelfile line {line}: unexpected text {found:?} after the closing quote")]
    TrailingText {
        /// Line number.
        line: usize,
        /// The extra text.
        found: String,
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
    /// Floating-point parameters (`temperature`, `top_p` …).
    Float(f64),
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
            ParamValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
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
    /// `ADAPTER` paths (resolved by the caller).
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
        Parser::new(text).run()
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
                        None => ParamValue::Float(n.as_f64()?),
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
    /// Renders the Modelfile back to text (values that need it are triple-quoted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn q(s: &str) -> String {
            if s.contains('\n') || s.contains('"') || s.starts_with(' ') || s.ends_with(' ') {
                format!("\"\"\"{s}\"\"\"")
            } else {
                s.to_owned()
            }
        }
        if let Some(v) = &self.from {
            writeln!(f, "FROM {v}")?;
        }
        for a in &self.adapters {
            writeln!(f, "ADAPTER {a}")?;
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
            writeln!(f, "REQUIRES {v}")?;
        }
        if let Some(v) = &self.renderer {
            writeln!(f, "RENDERER {v}")?;
        }
        if let Some(v) = &self.parser {
            writeln!(f, "PARSER {v}")?;
        }
        if let Some(v) = &self.draft {
            writeln!(f, "DRAFT {v}")?;
        }
        Ok(())
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    out: Modelfile,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Self {
            text,
            pos: 0,
            line: 1,
            out: Modelfile::default(),
        }
    }

    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.bump();
        }
        self.text.get(start..self.pos).unwrap_or("")
    }

    /// The rest of the current line (without the newline, which is consumed).
    fn take_line(&mut self) -> &'a str {
        let s = self.take_while(|c| c != '\n' && c != '\r');
        self.eat_newline();
        s
    }

    /// Consumes one line ending: `\n`, `\r\n` or a lone `\r`.
    fn eat_newline(&mut self) {
        match self.peek() {
            Some('\r') => {
                self.pos += 1;
                if self.peek() == Some('\n') {
                    self.pos += 1;
                }
                self.line += 1;
            }
            Some('\n') => {
                self.bump();
            }
            _ => {}
        }
    }

    fn run(mut self) -> Result<Modelfile, ModelfileError> {
        loop {
            // Blank space and comments between instructions.
            match self.peek() {
                None => break,
                Some(' ' | '\t' | '\n') => {
                    self.bump();
                    continue;
                }
                Some('\r') => {
                    self.eat_newline();
                    continue;
                }
                Some('#') => {
                    self.take_line();
                    continue;
                }
                Some(_) => {}
            }
            let line = self.line;
            let word = self.take_while(|c| c.is_ascii_alphabetic());
            match self.peek() {
                Some(' ' | '\t') => {}
                None | Some('\n' | '\r') if is_instruction(word) => {
                    return Err(ModelfileError::MissingArgument {
                        line,
                        instruction: word.to_ascii_uppercase(),
                    })
                }
                _ => {
                    let found = format!("{word}{}", self.take_line().trim_end());
                    return Err(ModelfileError::UnknownInstruction {
                        line,
                        found: found.split_whitespace().next().unwrap_or("").to_owned(),
                    });
                }
            }
            if !is_instruction(word) {
                return Err(ModelfileError::UnknownInstruction {
                    line,
                    found: word.to_owned(),
                });
            }
            let instruction = word.to_ascii_lowercase();
            self.skip_blanks();
            match instruction.as_str() {
                "parameter" => self.parameter(line)?,
                "message" => self.message(line)?,
                _ => {
                    let value = self.value(line, &instruction)?;
                    self.store(&instruction, value);
                }
            }
        }
        Ok(self.out)
    }

    fn store(&mut self, instruction: &str, value: String) {
        let o = &mut self.out;
        match instruction {
            "from" => o.from = Some(value),
            "template" => o.template = Some(value),
            "system" => o.system = Some(value),
            "license" => o.licenses.push(value),
            "adapter" => o.adapters.push(value),
            "requires" => o.requires = Some(value),
            "renderer" => o.renderer = Some(value),
            "parser" => o.parser = Some(value),
            _ => o.draft = Some(value),
        }
    }

    /// Reads a value: `"""…"""`, `"…"` or the rest of the line (trimmed).
    fn value(&mut self, line: usize, instruction: &str) -> Result<String, ModelfileError> {
        let (quote, close) = if self.rest().starts_with("\"\"\"") {
            ("\"\"\"", "\"\"\"")
        } else if self.rest().starts_with('"') {
            ("\"", "\"")
        } else {
            let v = self.take_line().trim().to_owned();
            if v.is_empty() {
                return Err(ModelfileError::MissingArgument {
                    line,
                    instruction: instruction.to_ascii_uppercase(),
                });
            }
            return Ok(v);
        };
        let start_line = self.line;
        self.pos += quote.len();
        let Some(end) = self.rest().find(close) else {
            return Err(ModelfileError::UnterminatedString {
                line: start_line,
                quote,
            });
        };
        let value = self.rest().get(..end).unwrap_or("").to_owned();
        for c in value.chars() {
            if c == '\n' {
                self.line += 1;
            }
        }
        self.pos += end + close.len();
        let closing_line = self.line;
        let trailing = self.take_line().trim();
        if !trailing.is_empty() {
            return Err(ModelfileError::TrailingText {
                line: closing_line,
                found: trailing.to_owned(),
            });
        }
        Ok(value)
    }

    fn parameter(&mut self, line: usize) -> Result<(), ModelfileError> {
        let name = self.take_while(|c| !c.is_whitespace());
        if name.is_empty() {
            return Err(ModelfileError::MissingArgument {
                line,
                instruction: "PARAMETER".to_owned(),
            });
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ModelfileError::InvalidParameterName {
                line,
                name: name.to_owned(),
            });
        }
        if !matches!(self.peek(), Some(' ' | '\t')) {
            return Err(ModelfileError::MissingArgument {
                line,
                instruction: format!("PARAMETER {name}"),
            });
        }
        self.skip_blanks();
        let raw = self.value(line, &format!("PARAMETER {name}"))?;
        if DEPRECATED_PARAMETERS.contains(&name) {
            self.out.warnings.push(format!(
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
            value: raw.clone(),
            expected,
        };
        let value = match kind {
            ParamKind::Int => ParamValue::Int(raw.parse::<i64>().map_err(|_| bad("an integer"))?),
            ParamKind::Float => {
                let f = raw.parse::<f64>().map_err(|_| bad("a number"))?;
                if !f.is_finite() {
                    return Err(bad("a finite number"));
                }
                ParamValue::Float(f)
            }
            ParamKind::Bool => {
                ParamValue::Bool(parse_go_bool(&raw).ok_or_else(|| bad("a boolean"))?)
            }
            ParamKind::List => ParamValue::List(vec![raw.clone()]),
        };
        match (
            self.out.parameters.iter_mut().find(|(n, _)| n == name),
            value,
        ) {
            (Some((_, ParamValue::List(list))), ParamValue::List(new)) => list.extend(new),
            (Some((_, slot)), v) => *slot = v,
            (None, v) => self.out.parameters.push((name.to_owned(), v)),
        }
        Ok(())
    }

    fn message(&mut self, line: usize) -> Result<(), ModelfileError> {
        let role = self.take_while(|c| !c.is_whitespace());
        if role.is_empty() {
            return Err(ModelfileError::MissingArgument {
                line,
                instruction: "MESSAGE".to_owned(),
            });
        }
        if !matches!(role, "system" | "user" | "assistant") {
            return Err(ModelfileError::InvalidMessageRole {
                line,
                role: role.to_owned(),
            });
        }
        if !matches!(self.peek(), Some(' ' | '\t')) {
            return Err(ModelfileError::MissingArgument {
                line,
                instruction: format!("MESSAGE {role}"),
            });
        }
        self.skip_blanks();
        let content = self.value(line, &format!("MESSAGE {role}"))?;
        self.out.messages.push(Message {
            role: role.to_owned(),
            content,
        });
        Ok(())
    }
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
