//! `status` and `check` read the kernel and judge it: in place, absent, a rule deleted by
//! hand, no FORWARD jump; and failures exit with the documented codes and a hint.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use crate::harness::require_kernel;
use crate::harness::Netns;
use crate::harness::{docker_user_namespace, egress_guard, egress_guard_ok, status_json};

/// `check`'s exit code and its one line.
fn check(ns: &Netns) -> (i32, String) {
    let out = egress_guard(ns, &["check"]);
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(line.lines().count(), 1, "check prints one line: {line}");
    (out.status.code().unwrap(), line)
}

#[test]
fn verdicts_follow_the_kernel() {
    require_kernel!();
    let ns = docker_user_namespace("verdicts");
    assert_eq!(check(&ns), (1, "absent: ip filter DOCKER-USER: no egress-guard rules".into()));

    egress_guard_ok(&ns, &["apply"]);
    assert_eq!(check(&ns), (0, "in place: guarding ip filter DOCKER-USER and ip6 filter DOCKER-USER".into()));
    let status = egress_guard_ok(&ns, &["status"]);
    assert!(status.starts_with("egress-guard in place"), "{status}");
    assert!(status.contains("ip filter DOCKER-USER: in place, reached, 0 foreign rule(s)"), "{status}");

    // One rule deleted by hand.
    ns.run(&["ip6tables", "-D", "DOCKER-USER", "1"]);
    assert_eq!(check(&ns), (1, "drifted: ip6 filter DOCKER-USER: 1 of 2 rules missing".into()));
    egress_guard_ok(&ns, &["apply"]);
    assert_eq!(check(&ns).0, 0);

    // No FORWARD jump: the rules are there but inert.
    ns.run(&["iptables", "-D", "FORWARD", "-j", "DOCKER-USER"]);
    let (code, line) = check(&ns);
    assert_eq!(
        (code, line.as_str()),
        (1, "drifted: ip filter DOCKER-USER: FORWARD does not jump to DOCKER-USER: the guard is inert")
    );
    let json = status_json(&ns, &[]);
    let v4 = &json["places"][0];
    assert_eq!(
        (&v4["place"], &v4["exists"], &v4["reached"]),
        (&"ip filter DOCKER-USER".into(), &true.into(), &false.into())
    );
    assert_eq!((&v4["verdict"], &json["verdict"]), (&"drifted".into(), &"drifted".into()), "{json}");

    // A different policy is drift too: check compares with the options it is given.
    ns.run(&["iptables", "-A", "FORWARD", "-j", "DOCKER-USER"]);
    let out = egress_guard(&ns, &["check", "--iface", "docker0"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn missing_chain_is_exit_3_with_a_hint_and_changes_nothing() {
    require_kernel!();
    let ns = Netns::new("nochain");
    let out = egress_guard(&ns, &["apply", "--target", "docker-user"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("egress-guard: ip filter DOCKER-USER does not exist: start dockerd"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(ns.run(&["nft", "list", "ruleset"]), "");
}

#[test]
fn with_only_an_ipv4_docker_user_auto_guards_ipv6_from_our_table() {
    require_kernel!();
    let ns = Netns::new("v4only");
    ns.run(&["iptables", "-N", "DOCKER-USER"]);
    ns.run(&["iptables", "-A", "FORWARD", "-j", "DOCKER-USER"]);
    let out = egress_guard_ok(&ns, &["apply"]);
    assert!(out.contains("IPv6: table, no ip6 filter DOCKER-USER"), "{out}");
    assert_eq!(ns.run(&["iptables", "-S", "DOCKER-USER"]).matches("egress-guard").count(), 2);
    let table = ns.run(&["nft", "list", "chain", "inet", "egress_guard", "forward"]);
    assert_eq!(table.matches("meta nfproto ipv6").count(), 2, "the table guards IPv6 only: {table}");
    assert_eq!(check(&ns), (0, "in place: guarding ip filter DOCKER-USER and inet egress_guard".into()));

    // Forced to DOCKER-USER, IPv6 is not covered: said at apply; not needed while no guarded
    // bridge has an IPv6 address (this namespace has no bridge at all).
    let out = egress_guard(&ns, &["apply", "--target", "docker-user"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: no ip6 filter DOCKER-USER: not covered"), "{err}");
    assert!(!ns.try_run(&["nft", "list", "table", "inet", "egress_guard"]).status.success(), "table taken away");
    let status = egress_guard_ok(&ns, &["status", "--target", "docker-user"]);
    assert!(status.contains("ip6 filter DOCKER-USER: missing (not needed: no addresses)"), "{status}");
    let out = egress_guard(&ns, &["check", "--target", "docker-user"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "in place: guarding ip filter DOCKER-USER");
}

#[test]
fn without_cap_net_admin_it_is_exit_3_naming_the_capability() {
    require_kernel!();
    let ns = docker_user_namespace("noperm");
    // Inside the namespace already, as an unprivileged user with no capabilities.
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
        .args([env!("CARGO_BIN_EXE_egress-guard"), "apply"])
        .output()
        .expect("run setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
    assert!(!ns.run(&["iptables", "-S"]).contains("egress-guard"));
}

#[test]
fn unknown_namespace_is_a_usage_error() {
    require_kernel!();
    let out = Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .args(["status", "--netns", "eg-no-such-namespace"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ip netns list"));
}

#[test]
fn netns_also_takes_a_proc_path() {
    require_kernel!();
    let ns = docker_user_namespace("procpath");
    // A process living in the namespace, as rootless Docker's RootlessKit would.
    let mut holder = ns.command("sleep").arg("30").spawn().expect("start sleep");
    let path = format!("/proc/{}/ns/net", holder.id());
    // `ip netns exec` enters the namespace after it starts: until then the path would lead to
    // the root namespace, which a test must never write to.
    let wanted = std::fs::metadata(ns.path()).expect("netns file").ino();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::metadata(&path).ok().map(|m| m.ino()) != Some(wanted) {
        assert!(std::time::Instant::now() < deadline, "{path} never entered {ns}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_egress-guard")).args(["apply", "--netns", &path]).output().unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ns.run(&["iptables", "-S", "DOCKER-USER"]).matches("egress-guard").count(), 2);
}
