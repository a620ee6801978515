//! `--allow-domain` with a real dockerd: `watch` follows it and answers its containers' DNS.
//! A container on a user-defined network asks Docker's embedded resolver (127.0.0.11), which
//! forwards from inside the container's namespace to the configured server; one on the default
//! bridge asks that server itself. Either way the query reaches watch's forwarder (the redirect
//! of port 53 from the bridges), the allowed name resolves and connects, and nothing else does.
//! The `.test` zone is harness/dns.rs's dnsmasq, in this suite's internet namespace.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::json;

use crate::harness::dns::{Dnsmasq, Zone, DNS_V4, ECHO_PORT, EVIL_V4, PYPI_V4, PYPI_V6};
use crate::harness::journal::Journaled;
use crate::harness::{Outcome, HOST_V4, INTERNET_V4, SERVICE_PORT};
use crate::reach::EGRESS;
use crate::{require_dockerd, Container, Dockerd, Options};

/// Names a container (or a network's members) may look up, `--allow-domain` syntax.
const ALLOW_DOMAIN: &str = "egress-guard.allow-domain";

/// busybox `nslookup NAME [SERVER]` in the container: the addresses it printed, or None when
/// the name was not found (NXDOMAIN, REFUSED) or no server answered.
fn nslookup(c: &Container, name: &str, server: Option<&str>) -> Option<Vec<IpAddr>> {
    let mut args = vec!["timeout", "10", "nslookup", name];
    args.extend(server);
    let out = c.exec(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return None;
    }
    // The answer's addresses follow the "Name:" line; the server's own come before it.
    let answers = stdout.split_once("Name:").map_or("", |(_, rest)| rest);
    let mut addrs: Vec<IpAddr> = answers
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Address:"))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    addrs.sort();
    addrs.dedup();
    Some(addrs)
}

/// watch following `dk`, with `--allow-domain pypi.test`; returned once the forwarder answers.
fn watch(dk: &Dockerd) -> Journaled {
    let upstream = DNS_V4.to_string();
    let args = ["--docker-host", &dk.socket(), "--allow-domain", "pypi.test", "--dns-upstream", &upstream];
    let watch = Journaled::start(&dk.host, &args);
    let started = watch.line_within(Duration::from_secs(20), &["answering containers' DNS on port"]);
    assert!(started.is_some(), "watch's forwarder did not start: {:#?}", watch.lines());
    watch
}

#[test]
fn a_container_on_a_user_network_and_one_on_the_default_bridge_reach_an_allowed_name_and_nothing_else() {
    require_dockerd!();
    // Every container's resolv.conf names the zone's server (docker0's directly, a user
    // network's through 127.0.0.11): nothing is ever asked of the machine's own resolver.
    let dk = Dockerd::start(Options::default().with("dns", json!([DNS_V4.to_string()])));
    let zone = Zone::start(&dk.internet, &dk.host);
    let net = dk.network("app");
    let watch = watch(&dk);
    let web = dk.container("web").network(&net).run();
    let bare = dk.container("bare").run();
    let resolv = |c: &Container| String::from_utf8_lossy(&c.exec(&["cat", "/etc/resolv.conf"]).stdout).into_owned();
    assert!(resolv(&web).contains("nameserver 127.0.0.11"), "{}", resolv(&web));
    assert!(resolv(&bare).contains(&format!("nameserver {DNS_V4}")), "{}", resolv(&bare));
    let pypi = [IpAddr::V4(PYPI_V4), IpAddr::V6(PYPI_V6)];
    // A grant is for every guarded container: both are looked at before either asks.
    for c in [&web, &bare] {
        assert!(!c.nc(SocketAddr::new(pypi[0], ECHO_PORT)).is_open(), "{c}: closed before a lookup");
    }
    for c in [&web, &bare] {
        assert_eq!(nslookup(c, "pypi.test", None).as_deref(), Some(&pypi[..]), "{c}");
        assert_eq!(c.nc(SocketAddr::new(pypi[0], ECHO_PORT)), Outcome::Open, "{c}: the allowed name connects");
        assert_eq!(nslookup(c, "evil.test", None), None, "{c}: a name not allowed is not found");
        assert!(!c.nc(SocketAddr::new(EVIL_V4.into(), ECHO_PORT)).is_open(), "{c}: nor reached by address");
        assert!(!c.nc(SocketAddr::new(INTERNET_V4.into(), SERVICE_PORT)).is_open(), "{c}: nor anything else");
    }
    // Another resolver's address is answered by the forwarder all the same.
    assert_eq!(nslookup(&bare, "pypi.test", Some(&INTERNET_V4.to_string())).as_deref(), Some(&pypi[..]));
    // The journal names the containers that asked; dnsmasq never heard of evil.test.
    for c in [&web, &bare] {
        let who = format!("dns: {} ({}, {})", c.name, &c.id[..12], c.v4);
        let said = watch.line_within(Duration::from_secs(5), &[&who, "asked for evil.test"]);
        assert!(said.is_some(), "no refusal naming {who}: {:#?}", watch.lines());
    }
    let log = zone.dnsmasq.log();
    assert!(log.contains(&format!("query[A] pypi.test from {HOST_V4}")), "the forwarder asked:\n{log}");
    assert!(!log.contains("evil.test"), "a refused name reached dnsmasq:\n{log}");
}

