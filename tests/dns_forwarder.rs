//! The DNS forwarder behind `--allow-domain`, proven by packets: dnsmasq serves a `.test` zone in
//! the internet namespace, the forwarder runs on a thread in the host namespace, and a test
//! table (nat redirect of port 53 from the bridges, a forward chain open only to the timeout
//! sets) stands in for the table backend. Containers resolve and connect; names not allowed
//! are refused without reaching dnsmasq; grants expire with their TTL; 500 lookups each
//! followed at once by a connection all succeed.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use egress_guard::dns::forwarder::{Config, Forwarder, Refusal, Refusals};
use egress_guard::dns::grant::Lifetimes;
use egress_guard::dns::names::{parse_allow_domain, DomainList};
use egress_guard::dns::nft_allower::{GrantSets, NftAllower};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::harness::{self, *};

/// The forwarder's port in the host namespace; the nat rules send containers' port 53 here.
const FORWARDER_PORT: u16 = 5353;
/// dnsmasq's addresses in the internet namespace (port 53).
pub(crate) const DNS_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
pub(crate) const DNS_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53);
/// The line-echo port every internet address of these tests serves.
pub(crate) const ECHO_PORT: u16 = 81;
/// pypi.test (allowed) and evil.test (not allowed) resolve here.
pub(crate) const PYPI_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 80);
pub(crate) const PYPI_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x80);
pub(crate) const EVIL_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);
/// cdn.example.test, which files.pypi.test CNAMEs to.
pub(crate) const CDN_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 81);
/// short.test, TTL 1.
pub(crate) const SHORT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 82);
/// race-N.test resolves to 2001:db8::1:N, all local to the internet namespace by one route.
pub(crate) const RACE_NAMES: u16 = 500;
const TEST_TABLE: &str = "eg_dns_test";

/// The emulated Docker host plus dnsmasq, a line echo, the test table and the forwarder.
struct Fixture {
    // Dropped first: the forwarder's threads stop before the namespaces go.
    forwarder: Option<Forwarder>,
    refusals: Arc<Mutex<Vec<Refusal>>>,
    _echo: LineEcho,
    dnsmasq: Dnsmasq,
    dh: DockerHost,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Refusal>>>);

impl Refusals for Recorder {
    fn refused(&self, refusal: &Refusal) {
        self.0.lock().unwrap().push(refusal.clone());
    }
}

impl Fixture {
    fn new(allow: &[&str], lifetimes: Lifetimes) -> Fixture {
        let dh = DockerHost::new();
        dh.internet.ip_batch(&format!(
            "addr add {DNS_V4}/24 dev eth0\naddr add {DNS_V6}/64 dev eth0 nodad\n\
             addr add {PYPI_V4}/24 dev eth0\naddr add {PYPI_V6}/64 dev eth0 nodad\n\
             addr add {EVIL_V4}/24 dev eth0\naddr add 2001:db8::66/64 dev eth0 nodad\n\
             addr add {CDN_V4}/24 dev eth0\naddr add {SHORT_V4}/24 dev eth0\n\
             route add local 2001:db8::1:0/112 dev lo\n"
        ));
        // The race addresses answer no neighbour solicitation: route them to the internet host.
        dh.host.ip_batch(&format!("route add 2001:db8::1:0/112 via {INTERNET_V6} dev eth0\n"));
        let echo = LineEcho::start(&dh.internet);
        let dnsmasq = Dnsmasq::start(&dh.internet);
        let sets = GrantSets::named_in(TEST_TABLE);
        dh.host.run_with_input(&["nft", "-f", "-"], &test_table(&sets));

        let entries: Vec<_> = allow.iter().map(|a| parse_allow_domain(a).unwrap()).collect();
        let mut config =
            Config::new(FORWARDER_PORT, vec![SocketAddr::new(DNS_V4.into(), 53)], DomainList::new(&entries));
        config.lifetimes = lifetimes;
        let recorder = Recorder::default();
        let refusals = Arc::clone(&recorder.0);
        let forwarder = dh.host.enter(move || {
            let allower = NftAllower::new(sets).expect("netlink in the host namespace");
            Forwarder::start(config, allower, recorder).expect("the forwarder starts")
        });
        Fixture { forwarder: Some(forwarder), refusals, _echo: echo, dnsmasq, dh }
    }

    fn forwarder(&self) -> &Forwarder {
        self.forwarder.as_ref().unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(f) = self.forwarder.take() {
            f.stop();
        }
    }
}

