//! Our rules against iptables-nft's own: the same commands typed into `iptables` in a sibling
//! namespace must leave the kernel holding the same expressions and info blobs, and every
//! iptables view (`-S`, `-L -v`, `iptables-save`, dockerd's `-n -L DOCKER-USER`) must read them.

use egress_guard::backend::docker_user::{CHAIN, TABLE};
use egress_guard::net::Family;
use egress_guard::nft::socket::Netlink;

use crate::harness::{docker_user_namespace, dry_run_lines, egress_guard_ok, require_kernel, Netns};

/// The default rules, as an admin would type them (`-I` in the order they end up).
const DEFAULT_RULES: [&str; 2] = [
    "-i docker0 ! -o docker0 -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment egress-guard -j REJECT",
    "-i br-+ ! -o br-+ -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment egress-guard -j REJECT",
];

fn iptables(family: Family) -> &'static str {
    family.iptables()
}

/// The kernel's own dump of DOCKER-USER, read raw: expressions with xt info blobs, handles dropped.
fn kernel_dump(ns: &Netns, family: Family) -> Vec<Vec<egress_guard::nft::expr::Expr>> {
    let rules = ns.enter(|| Netlink::open().and_then(|mut nl| nl.dump_rules(family.nfproto(), TABLE, CHAIN)));
    rules.expect("dump DOCKER-USER").expect("DOCKER-USER exists").iter().map(|r| r.shape()).collect()
}

