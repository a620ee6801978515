//! `egress-guard remove`: delete our rules, and nothing else, in one batch.

use std::fmt::Write;

use super::Done;
use crate::backend::Change;
use crate::cli::RemoveArgs;
use crate::error::Error;
use crate::transact;

pub fn run(args: RemoveArgs) -> Result<Done, Error> {
    let mut nl = super::connect(&args.netns)?;
    let (steps, committed) = transact::remove(&mut nl, args.target)?;
    let mut out = String::new();
    for step in steps {
        match step.change {
            Change::Written => writeln!(out, "{}: removed {} rule(s)", step.place, step.removed.len()),
            Change::Unchanged => writeln!(out, "{}: nothing of ours", step.place),
            Change::Missing => Ok(()),
        }
        .ok();
    }
    Ok(Done { stdout: out, committed, ..Done::default() })
}
