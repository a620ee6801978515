//! `cargo xtask bench` runs this in a fresh network namespace (the "host"): a lookup from a
//! container through `egress-guard watch --allow-domain` (the redirect of port 53, watch's
//! forwarder, its grant) next to the same lookup straight to dnsmasq before watch runs (median
//! and p99; a name whose grant is cached, and names that each need a commit), and the lookups
//! per second watch answers with all its threads on one core. The container and the
//! "internet" (dnsmasq on 198.51.100.53) are namespaces of its own, deleted however it ends;
//! every query stays inside them, and every loop is bounded in count and time.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use nix::sched::{setns, CloneFlags};

#[path = "shared/dns_client.rs"]
mod dns_client;
#[path = "shared/shell.rs"]
mod shell;
use dns_client::{micros, percentile, pin, throughput, timed};
use shell::shell;

const DNSMASQ: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
/// Names that each resolve to an address of their own (so each lookup needs a commit).
const FRESH_NAMES: u32 = 4000;
const LOOKUPS: usize = 2000;
const THROUGHPUT_FOR: Duration = Duration::from_secs(3);
const CLIENTS: usize = 8;

fn main() -> ExitCode {
    match run() {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dns_watch_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A namespace of this run, `eg-<pid>-dnsw-<role>`, deleted on drop.
struct Ns(String);

impl Ns {
    fn add(role: &str) -> Result<Ns, String> {
        let name = format!("eg-{}-dnsw-{role}", std::process::id());
        shell("ip", &["netns", "add", &name], "")?;
        Ok(Ns(name))
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A child killed however the bench ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Moves the calling thread into `ns` (it stays there).
fn enter(ns: &str) -> Result<(), String> {
    let file = File::open(ns).map_err(|e| format!("{ns}: {e}"))?;
    setns(file, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {ns}: {e}"))
}

/// Runs `f` on a thread inside `ns`.
fn inside<T: Send>(ns: &str, f: impl FnOnce() -> Result<T, String> + Send) -> Result<T, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns)?;
            f()
        })
        .join()
        .map_err(|_| "a bench thread panicked".to_string())?
    })
}

