//! Baseline without any guard: every path of the emulated Docker host is open, and the probes
//! do see a path that a plain firewall rule closes (so "closed" in other tests means something).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::harness::{self, *};

#[test]
fn without_a_guard_every_path_is_open() {
    harness::require_kernel!();
    matrix(&DockerHost::new(), true);
}

/// Inserts `rule` (`-I FORWARD …`) in both families, then expects every kind of path to show
/// `outcome`: egress by TCP, UDP and ping, the published port, and same-bridge traffic (which
/// crosses FORWARD because br_netfilter is on). Bridged IPv6 is only expected to be closed:
/// the kernel sends no ICMPv6 error when ip6tables REJECTs a bridged frame, so it times out.
fn blocked_paths_show(v4_rule: &str, v6_rule: &str, outcome: Outcome, timeout: Duration) {
    let dh = DockerHost::new();
    for (iptables, rule) in [("iptables", v4_rule), ("ip6tables", v6_rule)] {
        let mut args = vec![iptables, "-I", "FORWARD"];
        args.extend(rule.split_whitespace());
        dh.host.run(&args);
    }
    let mut table = Vec::new();
    for (internet, host, c2) in [
        (IpAddr::from(INTERNET_V4), IpAddr::from(HOST_V4), IpAddr::from(C2_V4)),
        (INTERNET_V6.into(), HOST_V6.into(), C2_V6.into()),
    ] {
        table.push(Expect::exactly(&dh.c1, Probe::tcp((internet, SERVICE_PORT)).timeout(timeout), outcome));
        table.push(Expect::exactly(&dh.c1, Probe::udp((internet, DNS_PORT)).timeout(timeout), outcome));
        table.push(Expect::exactly(&dh.c1, Probe::ping(internet).timeout(timeout), outcome));
        let published = SocketAddr::new(host, PUBLISHED_PORT);
        table.push(Expect::exactly(&dh.internet, Probe::tcp(published).timeout(timeout), outcome));
        let same_bridge = Probe::tcp((c2, SERVICE_PORT)).timeout(timeout);
        table.push(match c2 {
            IpAddr::V4(_) => Expect::exactly(&dh.c1, same_bridge, outcome),
            IpAddr::V6(_) => Expect::closed(&dh.c1, same_bridge),
        });
    }
    expect_all(&table);
}

#[test]
fn a_rejected_path_is_seen_as_refused() {
    harness::require_kernel!();
    let refused = Outcome::Closed(Closed::Refused);
    blocked_paths_show("-j REJECT", "-j REJECT", refused, DEFAULT_TIMEOUT);
}

#[test]
fn an_admin_prohibited_path_is_seen_as_unreachable() {
    harness::require_kernel!();
    let v4 = "-j REJECT --reject-with icmp-admin-prohibited";
    let v6 = "-j REJECT --reject-with icmp6-adm-prohibited";
    blocked_paths_show(v4, v6, Outcome::Closed(Closed::Unreachable), DEFAULT_TIMEOUT);
}

#[test]
fn a_dropped_path_is_seen_as_timeout() {
    harness::require_kernel!();
    let timeout = Duration::from_millis(300);
    blocked_paths_show("-j DROP", "-j DROP", Outcome::Closed(Closed::Timeout), timeout);
}
