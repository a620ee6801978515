//! Read → diff → one batch, under the ruleset generation: if anyone commits between our read
//! and our batch, the kernel refuses the batch whole (ERESTART) and we read again.

use crate::error::Error;
use crate::ipt::{codec, Family};
use crate::nft::msg::BatchBuilder;
use crate::nft::socket::Netlink;
use crate::nft::NlError;
use crate::plan;
use crate::policy::{Policy, PolicyError};
use crate::target::detect::{self, Choice};
use crate::target::docker_user::{self, ChainState, CHAIN, TABLE};
use crate::target::table::{self, TableState};
use crate::target::{Change, RuleText, Step, Target};

/// Attempts before exit 4. Each failed attempt means someone else committed in the few
/// hundred microseconds between our read and our write; ten in a row means a busy writer.
pub const MAX_ATTEMPTS: u32 = 10;

/// What a command did (or, with `--dry-run`, would do).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub choice: Choice,
    pub steps: Vec<Step>,
}

/// Runs `step` (read the kernel, decide, fill the batch) until its batch commits against the
/// generation it read, or there is nothing to send and nobody committed while we read. With
/// `dry_run` the batch is never sent. A commit by another writer in between (a refused batch,
/// an interrupted dump, a generation that moved under a read) means: wait a little, read again.
pub fn transact<T>(
    nl: &mut Netlink,
    dry_run: bool,
    mut step: impl FnMut(&mut Netlink, &mut BatchBuilder) -> Result<T, Error>,
) -> Result<T, Error> {
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            backoff(attempt);
        }
        let genid = nl.generation()?;
        let mut batch = BatchBuilder::new(nl.next_seq(), genid);
        let outcome = match step(nl, &mut batch) {
            Err(Error::Kernel(NlError::Concurrent)) => continue,
            other => other?,
        };
        if dry_run || batch.is_empty() {
            // Nothing to send: the reads must all have seen one generation.
            if nl.generation()? != genid {
                continue;
            }
            return Ok(outcome);
        }
        match nl.commit(&batch.finish()) {
            Ok(_) => return Ok(outcome),
            Err(NlError::Concurrent) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::GaveUp(MAX_ATTEMPTS))
}

/// Reads with `read` until one generation held from start to end (a consistent picture).
pub fn read_consistent<T>(nl: &mut Netlink, read: impl FnMut(&mut Netlink) -> Result<T, Error>) -> Result<T, Error> {
    let mut read = read;
    transact(nl, true, |nl, _| read(nl))
}

/// Sleeps before retry `attempt` (1, 2, …): up to 1 ms doubled each time, capped at 64 ms,
/// at a random point of that window, so two writers that collided do not collide again in step.
fn backoff(attempt: u32) {
    let window_us = 1000u64 << attempt.min(6);
    std::thread::sleep(std::time::Duration::from_micros(jitter(window_us)));
}

/// A cheap pseudo-random number below `bound`, different per process and per call.
fn jitter(bound: u64) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = STATE.load(Ordering::Relaxed);
    let seed = if seed == 0 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        now ^ (u64::from(std::process::id()) << 32) | 1
    } else {
        seed
    };
    // xorshift64
    let mut x = seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    x % bound.max(1)
}

/// Puts `policy` in place at `target`, in one batch.
pub fn apply(nl: &mut Netlink, policy: &Policy, target: Target, dry_run: bool) -> Result<Outcome, Error> {
    let choice = detect::choose(nl, target)?;
    if policy.block_host && !choice.target.uses_table() {
        let why = format!(
            "--block-host needs the table target, and the target is {} ({}): add --target table or --target both",
            choice.target.word(),
            choice.why
        );
        return Err(PolicyError(why).into());
    }
    let steps = transact(nl, dry_run, |nl, batch| {
        let mut steps = Vec::new();
        if choice.target.uses_docker_user() {
            steps.extend(sync_docker_user(nl, batch, policy)?);
        }
        if choice.target.uses_table() {
            let state = TableState::read(nl)?;
            steps.push(table::sync(batch, &state, policy)?);
        }
        Ok(steps)
    })?;
    Ok(Outcome { choice, steps })
}

/// Both families' DOCKER-USER; the IPv4 chain must exist (it is the one Docker always has).
fn sync_docker_user(nl: &mut Netlink, batch: &mut BatchBuilder, policy: &Policy) -> Result<Vec<Step>, Error> {
    let mut steps = Vec::new();
    for family in Family::ALL {
        let state = ChainState::read(nl, family)?;
        if !state.exists() && family == Family::V4 {
            return Err(Error::NoDockerUser { family });
        }
        let rules = plan::docker_user_rules(policy, family);
        let planned = docker_user::encode(family, &rules);
        let mut step = Step { warning: coverage_warning(&state), ..chain_step(&state) };
        if state.exists() && !state.matches(&planned) {
            docker_user::replace(batch, &state, &planned);
            step.change = Change::Written;
            step.added = rules
                .iter()
                .map(|r| RuleText { iptables: Some(r.to_iptables(family, CHAIN)), nft: r.to_nft(family, TABLE, CHAIN) })
                .collect();
            step.removed = our_lines(&state);
        }
        steps.push(step);
    }
    Ok(steps)
}

/// A step for one family's chain with nothing changed yet.
fn chain_step(state: &ChainState) -> Step {
    let place = format!("{} {TABLE} {CHAIN}", state.family.nft_name());
    let change = if state.exists() { Change::Unchanged } else { Change::Missing };
    Step { place, change, added: Vec::new(), removed: Vec::new(), warning: None }
}

/// What an admin applying the guard should hear about this chain: not there, or not reached.
fn coverage_warning(state: &ChainState) -> Option<String> {
    let name = state.family.nft_name();
    if !state.exists() {
        Some(format!("no {name} {TABLE} {CHAIN}: {name} not covered (is ip6tables enabled in dockerd?)"))
    } else if !state.forward_jumps {
        Some(format!("{name} FORWARD does not jump to {CHAIN}: the guard is inert until dockerd adds the jump"))
    } else {
        None
    }
}

/// Our rules in a chain as `iptables -S` lines (or a note for one changed by hand).
fn our_lines(state: &ChainState) -> Vec<String> {
    state
        .ours()
        .iter()
        .map(|r| {
            codec::decode(state.family, &r.exprs)
                .map_or("(a rule of ours changed by hand)".to_string(), |rule| rule.to_iptables(state.family, CHAIN))
        })
        .collect()
}

/// Deletes our rules (only ours) wherever they are: both families' DOCKER-USER and our table,
/// or only the places of `target` when it is not `auto`.
pub fn remove(nl: &mut Netlink, target: Target) -> Result<Vec<Step>, Error> {
    let everywhere = target == Target::Auto;
    transact(nl, false, |nl, batch| {
        let mut steps = Vec::new();
        if everywhere || target.uses_docker_user() {
            for family in Family::ALL {
                let state = ChainState::read(nl, family)?;
                let mut step = chain_step(&state);
                if !state.ours().is_empty() {
                    docker_user::remove(batch, &state);
                    step.change = Change::Written;
                    step.removed = our_lines(&state);
                }
                steps.push(step);
            }
        }
        if everywhere || target.uses_table() {
            let state = TableState::read(nl)?;
            steps.push(table::remove(batch, &state)?);
        }
        Ok(steps)
    })
}
