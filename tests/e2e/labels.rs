//! Per-container and per-network allowances from Docker labels, with `watch` following a real
//! dockerd: a labelled container reaches what its label allows and nothing else, its unlabelled
//! neighbour on the same network reaches nothing, and when it stops its allowance goes.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::harness::{Outcome, Watch, DNS_PORT, INTERNET_V4, INTERNET_V6, SERVICE_PORT};
use crate::reach::{assert_paths, set_addresses, settle, shot, tcp, tcp_probe, udp, watch_piped, Shot, ALLOW, EGRESS};
use crate::timeline::Timeline;
use crate::{require_dockerd, Container, Dockerd, Options};

/// `watch` following `dk`'s dockerd.
fn watch(dk: &Dockerd) -> Watch {
    Watch::start(&dk.host, &["--docker-host", &dk.socket()])
}

/// Waits (up to 10 s) until `c`'s TCP connection to `to` is `open` or not.
fn eventually(c: &Container, to: SocketAddr, open: bool) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let outcome = c.nc(to);
        if outcome.is_open() == open || Instant::now() > deadline {
            return outcome;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_labelled_container_reaches_its_destination_and_its_neighbour_does_not() {
    require_dockerd!();
    let dk = Dockerd::start(Options::default());
    let net = dk.network("ctf");
    let allowed = SocketAddr::from((INTERNET_V4, SERVICE_PORT));
    let other = SocketAddr::from((INTERNET_V4, DNS_PORT));
    let _watch = watch(&dk);
    let db = dk.container("db").network(&net).run();
    assert!(!eventually(&db, allowed, false).is_open(), "watch closes egress");
    let web = dk
        .container("web")
        .network(&net)
        .label("egress-guard.allow", &format!("{INTERNET_V4}:{SERVICE_PORT}/tcp"))
        .run();
    assert!(eventually(&web, allowed, true).is_open(), "web reaches what its label allows");
    assert!(!web.nc(other).is_open(), "and nothing else");
    assert!(!db.nc(allowed).is_open(), "its unlabelled neighbour reaches nothing");
    let status =
        String::from_utf8_lossy(&dk.egress_guard(&["status", "--docker-host", &dk.socket()]).stdout).into_owned();
    assert!(status.contains(&format!("web ({}", &web.id[..12])), "{status}");
    assert!(status.contains(&format!("{INTERNET_V4}/32:{SERVICE_PORT}/tcp (label)")), "{status}");
    let check = dk.egress_guard(&["check", "--docker-host", &dk.socket()]);
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stdout));
}

/// `egress-guard status --docker-host` (and EXTRA), its stdout.
fn status(dk: &Dockerd, extra: &[&str]) -> String {
    let socket = dk.socket();
    let mut args = vec!["status", "--docker-host", socket.as_str()];
    args.extend(extra);
    String::from_utf8_lossy(&dk.egress_guard(&args).stdout).into_owned()
}

/// The line of `status` that names `c`.
fn status_line<'a>(status: &'a str, c: &Container) -> &'a str {
    let key = format!("{} ({}", c.name, &c.id[..12]);
    status.lines().find(|l| l.contains(&key)).unwrap_or_else(|| panic!("status names no {c}:\n{status}"))
}

#[test]
fn a_network_label_applies_to_every_member_in_both_families() {
    require_dockerd!();
    let started = Instant::now();
    let dk = Dockerd::start(Options::default());
    let allow = format!("{INTERNET_V4}:{SERVICE_PORT}/tcp,[{INTERNET_V6}]:{SERVICE_PORT}/tcp");
    let ctf = dk.network_labelled("ctf", &[(ALLOW, &allow)]);
    let other = dk.network("other");
    let a = dk.container("member-a").network(&ctf).run();
    let b = dk.container("member-b").network(&ctf).run();
    let c = dk.container("outsider").network(&other).run();
    let every = |open_80: bool, open_c: bool| {
        let mut paths = Vec::new();
        for to in [IpAddr::from(INTERNET_V4), INTERNET_V6.into()] {
            for m in [&a, &b] {
                paths.push(tcp(m, to, SERVICE_PORT, open_80));
                paths.push(tcp(m, to, DNS_PORT, open_c));
                paths.push(udp(m, to, SERVICE_PORT, open_c));
            }
            paths.push(tcp(&c, to, SERVICE_PORT, open_c));
        }
        paths
    };
    assert_paths(&every(true, true), "without the guard");

    let _watch = watch(&dk);
    let took = settle(&every(true, false), "the network's label, under watch");
    eprintln!("network label: settled {took:?} after watch started");
    let status = status(&dk, &[]);
    for m in [&a, &b] {
        let line = status_line(&status, m);
        assert!(line.contains("network ctf (label)"), "{line}");
    }
    assert!(status_line(&status, &c).contains("closed"), "{status}");
    let check = dk.egress_guard(&["check", "--docker-host", &dk.socket()]);
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stdout));
    // A member that joins later gets it too.
    let late = dk.container("late").network(&ctf).run();
    settle(&[tcp(&late, INTERNET_V4, SERVICE_PORT, true), tcp(&late, INTERNET_V6, SERVICE_PORT, true)], "late member");
    eprintln!("a_network_label_applies_to_every_member_in_both_families: {:?}", started.elapsed());
}

