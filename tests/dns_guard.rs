//! `--allow-domain` through `egress-guard watch` itself, in both backends (DOCKER-USER and the
//! guard's own table under Docker 29's nftables rules): the guard's sets, its redirect of
//! containers' port 53 and its marks, with watch's forwarder answering against dnsmasq's
//! `.test` zone in the internet namespace (see harness/dns.rs). Every scenario runs once per
//! backend; what each proves is said above it.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::dns::*;
use crate::harness::journal::Journaled;
use crate::harness::{self, *};

/// The emulated host with the zone on the "internet", and watch guarding it, its journal kept.
pub(crate) struct Guarded {
    // Dropped first: watch stops before the namespaces go.
    pub watch: Journaled,
    pub zone: Zone,
    pub dh: DockerHost,
}

impl Guarded {
    /// Watch with `--dns-upstream 198.51.100.53` and `args`, ready once its forwarder answers.
    pub(crate) fn start(dh: DockerHost, args: &[&str]) -> Guarded {
        let zone = Zone::start(&dh.internet, &dh.host);
        let upstream = DNS_V4.to_string();
        let mut all = vec!["--dns-upstream", &upstream];
        all.extend(args);
        let watch = Journaled::start(&dh.host, &all);
        // Ready when the forwarder says it answers: it starts once the first apply has put the
        // sets and the redirect in place, and it has bound its sockets by then.
        let ready = watch.line_within(Duration::from_secs(5), &["answering containers' DNS on port"]);
        assert!(ready.is_some(), "watch's forwarder did not start within 5 s: {:#?}", watch.lines());
        Guarded { watch, zone, dh }
    }

    /// Watch's lines so far, stdout and stderr.
    pub(crate) fn journal(&self) -> Vec<String> {
        self.watch.lines()
    }

    /// Waits up to 5 s for a journal line holding every one of `parts`.
    fn journal_line(&self, parts: &[&str]) -> Option<String> {
        self.watch.line_within(Duration::from_secs(5), parts)
    }
}

/// Each scenario once in DOCKER-USER (Docker's iptables rules) and once in our own table
/// (Docker 29's nftables backend, no DOCKER-USER).
macro_rules! in_both_backends {
    ($($scenario:ident),* $(,)?) => {
        $(mod $scenario {
            use crate::harness::{self, DockerHost};

            #[test]
            fn in_docker_user() {
                harness::require_kernel!();
                super::$scenario(DockerHost::new());
            }

            #[test]
            fn in_our_table() {
                harness::require_kernel!();
                super::$scenario(DockerHost::builder().nftables_backend().build());
            }
        })*
    };
}

in_both_backends!(
    allowed_names_resolve_and_connect_and_others_do_not,
    refused_with_refused_when_configured,
    a_port_entry_opens_only_that_port,
    after_the_ttl_new_connections_need_a_lookup_and_established_ones_keep_flowing,
    five_hundred_lookups_each_followed_at_once_by_a_connection_all_succeed,
    a_flushed_set_is_granted_again_after_watch_heals,
    the_journal_names_the_refused_name_and_the_client,
    with_block_host_dns_still_works_and_the_host_stays_closed,
    apply_alone_redirects_but_nothing_answers,
);

