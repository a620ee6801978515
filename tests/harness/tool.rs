//! Running the binary under test against a namespace, and the smallest fixture it works on: a
//! bare namespace holding DOCKER-USER and the FORWARD jump, as `iptables` on a Docker host has.

use std::process::{Child, Command, Output, Stdio};

use super::netns::Netns;

/// Runs `egress-guard ARGS… --netns NS` and returns its output unchecked.
pub fn egress_guard(ns: &Netns, args: &[&str]) -> Output {
    let program = env!("CARGO_BIN_EXE_egress-guard");
    Command::new(program)
        .args(args)
        .args(["--netns", ns.name()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Like [`egress_guard`], but the command must succeed; returns its stdout.
pub fn egress_guard_ok(ns: &Netns, args: &[&str]) -> String {
    let out = egress_guard(ns, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "egress-guard {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running `egress-guard watch ARGS… --netns NS`, killed when dropped (also when the test
/// fails).
pub struct Watch(Child);

impl Watch {
    /// Its stdout is discarded; its stderr goes to the test's.
    pub fn start(ns: &Netns, args: &[&str]) -> Watch {
        Watch::spawn(ns, args, Stdio::null(), Stdio::inherit())
    }

    /// Both its stdout and stderr are piped, for the caller to take from [`Watch::child`].
    pub fn start_piped(ns: &Netns, args: &[&str]) -> Watch {
        Watch::spawn(ns, args, Stdio::piped(), Stdio::piped())
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.0
    }

    fn spawn(ns: &Netns, args: &[&str], stdout: Stdio, stderr: Stdio) -> Watch {
        let child = Command::new(env!("CARGO_BIN_EXE_egress-guard"))
            .arg("watch")
            .args(args)
            .args(["--netns", ns.name()])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start watch");
        Watch(child)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh namespace with `iptables -N DOCKER-USER` and `-A FORWARD -j DOCKER-USER` in both
/// families, and nothing else.
pub fn docker_user_namespace(role: &str) -> Netns {
    let ns = Netns::new(role);
    for iptables in ["iptables", "ip6tables"] {
        ns.run(&[iptables, "-N", "DOCKER-USER"]);
        ns.run(&[iptables, "-A", "FORWARD", "-j", "DOCKER-USER"]);
    }
    ns
}

/// The `-A …` lines `apply --dry-run` prints for one place, e.g. "ip filter DOCKER-USER".
pub fn dry_run_lines<'a>(dry_run: &'a str, place: &str) -> Vec<&'a str> {
    let header = format!("{place}:");
    dry_run
        .lines()
        .skip_while(|l| !l.starts_with(&header))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.strip_prefix("  + "))
        .collect()
}

/// Polls `done` every 10 ms for up to 3 s; returns how long it took.
pub fn within(what: &str, mut done: impl FnMut() -> bool) -> std::time::Duration {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "{what}: not within 3 s");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    started.elapsed()
}

/// `egress-guard status --json ARGS… --netns NS`, parsed.
pub fn status_json(ns: &Netns, args: &[&str]) -> serde_json::Value {
    let out = egress_guard_ok(ns, &[&["status", "--json"], args].concat());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out}"))
}