#[test]
fn egress_open_opens_one_container_and_a_malformed_label_closes_only_its_own() {
    require_dockerd!();
    let started = Instant::now();
    let dk = Dockerd::start(Options::default());
    let net = dk.network("ctf");
    let open = dk.container("open").network(&net).label(EGRESS, "open").run();
    let bad = dk.container("bad").network(&net).label(ALLOW, "anywhere").run();
    let good = dk.container("good").network(&net).label(ALLOW, &format!("{INTERNET_V4}:{SERVICE_PORT}/tcp")).run();
    let plain = dk.container("plain").network(&net).run();
    let every = |guarded: bool| {
        let mut paths = Vec::new();
        for to in [IpAddr::from(INTERNET_V4), INTERNET_V6.into()] {
            for port in [SERVICE_PORT, DNS_PORT] {
                paths.push(tcp(&open, to, port, true));
                paths.push(udp(&open, to, port, true));
                paths.push(tcp(&bad, to, port, !guarded));
                paths.push(tcp(&plain, to, port, !guarded));
            }
            paths.push(udp(&good, to, SERVICE_PORT, !guarded));
            paths.push(tcp(&good, to, DNS_PORT, !guarded));
        }
        paths.push(tcp(&good, INTERNET_V4, SERVICE_PORT, true));
        paths.push(tcp(&good, INTERNET_V6, SERVICE_PORT, !guarded));
        paths
    };
    assert_paths(&every(false), "without the guard");

    let mut timeline = Timeline::new();
    let mut watch = watch_piped(&dk, &[]);
    timeline.follow("watch", watch.child().stdout.take().expect("piped stdout"));
    timeline.follow("watch!", watch.child().stderr.take().expect("piped stderr"));
    settle(&every(true), "egress=open, a malformed label, a good one, none");

    let status = status(&dk, &[]);
    let problem = "PROBLEM: container bad: label egress-guard.allow: \"anywhere\"";
    assert!(status.lines().any(|l| l.trim_start().starts_with(problem)), "{status}");
    assert!(status_line(&status, &open).contains("open (anywhere)"), "{status}");
    assert!(status_line(&status, &bad).contains("closed"), "{status}");
    let said = timeline.render();
    let warned = said.lines().any(|l| l.contains("[watch!]") && l.contains("container bad: label egress-guard.allow"));
    assert!(warned, "watch's stderr does not warn of the bad label:\n{said}");
    eprintln!("status:\n{status}\nwatch:\n{said}");
    eprintln!("egress_open_…_malformed_label: {:?}", started.elapsed());
}

