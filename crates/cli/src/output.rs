//! Printing results (text or `--json`) and rendering errors once, with a hint and an exit code.

use std::io::Write;
use std::process::ExitCode;

use loraforge_registry::RegistryError;

/// Exit code for errors the user can fix (bad names, missing entries, bad files).
pub const EXIT_USER_ERROR: u8 = 2;
/// Exit code for failures underneath (I/O, bugs, servers).
pub const EXIT_FAILURE: u8 = 1;

/// An error the user caused, with what to do next.
#[derive(Debug)]
pub struct UserError {
    pub message: String,
    pub hint: Option<String>,
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

/// A user error without a hint.
pub fn user_error(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError {
        message: message.into(),
        hint: None,
    })
}

/// Print a line on stdout; a closed pipe (`| head`) ends the program quietly.
pub fn println_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").is_err() {
        std::process::exit(0);
    }
}

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println_stdout(&serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Print a status line on stderr unless quiet.
pub fn status(quiet: bool, text: &str) {
    if !quiet {
        let _ = writeln!(std::io::stderr(), "{text}");
    }
}

/// Render an aligned table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.to_vec())];
    for row in rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

fn hint_for(error: &anyhow::Error) -> Option<String> {
    for cause in error.chain() {
        if let Some(user) = cause.downcast_ref::<UserError>() {
            return user.hint.clone();
        }
        if let Some(registry) = cause.downcast_ref::<RegistryError>() {
            return match registry {
                RegistryError::Locked { .. } => Some(
                    "another loraforge command is changing the store; retry when it is done (LORAFORGE_LOCK_TIMEOUT sets the wait)".into(),
                ),
                RegistryError::Ollama(_) => Some(
                    "is Ollama running? start it with `ollama serve`, or point OLLAMA_HOST / --host at your server".into(),
                ),
                _ => None,
            };
        }
    }
    None
}

fn is_user_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<UserError>()
            || cause
                .downcast_ref::<RegistryError>()
                .is_some_and(RegistryError::is_user_error)
    })
}

/// Print the error and its causes once, with a hint, and pick the exit code.
pub fn report_error(error: &anyhow::Error) -> ExitCode {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {error}");
    let mut previous = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !previous.contains(&text) {
            let _ = writeln!(stderr, "  caused by: {text}");
        }
        previous = text;
    }
    if let Some(hint) = hint_for(error) {
        let _ = writeln!(stderr, "hint: {hint}");
    }
    if is_user_error(error) {
        ExitCode::from(EXIT_USER_ERROR)
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}
