//! `egress-guard log` on the emulated Docker host: real TCP, UDP and ICMP attempts over IPv4 and
//! IPv6 through the guard's own NFLOG rules (both targets), each reported once with its source,
//! destination, protocol, port and action, and, with no Docker to ask, its bridge and why the
//! name is missing; published ports and same-network traffic say nothing; a bounded flood is
//! summarised and fully accounted for; `watch` writes the same lines to its journal; `status`
//! counts the refused.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{self, *};

const SHORT: Duration = Duration::from_millis(500);
/// The flood: bounded in count and time, paced below the log rule's 10,000/second.
const FLOOD: u32 = 10_000;
const FLOOD_RATE: u32 = 8_000;
const FLOOD_BOUND: Duration = Duration::from_secs(10);
const FLOOD_PORT: u16 = 9;

/// A Docker socket that does not exist: the lines must say so instead of a name.
fn no_docker() -> String {
    format!("/nonexistent/eg-{}/docker.sock", std::process::id())
}

/// What a probe must be reported as: (src, dst, proto, dport, icmp type, bridge).
type Want = (IpAddr, IpAddr, &'static str, Option<u16>, Option<u8>, &'static str);

fn wanted(from: IpAddr, probe: &Probe, bridge: &'static str) -> Want {
    let dst = probe.to.ip();
    match (probe.proto, dst.is_ipv4()) {
        (harness::Proto::Tcp, _) => (from, dst, "tcp", Some(probe.to.port()), None, bridge),
        (harness::Proto::Udp, _) => (from, dst, "udp", Some(probe.to.port()), None, bridge),
        (harness::Proto::Ping, true) => (from, dst, "icmp", None, Some(8), bridge),
        (harness::Proto::Ping, false) => (from, dst, "icmpv6", None, Some(128), bridge),
    }
}

fn seen(record: &Value) -> Want {
    let ip = |key: &str| record[key].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{record}"));
    let proto = match record["proto"].as_str() {
        Some("tcp") => "tcp",
        Some("udp") => "udp",
        Some("icmp") => "icmp",
        Some("icmpv6") => "icmpv6",
        _ => panic!("unexpected protocol: {record}"),
    };
    let bridge = match record["bridge"].as_str() {
        Some("docker0") => "docker0",
        Some("br-eg1") => "br-eg1",
        _ => panic!("unexpected bridge: {record}"),
    };
    let dport = record["dport"].as_u64().map(|p| p as u16);
    let icmp = record["icmp_type"].as_u64().map(|t| t as u8);
    (ip("src"), ip("dst"), proto, dport, icmp, bridge)
}

fn attempts_are_reported_with_bridge_and_address(target: &str) {
    let dh = DockerHost::new();
    dh.egress_guard_ok("apply", &["--target", target, "--log", "--log-rate", "1000/second"]);
    let log = LogRun::start(dh.host.name(), &["--json", "--docker-host", &no_docker()]);
    let to_internet = |port| {
        [
            Probe::tcp((INTERNET_V4, port)),
            Probe::udp((INTERNET_V4, DNS_PORT)),
            Probe::ping(INTERNET_V4),
            Probe::tcp((INTERNET_V6, port)),
            Probe::udp((INTERNET_V6, DNS_PORT)),
            Probe::ping(INTERNET_V6),
        ]
    };
    let mut want: HashSet<Want> = HashSet::new();
    for probe in to_internet(SERVICE_PORT) {
        assert!(!probe.timeout(SHORT).run_in(&dh.c1).is_open(), "{probe} from c1 got out");
        let from: IpAddr = if probe.to.is_ipv4() { C1_V4.into() } else { C1_V6.into() };
        want.insert(wanted(from, &probe, "docker0"));
    }
    let c3 = Probe::tcp((INTERNET_V4, 4444));
    assert!(!c3.timeout(SHORT).run_in(&dh.c3).is_open());
    want.insert(wanted(C3_V4.into(), &c3, "br-eg1"));
    // What must stay open, and say nothing: a published port and its replies, and traffic
    // between containers on one network (which crosses FORWARD with br_netfilter).
    let quiet = [
        (&dh.internet, Probe::tcp((HOST_V4, PUBLISHED_PORT))),
        (&dh.c1, Probe::tcp((C2_V4, SERVICE_PORT))),
        (&dh.c1, Probe::udp((C2_V6, SERVICE_PORT))),
        (&dh.c1, Probe::ping(C2_V4)),
        (&dh.c1, Probe::ping(C2_V6)),
    ];
    for (ns, probe) in &quiet {
        assert!(probe.run_in(ns).is_open(), "{probe} from {ns} is closed");
    }

    let all_seen = |json: &[Value]| {
        let got: HashSet<Want> = json.iter().filter(|r| r["type"] == "attempt").map(seen).collect();
        want.is_subset(&got)
    };
    let in_time = log.wait_for(Duration::from_secs(10), all_seen);
    let stopped = log.stop();
    assert!(stopped.status.success(), "{:?}", stopped.stderr);
    let records = stopped.json();
    assert!(in_time, "not every attempt was reported: {records:#?}");
    for r in &records {
        // A TCP SYN sent again is the same burst: a summary, never a second attempt line.
        assert!(r["type"] == "attempt" || r["type"] == "summary", "{r}");
        assert!(want.contains(&seen(r)), "a line for something that was not an attempt out: {r}");
        assert_eq!(r["container"], Value::Null, "{r}");
        let why = r["unnamed"].as_str().unwrap_or_default();
        assert!(why.contains("does not exist"), "the line says why the name is missing: {r}");
        assert_eq!((&r["action"], &r["reject_with"]), (&"rejected".into(), &"port-unreachable".into()), "{r}");
        assert!(r["time"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 24), "{r}");
    }
    let attempts = records.iter().filter(|r| r["type"] == "attempt").count();
    assert_eq!(attempts, want.len(), "one line per attempt: {records:#?}");
}