#[test]
fn config_tables_grant_by_container_network_and_compose_service() {
    require_dockerd!();
    let started = Instant::now();
    let dk = Dockerd::start(Options::default());
    let ctf = dk.network("ctf");
    let other = dk.network("other");
    let config = dk.dir().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[container.web]\nallow = [\"{INTERNET_V4}:{SERVICE_PORT}/tcp\"]\n\n\
             [network.ctf]\nallow = [\"[{INTERNET_V6}]:{DNS_PORT}/tcp\"]\n\n\
             [service.api]\negress = \"open\"\n"
        ),
    )
    .expect("write the config");
    let web = dk.container("web").network(&other).run();
    let member = dk.container("member").network(&ctf).run();
    let api = dk
        .container("p-api-1")
        .network(&other)
        .label("com.docker.compose.project", "p")
        .label("com.docker.compose.service", "api")
        .run();
    let plain = dk.container("plain").network(&other).run();
    let every = |guarded: bool| {
        let (v4, v6) = (IpAddr::from(INTERNET_V4), IpAddr::from(INTERNET_V6));
        let mut paths = vec![
            tcp(&web, v4, SERVICE_PORT, true),
            tcp(&web, v4, DNS_PORT, !guarded),
            tcp(&web, v6, SERVICE_PORT, !guarded),
            tcp(&member, v6, DNS_PORT, true),
            tcp(&member, v6, SERVICE_PORT, !guarded),
            tcp(&member, v4, DNS_PORT, !guarded),
        ];
        for to in [v4, v6] {
            for port in [SERVICE_PORT, DNS_PORT] {
                paths.push(tcp(&api, to, port, true));
                paths.push(udp(&api, to, port, true));
                paths.push(tcp(&plain, to, port, !guarded));
            }
        }
        paths
    };
    assert_paths(&every(false), "without the guard");

    let config = config.to_string_lossy().into_owned();
    let _watch = Watch::start(&dk.host, &["--docker-host", &dk.socket(), "--config", &config]);
    settle(&every(true), "the config's container, network and service tables");
    let status = status(&dk, &["--config", &config]);
    assert!(status_line(&status, &web).contains("config container.web"), "{status}");
    assert!(status_line(&status, &member).contains("config network.ctf"), "{status}");
    assert!(status_line(&status, &api).contains("config service.api"), "{status}");
    assert!(status_line(&status, &plain).contains("closed"), "{status}");
    let check = dk.egress_guard(&["check", "--docker-host", &dk.socket(), "--config", &config]);
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stdout));
    eprintln!("config_tables_…: {:?}", started.elapsed());
}

/// How many one-shot containers the start race runs, per network.
const SHOTS: usize = 50;

/// `docker events` for dockerd, one line per event with dockerd's own time, for a timeline.
fn docker_events(dk: &Dockerd) -> std::process::Child {
    let format = "{{.TimeNano}} {{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.container}}";
    let mut command = dk.cli().command(&["events", "--format", format]);
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    command.spawn().expect("start docker events")
}

