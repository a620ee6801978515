//! Every policy knob proven with real traffic on the emulated Docker host: the allow-list, each
//! reject mode (told apart by what the container's kernel counted: a TCP reset, an ICMP error,
//! or nothing), subnet-only and bridge-limited policies, and rate-limited logging.

use std::net::IpAddr;
use std::time::Duration;

use crate::harness::{self, *};

/// A counter from the namespace's /proc/net/snmp (IPv4) or snmp6 (IPv6), e.g. ("Icmp", "InDestUnreachs").
fn snmp(ns: &Netns, family_v6: bool, key: &str) -> u64 {
    if family_v6 {
        let text = ns.run(&["cat", "/proc/net/snmp6"]);
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(key)).expect("snmp6 key");
        return line.split_whitespace().nth(1).unwrap().parse().unwrap();
    }
    let (group, field) = key.split_once(':').expect("Group:Field");
    let text = ns.run(&["cat", "/proc/net/snmp"]);
    let mut lines = text.lines().filter(|l| l.starts_with(&format!("{group}:")));
    let names: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let values: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let at = names.iter().position(|n| *n == field).expect("snmp field");
    values[at].parse().unwrap()
}

/// ICMP destination-unreachable messages the container has received so far, per family.
fn icmp_unreach(ns: &Netns) -> (u64, u64) {
    (snmp(ns, false, "Icmp:InDestUnreachs"), snmp(ns, true, "Icmp6InDestUnreachs"))
}

#[test]
fn only_the_allowed_resolver_answers() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    let resolver_v4 = format!("{INTERNET_V4}:{DNS_PORT}/udp");
    let resolver_v6 = format!("[{INTERNET_V6}]:{DNS_PORT}/udp");
    dh.egress_guard_ok("apply", &["--allow", &resolver_v4, "--allow", &resolver_v6]);
    let mut table = Vec::new();
    for ip in [IpAddr::from(INTERNET_V4), INTERNET_V6.into()] {
        table.push(Expect::open(&dh.c1, Probe::udp((ip, DNS_PORT))));
        table.push(Expect::open(&dh.c3, Probe::udp((ip, DNS_PORT))));
        // Same address, other protocol or port: refused.
        table.push(Expect::closed(&dh.c1, Probe::tcp((ip, DNS_PORT))));
        table.push(Expect::closed(&dh.c1, Probe::udp((ip, SERVICE_PORT))));
        table.push(Expect::closed(&dh.c1, Probe::ping(ip)));
    }
    expect_all(&table);
}

#[test]
fn tcp_reset_refuses_tcp_by_reset_and_udp_by_icmp() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    dh.egress_guard_ok("apply", &["--reject-with", "tcp-reset"]);
    let refused = Outcome::Closed(Closed::Refused);
    for (ip, v6) in [(IpAddr::from(INTERNET_V4), false), (INTERNET_V6.into(), true)] {
        let before = icmp_unreach(&dh.c1);
        assert_eq!(Probe::tcp((ip, SERVICE_PORT)).run_in(&dh.c1), refused, "{ip}");
        assert_eq!(icmp_unreach(&dh.c1), before, "{ip}: TCP was refused by ICMP, not by a reset");
        assert_eq!(Probe::udp((ip, DNS_PORT)).run_in(&dh.c1), refused, "{ip}");
        let after = icmp_unreach(&dh.c1);
        let grew = if v6 { after.1 > before.1 } else { after.0 > before.0 };
        assert!(grew, "{ip}: UDP was not refused by ICMP port unreachable");
    }
}

#[test]
fn port_unreachable_refuses_tcp_by_icmp() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    dh.egress_guard_ok("apply", &[]);
    let before = icmp_unreach(&dh.c1);
    assert_eq!(Probe::tcp((INTERNET_V4, SERVICE_PORT)).run_in(&dh.c1), Outcome::Closed(Closed::Refused));
    assert!(icmp_unreach(&dh.c1).0 > before.0, "the default answers TCP with ICMP port unreachable");
}

#[test]
fn admin_prohibited_and_drop_behave_as_named() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    dh.egress_guard_ok("apply", &["--reject-with", "admin-prohibited"]);
    let unreachable = Outcome::Closed(Closed::Unreachable);
    let mut table = Vec::new();
    for ip in [IpAddr::from(INTERNET_V4), INTERNET_V6.into()] {
        table.push(Expect::exactly(&dh.c1, Probe::tcp((ip, SERVICE_PORT)), unreachable));
        table.push(Expect::exactly(&dh.c1, Probe::udp((ip, DNS_PORT)), unreachable));
    }
    expect_all(&table);

    dh.egress_guard_ok("apply", &["--reject-with", "drop"]);
    let quick = Duration::from_millis(400);
    let before = icmp_unreach(&dh.c1);
    let timeout = Outcome::Closed(Closed::Timeout);
    let mut table = Vec::new();
    for ip in [IpAddr::from(INTERNET_V4), INTERNET_V6.into()] {
        table.push(Expect::exactly(&dh.c1, Probe::tcp((ip, SERVICE_PORT)).timeout(quick), timeout));
        table.push(Expect::exactly(&dh.c1, Probe::udp((ip, DNS_PORT)).timeout(quick), timeout));
    }
    expect_all(&table);
    assert_eq!(icmp_unreach(&dh.c1), before, "drop must not answer with ICMP");
    // Inbound still works under drop.
    assert!(Probe::tcp((HOST_V4, PUBLISHED_PORT)).run_in(&dh.internet).is_open());
}

