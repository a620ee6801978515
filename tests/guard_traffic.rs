//! The default guard on the emulated Docker host, proven by packets: egress refused for TCP,
//! UDP and ICMP over both families from both bridges; published ports, LAN clients and
//! same-network traffic untouched; everything open again after `remove`.

use crate::harness::{self, *};

#[test]
fn apply_blocks_egress_and_keeps_inbound_then_remove_reopens() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    dh.egress_guard_ok("apply", &[]);

    matrix(&dh, false);

    // The rejects were counted by our rules: status reads the kernel's counters.
    let status = status_json(&dh.host, &[]);
    assert_eq!(status["verdict"], "in place", "{status}");
    let places = status["places"].as_array().expect("places");
    let counted: u64 = places
        .iter()
        .flat_map(|p| p["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["packets"].as_u64())
        .sum();
    assert!(counted >= 12, "the 12 refused probes were not all counted: {status}");

    dh.egress_guard_ok("remove", &[]);
    matrix(&dh, true);
}

#[test]
fn without_br_netfilter_the_guard_still_holds() {
    harness::require_kernel!();
    let dh = DockerHost::builder().bridge_netfilter(false).build();
    dh.egress_guard_ok("apply", &[]);
    let mut table = egress(&dh.c1, false);
    table.extend(must_stay_open(&dh));
    expect_all(&table);
}

/// Docker 20.10 with IPv6 on: `ip filter DOCKER-USER` exists, `ip6 filter DOCKER-USER` does not
/// (Docker added it in 23.0). `auto` guards IPv4 in DOCKER-USER and IPv6 from our own table, and
/// IPv6 published ports and same-bridge traffic stay open (issue 9).
#[test]
fn auto_decides_per_family_and_guards_ipv6_without_an_ip6_docker_user() {
    harness::require_kernel!();
    let dh = DockerHost::builder().docker_user_v6(DockerUser::Missing).build();
    matrix(&dh, true);
    let out = dh.egress_guard_ok("apply", &[]);
    assert!(out.contains("IPv4: docker-user") && out.contains("IPv6: table"), "{out}");
    matrix(&dh, false);
    assert!(dh.host.run(&["iptables", "-S", "DOCKER-USER"]).contains("egress-guard"));
    let status = status_json(&dh.host, &[]);
    assert_eq!(status["verdict"], "in place", "{status}");
    let places: Vec<&str> = status["places"].as_array().unwrap().iter().filter_map(|p| p["place"].as_str()).collect();
    assert_eq!(places, ["ip filter DOCKER-USER", "inet egress_guard"]);
    assert_eq!(status["places"][1]["families"], serde_json::json!(["ipv6"]));

    // Forced to DOCKER-USER alone, IPv6 egress is open, and check says so: the bridges carry
    // IPv6 addresses, so the missing ip6 chain is required.
    dh.egress_guard_ok("apply", &["--target", "docker-user"]);
    assert!(dh.c1.tcp((INTERNET_V6, SERVICE_PORT)).is_open());
    let out = dh.egress_guard("check", &["--target", "docker-user"]);
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{line}");
    assert_eq!(line.trim(), "drifted: ip6 filter DOCKER-USER: the chain does not exist");
}