/// The table the tests stand the table backend in with: the grant sets, containers' DNS
/// redirected to the forwarder, and new connections out of the bridges refused unless granted.
fn test_table(sets: &GrantSets) -> String {
    format!(
        "table inet {TEST_TABLE} {{\n{decl}\
         chain prerouting {{\n  type nat hook prerouting priority -101; policy accept;\n  \
           iifname \"docker0\" meta l4proto {{ tcp, udp }} th dport 53 redirect to :{FORWARDER_PORT}\n  \
           iifname \"br-*\" meta l4proto {{ tcp, udp }} th dport 53 redirect to :{FORWARDER_PORT}\n}}\n\
         chain forward {{\n  type filter hook forward priority -1; policy accept;\n  \
           ct state established,related accept\n  \
           iifname \"docker0\" oifname != \"docker0\" jump guard\n  \
           iifname \"br-*\" oifname != \"br-*\" jump guard\n}}\n\
         chain guard {{\n  \
           ip daddr @{v4} accept\n  ip6 daddr @{v6} accept\n  \
           ip daddr . meta l4proto . th dport @{v4p} accept\n  ip6 daddr . meta l4proto . th dport @{v6p} accept\n  \
           meta l4proto tcp reject with tcp reset\n  reject with icmpx admin-prohibited\n}}\n}}\n",
        decl = sets.nft_declarations(),
        v4 = sets.v4,
        v6 = sets.v6,
        v4p = sets.v4_port,
        v6p = sets.v6_port,
    )
}

// ---- dnsmasq ----

/// dnsmasq in the foreground in a namespace, its query log in a temp file; killed on drop.
pub(crate) struct Dnsmasq {
    child: Child,
    dir: PathBuf,
}

