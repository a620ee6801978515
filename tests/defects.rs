//! Regression tests for the defects an outside test found in the released behaviour (issue 8),
//! one or more per item, named `i8_N_…` after the item they cover. Each failed on the main it
//! was written against; traffic defects are proven by packets.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use egress_guard::nft::socket::Netlink;

use crate::harness::{self, *};

fn run(ns: &Netns, args: &[&str]) -> (i32, String, String) {
    let out = egress_guard(ns, args);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn ours(ns: &Netns, iptables: &str) -> usize {
    ns.run(&[iptables, "-S", "DOCKER-USER"]).matches("egress-guard").count()
}

/// `--iface` flags for `n` bridges and one `--allow`: each bridge is a section of two rules
/// (marked packets return, the rest is refused), whatever the allow-list's length, so this is
/// how a policy still makes hundreds of rules.
fn many_bridges(n: usize) -> Vec<String> {
    let mut flags: Vec<String> = (0..n).map(|i| format!("--iface=egbr{i}")).collect();
    flags.push("--allow=203.0.113.7:443/tcp".into());
    flags
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ---- 1. large batches ----

#[test]
fn i8_1_a_large_batch_commits_reports_success_and_heals() {
    harness::require_kernel!();
    let ns = docker_user_namespace("bigbatch");
    let allow = many_bridges(300);
    // 300 bridges × (mark, refuse): 600 rules per family, one batch with our table.
    let (code, _, err) = run(&ns, &[&["apply"], &strs(&allow)[..]].concat());
    assert_eq!(code, 0, "{err}");
    assert_eq!(ours(&ns, "iptables"), 600);
    assert_eq!(ours(&ns, "ip6tables"), 600);

    let (code, _, err) = run(&ns, &["remove"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ours(&ns, "iptables") + ours(&ns, "ip6tables"), 0);

    let _watch = Watch::start(&ns, &strs(&allow));
    within("watch's first apply", || ours(&ns, "iptables") == 600);
    ns.run(&["iptables", "-F", "DOCKER-USER"]);
    within("watch heals the flush", || ours(&ns, "iptables") == 600);
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
    // How many get through depends on the machine's speed against the writer's; that some do
    // shows a retry can succeed between two commits.
    assert!(ok >= 1, "no run got a consistent read between commits");
}

// ---- 3. a guard that is bypassed is not "in place" ----

fn c1_egress(dh: &DockerHost) -> Outcome {
    dh.c1.tcp((INTERNET_V4, SERVICE_PORT))
}

#[test]
fn i8_3_a_foreign_accept_ahead_of_ours_is_drift_and_apply_moves_ours_back_to_the_top() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    dh.egress_guard_ok("apply", &[]);
    dh.host.run(&["iptables", "-I", "DOCKER-USER", "-i", "docker0", "-j", "ACCEPT"]);
    assert!(c1_egress(&dh).is_open(), "the foreign ACCEPT lets c1 out");

    let (code, line, _) = run(&dh.host, &["check"]);
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("-A DOCKER-USER -i docker0 -j ACCEPT"), "check names the rule: {line}");

    let out = dh.egress_guard_ok("apply", &[]);
    assert!(out.contains("ip filter DOCKER-USER: did write 2 rule(s), delete 2 old one(s)"), "{out}");
    let rules = dh.host.run(&["iptables", "-S", "DOCKER-USER"]);
    let lines: Vec<&str> = rules.lines().collect();
    assert!(lines[1].contains("egress-guard") && lines[2].contains("egress-guard"), "ours first: {rules}");
    assert_eq!(lines[3], "-A DOCKER-USER -i docker0 -j ACCEPT", "the foreign rule is kept: {rules}");
    assert!(!c1_egress(&dh).is_open());
    assert_eq!(run(&dh.host, &["check"]).0, 0);
}

#[test]
fn i8_3_watch_puts_our_rules_back_on_top() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    let _watch = Watch::start(&dh.host, &[]);
    within("first apply", || ours(&dh.host, "iptables") == 2);
    dh.host.run(&["iptables", "-I", "DOCKER-USER", "-j", "ACCEPT"]);
    within("ours back on top", || {
        dh.host.run(&["iptables", "-S", "DOCKER-USER"]).lines().nth(1).is_some_and(|l| l.contains("egress-guard"))
    });
    assert!(!c1_egress(&dh).is_open());
}

