//! What a lookup grants (pure): the addresses an answer gave, for the ports the allow-list
//! opens, for as long as the clamped TTL says; the trait through which the grants reach the
//! kernel; and the cache that spares a busy forwarder a commit per lookup. The clock is an
//! argument, so all of it is tested without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::names::Reach;
use crate::net::Proto;

/// One destination a container may now open connections to, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Grant {
    /// `None`: every guarded container (the name is allowed to all); otherwise only this source
    /// address (the name is allowed to the container that holds it), of the same family.
    pub from: Option<IpAddr>,
    pub addr: IpAddr,
    /// `None`: every port; otherwise one port of one protocol (`--allow-domain NAME:PORT/PROTO`).
    pub port: Option<(u16, Proto)>,
    /// How long the kernel keeps the element (its `timeout`).
    pub timeout: Duration,
}

/// Puts grants into the kernel. `allow` returns once the kernel has acknowledged them: the
/// forwarder releases the answer to the client only after that, so that the client's first
/// connection finds its destination open.
pub trait Allower: Send {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Adds `commit.add` and extends `commit.extend`, all of them or none (each grant says
    /// whom it is for).
    fn allow(&mut self, commit: &Commit) -> Result<(), Self::Error>;
}

/// How grant timeouts follow TTLs (`--dns-min-ttl`, `--dns-max-ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// No grant is shorter: clients that cache a little longer than the TTL (Java caches 30 s
    /// whatever the TTL) or connect a little late still find the address open, and a TTL of 0
    /// still opens the address for the connection that follows the lookup.
    pub min: Duration,
    /// No grant is longer, however long the TTL.
    pub max: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes { min: Duration::from_secs(60), max: Duration::from_secs(24 * 3600) }
    }
}

impl Lifetimes {
    /// The grant for an answer's TTL.
    pub fn for_ttl(&self, ttl: u32) -> Duration {
        Duration::from_secs(u64::from(ttl)).clamp(self.min, self.max.max(self.min))
    }
}

/// The grants for the addresses of one answer: each address for each port the allow-list
/// opens for the name.
pub fn grants(addresses: &[(IpAddr, u32)], reach: &Reach, lifetimes: &Lifetimes) -> Vec<Grant> {
    let ports: Vec<Option<(u16, Proto)>> = match reach {
        Reach::Any => vec![None],
        Reach::Ports(ports) => ports.iter().copied().map(Some).collect(),
    };
    let mut out = Vec::with_capacity(addresses.len() * ports.len());
    for &(addr, ttl) in addresses {
        for &port in &ports {
            out.push(Grant { from: None, addr, port, timeout: lifetimes.for_ttl(ttl) });
        }
    }
    out
}

/// The grants for a name allowed to one container only: each of `grants` from each of the
/// container's addresses of the destination's family (an AAAA asked over IPv4 opens the
/// destination to the container's IPv6 address).
pub fn from_sources(grants: &[Grant], sources: &[IpAddr]) -> Vec<Grant> {
    let mut out = Vec::new();
    for g in grants {
        for &src in sources.iter().filter(|s| s.is_ipv4() == g.addr.is_ipv4()) {
            out.push(Grant { from: Some(src), ..*g });
        }
    }
    out
}

/// What one lookup has to commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    /// Grants to add: not in the kernel as far as we know (or about to expire there).
    pub add: Vec<Grant>,
    /// Grants in the kernel with too little time left: to extend. A kernel before 6.x ignores
    /// a re-added element's new timeout, so the allower replaces these (delete and add in one
    /// batch).
    pub extend: Vec<Grant>,
}

impl Commit {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.extend.is_empty()
    }

    pub fn all(&self) -> impl Iterator<Item = &Grant> {
        self.add.iter().chain(&self.extend)
    }
}

/// What a grant opens: (to whom, where, which port), its timeout aside.
type Destination = (Option<IpAddr>, IpAddr, Option<(u16, Proto)>);

