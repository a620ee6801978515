//! The `table` target (issue #5): our own `inet egress_guard` table, proven by packets on the
//! emulated iptables-nft Docker host, on one whose FORWARD has no DOCKER-USER, and on an
//! emulated Docker 29 nftables-backend host; `both` with either layer deleted by hand, `auto`
//! and its reason, status/check, `--block-host`, re-apply under a flood, and a
//! 10,000-destination allow-list in one batch.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use egress_guard::nft::socket::Netlink;

use crate::harness::egress_guard_ok;
use crate::harness::{self, *};

/// `check`'s exit code and its line.
fn check(dh: &DockerHost, args: &[&str]) -> (i32, String) {
    let out = dh.egress_guard("check", args);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The host namespace's ruleset generation: it moves by one per committed batch.
fn generation(ns: &Netns) -> u32 {
    ns.enter(|| Netlink::open().and_then(|mut nl| nl.generation())).expect("GETGEN")
}

#[test]
fn nftables_backend_fixture_is_open_without_a_guard() {
    harness::require_kernel!();
    let dh = DockerHost::builder().nftables_backend().build();
    matrix(&dh, true);
    assert!(dh.host.try_run(&["iptables", "-S", "DOCKER-USER"]).stdout.is_empty());
}

#[test]
fn on_the_iptables_nft_host_the_table_guards_and_remove_reopens() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    let out = dh.egress_guard_ok("apply", &["--target", "table"]);
    assert!(out.contains("inet egress_guard: did write"), "{out}");
    matrix(&dh, false);
    assert!(!dh.host.run(&["iptables", "-S", "DOCKER-USER"]).contains("egress-guard"), "table only");

    let status = status_json(&dh.host, &["--target", "table"]);
    let table = &status["places"][0];
    assert_eq!(
        (&table["place"], &table["exists"], &table["reached"], &table["verdict"]),
        (&"inet egress_guard".into(), &true.into(), &true.into(), &"in place".into()),
        "{status}"
    );
    // The probes from br-eg1 were refused by the br-* rule, and counted there.
    let br = table["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["rule"].as_str().is_some_and(|t| t.contains("iifname \"br-*\"") && t.contains("reject")));
    assert!(br.is_some_and(|r| r["packets"].as_u64() > Some(0)), "{status}");

    dh.egress_guard_ok("remove", &["--target", "table"]);
    assert_eq!(dh.host.run(&["nft", "list", "tables", "inet"]), "");
    matrix(&dh, true);
}

#[test]
fn without_docker_user_auto_picks_the_table_and_says_why() {
    harness::require_kernel!();
    let dh = DockerHost::builder().docker_user(DockerUser::Missing).build();
    let out = dh.egress_guard_ok("apply", &[]);
    assert!(out.starts_with("target auto: IPv4: table, ip filter DOCKER exists but DOCKER-USER does not"), "{out}");
    assert!(out.contains("IPv6: table, ip6 filter DOCKER exists but DOCKER-USER does not"), "{out}");
    matrix(&dh, false);
    assert_eq!(check(&dh, &[]), (0, "in place: guarding inet egress_guard".into()));
}

#[test]
fn without_any_docker_auto_picks_the_table_and_remove_leaves_the_rest() {
    harness::require_kernel!();
    let ns = Netns::new("nodocker");
    // Someone else's table, which remove must leave alone.
    ns.run(&["nft", "add", "table", "inet", "mine"]);
    let out = egress_guard_ok(&ns, &["apply"]);
    assert!(out.starts_with("target auto: IPv4: table, no Docker rules in ip nf_tables"), "{out}");
    assert!(ns
        .run(&["nft", "list", "table", "inet", "egress_guard"])
        .contains("hook forward priority filter - 1; policy accept;"));
    egress_guard_ok(&ns, &["remove"]);
    assert_eq!(ns.run(&["nft", "list", "tables"]), "table inet mine\n");
}

