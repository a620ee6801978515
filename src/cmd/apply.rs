//! `egress-guard apply`: validate, then one transaction; `--dry-run` reads and prints the plan.

use std::fmt::Write;

use super::Done;
use crate::backend::Change;
use crate::cli::ApplyArgs;
use crate::error::Error;
use crate::transact;

pub fn run(args: ApplyArgs) -> Result<Done, Error> {
    let (policy, target) = super::resolve(&args.policy)?;
    let mut nl = super::connect(&args.netns)?;
    let outcome = transact::apply(&mut nl, &policy, target, args.dry_run, &[])?;
    let verb = if args.dry_run { "would" } else { "did" };
    let mut out = String::new();
    let _ = writeln!(out, "target {}: {}", target.word(), outcome.why.join("; "));
    let mut warnings = Vec::new();
    for step in &outcome.steps {
        match step.change {
            Change::Unchanged if step.warnings.is_empty() => {
                let _ = writeln!(out, "{}: already in place", step.place);
            }
            Change::Unchanged => {
                let _ =
                    writeln!(out, "{}: our rules are written, but the guard is NOT effective (see below)", step.place);
            }
            Change::Missing => {}
            Change::Written => {
                let (added, removed) = (step.added.len(), step.removed.len());
                let _ = writeln!(out, "{}: {verb} write {added} rule(s), delete {removed} old one(s)", step.place);
                for rule in &step.added {
                    match &rule.iptables {
                        Some(line) => writeln!(out, "  + {line}\n      nft: {}", rule.nft),
                        None => writeln!(out, "  + {}", rule.nft),
                    }
                    .ok();
                }
                for line in &step.removed {
                    let _ = writeln!(out, "  - {line}");
                }
            }
        }
        warnings.extend(step.warnings.iter().map(|w| format!("warning: {w}")));
    }
    if args.dry_run {
        out.push_str("(dry run: nothing was changed)\n");
    }
    Ok(Done { code: None, stdout: out, warnings, committed: outcome.committed })
}