/// When each granted destination runs out in the kernel, as far as our own commits say.
///
/// A grant that still has the time a lookup asks for needs no commit. When one does, it is
/// committed with a quarter more than asked, so that a name looked up all the time is
/// committed about once per quarter of its lifetime, not once per lookup.
#[derive(Debug)]
pub struct GrantCache {
    expiry: HashMap<Destination, Instant>,
    capacity: usize,
}

/// An element this close to its end may be gone by the time a batch reaches the kernel:
/// treat it as gone (add it, do not delete it).
const EXPIRY_MARGIN: Duration = Duration::from_secs(1);

impl GrantCache {
    /// A cache of at most `capacity` destinations (bounded memory whatever the answers hold).
    pub fn new(capacity: usize) -> GrantCache {
        GrantCache { expiry: HashMap::new(), capacity: capacity.max(1) }
    }

    pub fn len(&self) -> usize {
        self.expiry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.expiry.is_empty()
    }

    /// What to commit so that every grant holds at least its timeout from `now`; timeouts in
    /// the result carry the headroom.
    pub fn plan(&self, now: Instant, wanted: &[Grant]) -> Commit {
        let mut commit = Commit::default();
        for grant in wanted {
            let until = now + grant.timeout;
            let with_headroom = Grant { timeout: grant.timeout + grant.timeout / 4, ..*grant };
            match self.expiry.get(&(grant.from, grant.addr, grant.port)) {
                Some(&end) if end >= until => {}
                Some(&end) if end > now + EXPIRY_MARGIN => commit.extend.push(with_headroom),
                _ => commit.add.push(with_headroom),
            }
        }
        commit.add.dedup();
        commit.extend.dedup();
        commit
    }

    /// Records a commit the kernel acknowledged at (about) `now`.
    pub fn committed(&mut self, now: Instant, commit: &Commit) {
        if self.expiry.len() + commit.add.len() > self.capacity {
            self.expiry.retain(|_, end| *end > now + EXPIRY_MARGIN);
        }
        if self.expiry.len() + commit.add.len() > self.capacity {
            // Still full of live grants: forget them all. The cost is commits we could have
            // spared; an element we forgot is added again, which the kernel takes as a no-op
            // or an update, never as an error.
            self.expiry.clear();
        }
        for grant in commit.all() {
            let end = now + grant.timeout;
            let slot = self.expiry.entry((grant.from, grant.addr, grant.port)).or_insert(end);
            *slot = (*slot).max(end);
        }
    }

    /// Forgets everything, e.g. after the kernel refused a batch: what it holds is unknown.
    pub fn clear(&mut self) {
        self.expiry.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([198, 51, 100, last])
    }

    #[test]
    fn ttls_are_clamped() {
        let l = Lifetimes { min: secs(60), max: secs(3600) };
        assert_eq!(
            [0, 59, 60, 300, 3600, 86400, u32::MAX].map(|t| l.for_ttl(t).as_secs()),
            [60, 60, 60, 300, 3600, 3600, 3600]
        );
        // A max below the min: the min wins, never a panic in clamp.
        let odd = Lifetimes { min: secs(10), max: secs(5) };
        assert_eq!(odd.for_ttl(1), secs(10));
    }

    #[test]
    fn each_address_for_each_port() {
        let l = Lifetimes { min: secs(1), max: secs(100) };
        let addrs = [(ip(1), 30), (ip(2), 500)];
        let any = grants(&addrs, &Reach::Any, &l);
        assert_eq!(
            any,
            [
                Grant { from: None, addr: ip(1), port: None, timeout: secs(30) },
                Grant { from: None, addr: ip(2), port: None, timeout: secs(100) }
            ]
        );
        // Allowed to one container: from each of its addresses of the destination's family.
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let both = grants(&[(ip(1), 30), (v6, 30)], &Reach::Any, &l);
        let c4: IpAddr = "172.17.0.2".parse().unwrap();
        let c6: IpAddr = "fd00::2".parse().unwrap();
        let from = from_sources(&both, &[c4, c6]);
        assert_eq!(from.iter().map(|g| (g.from, g.addr)).collect::<Vec<_>>(), [(Some(c4), ip(1)), (Some(c6), v6)]);
        assert!(from_sources(&both[1..], &[c4]).is_empty(), "no IPv6 address: no IPv6 grant");
        let two = Reach::Ports(vec![(80, Proto::Tcp), (443, Proto::Tcp)]);
        let g = grants(&addrs[..1], &two, &l);
        assert_eq!(g.iter().map(|g| g.port).collect::<Vec<_>>(), [Some((80, Proto::Tcp)), Some((443, Proto::Tcp))]);
    }

