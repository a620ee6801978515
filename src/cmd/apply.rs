//! `egress-guard apply`: validate, then one transaction; `--dry-run` reads and prints the plan.

use std::fmt::Write;
use std::io::IsTerminal;

use super::{trial, Done};
use crate::backend::Change;
use crate::cli::ApplyArgs;
use crate::error::Error;
use crate::transact;

pub fn run(args: ApplyArgs) -> Result<Done, Error> {
    let input = input_digest(&args);
    let mut nl = super::connect(&args.netns)?;
    if !args.dry_run && args.confirm.confirm.is_none() {
        if let Some(line) = unchanged_since_applied(&mut nl, input)? {
            return Ok(Done { stdout: line, ..Done::default() });
        }
    }
    let (policy, target) = super::resolve(&args.policy)?;
    let policy = crate::policy::Policy { input: Some(input), ..policy };
    let mut warnings = Vec::new();
    if policy.block_host && args.confirm.confirm.is_none() && std::io::stdin().is_terminal() {
        warnings.push(
            "warning: --block-host refuses new connections from the containers' networks to this host: \
             if you reach it from one of them, try it with --confirm 60 first"
                .to_string(),
        );
    }
    if (policy.dns.is_on() || !policy.grants.is_empty()) && !trial::watch_runs(&mut nl) {
        warnings.push(WATCH_KEEPS_NAMES.into());
    }
    if args.dry_run {
        return Ok(report(&transact::apply(&mut nl, &policy, target, true, &[])?, true, warnings));
    }
    if args.confirm.confirm.is_some() && trial::watch_runs(&mut nl) {
        warnings.push(WATCH_STEPS_ASIDE.into());
    }
    // Nothing to change, nothing to take back: a steady apply keeps no snapshot (with 100,000
    // allowed destinations, taking one is a third of a second). A change awaiting
    // confirmation is another matter: a plain apply replaces it, as below.
    if args.confirm.confirm.is_none() && !trial::pending_here() {
        let planned = transact::apply(&mut nl, &policy, target, true, &[])?;
        if !planned.steps.iter().any(|s| s.change == Change::Written) {
            return Ok(report(&planned, false, warnings));
        }
    }
    let trial = trial::begin(&mut nl, "apply", args.confirm.confirm)?;
    let outcome = match transact::apply(&mut nl, &policy, target, false, &[]) {
        Ok(outcome) => outcome,
        Err(e) => {
            trial.abandon();
            return Err(e);
        }
    };
    let mut done = report(&outcome, false, warnings);
    for line in trial.finish(outcome.committed)? {
        if line.starts_with("warning:") {
            done.warnings.push(line);
        } else {
            done.stdout += &line;
            done.stdout.push('\n');
        }
    }
    Ok(done)
}

/// What this apply was given: the version, every policy flag, the config file's bytes.
fn input_digest(args: &ApplyArgs) -> u64 {
    let path = args.policy.config.as_deref().unwrap_or(crate::config::DEFAULT_PATH);
    // Missing or unreadable: the full path says what is wrong, if anything.
    let config = std::fs::read(path).unwrap_or_default();
    let mut h = crate::fnv::Fnv::default();
    h.eat(env!("CARGO_PKG_VERSION").as_bytes()).eat(format!("{:?}", args.policy).as_bytes()).eat(&config);
    h.finish()
}

/// The same input against a ruleset nobody changed since it was applied (our digest rule names
/// that input and the generation its batch made, and that is still the generation): nothing
/// can differ, so nothing is parsed, planned or read. Any commit since, by anyone, and the
/// full path runs. Not while a change awaits confirmation: a plain apply replaces that.
fn unchanged_since_applied(nl: &mut crate::nft::socket::Netlink, input: u64) -> Result<Option<String>, Error> {
    use crate::backend::table::{DigestNote, FORWARD, TABLE};
    let generation = nl.generation()?;
    let Some(rules) = nl.dump_rules(crate::nft::sys::NFPROTO_INET, TABLE, FORWARD)? else { return Ok(None) };
    let note = rules.last().and_then(|r| r.userdata.as_deref()).and_then(DigestNote::read);
    let same = note.is_some_and(|n| n.input == Some(input) && n.generation == Some(generation));
    if !same || trial::pending_here() || nl.generation()? != generation {
        return Ok(None);
    }
    Ok(Some(format!(
        "already in place: the ruleset is as this same apply left it (generation {generation}); nothing read, nothing written\n"
    )))
}

/// `--allow-domain` and the config's container tables need a running watch.
pub const WATCH_KEEPS_NAMES: &str = "warning: allowed names are answered, and per-container allowances kept, \
     by `egress-guard watch`, which does not run here: until it does, containers' DNS gets no answer and \
     those allowances are not in place (nothing more is let out)";

/// What a running watch does with a change awaiting confirmation.
pub const WATCH_STEPS_ASIDE: &str = "warning: egress-guard watch runs here: it steps aside while the change awaits \
     confirmation, then heals to its own policy; to change a watched host for good, edit its config and \
     `systemctl reload egress-guard`";

/// The report of an apply (or, with `dry_run`, of what it would do).
fn report(outcome: &transact::Outcome, dry_run: bool, mut warnings: Vec<String>) -> Done {
    let verb = if dry_run { "would" } else { "did" };
    let mut out = String::new();
    let _ = writeln!(out, "target {}: {}", outcome.target.word(), outcome.why.join("; "));
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
    if dry_run {
        out.push_str("(dry run: nothing was changed)\n");
    }
    Done { code: None, stdout: out, warnings, committed: outcome.committed }
}