#[test]
fn on_dockers_nftables_backend_auto_picks_the_table() {
    harness::require_kernel!();
    let dh = DockerHost::builder().nftables_backend().build();
    assert_eq!(check(&dh, &[]), (1, "absent: inet egress_guard: the table does not exist".into()));
    let dry = dh.egress_guard_ok("apply", &["--dry-run"]);
    assert!(dry.contains("+ add rule inet egress_guard forward iifname \"docker0\""), "{dry}");
    assert_eq!(dh.host.run(&["nft", "list", "tables", "inet"]), "", "a dry run changes nothing");
    let out = dh.egress_guard_ok("apply", &[]);
    assert!(out.starts_with("target auto: IPv4: table, Docker's nftables backend detected"), "{out}");
    matrix(&dh, false);

    // Steady: nothing to send, nothing committed.
    let before = generation(&dh.host);
    let out = dh.egress_guard_ok("apply", &[]);
    assert!(out.contains("inet egress_guard: already in place"), "{out}");
    assert_eq!(generation(&dh.host), before);

    // Drift by hand is seen, and healed by the next apply.
    dh.host.run(&["nft", "delete", "rule", "inet", "egress_guard", "forward", "handle", &first_handle(&dh.host)]);
    let (code, line) = check(&dh, &[]);
    assert_eq!(
        (code, line.as_str()),
        (1, "drifted: inet egress_guard: chain forward holds 1 rules where the policy has 2")
    );
    dh.egress_guard_ok("apply", &[]);
    assert_eq!(check(&dh, &[]).0, 0);
    // Docker's own tables are untouched.
    assert!(dh.host.run(&["nft", "list", "table", "ip", "docker-bridges"]).contains("filter-FORWARD"));
}

/// The handle of the first rule in our forward chain.
fn first_handle(host: &Netns) -> String {
    let listing = host.run(&["nft", "-a", "list", "chain", "inet", "egress_guard", "forward"]);
    let line = listing.lines().find(|l| l.contains("comment \"egress-guard\"")).expect("a rule of ours");
    line.rsplit("# handle ").next().expect("a handle").trim().to_string()
}

#[test]
fn both_layers_hold_each_alone() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    let before = generation(&dh.host);
    let out = dh.egress_guard_ok("apply", &["--target", "both"]);
    assert_eq!(generation(&dh.host), before + 1, "one batch for both targets: {out}");
    matrix(&dh, false);
    assert_eq!(check(&dh, &["--target", "both"]).0, 0);

    // The DOCKER-USER layer deleted by hand: the table still blocks.
    for iptables in ["iptables", "ip6tables"] {
        dh.host.run(&[iptables, "-F", "DOCKER-USER"]);
    }
    assert_eq!(check(&dh, &["--target", "both"]).0, 1);
    let mut table = egress(&dh.c1, false);
    table.extend(egress(&dh.c3, false));
    expect_all(&table);

    // Back, then the table deleted by hand: DOCKER-USER still blocks.
    dh.egress_guard_ok("apply", &["--target", "both"]);
    dh.host.run(&["nft", "delete", "table", "inet", "egress_guard"]);
    let (code, line) = check(&dh, &["--target", "both"]);
    assert_eq!((code, line.as_str()), (1, "drifted: inet egress_guard: the table does not exist"));
    matrix(&dh, false);
}

#[test]
fn reapplying_under_a_flood_lets_nothing_through() {
    harness::require_kernel!();
    let dh = DockerHost::builder().nftables_backend().build();
    let apply = |how: &str| {
        let out = dh.egress_guard_ok("apply", &["--target", "table", "--reject-with", how]);
        assert!(out.contains("inet egress_guard: did write"), "{out}");
    };
    apply("port-unreachable");
    let run = Flood::new(200, Duration::from_secs(4)).start(&dh.c1, (INTERNET_V4, SERVICE_PORT).into());
    let started = Instant::now();
    let mut switches = 0;
    // Each switch rebuilds the whole table (delete and re-create in one batch).
    while started.elapsed() < Duration::from_secs(3) {
        apply(if switches % 2 == 0 { "admin-prohibited" } else { "port-unreachable" });
        switches += 1;
    }
    let report = run.wait();
    eprintln!("{switches} table rebuilds under a flood: {report:?}");
    assert!(switches >= 20, "only {switches} rebuilds");
    assert!(report.attempts > 100, "the flood hardly ran: {report:?}");
    assert_eq!(report.through, 0, "connections leaked while rebuilding: {report:?}");
    assert_eq!(report.refused + report.unreachable, report.attempts, "every attempt refused by a policy: {report:?}");
}

