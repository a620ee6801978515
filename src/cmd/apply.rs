//! `egress-guard apply`: validate, then one transaction; `--dry-run` only prints the plan.

use crate::apply::{self, Change};
use crate::cli::ApplyArgs;
use crate::error::Error;
use crate::ipt::Family;
use crate::plan;
use crate::target::docker_user::CHAIN;

pub fn run(args: ApplyArgs) -> Result<i32, Error> {
    let policy = args.policy.to_policy();
    policy.validate()?;
    if args.dry_run {
        for family in Family::ALL {
            println!("# {} filter {CHAIN} ({} -S {CHAIN})", family.nft_name(), family.iptables());
            for rule in plan::docker_user_rules(&policy, family) {
                println!("{}", rule.to_iptables(family, CHAIN));
            }
        }
        return Ok(0);
    }
    let mut nl = super::connect(&args.netns)?;
    for r in apply::apply(&mut nl, &policy)? {
        let name = r.family.nft_name();
        match r.change {
            Change::Unchanged => println!("{name}: already in place"),
            Change::Written { added, removed } => println!("{name}: wrote {added} rule(s), removed {removed} old one(s)"),
            Change::NoChain => println!("{name}: no {name} filter {CHAIN}, not covered (is ip6tables enabled in dockerd?)"),
        }
        if r.change != Change::NoChain && !r.forward_jumps {
            eprintln!("egress-guard: warning: {name} FORWARD does not jump to {CHAIN}; the guard is inert until dockerd adds the jump");
        }
    }
    Ok(0)
}
