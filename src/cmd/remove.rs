//! `egress-guard remove`: delete our rules, and nothing else, in one batch.

use crate::apply;
use crate::cli::RemoveArgs;
use crate::error::Error;
use crate::target::Change;

pub fn run(args: RemoveArgs) -> Result<i32, Error> {
    let target = super::target(args.target.target.as_deref())?;
    let mut nl = super::connect(&args.netns)?;
    for step in apply::remove(&mut nl, target)? {
        match step.change {
            Change::Written => println!("{}: removed {} rule(s)", step.place, step.removed.len()),
            Change::Unchanged => println!("{}: nothing of ours", step.place),
            Change::Missing => {}
        }
    }
    Ok(0)
}
