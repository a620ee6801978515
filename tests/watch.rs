//! `watch` heals: after an `iptables -F DOCKER-USER`, a rule deleted by hand or a table deleted
//! with `nft`, the guard is back within moments, foreign rules are kept, and traffic proves it.

use std::time::Duration;

use egress_guard::nft::socket::Netlink;

use crate::harness::{self, *};

fn ours(ns: &Netns, iptables: &str) -> usize {
    ns.run(&[iptables, "-S", "DOCKER-USER"]).matches("egress-guard").count()
}

#[test]
fn watch_heals_a_flush_and_a_deleted_rule_and_keeps_foreign_rules() {
    harness::require_kernel!();
    let ns = docker_user_namespace("watch");
    let _watch = Watch::start(&ns, &[]);
    within("first apply", || ours(&ns, "iptables") == 2 && ours(&ns, "ip6tables") == 2);

    ns.run(&["iptables", "-F", "DOCKER-USER"]);
    let took = within("heal after a flush", || ours(&ns, "iptables") == 2);
    eprintln!("healed a flush in {took:?}");

    ns.run(&["iptables", "-I", "DOCKER-USER", "-s", "203.0.113.5/32", "-j", "ACCEPT"]);
    ns.run(&["ip6tables", "-D", "DOCKER-USER", "2"]);
    within("heal a deleted rule", || ours(&ns, "ip6tables") == 2);
    let rules = ns.run(&["iptables", "-S", "DOCKER-USER"]);
    assert!(rules.contains("-A DOCKER-USER -s 203.0.113.5/32 -j ACCEPT"), "{rules}");
    assert_eq!(ours(&ns, "iptables"), 2, "{rules}");

    // Its own commits wake it too; it must see they change nothing and stay quiet.
    let generation = || ns.enter(|| Netlink::open().and_then(|mut nl| nl.generation())).expect("GETGEN");
    let settled = generation();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(generation(), settled, "watch keeps committing");
}

#[test]
fn after_a_flush_watch_closes_egress_again() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    let _watch = Watch::start(&dh.host, &["--target", "both"]);
    let table_exists = || dh.host.try_run(&["nft", "list", "table", "inet", "egress_guard"]).status.success();
    within("first apply", || ours(&dh.host, "iptables") == 2 && table_exists());
    // Both layers wiped by hand, one after the other: watch puts both back.
    dh.host.run(&["iptables", "-F", "DOCKER-USER"]);
    dh.host.run(&["nft", "delete", "table", "inet", "egress_guard"]);
    within("heal both layers", || ours(&dh.host, "iptables") == 2 && table_exists());
    matrix(&dh, false);
}

/// `nft flush ruleset` takes every table away at once, Docker's and our guard included, and
/// until watch rewrites the guard nothing filters forwarded traffic — except watch's shield, a
/// table owned by watch's socket that the flush leaves alone. A flood through the flush leaks
/// nothing (issue 11: "find the window").
#[test]
fn a_ruleset_flush_under_a_flood_leaks_nothing_while_watch_runs() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    // Without masquerading (the flush takes Docker's nat rules too) replies need a way back, as
    // on a real network: route the containers' subnet back through the host.
    dh.internet.run(&["ip", "route", "add", "172.17.0.0/16", "via", &HOST_V4.to_string()]);
    let _watch = Watch::start(&dh.host, &[]);
    let shield = || dh.host.try_run(&["nft", "list", "table", "inet", "egress_guard_watch"]).status.success();
    within("first apply and shield", || ours(&dh.host, "iptables") == 2 && shield());
    let run = Flood::new(300, Duration::from_secs(3)).start(&dh.c1, (INTERNET_V4, SERVICE_PORT).into());
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(400));
        dh.host.run(&["nft", "flush", "ruleset"]);
        assert!(shield(), "the flush left the shield alone");
    }
    let report = run.wait();
    eprintln!("5 flushes under a flood: {report:?}");
    assert!(report.attempts > 300, "the flood hardly ran: {report:?}");
    assert_eq!(report.through, 0, "connections got out: {report:?}");
    // After the last flush, watch wrote our table (no DOCKER-USER left), and egress stays closed.
    within("guard rewritten", || dh.host.try_run(&["nft", "list", "table", "inet", "egress_guard"]).status.success());
    expect_all(&egress(&dh.c1, false));
}

#[test]
fn a_second_watch_in_the_same_namespace_is_refused() {
    harness::require_kernel!();
    let ns = docker_user_namespace("twowatch");
    let _first = Watch::start(&ns, &[]);
    within("shield", || ns.try_run(&["nft", "list", "table", "inet", "egress_guard_watch"]).status.success());
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .args(["watch", "--reject-with", "drop", "--netns", ns.name()])
        .output()
        .expect("second watch");
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{err}");
    assert!(err.contains("held by another egress-guard watch"), "{err}");
    assert!(!ns.run(&["iptables", "-S", "DOCKER-USER"]).contains("-j DROP"), "the second watch wrote nothing");
}
