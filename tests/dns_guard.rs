//! `--allow-domain` through `egress-guard watch` itself: the guard's own table (its sets, its
//! redirect of containers' port 53, its marks) and watch's forwarder, against dnsmasq's `.test`
//! zone in the internet namespace (see dns_forwarder.rs for the fixture's servers).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::dns_forwarder::{
    echo_probe, lookup, lookup_here, noerror, Dnsmasq, LineEcho, DNS_V4, DNS_V6, EVIL_V4, PYPI_V4, PYPI_V6,
};
use crate::harness::{self, *};

/// The emulated host with dnsmasq and the line echo on the "internet", and watch guarding it.
pub(crate) struct Guarded {
    // Dropped first: watch stops before the namespaces go.
    _watch: Watch,
    pub dnsmasq: Dnsmasq,
    _echo: LineEcho,
    pub dh: DockerHost,
}

impl Guarded {
    pub(crate) fn start(dh: DockerHost, args: &[&str]) -> Guarded {
        dh.internet.ip_batch(&format!(
            "addr add {DNS_V4}/24 dev eth0\naddr add {DNS_V6}/64 dev eth0 nodad\n\
             addr add {PYPI_V4}/24 dev eth0\naddr add {PYPI_V6}/64 dev eth0 nodad\n\
             addr add {EVIL_V4}/24 dev eth0\n"
        ));
        let echo = LineEcho::start(&dh.internet);
        let dnsmasq = Dnsmasq::start(&dh.internet);
        let upstream = DNS_V4.to_string();
        let mut all = vec!["--dns-upstream", &upstream];
        all.extend(args);
        let watch = Watch::start(&dh.host, &all);
        let guarded = Guarded { _watch: watch, dnsmasq, _echo: echo, dh };
        // Ready when the forwarder answers: only it refuses evil.test (dnsmasq has an address).
        let deadline = Instant::now() + Duration::from_secs(10);
        let refused = |g: &Guarded| {
            let asked = g.dh.c1.enter(|| lookup_here((DNS_V4, 53).into(), "evil.test", RecordType::A, false));
            asked.is_ok_and(|(rcode, _)| rcode == ResponseCode::NXDomain)
        };
        while !refused(&guarded) {
            assert!(Instant::now() < deadline, "watch's forwarder did not answer within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        guarded
    }
}

fn allowed_names_resolve_and_connect_and_others_do_not(dh: DockerHost) {
    let g = Guarded::start(dh, &["--allow-domain", "pypi.test"]);
    let c1 = &g.dh.c1;
    // What dnsmasq saw before the guard was up (the readiness check's first tries) is not ours.
    let before = g.dnsmasq.log().len();
    let (v4, v6) = (IpAddr::V4(PYPI_V4), IpAddr::V6(PYPI_V6));
    assert_eq!(lookup(c1, DNS_V4.into(), "pypi.test", RecordType::A, false), noerror(&[v4]));
    assert_eq!(echo_probe(v4).run_in(c1), Outcome::Open, "the first connection after the lookup");
    assert_eq!(lookup(c1, DNS_V6.into(), "pypi.test", RecordType::AAAA, true), noerror(&[v6]));
    assert_eq!(echo_probe(v6).run_in(c1), Outcome::Open);
    let (rcode, _) = lookup(c1, DNS_V4.into(), "evil.test", RecordType::A, false);
    assert_eq!(rcode, ResponseCode::NXDomain);
    assert_ne!(echo_probe(IpAddr::V4(EVIL_V4)).run_in(c1), Outcome::Open, "closed by address too");
    assert!(!g.dnsmasq.log()[before..].contains("evil.test"), "a refused name never leaves the host");
}

#[test]
fn through_watch_in_docker_user() {
    harness::require_kernel!();
    allowed_names_resolve_and_connect_and_others_do_not(DockerHost::new());
}

#[test]
fn through_watch_in_our_table() {
    harness::require_kernel!();
    allowed_names_resolve_and_connect_and_others_do_not(DockerHost::builder().nftables_backend().build());
}
