//! The `egress-guard` binary: parse, run, print one error line, exit with its code.

use std::error::Error as _;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use egress_guard::cli::Cli;

/// Exit code for bad usage, also for clap's own parse errors.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => err.exit(),
        Err(err) if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => err.exit(),
        Err(err) => {
            eprintln!("egress-guard: {}", one_line(&err.to_string()));
            return ExitCode::from(USAGE);
        }
    };
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

/// clap's multi-line message as one line: "invalid value 'x' for '--y' [possible values: …] (see --help)".
fn one_line(text: &str) -> String {
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:"))
        .collect();
    let joined = parts.join(" ");
    format!("{} (see --help)", joined.strip_prefix("error: ").unwrap_or(&joined))
}