/// Start → allowed before the first packet: [`SHOTS`] containers whose entrypoint dials its
/// allowed destinations at once, each started by `docker run --rm`, must all get their echo;
/// every other one dials IPv6 first, the others IPv4, so each family's first packet is tried.
/// watch refuses with `tcp-reset`, so a SYN that leaves before the allowance is refused at
/// once and for good (with port-unreachable, TCP would retry a second later and hide a late
/// allowance). On a failure, the timeline around each failed start is printed: dockerd's
/// events, every ruleset generation (`nft monitor`, with the elements added), watch's journal.
///
/// `parallel` starts that many at once (as `docker compose up` does), [`SHOTS`] in all.
fn every_start_is_allowed_before_its_first_packet(network: Option<&str>, parallel: usize) {
    let dk = Dockerd::start(Options::default());
    let network = match network {
        Some(name) => dk.network(name).name,
        None => "bridge".to_owned(),
    };
    let v4 = SocketAddr::from((INTERNET_V4, SERVICE_PORT));
    let v6 = SocketAddr::from((INTERNET_V6, SERVICE_PORT));
    let label = format!("{ALLOW}={INTERNET_V4}:{SERVICE_PORT}/tcp,[{INTERNET_V6}]:{SERVICE_PORT}/tcp");
    let labelled = ["--network", network.as_str(), "--label", label.as_str()];
    let unlabelled = ["--network", network.as_str()];
    let before = shot(&dk, "before", &unlabelled, &[v4, v6]);
    assert!(before.echoed, "without the guard a one-shot container reaches {v4} and {v6}: {}", before.output);

    // No `nft monitor` here: nft 1.0.6 prints the elements of these concatenated interval
    // sets as garbage or not at all; watch's journal line ("wrote … deleted …") follows the
    // commit of the batch that holds the new element.
    let mut timeline = Timeline::new();
    timeline.follow_child("docker", docker_events(&dk));
    // EG_E2E_REJECT=port-unreachable measures what a client sees with the default refusal.
    let reject = std::env::var("EG_E2E_REJECT").unwrap_or_else(|_| "tcp-reset".into());
    let mut watch = watch_piped(&dk, &["--reject-with", &reject]);
    timeline.follow("watch", watch.child().stdout.take().expect("piped stdout"));
    timeline.follow("watch!", watch.child().stderr.take().expect("piped stderr"));
    // The guard is up once an unlabelled one-shot is refused; and it is refused at once, so a
    // labelled one that is let through was let through by its first SYN.
    let deadline = Instant::now() + Duration::from_secs(10);
    let control = loop {
        let s = shot(&dk, "control", &unlabelled, &[v4]);
        if !s.echoed || Instant::now() > deadline {
            break s;
        }
    };
    assert!(!control.echoed && control.output.contains("refused"), "unlabelled under watch: {}", control.output);

    let started = Instant::now();
    let mut failed = Vec::new();
    // A few that got through, for EG_E2E_TIMELINE=1 to show how wide the margin was.
    let mut shown = Vec::new();
    let mut took = Vec::new();
    let one = |i: usize| {
        let name = format!("shot-{i}");
        timeline.mark("test", format!("docker run {name}"));
        let order = if i.is_multiple_of(2) { [v6, v4] } else { [v4, v6] };
        let s = shot(&dk, &name, &labelled, &order);
        timeline.mark("test", format!("{name}: {}", if s.echoed { "echoed" } else { "FAILED" }));
        (name, s)
    };
    for batch in (0..SHOTS).collect::<Vec<_>>().chunks(parallel) {
        let shots: Vec<(String, Shot)> = std::thread::scope(|scope| {
            let running: Vec<_> = batch.iter().map(|&i| scope.spawn(move || one(i))).collect();
            running.into_iter().map(|t| t.join().expect("a shot's thread")).collect()
        });
        for (name, s) in shots {
            took.push(s.took);
            if !s.echoed {
                failed.push((name, s));
            } else if shown.len() < 3 {
                shown.push((name, s));
            }
        }
    }
    let all = started.elapsed();
    took.sort();
    let summary = format!(
        "{network}, {parallel} at once: {} of {SHOTS} one-shot starts failed; {SHOTS} runs took {all:?} \
         (docker run: median {:?}, max {:?})",
        failed.len(),
        took[SHOTS / 2],
        took[SHOTS - 1]
    );
    eprintln!("{summary}");
    // The first few are enough to place the race; the rest look alike.
    let show_passed = std::env::var_os("EG_E2E_TIMELINE").is_some();
    for (name, s) in failed.iter().take(3).chain(shown.iter().filter(|_| show_passed)) {
        let window = timeline.render_between(s.started, s.started + s.took);
        eprintln!("--- {name} ({:?}): {}\n{window}", s.took, s.output);
    }
    assert!(failed.is_empty(), "{summary}");
}

/// 50 one-shot starts, each dialing at once, each must get out on its first SYN (watch refuses
/// by tcp-reset, so no retry can hide a late allowance). Before the follower learned addresses
/// at `network connect` (f0f6b80) all 50 were refused: the inspect it sent waited for the start,
/// and `container start` comes after the process runs (connect +0 ms, start +300 ms, watch's set
/// write +304 ms, the container already dead at +316 ms). Now the element lands about 3 ms
/// after the connect, hundreds of ms before the first packet (docs/docker-events.md). 50 runs
/// take 25-45 s.
#[test]
fn a_starting_container_is_allowed_before_its_first_packet_on_a_user_network() {
    require_dockerd!();
    every_start_is_allowed_before_its_first_packet(Some("ctf"), 1);
}

#[test]
fn a_starting_container_is_allowed_before_its_first_packet_on_the_default_bridge() {
    require_dockerd!();
    every_start_is_allowed_before_its_first_packet(None, 1);
}

/// Five at once, as `docker compose up` starts a project (16-20 s for 50 runs).
#[test]
fn containers_starting_five_at_once_are_each_allowed_before_their_first_packet() {
    require_dockerd!();
    every_start_is_allowed_before_its_first_packet(Some("ctf"), 5);
}

/// The address two containers hold in turn, in the first network's 172.18.0.0/24.
const REUSED: &str = "172.18.0.10";

