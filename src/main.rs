//! The `egress-guard` binary: parse, run, write the report, print one error line, exit with its
//! code.

use std::error::Error as _;
use std::io::{ErrorKind, Write};

use clap::error::ErrorKind as ClapKind;
use clap::Parser;
use egress_guard::cli::Cli;
use egress_guard::cmd::{self, Done};
use egress_guard::exit::ExitCode;

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if matches!(err.kind(), ClapKind::DisplayHelp | ClapKind::DisplayVersion) => err.exit(),
        Err(err) if err.kind() == ClapKind::DisplayHelpOnMissingArgumentOrSubcommand => err.exit(),
        Err(err) => {
            cmd::warn(&one_line(&err.to_string()));
            return ExitCode::Usage.into();
        }
    };
    match cmd::run(cli.command) {
        Ok(done) => finish(done).into(),
        Err(err) => {
            let mut line = err.to_string();
            let mut cause = err.source();
            while let Some(c) = cause {
                line += &format!(": {c}");
                cause = c.source();
            }
            cmd::warn(&line);
            err.exit_code().into()
        }
    }
}

/// Writes the report and the warnings. A reader that went away (`status | head`) ends the
/// output quietly; any other failure to write is said on stderr, and says whether the change
/// itself was committed. Either way the exit code is the command's.
fn finish(done: Done) -> ExitCode {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(done.stdout.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() != ErrorKind::BrokenPipe {
            let what = if done.committed { "the change was committed, but " } else { "" };
            cmd::warn(&format!("{what}writing the report failed: {e}"));
        }
    }
    for w in &done.warnings {
        cmd::warn(w);
    }
    done.code.unwrap_or(ExitCode::Ok)
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
