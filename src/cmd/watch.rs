//! `egress-guard watch`: apply, then heal whenever someone else changes the ruleset (an
//! `iptables -F`, a firewalld reload, `systemctl reload nftables`), and check again every
//! `--interval` seconds in case a notification was lost. As a systemd service it says READY
//! after the first apply, keeps the watchdog fed, re-reads its config on SIGHUP (a bad one is
//! reported and the running policy stays) and exits 0 on SIGTERM, leaving the guard in place.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::docker_feed::Feed as DockerFeed;
use super::{say, warn, Done};
use crate::backend::table::OwnTable;
use crate::backend::{Backend, BackendError, Change, Target};
use crate::cli::WatchArgs;
use crate::error::Error;
use crate::grants::Live;
use crate::nft::monitor::{Monitor, Wake};
use crate::nft::socket::Netlink;
use crate::nft::NlError;
use crate::policy::Policy;
use crate::systemd::notify::Notifier;
use crate::transact;

/// Rewrites of our rules within this window, in answer to other programs' changes, that make
/// a fight: someone keeps changing our rules back faster than an admin or a daemon restart
/// would (a heal costs a millisecond or two of CPU: 20 a second stays under 5 % of a core).
const FIGHT_WINDOW: Duration = Duration::from_secs(1);
const FIGHT_REWRITES: usize = 20;
/// While fighting, a heal waits this long, doubled each time, up to the maximum.
const FIGHT_FIRST_DELAY: Duration = Duration::from_millis(100);
const FIGHT_MAX_DELAY: Duration = Duration::from_secs(10);
/// A fight is reported at most this often.
const FIGHT_REPORT_EVERY: Duration = Duration::from_secs(60);

pub fn run(args: WatchArgs) -> Result<Done, Error> {
    let (policy, target) = super::resolve(&args.policy)?;
    // Blocked before any thread starts, so they all inherit the mask and the signals wait in
    // the signalfd for the loop to read them.
    let signals = block_signals()?;
    let nl = super::connect(&args.netns)?;
    // Subscribe before the first apply, so no change between the two goes unseen.
    let monitor = Monitor::open(Duration::from_secs(args.interval))?;
    let store = crate::state::Store::here()?;
    let docker_endpoint = super::docker_endpoint(&args.docker, &args.netns)?;
    let docker = match &docker_endpoint {
        Some(endpoint) => Some(DockerFeed::start(endpoint).map_err(|e| Error::Thread("docker follower", e))?),
        None => None,
    };
    let mut daemon = Daemon {
        nl,
        store,
        paused: false,
        monitor,
        signals,
        policy,
        target,
        interval: Duration::from_secs(args.interval),
        notify: Notifier::from_env(),
        fight: Fight::default(),
        args,
        log: super::log::Hook::default(),
        docker,
        docker_endpoint,
        live: None,
        problems: Vec::new(),
        dns: super::dns_hook::Hook::default(),
    };
    daemon.run()
}

struct Daemon {
    nl: Netlink,
    /// This namespace's state files: a change awaiting confirmation pauses healing.
    store: crate::state::Store,
    /// Stepping aside for a change that awaits confirmation.
    paused: bool,
    monitor: Monitor,
    signals: SignalFd,
    policy: Policy,
    target: Target,
    interval: Duration,
    notify: Notifier,
    fight: Fight,
    /// For re-reading the config on SIGHUP.
    args: WatchArgs,
    /// The audit trail's thread, while the policy logs to NFLOG.
    log: super::log::Hook,
    /// Docker's containers and networks, for their allowances; `None` when Docker is not
    /// consulted (`--netns` without `--docker-host`).
    docker: Option<DockerFeed>,
    docker_endpoint: Option<crate::docker::Endpoint>,
    /// What the per-source sets hold: the latest picture of Docker that was applied.
    live: Option<Arc<Live>>,
    /// Malformed labels already reported.
    problems: Vec<String>,
    /// The DNS forwarder, while `--allow-domain` names anything.
    dns: super::dns_hook::Hook,
}

/// What the loop was woken by.
enum Event {
    Signal(Signal),
    Ruleset(Wake),
    /// Docker's containers, networks or state changed.
    Docker,
    Timeout,
}

