//! The iptables rules dockerd writes (iptables-nft backend, pre-28 chain layout) for the two
//! bridges and c1's published port, applied one `iptables` command at a time as dockerd does.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::addrs::*;
use super::netns::Netns;

/// What the host's DOCKER-USER chain looks like: the states other tests need to start from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DockerUser {
    /// Chain exists, empty, and FORWARD jumps to it first (Docker ≥ 28.2.2).
    #[default]
    Empty,
    /// Chain ends in `-j RETURN`, FORWARD jumps to it first (Docker ≤ 28.2.1).
    EndsWithReturn,
    /// Chain exists but FORWARD does not jump to it: a guard there would be inert.
    NoJump,
    /// No DOCKER-USER chain at all (e.g. Docker's nftables backend, or dockerd not started yet).
    Missing,
}

/// IPv4 (`iptables`) or IPv6 (`ip6tables`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn iptables(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

/// A Docker network: its bridge, subnets and gateways (the bridge's own addresses).
pub struct Bridge {
    pub name: &'static str,
    pub subnet_v4: &'static str,
    pub subnet_v6: &'static str,
    pub gateway_v4: Ipv4Addr,
    pub gateway_v6: Ipv6Addr,
}

impl Bridge {
    fn subnet(&self, family: Family) -> &'static str {
        match family {
            Family::V4 => self.subnet_v4,
            Family::V6 => self.subnet_v6,
        }
    }
}

/// The default network.
pub const DOCKER0: Bridge = Bridge {
    name: "docker0",
    subnet_v4: "172.17.0.0/16",
    subnet_v6: "fd00:17::/64",
    gateway_v4: DOCKER0_V4,
    gateway_v6: DOCKER0_V6,
};

/// A user-defined network (`docker network create eg1`).
pub const BR_EG1: Bridge = Bridge {
    name: "br-eg1",
    subnet_v4: "172.18.0.0/16",
    subnet_v6: "fd00:18::/64",
    gateway_v4: BR_EG1_V4,
    gateway_v6: BR_EG1_V6,
};

pub const BRIDGES: [&Bridge; 2] = [&DOCKER0, &BR_EG1];

/// Writes dockerd's filter and nat rules for `family` into `host`.
pub fn apply(host: &Netns, family: Family, docker_user: DockerUser) {
    for rule in filter_rules(family, docker_user) {
        iptables(host, family, "filter", &rule);
    }
    for rule in nat_rules(family) {
        iptables(host, family, "nat", &rule);
    }
}

fn iptables(host: &Netns, family: Family, table: &str, rule: &str) {
    let mut args = vec![family.iptables(), "-t", table];
    args.extend(rule.split_whitespace());
    host.run(&args);
}

/// FORWARD policy DROP, the DOCKER-USER hook, per-bridge forwarding, and the published port.
fn filter_rules(family: Family, docker_user: DockerUser) -> Vec<String> {
    let mut rules = vec!["-P FORWARD DROP".to_owned(), "-N DOCKER".to_owned()];
    if docker_user != DockerUser::Missing {
        rules.push("-N DOCKER-USER".to_owned());
    }
    if matches!(docker_user, DockerUser::Empty | DockerUser::EndsWithReturn) {
        rules.push("-A FORWARD -j DOCKER-USER".to_owned());
    }
    if docker_user == DockerUser::EndsWithReturn {
        rules.push("-A DOCKER-USER -j RETURN".to_owned());
    }
    for Bridge { name: br, .. } in BRIDGES {
        rules.push(format!("-A FORWARD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"));
        rules.push(format!("-A FORWARD -o {br} -j DOCKER"));
        rules.push(format!("-A FORWARD -i {br} ! -o {br} -j ACCEPT"));
        rules.push(format!("-A FORWARD -i {br} -o {br} -j ACCEPT"));
    }
    let c1 = match family {
        Family::V4 => format!("{C1_V4}/32"),
        Family::V6 => format!("{C1_V6}/128"),
    };
    rules.push(format!("-A DOCKER -d {c1} ! -i docker0 -o docker0 -p tcp -m tcp --dport {SERVICE_PORT} -j ACCEPT"));
    rules
}

/// Published-port DNAT for traffic to any local address, and masquerading out of each bridge.
fn nat_rules(family: Family) -> Vec<String> {
    let mut rules = vec!["-N DOCKER".to_owned(), "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER".to_owned()];
    for bridge in BRIDGES {
        let (br, subnet) = (bridge.name, bridge.subnet(family));
        rules.push(format!("-A POSTROUTING -s {subnet} ! -o {br} -j MASQUERADE"));
    }
    let target = match family {
        Family::V4 => format!("{C1_V4}:{SERVICE_PORT}"),
        Family::V6 => format!("[{C1_V6}]:{SERVICE_PORT}"),
    };
    rules.push(format!(
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport {PUBLISHED_PORT} -j DNAT --to-destination {target}"
    ));
    rules
}
