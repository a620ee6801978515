//! `egress-guard remove`: delete our rules, and nothing else, in one batch.

use std::fmt::Write;

use super::{trial, Done};
use crate::backend::Change;
use crate::cli::RemoveArgs;
use crate::error::Error;
use crate::transact;

pub fn run(args: RemoveArgs) -> Result<Done, Error> {
    let mut nl = super::connect(&args.netns)?;
    let mut warnings = Vec::new();
    if args.confirm.confirm.is_some() && trial::watch_runs(&mut nl) {
        warnings.push(super::apply::WATCH_STEPS_ASIDE.into());
    }
    let trial = trial::begin(&mut nl, "remove", args.confirm.confirm)?;
    let (steps, committed) = match transact::remove(&mut nl, args.target) {
        Ok(done) => done,
        Err(e) => {
            trial.abandon();
            return Err(e);
        }
    };
    let mut out = String::new();
    for step in steps {
        match step.change {
            Change::Written => writeln!(out, "{}: removed {} rule(s)", step.place, step.removed.len()),
            Change::Unchanged => writeln!(out, "{}: nothing of ours", step.place),
            Change::Missing => Ok(()),
        }
        .ok();
    }
    for line in trial.finish(committed)? {
        if line.starts_with("warning:") {
            warnings.push(line);
        } else {
            out += &line;
            out.push('\n');
        }
    }
    Ok(Done { stdout: out, warnings, committed, ..Done::default() })
}
