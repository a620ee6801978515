//! `watch` as a daemon (issue 11): READY after the first apply, STATUS lines and WATCHDOG pings
//! over a real sd_notify socket; SIGHUP applies a new config in one batch and keeps the running
//! policy when the new one is bad; SIGTERM exits 0 and leaves the guard in place; a program
//! that keeps changing our rules back is answered slower, not in a busy loop.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::{self, *};

/// A datagram socket standing in for systemd's notify socket, in a directory of its own.
struct NotifySocket {
    dir: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn new(name: &str) -> NotifySocket {
        let dir = std::env::temp_dir().join(format!("eg-notify-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("notify dir");
        let socket = UnixDatagram::bind(dir.join("notify")).expect("bind notify socket");
        socket.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        NotifySocket { dir, socket }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("notify")
    }

    /// Messages until one contains `needle` (or 5 s pass); returns them all.
    fn until(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let found = msg.contains(needle);
                seen.push(msg);
                if found {
                    return seen;
                }
            }
        }
        panic!("no notify message with {needle:?} within 5 s; got {seen:?}");
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `watch` with systemd's environment: NOTIFY_SOCKET, and a watchdog of `watchdog` if given.
fn watch_under_systemd(ns: &Netns, notify: &NotifySocket, watchdog: Option<Duration>, args: &[&str]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_egress-guard"));
    command.arg("watch").args(args).args(["--netns", ns.name()]).env("NOTIFY_SOCKET", notify.path());
    if let Some(w) = watchdog {
        command.env("WATCHDOG_USEC", w.as_micros().to_string());
    }
    command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start watch")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ours(ns: &Netns) -> String {
    ns.run(&["iptables", "-S", "DOCKER-USER"])
        .lines()
        .filter(|l| l.contains("egress-guard"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn ready_after_the_first_apply_status_and_watchdog_pings() {
    harness::require_kernel!();
    let ns = docker_user_namespace("notify");
    let notify = NotifySocket::new("ready");
    let _watch = Killed(watch_under_systemd(&ns, &notify, Some(Duration::from_millis(400)), &[]));
    let seen = notify.until("READY=1");
    assert!(ours(&ns).contains("egress-guard"), "READY comes after the first apply");
    assert!(seen.last().is_some_and(|m| m.contains("STATUS=guarding ip filter DOCKER-USER")), "{seen:?}");
    // Half the watchdog interval: a few pings in a second.
    let started = Instant::now();
    for _ in 0..4 {
        notify.until("WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_millis(1500), "pings every ~200 ms: {:?}", started.elapsed());
    // A heal says what it guards now.
    ns.run(&["iptables", "-F", "DOCKER-USER"]);
    notify.until("STATUS=guarding");
}

#[test]
fn sighup_applies_a_new_config_and_keeps_the_policy_when_the_config_is_bad() {
    harness::require_kernel!();
    let ns = docker_user_namespace("sighup");
    let notify = NotifySocket::new("sighup");
    let config = notify.dir.join("config.toml");
    std::fs::write(&config, "reject_with = \"drop\"\n").expect("config");
    let watch = Killed(watch_under_systemd(&ns, &notify, None, &["--config", config.to_str().unwrap()]));
    let pid = Pid::from_raw(watch.0.id() as i32);
    notify.until("READY=1");
    assert!(ours(&ns).contains("-j DROP"));

    std::fs::write(&config, "reject_with = \"tcp-reset\"\n").expect("config");
    kill(pid, Signal::SIGHUP).expect("SIGHUP");
    let seen = notify.until("READY=1");
    assert!(seen.iter().any(|m| m.contains("RELOADING=1")), "{seen:?}");
    assert!(ours(&ns).contains("--reject-with tcp-reset") && !ours(&ns).contains("-j DROP"), "{}", ours(&ns));

    // A broken config: reported, and the running policy stays.
    std::fs::write(&config, "reject_with = \"sometimes\"\n").expect("config");
    let before = ns.run(&["nft", "--stateless", "list", "ruleset"]);
    kill(pid, Signal::SIGHUP).expect("SIGHUP");
    let seen = notify.until("READY=1");
    assert!(seen.iter().any(|m| m.contains("reload failed")), "{seen:?}");
    assert_eq!(ns.run(&["nft", "--stateless", "list", "ruleset"]), before);
}

#[test]
fn sigterm_exits_0_and_leaves_the_guard_in_place() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    let notify = NotifySocket::new("sigterm");
    let mut watch = watch_under_systemd(&dh.host, &notify, None, &[]);
    notify.until("READY=1");
    kill(Pid::from_raw(watch.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = watch.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
    notify.until("STOPPING=1");
    // The shield went with watch's socket; the guard that apply would write stays.
    assert!(!dh.host.try_run(&["nft", "list", "table", "inet", "egress_guard_watch"]).status.success());
    assert_eq!(dh.egress_guard("check", &[]).status.code(), Some(0));
    matrix(&dh, false);
}

/// CPU time (user + system) of a process, from /proc/PID/stat, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0)
}

#[test]
fn a_program_that_keeps_undoing_our_rules_is_answered_slower_not_in_a_busy_loop() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    let mut watch = Watch::start_piped(&dh.host, &["--target", "docker-user"]);
    within("first apply", || ours(&dh.host).lines().count() == 2);
    let pid = watch.child().id();
    let ticks_before = cpu_ticks(pid);
    let started = Instant::now();
    // Another program deletes our rules as fast as it can, for 4 s…
    let host = dh.host.name().to_string();
    let fighter = std::thread::spawn(move || {
        let mut flushes = 0;
        while started.elapsed() < Duration::from_secs(4) {
            let ok = Command::new("ip").args(["netns", "exec", &host, "iptables", "-F", "DOCKER-USER"]).status();
            assert!(ok.expect("iptables").success());
            flushes += 1;
        }
        flushes
    });
    // …and meanwhile containers still cannot get out: watch's shield is not the fighter's to delete.
    while started.elapsed() < Duration::from_secs(3) {
        expect_all(&egress(&dh.c1, false));
    }
    let flushes = fighter.join().expect("fighter");
    let wall = started.elapsed();
    let used = cpu_ticks(pid) - ticks_before;
    let share = used as f64 / 100.0 / wall.as_secs_f64(); // USER_HZ ticks
    eprintln!("{flushes} flushes in {wall:?}: watch used {used} ticks ({:.1} % of one core)", share * 100.0);
    assert!(flushes > 100, "the fighter hardly ran");
    assert!(share < 0.05, "watch used {:.1} % of a core", share * 100.0);
    // When the fight stops, the guard is back within the longest back-off.
    let back = Instant::now();
    while ours(&dh.host).lines().count() != 2 {
        assert!(back.elapsed() < Duration::from_secs(12), "not healed after the fight");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    let err = watch.child().wait_with_output_now();
    assert_eq!(err.matches("keeps changing our rules back").count(), 1, "said once: {err}");
}

trait WaitOutput {
    fn wait_with_output_now(&mut self) -> String;
}

impl WaitOutput for Child {
    /// Waits for the (signalled) child and returns its stderr.
    fn wait_with_output_now(&mut self) -> String {
        let _ = self.wait();
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        err
    }
}