/// v4 and v6 questions over UDP and TCP, to dnsmasq's addresses and to another server (every
/// port-53 packet from a bridge is the forwarder's): the first connection after each lookup
/// succeeds. evil.test gets NXDOMAIN, never reaches dnsmasq, and its addresses stay closed;
/// `*.pypi.test` takes subdomains (files.pypi.test CNAMEs to cdn.example.test, which is not
/// listed and is granted as the chain's end); DNS over TLS to the resolver stays closed.
fn allowed_names_resolve_and_connect_and_others_do_not(dh: DockerHost) {
    let g = Guarded::start(dh, &["--allow-domain", "pypi.test", "--allow-domain", "*.pypi.test"]);
    // What dnsmasq saw before the guard was up (the readiness check's first tries) is not ours.
    let before = g.zone.dnsmasq.log().len();
    let (v4, v6) = (IpAddr::V4(PYPI_V4), IpAddr::V6(PYPI_V6));
    for (c, to) in [(&g.dh.c1, v4), (&g.dh.c3, v4), (&g.dh.c1, v6), (&g.dh.c3, v6)] {
        assert_ne!(echo_probe(to).run_in(c), Outcome::Open, "{c}: {to} is closed before any lookup");
    }
    let questions = [
        (&g.dh.c1, IpAddr::V4(DNS_V4), RecordType::A, false, v4),
        (&g.dh.c3, IpAddr::V4(DNS_V4), RecordType::A, true, v4),
        (&g.dh.c1, IpAddr::V6(DNS_V6), RecordType::AAAA, false, v6),
        (&g.dh.c3, IpAddr::V6(DNS_V6), RecordType::AAAA, true, v6),
        (&g.dh.c2, IpAddr::V4(INTERNET_V4), RecordType::A, false, v4),
        (&g.dh.c2, IpAddr::V6(INTERNET_V6), RecordType::AAAA, true, v6),
    ];
    for (c, server, qtype, tcp, want) in questions {
        assert_eq!(lookup(c, server, "pypi.test", qtype, tcp), noerror(&[want]), "{c} {qtype} via {server}");
        assert_eq!(echo_probe(want).run_in(c), Outcome::Open, "{c}: the first connection after the lookup");
    }
    // Subdomains, and the chain's end though its name is not listed…
    let cdn = IpAddr::V4(CDN_V4);
    assert_ne!(echo_probe(cdn).run_in(&g.dh.c1), Outcome::Open);
    assert_eq!(lookup(&g.dh.c1, DNS_V6.into(), "files.pypi.test", RecordType::A, false), noerror(&[cdn]));
    assert_eq!(echo_probe(cdn).run_in(&g.dh.c1), Outcome::Open, "the CNAME's target is granted");
    // …which is not allowed by itself.
    assert_eq!(lookup(&g.dh.c1, DNS_V4.into(), "cdn.example.test", RecordType::A, true).0, ResponseCode::NXDomain);
    for (server, qtype, tcp) in [
        (IpAddr::V4(DNS_V4), RecordType::A, false),
        (DNS_V6.into(), RecordType::AAAA, true),
        (DNS_V4.into(), RecordType::AAAA, true),
    ] {
        assert_eq!(lookup(&g.dh.c3, server, "evil.test", qtype, tcp), (ResponseCode::NXDomain, vec![]));
    }
    for to in [IpAddr::V4(EVIL_V4), "2001:db8::66".parse().unwrap()] {
        assert_ne!(echo_probe(to).run_in(&g.dh.c3), Outcome::Open, "{to}: closed by address too");
    }
    let dot = Probe::tcp((DNS_V4, 853)).timeout(Duration::from_millis(500));
    assert_ne!(dot.run_in(&g.dh.c1), Outcome::Open, "DNS over TLS to the resolver");
    assert_ne!(Probe::tcp((INTERNET_V4, SERVICE_PORT)).run_in(&g.dh.c1), Outcome::Open, "the rest stays closed");
    let log = g.zone.dnsmasq.log();
    assert!(log[before..].contains("query[A] files.pypi.test"), "{log}");
    let asked =
        |name: &str| log[before..].lines().any(|l| l.contains("query[") && l.contains(&format!(" {name} from")));
    assert!(!asked("evil.test") && !asked("cdn.example.test"), "refused names left:\n{log}");
}

/// `--dns-refuse-with refused`: REFUSED instead of NXDOMAIN, over UDP and TCP, v4 and v6.
fn refused_with_refused_when_configured(dh: DockerHost) {
    let g = Guarded::start(dh, &["--allow-domain", "pypi.test", "--dns-refuse-with", "refused"]);
    for (server, tcp) in [(IpAddr::V4(DNS_V4), false), (IpAddr::V6(DNS_V6), true)] {
        assert_eq!(lookup(&g.dh.c2, server, "evil.test", RecordType::A, tcp), (ResponseCode::Refused, vec![]));
    }
    assert_eq!(lookup(&g.dh.c2, DNS_V4.into(), "pypi.test", RecordType::A, false).0, ResponseCode::NoError);
}