    #[test]
    fn a_grant_with_time_left_needs_no_commit() {
        let t0 = Instant::now();
        let mut cache = GrantCache::new(100);
        let g = Grant { from: None, addr: ip(1), port: None, timeout: secs(60) };
        let first = cache.plan(t0, &[g]);
        assert_eq!(first, Commit { add: vec![Grant { timeout: secs(75), ..g }], extend: vec![] });
        cache.committed(t0, &first);
        // Within the headroom: nothing to do, however often the name is looked up.
        for s in [0, 1, 10, 15] {
            assert!(cache.plan(t0 + secs(s), &[g]).is_empty(), "at {s} s");
        }
        // Past it, the grant is extended (it is still in the kernel).
        let later = cache.plan(t0 + secs(16), &[g]);
        assert_eq!(later.extend, [Grant { timeout: secs(75), ..g }]);
        cache.committed(t0 + secs(16), &later);
        assert!(cache.plan(t0 + secs(30), &[g]).is_empty());
        // Long after it ran out: added anew, not extended (the kernel has dropped it).
        let gone = cache.plan(t0 + secs(200), &[g]);
        assert_eq!((gone.add.len(), gone.extend.len()), (1, 0));
    }

    #[test]
    fn nearly_expired_counts_as_gone() {
        let t0 = Instant::now();
        let mut cache = GrantCache::new(100);
        let g = Grant { from: None, addr: ip(1), port: None, timeout: secs(4) };
        let c = cache.plan(t0, &[g]);
        cache.committed(t0, &c); // runs out at t0 + 5 s
        let at = t0 + secs(5) - Duration::from_millis(500);
        assert_eq!(cache.plan(at, &[g]).add.len(), 1);
    }

    #[test]
    fn a_grant_to_one_container_is_not_a_grant_to_all() {
        let t0 = Instant::now();
        let mut cache = GrantCache::new(100);
        let c: IpAddr = "172.17.0.2".parse().unwrap();
        let one = Grant { from: Some(c), addr: ip(1), port: None, timeout: secs(60) };
        let commit = cache.plan(t0, &[one]);
        cache.committed(t0, &commit);
        let all = Grant { from: None, ..one };
        assert_eq!(cache.plan(t0, &[one, all]).add, [Grant { timeout: secs(75), ..all }]);
        let other = Grant { from: Some("172.17.0.3".parse().unwrap()), ..one };
        assert_eq!(cache.plan(t0, &[other]).add.len(), 1);
    }

    #[test]
    fn ports_are_separate_destinations() {
        let t0 = Instant::now();
        let mut cache = GrantCache::new(100);
        let web = Grant { from: None, addr: ip(1), port: Some((443, Proto::Tcp)), timeout: secs(60) };
        let c = cache.plan(t0, &[web]);
        cache.committed(t0, &c);
        let any = Grant { port: None, ..web };
        assert_eq!(cache.plan(t0, &[web, any]).add, [Grant { timeout: secs(75), ..any }]);
    }

    #[test]
    fn memory_stays_bounded() {
        let t0 = Instant::now();
        let mut cache = GrantCache::new(50);
        for i in 0..1000u32 {
            let g = Grant { from: None, addr: IpAddr::from(i.to_be_bytes()), port: None, timeout: secs(60) };
            let c = cache.plan(t0, &[g]);
            cache.committed(t0, &c);
            assert!(cache.len() <= 50);
        }
    }
}
