//! The `loraforge` binary: parse arguments, run one command, render errors once.

mod args;
mod commands;
mod diagnostics;
mod env;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => diagnostics::report(&error),
    }
}