impl Dnsmasq {
    pub(crate) fn start(ns: &Netns) -> Dnsmasq {
        let dir = std::env::temp_dir().join(format!("eg-dnsmasq-{}", ns.name()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut hosts: String = (1..=RACE_NAMES).map(|i| format!("{} race-{i}.test\n", race_addr(i))).collect();
        hosts.extend((0..BIG_RECORDS).map(|i| format!("{} big.test\n", big_addr(i))));
        std::fs::write(dir.join("race.hosts"), hosts).unwrap();
        let log = dir.join("queries.log");
        let args = [
            "--keep-in-foreground".to_string(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--pid-file=".into(),
            "--user=root".into(),
            "--bind-interfaces".into(),
            format!("--listen-address={DNS_V4},{DNS_V6}"),
            "--port=53".into(),
            "--local=/test/".into(),
            "--log-queries".into(),
            format!("--log-facility={}", log.display()),
            format!("--addn-hosts={}", dir.join("race.hosts").display()),
            "--local-ttl=60".into(),
            format!("--host-record=pypi.test,{PYPI_V4},{PYPI_V6},60"),
            format!("--host-record=evil.test,{EVIL_V4},2001:db8::66,60"),
            format!("--host-record=cdn.example.test,{CDN_V4},60"),
            format!("--host-record=short.test,{SHORT_V4},1"),
            "--cname=files.pypi.test,cdn.example.test,300".into(),
            "--cname=alias.evil.test,pypi.test,300".into(),
        ];
        let child = ns
            .command("dnsmasq")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dnsmasq (apt-get install -y dnsmasq-base): {e}"));
        let dnsmasq = Dnsmasq { child, dir };
        // Ready when it answers.
        let server = SocketAddr::new(DNS_V4.into(), 53);
        let deadline = Instant::now() + Duration::from_secs(5);
        while ns.enter(|| lookup_here(server, "pypi.test", RecordType::A, false)).is_err() {
            assert!(Instant::now() < deadline, "dnsmasq did not answer within 5 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        dnsmasq
    }

    /// Every query dnsmasq has logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("queries.log")).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// big.test has this many AAAA records: more than 512 bytes, so UDP without EDNS truncates.
const BIG_RECORDS: u16 = 30;

fn big_addr(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, 0xf000 + i)
}

pub(crate) fn race_addr(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, i)
}

// ---- a line echo on every address ----

/// TCP line echo on port 81 of every address of a namespace (a dual-stack socket on `::`,
/// which also takes the AnyIP range): echoes each line until the client closes, so one
/// connection can be kept open across a grant's expiry.
pub(crate) struct LineEcho {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LineEcho {
    pub(crate) fn start(ns: &Netns) -> LineEcho {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let listener = ns.enter(|| TcpListener::bind((Ipv6Addr::UNSPECIFIED, ECHO_PORT))).expect("bind [::]:81");
        listener.set_nonblocking(true).unwrap();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        std::thread::spawn(move || echo_lines(stream));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        LineEcho { stop, thread: Some(thread) }
    }
}

fn echo_lines(stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
        if (&stream).write_all(line.as_bytes()).is_err() {
            return;
        }
        line.clear();
    }
}

impl Drop for LineEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- a client inside a container ----

/// The rcode and the addresses of an answer.
pub(crate) type Looked = (ResponseCode, Vec<IpAddr>);

/// One query from the calling thread's namespace, over UDP or TCP, with a 2 s timeout.
pub(crate) fn lookup_here(server: SocketAddr, name: &str, qtype: RecordType, tcp: bool) -> Result<Looked, String> {
    let id = (std::process::id() as u16) ^ (Instant::now().elapsed().subsec_nanos() as u16) ^ 0x5a5a;
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    let fqdn = Name::from_ascii(format!("{name}.")).map_err(|e| e.to_string())?;
    msg.add_query(Query::query(fqdn, qtype));
    let query = msg.to_vec().map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(2);
    let bytes = if tcp {
        let mut stream = TcpStream::connect_timeout(&server, timeout).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(timeout)).unwrap();
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        stream.write_all(&framed).map_err(|e| e.to_string())?;
        let mut len = [0u8; 2];
        std::io::Read::read_exact(&mut stream, &mut len).map_err(|e| format!("read: {e}"))?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        std::io::Read::read_exact(&mut stream, &mut answer).map_err(|e| format!("read: {e}"))?;
        answer
    } else {
        let local: SocketAddr = if server.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
        let socket = UdpSocket::bind(local).map_err(|e| e.to_string())?;
        socket.set_read_timeout(Some(timeout)).unwrap();
        socket.connect(server).map_err(|e| e.to_string())?;
        socket.send(&query).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        let len = socket.recv(&mut buf).map_err(|e| format!("recv: {e}"))?;
        buf[..len].to_vec()
    };
    let answer = Message::from_vec(&bytes).map_err(|e| e.to_string())?;
    if answer.metadata.id != id || answer.queries.len() != 1 || answer.queries[0].name() != msg.queries[0].name() {
        return Err(format!("an answer to another query: {answer}"));
    }
    let addrs = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    Ok((answer.metadata.response_code, addrs))
}

pub(crate) fn lookup(ns: &Netns, server: IpAddr, name: &str, qtype: RecordType, tcp: bool) -> Looked {
    let server = SocketAddr::new(server, 53);
    ns.enter(|| lookup_here(server, name, qtype, tcp))
        .unwrap_or_else(|e| panic!("{ns}: {name} {qtype} via {server}: {e}"))
}

pub(crate) fn echo_probe(to: IpAddr) -> Probe {
    Probe::tcp((to, ECHO_PORT)).timeout(Duration::from_millis(500))
}

pub(crate) fn noerror(addrs: &[IpAddr]) -> Looked {
    (ResponseCode::NoError, addrs.to_vec())
}

// ---- the tests ----

#[test]
fn an_allowed_name_resolves_over_udp_and_tcp_in_both_families_and_connects() {
    harness::require_kernel!();
    let fx = Fixture::new(&["pypi.test"], Lifetimes::default());
    let (v4, v6) = (IpAddr::V4(PYPI_V4), IpAddr::V6(PYPI_V6));
    for to in [v4, v6] {
        assert_ne!(echo_probe(to).run_in(&fx.dh.c1), Outcome::Open, "{to} is closed before any lookup");
    }
    // Each transport and family of the question, to dnsmasq's address and to another one:
    // every query to port 53 from a bridge lands at the forwarder.
    for (server, tcp) in [(IpAddr::V4(DNS_V4), false), (IpAddr::V6(DNS_V6), true), (IpAddr::V4(INTERNET_V4), true)] {
        assert_eq!(lookup(&fx.dh.c1, server, "pypi.test", RecordType::A, tcp), noerror(&[v4]));
    }
    assert_eq!(echo_probe(v4).run_in(&fx.dh.c1), Outcome::Open);
    assert_ne!(echo_probe(v6).run_in(&fx.dh.c1), Outcome::Open, "the AAAA was not asked for yet");
    assert_eq!(lookup(&fx.dh.c3, IpAddr::V6(DNS_V6), "PyPI.test", RecordType::AAAA, false), noerror(&[v6]));
    assert_eq!(echo_probe(v6).run_in(&fx.dh.c3), Outcome::Open);
    // Only that address: the rest of the internet stays closed.
    assert_ne!(echo_probe(IpAddr::V4(INTERNET_V4)).run_in(&fx.dh.c1), Outcome::Open);
    let counters = fx.forwarder().counters();
    assert_eq!((counters.queries, counters.forwarded, counters.refused), (4, 4, 0), "{counters:?}");
    assert_eq!(counters.commits, 2, "the A once (then cached), the AAAA once: {counters:?}");
    assert!(fx.dnsmasq.log().contains("query[A] pypi.test from 198.51.100.1"), "{}", fx.dnsmasq.log());
}

#[test]
fn a_name_not_allowed_gets_nxdomain_never_reaches_dnsmasq_and_its_address_stays_closed() {
    harness::require_kernel!();
    let fx = Fixture::new(&["pypi.test", "*.pypi.test"], Lifetimes::default());
    for tcp in [false, true] {
        let got = lookup(&fx.dh.c3, IpAddr::V4(DNS_V4), "evil.test", RecordType::A, tcp);
        assert_eq!(got, (ResponseCode::NXDomain, vec![]));
    }
    // A name that is not allowed is refused even when it would lead to an allowed one.
    let got = lookup(&fx.dh.c3, IpAddr::V6(DNS_V6), "alias.evil.test", RecordType::A, false);
    assert_eq!(got, (ResponseCode::NXDomain, vec![]));
    assert_ne!(echo_probe(IpAddr::V4(EVIL_V4)).run_in(&fx.dh.c3), Outcome::Open, "closed by address too");
    // dnsmasq saw none of them: an allowed lookup after them shows its log works.
    assert_eq!(lookup(&fx.dh.c1, IpAddr::V4(DNS_V4), "pypi.test", RecordType::A, false).0, ResponseCode::NoError);
    let log = fx.dnsmasq.log();
    assert!(log.contains("query[A] pypi.test"), "{log}");
    assert!(!log.contains("evil"), "a refused name reached dnsmasq:\n{log}");
    let refusals = fx.refusals.lock().unwrap().clone();
    let c3: IpAddr = C3_V4.into();
    let want = |name: &str| Refusal { client: c3, name: name.into(), qtype: RecordType::A };
    assert_eq!(
        refusals,
        [want("evil.test"), want("evil.test"), Refusal { client: C3_V6.into(), ..want("alias.evil.test") }]
    );
    assert_eq!(fx.forwarder().counters().refused, 3);
}

#[test]
fn refused_with_refused_when_configured() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    // No upstream is needed to refuse: the forwarder answers alone.
    let mut config = Config::new(FORWARDER_PORT, vec![SocketAddr::new(DNS_V4.into(), 53)], DomainList::new(&[]));
    config.refuse_with = egress_guard::dns::forwarder::RefuseWith::Refused;
    let sets = GrantSets::named_in(TEST_TABLE);
    dh.host.run_with_input(&["nft", "-f", "-"], &test_table(&sets));
    let forwarder =
        dh.host.enter(move || Forwarder::start(config, NftAllower::new(sets).unwrap(), Recorder::default()).unwrap());
    let got = lookup(&dh.c2, IpAddr::V4(DNS_V4), "anything.example", RecordType::AAAA, false);
    assert_eq!(got, (ResponseCode::Refused, vec![]));
    forwarder.stop();
}

#[test]
fn a_cname_to_a_name_not_listed_still_grants_the_chains_addresses() {
    harness::require_kernel!();
    let fx = Fixture::new(&["*.pypi.test"], Lifetimes::default());
    assert_ne!(echo_probe(IpAddr::V4(CDN_V4)).run_in(&fx.dh.c1), Outcome::Open);
    // files.pypi.test CNAME cdn.example.test A 198.51.100.81: cdn.example.test is not listed,
    // but it is on the chain of the allowed name.
    let (rcode, addrs) = lookup(&fx.dh.c1, IpAddr::V4(DNS_V4), "files.pypi.test", RecordType::A, false);
    assert_eq!((rcode, addrs), noerror(&[IpAddr::V4(CDN_V4)]));
    assert_eq!(echo_probe(IpAddr::V4(CDN_V4)).run_in(&fx.dh.c1), Outcome::Open);
    // …while cdn.example.test asked for by itself is not allowed.
    assert_eq!(
        lookup(&fx.dh.c1, IpAddr::V4(DNS_V4), "cdn.example.test", RecordType::A, false).0,
        ResponseCode::NXDomain
    );
}

#[test]
fn after_the_ttl_new_connections_are_refused_and_established_ones_keep_flowing() {
    harness::require_kernel!();
    // short.test has TTL 1: granted for 1 s, plus the cache's quarter of headroom.
    let lifetimes = Lifetimes { min: Duration::from_secs(1), max: Duration::from_secs(2) };
    let fx = Fixture::new(&["short.test"], lifetimes);
    let to = IpAddr::V4(SHORT_V4);
    assert_eq!(lookup(&fx.dh.c1, IpAddr::V4(DNS_V4), "short.test", RecordType::A, false), noerror(&[to]));
    assert_eq!(echo_probe(to).run_in(&fx.dh.c1), Outcome::Open);
    let kept = fx.dh.c1.enter(|| TcpStream::connect_timeout(&SocketAddr::new(to, ECHO_PORT), Duration::from_secs(1)));
    let kept = kept.expect("a connection opened while the grant holds");
    kept.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let exchange = |line: &str| -> bool {
        (&kept).write_all(line.as_bytes()).is_ok() && {
            let mut back = String::new();
            BufReader::new(&kept).read_line(&mut back).is_ok() && back == line
        }
    };
    assert!(exchange("before\n"));
    std::thread::sleep(Duration::from_millis(2500));
    assert_ne!(echo_probe(to).run_in(&fx.dh.c1), Outcome::Open, "a new connection without a lookup");
    assert!(exchange("after\n"), "the established connection keeps flowing (conntrack)");
    // A fresh lookup opens it again.
    assert_eq!(lookup(&fx.dh.c1, IpAddr::V4(DNS_V4), "short.test", RecordType::A, true), noerror(&[to]));
    assert_eq!(echo_probe(to).run_in(&fx.dh.c1), Outcome::Open);
}

#[test]
fn five_hundred_lookups_each_followed_at_once_by_a_connection_all_succeed() {
    harness::require_kernel!();
    let fx = Fixture::new(&["*.test"], Lifetimes::default());
    let started = Instant::now();
    let mut failures = Vec::new();
    // One thread in c1 for all of it: resolve, then connect at once, 500 fresh addresses (each
    // lookup makes a commit), over v4 and v6 transport in turn.
    fx.dh.c1.enter(|| {
        for i in 1..=RACE_NAMES {
            assert!(started.elapsed() < Duration::from_secs(120), "500 lookups and connections within 120 s");
            let server =
                if i % 2 == 0 { SocketAddr::new(DNS_V4.into(), 53) } else { SocketAddr::new(DNS_V6.into(), 53) };
            let name = format!("race-{i}.test");
            let addr = match lookup_here(server, &name, RecordType::AAAA, false) {
                Ok((ResponseCode::NoError, addrs)) if addrs == [IpAddr::V6(race_addr(i))] => addrs[0],
                other => {
                    failures.push(format!("{name}: {other:?}"));
                    continue;
                }
            };
            let connected = TcpStream::connect_timeout(&SocketAddr::new(addr, ECHO_PORT), Duration::from_secs(1));
            if let Err(e) = connected {
                failures.push(format!("{name} {addr}: {e}"));
            }
        }
    });
    let elapsed = started.elapsed();
    assert!(failures.is_empty(), "{} of {RACE_NAMES} failed: {failures:#?}", failures.len());
    let counters = fx.forwarder().counters();
    assert!(counters.commits >= u64::from(RACE_NAMES), "every lookup committed: {counters:?}");
    eprintln!("dns race: {RACE_NAMES} lookups + connections in {elapsed:?}");
}

/// The timeout and time left of the element for `addr` in the test table's `dns4`, in ms.
fn element_times(ns: &Netns, addr: Ipv4Addr) -> Option<(u64, u64)> {
    use egress_guard::nft::set::{getsetelem_dump, TimedElem};
    use egress_guard::nft::socket::Netlink;
    let replies = ns.enter(|| {
        let mut nl = Netlink::open().unwrap();
        nl.get("GETSETELEM", |seq| getsetelem_dump(seq, 1, TEST_TABLE, "dns4")).unwrap().unwrap_or_default()
    });
    let elems: Vec<TimedElem> = replies.iter().flat_map(|r| TimedElem::decode_all(&r.reply()).unwrap()).collect();
    elems.iter().find(|e| e.key == addr.octets()).map(|e| (e.timeout_ms, e.expiration_ms.unwrap_or(0)))
}

#[test]
fn a_grant_running_low_is_replaced_and_one_flushed_by_hand_is_added_again() {
    harness::require_kernel!();
    // Grants of 4 s are committed for 5 s; 1.5 s later a lookup wants 4 s more than it has.
    let lifetimes = Lifetimes { min: Duration::from_secs(4), max: Duration::from_secs(4) };
    let fx = Fixture::new(&["pypi.test"], lifetimes);
    let ask = || lookup(&fx.dh.c1, IpAddr::V4(DNS_V4), "pypi.test", RecordType::A, false);
    assert_eq!(ask(), noerror(&[IpAddr::V4(PYPI_V4)]));
    let (timeout, _) = element_times(&fx.dh.host, PYPI_V4).expect("granted");
    assert_eq!(timeout, 5000);
    assert_eq!(ask().0, ResponseCode::NoError);
    assert_eq!(fx.forwarder().counters().commits, 1, "within the headroom: no commit");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ask().0, ResponseCode::NoError);
    assert_eq!(fx.forwarder().counters().commits, 2);
    let (timeout, left) = element_times(&fx.dh.host, PYPI_V4).expect("still granted");
    assert!(timeout == 5000 && left > 4500, "replaced with its full time: {timeout} ms, {left} ms left");
    // Someone empties the set: the cache believes the grant is there, the kernel refuses to
    // delete what it lacks, and the forwarder adds it instead.
    fx.dh.host.run(&["nft", "flush", "set", "inet", TEST_TABLE, "dns4"]);
    assert_ne!(echo_probe(IpAddr::V4(PYPI_V4)).run_in(&fx.dh.c1), Outcome::Open);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ask().0, ResponseCode::NoError);
    assert!(element_times(&fx.dh.host, PYPI_V4).is_some());
    assert_eq!(echo_probe(IpAddr::V4(PYPI_V4)).run_in(&fx.dh.c1), Outcome::Open);
    // Flushed again, and this time the forwarder is told: the very next lookup commits.
    fx.dh.host.run(&["nft", "flush", "set", "inet", TEST_TABLE, "dns4"]);
    fx.forwarder().forget_grants();
    let commits = fx.forwarder().counters().commits;
    assert_eq!(ask().0, ResponseCode::NoError);
    assert_eq!(fx.forwarder().counters().commits, commits + 1);
    assert_eq!(echo_probe(IpAddr::V4(PYPI_V4)).run_in(&fx.dh.c1), Outcome::Open);
    assert_eq!(fx.forwarder().counters().grant_errors, 0);
}