/// What this dockerd (20.10) does with `--dns 127.0.0.1` (daemon.json `dns`): that address
/// means the container's own loopback, and the embedded resolver of a user network asks it
/// from inside the container, where nothing listens. The host's resolver on its 127.0.0.1
/// hears nothing, nor does the forwarder: no answer at all (fail closed).
#[test]
fn a_loopback_dns_option_means_the_containers_own_loopback() {
    require_dockerd!();
    let dk = Dockerd::start(Options::default().with("dns", json!(["127.0.0.1"])));
    let zone = Zone::start(&dk.internet, &dk.host);
    let host_resolver = Dnsmasq::start_on(&dk.host, &["127.0.0.1".parse().unwrap()]);
    let asked_before = host_resolver.log().matches("query[").count();
    let net = dk.network("app");
    let _watch = watch(&dk);
    let web = dk.container("web").network(&net).run();
    assert_eq!(nslookup(&web, "pypi.test", None), None, "no server answers");
    assert_eq!(host_resolver.log().matches("query[").count(), asked_before, "the host's resolver was not asked");
    // The forwarder asks the zone from the host's uplink address: it was not asked either.
    let forwarded = format!("pypi.test from {HOST_V4}");
    assert!(!zone.dnsmasq.log().contains(&forwarded), "nor the forwarder: {}", zone.dnsmasq.log());
}

/// What this dockerd (20.10) does when the host's /etc/resolv.conf names a loopback resolver
/// (dnsmasq or unbound on the host's 127.0.0.1) and no `--dns` is given: the embedded
/// resolver of a user network sends its upstream queries from the host's namespace. They
/// never cross a bridge, so no redirect sees them and the forwarder is bypassed for names: a
/// name not allowed resolves (DNS can carry data out through the host's resolver), while its
/// address stays closed (nothing is granted).
#[test]
fn with_a_loopback_resolver_in_the_hosts_resolv_conf_the_embedded_resolver_asks_from_the_host() {
    require_dockerd!();
    let dk = Dockerd::start(Options::default().host_resolv_conf("nameserver 127.0.0.1\n"));
    let zone = Zone::start(&dk.internet, &dk.host);
    let host_resolver = Dnsmasq::start_on(&dk.host, &["127.0.0.1".parse().unwrap()]);
    let net = dk.network("app");
    let watch = watch(&dk);
    let web = dk.container("web").network(&net).run();
    let resolv = String::from_utf8_lossy(&web.exec(&["cat", "/etc/resolv.conf"]).stdout).into_owned();
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    let got = nslookup(&web, "evil.test", None);
    let log = host_resolver.log();
    assert!(log.contains("query[A] evil.test from 127.0.0.1"), "the host's resolver was not asked:\n{log}");
    assert!(got.is_some_and(|a| a.contains(&IpAddr::V4(EVIL_V4))), "the name resolved past the forwarder");
    assert!(!web.nc(SocketAddr::new(EVIL_V4.into(), ECHO_PORT)).is_open(), "nothing was granted");
    assert!(watch.lines().iter().all(|l| !l.contains("evil.test")), "the forwarder never saw it");
    assert!(!zone.dnsmasq.log().contains("evil.test"));
}

// ---- names allowed per container: labels and the config's tables ----

/// A dockerd whose containers ask the zone's server (directly on docker0, through the
/// embedded resolver on a user network), and the zone.
fn dockerd_with_zone() -> (Dockerd, Zone) {
    let dk = Dockerd::start(Options::default().with("dns", json!([DNS_V4.to_string()])));
    let zone = Zone::start(&dk.internet, &dk.host);
    (dk, zone)
}

