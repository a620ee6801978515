//! `watch` heals: after an `iptables -F DOCKER-USER`, a rule deleted by hand or a table deleted
//! with `nft`, the guard is back within moments, foreign rules are kept, and traffic proves it.

use std::time::{Duration, Instant};

use egress_guard::nft::socket::Netlink;

use crate::harness::{self, *};

/// Polls `done` every 10 ms for up to 3 s; returns how long it took.
fn within(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(3), "{what}: not within 3 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

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