#[test]
fn subnet_only_policy_guards_its_subnet_and_keeps_it_open_inside() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    dh.egress_guard_ok("apply", &["--subnet", "172.17.0.0/16", "--subnet", "fd00:17::/64"]);
    let mut table = Vec::new();
    for (inet, c2) in [(IpAddr::from(INTERNET_V4), IpAddr::from(C2_V4)), (INTERNET_V6.into(), C2_V6.into())] {
        table.push(Expect::closed(&dh.c1, Probe::tcp((inet, SERVICE_PORT))));
        table.push(Expect::closed(&dh.c1, Probe::udp((inet, DNS_PORT))));
        table.push(Expect::open(&dh.c1, Probe::tcp((c2, SERVICE_PORT))));
        // c3's network is not in the policy.
        table.push(Expect::open(&dh.c3, Probe::tcp((inet, SERVICE_PORT))));
    }
    table.push(Expect::open(&dh.internet, Probe::tcp((HOST_V4, PUBLISHED_PORT)).from(LAN_CLIENT_V4)));
    table.push(Expect::open(&dh.internet, Probe::tcp((HOST_V6, PUBLISHED_PORT))));
    expect_all(&table);
}

#[test]
fn iface_limited_to_user_networks_leaves_docker0_open() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    dh.egress_guard_ok("apply", &["--iface", "br-+"]);
    let mut table = Vec::new();
    for ip in [IpAddr::from(INTERNET_V4), INTERNET_V6.into()] {
        table.push(Expect::open(&dh.c1, Probe::tcp((ip, SERVICE_PORT))));
        table.push(Expect::closed(&dh.c3, Probe::tcp((ip, SERVICE_PORT))));
        table.push(Expect::closed(&dh.c3, Probe::udp((ip, DNS_PORT))));
    }
    expect_all(&table);
}

/// Packets counted by the first rule of ours whose `iptables -S` line contains `needle`.
fn rule_packets(dh: &DockerHost, iptables: &str, needle: &str) -> u64 {
    let out = dh.host.run(&[iptables, "-L", "DOCKER-USER", "-v", "-n", "-x"]);
    let line = out.lines().find(|l| l.contains(needle) && l.contains("egress-guard")).expect("our rule");
    line.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn blocked_attempts_are_logged_within_the_rate_limit() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    // Burst 5, then one per minute: a test of a few seconds can see at most 5 + 1 entries.
    dh.egress_guard_ok("apply", &["--log=egress: ", "--log-to", "kernel", "--log-rate", "1/minute"]);
    let udp = |port| Probe::udp((INTERNET_V4, port)).timeout(Duration::from_millis(200));
    for round in 0..20u16 {
        assert!(!udp(1000 + round).run_in(&dh.c1).is_open());
    }
    let logged = rule_packets(&dh, "iptables", " LOG ");
    let rejected = rule_packets(&dh, "iptables", "REJECT");
    assert!((1..=6).contains(&logged), "logged {logged} of 20 attempts (burst 5, 1/minute)");
    assert!(rejected >= 20, "rejected {rejected}");

    // NFLOG instead of the kernel log: the rule is native `log group`, still iptables-readable,
    // and its prefix says what follows.
    dh.egress_guard_ok("apply", &["--nflog-group", "7"]);
    let rules = dh.host.run(&["iptables", "-S", "DOCKER-USER"]);
    assert!(rules.contains("-j NFLOG --nflog-prefix \"egress-guard: port-unreachable\" --nflog-group 7"), "{rules}");
    assert!(!udp(2000).run_in(&dh.c1).is_open());
    assert!(rule_packets(&dh, "iptables", "NFLOG") >= 1);
}

#[test]
fn dry_run_prints_what_apply_then_writes() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    let args = [
        "--allow",
        "198.51.100.2:53/udp",
        "--reject-with",
        "tcp-reset",
        "--log",
        "--subnet",
        "172.17.0.0/16",
        "--iface",
        "docker0",
    ];
    let before = dh.host.run(&["nft", "--stateless", "--handle", "list", "ruleset"]);
    let mut dry = vec!["--dry-run"];
    dry.extend(args);
    let planned = dh.egress_guard_ok("apply", &dry);
    assert_eq!(
        dh.host.run(&["nft", "--stateless", "--handle", "list", "ruleset"]),
        before,
        "dry run changed the ruleset"
    );
    dh.egress_guard_ok("apply", &args);
    for (family, ipt) in [("ip", "iptables"), ("ip6", "ip6tables")] {
        let section = dry_run_lines(&planned, &format!("{family} filter DOCKER-USER"));
        let written: Vec<String> = dh
            .host
            .run(&[ipt, "-S", "DOCKER-USER"])
            .lines()
            .filter(|l| l.contains("egress-guard"))
            .map(String::from)
            .collect();
        assert!(!written.is_empty(), "{ipt}");
        assert_eq!(section, written, "{ipt}: dry run and iptables -S differ");
    }
}