/// watch following `dk` with no name allowed to all (only labels or `extra`'s config bring
/// names); its forwarder is not waited for, as it starts with the first container allowed one.
fn watch_per_container(dk: &Dockerd, extra: &[&str]) -> Journaled {
    let upstream = DNS_V4.to_string();
    let socket = dk.socket();
    let mut args = vec!["--docker-host", socket.as_str(), "--dns-upstream", upstream.as_str()];
    args.extend(extra);
    Journaled::start(&dk.host, &args)
}

/// Waits for the forwarder that a container allowed a name of its own started, with no name
/// allowed to all.
fn forwarder_started(watch: &Journaled) {
    let started = watch.line_within(Duration::from_secs(20), &["answering containers' DNS on port 53053"]);
    let started = started.unwrap_or_else(|| panic!("watch's forwarder did not start: {:#?}", watch.lines()));
    assert!(started.contains("for 0 name(s) allowed to all"), "{started}");
}

/// How many times dnsmasq was asked for `name` (type A) so far.
fn asked(zone: &Zone, name: &str) -> usize {
    zone.dnsmasq.log().matches(&format!("query[A] {name} ")).count()
}

/// The journal's refusal of `name` asked by `c`, if watch said one within 5 s.
fn refusal(watch: &Journaled, c: &Container, name: &str) -> Option<String> {
    let who = format!("dns: {} ({}, {})", c.name, &c.id[..12], c.v4);
    let what = format!("asked for {name} (A): refused, not an allowed name");
    watch.line_within(Duration::from_secs(5), &[&who, &what])
}

/// `c`, allowed pypi.test, resolves it in both families and reaches both of its addresses;
/// evil.test is not found (watch journals the refusal) nor reached by address.
fn reaches_pypi_alone(watch: &Journaled, c: &Container) {
    let pypi = [IpAddr::V4(PYPI_V4), IpAddr::V6(PYPI_V6)];
    assert_eq!(nslookup(c, "pypi.test", None).as_deref(), Some(&pypi[..]), "{c}: its name resolves");
    for to in pypi {
        assert_eq!(c.nc(SocketAddr::new(to, ECHO_PORT)), Outcome::Open, "{c}: its name's {to} connects");
    }
    assert_eq!(nslookup(c, "evil.test", None), None, "{c}: a name not allowed to it is not found");
    assert!(refusal(watch, c, "evil.test").is_some(), "no refusal of {c}'s evil.test: {:#?}", watch.lines());
    assert!(!c.nc(SocketAddr::new(EVIL_V4.into(), ECHO_PORT)).is_open(), "{c}: nor reached by address");
    assert!(!c.nc(SocketAddr::new(INTERNET_V4.into(), SERVICE_PORT)).is_open(), "{c}: nor anything else");
}

/// `c`, allowed no name, gets no answer for pypi.test, its query never leaves (dnsmasq is not
/// asked), and pypi.test's addresses stay closed to it even though another container looked
/// them up and reaches them.
fn gets_nothing(zone: &Zone, c: &Container) {
    let before = asked(zone, "pypi.test");
    assert_eq!(nslookup(c, "pypi.test", None), None, "{c}: no answer for a name not allowed to it");
    assert_eq!(asked(zone, "pypi.test"), before, "{c}'s query reached dnsmasq:\n{}", zone.dnsmasq.log());
    for to in [IpAddr::V4(PYPI_V4), IpAddr::V6(PYPI_V6)] {
        assert!(!c.nc(SocketAddr::new(to, ECHO_PORT)).is_open(), "{c}: {to} is another container's grant");
    }
}

