//! The `table` target (issue #5): our own `inet egress_guard` table, proven by packets on the
//! emulated iptables-nft Docker host, on one whose FORWARD has no DOCKER-USER, and on an
//! emulated Docker 29 nftables-backend host; `both`, `auto`, re-apply under a flood, and a
//! 10,000-destination allow-list in one batch.

use std::net::IpAddr;

use crate::harness::{self, *};

/// Container → internet, every protocol, both families.
fn egress<'a>(from: &'a Netns, want_open: bool) -> Vec<Expect<'a>> {
    let servers: [IpAddr; 2] = [INTERNET_V4.into(), INTERNET_V6.into()];
    let probes = servers
        .into_iter()
        .flat_map(|ip| [Probe::tcp((ip, SERVICE_PORT)), Probe::udp((ip, DNS_PORT)), Probe::ping(ip)]);
    probes.map(|p| if want_open { Expect::open(from, p) } else { Expect::closed(from, p) }).collect()
}

/// Inbound and same-network paths that no guard may close.
fn must_stay_open(dh: &DockerHost) -> Vec<Expect<'_>> {
    let mut table = vec![
        Expect::open(&dh.internet, Probe::tcp((HOST_V4, PUBLISHED_PORT))),
        Expect::open(&dh.internet, Probe::tcp((HOST_V6, PUBLISHED_PORT))),
        Expect::open(&dh.internet, Probe::tcp((HOST_V4, PUBLISHED_PORT)).from(LAN_CLIENT_V4)),
    ];
    for ip in [IpAddr::from(C2_V4), C2_V6.into()] {
        table.push(Expect::open(&dh.c1, Probe::tcp((ip, SERVICE_PORT))));
        table.push(Expect::open(&dh.c1, Probe::udp((ip, SERVICE_PORT))));
        table.push(Expect::open(&dh.c1, Probe::ping(ip)));
    }
    table
}

/// The whole matrix: egress from both bridges as `egress_open` says, inbound always open.
fn matrix(dh: &DockerHost, egress_open: bool) {
    let mut table = egress(&dh.c1, egress_open);
    table.extend(egress(&dh.c3, egress_open));
    table.extend(must_stay_open(dh));
    expect_all(&table);
}

#[test]
fn nftables_backend_fixture_is_open_without_a_guard() {
    harness::require_kernel!();
    let dh = DockerHost::builder().nftables_backend().build();
    matrix(&dh, true);
    assert!(dh.host.try_run(&["iptables", "-S", "DOCKER-USER"]).stdout.is_empty());
}