/// `pypi.test:443/tcp` opens port 443 of its addresses and no other port.
fn a_port_entry_opens_only_that_port(dh: DockerHost) {
    let g = Guarded::start(dh, &["--allow-domain", "pypi.test:443/tcp"]);
    let _https = LineEcho::start(&g.dh.internet, 443);
    let (v4, v6) = (IpAddr::V4(PYPI_V4), IpAddr::V6(PYPI_V6));
    let port = |to: IpAddr, port: u16| Probe::tcp((to, port)).timeout(Duration::from_millis(500));
    assert_ne!(port(v4, 443).run_in(&g.dh.c1), Outcome::Open);
    assert_eq!(lookup(&g.dh.c1, DNS_V4.into(), "pypi.test", RecordType::A, false), noerror(&[v4]));
    assert_eq!(lookup(&g.dh.c1, DNS_V4.into(), "pypi.test", RecordType::AAAA, true), noerror(&[v6]));
    for to in [v4, v6] {
        assert_eq!(port(to, 443).run_in(&g.dh.c1), Outcome::Open, "{to}:443");
        assert_ne!(port(to, ECHO_PORT).run_in(&g.dh.c1), Outcome::Open, "{to}:{ECHO_PORT} is another port");
    }
}

/// short.test has TTL 1 and `--dns-min-ttl 1 --dns-max-ttl 2`: granted for about a second and
/// a quarter. After it, a new connection without a lookup is refused while one opened before
/// keeps flowing; a fresh lookup opens the address again.
fn after_the_ttl_new_connections_need_a_lookup_and_established_ones_keep_flowing(dh: DockerHost) {
    let g = Guarded::start(dh, &["--allow-domain", "short.test", "--dns-min-ttl", "1", "--dns-max-ttl", "2"]);
    let to = IpAddr::V4(SHORT_V4);
    assert_eq!(lookup(&g.dh.c1, DNS_V4.into(), "short.test", RecordType::A, false), noerror(&[to]));
    let kept = Kept::open(&g.dh.c1, to).expect("a connection opened while the grant holds");
    assert!(kept.exchange("before"));
    std::thread::sleep(Duration::from_millis(2500));
    assert_ne!(echo_probe(to).run_in(&g.dh.c1), Outcome::Open, "a new connection without a lookup");
    assert!(kept.exchange("after"), "the established connection keeps flowing (conntrack)");
    assert_eq!(lookup(&g.dh.c3, DNS_V6.into(), "short.test", RecordType::A, true), noerror(&[to]));
    assert_eq!(echo_probe(to).run_in(&g.dh.c1), Outcome::Open, "a fresh lookup opens it again");
}

/// The race through watch: 500 fresh names, each resolved and connected to at once, from one
/// thread in c3 (br-eg1): every first connection succeeds.
fn five_hundred_lookups_each_followed_at_once_by_a_connection_all_succeed(dh: DockerHost) {
    let g = Guarded::start(dh, &["--allow-domain", "*.test"]);
    let started = Instant::now();
    let failures = g.dh.c3.enter(|| resolve_then_connect(RACE_NAMES, Duration::from_secs(120)));
    assert!(failures.is_empty(), "{} of {RACE_NAMES} failed: {failures:#?}", failures.len());
    eprintln!("dns race through watch: {RACE_NAMES} lookups + connections in {:?}", started.elapsed());
}

