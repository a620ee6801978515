//! A burst from one container to one destination is one line, not thousands: its first attempt
//! is printed, then one summary per window ("…and 4,211 more from ctf-web-1 to …:4444/tcp in
//! 10 s") while it goes on. New bursts are printed at a bounded rate; beyond it (a port scan:
//! every attempt a new destination) they are counted in one overflow line per window, so the
//! output, and the memory kept, stay bounded whatever a container sends. Pure: times come in.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::packet::Proto;
use super::record::{Blocked, Record};
use super::tag::Action;

/// How a burst is recognised: the same container (or, unnamed, source address), destination,
/// protocol, port or ICMP type, and action. The source port is not part of it: every connect
/// takes a new one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    container: Option<String>,
    src: IpAddr,
    dst: IpAddr,
    proto: Proto,
    dport: Option<u16>,
    icmp: Option<(u8, u8)>,
    action: Action,
}

impl Key {
    fn of(b: &Blocked) -> Key {
        let a = &b.attempt;
        Key {
            container: b.who.identity().map(|i| i.id.clone()),
            src: a.src,
            dst: a.dst,
            proto: a.proto,
            dport: a.dport,
            icmp: a.icmp,
            action: b.action,
        }
    }
}

/// One burst in its current window.
#[derive(Debug)]
struct Window {
    since: SystemTime,
    /// The latest attempt in it.
    last: SystemTime,
    /// Attempts in this window not printed (the first window's first one is).
    more: u64,
    first: Blocked,
}

/// Attempts of bursts beyond the rate of new ones, in the current window.
#[derive(Debug)]
struct Overflow {
    since: SystemTime,
    count: u64,
    sources: HashSet<IpAddr>,
    destinations: HashSet<(IpAddr, Proto, Option<u16>)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// How long a summary covers.
    pub window: Duration,
    /// New bursts printed at most this many at once, then `per_second`.
    pub burst: f64,
    pub per_second: f64,
    /// Bursts followed at once at most; the rest go to the overflow.
    pub max_bursts: usize,
    /// The overflow counts distinct sources and destinations up to this many each.
    pub max_distinct: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { window: Duration::from_secs(10), burst: 50.0, per_second: 5.0, max_bursts: 4096, max_distinct: 10_000 }
    }
}

#[derive(Debug)]
pub struct Bursts {
    limits: Limits,
    windows: HashMap<Key, Window>,
    overflow: Option<Overflow>,
    /// Token bucket for new bursts: tokens left, as of `refilled`.
    tokens: f64,
    refilled: Option<SystemTime>,
}

impl Bursts {
    pub fn new(limits: Limits) -> Bursts {
        Bursts { limits, windows: HashMap::new(), overflow: None, tokens: limits.burst, refilled: None }
    }

    /// Bursts being followed now.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Takes one attempt; returns the record to print when it starts a burst.
    pub fn add(&mut self, b: Blocked) -> Option<Record> {
        let key = Key::of(&b);
        if let Some(w) = self.windows.get_mut(&key) {
            w.more += 1;
            w.last = w.last.max(b.at);
            return None;
        }
        if self.windows.len() < self.limits.max_bursts && self.take_token(b.at) {
            self.windows.insert(key, Window { since: b.at, last: b.at, more: 0, first: b.clone() });
            return Some(Record::Attempt(b));
        }
        let max = self.limits.max_distinct;
        let o = self.overflow.get_or_insert_with(|| Overflow {
            since: b.at,
            count: 0,
            sources: HashSet::new(),
            destinations: HashSet::new(),
        });
        o.count += 1;
        if o.sources.len() < max {
            o.sources.insert(b.attempt.src);
        }
        if o.destinations.len() < max {
            o.destinations.insert((b.attempt.dst, b.attempt.proto, b.attempt.dport));
        }
        None
    }

    fn take_token(&mut self, at: SystemTime) -> bool {
        let elapsed = self.refilled.and_then(|r| at.duration_since(r).ok()).unwrap_or(Duration::ZERO);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.limits.per_second).min(self.limits.burst);
        if self.refilled.is_none_or(|r| at > r) {
            self.refilled = Some(at);
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Closes the windows that ended by `now`: a burst that went on gets its summary and a new
    /// window; one that stopped is forgotten (its next attempt is printed again).
    pub fn tick(&mut self, now: SystemTime) -> Vec<Record> {
        let window = self.limits.window;
        let ended = |since: SystemTime| since.checked_add(window).is_some_and(|end| end <= now);
        let mut out = Vec::new();
        self.windows.retain(|_, w| {
            if !ended(w.since) {
                return true;
            }
            if w.more == 0 {
                return false;
            }
            let until = w.since + window;
            out.push(Record::Summary { since: w.since, until, last: w.last, count: w.more, first: w.first.clone() });
            w.since = until;
            w.more = 0;
            true
        });
        if self.overflow.as_ref().is_some_and(|o| ended(o.since)) {
            out.extend(self.overflow_record(None));
        }
        sort(&mut out);
        out
    }

    /// Every summary still open, up to `now` (at exit).
    pub fn flush(&mut self, now: SystemTime) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .windows
            .drain()
            .filter(|(_, w)| w.more > 0)
            .map(|(_, w)| Record::Summary {
                since: w.since,
                until: now.max(w.since),
                last: w.last,
                count: w.more,
                first: w.first,
            })
            .collect();
        out.extend(self.overflow_record(Some(now)));
        sort(&mut out);
        out
    }

