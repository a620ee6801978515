//! `egress-guard remove`: delete our rules, and nothing else, in one batch.

use crate::apply;
use crate::cli::RemoveArgs;
use crate::error::Error;
use crate::policy::PolicyError;
use crate::target::{Change, Target};

pub fn run(args: RemoveArgs) -> Result<i32, Error> {
    let word = args.target.target.as_deref().unwrap_or("auto");
    let target = Target::parse(word).ok_or_else(|| PolicyError(format!("target {word:?}: unknown")))?;
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
