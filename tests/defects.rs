//! Regression tests for the defects an outside test found in the released behaviour (issue 8),
//! one or more per item, named `i8_N_…` after the item they cover. Each failed on the main it
//! was written against; traffic defects are proven by packets.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{self, *};

fn run(ns: &Netns, args: &[&str]) -> (i32, String, String) {
    let out = egress_guard(ns, args);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn ours(ns: &Netns, iptables: &str) -> usize {
    ns.run(&[iptables, "-S", "DOCKER-USER"]).matches("egress-guard").count()
}

/// `--allow` flags for `n` distinct TCP destinations in 203.0.113.0/24.
fn many_allows(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("--allow=203.0.113.{}:{}/tcp", i % 250 + 1, 1000 + i)).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ---- 1. large batches ----

#[test]
fn i8_1_a_large_batch_commits_reports_success_and_heals() {
    harness::require_kernel!();
    let ns = docker_user_namespace("bigbatch");
    let allow = many_allows(300);
    // 300 allowed destinations × 2 bridges + the 2 rejects: 602 IPv4 rules, one batch.
    let (code, _, err) = run(&ns, &[&["apply"], &strs(&allow)[..]].concat());
    assert_eq!(code, 0, "{err}");
    assert_eq!(ours(&ns, "iptables"), 602);
    assert_eq!(ours(&ns, "ip6tables"), 2);

    let (code, _, err) = run(&ns, &["remove"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ours(&ns, "iptables") + ours(&ns, "ip6tables"), 0);

    let _watch = Watch::start(&ns, &strs(&allow));
    within("watch's first apply", || ours(&ns, "iptables") == 602);
    ns.run(&["iptables", "-F", "DOCKER-USER"]);
    within("watch heals the flush", || ours(&ns, "iptables") == 602);
}

// ---- 2. interrupted dumps ----

/// Commits every few milliseconds (a rule added to and deleted from a chain of its own, as a
/// busy firewall script would) until `stop`, so dumps that span several datagrams get
/// interrupted often.
fn busy_writer(ns: &Netns, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<u32> {
    ns.run(&["iptables", "-N", "EG-WRITER"]);
    let netns = ns.path();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns).expect("netns");
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let mut commits = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            for op in ["-A", "-D"] {
                let ok = Command::new("iptables").args([op, "EG-WRITER", "-j", "RETURN"]).status();
                assert!(ok.expect("iptables").success());
                commits += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        commits
    })
}

#[test]
fn i8_2_a_dump_interrupted_by_another_writer_is_retried_not_waited_out() {
    harness::require_kernel!();
    let ns = docker_user_namespace("dumpintr");
    // 1,500 foreign rules: the chain's dump spans many datagrams.
    let mut script = String::from("*filter\n");
    for i in 0..1500 {
        script += &format!("-A DOCKER-USER -s 203.0.113.{}/32 -p tcp --dport {} -j RETURN\n", i % 250 + 1, 1000 + i);
    }
    script += "COMMIT\n";
    ns.run_with_input(&["iptables-restore", "--noflush"], &script);
    egress_guard_ok(&ns, &["apply"]);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = busy_writer(&ns, stop.clone());
    let mut slowest = Duration::ZERO;
    let (mut ok, mut gave_up, mut failures) = (0, 0, Vec::new());
    for round in 0..60 {
        let command = ["status", "check", "apply"][round % 3];
        let started = Instant::now();
        let (code, _, err) = run(&ns, &[command]);
        slowest = slowest.max(started.elapsed());
        match code {
            0 => ok += 1,
            // Ten attempts, each interrupted: the documented "gave up" (issue 10 counts these).
            4 => gave_up += 1,
            _ => failures.push(format!("{command}: exit {code}: {err}")),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let commits = writer.join().expect("writer");
    eprintln!("60 runs beside {commits} commits: {ok} done, {gave_up} gave up (exit 4); slowest {slowest:?}");
    assert!(failures.is_empty(), "an interrupted read must be retried, not fail: {failures:#?}");
    assert!(slowest < Duration::from_secs(3), "a run waited {slowest:?}");
    assert!(ok >= 30, "most runs get a consistent read between commits: {ok} of 60");
}
