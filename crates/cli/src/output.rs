//! Printing results: text or `--json` on stdout, status lines on stderr. (Errors are rendered
//! by `diagnostics`.)

use std::io::Write;

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

/// Print `value` as JSON when `json`, else the text `describe` makes of it.
pub fn emit<T: serde::Serialize + ?Sized>(
    json: bool,
    value: &T,
    describe: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        print_json(value)
    } else {
        println_stdout(&describe(value));
        Ok(())
    }
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
