//! `cargo xtask bench`, the audit trail's rows: bounded floods of 10,000 attempts from a
//! "container" namespace through the guard's own rules (`--log --log-rate 10000/second`), read
//! by the release binary's `egress-guard log --json --output FILE`: all to one destination, and
//! a scan of 10,000 ports. Whether it keeps up (the kernel's drops it counted), how bounded its
//! output stays, and its CPU time.

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::Netns;

const FLOOD: u32 = 10_000;
/// Below the log rule's 10,000/second, so the rule logs (nearly) all of them.
const RATE: u32 = 8_000;
const BOUND: Duration = Duration::from_secs(10);
/// The "internet" address, beyond an uplink that leads nowhere: the guard refuses first.
const TARGET: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 51, 100, 2);
const PORT: u16 = 9;

/// A running `egress-guard log`, killed if the row fails half-way.
struct Log(Child);

impl Drop for Log {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Both rows, each in fresh namespaces.
pub fn log_floods(binary: &Path, dir: &Path) -> Result<(), String> {
    println!();
    log_flood(binary, dir, false)?;
    log_flood(binary, dir, true)
}

/// One row; `scan`: every attempt to another port.
fn log_flood(binary: &Path, dir: &Path, scan: bool) -> Result<(), String> {
    let host = Netns::create("eg-bench-log")?;
    let ct = Netns::create("eg-bench-logct")?;
    host.docker_user(&["iptables"])?;
    wire(&host, &ct)?;
    let guard = |args: &[&str]| {
        crate::child::run_quiet(Command::new(binary).args(args).args(["--netns", host.name()])).map(drop)
    };
    guard(&["apply", "--log", "--log-rate", "10000/second"])?;
    let file = dir.join("log-flood.jsonl");
    let _ = std::fs::remove_file(&file);
    let mut log = Log(Command::new(binary)
        .args(["log", "--json", "--docker-host", "/nonexistent/docker.sock", "--netns", host.name()])
        .arg("--output")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start egress-guard log: {e}"))?);
    let mut stderr = BufReader::new(log.0.stderr.take().ok_or("no stderr")?);
    let mut first = String::new();
    stderr.read_line(&mut first).map_err(|e| e.to_string())?;
    if !first.contains("reading nflog group") {
        return Err(format!("egress-guard log did not start: {first}"));
    }
    let (sent, send_time) = ct.run_inside(|| flood(scan))??;
    let logged = counter(&host, "NFLOG")?;
    // The kernel sends a part-filled batch after 0.1 s; the log holds attempts 1 s.
    std::thread::sleep(Duration::from_millis(1500));
    let pid = log.0.id();
    let cpu = cpu_time(pid);
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().map_err(|e| e.to_string())?;
    let mut out = String::new();
    log.0.stdout.take().ok_or("no stdout")?.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).map_err(|e| e.to_string())?;
    let status = log.0.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("egress-guard log exited {status}: {rest}"));
    }
    let lines: Vec<&str> = out.lines().collect();
    let accounted: u64 = lines.iter().map(|l| accounts_for(l)).sum();
    let lost: u64 = lines.iter().filter(|l| l.contains("\"type\":\"lost\"")).map(|l| accounts_for(l)).sum();
    let kept = std::fs::read_to_string(&file).map_or(0, |t| t.lines().count());
    let to = if scan { "10,000 ports" } else { "one destination" };
    println!(
        "log flood: {sent} UDP attempts at {:.1}k/s from one container to {to}, {logged} logged by the rule; \
         `egress-guard log` accounted for {accounted} ({lost} reported lost by the kernel) in {} line(s) out and \
         {kept} in the file; CPU {:.0} ms ({:.1} µs per attempt)",
        f64::from(sent) / send_time.as_secs_f64().max(1e-9) / 1e3,
        lines.len(),
        cpu.as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 1e6 / (logged.max(1) as f64)
    );
    if accounted != logged {
        return Err(format!("the log accounted for {accounted} of {logged} logged attempts:\n{out}"));
    }
    Ok(())
}

/// `docker0` (172.17.0.1/16) with one veth "container" (172.17.0.2), and a veth uplink on
/// 198.51.100.1/24, forwarding on: the guard's FORWARD path, without a real Docker.
fn wire(host: &Netns, ct: &Netns) -> Result<(), String> {
    let batch = |ns: &Netns, script: String| -> Result<(), String> {
        let path = std::env::temp_dir().join(format!("eg-bench-log-{}.ip", std::process::id()));
        std::fs::write(&path, script).map_err(|e| e.to_string())?;
        let result = ns.exec(&["ip", "-batch", &path.to_string_lossy()]).map(drop);
        let _ = std::fs::remove_file(&path);
        result
    };
    batch(
        host,
        format!(
            "link add docker0 type bridge\naddr add 172.17.0.1/16 dev docker0\nlink set docker0 up\n\
             link add veth-ct master docker0 type veth peer name eth0 netns {}\nlink set veth-ct up\n\
             link add up0 type veth peer name up1\naddr add 198.51.100.1/24 dev up0\nlink set up1 up\nlink set up0 up\n",
            ct.name()
        ),
    )?;
    host.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    batch(
        ct,
        "addr add 172.17.0.2/16 dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via 172.17.0.1\n".into(),
    )
}

/// Paced datagrams, bounded in count and time; to one port, or (`scan`) each to the next.
fn flood(scan: bool) -> Result<(u32, Duration), String> {
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut sent = 0u32;
    while sent < FLOOD && start.elapsed() < BOUND {
        if start.elapsed().as_secs_f64() * f64::from(RATE) < f64::from(sent) {
            std::hint::spin_loop();
            continue;
        }
        let port = if scan { 1 + (sent % 10_000) as u16 } else { PORT };
        if socket.send_to(&sent.to_be_bytes(), (TARGET, port)).is_ok() {
            sent += 1;
        }
    }
    Ok((sent, start.elapsed()))
}

/// Packets counted by our rule whose `iptables -L` target is `target`.
fn counter(host: &Netns, target: &str) -> Result<u64, String> {
    let out = host.exec(&["iptables", "-L", "DOCKER-USER", "-v", "-n", "-x"])?;
    out.lines()
        .find(|l| l.split_whitespace().nth(2) == Some(target) && l.contains("egress-guard"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no {target} rule of ours:\n{out}"))
}

/// The attempts one JSON line accounts for: an attempt one, a summary, overflow or loss its
/// `"count"` (read by hand: xtask has no JSON parser, and the lines are egress-guard's own).
fn accounts_for(line: &str) -> u64 {
    if line.contains("\"type\":\"attempt\"") {
        return 1;
    }
    let Some(rest) = line.split("\"count\":").nth(1) else { return 0 };
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0)
}

/// User and system CPU time of a process (/proc/PID/stat, clock ticks of 1/100 s).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}