impl Daemon {
    fn run(&mut self) -> Result<Done, Error> {
        say(&format!("egress-guard: watching (every change, and every {} s)", self.interval.as_secs()));
        match &self.docker_endpoint {
            Some(e) => say(&format!("egress-guard: following Docker at {} for labels", e.socket.display())),
            None => {
                say("egress-guard: not following Docker (--netns without --docker-host): no per-container allowances")
            }
        }
        // A first look at Docker (it answers in milliseconds): the first apply then already
        // holds the running containers' allowances. Without it the sets stay as they are.
        if let Some(feed) = &self.docker {
            feed.wait_current(Duration::from_secs(2));
        }
        self.look_at_docker();
        let status = self.heal("start", false)?;
        self.log.follow(&self.policy, self.docker_endpoint.as_ref());
        // After the first apply: the sets it grants into exist now.
        self.dns.follow(&self.policy.dns, self.docker.as_ref().map(DockerFeed::follower));
        self.tell(self.notify.ready(&status));
        let mut last_check = Instant::now();
        let mut pending: Option<(Instant, &'static str)> = None;
        loop {
            let until_check = self.interval.saturating_sub(last_check.elapsed());
            let until_heal = pending.map(|(at, _)| at.saturating_duration_since(Instant::now()));
            let ping = self.notify.ping_every();
            // While stepping aside, look every second for the confirmation or the rollback.
            let paused = self.paused.then_some(Duration::from_secs(1));
            let timeout =
                [Some(until_check), until_heal, ping, paused].into_iter().flatten().min().unwrap_or(until_check);
            let event = self.wait(timeout)?;
            self.tell(self.notify.watchdog());
            let why = match event {
                Event::Signal(Signal::SIGHUP) => {
                    self.reload();
                    continue;
                }
                Event::Signal(_) => {
                    self.tell(
                        self.notify.stopping("stopping; the guard stays in place (egress-guard remove takes it away)"),
                    );
                    say("egress-guard: stopping; the guard stays in place");
                    return Ok(Done::default());
                }
                Event::Docker => {
                    let changed = self.look_at_docker();
                    // Before the heal that lets a container allowed names of its own in: the
                    // forwarder answers its first query.
                    self.dns.follow(&self.policy.dns, self.docker.as_ref().map(DockerFeed::follower));
                    if changed {
                        // A container is starting: its allowances go in now, before its first
                        // packet, whatever a fight's delay says.
                        let status = self.heal("docker", false)?;
                        self.tell(self.notify.status(&status));
                    }
                    None
                }
                Event::Ruleset(Wake::OwnChange | Wake::Quiet) => None,
                Event::Ruleset(Wake::Changed) => Some("the ruleset changed"),
                Event::Ruleset(Wake::Overrun) => Some("notifications were lost"),
                Event::Timeout if last_check.elapsed() >= self.interval => Some("periodic check"),
                Event::Timeout if self.paused => Some("periodic check"),
                Event::Timeout => None,
            };
            if let Some(why) = why {
                // While another program keeps changing our rules back, answer it slower.
                let delay = self.fight.delay();
                let at = Instant::now() + delay;
                pending = Some(pending.map_or((at, why), |(t, w)| (t.min(at), w)));
            }
            if let Some((_, why)) = pending.filter(|(at, _)| *at <= Instant::now()) {
                pending = None;
                last_check = Instant::now();
                let status = self.heal(why, why != "periodic check")?;
                self.tell(self.notify.status(&status));
            }
        }
    }

    /// Waits for a signal, a ruleset change or the timeout.
    fn wait(&mut self, timeout: Duration) -> Result<Event, Error> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let (sig_ready, mon_ready, docker_ready) = {
            let mut fds = vec![
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.monitor.as_fd(), PollFlags::POLLIN),
            ];
            if let Some(feed) = &self.docker {
                fds.push(PollFd::new(feed.fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => return Ok(Event::Timeout),
                Err(errno) => return Err(NlError::Io { op: "poll", errno }.into()),
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| r.intersects(PollFlags::POLLIN));
            (ready(&fds[0]), ready(&fds[1]), fds.get(2).is_some_and(ready))
        };
        if sig_ready {
            if let Ok(Some(info)) = self.signals.read_signal() {
                if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                    return Ok(Event::Signal(sig));
                }
            }
        }
        if docker_ready {
            if let Some(feed) = &self.docker {
                feed.drain();
            }
            return Ok(Event::Docker);
        }
        if mon_ready {
            return Ok(Event::Ruleset(self.monitor.drain()?));
        }
        Ok(Event::Timeout)
    }

