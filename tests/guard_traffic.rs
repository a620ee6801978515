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
    let status = dh.egress_guard_ok("status", &["--json"]);
    assert!(status.contains("\"verdict\":\"in place\""), "{status}");
    let counted: u64 = status
        .split("\"packets\":")
        .skip(1)
        .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap_or("0").parse::<u64>().unwrap_or(0))
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