#[test]
fn i8_3_a_forward_rule_ahead_of_the_jump_fails_check_with_the_rule() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    dh.egress_guard_ok("apply", &[]);
    dh.host.run(&["iptables", "-I", "FORWARD", "-i", "docker0", "-j", "ACCEPT"]);
    assert!(c1_egress(&dh).is_open(), "the FORWARD rule lets c1 out");
    let (code, line, _) = run(&dh.host, &["check"]);
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("-A FORWARD -i docker0 -j ACCEPT"), "{line}");
    // apply cannot fix another program's FORWARD rule: it says so, and check stays 1.
    let (code, out, err) = run(&dh.host, &["apply"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ip filter DOCKER-USER: our rules are written, but the guard is NOT effective"), "{out}");
    assert!(err.contains("-A FORWARD -i docker0 -j ACCEPT"), "{err}");
    assert_eq!(run(&dh.host, &["check"]).0, 1);
    let status = dh.egress_guard_ok("status", &[]);
    assert!(status.contains("-A FORWARD -i docker0 -j ACCEPT"), "{status}");
}

#[test]
fn i8_3_a_jump_after_dockers_accept_rules_fails_check() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    dh.egress_guard_ok("apply", &[]);
    dh.host.run(&["iptables", "-D", "FORWARD", "-j", "DOCKER-USER"]);
    dh.host.run(&["iptables", "-A", "FORWARD", "-j", "DOCKER-USER"]);
    assert!(c1_egress(&dh).is_open(), "Docker's own ACCEPT comes first now");
    let (code, line, _) = run(&dh.host, &["check"]);
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("-A FORWARD -i docker0 ! -o docker0 -j ACCEPT"), "{line}");
}

#[test]
fn i8_3_rules_that_cannot_let_egress_out_are_no_bypass() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    dh.egress_guard_ok("apply", &[]);
    // Replies, traffic into the bridges, another interface's traffic and a DROP: none of them
    // lets a container's new connection out, so the guard still counts as reached first.
    for rule in [
        "-o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-i eth0 -j ACCEPT",
        "-i docker0 -o docker0 -j ACCEPT",
        "-i br-+ -j DROP",
        "-s 203.0.113.9/32 -j LOG",
    ] {
        let mut args = vec!["iptables", "-I", "FORWARD"];
        args.extend(rule.split_whitespace());
        dh.host.run(&args);
    }
    assert!(!c1_egress(&dh).is_open());
    let (code, line, _) = run(&dh.host, &["check"]);
    assert_eq!(code, 0, "{line}");
}

// ---- 4. check judges the target asked for; a new target takes ours out of the old places ----

#[test]
fn i8_4_switching_targets_moves_the_guard_and_check_judges_the_target_asked_for() {
    harness::require_kernel!();
    let ns = docker_user_namespace("switch");
    egress_guard_ok(&ns, &["apply"]);
    egress_guard_ok(&ns, &["apply", "--target", "table"]);
    assert_eq!(ours(&ns, "iptables") + ours(&ns, "ip6tables"), 0, "the old place is cleared");
    let (code, line, _) = run(&ns, &["check", "--target", "table"]);
    assert_eq!((code, line.trim()), (0, "in place: guarding inet egress_guard"));

    egress_guard_ok(&ns, &["apply", "--target", "docker-user"]);
    assert!(!ns.try_run(&["nft", "list", "table", "inet", "egress_guard"]).status.success(), "table removed");
    assert_eq!(ours(&ns, "iptables"), 2);
    assert_eq!(run(&ns, &["check", "--target", "docker-user"]).0, 0);
}

#[test]
fn i8_4_auto_with_only_an_ip6_docker_user_is_in_place_after_apply() {
    harness::require_kernel!();
    let ns = Netns::new("v6only");
    ns.run(&["ip6tables", "-N", "DOCKER-USER"]);
    ns.run(&["ip6tables", "-A", "FORWARD", "-j", "DOCKER-USER"]);
    egress_guard_ok(&ns, &["apply"]);
    let (code, line, _) = run(&ns, &["check"]);
    assert_eq!(code, 0, "{line}");
}