#[test]
fn a_truncated_udp_answer_is_fetched_again_over_tcp_and_all_of_it_granted() {
    harness::require_kernel!();
    let fx = Fixture::new(&["big.test"], Lifetimes::default());
    // A classic client (no EDNS, 512 bytes) over UDP: dnsmasq truncates, the forwarder asks
    // again over TCP, grants all 30 addresses, and tells the client to come back over TCP.
    let mut msg = Message::new(0x77, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii("big.test.").unwrap(), RecordType::AAAA));
    let query = msg.to_vec().unwrap();
    let answer = fx.dh.c1.enter(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        socket.send_to(&query, (DNS_V4, 53)).unwrap();
        let mut buf = [0u8; 4096];
        let len = socket.recv(&mut buf).unwrap();
        Message::from_vec(&buf[..len]).unwrap()
    });
    assert!(answer.metadata.truncation && answer.metadata.id == 0x77, "{answer}");
    // dnsmasq's truncated UDP answer holds 17 of the 30: all 30 open means the TCP answer's.
    for i in 0..BIG_RECORDS {
        let to = IpAddr::V6(big_addr(i));
        assert_eq!(echo_probe(to).run_in(&fx.dh.c1), Outcome::Open, "{to}");
    }
    assert_eq!(fx.forwarder().counters().commits, 1);
    // The client's own retry over TCP gets everything, and commits nothing more.
    let (rcode, addrs) = lookup(&fx.dh.c1, IpAddr::V4(DNS_V4), "big.test", RecordType::AAAA, true);
    assert_eq!((rcode, addrs.len()), (ResponseCode::NoError, usize::from(BIG_RECORDS)));
    assert_eq!(fx.forwarder().counters().commits, 1);
}
