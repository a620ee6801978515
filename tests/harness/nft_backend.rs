//! Docker 29's nftables firewall backend (`--firewall-backend=nftables`), emulated: tables
//! `ip docker-bridges` and `ip6 docker-bridges` laid out as dockerd 29 writes them (moby's
//! `integration/network/bridge/nftablesdoc`), for the harness's two bridges and c1's published
//! port. There is no `ip filter` table and so no DOCKER-USER: the guard has to bring its own.
//!
//! Per family: base chain `filter-FORWARD` (hook forward, priority filter, policy accept)
//! dispatches through the verdict maps `filter-forward-in-jumps` (by output bridge) and
//! `filter-forward-out-jumps` (by input bridge) to per-bridge chains that accept replies,
//! same-bridge traffic (ICC), the published port and everything leaving a bridge, and drop
//! other inbound traffic. NAT: `fib daddr type local` → DNAT of the published port, and
//! masquerading out of each bridge through the `nat-postrouting-*-jumps` maps.

use super::addrs::*;
use super::dockerd_rules::{Bridge, Family, BRIDGES, DOCKER0};
use super::netns::Netns;

/// Writes both `docker-bridges` tables into `host` with one `nft -f -`.
pub fn apply(host: &Netns) {
    let script = [Family::V4, Family::V6].map(ruleset).join("\n");
    host.run_with_input(&["nft", "-f", "-"], &script);
}

/// `nft` family word, address keyword, c1's address and the bridge's subnet per family.
fn words(family: Family) -> (&'static str, &'static str, String) {
    match family {
        Family::V4 => ("ip", "ip", C1_V4.to_string()),
        Family::V6 => ("ip6", "ip6", C1_V6.to_string()),
    }
}

fn subnet(bridge: &Bridge, family: Family) -> &'static str {
    match family {
        Family::V4 => bridge.subnet_v4,
        Family::V6 => bridge.subnet_v6,
    }
}

/// One family's `docker-bridges` table as `nft -f` commands. Chains are added before the maps
/// that jump to them, and the maps before the rules that use them.
fn ruleset(family: Family) -> String {
    let (fam, addr, c1) = words(family);
    let t = format!("{fam} docker-bridges");
    let mut s = format!("add table {t}\n");
    let mut line = |text: String| s.push_str(&(text + "\n"));
    for bridge in BRIDGES {
        per_bridge_chains(&mut line, &t, bridge, family, addr, &c1);
    }
    for map in ["filter-forward-in", "filter-forward-out", "nat-postrouting-in", "nat-postrouting-out"] {
        let elements: Vec<String> =
            BRIDGES.iter().map(|b| format!("\"{}\" : jump {map}__{}", b.name, b.name)).collect();
        line(format!("add map {t} {map}-jumps {{ type ifname : verdict; elements = {{ {} }}; }}", elements.join(", ")));
    }
    line(format!("add chain {t} filter-FORWARD {{ type filter hook forward priority filter; policy accept; }}"));
    line(format!("add rule {t} filter-FORWARD oifname vmap @filter-forward-in-jumps"));
    line(format!("add rule {t} filter-FORWARD iifname vmap @filter-forward-out-jumps"));
    line(format!("add chain {t} nat-prerouting-and-output"));
    let (dnat_to, loopback) = match family {
        Family::V4 => (format!("{c1}:{SERVICE_PORT}"), "127.0.0.0/8"),
        Family::V6 => (format!("[{c1}]:{SERVICE_PORT}"), "::1"),
    };
    line(format!(
        "add rule {t} nat-prerouting-and-output iifname != \"{}\" tcp dport {PUBLISHED_PORT} counter dnat to {dnat_to} comment \"DNAT\"",
        DOCKER0.name
    ));
    line(format!("add chain {t} nat-PREROUTING {{ type nat hook prerouting priority dstnat; policy accept; }}"));
    line(format!("add rule {t} nat-PREROUTING fib daddr type local counter jump nat-prerouting-and-output"));
    // nft 1.0.6 knows no `dstnat` for the output hook: dockerd 29 writes -100 there too.
    line(format!("add chain {t} nat-OUTPUT {{ type nat hook output priority -100; policy accept; }}"));
    line(format!(
        "add rule {t} nat-OUTPUT {addr} daddr != {loopback} fib daddr type local counter jump nat-prerouting-and-output"
    ));
    line(format!("add chain {t} nat-POSTROUTING {{ type nat hook postrouting priority srcnat; policy accept; }}"));
    line(format!("add rule {t} nat-POSTROUTING iifname vmap @nat-postrouting-out-jumps"));
    line(format!("add rule {t} nat-POSTROUTING oifname vmap @nat-postrouting-in-jumps"));
    line(format!("add chain {t} raw-PREROUTING {{ type filter hook prerouting priority raw; policy accept; }}"));
    line(format!(
        "add rule {t} raw-PREROUTING {addr} daddr {c1} iifname != \"{}\" counter drop comment \"DROP DIRECT ACCESS\"",
        DOCKER0.name
    ));
    s
}

/// The four chains dockerd 29 keeps per bridge network; the published port opens on docker0.
fn per_bridge_chains(line: &mut impl FnMut(String), t: &str, bridge: &Bridge, family: Family, addr: &str, c1: &str) {
    let br = bridge.name;
    let fwd_in = format!("filter-forward-in__{br}");
    let fwd_out = format!("filter-forward-out__{br}");
    for chain in [&fwd_in, &fwd_out] {
        line(format!("add chain {t} {chain}"));
    }
    line(format!("add rule {t} {fwd_in} ct state established,related counter accept"));
    line(format!("add rule {t} {fwd_in} iifname \"{br}\" counter accept comment \"ICC\""));
    if br == DOCKER0.name {
        line(format!("add rule {t} {fwd_in} {addr} daddr {c1} tcp dport {SERVICE_PORT} counter accept"));
    }
    line(format!("add rule {t} {fwd_in} counter drop comment \"UNPUBLISHED PORT DROP\""));
    line(format!("add rule {t} {fwd_out} ct state established,related counter accept"));
    line(format!("add rule {t} {fwd_out} counter accept comment \"OUTGOING\""));
    line(format!("add chain {t} nat-postrouting-in__{br}"));
    line(format!("add chain {t} nat-postrouting-out__{br}"));
    line(format!(
        "add rule {t} nat-postrouting-out__{br} oifname != \"{br}\" {addr} saddr {} counter masquerade comment \"MASQUERADE\"",
        subnet(bridge, family)
    ));
}
