//! Allow-lists of any length in the sets of our table (issue 13), in both backends, on the
//! emulated Docker host: 10,000 and 100,000 entries let the allowed server through and keep its
//! neighbour address closed, in one batch, steady on re-apply, with DOCKER-USER still a handful
//! of rules iptables reads; a one-entry change (an interval split and a merge too) is one batch
//! of element adds and deletes, as the kernel announces them; and a container that sets the
//! mark bit on its own packets gets nowhere.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

use egress_guard::nft::socket::{Netlink, OwnedReply};
use egress_guard::nft::sys::*;

use crate::harness::{self, *};

/// A second address on the internet server, next to the allowed one (TEST-NET-2 and the
/// documentation prefix, like the server's own): what an allow-list of single addresses must
/// keep closed. 198.51.100.3 is the very key that closes the allowed interval.
const NEIGHBOUR_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
const NEIGHBOUR_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3);

/// The default mark bit, as iptables prints it.
const MARK: &str = "0x1000000/0x1000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// An iptables-nft Docker host: the refusing rules in DOCKER-USER, the sets in our table.
    DockerUser,
    /// Docker 29's nftables backend: everything in our table.
    Table,
}

impl Backend {
    fn target(self) -> &'static str {
        match self {
            Backend::DockerUser => "docker-user",
            Backend::Table => "table",
        }
    }

    fn host(self) -> DockerHost {
        match self {
            Backend::DockerUser => DockerHost::new(),
            Backend::Table => DockerHost::builder().nftables_backend().build(),
        }
    }
}

/// A config file in the temp directory, deleted on drop.
struct Config(PathBuf);

