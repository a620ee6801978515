//! The paths a scenario judges by, each probed several ways at once (busybox inside the
//! container, and the harness's probes from its namespace, which add UDP and exact outcomes),
//! with every mismatch reported together.

use std::net::{IpAddr, SocketAddr};

use crate::harness::{EchoServers, Outcome, Probe, HOST_V4, HOST_V6, INTERNET_V4, INTERNET_V6, SERVICE_PORT};
use crate::Container;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The internet namespace's address (echo on TCP and UDP 80 and 53).
    pub fn internet(self) -> IpAddr {
        match self {
            Family::V4 => INTERNET_V4.into(),
            Family::V6 => INTERNET_V6.into(),
        }
    }

    /// dockerd's uplink address, where published ports are reached from the internet.
    pub fn host(self) -> IpAddr {
        match self {
            Family::V4 => HOST_V4.into(),
            Family::V6 => HOST_V6.into(),
        }
    }

    /// `c`'s address in this family.
    pub fn of(self, c: &Container) -> IpAddr {
        match self {
            Family::V4 => c.v4.into(),
            Family::V6 => c.v6().into(),
        }
    }
}

/// One probe of a path and what it found.
pub struct Seen {
    pub what: String,
    pub outcome: Outcome,
}

/// A probe to make: busybox in the container, or the harness from its namespace.
enum Way {
    Nc(SocketAddr),
    Ping(IpAddr),
    Harness(Probe),
}

/// From `c` to `to`: TCP by busybox nc and by the harness, UDP by the harness, ICMP echo by
/// busybox ping and by the harness. `to` must echo on TCP and UDP port 80.
pub fn every_way(c: &Container, to: IpAddr) -> Vec<Seen> {
    let port = SocketAddr::new(to, SERVICE_PORT);
    let ways = [
        Way::Nc(port),
        Way::Harness(Probe::tcp(port)),
        Way::Harness(Probe::udp(port)),
        Way::Ping(to),
        Way::Harness(Probe::ping(to)),
    ];
    std::thread::scope(|scope| {
        let running: Vec<_> = ways
            .iter()
            .map(|way| {
                scope.spawn(move || match way {
                    Way::Nc(to) => Seen { what: format!("{}: busybox nc {to}", c.name), outcome: c.nc(*to) },
                    Way::Ping(to) => Seen { what: format!("{}: busybox ping {to}", c.name), outcome: c.ping(*to) },
                    Way::Harness(p) => Seen { what: format!("{}: {p}", c.name), outcome: c.probe(*p) },
                })
            })
            .collect();
        running.into_iter().map(|t| t.join().expect("probe thread")).collect()
    })
}

/// Egress from each of `containers` to the internet in `family`, every way, all at once.
pub fn egress(containers: &[&Container], family: Family) -> Vec<Seen> {
    std::thread::scope(|scope| {
        let running: Vec<_> = containers.iter().map(|c| scope.spawn(move || every_way(c, family.internet()))).collect();
        running.into_iter().flat_map(|t| t.join().expect("probe thread")).collect()
    })
}

/// Gives `c` a UDP echo on port 80 in `family` (its busybox nc serves TCP only).
pub fn udp_echo(servers: &mut EchoServers, c: &Container, family: Family) {
    servers.udp(&c.netns, SocketAddr::new(family.of(c), SERVICE_PORT));
}

/// Panics listing every path that is not `open` (true) or closed (false), with `context`.
pub fn assert_all(seen: &[Seen], open: bool, context: &str) {
    let wrong: Vec<String> =
        seen.iter().filter(|s| s.outcome.is_open() != open).map(|s| format!("  {}: {}", s.what, s.outcome)).collect();
    let want = if open { "open" } else { "closed" };
    assert!(wrong.is_empty(), "{context}: {} of {} paths not {want}:\n{}", wrong.len(), seen.len(), wrong.join("\n"));
}
