//! Errors rendered once, at the top: the cause chain, hints of what to do next, and the exit
//! code. Each library error says whether the user can fix it (`is_user_error`) and what to do
//! (`hint`); this module walks an error's chain, asks every library error it recognises, and
//! prints the result. (uv's `commands/diagnostics.rs` is the model.)

use std::io::Write;
use std::process::ExitCode;

/// Exit code for errors the user can fix (bad names, missing entries, unusable files).
pub const EXIT_USER_ERROR: u8 = 2;
/// Exit code for failures underneath (I/O, bugs, servers).
pub const EXIT_FAILURE: u8 = 1;

/// An error in how the command line was used, with what to do next.
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

/// What the libraries say about one error chain.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// Some error in the chain is one the user can fix.
    pub user_error: bool,
    /// Distinct hints, outermost first.
    pub hints: Vec<String>,
}

/// `(is_user_error, hint)` of one cause, when it is an error type this binary knows.
fn classify(cause: &(dyn std::error::Error + 'static)) -> Option<(bool, Option<String>)> {
    macro_rules! try_as {
        ($($ty:ty),* $(,)?) => {$(
            if let Some(e) = cause.downcast_ref::<$ty>() {
                return Some((e.is_user_error(), e.hint()));
            }
        )*};
    }
    if let Some(e) = cause.downcast_ref::<UserError>() {
        return Some((true, e.hint.clone()));
    }
    try_as!(
        loraforge_registry::RegistryError,
        loraforge_adapter_merge::MergeError,
        loraforge_model_card::CardError,
        loraforge_hf_model::HfModelError,
        loraforge_ollama_client::ClientError,
        loraforge_export::ConvertError,
        loraforge_export::QuantizeFileError,
        loraforge_export::LoraConvertError,
        loraforge_nf4::Nf4Error,
        loraforge_gguf::ReadError,
        loraforge_gguf::WriteError,
        loraforge_web::WebError,
        loraforge_hub::HubError,
    );
    // Errors of the naming rules and of Modelfile parsing are always about what the user gave.
    if cause.is::<loraforge_naming::NameError>()
        || cause.is::<loraforge_ollama_client::ModelfileError>()
        || cause.is::<loraforge_ollama_client::NameError>()
    {
        return Some((true, None));
    }
    None
}

/// Ask every recognised error in the chain.
pub fn diagnose(error: &(dyn std::error::Error + 'static)) -> Diagnosis {
    let mut diagnosis = Diagnosis::default();
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some((user, hint)) = classify(current) {
            diagnosis.user_error |= user;
            if let Some(hint) = hint {
                if !diagnosis.hints.contains(&hint) {
                    diagnosis.hints.push(hint);
                }
            }
        }
        cause = current.source();
    }
    diagnosis
}

/// The error and its causes, one line each, leaving out a cause whose text the line before
/// already contains (transparent wrappers repeat their cause).
pub fn cause_lines(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut lines: Vec<String> = vec![error.to_string()];
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if lines
            .last()
            .is_none_or(|previous| !previous.contains(&text))
        {
            lines.push(text);
        }
        cause = inner.source();
    }
    lines
}

/// The error and its causes on one line (`error: cause: cause`).
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    cause_lines(error).join(": ")
}

/// Print the error and its causes once, with hints, and pick the exit code.
pub fn report(error: &anyhow::Error) -> ExitCode {
    let error: &(dyn std::error::Error + 'static) = error.as_ref();
    let diagnosis = diagnose(error);
    let mut stderr = std::io::stderr().lock();
    for (i, line) in cause_lines(error).iter().enumerate() {
        let _ = if i == 0 {
            writeln!(stderr, "error: {line}")
        } else {
            writeln!(stderr, "  caused by: {line}")
        };
    }
    for hint in &diagnosis.hints {
        let _ = writeln!(stderr, "hint: {hint}");
    }
    if diagnosis.user_error {
        ExitCode::from(EXIT_USER_ERROR)
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_from_a_running_server_does_not_ask_whether_ollama_runs() {
        let refused =
            loraforge_registry::RegistryError::from(loraforge_ollama_client::ClientError::Http {
                operation: "create".into(),
                status: 400,
                message: "invalid model name".into(),
            });
        let diagnosis = diagnose(&refused);
        assert!(!diagnosis.user_error);
        assert!(
            diagnosis
                .hints
                .iter()
                .all(|h| !h.contains("Ollama running")),
            "{diagnosis:?}"
        );
    }

    #[test]
    fn causes_are_listed_once_and_user_errors_found_below_context() {
        let error = anyhow::Error::new(loraforge_registry::RegistryError::NotFound {
            kind: "saved",
            name: "x".into(),
        })
        .context("cannot deploy");
        let lines = cause_lines(error.as_ref());
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(diagnose(error.as_ref()).user_error);
    }
}