#[test]
fn block_host_refuses_new_connections_to_the_host_except_allowed_ones() {
    harness::require_kernel!();
    let dh = DockerHost::builder().nftables_backend().build();
    let mut servers = EchoServers::new();
    let gateways: [SocketAddr; 2] = [(DOCKER0_V4, SERVICE_PORT).into(), (DOCKER0_V6, SERVICE_PORT).into()];
    let br_eg1: SocketAddr = (BR_EG1_V4, SERVICE_PORT).into();
    servers.tcp_and_udp(&dh.host, &[gateways[0], gateways[1], br_eg1]);
    let to_host = |want_open: bool| -> Vec<Expect<'_>> {
        let probes = gateways.iter().flat_map(|&a| [(&dh.c1, Probe::tcp(a)), (&dh.c1, Probe::udp(a))]);
        let probes = probes.chain([(&dh.c3, Probe::tcp(br_eg1))]);
        probes.map(|(ns, p)| if want_open { Expect::open(ns, p) } else { Expect::closed(ns, p) }).collect()
    };
    expect_all(&to_host(true));

    let allow_tcp_v4 = format!("{DOCKER0_V4}:{SERVICE_PORT}/tcp");
    dh.egress_guard_ok("apply", &["--block-host", "--allow", &allow_tcp_v4]);
    // The host must still find the containers by IPv6 neighbour discovery (which conntrack
    // leaves untracked): forget what it knows and let the published port prove it.
    dh.host.run(&["ip", "-6", "neigh", "flush", "all"]);
    let mut table = vec![
        Expect::open(&dh.c1, Probe::tcp(gateways[0])),
        Expect::closed(&dh.c1, Probe::udp(gateways[0])),
        Expect::closed(&dh.c1, Probe::tcp(gateways[1])),
        Expect::closed(&dh.c1, Probe::udp(gateways[1])),
        Expect::closed(&dh.c3, Probe::tcp(br_eg1)),
    ];
    table.extend(egress(&dh.c1, false));
    table.extend(must_stay_open(&dh));
    expect_all(&table);

    dh.egress_guard_ok("apply", &[]);
    expect_all(&to_host(true));
    drop(servers);

    // On a DOCKER-USER host, auto guards forwarding in DOCKER-USER and the host from our
    // table; forced to DOCKER-USER alone, --block-host is refused before anything is read.
    let dh = DockerHost::new();
    let mut servers = EchoServers::new();
    servers.tcp_and_udp(&dh.host, &[gateways[0]]);
    dh.egress_guard_ok("apply", &["--block-host"]);
    assert!(dh.host.run(&["iptables", "-S", "DOCKER-USER"]).contains("egress-guard"));
    let mut table = vec![Expect::closed(&dh.c1, Probe::tcp(gateways[0]))];
    table.extend(egress(&dh.c1, false));
    table.extend(must_stay_open(&dh));
    expect_all(&table);
    dh.egress_guard_ok("remove", &[]);
    let out = dh.egress_guard("apply", &["--block-host", "--target", "docker-user"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--block-host keeps its rules in our own table"), "{err}");
    assert_eq!(dh.host.run(&["nft", "list", "tables", "inet"]), "");
    assert!(!dh.host.run(&["iptables", "-S", "DOCKER-USER"]).contains("egress-guard"));
}

#[test]
fn ten_thousand_allowed_destinations_apply_in_one_batch() {
    harness::require_kernel!();
    let dh = DockerHost::builder().nftables_backend().build();
    // 9,999 addresses in 10.0.0.0/8, none adjacent (so none merge), and the internet server.
    let addr = |v: u32| format!("\"10.{}.{}.{}\"", v >> 16, (v >> 8) & 0xff, v & 0xff);
    let mut allow: Vec<String> = (1..10_000u32).map(|i| addr(2 * i)).collect();
    allow.push(format!("\"{INTERNET_V4}\""));
    let config = std::env::temp_dir().join(format!("eg-{}-10k.toml", std::process::id()));
    std::fs::write(&config, format!("target = \"table\"\nallow = [{}]\n", allow.join(", "))).expect("write config");
    let config_arg = config.to_str().expect("utf-8 path");

    let before = generation(&dh.host);
    let out = dh.egress_guard("apply", &["--config", config_arg]);
    let after = generation(&dh.host);
    let steady = dh.egress_guard("apply", &["--config", config_arg]);
    let (code, line) = check(&dh, &["--config", config_arg]);
    let _ = std::fs::remove_file(&config);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(after, before + 1, "one batch");
    assert!(String::from_utf8_lossy(&steady.stdout).contains("already in place"));
    assert_eq!((code, line.as_str()), (0, "in place: guarding inet egress_guard"));
    let listed = dh.host.run(&["nft", "list", "set", "inet", "egress_guard", "allow4"]);
    assert_eq!(listed.matches(',').count() + 1, 10_000, "elements listed");
    expect_all(&[
        Expect::open(&dh.c1, Probe::tcp((INTERNET_V4, SERVICE_PORT))),
        Expect::open(&dh.c3, Probe::udp((INTERNET_V4, DNS_PORT))),
        Expect::closed(&dh.c1, Probe::tcp((INTERNET_V6, SERVICE_PORT))),
    ]);
}