/// Someone empties the grant set (`nft flush set`), or the whole ruleset (`nft flush ruleset`,
/// and dockerd writes its rules again): the address is closed, watch heals and makes the
/// forwarder forget its grants, and a fresh lookup opens the address again. The table backend
/// is flushed as a whole too (in DOCKER-USER watch heals only once dockerd's chain is back).
fn a_flushed_set_is_granted_again_after_watch_heals(dh: DockerHost) {
    let g = Guarded::start(dh, &["--allow-domain", "pypi.test"]);
    let to = IpAddr::V4(PYPI_V4);
    let ask = || lookup(&g.dh.c1, DNS_V4.into(), "pypi.test", RecordType::A, false);
    assert_eq!(ask(), noerror(&[to]));
    assert_eq!(echo_probe(to).run_in(&g.dh.c1), Outcome::Open);
    let flushes: [&[&str]; 2] =
        [&["nft", "flush", "set", "inet", "egress_guard", "dns4"], &["nft", "flush", "ruleset"]];
    for flush in flushes {
        g.dh.host.run(flush);
        if flush.contains(&"ruleset") {
            g.dh.restore_dockerd_rules();
        }
        assert_ne!(echo_probe(to).run_in(&g.dh.c1), Outcome::Open, "{flush:?} closed it");
        // Each try is a fresh lookup and then a connection; the first after the heal opens it.
        let took = within(&format!("a lookup after {flush:?} opens the address"), || {
            ask() == noerror(&[to]) && echo_probe(to).run_in(&g.dh.c1) == Outcome::Open
        });
        eprintln!("{flush:?}: open again after {took:?}");
    }
    // The nat chain is back too: another resolver's address still lands at the forwarder.
    assert_eq!(lookup(&g.dh.c3, INTERNET_V4.into(), "evil.test", RecordType::A, true).0, ResponseCode::NXDomain);
}

/// A refused name is said in watch's journal with the name, the type and the client's address
/// (without a Docker to follow there is no container name; the e2e suite shows that part).
fn the_journal_names_the_refused_name_and_the_client(dh: DockerHost) {
    let g = Guarded::start(dh, &["--allow-domain", "pypi.test"]);
    assert!(g.journal_line(&["answering containers' DNS on port 53053 for 1 name(s) allowed to all"]).is_some());
    assert_eq!(lookup(&g.dh.c3, DNS_V6.into(), "exfil.evil.test", RecordType::TXT, false).0, ResponseCode::NXDomain);
    let line = g.journal_line(&["exfil.evil.test"]).expect("the refusal is in the journal");
    assert_eq!(
        line,
        format!("egress-guard: dns: {C3_V6} asked for exfil.evil.test (TXT): refused, not an allowed name")
    );
    assert_eq!(lookup(&g.dh.c1, DNS_V4.into(), "pypi.test", RecordType::A, true).0, ResponseCode::NoError);
    assert!(!g.journal().iter().any(|l| l.contains("pypi.test")), "an allowed name is not a refusal");
}

/// With `--block-host` the input chain takes the redirected queries (to the host's own port)
/// while every other connection from a container to the host stays refused.
fn with_block_host_dns_still_works_and_the_host_stays_closed(dh: DockerHost) {
    let g = Guarded::start(dh, &["--allow-domain", "pypi.test", "--block-host"]);
    let _host_echo = LineEcho::start(&g.dh.host, ECHO_PORT);
    for (server, tcp) in [(IpAddr::V4(DNS_V4), false), (IpAddr::V6(DNS_V6), true)] {
        assert_eq!(lookup(&g.dh.c1, server, "pypi.test", RecordType::A, tcp), noerror(&[PYPI_V4.into()]));
    }
    assert_eq!(echo_probe(PYPI_V4.into()).run_in(&g.dh.c1), Outcome::Open);
    for to in [IpAddr::V4(DOCKER0_V4), IpAddr::V6(DOCKER0_V6), IpAddr::V4(HOST_V4), IpAddr::V4(BR_EG1_V4)] {
        assert_ne!(echo_probe(to).run_in(&g.dh.c1), Outcome::Open, "c1 → the host's {to}");
    }
    // The host's port 81 is there, and open from its own namespace.
    assert!(Kept::open(&g.dh.host, IpAddr::V4(HOST_V4)).is_some());
}

