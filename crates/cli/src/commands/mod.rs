//! One module per command group; each calls the libraries and prints the result. `show` (entry
//! cards) is shared by the groups; `models` hands `trained save` to `jobs` and `saved deploy` to
//! `deploy`, which call no other group.

mod demo;
mod deploy;
mod direct;
mod hub;
mod jobs;
mod models;
mod serve;
mod show;

use std::path::PathBuf;

use anyhow::Context as _;
use loraforge_registry::{Registry, RegistryOptions};

use crate::args::{Cli, Command};
use crate::diagnostics::user_error;
use crate::progress::BarReporter;

/// What every command gets: the global flags and, lazily, the store.
pub struct Context {
    pub home: Option<PathBuf>,
    pub json: bool,
    pub quiet: bool,
}

impl Context {
    /// The store root: `--home`, else `LORAFORGE_HOME`, else the platform data folder.
    pub fn home(&self) -> anyhow::Result<PathBuf> {
        match &self.home {
            Some(home) => Ok(home.clone()),
            None => crate::env::store_home().ok_or_else(|| {
                user_error("no store location: set LORAFORGE_HOME or pass --home DIR")
            }),
        }
    }

    /// Open the store (see [`Context::home`]).
    pub fn registry(&self) -> anyhow::Result<Registry> {
        let home = self.home()?;
        let options = RegistryOptions {
            lock_timeout: crate::env::lock_timeout(),
        };
        Registry::open_with(&home, options)
            .with_context(|| format!("cannot open the store at {}", home.display()))
    }

    /// A progress reporter drawing bars unless quiet or JSON output.
    pub fn reporter(&self) -> BarReporter {
        BarReporter::new(
            !self.quiet && !self.json,
            crate::env::test_progress_delay(),
            crate::env::test_crash_at(),
        )
    }

    /// A warning on stderr, shown even with `--json` (stdout stays machine-readable).
    pub fn warn(&self, text: &str) {
        crate::output::status(self.quiet, &format!("warning: {text}"));
    }

    /// A status line on stderr (not in quiet or JSON mode).
    pub fn status(&self, text: &str) {
        crate::output::status(self.quiet || self.json, text);
    }

    /// Print a result: `value` as JSON with `--json`, else the text `describe` makes of it.
    pub fn emit<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
        describe: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        crate::output::emit(self.json, value, describe)
    }
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let context = Context {
        home: cli.home,
        json: cli.json,
        quiet: cli.quiet,
    };
    match cli.command {
        Command::Base(command) => models::base(&context, command),
        Command::Trained(command) => models::trained(&context, command),
        Command::Saved(command) => models::saved(&context, command),
        Command::Deployed(command) => deploy::deployed(&context, command),
        Command::Jobs(command) => jobs::jobs(&context, command),
        Command::Merge(args) => direct::merge(&context, args),
        Command::Convert(args) => direct::convert(&context, args),
        Command::ConvertLora(args) => direct::convert_lora(&context, args),
        Command::Quantize(args) => direct::quantize(&context, args),
        Command::Inspect(args) => direct::inspect(&context, args),
        Command::Demo(args) => demo::demo(&context, args),
        Command::Serve(args) => serve::serve(&context, args),
        Command::Doctor => jobs::doctor(&context),
    }
}
