//! The traffic matrix every guard must pass: egress from the containers closed (or, without a
//! guard, open), and the paths no guard may close: published ports from the internet and from a
//! LAN client, and traffic between containers of one network.

use std::net::IpAddr;

use super::addrs::*;
use super::docker_host::DockerHost;
use super::expect::{expect_all, Expect};
use super::netns::Netns;
use super::probe::Probe;

/// Container → internet, every protocol, both families.
pub fn egress(from: &Netns, want_open: bool) -> Vec<Expect<'_>> {
    let servers: [IpAddr; 2] = [INTERNET_V4.into(), INTERNET_V6.into()];
    let probes = servers
        .into_iter()
        .flat_map(|ip| [Probe::tcp((ip, SERVICE_PORT)), Probe::udp((ip, DNS_PORT)), Probe::ping(ip)]);
    probes.map(|p| if want_open { Expect::open(from, p) } else { Expect::closed(from, p) }).collect()
}

/// Inbound and same-network paths that no guard may close.
pub fn must_stay_open(dh: &DockerHost) -> Vec<Expect<'_>> {
    let mut table = vec![
        Expect::open(&dh.internet, Probe::tcp((HOST_V4, PUBLISHED_PORT))),
        Expect::open(&dh.internet, Probe::tcp((HOST_V6, PUBLISHED_PORT))),
        // A LAN client inside 172.16.0.0/12: the naive `-s 172.16.0.0/12 -j REJECT` recipe breaks it.
        Expect::open(&dh.internet, Probe::tcp((HOST_V4, PUBLISHED_PORT)).from(LAN_CLIENT_V4)),
    ];
    // Between two containers of one network, both ways.
    let pairs = [(&dh.c1, [IpAddr::from(C2_V4), C2_V6.into()]), (&dh.c2, [C1_V4.into(), C1_V6.into()])];
    for (from, peer) in pairs {
        for ip in peer {
            table.push(Expect::open(from, Probe::tcp((ip, SERVICE_PORT))));
            table.push(Expect::open(from, Probe::udp((ip, SERVICE_PORT))));
            table.push(Expect::open(from, Probe::ping(ip)));
        }
    }
    table
}

/// The whole matrix: egress from both bridges as `egress_open` says, the rest always open.
pub fn matrix(dh: &DockerHost, egress_open: bool) {
    let mut table = egress(&dh.c1, egress_open);
    table.extend(egress(&dh.c3, egress_open));
    table.extend(must_stay_open(dh));
    expect_all(&table);
}