/// `--allow-domain` needs watch: `apply` alone writes the sets and the redirect, but no
/// forwarder listens, so containers' DNS gets no answer at all (not even from dnsmasq) and no
/// address opens: it fails closed.
fn apply_alone_redirects_but_nothing_answers(dh: DockerHost) {
    let zone = Zone::start(&dh.internet, &dh.host);
    let out = dh.egress_guard_ok("apply", &["--allow-domain", "pypi.test", "--dns-upstream", "198.51.100.53"]);
    assert!(out.contains("redirect to :53053"), "{out}");
    for tcp in [false, true] {
        let asked = dh.c1.enter(|| lookup_here((DNS_V4, 53).into(), "pypi.test", RecordType::A, tcp));
        assert!(asked.is_err(), "an answer without watch: {asked:?}");
    }
    assert_ne!(echo_probe(PYPI_V4.into()).run_in(&dh.c1), Outcome::Open);
    let forwarded = format!("pypi.test from {HOST_V4}");
    assert!(!zone.dnsmasq.log().contains(&forwarded), "{}", zone.dnsmasq.log());
}

// ---- bugs found here, in files this suite may not fix: ignored until the fix lands ----

/// `apply` twice with `--allow-domain`: the second has nothing to write. Today the kernel's
/// dump of the `dns` chain's redirect decodes as `<redir> 0xcf3d`, unlike what we write, so
/// every apply and every heal of watch deletes and writes the four redirect rules again.
#[test]
fn a_second_apply_with_allow_domain_writes_nothing() {
    harness::require_kernel!();
    for dh in [DockerHost::new(), DockerHost::builder().nftables_backend().build()] {
        let args = ["--allow-domain", "pypi.test", "--dns-upstream", "198.51.100.53"];
        dh.egress_guard_ok("apply", &args);
        let again = dh.egress_guard_ok("apply", &[&args[..], &["--dry-run"]].concat());
        assert!(!again.contains("would write"), "{again}");
    }
}

/// The forwarder's grants are watch's own commits. Today the kernel's NEWGEN names the thread
/// that committed (task_pid_nr), not the process, so each grant from a forwarder worker wakes
/// watch as "the ruleset changed": it heals, forgets every grant (so the next lookup of each
/// name commits again), and under a stream of lookups reports a fight with itself or gives up
/// a heal ("gave up after 10 attempts"). `nft monitor` shows it: `add element inet egress_guard
/// dns4 { 198.51.100.80 … }`, `# new generation 4 by process 10212 (dns-worker-0)`, then
/// `# new generation 5 by process 10209 (egress-guard)`, watch rewriting what was not broken.
#[test]
fn the_forwarders_own_grants_do_not_wake_watch() {
    harness::require_kernel!();
    let g = Guarded::start(DockerHost::builder().nftables_backend().build(), &["--allow-domain", "*.test"]);
    let failures = g.dh.c1.enter(|| resolve_then_connect(20, Duration::from_secs(10)));
    assert!(failures.is_empty(), "{failures:?}");
    std::thread::sleep(Duration::from_millis(500));
    let heals: Vec<String> = g.journal().into_iter().filter(|l| l.contains("the ruleset changed")).collect();
    assert!(heals.is_empty(), "20 grants woke watch {} times: {heals:#?}", heals.len());
}

/// Only redirected container queries reach the forwarder. Today it binds port 53053 on every
/// address and nothing filters it, so anyone who reaches the host (here the internet) may use
/// it as a resolver for the allowed names, make it grant, and fill the journal with refusals.
#[test]
fn the_forwarder_does_not_answer_the_internet() {
    harness::require_kernel!();
    let g = Guarded::start(DockerHost::builder().nftables_backend().build(), &["--allow-domain", "pypi.test"]);
    for tcp in [false, true] {
        let asked = g.dh.internet.enter(|| lookup_here((HOST_V4, 53053).into(), "pypi.test", RecordType::A, tcp));
        assert!(asked.is_err(), "the internet got an answer over {}: {asked:?}", if tcp { "TCP" } else { "UDP" });
    }
}