    /// Takes Docker's latest picture; true when the allowances it gives changed (then the
    /// next heal puts them in). What changed, and labels that cannot work, go to the journal.
    fn look_at_docker(&mut self) -> bool {
        let Some(feed) = &self.docker else { return false };
        let Some(live) = feed.live(&self.policy.grants) else { return false };
        if self.live.as_deref() == Some(&live) {
            return false;
        }
        for line in super::docker_feed::changes(self.live.as_deref(), &live) {
            say(&format!("egress-guard: docker: {line}"));
        }
        for p in live.problems.iter().filter(|p| !self.problems.contains(p)) {
            warn(&format!("docker: {p}"));
        }
        self.problems = live.problems.clone();
        self.dns.set_clients(&live);
        // Every allowance, names included, comes with a source (a container's addresses, a
        // network's subnets): a network labelled with names brings its redirect and sets with
        // its subnets, before its first member (`Live::has_domains`).
        let changed = self.live.as_ref().map(|l| &l.sources) != Some(&live.sources);
        self.live = Some(Arc::new(live));
        changed
    }

    /// One apply, with watch's shield (see `backend::table::SHIELD`); says what it had to write
    /// and returns a status line. Errors that a later change can cure (the chain is gone while
    /// dockerd restarts, a writer kept winning) are reported and watching goes on; permission
    /// and usage errors, and another watch holding the shield, end the watch.
    fn heal(&mut self, why: &str, answering: bool) -> Result<String, Error> {
        if let Some(status) = self.step_aside()? {
            return Ok(status);
        }
        let shield: [Box<dyn Backend>; 1] = [Box::new(OwnTable::shield())];
        // Following Docker, the per-source sets are there from the start: the first labelled
        // container then adds elements, and never changes the table's shape.
        let per_source = self.policy.per_source || self.docker.is_some();
        let policy = Policy { live: self.live.clone(), per_source, ..self.policy.clone() };
        match transact::apply(&mut self.nl, &policy, self.target, false, &shield) {
            Ok(outcome) => {
                let mut wrote = false;
                for step in outcome.steps.iter().filter(|s| s.change == Change::Written) {
                    let (added, removed) = (step.added.len(), step.removed.len());
                    say(&format!(
                        "egress-guard: {why}: {}: {added} added, {removed} deleted (rules, sets, elements)",
                        step.place
                    ));
                    wrote = true;
                }
                // Someone else changed the ruleset, or we rewrote our table: the forwarder's
                // grants may be gone from the kernel, so it grants again at the next lookup.
                if answering || wrote {
                    self.dns.forget_grants();
                }
                if answering {
                    if let Some(report) = self.fight.heal(wrote) {
                        warn(&report);
                    }
                }
                let places: Vec<&str> =
                    outcome.steps.iter().filter(|s| s.change != Change::Missing).map(|s| s.place.as_str()).collect();
                Ok(format!("guarding {}", places.join(", ")))
            }
            Err(e @ Error::Backend(BackendError::HeldByOther { .. })) => Err(e),
            Err(e @ (Error::Backend(_) | Error::GaveUp(_) | Error::Kernel(_))) => {
                warn(&format!("{why}: {e}; waiting for the next change"));
                Ok(format!("not in place: {e}"))
            }
            Err(e) => Err(e),
        }
    }

    /// While a change made with `--confirm` awaits confirmation, watch neither heals nor
    /// shields: the change is being tried, and its rollback must not be fought. Returns the
    /// status line while stepping aside, `None` when watch may heal.
    fn step_aside(&mut self) -> Result<Option<String>, Error> {
        let pending = match self.store.pending() {
            Ok(p) => p,
            Err(e) => {
                warn(&format!("{e}; healing as if nothing awaited confirmation"));
                None
            }
        };
        let Some(p) = pending else {
            if std::mem::take(&mut self.paused) {
                say("egress-guard: the change was confirmed or rolled back: healing again");
            }
            return Ok(None);
        };
        if !self.paused {
            let shield = OwnTable::shield();
            if let Err(e) = transact::transact(&mut self.nl, false, |nl, batch| Ok(shield.remove(nl, batch)?)) {
                warn(&format!("cannot take the shield away for the change being tried: {e}"));
            }
            say(&format!(
                "egress-guard: a change ({}) awaits confirmation: not healing until it is confirmed or rolled back",
                p.command
            ));
            self.paused = true;
        }
        Ok(Some(format!("paused: a change ({}) awaits confirmation", p.command)))
    }

