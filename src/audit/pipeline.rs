//! From logged attempts to the records to print. An attempt waits a moment before its source is
//! looked up, because Docker's events come after the fact: a container that dials out as soon
//! as it starts is in the kernel's log before its `start` event has reached the address book,
//! and the address may still be in the book under the container it belonged to before. Then
//! bursts are summarised (`burst`), and what the kernel lost, or we could not read, is said once
//! a second. Pure: the caller passes the time and the lookup.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::burst::{Bursts, Limits};
use super::packet::Attempt;
use super::record::{Blocked, Record, Who};
use super::tag::Action;

/// How long an attempt waits for Docker's events about its source to arrive. They come within
/// milliseconds, then the book inspects the container (one request): a second is generous on a
/// loaded host, and only delays the line.
pub const RESOLVE_DELAY: Duration = Duration::from_secs(1);
/// While the address book has not loaded its first snapshot, attempts wait up to this long.
pub const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// Attempts waiting at most; beyond, the oldest are looked up at once (a flood must not grow
/// memory without bound; only the names of a few might then be a moment stale).
pub const MAX_WAITING: usize = 65_536;
/// Losses and unreadable messages are reported at most this often.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// An attempt as read, before its source is looked up.
#[derive(Debug, Clone)]
pub struct Read {
    /// When we read it: when its wait ends.
    pub received: SystemTime,
    /// When it happened (the kernel's timestamp, else `received`): when its source is looked up.
    pub at: SystemTime,
    pub attempt: Attempt,
    pub bridge: Option<String>,
    pub action: Action,
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub delay: Duration,
    pub connect_wait: Duration,
    pub max_waiting: usize,
    pub limits: Limits,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            delay: RESOLVE_DELAY,
            connect_wait: CONNECT_WAIT,
            max_waiting: MAX_WAITING,
            limits: Limits::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Trouble {
    lost: u64,
    overruns: u64,
    unreadable: u64,
    why: Option<String>,
    reported: Option<SystemTime>,
}

/// What has been counted so far, for a final word.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub attempts: u64,
    pub printed: u64,
    pub lost: u64,
    pub unreadable: u64,
}

pub struct Pipeline {
    settings: Settings,
    waiting: VecDeque<Read>,
    bursts: Bursts,
    trouble: Trouble,
    totals: Totals,
}

