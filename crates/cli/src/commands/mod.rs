//! One module per command group; each calls the libraries and prints the result.

mod demo;
mod deploy;
mod direct;
mod jobs;
mod models;

use std::path::PathBuf;

use anyhow::Context as _;
use loraforge_registry::Registry;

use crate::args::{Cli, Command};
use crate::output::user_error;
use crate::progress::BarReporter;

/// What every command gets: the global flags and, lazily, the store.
pub struct Context {
    pub home: Option<PathBuf>,
    pub json: bool,
    pub quiet: bool,
}

impl Context {
    /// Open the store (`--home`, else `LORAFORGE_HOME`, else the platform data folder).
    pub fn registry(&self) -> anyhow::Result<Registry> {
        let home = match &self.home {
            Some(home) => home.clone(),
            None => Registry::default_home().ok_or_else(|| {
                user_error("no store location: set LORAFORGE_HOME or pass --home DIR")
            })?,
        };
        Registry::open(&home)
            .with_context(|| format!("cannot open the store at {}", home.display()))
    }

    /// A progress reporter drawing bars unless quiet or JSON output.
    pub fn reporter(&self) -> BarReporter {
        BarReporter::new(!self.quiet && !self.json)
    }

    /// A status line on stderr (not in quiet or JSON mode).
    pub fn status(&self, text: &str) {
        crate::output::status(self.quiet || self.json, text);
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
        Command::Quantize(args) => direct::quantize(&context, args),
        Command::Inspect(args) => direct::inspect(&context, args),
        Command::Demo(args) => demo::demo(&context, args),
    }
}