    fn overflow_record(&mut self, until: Option<SystemTime>) -> Option<Record> {
        let o = self.overflow.take()?;
        let until = until.unwrap_or(o.since + self.limits.window).max(o.since);
        Some(Record::Overflow {
            since: o.since,
            until,
            count: o.count,
            sources: o.sources.len(),
            destinations: o.destinations.len(),
        })
    }
}

/// Summaries in the order their bursts began, so a run's output does not depend on hashing.
fn sort(records: &mut [Record]) {
    records.sort_by_key(|r| match r {
        Record::Summary { since, first, .. } => (*since, first.at),
        Record::Overflow { since, .. } => (*since, SystemTime::UNIX_EPOCH),
        _ => (SystemTime::UNIX_EPOCH, SystemTime::UNIX_EPOCH),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::tests::{at, blocked, tcp, web};
    use crate::audit::record::Who;

    fn attempt(secs: u64, port: u16) -> Blocked {
        Blocked { at: at(secs), ..blocked(tcp("172.18.0.2", "203.0.113.7", port), Who::Container(web())) }
    }

    fn texts(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.text().split_once(' ').unwrap().1.to_string()).collect()
    }

    #[test]
    fn a_burst_is_its_first_attempt_then_one_summary_per_window() {
        let mut b = Bursts::new(Limits::default());
        assert!(matches!(b.add(attempt(0, 4444)), Some(Record::Attempt(_))));
        for i in 1..=4211 {
            assert_eq!(b.add(Blocked { at: at(0) + Duration::from_millis(i), ..attempt(0, 4444) }), None);
        }
        assert!(b.tick(at(9)).is_empty(), "the window is still open");
        assert_eq!(texts(&b.tick(at(10))), ["…and 4,211 more from ctf-web-1 to 203.0.113.7:4444/tcp in 10 s"]);
        // It goes on in the next window, then stops.
        for s in 11..15 {
            assert_eq!(b.add(attempt(s, 4444)), None);
        }
        assert_eq!(texts(&b.tick(at(20))), ["…and 4 more from ctf-web-1 to 203.0.113.7:4444/tcp in 10 s"]);
        assert!(b.tick(at(30)).is_empty());
        assert!(b.is_empty(), "a quiet window ends the burst");
        assert!(matches!(b.add(attempt(31, 4444)), Some(Record::Attempt(_))), "printed again");
    }

    #[test]
    fn a_lone_attempt_leaves_no_summary() {
        let mut b = Bursts::new(Limits::default());
        assert!(b.add(attempt(0, 80)).is_some());
        assert!(b.add(attempt(0, 81)).is_some(), "another port is another burst");
        assert!(b.tick(at(10)).is_empty());
        assert!(b.flush(at(11)).is_empty());
    }

    #[test]
    fn another_container_on_the_same_address_is_another_burst() {
        let mut b = Bursts::new(Limits::default());
        assert!(b.add(attempt(0, 4444)).is_some());
        let mut next = web();
        next.id = "9".repeat(64);
        next.name = "ctf-web-2".into();
        let from_next = Blocked { who: Who::Container(next), ..attempt(1, 4444) };
        assert!(matches!(b.add(from_next), Some(Record::Attempt(r)) if r.who.identity().unwrap().name == "ctf-web-2"));
    }

    #[test]
    fn a_scan_is_bounded_by_the_rate_of_new_bursts() {
        let limits = Limits { burst: 10.0, per_second: 2.0, ..Limits::default() };
        let mut b = Bursts::new(limits);
        // 10,000 ports in the first second, one attempt each.
        let printed = (0..10_000u16).filter(|&p| b.add(attempt(0, 1 + p)).is_some()).count();
        assert_eq!(printed, 10);
        // Two more tokens a second later.
        assert!(b.add(attempt(1, 20_000)).is_some() && b.add(attempt(1, 20_001)).is_some());
        assert!(b.add(attempt(1, 20_002)).is_none());
        let out = texts(&b.tick(at(10)));
        assert_eq!(
            out,
            ["…and 9,991 more attempts from 1 source(s) to 9,991 destination(s) in 10 s, too many to list one by one"]
        );
        assert!(b.len() <= 12);
    }

    #[test]
    fn flush_says_what_is_still_open() {
        let mut b = Bursts::new(Limits::default());
        b.add(attempt(0, 4444));
        b.add(attempt(2, 4444));
        b.add(attempt(3, 4444));
        let out = b.flush(at(4));
        assert_eq!(texts(&out), ["…and 2 more from ctf-web-1 to 203.0.113.7:4444/tcp in 4 s"]);
        assert!(matches!(out[0], Record::Summary { last, .. } if last == at(3)));
        assert!(b.is_empty());
    }

    #[test]
    fn the_number_of_bursts_followed_is_bounded() {
        let limits = Limits { burst: 1e9, max_bursts: 100, ..Limits::default() };
        let mut b = Bursts::new(limits);
        let printed = (0..1000u16).filter(|&p| b.add(attempt(0, 1 + p)).is_some()).count();
        assert_eq!((printed, b.len()), (100, 100));
    }
}