/// No `--allow-domain`: the label's name is its container's alone. web (a user network,
/// through the embedded resolver) and bare (docker0, asking the zone's server itself) carry
/// the label; other, web's neighbour, does not and gets nothing, also after web's lookup.
#[test]
fn a_name_allowed_by_a_containers_label_is_that_containers_alone() {
    require_dockerd!();
    let (dk, zone) = dockerd_with_zone();
    let net = dk.network("app");
    let watch = watch_per_container(&dk, &[]);
    let other = dk.container("other").network(&net).run();
    let web = dk.container("web").network(&net).label(ALLOW_DOMAIN, "pypi.test").run();
    let bare = dk.container("bare").label(ALLOW_DOMAIN, "pypi.test").run();
    forwarder_started(&watch);
    let pypi = SocketAddr::new(PYPI_V4.into(), ECHO_PORT);
    for c in [&web, &bare, &other] {
        assert!(!c.nc(pypi).is_open(), "{c}: closed before a lookup");
    }
    reaches_pypi_alone(&watch, &web);
    gets_nothing(&zone, &other);
    reaches_pypi_alone(&watch, &bare);
    // web's grant is web's: still open to it, still closed to other.
    assert_eq!(web.nc(pypi), Outcome::Open);
    assert!(!other.nc(pypi).is_open());
    let log = zone.dnsmasq.log();
    assert!(log.contains(&format!("query[A] pypi.test from {HOST_V4}")), "the forwarder asked:\n{log}");
    assert!(!log.contains("evil.test"), "a refused name reached dnsmasq:\n{log}");
}

/// A network's label allows its name to every member, a late one too, and to no one else.
#[test]
fn a_name_allowed_by_a_networks_label_is_its_members_alone() {
    require_dockerd!();
    let (dk, zone) = dockerd_with_zone();
    let ci = dk.network_labelled("ci", &[(ALLOW_DOMAIN, "pypi.test")]);
    let elsewhere = dk.network("elsewhere");
    let watch = watch_per_container(&dk, &[]);
    let outsider = dk.container("outsider").network(&elsewhere).run();
    let member = dk.container("member").network(&ci).run();
    forwarder_started(&watch);
    reaches_pypi_alone(&watch, &member);
    gets_nothing(&zone, &outsider);
    let late = dk.container("late").network(&ci).run();
    reaches_pypi_alone(&watch, &late);
    gets_nothing(&zone, &outsider);
}

/// The config's `[container.NAME]` and `[service.NAME]` tables allow names to the containers
/// they name; a container they don't name gets nothing.
#[test]
fn a_name_allowed_by_a_config_table_is_the_named_containers_alone() {
    require_dockerd!();
    let (dk, zone) = dockerd_with_zone();
    let net = dk.network("app");
    let config = dk.dir().join("config.toml");
    let text = "[container.web]\nallow_domain = [\"pypi.test\"]\n\n[service.api]\nallow_domain = [\"pypi.test\"]\n";
    std::fs::write(&config, text).expect("write the config");
    let config = config.to_string_lossy().into_owned();
    let watch = watch_per_container(&dk, &["--config", &config]);
    let plain = dk.container("plain").network(&net).run();
    let web = dk.container("web").network(&net).run();
    let api = dk
        .container("p-api-1")
        .network(&net)
        .label("com.docker.compose.project", "p")
        .label("com.docker.compose.service", "api")
        .run();
    forwarder_started(&watch);
    reaches_pypi_alone(&watch, &web);
    reaches_pypi_alone(&watch, &api);
    gets_nothing(&zone, &plain);
}

/// With a name allowed to all, every guarded container's DNS goes to the forwarder, but one
/// labelled `egress-guard.egress=open` keeps its own resolver: it resolves evil.test, which
/// the forwarder refuses its neighbour, and watch never hears its queries.
#[test]
fn a_container_whose_egress_is_open_keeps_its_own_resolver() {
    require_dockerd!();
    let (dk, zone) = dockerd_with_zone();
    let net = dk.network("app");
    let watch = watch(&dk);
    let free = dk.container("free").network(&net).label(EGRESS, "open").run();
    let plain = dk.container("plain").network(&net).run();
    assert_eq!(nslookup(&plain, "evil.test", None), None, "the forwarder refuses a guarded container");
    assert!(refusal(&watch, &plain, "evil.test").is_some(), "no refusal for plain: {:#?}", watch.lines());
    let before = asked(&zone, "evil.test");
    let got = nslookup(&free, "evil.test", None);
    assert!(got.is_some_and(|a| a.contains(&IpAddr::V4(EVIL_V4))), "the open container's resolver answers");
    assert!(asked(&zone, "evil.test") > before, "dnsmasq answered it:\n{}", zone.dnsmasq.log());
    assert_eq!(free.nc(SocketAddr::new(EVIL_V4.into(), ECHO_PORT)), Outcome::Open, "and its egress is open");
    let heard = format!("dns: {} (", free.name);
    assert!(watch.lines().iter().all(|l| !l.contains(&heard)), "the forwarder heard free: {:#?}", watch.lines());
}