impl Pipeline {
    pub fn new(settings: Settings) -> Pipeline {
        Pipeline {
            settings,
            waiting: VecDeque::new(),
            bursts: Bursts::new(settings.limits),
            trouble: Trouble::default(),
            totals: Totals::default(),
        }
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn push(&mut self, read: Read) {
        self.totals.attempts += 1;
        self.waiting.push_back(read);
    }

    /// `n` messages missing from the kernel's sequence numbers.
    pub fn lost(&mut self, n: u64) {
        self.trouble.lost += n;
        self.totals.lost += n;
    }

    /// Our receive buffer overflowed (the count of what was lost follows as [`Pipeline::lost`]).
    pub fn overrun(&mut self) {
        self.trouble.overruns += 1;
    }

    /// A logged message we could not read.
    pub fn unreadable(&mut self, why: String) {
        self.trouble.unreadable += 1;
        self.totals.unreadable += 1;
        self.trouble.why.get_or_insert(why);
    }

    /// The records due by `now`. `docker_settled`: the address book has loaded (or given up on)
    /// its first snapshot; `who` looks a source up at the time of its attempt.
    pub fn drain(
        &mut self,
        now: SystemTime,
        docker_settled: bool,
        who: &mut dyn FnMut(IpAddr, SystemTime) -> Who,
    ) -> Vec<Record> {
        let mut out = Vec::new();
        while let Some(front) = self.waiting.front() {
            let waited = now.duration_since(front.received).unwrap_or(Duration::ZERO);
            let due = waited >= self.settings.delay && (docker_settled || waited >= self.settings.connect_wait);
            if !due && self.waiting.len() <= self.settings.max_waiting {
                break;
            }
            if let Some(read) = self.waiting.pop_front() {
                out.extend(self.resolve(read, who));
            }
        }
        // Attempts older than the delay are all in: windows up to then can close.
        out.extend(self.bursts.tick(now.checked_sub(self.settings.delay).unwrap_or(now)));
        out.extend(self.trouble_record(now, false));
        self.totals.printed += out.iter().filter(|r| matches!(r, Record::Attempt(_))).count() as u64;
        out
    }

    /// Everything still waiting or open (at exit).
    pub fn flush(&mut self, now: SystemTime, who: &mut dyn FnMut(IpAddr, SystemTime) -> Who) -> Vec<Record> {
        let mut out = Vec::new();
        while let Some(read) = self.waiting.pop_front() {
            out.extend(self.resolve(read, who));
        }
        out.extend(self.bursts.flush(now));
        out.extend(self.trouble_record(now, true));
        self.totals.printed += out.iter().filter(|r| matches!(r, Record::Attempt(_))).count() as u64;
        out
    }

    fn resolve(&mut self, read: Read, who: &mut dyn FnMut(IpAddr, SystemTime) -> Who) -> Option<Record> {
        let who = who(read.attempt.src, read.at);
        self.bursts.add(Blocked { at: read.at, attempt: read.attempt, bridge: read.bridge, action: read.action, who })
    }

    fn trouble_record(&mut self, now: SystemTime, force: bool) -> Vec<Record> {
        let t = &mut self.trouble;
        let due = force || t.reported.is_none_or(|r| now.duration_since(r).is_ok_and(|d| d >= REPORT_EVERY));
        if !due {
            return Vec::new();
        }
        let mut out = Vec::new();
        if t.lost > 0 || t.overruns > 0 {
            out.push(Record::Lost { at: now, count: t.lost, overruns: t.overruns });
        }
        if t.unreadable > 0 {
            let why = t.why.take().unwrap_or_default();
            out.push(Record::Unreadable { at: now, count: t.unreadable, why });
        }
        if !out.is_empty() {
            (t.lost, t.overruns, t.unreadable) = (0, 0, 0);
            t.reported = Some(now);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::tests::{at, tcp, web};
    use crate::policy::Refusal;

    fn read(secs: u64, port: u16) -> Read {
        Read {
            received: at(secs),
            at: at(secs),
            attempt: tcp("172.18.0.2", "203.0.113.7", port),
            bridge: Some("br-1a2b3c4d5e6f".into()),
            action: Action::Rejected(Refusal::PortUnreachable),
        }
    }

    fn named(_: IpAddr, _: SystemTime) -> Who {
        Who::Container(web())
    }

    fn kinds(records: &[Record]) -> Vec<&'static str> {
        records
            .iter()
            .map(|r| match r {
                Record::Attempt(_) => "attempt",
                Record::Summary { .. } => "summary",
                Record::Overflow { .. } => "overflow",
                Record::Lost { .. } => "lost",
                Record::Unreadable { .. } => "unreadable",
            })
            .collect()
    }

    #[test]
    fn an_attempt_is_looked_up_after_the_delay_at_its_own_time() {
        let mut p = Pipeline::new(Settings::default());
        let mut asked = Vec::new();
        let mut who = |addr: IpAddr, when: SystemTime| {
            asked.push((addr, when));
            Who::Container(web())
        };
        p.push(Read { at: at(0) - Duration::from_millis(50), ..read(0, 4444) });
        assert!(p.drain(at(0) + Duration::from_millis(999), true, &mut who).is_empty());
        let out = p.drain(at(1), true, &mut who);
        assert_eq!(kinds(&out), ["attempt"]);
        assert_eq!(asked, [("172.18.0.2".parse().unwrap(), at(0) - Duration::from_millis(50))]);
    }

    #[test]
    fn attempts_wait_for_the_first_snapshot_but_not_forever() {
        let mut p = Pipeline::new(Settings::default());
        p.push(read(0, 4444));
        assert!(p.drain(at(3), false, &mut named).is_empty(), "Docker not settled yet");
        assert_eq!(kinds(&p.drain(at(3), true, &mut named)), ["attempt"]);
        p.push(read(10, 80));
        assert!(p.drain(at(14), false, &mut named).is_empty());
        assert_eq!(kinds(&p.drain(at(15), false, &mut named)), ["attempt"], "after CONNECT_WAIT");
    }

    #[test]
    fn a_flood_does_not_wait_in_memory_without_bound() {
        let mut p = Pipeline::new(Settings { max_waiting: 100, ..Settings::default() });
        for _ in 0..1000 {
            p.push(read(0, 4444));
        }
        let out = p.drain(at(0), true, &mut named);
        assert_eq!(kinds(&out), ["attempt"]);
        assert_eq!(p.waiting(), 100);
        let out = p.flush(at(5), &mut named);
        assert_eq!(kinds(&out), ["summary"]);
        assert!(matches!(out[0], Record::Summary { count: 999, .. }));
        assert_eq!(p.totals(), Totals { attempts: 1000, printed: 1, lost: 0, unreadable: 0 });
    }

    #[test]
    fn losses_are_said_once_a_second_and_at_the_end() {
        let mut p = Pipeline::new(Settings::default());
        p.overrun();
        p.lost(7);
        p.unreadable("logged packet has no readable ip header".into());
        let out = p.drain(at(0), true, &mut named);
        assert_eq!(kinds(&out), ["lost", "unreadable"]);
        assert!(matches!(out[0], Record::Lost { count: 7, overruns: 1, .. }));
        p.lost(3);
        assert!(p.drain(at(0) + Duration::from_millis(500), true, &mut named).is_empty());
        assert!(matches!(p.drain(at(1), true, &mut named)[..], [Record::Lost { count: 3, overruns: 0, .. }]));
        p.lost(1);
        assert_eq!(kinds(&p.flush(at(1), &mut named)), ["lost"]);
        assert!(p.flush(at(2), &mut named).is_empty());
        assert_eq!(p.totals().lost, 11);
    }
}