/// Stop → closed before reuse: a labelled container at [`REUSED`] is taken away by `take_away`
/// (`docker rm -f`, `docker stop`), and an unlabelled one started at once on the same address
/// is refused on its very first SYN (watch refuses by tcp-reset, so no retry can hide a late
/// removal), and the address is gone from every per-source set.
fn closed_before_the_address_is_reused(take_away: &[&str]) {
    let dk = Dockerd::start(Options::default());
    let net = dk.network("ctf");
    let to = SocketAddr::from((INTERNET_V4, SERVICE_PORT));
    let unlabelled = ["--network", net.name.as_str(), "--ip", REUSED];
    let before = shot(&dk, "before", &unlabelled, &[to]);
    assert!(before.echoed, "without the guard a one-shot container reaches {to}: {}", before.output);

    let _watch = Watch::start(&dk.host, &["--docker-host", &dk.socket(), "--reject-with", "tcp-reset"]);
    // A port entry per family, and one without a port: all three kinds of per-source set.
    let label = format!("{INTERNET_V4}:{SERVICE_PORT}/tcp,[{INTERNET_V6}]:{SERVICE_PORT}/tcp,203.0.113.0/24");
    let first = dk.container("first").network(&net).ip(REUSED).label(ALLOW, &label).run();
    settle(&[tcp(&first, INTERNET_V4, SERVICE_PORT, true), tcp(&first, INTERNET_V6, SERVICE_PORT, true)], "first");
    let held = [(IpAddr::from(first.v4), "from4_port"), (first.v4.into(), "from4"), (first.v6().into(), "from6_port")];
    for (addr, set) in held {
        assert!(set_addresses(&dk, set).contains(&addr), "{addr} not in {set} while {first} runs");
    }

    let mut args = take_away.to_vec();
    args.push("first");
    let gone = Instant::now();
    dk.docker(&args);
    // IPv6 too: the second may well be given the first's IPv6 address as well.
    let second = shot(&dk, "second", &unlabelled, &[to, SocketAddr::from((INTERNET_V6, SERVICE_PORT))]);
    eprintln!("{}: first taken away in {:?}, second ran {:?}", take_away.join(" "), second.started - gone, second.took);
    assert_eq!(second.echoes, 0, "an unlabelled container at {REUSED} got out after {}", take_away.join(" "));
    assert!(second.output.contains("refused"), "refused, not timed out: {}", second.output);
    for (addr, set) in held {
        assert!(!set_addresses(&dk, set).contains(&addr), "{addr} still in {set} after {}", take_away.join(" "));
    }
}

#[test]
fn a_removed_container_s_address_is_closed_before_it_is_reused() {
    require_dockerd!();
    closed_before_the_address_is_reused(&["rm", "-f"]);
}

#[test]
fn a_stopped_container_s_address_is_closed_before_it_is_reused() {
    require_dockerd!();
    // busybox as pid 1 ignores SIGTERM: it is killed after 1 s.
    closed_before_the_address_is_reused(&["stop", "-t", "1"]);
}

/// A labelled and an unlabelled container's TCP paths to the internet's ports 80 and 53, both
/// families, by busybox inside (`docker exec`) and by the harness from outside.
fn labelled_and_not<'a>(web: &'a Container, db: &'a Container, guarded: bool) -> Vec<crate::reach::Path<'a>> {
    let mut paths = by_probe(web, db, guarded);
    for to in [IpAddr::from(INTERNET_V4), INTERNET_V6.into()] {
        paths.push(tcp(web, to, SERVICE_PORT, true));
        paths.push(tcp(db, to, SERVICE_PORT, !guarded));
    }
    paths
}

/// [`labelled_and_not`] by the harness's probes alone: they need no dockerd.
fn by_probe<'a>(web: &'a Container, db: &'a Container, guarded: bool) -> Vec<crate::reach::Path<'a>> {
    let mut paths = Vec::new();
    for to in [IpAddr::from(INTERNET_V4), INTERNET_V6.into()] {
        paths.push(tcp_probe(web, to, SERVICE_PORT, true));
        paths.push(tcp_probe(web, to, DNS_PORT, !guarded));
        paths.push(tcp_probe(db, to, SERVICE_PORT, !guarded));
    }
    paths
}

fn web_label() -> String {
    format!("{INTERNET_V4}:{SERVICE_PORT}/tcp,[{INTERNET_V6}]:{SERVICE_PORT}/tcp")
}

