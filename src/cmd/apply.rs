//! `egress-guard apply`: validate, then one transaction; `--dry-run` reads and prints the plan.

use crate::apply;
use crate::cli::ApplyArgs;
use crate::error::Error;
use crate::target::Change;

pub fn run(args: ApplyArgs) -> Result<i32, Error> {
    let (policy, target) = super::resolve(&args.policy)?;
    let mut nl = super::connect(&args.netns)?;
    let outcome = apply::apply(&mut nl, &policy, target, args.dry_run)?;
    let verb = if args.dry_run { "would" } else { "did" };
    println!("target {}: {}", outcome.choice.target.word(), outcome.choice.why);
    for step in &outcome.steps {
        match step.change {
            Change::Unchanged => println!("{}: already in place", step.place),
            Change::Missing => {}
            Change::Written => {
                println!(
                    "{}: {verb} write {} rule(s), delete {} old one(s)",
                    step.place,
                    step.added.len(),
                    step.removed.len()
                );
                for rule in &step.added {
                    match &rule.iptables {
                        Some(line) => println!("  + {line}\n      nft: {}", rule.nft),
                        None => println!("  + {}", rule.nft),
                    }
                }
                for line in &step.removed {
                    println!("  - {line}");
                }
            }
        }
        if let Some(w) = &step.warning {
            eprintln!("egress-guard: warning: {w}");
        }
    }
    if args.dry_run {
        println!("(dry run: nothing was changed)");
    }
    Ok(0)
}
