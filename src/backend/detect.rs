//! Which backends guard which family, and why. `--target auto` decides per family: DOCKER-USER
//! where dockerd's iptables-nft backend made it, our own table where it did not (Docker 20.10
//! has no `ip6 filter DOCKER-USER` even with IPv6 on; Docker 29's nftables backend has none at
//! all). Also returns the places no longer used, so a change of target takes ours out of them.

use super::docker_user::{self, DockerUser};
use super::table::OwnTable;
use super::{Backend, Target};
use crate::net::Family;
use crate::nft::socket::Netlink;
use crate::nft::sys::{NFPROTO_IPV4, NFPROTO_IPV6};
use crate::nft::NlError;
use crate::policy::{Iface, Policy};

/// The backends to use and the places to clear.
pub struct Choice {
    pub target: Target,
    /// Where the guard goes.
    pub backends: Vec<Box<dyn Backend>>,
    /// Places of ours the choice does not use: `apply` removes our rules there.
    pub unused: Vec<Box<dyn Backend>>,
    /// Why, one line per family (or one for an explicit target).
    pub why: Vec<String>,
}

/// Decides where `policy` goes for `target`, reading only what it must: one GETCHAIN per
/// family (and a GETTABLE or two for `auto` without DOCKER-USER).
pub fn choose(nl: &mut Netlink, target: Target, policy: &Policy) -> Result<Choice, NlError> {
    let guarded: Vec<Family> = Family::ALL.into_iter().filter(|f| policy.guards(*f)).collect();
    let (docker_user, table, why) = match target {
        Target::DockerUser => (Family::ALL.to_vec(), Vec::new(), vec!["chosen with --target docker-user".into()]),
        Target::Table => (Vec::new(), guarded.clone(), vec!["chosen with --target table".into()]),
        Target::Both => (Family::ALL.to_vec(), guarded.clone(), vec!["chosen with --target both".into()]),
        Target::Auto => {
            let (mut d, mut t, mut why) = (Vec::new(), Vec::new(), Vec::new());
            for &f in &guarded {
                if nl.chain_exists(f.nfproto(), docker_user::TABLE, docker_user::CHAIN)? {
                    d.push(f);
                    why.push(format!("{}: docker-user, {} filter DOCKER-USER exists", f.word(), f.nft_name()));
                } else {
                    t.push(f);
                    why.push(format!("{}: table, {}", f.word(), no_docker_user(nl, f)?));
                }
            }
            (d, t, why)
        }
    };
    let in_use = in_use(policy);
    let mut backends: Vec<Box<dyn Backend>> = Vec::new();
    let mut unused: Vec<Box<dyn Backend>> = Vec::new();
    let rest: Vec<Family> = Family::ALL.into_iter().filter(|f| !docker_user.contains(f)).collect();
    if !docker_user.is_empty() {
        backends.push(Box::new(DockerUser { families: docker_user, in_use: in_use.clone() }));
    }
    if !rest.is_empty() {
        unused.push(Box::new(DockerUser { families: rest, in_use }));
    }
    // The guard's table also marks what the allow-lists let out, for DOCKER-USER to let pass.
    if !table.is_empty() || policy.block_host || policy.marks() {
        backends.push(Box::new(OwnTable::guard(table)));
    } else {
        unused.push(Box::new(OwnTable::guard(Vec::new())));
    }
    Ok(Choice { target, backends, unused, why })
}

/// Every place we may have written, for `remove` without `--target`.
pub fn everywhere() -> Vec<Box<dyn Backend>> {
    vec![
        Box::new(DockerUser { families: Family::ALL.to_vec(), in_use: Vec::new() }),
        Box::new(OwnTable::guard(Family::ALL.to_vec())),
    ]
}

/// The places of one target, for `remove --target T`.
pub fn places_of(target: Target) -> Vec<Box<dyn Backend>> {
    let docker_user =
        || -> Box<dyn Backend> { Box::new(DockerUser { families: Family::ALL.to_vec(), in_use: Vec::new() }) };
    let table = || -> Box<dyn Backend> { Box::new(OwnTable::guard(Family::ALL.to_vec())) };
    match target {
        Target::Auto | Target::Both => vec![docker_user(), table()],
        Target::DockerUser => vec![docker_user()],
        Target::Table => vec![table()],
    }
}

/// Why a family has no DOCKER-USER, as far as the ruleset tells.
fn no_docker_user(nl: &mut Netlink, family: Family) -> Result<String, NlError> {
    // Docker 29's nftables backend keeps its rules in `ip docker-bridges` / `ip6 docker-bridges`.
    let nft_backend =
        nl.table_exists(NFPROTO_IPV4, "docker-bridges")? || nl.table_exists(NFPROTO_IPV6, "docker-bridges")?;
    let name = family.nft_name();
    Ok(if nft_backend {
        "Docker's nftables backend detected (table docker-bridges), which has no DOCKER-USER".into()
    } else if nl.chain_exists(family.nfproto(), docker_user::TABLE, "DOCKER")? {
        format!("{name} filter DOCKER exists but DOCKER-USER does not (dockerd starting, or a Docker without it)")
    } else if family == Family::V6 && nl.chain_exists(NFPROTO_IPV4, docker_user::TABLE, docker_user::CHAIN)? {
        "no ip6 filter DOCKER-USER (Docker before 23.0, or ip6tables off in dockerd)".into()
    } else {
        format!("no Docker rules in {name} nf_tables (no Docker, Docker on iptables-legacy, or Podman)")
    })
}

/// The families containers use on the guarded bridges: IPv4 always (Docker gives every
/// network one), IPv6 where a guarded bridge has a global address (read from the namespace's
/// /proc/net/if_inet6; if it cannot be read, assume it is in use).
pub fn in_use(policy: &Policy) -> Vec<Family> {
    let v6 = match std::fs::read_to_string("/proc/self/net/if_inet6") {
        Ok(text) => ipv6_on(&text, &policy.ifaces) || !policy.subnets_of(Family::V6).is_empty(),
        Err(_) => true,
    };
    if v6 {
        Family::ALL.to_vec()
    } else {
        vec![Family::V4]
    }
}

/// Whether `if_inet6` (address, ifindex, prefix length, scope, flags, name per line) lists a
/// global-scope address on an interface one of `ifaces` matches.
fn ipv6_on(if_inet6: &str, ifaces: &[Iface]) -> bool {
    if_inet6.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(scope), Some(name)) = (fields.get(3), fields.get(5)) else { return false };
        *scope == "00"
            && ifaces.iter().any(|i| match i.stem() {
                (prefix, true) => name.starts_with(prefix),
                (exact, false) => *name == exact,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_iface;

    #[test]
    fn ipv6_counts_as_in_use_only_with_a_global_address_on_a_guarded_bridge() {
        // /proc/net/if_inet6 of a Docker host with IPv6 on docker0 (fd00:17::1) and only a
        // link-local address on br-…
        let text = "fd000017000000000000000000000001 03 40 00 80   docker0\n\
                    fe80000000000000a8c0fffffe000001 04 40 20 80   br-4f2a\n\
                    00000000000000000000000000000001 01 80 10 80        lo\n";
        let ifaces: Vec<Iface> = ["docker0", "br-+"].iter().map(|i| parse_iface(i).unwrap()).collect();
        assert!(ipv6_on(text, &ifaces));
        assert!(!ipv6_on(text, &ifaces[1..]), "link-local only");
        assert!(!ipv6_on("", &ifaces));
    }
}
