//! The DNS forwarder behind `--allow-domain`, proven by packets: dnsmasq serves a `.test` zone in
//! the internet namespace, the forwarder runs on a thread in the host namespace, and a test
//! table (nat redirect of port 53 from the bridges, a forward chain open only to the timeout
//! sets) stands in for the table backend (the zone and the client are harness/dns.rs's, which
//! dns_guard.rs and the e2e suite share). Containers resolve and connect; names not allowed
//! are refused without reaching dnsmasq; grants expire with their TTL; 500 lookups each
//! followed at once by a connection all succeed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egress_guard::dns::clients::Clients;
use egress_guard::dns::forwarder::{Config, Forwarder, Refusal, Refusals};
use egress_guard::dns::grant::Lifetimes;
use egress_guard::dns::names::{parse_allow_domain, DomainList};
use egress_guard::dns::nft_allower::{GrantSets, NftAllower};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use crate::harness::dns::*;
use crate::harness::{self, *};

/// The forwarder's port in the host namespace; the nat rules send containers' port 53 here.
const FORWARDER_PORT: u16 = 5353;
const TEST_TABLE: &str = "eg_dns_test";

/// The emulated Docker host plus dnsmasq, a line echo, the test table and the forwarder.
struct Fixture {
    // Dropped first: the forwarder's threads stop before the namespaces go.
    forwarder: Option<Forwarder>,
    refusals: Arc<Mutex<Vec<Refusal>>>,
    zone: Zone,
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
        Fixture::with_clients(allow, lifetimes, Clients::default())
    }

    /// With `clients`: names allowed to some containers only.
    fn with_clients(allow: &[&str], lifetimes: Lifetimes, clients: Clients) -> Fixture {
        let dh = DockerHost::new();
        let zone = Zone::start(&dh.internet, &dh.host);
        let sets = GrantSets::named_in(TEST_TABLE);
        dh.host.run_with_input(&["nft", "-f", "-"], &test_table(&sets));

        let entries: Vec<_> = allow.iter().map(|a| parse_allow_domain(a).unwrap()).collect();
        let mut config =
            Config::new(FORWARDER_PORT, vec![SocketAddr::new(DNS_V4.into(), 53)], DomainList::new(&entries));
        config.lifetimes = lifetimes;
        config.clients = clients;
        let recorder = Recorder::default();
        let refusals = Arc::clone(&recorder.0);
        let forwarder = dh.host.enter(move || {
            let allower = NftAllower::new(sets).expect("netlink in the host namespace");
            Forwarder::start(config, allower, recorder).expect("the forwarder starts")
        });
        Fixture { forwarder: Some(forwarder), refusals, zone, dh }
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
           ip saddr . ip daddr @{v4f} accept\n  ip6 saddr . ip6 daddr @{v6f} accept\n  \
           ip saddr . ip daddr . meta l4proto . th dport @{v4fp} accept\n  \
           ip6 saddr . ip6 daddr . meta l4proto . th dport @{v6fp} accept\n  \
           meta l4proto tcp reject with tcp reset\n  reject with icmpx admin-prohibited\n}}\n}}\n",
        decl = sets.nft_declarations(),
        v4 = sets.v4,
        v6 = sets.v6,
        v4p = sets.v4_port,
        v6p = sets.v6_port,
        v4f = sets.v4_from,
        v6f = sets.v6_from,
        v4fp = sets.v4_from_port,
        v6fp = sets.v6_from_port,
    )
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
    assert!(fx.zone.dnsmasq.log().contains("query[A] pypi.test from 198.51.100.1"), "{}", fx.zone.dnsmasq.log());
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
    let log = fx.zone.dnsmasq.log();
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
    let kept = Kept::open(&fx.dh.c1, to).expect("a connection opened while the grant holds");
    assert!(kept.exchange("before"));
    std::thread::sleep(Duration::from_millis(2500));
    assert_ne!(echo_probe(to).run_in(&fx.dh.c1), Outcome::Open, "a new connection without a lookup");
    assert!(kept.exchange("after"), "the established connection keeps flowing (conntrack)");
    // A fresh lookup opens it again.
    assert_eq!(lookup(&fx.dh.c1, IpAddr::V4(DNS_V4), "short.test", RecordType::A, true), noerror(&[to]));
    assert_eq!(echo_probe(to).run_in(&fx.dh.c1), Outcome::Open);
}

#[test]
fn five_hundred_lookups_each_followed_at_once_by_a_connection_all_succeed() {
    harness::require_kernel!();
    let fx = Fixture::new(&["*.test"], Lifetimes::default());
    let started = Instant::now();
    // One thread in c1 for all of it: resolve, then connect at once, 500 fresh addresses (each
    // lookup makes a commit), over v4 and v6 transport in turn.
    let failures = fx.dh.c1.enter(|| resolve_then_connect(RACE_NAMES, Duration::from_secs(120)));
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

/// A name allowed to c1 alone (a label, a config table): c1 resolves it and connects, from its
/// IPv6 address too after an AAAA asked over IPv4; c3 gets NXDOMAIN and stays closed even by
/// address while c1's grant holds; the grant's element is `c1 . destination`, as nft lists it.
#[test]
fn a_name_allowed_to_one_container_opens_its_addresses_to_that_container_only() {
    harness::require_kernel!();
    let clients = Clients::default();
    let c1: [IpAddr; 2] = [C1_V4.into(), C1_V6.into()];
    let pypi = [parse_allow_domain("pypi.test").unwrap()];
    clients.set([(&c1[..], &pypi[..])]);
    let fx = Fixture::with_clients(&[], Lifetimes::default(), clients);
    let (v4, v6) = (IpAddr::V4(PYPI_V4), IpAddr::V6(PYPI_V6));
    assert_eq!(lookup(&fx.dh.c1, IpAddr::V4(DNS_V4), "pypi.test", RecordType::A, false), noerror(&[v4]));
    assert_eq!(lookup(&fx.dh.c1, IpAddr::V4(DNS_V4), "pypi.test", RecordType::AAAA, true), noerror(&[v6]));
    for to in [v4, v6] {
        assert_eq!(echo_probe(to).run_in(&fx.dh.c1), Outcome::Open, "c1 to {to}");
        assert_ne!(echo_probe(to).run_in(&fx.dh.c3), Outcome::Open, "c3 to {to}: c1's grant is not c3's");
    }
    assert_eq!(
        lookup(&fx.dh.c3, IpAddr::V4(DNS_V4), "pypi.test", RecordType::A, false),
        (ResponseCode::NXDomain, vec![])
    );
    let listed = fx.dh.host.run(&["nft", "list", "set", "inet", TEST_TABLE, "dnsfrom4"]);
    assert!(listed.contains(&format!("{C1_V4} . {PYPI_V4} timeout")), "{listed}");
    let listed = fx.dh.host.run(&["nft", "list", "set", "inet", TEST_TABLE, "dnsfrom6"]);
    assert!(listed.contains(&format!("{C1_V6} . {PYPI_V6} timeout")), "{listed}");
    let empty = fx.dh.host.run(&["nft", "list", "set", "inet", TEST_TABLE, "dns4"]);
    assert!(!empty.contains("elements"), "nothing granted to everyone: {empty}");
}
