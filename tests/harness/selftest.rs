//! Tests of the harness itself: cleanup on panic, the address guard, stale-name detection, floods.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::addrs::*;
use super::{DockerHost, Flood, Netns};

#[test]
fn probes_only_aim_at_test_networks() {
    let ours: [IpAddr; 5] = [INTERNET_V4.into(), INTERNET_V6.into(), C3_V4.into(), C2_V6.into(), HOST_V4.into()];
    assert!(ours.into_iter().all(is_test_destination));
    let foreign = ["198.51.101.1", "172.19.0.2", "8.8.8.8", "2001:db8:0:1::2", "fd00:19::2", "172.16.99.2"];
    for ip in foreign {
        assert!(!is_test_destination(ip.parse().unwrap()), "{ip} must be refused");
    }
}

#[test]
fn a_panicking_test_leaves_no_namespace_behind() {
    super::require_kernel!();
    let mut names = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let dh = DockerHost::new();
        names = [&dh.host, &dh.internet, &dh.c1, &dh.c2, &dh.c3].map(|ns| ns.path()).to_vec();
        panic!("deliberate failure inside a test");
    }));
    assert!(result.is_err());
    assert_eq!(names.len(), 5);
    let left: Vec<_> = names.iter().filter(|path| path.exists()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_namespace_of_a_dead_process_is_swept() {
    super::require_kernel!();
    // pid_max is at most 2^22, so this pid never names a live process.
    let stale = Path::new("/run/netns/eg-4194305-1-stale");
    let _ = std::process::Command::new("ip").args(["netns", "add", "eg-4194305-1-stale"]).status();
    assert!(stale.exists());
    super::netns::sweep_stale();
    assert!(!stale.exists(), "{} was not swept", stale.display());
}

#[test]
fn a_short_flood_gets_through_an_open_path() {
    super::require_kernel!();
    let dh = DockerHost::new();
    let to = SocketAddr::new(INTERNET_V4.into(), SERVICE_PORT);
    let report = Flood::new(200, Duration::from_secs(1)).run(&dh.c1, to);
    assert_eq!(report.attempts, 200, "{report:?}");
    assert_eq!(report.through, 200, "{report:?}");
}

#[test]
fn a_short_flood_counts_rejected_attempts() {
    super::require_kernel!();
    let dh = DockerHost::new();
    dh.host.run(&["iptables", "-I", "FORWARD", "-i", "docker0", "-j", "REJECT"]);
    let to = SocketAddr::new(INTERNET_V4.into(), SERVICE_PORT);
    let report = Flood::new(200, Duration::from_secs(1)).run(&dh.c1, to);
    assert_eq!((report.attempts, report.refused), (200, 200), "{report:?}");
}

#[test]
fn a_namespace_runs_commands_and_sysctls_inside() {
    super::require_kernel!();
    let ns = Netns::new("selftest");
    // Read through the thread that entered, and through `ip netns exec`: both see our setting.
    let key = "net.ipv4.ping_group_range";
    assert_eq!(ns.read_sysctl(key), "0\t0");
    let via_exec = ns.run(&["cat", "/proc/sys/net/ipv4/ping_group_range"]);
    assert_eq!(via_exec.trim(), "0\t0");
    let links = ns.run(&["ip", "-o", "link", "show"]);
    assert_eq!(links.lines().count(), 1, "a fresh namespace has only lo: {links}");
    assert!(ns.path().exists());
}
