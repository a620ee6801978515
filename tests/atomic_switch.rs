//! Switching policies is atomic: while a container floods new outbound connections, flipping
//! between two reject modes 200 times lets not one connection through.

use std::time::{Duration, Instant};

use crate::harness::{self, *};

#[test]
fn switching_policies_under_a_flood_leaks_nothing() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    let apply = |how: &str| {
        let out = dh.egress_guard("apply", &["--reject-with", how]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    apply("port-unreachable");
    // The default attempt timeout outlasts TCP's SYN retry, so every refusal is seen as one.
    let run = Flood::new(200, Duration::from_secs(6)).start(&dh.c1, (INTERNET_V4, SERVICE_PORT).into());
    let started = Instant::now();
    for round in 0..200 {
        apply(if round % 2 == 0 { "admin-prohibited" } else { "port-unreachable" });
    }
    let switching = started.elapsed();
    let report = run.wait();
    eprintln!("200 switches in {switching:?} under a flood: {report:?}");
    assert!(report.attempts > 100, "the flood hardly ran: {report:?}");
    // Every attempt was answered by one of the two policies: the path was guarded throughout.
    assert_eq!(report.refused + report.unreachable, report.attempts, "{report:?}");
    assert_eq!(report.through, 0, "connections leaked while switching: {report:?}");
    assert!(switching < Duration::from_secs(6), "the switches outlasted the flood: {switching:?}");
}