impl Config {
    fn new(name: &str, backend: Backend, allow: &[String]) -> Config {
        // Tests run in parallel: each backend's files apart.
        let file = format!("eg-{}-sets-{}-{name}.toml", std::process::id(), backend.target());
        let path = std::env::temp_dir().join(file);
        let quoted: Vec<String> = allow.iter().map(|a| format!("\"{a}\"")).collect();
        let text = format!("target = \"{}\"\nallow = [{}]\n", backend.target(), quoted.join(", "));
        std::fs::write(&path, text).expect("write config");
        Config(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `n` addresses in 10.0.0.0/8, none adjacent to another (so none merge): the set holds `n`
/// intervals. No traffic ever goes to them.
fn spread(n: usize) -> Vec<String> {
    (1..=n as u32).map(|i| 2 * i).map(|v| format!("10.{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff)).collect()
}

/// The neighbour addresses on the internet server, with TCP and UDP echo on both its ports.
fn neighbour(dh: &DockerHost) -> EchoServers {
    dh.internet.ip_batch(&format!("addr add {NEIGHBOUR_V4}/24 dev eth0\naddr add {NEIGHBOUR_V6}/64 dev eth0 nodad\n"));
    let mut servers = EchoServers::new();
    let ips: [IpAddr; 2] = [NEIGHBOUR_V4.into(), NEIGHBOUR_V6.into()];
    let addrs: Vec<SocketAddr> =
        ips.iter().flat_map(|&ip| [SERVICE_PORT, DNS_PORT].map(|p| SocketAddr::new(ip, p))).collect();
    servers.tcp_and_udp(&dh.internet, &addrs);
    servers
}

/// The host namespace's ruleset generation: it moves by one per committed batch.
fn generation(ns: &Netns) -> u32 {
    ns.enter(|| Netlink::open().and_then(|mut nl| nl.generation())).expect("GETGEN")
}

/// `check`'s exit code and its line.
fn check(dh: &DockerHost, config: &Config) -> (i32, String) {
    let out = dh.egress_guard("check", &["--config", config.arg()]);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The elements of one of our sets as `nft list set` prints them (addresses, networks, ranges).
fn listed(host: &Netns, set: &str) -> BTreeSet<String> {
    let text = host.run(&["nft", "list", "set", "inet", "egress_guard", set]);
    let Some((_, rest)) = text.split_once("elements = {") else { return BTreeSet::new() };
    let (inside, _) = rest.split_once('}').expect("a closing brace");
    inside.split(',').map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect()
}

fn strings(list: &[String]) -> BTreeSet<String> {
    list.iter().cloned().collect()
}

/// The two listings are the same; else says only how they differ (they are 100,000 long).
fn same_elements(found: &BTreeSet<String>, wanted: &BTreeSet<String>, context: &str) {
    let missing: Vec<&String> = wanted.difference(found).take(10).collect();
    let extra: Vec<&String> = found.difference(wanted).take(10).collect();
    assert!(missing.is_empty() && extra.is_empty(), "{context}: missing {missing:?}, not planned {extra:?}");
}

/// From c1 and c3 (both bridges): the allowed server open by TCP and UDP in both families, its
/// neighbour closed; and the paths no guard may close.
fn allowed_and_neighbour(dh: &DockerHost) -> Vec<Expect<'_>> {
    let mut table = Vec::new();
    for (ns, ip) in [(&dh.c1, IpAddr::from(INTERNET_V4)), (&dh.c1, INTERNET_V6.into()), (&dh.c3, INTERNET_V4.into())] {
        table.push(Expect::open(ns, Probe::tcp((ip, SERVICE_PORT))));
        table.push(Expect::open(ns, Probe::udp((ip, DNS_PORT))));
    }
    for (ns, ip) in [(&dh.c1, IpAddr::from(NEIGHBOUR_V4)), (&dh.c1, NEIGHBOUR_V6.into()), (&dh.c3, NEIGHBOUR_V4.into())]
    {
        table.push(Expect::closed(ns, Probe::tcp((ip, SERVICE_PORT))));
        table.push(Expect::closed(ns, Probe::udp((ip, DNS_PORT))));
    }
    table.extend(must_stay_open(dh));
    table
}

/// How many rules of ours (the digest rule among them) one of our chains holds.
fn our_table_rules(host: &Netns, chain: &str) -> usize {
    host.run(&["nft", "list", "chain", "inet", "egress_guard", chain]).matches("comment \"egress-guard").count()
}

/// `n` allowed destinations (`n - 1` in 10.0.0.0/8 and the internet server), plus the server's
/// IPv6 address: the whole proof for one backend (it says how long the applies took).
fn big_allow_list(backend: Backend, n: usize) {
    let dh = backend.host();
    let _servers = neighbour(&dh);
    // Without a guard the neighbour is reachable: closed below means refused by the guard.
    expect_all(&[
        Expect::open(&dh.c1, Probe::tcp((NEIGHBOUR_V4, SERVICE_PORT))),
        Expect::open(&dh.c1, Probe::udp((NEIGHBOUR_V6, DNS_PORT))),
    ]);
    let mut allow = spread(n - 1);
    allow.push(INTERNET_V4.to_string());
    let v4 = strings(&allow);
    allow.push(INTERNET_V6.to_string());
    let config = Config::new(&n.to_string(), backend, &allow);

    let before = generation(&dh.host);
    let started = Instant::now();
    let out = dh.egress_guard_ok("apply", &["--config", config.arg()]);
    let first = started.elapsed();
    assert_eq!(generation(&dh.host), before + 1, "one batch:\n{}", out.lines().take(12).collect::<Vec<_>>().join("\n"));
    expect_all(&allowed_and_neighbour(&dh));
    assert_eq!(check(&dh, &config), (0, format!("in place: guarding {}", places(backend))));

    // The kernel holds exactly the list, as nft reads it.
    same_elements(&listed(&dh.host, "allow4"), &v4, "allow4");
    same_elements(&listed(&dh.host, "allow6"), &strings(&[INTERNET_V6.to_string()]), "allow6");
    match backend {
        Backend::DockerUser => {
            // However long the list: per family two selectors of (marked RETURN, REJECT), and
            // iptables (and dockerd's `-n -L`) read them.
            for ipt in ["iptables", "ip6tables"] {
                let rules = dh.host.run(&[ipt, "-S", "DOCKER-USER"]);
                let ours: Vec<&str> = rules.lines().filter(|l| l.contains("egress-guard")).collect();
                assert_eq!(ours.len(), 4, "{ipt}:\n{rules}");
                for br in ["docker0", "br-+"] {
                    let mark = format!(
                        "-A DOCKER-USER -i {br} ! -o {br} -m mark --mark {MARK} -m comment --comment egress-guard -j RETURN"
                    );
                    assert!(ours.contains(&mark.as_str()), "{ipt}: no `{mark}` in\n{rules}");
                }
                assert!(dh.host.run(&[ipt, "-n", "-L", "DOCKER-USER"]).contains("mark match 0x1000000/0x1000000"));
                assert!(dh.host.run(&[ipt, "-S"]).contains("-A FORWARD -j DOCKER-USER"));
            }
            // Our table only marks: clear the bit, a mark per set, the digest.
            assert_eq!(our_table_rules(&dh.host, "forward"), 4);
        }
        Backend::Table => {
            // Clear, two marks, (marked accept, reject) per selector, the digest.
            assert_eq!(our_table_rules(&dh.host, "forward"), 8);
        }
    }

    let before = generation(&dh.host);
    let started = Instant::now();
    let out = dh.egress_guard_ok("apply", &["--config", config.arg()]);
    let steady = started.elapsed();
    assert_eq!(generation(&dh.host), before, "a steady apply commits nothing:\n{out}");
    // The same input against an untouched ruleset: apply says so without reading anything.
    assert!(out.starts_with("already in place: the ruleset is as this same apply left it"), "{out}");
    // After another program's commit, the full path: every place read, none written.
    dh.host.run(&["nft", "add table ip eg_other"]);
    let out = dh.egress_guard_ok("apply", &["--config", config.arg()]);
    let places: Vec<&str> = out.lines().skip(1).collect();
    assert!(!places.is_empty() && places.iter().all(|l| l.ends_with(": already in place")), "{out}");
    eprintln!("{n} allowed destinations, {}: first apply {first:?}, steady apply {steady:?}", backend.target());
}

/// What `check` says it guards.
fn places(backend: Backend) -> &'static str {
    match backend {
        Backend::DockerUser => "ip filter DOCKER-USER and ip6 filter DOCKER-USER and inet egress_guard",
        Backend::Table => "inet egress_guard",
    }
}

#[test]
fn ten_thousand_allowed_destinations_in_docker_user_by_packets() {
    harness::require_kernel!();
    big_allow_list(Backend::DockerUser, 10_000);
}

#[test]
fn ten_thousand_allowed_destinations_in_the_table_by_packets() {
    harness::require_kernel!();
    big_allow_list(Backend::Table, 10_000);
}

#[test]
fn a_hundred_thousand_allowed_destinations_in_docker_user_by_packets() {
    harness::require_kernel!();
    big_allow_list(Backend::DockerUser, 100_000);
}

#[test]
fn a_hundred_thousand_allowed_destinations_in_the_table_by_packets() {
    harness::require_kernel!();
    big_allow_list(Backend::Table, 100_000);
}

// ---- one entry changed ----

/// Elements the kernel announced added (`NEWSETELEM`) or deleted (`DELSETELEM`) in `set`.
fn elems(events: &[Event], ty: u16, set: &str) -> usize {
    events.iter().filter(|e| e.ty == ty && e.set.as_deref() == Some(set)).map(|e| e.elems).sum()
}

/// One step from the current list to `allow`: what `--dry-run` says, then the apply, watched
/// in the kernel's event stream. It must be one batch that only adds and deletes elements of
/// allow4 (`added`, `deleted`: how many), rewrites the digest rule and touches nothing else —
/// no set, chain or table made or deleted, no DOCKER-USER rule — after which the set holds
/// exactly the list and `check` is content.
fn step(dh: &DockerHost, backend: Backend, name: &str, allow: &[String], added: usize, deleted: usize) -> String {
    let config = Config::new(name, backend, allow);
    let dry = dh.egress_guard_ok("apply", &["--dry-run", "--config", config.arg()]);
    assert!(!dry.contains("add set"), "{name}: a set re-created:\n{dry}");
    let events = NftEvents::start(&dh.host);
    let before = generation(&dh.host);
    let out = dh.egress_guard_ok("apply", &["--config", config.arg()]);
    assert_eq!(generation(&dh.host), before + 1, "{name}: one batch:\n{out}");
    let events = events.stop();
    let context = format!("{name}: {events:?}");
    assert_eq!(events.iter().filter(|e| e.ty == NFT_MSG_NEWGEN).count(), 1, "{context}");
    assert_eq!(elems(&events, NFT_MSG_NEWSETELEM, "allow4"), added, "{context}");
    assert_eq!(elems(&events, NFT_MSG_DELSETELEM, "allow4"), deleted, "{context}");
    for e in &events {
        let element = [NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM].contains(&e.ty) && e.set.as_deref() == Some("allow4");
        // The digest rule is replaced: DELRULE and NEWRULE in our table's forward chain.
        let digest = [NFT_MSG_NEWRULE, NFT_MSG_DELRULE].contains(&e.ty) && e.family == NFPROTO_INET;
        assert!(element || digest || e.ty == NFT_MSG_NEWGEN, "{name}: {e:?} in {events:?}");
    }
    same_elements(&listed(&dh.host, "allow4"), &expected_listing(allow), name);
    assert_eq!(check(dh, &config), (0, format!("in place: guarding {}", places(backend))), "{name}");
    dry
}

/// The listing nft prints for these entries: each as written, but the two halves of
/// 198.51.100.0/24, which the plan merges.
fn expected_listing(allow: &[String]) -> BTreeSet<String> {
    let halves = ["198.51.100.0/25", "198.51.100.128/25"];
    let mut out = strings(allow);
    if halves.iter().all(|h| out.contains(*h)) {
        for h in halves {
            out.remove(h);
        }
        out.insert("198.51.100.0/24".into());
    }
    out
}

/// The `+ add element …` and `- delete element …` lines of a dry run.
fn element_lines(dry: &str) -> Vec<&str> {
    dry.lines().map(str::trim).filter(|l| l.starts_with("+ add element") || l.starts_with("- delete element")).collect()
}

fn reach(dh: &DockerHost, server: bool, neighbour: bool) {
    // UDP for what must be closed: the port-unreachable comes back at once.
    let want = |open: bool, ns, probe| if open { Expect::open(ns, probe) } else { Expect::closed(ns, probe) };
    expect_all(&[
        want(server, &dh.c1, Probe::tcp((INTERNET_V4, SERVICE_PORT))),
        want(server, &dh.c3, Probe::udp((INTERNET_V4, DNS_PORT))),
        want(neighbour, &dh.c1, Probe::udp((NEIGHBOUR_V4, DNS_PORT))),
    ]);
}

/// From 10,000 entries: one added (the internet server: it opens) and removed again, one
/// replaced by another, a /24 split into a /25 and a /32 inside the other half, and two /25s
/// that merge back into the /24 — each one batch of element changes, proven by packets.
fn one_entry_changes(backend: Backend) {
    let dh = backend.host();
    let _servers = neighbour(&dh);
    let base = spread(9_999);
    let with =
        |more: &[&str]| -> Vec<String> { base.iter().cloned().chain(more.iter().map(|m| m.to_string())).collect() };

    let start = Config::new("start", backend, &with(&["10.250.1.0/24"]));
    dh.egress_guard_ok("apply", &["--config", start.arg()]);
    reach(&dh, false, false);

    let server = INTERNET_V4.to_string();
    let dry = step(&dh, backend, "add-one", &with(&["10.250.1.0/24", &server]), 2, 0);
    assert_eq!(element_lines(&dry), [format!("+ add element inet egress_guard allow4 {{ {server} }}")], "{dry}");
    reach(&dh, true, false);

    let dry = step(&dh, backend, "remove-one", &with(&["10.250.1.0/24"]), 0, 2);
    assert_eq!(element_lines(&dry), [format!("- delete element inet egress_guard allow4 {{ {server} }}")], "{dry}");
    reach(&dh, false, false);

    step(&dh, backend, "replace-one", &with(&["198.51.100.0/24"]), 2, 2);
    reach(&dh, true, true);

    // The /24's interval becomes two: its opening element stays at .0 in neither.
    let dry = step(&dh, backend, "split", &with(&["198.51.100.128/25", &server]), 4, 2);
    assert_eq!(
        element_lines(&dry),
        [
            format!("+ add element inet egress_guard allow4 {{ {server}, 198.51.100.128/25 }}"),
            "- delete element inet egress_guard allow4 { 198.51.100.0/24 }".to_string(),
        ],
        "{dry}"
    );
    reach(&dh, true, false);

    // Two neighbouring /25s are one interval: the two pieces go, the /24 comes back.
    step(&dh, backend, "merge", &with(&["198.51.100.0/25", "198.51.100.128/25"]), 2, 4);
    reach(&dh, true, true);
}

#[test]
fn one_entry_changes_are_element_changes_in_docker_user() {
    harness::require_kernel!();
    one_entry_changes(Backend::DockerUser);
}

#[test]
fn one_entry_changes_are_element_changes_in_the_table() {
    harness::require_kernel!();
    one_entry_changes(Backend::Table);
}

// ---- a forged mark ----

/// What a container would do to pass as allowed: set the bit on all it sends (the route hook
/// marks before routing, as a real attempt would), and count what leaves marked.
const FORGE: &str = "table ip forge {
  chain out {
    type route hook output priority mangle; policy accept;
    meta mark set 0x01000000
  }
  chain seen {
    type filter hook postrouting priority 0; policy accept;
    meta mark 0x01000000 counter
  }
}
table ip6 forge {
  chain out {
    type route hook output priority mangle; policy accept;
    meta mark set 0x01000000
  }
  chain seen {
    type filter hook postrouting priority 0; policy accept;
    meta mark 0x01000000 counter
  }
}
";

fn internet_from_c1(dh: &DockerHost, open: bool) {
    let servers: [IpAddr; 2] = [INTERNET_V4.into(), INTERNET_V6.into()];
    let probes = servers.into_iter().flat_map(|ip| [Probe::tcp((ip, SERVICE_PORT)), Probe::udp((ip, DNS_PORT))]);
    let table: Vec<Expect<'_>> =
        probes.map(|p| if open { Expect::open(&dh.c1, p) } else { Expect::closed(&dh.c1, p) }).collect();
    expect_all(&table);
}

/// Packets the container's `seen` chains counted leaving with the bit set.
fn forged_packets(c1: &Netns) -> u64 {
    let counts = ["ip", "ip6"].map(|f| {
        let text = c1.run(&["nft", "list", "chain", f, "forge", "seen"]);
        let n = text.split("counter packets ").nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok());
        n.unwrap_or_else(|| panic!("no counter in {text}"))
    });
    counts.iter().sum()
}

/// A container marks its own packets with the bit and dials a destination no allow-list has:
/// refused. Why: a packet that crosses from one network namespace into another over a veth
/// leaves its mark behind (veth_xmit → __dev_forward_skb → skb_scrub_packet with xnet, which
/// zeroes skb->mark), so the host sees it unmarked; and our forward chain clears the bit first
/// anyway. With our clearing rule deleted by hand it is still refused (the crossing alone
/// scrubs it), while the same bit set on the host side does get through — so the refusal is
/// the scrubbing's, not a test that could not pass — until apply puts the clearing rule back.
fn forged_mark(backend: Backend) {
    let dh = backend.host();
    // Marking is on: an allow-list, of an address nothing here has (never dialled).
    let args = ["--target", backend.target(), "--allow", "203.0.113.7"];
    dh.egress_guard_ok("apply", &args);
    dh.c1.run_with_input(&["nft", "-f", "-"], FORGE);
    internet_from_c1(&dh, false);
    let forged = forged_packets(&dh.c1);
    assert!(forged >= 4, "the container's packets left marked: {forged}");

    // Our clearing rule deleted by hand: the bit still does not arrive.
    let listing = dh.host.run(&["nft", "-a", "list", "chain", "inet", "egress_guard", "forward"]);
    let clear = listing.lines().find(|l| l.contains("meta mark set meta mark & 0xfeffffff")).expect("the clear rule");
    let handle = clear.rsplit("# handle ").next().expect("a handle").trim();
    dh.host.run(&["nft", "delete", "rule", "inet", "egress_guard", "forward", "handle", handle]);
    internet_from_c1(&dh, false);
    assert!(forged_packets(&dh.c1) > forged, "the container kept marking");

    // Control: the bit set after the crossing, before our chain, lets the packets through.
    let control = "table inet eg_control {
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    iifname \"docker0\" meta mark set 0x01000000
  }
}
";
    dh.host.run_with_input(&["nft", "-f", "-"], control);
    internet_from_c1(&dh, true);