fn run() -> Result<String, String> {
    let binary = std::env::args().nth(1).ok_or("usage: dns_watch_bench EGRESS_GUARD")?;
    let container = Ns::add("c")?;
    let internet = Ns::add("inet")?;
    wire(&container, &internet)?;
    let dir = std::env::temp_dir().join(format!("eg-dnsw-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let _dnsmasq = Killed(dnsmasq(&internet, &dir)?);
    let server = SocketAddr::from((DNSMASQ, 53));
    let c = container.path();
    let deadline = Instant::now() + Duration::from_secs(5);
    while inside(&c, || timed(server, 1, |_| "cached.bench.test".into(), RecordType::A)).is_err() {
        if Instant::now() > deadline {
            return Err("dnsmasq did not answer within 5 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // Straight to dnsmasq, before the guard: the container's packets are only forwarded.
    let cached = |_: usize| "cached.bench.test".to_string();
    inside(&c, || timed(server, LOOKUPS / 4, cached, RecordType::A))?;
    let direct_cached = inside(&c, || timed(server, LOOKUPS, cached, RecordType::A))?;
    let direct_fresh = inside(&c, || timed(server, LOOKUPS, |i| format!("n{i}.bench.test"), RecordType::AAAA))?;

    let (watch, heals) = start_watch(&binary, &dir)?;
    inside(&c, || timed(server, LOOKUPS / 4, cached, RecordType::A))?;
    let heals_before = heals.load(Ordering::Relaxed);
    let via_cached = inside(&c, || timed(server, LOOKUPS, cached, RecordType::A))?;
    let heals_cached = heals.load(Ordering::Relaxed) - heals_before;
    let offset = LOOKUPS;
    let via_fresh = inside(&c, || timed(server, LOOKUPS, |i| format!("n{}.bench.test", i + offset), RecordType::AAAA))?;
    let heals_fresh = heals.load(Ordering::Relaxed) - heals_before - heals_cached;

    // watch (every thread) on CPU 0, the clients on CPU 1 when there is one.
    pin(watch.0.id(), 0)?;
    let client_cpu = usize::from(std::thread::available_parallelism().map_or(1, |n| n.get()) > 1);
    let heals_before = heals.load(Ordering::Relaxed);
    let c2 = c.clone();
    let rate = throughput(server, "cached.bench.test", CLIENTS, THROUGHPUT_FOR, move || {
        let _ = enter(&c2);
        let _ = pin(0, client_cpu);
    })?;
    let heals_rate = heals.load(Ordering::Relaxed) - heals_before;
    drop(watch);
    let _ = std::fs::remove_dir_all(&dir);

    let mut out = String::from("dns through watch (a container's UDP lookup: bridge, redirect, forwarder, dnsmasq):\n");
    let row = |out: &mut String, label: &str, direct: &[Duration], via: &[Duration], heals: usize| {
        let (dm, dp) = (percentile(direct, 50), percentile(direct, 99));
        let (fm, fp) = (percentile(via, 50), percentile(via, 99));
        let _ = writeln!(
            out,
            "  {label:<30} direct {:>7.1} µs / p99 {:>7.1} µs   via watch {:>7.1} µs / p99 {:>7.1} µs   added {:>6.1} µs   (watch healed {heals}×)",
            micros(dm),
            micros(dp),
            micros(fm),
            micros(fp),
            micros(fm.saturating_sub(dm)),
        );
    };
    row(&mut out, "one name, grant cached", &direct_cached, &via_cached, heals_cached);
    row(&mut out, "fresh names (a commit each)", &direct_fresh, &via_fresh, heals_fresh);
    let _ = writeln!(
        out,
        "  lookups per second, watch on one core ({CLIENTS} clients on another, one name): {rate:.0}   (watch healed {heals_rate}×)"
    );
    Ok(out)
}

/// host: docker0 172.17.0.1/16 with the container's veth, uplink 198.51.100.1/24 to the
/// internet; container 172.17.0.2/16; internet 198.51.100.53/24 with a route back to docker0's
/// subnet (no masquerade needed).
fn wire(container: &Ns, internet: &Ns) -> Result<(), String> {
    let (c, i) = (&container.0, &internet.0);
    shell(
        "ip",
        &["-batch", "-"],
        &format!(
            "link set lo up\n\
             link add docker0 type bridge\naddr add 172.17.0.1/16 dev docker0\nlink set docker0 up\n\
             link add veth-c master docker0 type veth peer name eth0 netns {c}\nlink set veth-c up\n\
             link add eth0 type veth peer name eth0 netns {i}\naddr add 198.51.100.1/24 dev eth0\nlink set eth0 up\n"
        ),
    )?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| format!("ip_forward: {e}"))?;
    shell(
        "ip",
        &["-n", c, "-batch", "-"],
        "link set lo up\naddr add 172.17.0.2/16 dev eth0\nlink set eth0 up\nroute add default via 172.17.0.1\n",
    )?;
    shell(
        "ip",
        &["-n", i, "-batch", "-"],
        &format!(
            "link set lo up\naddr add {DNSMASQ}/24 dev eth0\nlink set eth0 up\nroute add 172.17.0.0/16 via 198.51.100.1\n"
        ),
    )?;
    Ok(())
}

fn dnsmasq(internet: &Ns, dir: &std::path::Path) -> Result<Child, String> {
    let hosts: String =
        (0..FRESH_NAMES).map(|i| format!("2001:db8::{:x}:{:x} n{i}.bench.test\n", i >> 16 | 1, i & 0xffff)).collect();
    std::fs::write(dir.join("hosts"), hosts).map_err(|e| e.to_string())?;
    Command::new("ip")
        .args(["netns", "exec", &internet.0, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts"])
        .args(["--pid-file=", "--user=root", "--bind-interfaces", &format!("--listen-address={DNSMASQ}")])
        .args(["--port=53", "--local=/test/", "--local-ttl=300", "--cache-size=10000"])
        .arg(format!("--addn-hosts={}", dir.join("hosts").display()))
        .arg("--host-record=cached.bench.test,198.51.100.80,300")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start dnsmasq (apt-get install -y dnsmasq-base): {e}"))
}

/// `watch --allow-domain '*.bench.test'` here, returned once its forwarder answers, with a
/// count of its heals (each "the ruleset changed" line) kept by a reader of its stdout.
fn start_watch(binary: &str, dir: &std::path::Path) -> Result<(Killed, Arc<AtomicUsize>), String> {
    let state = dir.join("state");
    let mut child = Command::new(binary)
        .args(["watch", "--allow-domain", "*.bench.test", "--dns-upstream", &DNSMASQ.to_string()])
        .env("EG_RUN_DIR", &state)
        .env("EG_STATE_DIR", &state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start watch: {e}"))?;
    let stdout = child.stdout.take().ok_or("watch's stdout")?;
    let watch = Killed(child);
    let heals = Arc::new(AtomicUsize::new(0));
    let (ready, started) = mpsc::channel();
    let counted = Arc::clone(&heals);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("answering containers' DNS") {
                let _ = ready.send(());
            }
            if line.contains("the ruleset changed") {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    started.recv_timeout(Duration::from_secs(10)).map_err(|_| "watch's forwarder did not start within 10 s")?;
    Ok((watch, heals))
}