    /// SIGHUP: the config and flags read again; a new policy goes in as one batch; a bad config
    /// is reported and the running policy stays.
    fn reload(&mut self) {
        self.tell(self.notify.reloading("reloading the config"));
        match super::resolve(&self.args.policy) {
            Ok((policy, target)) => {
                self.policy = policy;
                self.target = target;
                // The config's container and network tables may have changed.
                self.live = None;
                self.look_at_docker();
                let status = self.heal("reload", false).unwrap_or_else(|e| format!("reload failed: {e}"));
                self.log.follow(&self.policy, self.docker_endpoint.as_ref());
                self.dns.follow(&self.policy.dns, self.docker.as_ref().map(DockerFeed::follower));
                say("egress-guard: reloaded the config");
                self.tell(self.notify.ready(&status));
            }
            Err(e) => {
                warn(&format!("reload: {e}; the running policy stays"));
                self.tell(self.notify.ready("reload failed: the running policy stays"));
            }
        }
    }

    /// A failure to talk to systemd is said, never fatal.
    fn tell<E: std::fmt::Display>(&self, result: Result<(), E>) {
        if let Err(e) = result {
            warn(&format!("sd_notify: {e}"));
        }
    }
}

/// Blocks SIGHUP, SIGTERM and SIGINT and opens a signalfd for them.
fn block_signals() -> Result<SignalFd, Error> {
    let mut mask = SigSet::empty();
    for sig in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        mask.add(sig);
    }
    let io = |errno| Error::Kernel(NlError::Io { op: "signalfd", errno });
    mask.thread_block().map_err(io)?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(io)
}

/// Telling a fight from healing: another program that keeps changing our rules back.
#[derive(Debug, Default)]
struct Fight {
    /// When recent heals had to write, in answer to others' changes.
    rewrites: Vec<Instant>,
    /// Consecutive heals that had to write while fighting.
    streak: u32,
    /// Rewrites since the last report.
    since_report: usize,
    last_report: Option<Instant>,
}

impl Fight {
    fn fighting(&self) -> bool {
        self.rewrites.len() >= FIGHT_REWRITES
    }

    /// How long the next heal waits: nothing, unless we are fighting.
    fn delay(&self) -> Duration {
        if !self.fighting() {
            return Duration::ZERO;
        }
        FIGHT_FIRST_DELAY.saturating_mul(1 << self.streak.min(10)).min(FIGHT_MAX_DELAY)
    }

    /// Records a heal that answered another program's change; returns a report to print,
    /// at most once a minute, while a fight goes on.
    fn heal(&mut self, wrote: bool) -> Option<String> {
        let now = Instant::now();
        let window = FIGHT_WINDOW.max(self.delay() * 2);
        self.rewrites.retain(|t| now.duration_since(*t) < window);
        if !wrote {
            self.streak = 0;
            return None;
        }
        self.rewrites.push(now);
        self.since_report += 1;
        if !self.fighting() {
            return None;
        }
        self.streak += 1;
        let due = self.last_report.is_none_or(|t| now.duration_since(t) >= FIGHT_REPORT_EVERY);
        if !due {
            return None;
        }
        self.last_report = Some(now);
        let n = std::mem::take(&mut self.since_report);
        Some(format!(
            "another program keeps changing our rules back ({n} rewrites since the last report); \
             answering it every {:.1} s at most — find it (`nft monitor` names the process)",
            self.delay().as_secs_f64()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fight_slows_healing_down_and_calm_brings_it_back() {
        let mut f = Fight::default();
        assert_eq!(f.delay(), Duration::ZERO);
        let reports: Vec<Option<String>> = (0..FIGHT_REWRITES + 5).map(|_| f.heal(true)).collect();
        assert!(reports[..FIGHT_REWRITES - 1].iter().all(Option::is_none), "healing, not a fight yet");
        assert!(reports[FIGHT_REWRITES - 1].as_deref().is_some_and(|r| r.contains("keeps changing our rules back")));
        assert!(reports[FIGHT_REWRITES..].iter().all(Option::is_none), "reported once a minute at most");
        assert!(f.delay() > FIGHT_FIRST_DELAY && f.delay() <= FIGHT_MAX_DELAY);
        f.heal(false);
        assert_eq!(f.streak, 0);
    }
}
