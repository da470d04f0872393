//! The `loraforge` binary: parse arguments, run one command, render errors once.

mod args;
mod commands;
mod diagnostics;
mod env;
mod output;
mod progress;
mod signals;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    loraforge_adapter_merge::single_threaded_blas();
    let cli = args::Cli::parse();
    signals::remove_temporaries_on_termination();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => diagnostics::report(&error),
    }
}
