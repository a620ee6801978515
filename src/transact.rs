//! Read → diff → one batch, under the ruleset generation: if anyone commits between our read
//! and our batch, the kernel refuses the batch whole (ERESTART) and we read again. `apply`,
//! `remove` and the report loop over the backends `detect` chooses; nothing here knows a
//! backend's place or encoding.

use crate::backend::detect::{self, Choice};
use crate::backend::table::{Kept, OwnTable};
use crate::backend::{Backend, BackendError, Change, PlaceReport, Step, Target};
use crate::error::Error;
use crate::grants::Live;
use crate::nft::msg::BatchBuilder;
use crate::nft::socket::Netlink;
use crate::nft::NlError;
use crate::policy::{Dns, Policy};
use crate::report::Report;
use crate::snapshot::{self, Snapshot};

/// Attempts before exit 4. Each failed attempt means someone else committed in the few
/// hundred microseconds between our read and our write; ten in a row means a busy writer.
pub const MAX_ATTEMPTS: u32 = 10;

/// What a command did (or, with `--dry-run`, would do).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub target: Target,
    /// Why these backends, per family.
    pub why: Vec<String>,
    pub steps: Vec<Step>,
    /// Whether a batch was committed.
    pub committed: bool,
}

/// Runs `step` (read the kernel, decide, fill the batch) until its batch commits against the
/// generation it read, or there is nothing to send and nobody committed while we read. With
/// `dry_run` the batch is never sent. A commit by another writer in between (a refused batch,
/// an interrupted dump, a generation that moved under a read) means: wait a little, read again.
pub fn transact<T>(
    nl: &mut Netlink,
    dry_run: bool,
    mut step: impl FnMut(&mut Netlink, &mut BatchBuilder) -> Result<T, Error>,
) -> Result<(T, bool), Error> {
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
            return Ok((outcome, false));
        }
        match nl.commit(&batch.finish()) {
            Ok(_) => return Ok((outcome, true)),
            Err(NlError::Concurrent) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::GaveUp(MAX_ATTEMPTS))
}

/// Reads with `read` until one generation held from start to end (a consistent picture).
pub fn read_consistent<T>(nl: &mut Netlink, read: impl FnMut(&mut Netlink) -> Result<T, Error>) -> Result<T, Error> {
    let mut read = read;
    transact(nl, true, |nl, _| read(nl)).map(|(value, _)| value)
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

/// Puts `policy` in place at `target`, in one batch; takes ours out of places the target no
/// longer uses in the same batch. `extra` places (watch's shield) are written in that batch too.
pub fn apply(
    nl: &mut Netlink,
    policy: &Policy,
    target: Target,
    dry_run: bool,
    extra: &[Box<dyn Backend>],
) -> Result<Outcome, Error> {
    let ((why, steps), committed) = transact(nl, dry_run, |nl, batch| {
        let mut policy = with_per_source(nl, policy)?;
        let choice = detect::choose(nl, target, &policy)?;
        let mut steps: Vec<Step> = Vec::new();
        for backend in choice.backends.iter().chain(extra) {
            // A warning (a family not guarded, a chain not reached) must be said again by the
            // next apply: then the table does not remember the input, and no apply shortcuts.
            if steps.iter().any(|s| !s.warnings.is_empty()) {
                policy.input = None;
            }
            steps.extend(backend.sync(nl, batch, &policy)?);
        }
        steps.extend(clear(nl, batch, &choice.unused)?);
        Ok((choice.why, steps))
    })?;
    Ok(Outcome { target, why, steps, committed })
}

/// The policy with `per_source` decided: the guard keeps per-container and per-network sets
/// once anything asked for them (the config's tables, a labelled container `watch` saw), and
/// keeps them while they exist, so `apply` beside a running `watch` never takes away what
/// watch keeps, and a container coming or going changes elements, never the rules. Names
/// allowed per container (`dns.for_containers`) are decided the same way.
fn with_per_source(nl: &mut Netlink, policy: &Policy) -> Result<Policy, Error> {
    let live = policy.live.as_deref();
    let asked = !policy.grants.is_empty() || live.is_some_and(|l| !l.sources.is_empty());
    let names_asked = policy.grants.has_domains() || live.is_some_and(Live::has_domains);
    let decided = (policy.per_source || asked) && (policy.dns.for_containers || names_asked);
    let kept = if decided { Kept::default() } else { OwnTable::guard(Vec::new()).keeps(nl)? };
    let for_containers = policy.dns.for_containers || names_asked || kept.dns_clients;
    let per_source = policy.per_source || asked || for_containers || kept.docker_sets;
    let dns = Dns { for_containers, ..policy.dns.clone() };
    Ok(Policy { per_source, dns, ..policy.clone() })
}

/// Our rules out of places no longer used; a table by our name that is not ours is left alone.
fn clear(nl: &mut Netlink, batch: &mut BatchBuilder, unused: &[Box<dyn Backend>]) -> Result<Vec<Step>, Error> {
    let mut steps = Vec::new();
    for backend in unused {
        match backend.remove(nl, batch) {
            Ok(done) => steps.extend(done.into_iter().filter(|s| s.change == Change::Written)),
            Err(BackendError::NotOurs { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(steps)
}

/// Deletes our rules (only ours) from every place of `target`, or from everywhere without one.
pub fn remove(nl: &mut Netlink, target: Option<Target>) -> Result<(Vec<Step>, bool), Error> {
    let places = target.map_or_else(detect::everywhere, detect::places_of);
    transact(nl, false, |nl, batch| {
        let mut steps = Vec::new();
        for place in &places {
            steps.extend(place.remove(nl, batch)?);
        }
        Ok(steps)
    })
}

/// Reads every place `target` uses and judges it against `policy`, from one generation; places
/// it does not use are reported when they still hold something of ours.
pub fn report(nl: &mut Netlink, policy: &Policy, target: Target) -> Result<Report, Error> {
    read_consistent(nl, |nl| {
        let policy = &with_per_source(nl, policy)?;
        let Choice { target, backends, unused, why } = detect::choose(nl, target, policy)?;
        let mut places: Vec<PlaceReport> = Vec::new();
        for backend in &backends {
            places.extend(backend.judge(nl, policy)?);
        }
        // watch's shield, while a watch runs here.
        places.extend(OwnTable::shield().judge(nl, policy)?.into_iter().filter(|p| p.exists));
        let mut leftovers = Vec::new();
        for backend in &unused {
            match backend.judge(nl, policy) {
                Ok(found) => leftovers.extend(found.into_iter().filter(|p| !p.rules.is_empty())),
                Err(BackendError::NotOurs { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Report { target, why, places, leftovers, pending: None, docker: None })
    })
}

/// Everything of ours, in every place a backend writes, from one generation.
pub fn snapshot(nl: &mut Netlink) -> Result<Snapshot, Error> {
    read_consistent(nl, |nl| {
        let mut places = Vec::new();
        for backend in detect::everywhere() {
            places.extend(backend.snapshot(nl)?);
        }
        Ok(Snapshot { version: snapshot::VERSION, taken: crate::state::now(), places })
    })
}

/// Puts every place back as `snapshot` has it, in one batch: our rules only, each where it
/// stood among the rules of others; rules others wrote since stay as they are.
pub fn restore(nl: &mut Netlink, snapshot: &Snapshot) -> Result<(Vec<Step>, bool), Error> {
    let places = detect::everywhere();
    transact(nl, false, |nl, batch| {
        let mut steps = Vec::new();
        for place in &places {
            steps.extend(place.restore(nl, batch, &snapshot.places)?);
        }
        Ok(steps)
    })
}