    // apply heals: the clearing rule is back, and it takes the host-side bit away again.
    let out = dh.egress_guard_ok("apply", &args);
    assert!(out.contains("inet egress_guard: did write"), "{out}");
    internet_from_c1(&dh, false);
}

#[test]
fn a_container_cannot_forge_the_mark_past_docker_user() {
    harness::require_kernel!();
    forged_mark(Backend::DockerUser);
}

#[test]
fn a_container_cannot_forge_the_mark_past_the_table() {
    harness::require_kernel!();
    forged_mark(Backend::Table);
}

/// An element someone adds to our allow-list by hand opens a door egress-guard never planned:
/// `check` says so, and the next `apply` — or `watch`, woken by that very change — takes it
/// out, although the policy and its digest are unchanged (the digest rule is stamped with the
/// generation our batch made; any later commit makes apply read the elements again).
#[test]
fn an_element_added_by_hand_is_taken_out_by_apply_and_by_watch() {
    harness::require_kernel!();
    let dh = DockerHost::new();
    let _neighbour = neighbour(&dh);
    let allow = format!("--allow={INTERNET_V4}");
    let forged = format!("add element inet egress_guard allow4 {{ {NEIGHBOUR_V4} }}");
    let to_neighbour = || Probe::tcp((IpAddr::from(NEIGHBOUR_V4), SERVICE_PORT)).run_in(&dh.c1);
    dh.egress_guard_ok("apply", &[&allow]);
    dh.host.run(&["nft", &forged]);
    assert_eq!(to_neighbour(), Outcome::Open, "the hand-made element does open the neighbour");
    let out = dh.egress_guard("check", &[&allow]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let applied = dh.egress_guard_ok("apply", &[&allow]);
    assert!(applied.contains(&format!("delete element inet egress_guard allow4 {{ {NEIGHBOUR_V4} }}")), "{applied}");
    assert_ne!(to_neighbour(), Outcome::Open, "apply closed it again");

    let _watch = Watch::start(&dh.host, &[&allow]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    dh.host.run(&["nft", &forged]);
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while listed(&dh.host, "allow4").contains(&NEIGHBOUR_V4.to_string()) {
        assert!(Instant::now() < deadline, "watch left the hand-made element in place");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_ne!(to_neighbour(), Outcome::Open, "watch closed it again");
}

// ---- one dump per generation ----

/// The socket answers a repeated element dump from its first answer while the generation
/// holds (what spares a change at 100,000 entries two of its three dumps), and reads the set
/// again once a GETGEN shows that anyone, here `nft` in another process, committed since.
#[test]
fn an_element_dump_is_kept_for_one_generation_only() {
    harness::require_kernel!();
    use egress_guard::nft::set::{getsetelem_dump, SetElem};
    let ns = Netns::new("kept");
    ns.run_with_input(&["nft", "-f", "-"], "table inet eg_kept {\n  set s { type ipv4_addr; }\n}\n");
    let count = |nl: &mut Netlink| -> usize {
        let what = "GETSETELEM inet eg_kept s";
        let make = |seq| getsetelem_dump(seq, NFPROTO_INET, "eg_kept", "s");
        let decode = |dump: Option<&[_]>| {
            Ok(dump
                .unwrap_or_default()
                .iter()
                .map(|m: &OwnedReply| SetElem::decode_all(&m.reply()).unwrap().len())
                .sum())
        };
        nl.get_unchanged(what, make, decode).unwrap()
    };
    let add = |addr: &str| {
        let status = std::process::Command::new("nft")
            .args(["add", "element", "inet", "eg_kept", "s", &format!("{{ {addr} }}")])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "nft add element {addr}");
    };
    // In the namespace's thread: nft, forked from it, commits in the same namespace.
    ns.enter(|| {
        let mut nl = Netlink::open().unwrap();
        nl.generation().unwrap();
        assert_eq!(count(&mut nl), 0);
        add("198.51.100.1");
        assert_eq!(count(&mut nl), 0, "no GETGEN since: the kept answer, no second dump");
        nl.generation().unwrap();
        assert_eq!(count(&mut nl), 1, "another program committed: read again");
        add("198.51.100.2");
        nl.generation().unwrap();
        assert_eq!(count(&mut nl), 2);
    });
}
