//! `runner`: the command-line entry point. See `cli.rs` for the commands.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