/// `nft --debug=netlink` of the chain, without the handle numbers that differ by history.
fn nft_netlink(ns: &Netns, family: Family) -> String {
    let text = ns.run(&["nft", "--debug=netlink", "list", "chain", family.nft_name(), TABLE, CHAIN]);
    text.lines()
        .map(|l| {
            if l.starts_with(family.nft_name()) {
                l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What iptables prints, in each of the ways admins and dockerd read it.
fn iptables_views(ns: &Netns, family: Family) -> Vec<String> {
    let ipt = iptables(family);
    let save = format!("{ipt}-save");
    let saved = ns.run(&[&save, "-t", "filter"]);
    vec![
        ns.run(&[ipt, "-S"]),
        ns.run(&[ipt, "-L", "-v", "-n"]),
        ns.run(&[ipt, "-t", "filter", "-n", "-L", CHAIN]),
        saved.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n"),
    ]
}

#[test]
fn default_rules_equal_what_iptables_writes() {
    require_kernel!();
    let ours = docker_user_namespace("ours");
    let theirs = docker_user_namespace("iptables");
    egress_guard_ok(&ours, &["apply"]);
    for family in Family::ALL {
        for (i, rule) in DEFAULT_RULES.iter().enumerate() {
            let pos = (i + 1).to_string();
            let mut args = vec![iptables(family), "-I", CHAIN, &pos];
            args.extend(rule.split_whitespace());
            theirs.run(&args);
        }
        let dump = kernel_dump(&ours, family);
        assert_eq!(dump.len(), 2, "{family:?}");
        assert_eq!(dump, kernel_dump(&theirs, family), "{family:?}: kernel dumps differ");
        assert_eq!(nft_netlink(&ours, family), nft_netlink(&theirs, family), "{family:?}");
        assert_eq!(iptables_views(&ours, family), iptables_views(&theirs, family), "{family:?}");
    }
    // And iptables recognises them as the rules it would write (`-C` finds an identical rule).
    for rule in DEFAULT_RULES {
        let mut args = vec!["iptables", "-C", CHAIN];
        args.extend(rule.split_whitespace());
        ours.run(&args);
    }
}

#[test]
fn foreign_rules_survive_apply_reapply_and_remove_in_order() {
    require_kernel!();
    let ns = docker_user_namespace("foreign");
    ns.run(&["iptables", "-A", CHAIN, "-s", "198.51.100.7/32", "-j", "ACCEPT"]);
    egress_guard_ok(&ns, &["apply"]);
    ns.run(&["iptables", "-A", CHAIN, "-j", "RETURN"]);
    let foreign = |s: &str| s.lines().filter(|l| !l.contains("egress-guard")).map(String::from).collect::<Vec<_>>();
    let before = ns.run(&["iptables", "-S", CHAIN]);
    assert_eq!(
        foreign(&before),
        ["-N DOCKER-USER", "-A DOCKER-USER -s 198.51.100.7/32 -j ACCEPT", "-A DOCKER-USER -j RETURN"]
    );
    // Our rules went to the top, before the foreign rule that was there.
    assert!(before.lines().nth(1).unwrap().contains("egress-guard"), "{before}");

    // Re-apply sends nothing: the chain stays byte for byte the same, handles included.
    let handles = ns.run(&["nft", "-a", "list", "chain", "ip", TABLE, CHAIN]);
    let out = egress_guard_ok(&ns, &["apply"]);
    assert!(out.contains("ip filter DOCKER-USER: already in place"), "{out}");
    assert_eq!(ns.run(&["nft", "-a", "list", "chain", "ip", TABLE, CHAIN]), handles);

    // A changed policy rewrites ours in place: a foreign rule above them that lets no traffic
    // past (a LOG) stays above.
    ns.run(&["iptables", "-I", CHAIN, "-s", "203.0.113.9/32", "-j", "LOG"]);
    egress_guard_ok(&ns, &["apply", "--iface", "docker0"]);
    let lines: Vec<String> = ns.run(&["iptables", "-S", CHAIN]).lines().map(String::from).collect();
    assert_eq!(lines[1], "-A DOCKER-USER -s 203.0.113.9/32 -j LOG");
    assert!(lines[2].contains("-i docker0") && lines[2].contains("egress-guard"), "{lines:?}");
    assert_eq!(lines[3], "-A DOCKER-USER -s 198.51.100.7/32 -j ACCEPT");
    assert_eq!(lines.len(), 5, "{lines:?}");
    // One that does (an ACCEPT) is left where it is, and ours move above it.
    ns.run(&["iptables", "-I", CHAIN, "-s", "203.0.113.10/32", "-j", "ACCEPT"]);
    egress_guard_ok(&ns, &["apply", "--iface", "docker0"]);
    let lines: Vec<String> = ns.run(&["iptables", "-S", CHAIN]).lines().map(String::from).collect();
    assert!(lines[1].contains("-i docker0") && lines[1].contains("egress-guard"), "{lines:?}");
    assert_eq!(
        lines[2..5],
        [
            "-A DOCKER-USER -s 203.0.113.10/32 -j ACCEPT",
            "-A DOCKER-USER -s 203.0.113.9/32 -j LOG",
            "-A DOCKER-USER -s 198.51.100.7/32 -j ACCEPT"
        ]
    );

    egress_guard_ok(&ns, &["remove"]);
    assert_eq!(
        ns.run(&["iptables", "-S", CHAIN]).lines().collect::<Vec<_>>(),
        [
            "-N DOCKER-USER",
            "-A DOCKER-USER -s 203.0.113.10/32 -j ACCEPT",
            "-A DOCKER-USER -s 203.0.113.9/32 -j LOG",
            "-A DOCKER-USER -s 198.51.100.7/32 -j ACCEPT",
            "-A DOCKER-USER -j RETURN"
        ]
    );
}

#[test]
fn a_rule_of_ours_changed_by_hand_is_replaced() {
    require_kernel!();
    let ns = docker_user_namespace("handmade");
    // An admin's own variant, tagged like ours: it is ours to manage.
    ns.run(&["iptables", "-I", CHAIN, "-i", "docker0", "-m", "comment", "--comment", "egress-guard", "-j", "DROP"]);
    egress_guard_ok(&ns, &["apply"]);
    let rules = ns.run(&["iptables", "-S", CHAIN]);
    assert!(!rules.contains("-j DROP"), "{rules}");
    assert_eq!(rules.matches("egress-guard").count(), 2, "{rules}");
}

/// Every policy knob, so every rule shape we emit is compared: allow (address, address:port),
/// NFLOG with a limit (the default `--log`: group 4711, the prefix ending in what the guard
/// does), NFLOG with its own group and prefix, the kernel log (`--log-to kernel`), tcp-reset,
/// drop, admin-prohibited, subnets with and without bridges, the subnet multicast exception,
/// non-byte-aligned prefixes.
const POLICIES: &[&[&str]] = &[
    &[
        "--allow",
        "198.51.100.53:53/udp",
        "--allow",
        "203.0.113.0/24",
        "--allow",
        "[2001:db8::53]:53/tcp",
        "--log=egress: ",
        "--reject-with",
        "tcp-reset",
    ],
    &["--subnet", "172.17.0.0/16", "--subnet", "fd00:17::/64", "--reject-with", "drop", "--nflog-group", "5"],
    &[
        "--subnet",
        "172.16.0.0/12",
        "--subnet",
        "fd00::/12",
        "--iface",
        "docker0",
        "--reject-with",
        "admin-prohibited",
        "--log",
        "--log-to",
        "kernel",
        "--log-rate",
        "3/second",
    ],
    &["--iface", "veth+", "--allow", "198.51.100.0/25:8080/tcp", "--nflog-group", "9", "--log=blocked"],
];

/// Feeds `rules` (`-A …` lines as `iptables -S` prints them) to `iptables-restore --noflush`,
/// which parses quotes the way an admin's shell would.
fn restore(ns: &Netns, family: Family, rules: &[&str]) {
    let restore = format!("{}-restore", iptables(family));
    ns.run_with_input(&[&restore, "--noflush"], &format!("*filter\n{}\nCOMMIT\n", rules.join("\n")));
}

#[test]
fn every_rule_shape_equals_what_iptables_writes() {
    require_kernel!();
    for policy in POLICIES {
        let ours = docker_user_namespace("shapes");
        let theirs = docker_user_namespace("shapes-ipt");
        let mut args = vec!["apply", "--dry-run"];
        args.extend_from_slice(policy);
        // What we mean to write, as iptables commands (from the plan, not from our encoding)…
        let planned = egress_guard_ok(&ours, &args);
        egress_guard_ok(&ours, &args[..1].iter().chain(policy.iter()).copied().collect::<Vec<_>>());
        for family in Family::ALL {
            // …typed into iptables in the sibling namespace: iptables encodes them itself.
            let rules = dry_run_lines(&planned, &format!("{} {TABLE} {CHAIN}", family.nft_name()));
            assert!(!rules.is_empty(), "{policy:?} {family:?}: no rules");
            restore(&theirs, family, &rules);
            let context = format!("{policy:?} {family:?}");
            assert_eq!(kernel_dump(&ours, family), kernel_dump(&theirs, family), "{context}: kernel dumps differ");
            assert_eq!(nft_netlink(&ours, family), nft_netlink(&theirs, family), "{context}");
            assert_eq!(iptables_views(&ours, family), iptables_views(&theirs, family), "{context}");
        }
    }
}

/// The rule that lets marked packets (an allow-list's) pass, as an admin types it: iptables-nft
/// encodes `-m mark` natively (meta mark, bitwise, cmp), and ours must be those very bytes, for
/// the default bit and for `--mark-bit 0x10`, in both families.
#[test]
fn the_mark_rule_equals_what_iptables_writes() {
    require_kernel!();
    for (flags, bit) in [(&[][..], "0x1000000"), (&["--mark-bit", "0x10"][..], "0x10")] {
        let ours = docker_user_namespace("mark");
        let theirs = docker_user_namespace("mark-ipt");
        let mut args = vec!["apply", "--target", "docker-user", "--iface", "docker0", "--allow", "198.51.100.2"];
        args.extend_from_slice(flags);
        egress_guard_ok(&ours, &args);
        let mark =
            format!("-i docker0 ! -o docker0 -m mark --mark {bit}/{bit} -m comment --comment egress-guard -j RETURN");
        for family in Family::ALL {
            for rule in [mark.as_str(), DEFAULT_RULES[0]] {
                let mut args = vec![iptables(family), "-A", CHAIN];
                args.extend(rule.split_whitespace());
                theirs.run(&args);
            }
            let context = format!("--mark-bit {bit} {family:?}");
            let dump = kernel_dump(&ours, family);
            assert_eq!(dump.len(), 2, "{context}");
            assert_eq!(dump, kernel_dump(&theirs, family), "{context}: kernel dumps differ");
            assert_eq!(nft_netlink(&ours, family), nft_netlink(&theirs, family), "{context}");
            assert_eq!(iptables_views(&ours, family), iptables_views(&theirs, family), "{context}");
            let mut check = vec![iptables(family), "-C", CHAIN];
            check.extend(mark.split_whitespace());
            ours.run(&check);
        }
    }
}
