//! The default guard on the emulated Docker host, proven by packets: egress refused for TCP,
//! UDP and ICMP over both families from both bridges; published ports, LAN clients and
//! same-network traffic untouched; everything open again after `remove`.

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

/// Inbound and same-network paths that the guard must never close.
fn must_stay_open(dh: &DockerHost) -> Vec<Expect<'_>> {
    let mut table = vec![
        Expect::open(&dh.internet, Probe::tcp((HOST_V4, PUBLISHED_PORT))),
        Expect::open(&dh.internet, Probe::tcp((HOST_V6, PUBLISHED_PORT))),
        // A LAN client inside 172.16.0.0/12: the naive `-s 172.16.0.0/12 -j REJECT` recipe breaks it.
        Expect::open(&dh.internet, Probe::tcp((HOST_V4, PUBLISHED_PORT)).from(LAN_CLIENT_V4)),
    ];
    for ip in [IpAddr::from(C2_V4), C2_V6.into()] {
        table.push(Expect::open(&dh.c1, Probe::tcp((ip, SERVICE_PORT))));
        table.push(Expect::open(&dh.c1, Probe::udp((ip, SERVICE_PORT))));
        table.push(Expect::open(&dh.c1, Probe::ping(ip)));
    }
    table
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "egress-guard failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn apply_blocks_egress_and_keeps_inbound_then_remove_reopens() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    ok(dh.egress_guard("apply", &[]));

    let mut table = egress(&dh.c1, false);
    table.extend(egress(&dh.c3, false));
    table.extend(must_stay_open(&dh));
    expect_all(&table);

    // The rejects were counted by our rules: status reads the kernel's counters.
    let status = ok(dh.egress_guard("status", &["--json"]));
    assert!(status.contains("\"verdict\":\"in place\""), "{status}");
    assert!(!status.contains("\"packets\":0}]"), "no rejected packet counted: {status}");

    ok(dh.egress_guard("remove", &[]));
    let mut table = egress(&dh.c1, true);
    table.extend(egress(&dh.c3, true));
    table.extend(must_stay_open(&dh));
    expect_all(&table);
}

#[test]
fn without_br_netfilter_the_guard_still_holds() {
    harness::require_kernel!();
    let dh = DockerHost::builder().bridge_netfilter(false).build();
    ok(dh.egress_guard("apply", &[]));
    let mut table = egress(&dh.c1, false);
    table.extend(must_stay_open(&dh));
    expect_all(&table);
}
