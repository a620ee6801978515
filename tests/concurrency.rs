//! Other writers (dockerd, iptables, firewalld) commit whenever they like. A batch planned on a
//! stale generation is refused whole by the kernel, and apply re-reads and retries; nothing of
//! anyone's is lost or duplicated.

use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use egress_guard::backend::docker_user;
use egress_guard::error::Error;
use egress_guard::exit::ExitCode;
use egress_guard::net::Family;
use egress_guard::nft::msg::BatchBuilder;
use egress_guard::nft::rule::Position;
use egress_guard::nft::socket::Netlink;
use egress_guard::nft::NlError;
use egress_guard::policy::Policy;
use egress_guard::transact::{transact, MAX_ATTEMPTS};

use crate::harness::require_kernel;
use crate::harness::{docker_user_namespace, egress_guard, egress_guard_ok};

#[test]
fn a_batch_on_a_stale_generation_is_refused_whole() {
    require_kernel!();
    let ns = docker_user_namespace("genid");
    let rules = docker_user::encode(Family::V4, &docker_user::plan(&Policy::default(), Family::V4));
    let result = ns.enter(|| {
        let mut nl = Netlink::open().expect("netlink");
        let genid = nl.generation().expect("GETGEN");
        // Another writer commits after we read the generation…
        let status = Command::new("iptables").args(["-A", "DOCKER-USER", "-j", "RETURN"]).status();
        assert!(status.expect("iptables").success());
        assert_eq!(nl.generation().expect("GETGEN"), genid + 1);
        // …so our batch, planned on the old generation, must not land.
        let mut batch = BatchBuilder::new(nl.next_seq(), genid);
        for rule in &rules {
            batch.push("NEWRULE", |seq| rule.new_msg(seq, Position::Top));
        }
        nl.commit(&batch.finish())
    });
    assert!(matches!(result, Err(NlError::Concurrent)), "{result:?}");
    assert_eq!(ns.run(&["iptables", "-S", "DOCKER-USER"]), "-N DOCKER-USER\n-A DOCKER-USER -j RETURN\n");
}

#[test]
fn apply_under_a_busy_concurrent_writer_converges() {
    require_kernel!();
    let ns = docker_user_namespace("busy");
    egress_guard_ok(&ns, &["apply"]);
    // A writer that keeps adding and deleting a foreign rule, bounded in count.
    let writer = Command::new("ip")
        .args(["netns", "exec", ns.name(), "sh", "-c"])
        .arg("for i in $(seq 150); do iptables -A DOCKER-USER -s 203.0.113.7/32 -j ACCEPT; iptables -D DOCKER-USER -s 203.0.113.7/32 -j ACCEPT; done")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start writer");
    let mut outcomes = Vec::new();
    for round in 0..40 {
        let how = if round % 2 == 0 { "admin-prohibited" } else { "port-unreachable" };
        let out = egress_guard(&ns, &["apply", "--reject-with", how]);
        outcomes.push(out.status.code());
        thread::sleep(Duration::from_millis(5));
    }
    let writer = writer.wait_with_output().expect("writer");
    assert!(writer.status.success(), "the other writer failed: {}", String::from_utf8_lossy(&writer.stderr));
    assert!(outcomes.iter().all(|c| *c == Some(0)), "apply failed under concurrency: {outcomes:?}");
    let rules = ns.run(&["iptables", "-S", "DOCKER-USER"]);
    assert_eq!(rules.matches("egress-guard").count(), 2, "{rules}");
    assert!(rules.contains("icmp-port-unreachable") && !rules.contains("203.0.113.7"), "{rules}");
}

#[test]
fn a_writer_that_always_wins_makes_apply_give_up_with_exit_4() {
    require_kernel!();
    let ns = docker_user_namespace("giveup");
    let rules = docker_user::encode(Family::V4, &docker_user::plan(&Policy::default(), Family::V4));
    let (result, attempts) = ns.enter(|| {
        let mut nl = Netlink::open().expect("netlink");
        let mut attempts = 0;
        // Each attempt reads, plans, and then loses the race: another writer commits before
        // our batch goes out, so every batch meets a newer generation.
        let result = transact(&mut nl, false, |_, batch| {
            attempts += 1;
            for rule in &rules {
                batch.push("NEWRULE", |seq| rule.new_msg(seq, Position::Top));
            }
            let status = Command::new("iptables").args(["-A", "DOCKER-USER", "-j", "RETURN"]).status();
            assert!(status.expect("iptables").success());
            Ok(())
        });
        (result, attempts)
    });
    assert!(matches!(result, Err(Error::GaveUp(MAX_ATTEMPTS))), "{result:?}");
    assert_eq!(attempts, MAX_ATTEMPTS);
    assert_eq!(Error::GaveUp(MAX_ATTEMPTS).exit_code(), ExitCode::GaveUp);
    // Nothing of ours landed; every one of the other writer's rules did.
    let chain = ns.run(&["iptables", "-S", "DOCKER-USER"]);
    assert!(!chain.contains("egress-guard"), "{chain}");
    assert_eq!(chain.matches("-j RETURN").count(), MAX_ATTEMPTS as usize, "{chain}");
}