#[test]
fn a_restarted_watch_rebuilds_the_allowances_from_the_running_containers() {
    require_dockerd!();
    let started = Instant::now();
    let dk = Dockerd::start(Options::default());
    let net = dk.network("ctf");
    let web = dk.container("web").network(&net).label(ALLOW, &web_label()).run();
    let db = dk.container("db").network(&net).run();
    assert_paths(&labelled_and_not(&web, &db, false), "without the guard");
    let first = watch(&dk);
    settle(&labelled_and_not(&web, &db, true), "under the first watch");

    drop(first);
    dk.host.run(&["nft", "delete", "table", "inet", "egress_guard"]);
    // The allowances lived in that table: without it nothing marks web's packets, and
    // DOCKER-USER, which outlives watch, refuses them. (IPv6 has no DOCKER-USER on Docker
    // 20.10: our table guarded it, and watch's shield went with watch's socket, so IPv6 is
    // open to all until watch is back.)
    assert_paths(&[tcp(&web, INTERNET_V4, SERVICE_PORT, false)], "watch killed and our table deleted");

    let _again = watch(&dk);
    let took = settle(&labelled_and_not(&web, &db, true), "under a new watch");
    eprintln!("a new watch rebuilt the allowances within {took:?}; test took {:?}", started.elapsed());
    let check = dk.egress_guard(&["check", "--docker-host", &dk.socket()]);
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stdout));
}

#[test]
fn a_dockerd_restart_with_live_restore_keeps_the_allowances() {
    require_dockerd!();
    let started = Instant::now();
    let dk = Dockerd::start(Options::default().live_restore());
    let net = dk.network("ctf");
    let web = dk.container("web").network(&net).label(ALLOW, &web_label()).run();
    let db = dk.container("db").network(&net).run();
    assert_paths(&labelled_and_not(&web, &db, false), "without the guard");
    let _watch = watch(&dk);
    settle(&labelled_and_not(&web, &db, true), "under watch");

    dk.stop_daemon();
    assert_paths(&by_probe(&web, &db, true), "while dockerd is down");
    assert!(set_addresses(&dk, "from4_port").contains(&web.v4.into()), "web's element while dockerd is down");
    dk.start_daemon();
    assert_paths(&labelled_and_not(&web, &db, true), "after dockerd's restart");
    // watch follows the new dockerd: a container started now gets its allowance too.
    let late = dk.container("late").network(&net).label(ALLOW, &web_label()).run();
    settle(&labelled_and_not(&late, &db, true), "a labelled container started after the restart");
    let check = dk.egress_guard(&["check", "--docker-host", &dk.socket()]);
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stdout));
    eprintln!("a_dockerd_restart_with_live_restore_keeps_the_allowances: {:?}", started.elapsed());
}

/// `dockerd --version`'s major number (e.g. 20 for "Docker version 20.10.24+dfsg1, build …").
fn dockerd_major() -> Option<u32> {
    let out = std::process::Command::new("dockerd").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.strip_prefix("Docker version ")?.split('.').next()?.parse().ok()
}

/// Docker 29's nftables firewall backend writes no iptables chains at all, so there is no
/// DOCKER-USER and our table guards both families alone; labels work the same there. Runs only
/// where the dockerd is 29 or later (older ones refuse the `firewall-backend` key); this
/// machine's is 20.10, so it has not yet run here.
#[test]
fn labels_work_with_docker_s_nftables_firewall_backend() {
    require_dockerd!();
    match dockerd_major() {
        Some(major) if major >= 29 => {}
        found => {
            eprintln!("skipped: dockerd {found:?} has no nftables firewall backend (Docker 29 or later)");
            return;
        }
    }
    let dk = Dockerd::start(Options::default().firewall_backend("nftables"));
    let net = dk.network("ctf");
    let web = dk.container("web").network(&net).label(ALLOW, &web_label()).run();
    let db = dk.container("db").network(&net).run();
    assert_paths(&labelled_and_not(&web, &db, false), "without the guard");
    let _watch = watch(&dk);
    settle(&labelled_and_not(&web, &db, true), "under watch, Docker's nftables backend");
    let status = status(&dk, &[]);
    assert!(status.contains("IPv4: table") && status.contains("IPv6: table"), "our table guards alone:\n{status}");
    assert!(status_line(&status, &web).contains("(label)"), "{status}");
}
