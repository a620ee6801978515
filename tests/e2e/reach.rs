//! What the label scenarios judge by: many (container, destination) paths probed at once, each
//! wanted open or closed, every mismatch reported together; a one-shot `docker run --rm` whose
//! entrypoint dials out at once; and the elements of our table's per-source sets.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::harness::{Outcome, Probe, Watch};
use crate::{Container, Dockerd};

/// The per-container allowance label (`--allow` syntax, comma-separated).
pub const ALLOW: &str = "egress-guard.allow";
/// `open` or `closed`.
pub const EGRESS: &str = "egress-guard.egress";

/// How a path is probed.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    /// busybox `nc` inside the container: a line echoed over TCP.
    Tcp,
    /// The harness's UDP probe from the container's namespace (busybox's nc has no -u).
    Udp,
    /// The harness's TCP probe from the container's namespace: needs no `docker exec`, so it
    /// works while dockerd is down.
    TcpProbe,
}

/// One path and whether it is wanted open.
pub struct Path<'a> {
    pub from: &'a Container,
    pub to: SocketAddr,
    pub via: Via,
    pub open: bool,
}

pub fn tcp(from: &Container, to: impl Into<IpAddr>, port: u16, open: bool) -> Path<'_> {
    Path { from, to: SocketAddr::new(to.into(), port), via: Via::Tcp, open }
}

/// TCP without dockerd's help (see [`Via::TcpProbe`]).
pub fn tcp_probe(from: &Container, to: impl Into<IpAddr>, port: u16, open: bool) -> Path<'_> {
    Path { from, to: SocketAddr::new(to.into(), port), via: Via::TcpProbe, open }
}

pub fn udp(from: &Container, to: impl Into<IpAddr>, port: u16, open: bool) -> Path<'_> {
    Path { from, to: SocketAddr::new(to.into(), port), via: Via::Udp, open }
}

impl Path<'_> {
    fn probe(&self) -> Outcome {
        match self.via {
            Via::Tcp => self.from.nc(self.to),
            Via::Udp => self.from.probe(Probe::udp(self.to)),
            Via::TcpProbe => self.from.probe(Probe::tcp(self.to)),
        }
    }

    fn describe(&self, outcome: Outcome) -> String {
        let want = if self.open { "open" } else { "closed" };
        format!("  {} -> {} {:?}: want {want}, got {outcome}", self.from, self.to, self.via)
    }
}

/// Probes every path at once; the ones that are not as wanted, described.
pub fn mismatches(paths: &[Path]) -> Vec<String> {
    std::thread::scope(|scope| {
        let running: Vec<_> = paths.iter().map(|p| scope.spawn(move || (p, p.probe()))).collect();
        running
            .into_iter()
            .map(|t| t.join().expect("probe thread"))
            .filter(|(p, outcome)| outcome.is_open() != p.open)
            .map(|(p, outcome)| p.describe(outcome))
            .collect()
    })
}

/// Panics listing every path that is not as wanted.
pub fn assert_paths(paths: &[Path], context: &str) {
    let wrong = mismatches(paths);
    assert!(wrong.is_empty(), "{context}: {} of {} paths wrong:\n{}", wrong.len(), paths.len(), wrong.join("\n"));
}

/// Probes until every path is as wanted (up to 10 s; watch's first apply, or a change it
/// follows, takes a moment), then asserts it.
pub fn settle(paths: &[Path], context: &str) -> Duration {
    let started = Instant::now();
    while !mismatches(paths).is_empty() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_paths(paths, context);
    started.elapsed()
}

/// `watch --docker-host <dk's socket> EXTRA…` in dk's namespace, stdout and stderr piped.
pub fn watch_piped(dk: &Dockerd, extra: &[&str]) -> Watch {
    let socket = dk.socket();
    let mut args = vec!["--docker-host", socket.as_str()];
    args.extend(extra);
    Watch::start_piped(&dk.host, &args)
}

/// What a one-shot container printed, and how long `docker run` took.
pub struct Shot {
    /// Every destination echoed its line.
    pub echoed: bool,
    /// How many did.
    pub echoes: usize,
    pub output: String,
    pub started: Instant,
    pub took: Duration,
}

/// `docker run --rm --name NAME ARGS… IMAGE sh -c 'echo T1 | nc -w 3 TO1 PORT1; …'`: the
/// entrypoint dials `to` in order at once, before anything else could happen in the container.
pub fn shot(dk: &Dockerd, name: &str, args: &[&str], to: &[SocketAddr]) -> Shot {
    let tokens: Vec<String> = to.iter().map(|t| format!("shot {name} {t}")).collect();
    let dials: Vec<String> =
        to.iter().zip(&tokens).map(|(t, token)| format!("echo '{token}' | nc -w 3 {} {}", t.ip(), t.port())).collect();
    let script = dials.join("; ");
    let mut all = vec!["run", "--rm", "--name", name];
    all.extend(args);
    all.extend([crate::image::IMAGE, "sh", "-c", &script]);
    let started = Instant::now();
    let out = dk.try_docker(&all);
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let echoes = tokens.iter().filter(|token| stdout.lines().any(|l| l == *token)).count();
    let echoed = echoes == tokens.len();
    let output = format!("{}{}", stdout.trim(), String::from_utf8_lossy(&out.stderr).trim());
    Shot { echoed, echoes, output, started, took }
}

/// The addresses in `nft list set inet egress_guard SET`'s elements: single ones, both ends
/// of a range, the network of a prefix.
pub fn set_addresses(dk: &Dockerd, set: &str) -> Vec<IpAddr> {
    let text = dk.host.run(&["nft", "list", "set", "inet", "egress_guard", set]);
    let elements = text.split_once("elements = {").map_or("", |(_, e)| e);
    elements
        .split(|c: char| c.is_whitespace() || c == ',' || c == '}')
        .flat_map(|word| word.split('-'))
        .filter_map(|word| word.split('/').next()?.parse().ok())
        .collect()
}
