//! `cargo xtask bench` runs this in a fresh network namespace: the latency a lookup gains by going
//! through the DNS forwarder instead of straight to the same upstream (median and p99; a name
//! whose grant is cached, and names that each need a commit), and the lookups per second the
//! forwarder answers on one core. The upstream is dnsmasq on 127.0.0.1; every query goes to
//! loopback, and every loop is bounded in count and time.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use egress_guard::dns::forwarder::{Config, Forwarder, Refusal, Refusals};
use egress_guard::dns::grant::Lifetimes;
use egress_guard::dns::names::{parse_allow_domain, DomainList};
use egress_guard::dns::nft_allower::{GrantSets, NftAllower};
use hickory_proto::rr::RecordType;

#[path = "shared/dns_client.rs"]
mod dns_client;
#[path = "shared/shell.rs"]
mod shell;
use dns_client::{micros, percentile, pin, throughput, timed};
use shell::shell;

const UPSTREAM: u16 = 5300;
const FORWARDER: u16 = 5301;
const TABLE: &str = "eg_dns_bench";
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
            eprintln!("dns_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Quiet;

impl Refusals for Quiet {
    fn refused(&self, _: &Refusal) {}
}

struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run() -> Result<String, String> {
    shell("ip", &["link", "set", "lo", "up"], "")?;
    let dir = std::env::temp_dir().join(format!("eg-dns-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let hosts: String =
        (0..FRESH_NAMES).map(|i| format!("2001:db8::{:x}:{:x} n{i}.bench.test\n", i >> 16 | 1, i & 0xffff)).collect();
    std::fs::write(dir.join("hosts"), hosts).map_err(|e| e.to_string())?;
    let _dnsmasq = Dnsmasq(
        Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--pid-file=",
                "--user=root",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                &format!("--port={UPSTREAM}"),
                "--local=/test/",
                "--local-ttl=300",
                "--cache-size=10000",
                &format!("--addn-hosts={}", dir.join("hosts").display()),
                "--host-record=cached.bench.test,198.51.100.80,300",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start dnsmasq (apt-get install -y dnsmasq-base): {e}"))?,
    );
    let sets = GrantSets::named_in(TABLE);
    shell("nft", &["-f", "-"], &format!("table inet {TABLE} {{\n{}}}\n", sets.nft_declarations()))?;
    let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, UPSTREAM));
    let via = SocketAddr::from((Ipv4Addr::LOCALHOST, FORWARDER));
    wait_for(upstream)?;

    let domains = DomainList::new(&[parse_allow_domain("*.bench.test").map_err(|e| e.to_string())?]);
    let mut config = Config::new(FORWARDER, vec![upstream], domains);
    config.lifetimes = Lifetimes::default();
    let allower = NftAllower::new(sets).map_err(|e| e.to_string())?;
    let forwarder = Forwarder::start(config, allower, Quiet).map_err(|e| e.to_string())?;

    let mut out = String::from("dns forwarder (UDP over loopback, dnsmasq upstream):\n");
    let row = |out: &mut String, label: &str, direct: &[Duration], forwarded: &[Duration]| {
        let (dm, dp) = (percentile(direct, 50), percentile(direct, 99));
        let (fm, fp) = (percentile(forwarded, 50), percentile(forwarded, 99));
        let _ = writeln!(
            out,
            "  {label:<38} direct {:>7.1} µs / p99 {:>7.1} µs   via forwarder {:>7.1} µs / p99 {:>7.1} µs   added {:>6.1} µs / p99 {:>7.1} µs",
            micros(dm),
            micros(dp),
            micros(fm),
            micros(fp),
            micros(fm.saturating_sub(dm)),
            micros(fp.saturating_sub(dp))
        );
    };
    // Warm dnsmasq's cache and ours.
    timed(upstream, LOOKUPS / 4, |_| "cached.bench.test".into(), RecordType::A)?;
    timed(via, LOOKUPS / 4, |_| "cached.bench.test".into(), RecordType::A)?;
    let direct = timed(upstream, LOOKUPS, |_| "cached.bench.test".into(), RecordType::A)?;
    let forwarded = timed(via, LOOKUPS, |_| "cached.bench.test".into(), RecordType::A)?;
    row(&mut out, "one name, grant cached (no commit)", &direct, &forwarded);
    // Fresh names: each forwarded lookup commits one element before it answers.
    let direct = timed(upstream, LOOKUPS, |i| format!("n{i}.bench.test"), RecordType::AAAA)?;
    let before = forwarder.counters().commits;
    let offset = LOOKUPS;
    let forwarded = timed(via, LOOKUPS, |i| format!("n{}.bench.test", i + offset), RecordType::AAAA)?;
    let commits = forwarder.counters().commits - before;
    row(&mut out, &format!("fresh names ({commits} commits)"), &direct, &forwarded);

    // Throughput with the whole process (forwarder and clients) on one core.
    pin(0, 0)?;
    let rate = throughput(via, "cached.bench.test", CLIENTS, THROUGHPUT_FOR, || ())?;
    let _ = writeln!(out, "  lookups per second on one core ({CLIENTS} clients, cached grant): {rate:.0}");
    forwarder.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

fn wait_for(server: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while timed(server, 1, |_| "cached.bench.test".into(), RecordType::A).is_err() {
        if Instant::now() > deadline {
            return Err("dnsmasq did not answer within 5 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