#[test]
fn log_reports_each_attempt_through_docker_user() {
    require_kernel!();
    attempts_are_reported_with_bridge_and_address("docker-user");
}

#[test]
fn log_reports_each_attempt_through_our_table() {
    require_kernel!();
    attempts_are_reported_with_bridge_and_address("table");
}

/// Packets counted by our rule whose `iptables -L` target is `target`.
fn counted(dh: &DockerHost, target: &str) -> u64 {
    let out = dh.host.run(&["iptables", "-L", "DOCKER-USER", "-v", "-n", "-x"]);
    let line = out.lines().find(|l| l.split_whitespace().nth(2) == Some(target) && l.contains("egress-guard"));
    line.and_then(|l| l.split_whitespace().next()?.parse().ok()).unwrap_or_else(|| panic!("no {target} rule: {out}"))
}

/// The attempts a record accounts for.
fn accounts_for(r: &Value) -> u64 {
    match r["type"].as_str() {
        Some("attempt") => 1,
        Some("summary" | "overflow" | "lost") => r["count"].as_u64().unwrap_or(0),
        _ => 0,
    }
}

#[test]
fn a_flood_is_summarised_read_in_full_and_kept_in_the_file() {
    require_kernel!();
    let dh = DockerHost::new();
    dh.egress_guard_ok("apply", &["--log", "--log-rate", "10000/second"]);
    let dir = std::env::temp_dir().join(format!("eg-log-flood-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("attempts.jsonl");
    let file_arg = file.to_str().unwrap();
    let log = LogRun::start(dh.host.name(), &["--json", "--docker-host", &no_docker(), "--output", file_arg]);

    let sender = dh.c1.spawn(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
        let to = SocketAddr::from((INTERNET_V4, FLOOD_PORT));
        let start = Instant::now();
        let mut sent = 0u32;
        while sent < FLOOD && start.elapsed() < FLOOD_BOUND {
            // Paced: the n-th datagram goes at n / FLOOD_RATE seconds.
            if start.elapsed().as_secs_f64() * f64::from(FLOOD_RATE) < f64::from(sent) {
                std::hint::spin_loop();
                continue;
            }
            if socket.send_to(&sent.to_be_bytes(), to).is_ok() {
                sent += 1;
            }
        }
        (sent, start.elapsed())
    });
    let (sent, took) = sender.join().expect("flood thread");
    let logged = counted(&dh, "NFLOG");
    let refused = counted(&dh, "REJECT");
    // The kernel sends a part-filled batch after 0.1 s; the log holds attempts 1 s.
    std::thread::sleep(Duration::from_millis(1500));
    let stopped = log.stop();
    assert!(stopped.status.success(), "{:?}", stopped.stderr);
    let records = stopped.json();
    let accounted: u64 = records.iter().map(accounts_for).sum();
    let lost: u64 = records.iter().filter(|r| r["type"] == "lost").map(accounts_for).sum();
    eprintln!(
        "flood: sent {sent} in {took:?}, refused {refused}, logged {logged}; log wrote {} line(s) accounting for \
         {accounted} ({lost} lost), CPU {:?}",
        records.len(),
        stopped.cpu
    );
    // The rule's limit (burst 5) drops some when the sender catches up in bursts on a busy
    // machine; what matters is that thousands reach the log and every one is accounted for.
    assert!(logged >= u64::from(FLOOD) / 2, "the flood hardly reached the log rule: {logged} of {sent}");
    assert_eq!(accounted, logged, "every logged attempt is printed, summarised or reported lost: {records:#?}");
    assert!(records.len() <= 10, "the output stays bounded: {records:#?}");
    assert!(records.iter().any(|r| r["type"] == "summary" && r["count"].as_u64() > Some(1000)), "{records:#?}");
    assert!(stopped.cpu < Duration::from_secs(3), "CPU {:?} for {logged} attempts", stopped.cpu);

    // The file holds the same records, and --summary sums them.
    let kept: Vec<String> = std::fs::read_to_string(&file).unwrap().lines().map(String::from).collect();
    assert_eq!(kept, stopped.stdout);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .args(["log", "--summary", "--json", "--output", file_arg])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["attempts"].as_u64(), Some(accounted - lost));
    assert_eq!(summary["lost"].as_u64(), Some(lost));
    assert_eq!(summary["containers"][0]["src"], C1_V4.to_string());
    assert_eq!(summary["destinations"][0]["dst"], format!("{INTERNET_V4}:{FLOOD_PORT}/udp"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn watch_with_an_nflog_policy_writes_every_attempt_to_its_journal() {
    require_kernel!();
    let dh = DockerHost::new();
    let args = ["--log", "--log-rate", "1000/second", "--docker-host", &no_docker()];
    let mut watch = Watch::start_piped(&dh.host, &args);
    let stdout = watch.child().stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut until = |what: &str, done: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
                lines.push(line.clone());
                if done(&line) {
                    return;
                }
            }
        }
        panic!("watch never said {what}: {lines:#?}");
    };
    until("it logs", &|l| l.contains("logging blocked attempts from nflog group 4711"));
    assert!(!Probe::tcp((INTERNET_V4, SERVICE_PORT)).timeout(SHORT).run_in(&dh.c1).is_open());
    until("the attempt", &|l| {
        l.contains("unknown container on docker0 (Docker unavailable: docker socket")
            && l.ends_with("172.17.0.2 -> 198.51.100.2:80/tcp rejected (port-unreachable)")
    });
    // One reader per group and namespace: `log` beside it says where the lines are.
    let out = std::process::Command::new("timeout")
        .args(["10", env!("CARGO_BIN_EXE_egress-guard"), "log", "--netns", dh.host.name()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("nflog group 4711 is taken") && err.contains("with watch, read its journal"), "{err}");
}

#[test]
fn status_counts_the_attempts_refused_since_the_rules_were_written() {
    require_kernel!();
    for target in ["docker-user", "table"] {
        let dh = DockerHost::new();
        let policy = ["--target", target, "--log", "--reject-with", "tcp-reset"];
        dh.egress_guard_ok("apply", &policy);
        for port in 0..5 {
            assert!(!Probe::udp((INTERNET_V4, 1000 + port)).timeout(SHORT).run_in(&dh.c1).is_open());
        }
        for port in 0..2 {
            assert!(!Probe::tcp((INTERNET_V6, 1000 + port)).timeout(SHORT).run_in(&dh.c3).is_open());
        }
        // Inside a network and to the published port: nothing refused.
        assert!(Probe::udp((C2_V4, SERVICE_PORT)).run_in(&dh.c1).is_open());
        assert!(Probe::tcp((HOST_V4, PUBLISHED_PORT)).run_in(&dh.internet).is_open());
        let json = status_json(&dh.host, &policy);
        let places = json["places"].as_array().unwrap();
        let refused = |family: &str| -> u64 {
            let of = |p: &&Value| p["families"].as_array().is_some_and(|f| f.iter().any(|x| x == family));
            places.iter().filter(of).map(|p| p["refused"].as_u64().unwrap()).sum()
        };
        match target {
            "table" => assert_eq!(refused("ipv4"), 7, "one table for both families: {json}"),
            _ => assert_eq!((refused("ipv4"), refused("ipv6")), (5, 2), "{json}"),
        }
        for p in places {
            // The sum is the refusing rules' counters, not the log rule's too.
            let rules = p["rules"].as_array().unwrap();
            let refusing = rules.iter().filter(|r| {
                let rule = r["rule"].as_str().unwrap();
                rule.contains("REJECT") || rule.contains(" reject ") || rule.contains("DROP") || rule.ends_with(" drop")
            });
            assert_eq!(p["refused"].as_u64(), Some(refusing.map(|r| r["packets"].as_u64().unwrap()).sum()), "{p}");
        }
        let text = dh.egress_guard_ok("status", &policy);
        assert!(text.contains("refused 5 attempt(s) since the rules were written") || target == "table", "{text}");
        assert!(text.contains("refused 7 attempt(s) since the rules were written") || target != "table", "{text}");
    }
}
