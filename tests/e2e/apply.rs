//! `egress-guard apply` against a real dockerd: egress from containers is refused (TCP, UDP,
//! ICMP, both families, docker0 and user-defined networks, also networks created later), while
//! published ports and traffic between containers on one network keep working.
//!
//! Each egress test first proves the path open, so "closed" afterwards is the guard's doing.

use std::net::SocketAddr;

use crate::harness::{EchoServers, Probe, PUBLISHED_PORT, SERVICE_PORT};
use crate::paths::{assert_all, egress, every_way, udp_echo, Family};
use crate::{require_dockerd, Dockerd, Options};

fn blocks_egress(family: Family) {
    let dk = Dockerd::start(Options::default());
    let net = dk.network("egnet");
    let c1 = dk.container("c1").run();
    let c3 = dk.container("c3").network(&net).run();
    assert_all(&egress(&[&c1, &c3], family), true, "before apply");

    let out = dk.egress_guard_ok(&["apply"]);
    eprintln!("egress-guard apply on dockerd {}:\n{out}", dk.version());
    assert_all(&egress(&[&c1, &c3], family), false, "after apply");
}

#[test]
fn apply_blocks_container_egress_v4() {
    require_dockerd!();
    blocks_egress(Family::V4);
}

/// Fails on Docker 20.10 until `auto` covers a family without DOCKER-USER with egress-guard's
/// own table: 20.10 makes ip6 filter chains but no ip6 DOCKER-USER.
#[test]
fn apply_blocks_container_egress_v6() {
    require_dockerd!();
    blocks_egress(Family::V6);
}

fn guards_a_later_network(family: Family) {
    let dk = Dockerd::start(Options::default());
    dk.egress_guard_ok(&["apply"]);
    let net = dk.network("later");
    let c5 = dk.container("c5").network(&net).run();
    let c6 = dk.container("c6").network(&net).run();
    let mut servers = EchoServers::new();
    udp_echo(&mut servers, &c6, family);
    // At once: no apply since the network appeared, and the very first probes are refused.
    assert_all(&egress(&[&c5], family), false, &format!("from {} on {}, created after apply", c5.name, net.bridge));
    assert_all(&every_way(&c5, family.of(&c6)), true, "to its neighbour on the new network");
    // Without the guard the same path is open: it was the guard that closed it.
    dk.egress_guard_ok(&["remove"]);
    assert_all(&egress(&[&c5], family), true, "after remove");
}

#[test]
fn a_network_created_after_apply_is_guarded_at_once_v4() {
    require_dockerd!();
    guards_a_later_network(Family::V4);
}

/// Fails on Docker 20.10 for the reason `apply_blocks_container_egress_v6` does.
#[test]
fn a_network_created_after_apply_is_guarded_at_once_v6() {
    require_dockerd!();
    guards_a_later_network(Family::V6);
}

#[test]
fn published_ports_and_same_network_traffic_stay_open() {
    require_dockerd!();
    let dk = Dockerd::start(Options::default());
    let net = dk.network("egnet");
    let c1 = dk.container("c1").publish(&format!("{PUBLISHED_PORT}:{SERVICE_PORT}")).run();
    let c2 = dk.container("c2").run();
    let c3 = dk.container("c3").network(&net).run();
    let c4 = dk.container("c4").network(&net).run();
    let mut servers = EchoServers::new();
    for family in [Family::V4, Family::V6] {
        for c in [&c2, &c4] {
            udp_echo(&mut servers, c, family);
        }
    }
    let check = |when: &str| {
        for family in [Family::V4, Family::V6] {
            let published = SocketAddr::new(family.host(), PUBLISHED_PORT);
            let seen = Probe::tcp(published).run_in(&dk.internet);
            assert!(seen.is_open(), "{when}: internet to the published port {published}: {seen}");
            assert_all(&every_way(&c1, family.of(&c2)), true, &format!("{when}: c1 to c2 on docker0"));
            assert_all(&every_way(&c3, family.of(&c4)), true, &format!("{when}: c3 to c4 on {}", net.bridge));
        }
    };
    check("before apply");
    dk.egress_guard_ok(&["apply"]);
    check("after apply");
}
