//! `--target auto`: DOCKER-USER when dockerd's iptables(-nft) backend made it, our own table
//! otherwise, and the reason in words.

use crate::nft::socket::Netlink;
use crate::nft::sys::{NFPROTO_IPV4, NFPROTO_IPV6};
use crate::nft::NlError;
use crate::target::docker_user::{CHAIN, TABLE};
use crate::target::Target;

/// The choice and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub target: Target,
    pub why: String,
}

/// Resolves `auto`; any other target is taken as given.
pub fn choose(nl: &mut Netlink, wanted: Target) -> Result<Choice, NlError> {
    if wanted != Target::Auto {
        return Ok(Choice { target: wanted, why: "chosen with --target".into() });
    }
    if nl.chain_exists(NFPROTO_IPV4, TABLE, CHAIN)? {
        return Ok(Choice {
            target: Target::DockerUser,
            why: "ip filter DOCKER-USER exists (dockerd with iptables-nft)".into(),
        });
    }
    // Docker 29's nftables backend keeps its rules in `ip docker-bridges` / `ip6 docker-bridges`.
    let nft_backend =
        nl.table_exists(NFPROTO_IPV4, "docker-bridges")? || nl.table_exists(NFPROTO_IPV6, "docker-bridges")?;
    // dockerd's iptables backend makes `ip filter DOCKER` too: seen without DOCKER-USER, it is
    // a Docker too old for DOCKER-USER or one still starting.
    let why = if nft_backend {
        "Docker's nftables backend detected (table docker-bridges), which has no DOCKER-USER"
    } else if nl.chain_exists(NFPROTO_IPV4, TABLE, "DOCKER")? {
        "ip filter DOCKER exists but DOCKER-USER does not (dockerd still starting, or a Docker without DOCKER-USER)"
    } else {
        "no Docker rules in nf_tables (no Docker, Docker on iptables-legacy, or Podman)"
    };
    Ok(Choice { target: Target::Table, why: why.into() })
}