// ---- 5. a table that is not ours is never deleted or rebuilt ----

#[test]
fn i8_5_a_users_own_egress_guard_table_is_refused_not_deleted() {
    harness::require_kernel!();
    let ns = Netns::new("usertable");
    ns.run_with_input(
        &["nft", "-f", "-"],
        "table inet egress_guard {\n chain mine {\n  type filter hook forward priority 10; policy accept;\n  \
         ip daddr 203.0.113.7 counter drop\n }\n}\n",
    );
    let before = ns.run(&["nft", "--stateless", "list", "ruleset"]);
    for args in [&["remove"][..], &["remove", "--target", "table"], &["apply", "--target", "table"], &["apply"]] {
        let (code, _, err) = run(&ns, args);
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(err.contains("not made by egress-guard"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(ns.run(&["nft", "--stateless", "list", "ruleset"]), before);
}

// ---- 6. a closed or full stdout ----

#[test]
fn i8_6_a_closed_pipe_ends_quietly_and_a_full_disk_after_a_commit_says_so() {
    harness::require_kernel!();
    let ns = docker_user_namespace("stdout");
    let allow = many_bridges(400);
    egress_guard_ok(&ns, &[&["apply"], &strs(&allow)[..]].concat());
    // `status | head -0`: the reader is gone before status writes its long report.
    let mut child = Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .args(["status", "--netns", ns.name()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("status");
    drop(child.stdout.take());
    let mut err = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut err).expect("read stderr");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "quiet on a broken pipe: {err}");

    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let out = Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .args(["apply", "--reject-with", "drop", "--netns", ns.name()])
        .stdout(full)
        .output()
        .expect("apply");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("committed") && !err.contains("panicked"), "{err}");
    assert!(ns.run(&["iptables", "-S", "DOCKER-USER"]).contains("-j DROP"));
}

// ---- 9. healing adds only what is missing ----

/// Our rules' kernel handles in ip filter DOCKER-USER, in chain order.
fn handles(ns: &Netns) -> Vec<u64> {
    let rules = ns.enter(|| Netlink::open().and_then(|mut nl| nl.dump_rules(2, "filter", "DOCKER-USER")));
    let rules = rules.expect("dump").expect("chain");
    rules.iter().filter(|r| egress_guard::backend::docker_user::is_ours(r)).filter_map(|r| r.handle).collect()
}

#[test]
fn i8_9_healing_one_deleted_rule_adds_it_and_keeps_the_other() {
    harness::require_kernel!();
    let ns = docker_user_namespace("heal1");
    egress_guard_ok(&ns, &["apply"]);
    let before = handles(&ns);
    ns.run(&["iptables", "-D", "DOCKER-USER", "2"]);
    let (code, line, _) = run(&ns, &["check"]);
    assert_eq!((code, line.trim()), (1, "drifted: ip filter DOCKER-USER: 1 of 2 rules missing"));
    egress_guard_ok(&ns, &["apply"]);
    let after = handles(&ns);
    assert_eq!(after.len(), 2);
    assert_eq!(after[0], before[0], "the rule still in place was not rewritten");
    assert_ne!(after[1], before[1]);
    assert_eq!(run(&ns, &["check"]).0, 0);
}

#[test]
fn i8_9_a_chain_can_be_taken_away_in_one_transaction_while_watch_runs() {
    harness::require_kernel!();
    let ns = docker_user_namespace("takeaway");
    let _watch = Watch::start(&ns, &["--target", "docker-user"]);
    within("first apply", || ours(&ns, "iptables") == 2);
    // As docs/operations.md says: unhook, flush and delete in one iptables-restore transaction.
    ns.run_with_input(
        &["iptables-restore", "--noflush"],
        "*filter\n-D FORWARD -j DOCKER-USER\n-F DOCKER-USER\n-X DOCKER-USER\nCOMMIT\n",
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!ns.try_run(&["iptables", "-S", "DOCKER-USER"]).status.success(), "the chain stays deleted");
}
