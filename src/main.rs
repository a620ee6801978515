//! The `egress-guard` binary: parse, run, print one error line, exit with its code.

use std::error::Error as _;
use std::process::ExitCode;

use clap::Parser;
use egress_guard::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match egress_guard::cmd::run(cli.command) {
        Ok(code) => ExitCode::from(code as u8),
        Err(err) => {
            let mut line = format!("egress-guard: {err}");
            let mut cause = err.source();
            while let Some(c) = cause {
                line += &format!(": {c}");
                cause = c.source();
            }
            eprintln!("{line}");
            ExitCode::from(err.exit_code() as u8)
        }
    }
}
