//! The emulated Docker host: a "host" namespace with two bridges, three veth "containers", an
//! uplink to an "internet" namespace, dockerd's iptables rules and echo servers everywhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Output;

use super::addrs::*;
use super::dockerd_rules::{self, Bridge, DockerUser, Family, BRIDGES, BR_EG1, DOCKER0};
use super::echo::EchoServers;
use super::netns::{next_group, Netns};
use super::nft_backend;
use super::tool;

/// A container: its namespace role, the network it is on, its addresses.
struct Container {
    role: &'static str,
    bridge: &'static Bridge,
    v4: Ipv4Addr,
    v6: Ipv6Addr,
}

const CONTAINERS: [Container; 3] = [
    Container { role: "c1", bridge: &DOCKER0, v4: C1_V4, v6: C1_V6 },
    Container { role: "c2", bridge: &DOCKER0, v4: C2_V4, v6: C2_V6 },
    Container { role: "c3", bridge: &BR_EG1, v4: C3_V4, v6: C3_V6 },
];

/// An emulated Docker host in fresh namespaces `eg-<pid>-<n>-{host,inet,c1,c2,c3}`, all deleted
/// on drop. Addresses and ports are the constants in `addrs`:
///
/// - `host`: bridges `docker0` (172.17.0.1/16, fd00:17::1/64) and `br-eg1` (172.18.0.1/16,
///   fd00:18::1/64), uplink `eth0` (198.51.100.1/24, 2001:db8::1/64) with a route to the LAN
///   172.16.99.0/24 via the internet namespace; forwarding on, br_netfilter on, and dockerd's
///   ruleset in `ip`/`ip6` `filter` and `nat` (FORWARD policy DROP, FORWARD → DOCKER-USER first,
///   TCP 8080 DNATed to c1:80, masquerading out of each bridge). Run the tool with `--netns`
///   set to `host.name()` (see [`DockerHost::egress_guard`]).
/// - `internet`: 198.51.100.2/24, 2001:db8::2/64 and the LAN client address 172.16.99.2/24;
///   TCP and UDP echo on ports 80 and 53 of its TEST-NET addresses.
/// - `c1`, `c2` on docker0 and `c3` on br-eg1 (172.17.0.2, .3, 172.18.0.2 and fd00:17::2, ::3,
///   fd00:18::2): TCP and UDP echo on port 80; default routes via their bridge.
pub struct DockerHost {
    // Declared first so it drops first: server threads leave before their namespaces go.
    servers: EchoServers,
    options: DockerHostBuilder,
    pub host: Netns,
    pub internet: Netns,
    pub c1: Netns,
    pub c2: Netns,
    pub c3: Netns,
}

/// Options for a [`DockerHost`]; the defaults are a current Docker host.
#[derive(Clone, Debug)]
pub struct DockerHostBuilder {
    docker_user: DockerUser,
    docker_user_v6: Option<DockerUser>,
    bridge_netfilter: bool,
    nftables_backend: bool,
}

impl DockerHost {
    /// A host like current Docker leaves it: empty DOCKER-USER jumped to first, both families.
    pub fn new() -> DockerHost {
        DockerHost::builder().build()
    }

    pub fn builder() -> DockerHostBuilder {
        DockerHostBuilder {
            docker_user: DockerUser::Empty,
            docker_user_v6: None,
            bridge_netfilter: true,
            nftables_backend: false,
        }
    }

    /// c1, c2, c3.
    pub fn containers(&self) -> [&Netns; 3] {
        [&self.c1, &self.c2, &self.c3]
    }

    /// Runs `egress-guard SUBCOMMAND ARGS… --netns HOST` and returns its output unchecked.
    pub fn egress_guard(&self, subcommand: &str, args: &[&str]) -> Output {
        tool::egress_guard(&self.host, &[&[subcommand], args].concat())
    }

    /// Writes dockerd's rules again, as dockerd does when it starts: after `nft flush ruleset`.
    pub fn restore_dockerd_rules(&self) {
        self.options.configure_host(&self.host);
    }

    /// Like [`DockerHost::egress_guard`], but the command must succeed; returns its stdout.
    pub fn egress_guard_ok(&self, subcommand: &str, args: &[&str]) -> String {
        tool::egress_guard_ok(&self.host, &[&[subcommand], args].concat())
    }
}

impl DockerHostBuilder {
    /// The DOCKER-USER state in both families (see [`DockerUser`]).
    pub fn docker_user(self, state: DockerUser) -> DockerHostBuilder {
        DockerHostBuilder { docker_user: state, ..self }
    }

    /// A different DOCKER-USER state for IPv6 only.
    pub fn docker_user_v6(self, state: DockerUser) -> DockerHostBuilder {
        DockerHostBuilder { docker_user_v6: Some(state), ..self }
    }

    /// Whether bridged (same-network) frames traverse FORWARD (`bridge-nf-call-ip*tables`).
    pub fn bridge_netfilter(self, on: bool) -> DockerHostBuilder {
        DockerHostBuilder { bridge_netfilter: on, ..self }
    }

    /// Docker 29's nftables backend instead of iptables: `ip`/`ip6 docker-bridges` tables and
    /// no DOCKER-USER anywhere (see `nft_backend`).
    pub fn nftables_backend(self) -> DockerHostBuilder {
        DockerHostBuilder { nftables_backend: true, ..self }
    }

    pub fn build(self) -> DockerHost {
        let group = next_group();
        // Each Netns is a drop guard: a panic below still deletes the ones made so far.
        let host = Netns::in_group(group, "host");
        let internet = Netns::in_group(group, "inet");
        let [c1, c2, c3] = CONTAINERS.map(|c| Netns::in_group(group, c.role));
        wire_host(&host, &internet, [&c1, &c2, &c3]);
        address_internet(&internet);
        for (ns, container) in [&c1, &c2, &c3].into_iter().zip(&CONTAINERS) {
            address_container(ns, container);
        }
        self.configure_host(&host);
        let servers = start_servers(&internet, [&c1, &c2, &c3]);
        DockerHost { servers, options: self, host, internet, c1, c2, c3 }
    }

    fn configure_host(&self, host: &Netns) {
        host.sysctl("net.ipv4.ip_forward", "1");
        host.sysctl("net.ipv6.conf.all.forwarding", "1");
        let bridged = if self.bridge_netfilter { "1" } else { "0" };
        host.sysctl("net.bridge.bridge-nf-call-iptables", bridged);
        host.sysctl("net.bridge.bridge-nf-call-ip6tables", bridged);
        if self.nftables_backend {
            return nft_backend::apply(host);
        }
        dockerd_rules::apply(host, Family::V4, self.docker_user);
        dockerd_rules::apply(host, Family::V6, self.docker_user_v6.unwrap_or(self.docker_user));
    }
}

/// Bridges, the uplink and one veth per container, all created from inside `host` with the far
/// ends put straight into their namespaces (nothing ever appears in the root namespace).
fn wire_host(host: &Netns, internet: &Netns, containers: [&Netns; 3]) {
    let mut script = String::new();
    let mut line = |text: String| script.push_str(&(text + "\n"));
    for bridge in BRIDGES {
        line(format!("link add {} type bridge", bridge.name));
        line(format!("addr add {}/16 dev {}", bridge.gateway_v4, bridge.name));
        line(format!("addr add {}/64 dev {} nodad", bridge.gateway_v6, bridge.name));
    }
    line(format!("link add eth0 type veth peer name eth0 netns {}", internet.name()));
    for (ns, c) in containers.into_iter().zip(&CONTAINERS) {
        let (veth, bridge, peer) = (c.role, c.bridge.name, ns.name());
        line(format!("link add veth-{veth} master {bridge} type veth peer name eth0 netns {peer}"));
    }
    line(format!("addr add {HOST_V4}/24 dev eth0"));
    line(format!("addr add {HOST_V6}/64 dev eth0 nodad"));
    for dev in ["docker0", "br-eg1", "eth0", "veth-c1", "veth-c2", "veth-c3"] {
        line(format!("link set {dev} up"));
    }
    // Replies to the LAN client go back the way it came.
    line(format!("route add 172.16.99.0/24 via {INTERNET_V4}"));
    host.ip_batch(&script);
}

/// The internet server's TEST-NET addresses plus the LAN client's. It needs no routes: it only
/// ever talks to the host's uplink address (container traffic arrives masqueraded).
fn address_internet(internet: &Netns) {
    internet.ip_batch(&format!(
        "addr add {INTERNET_V4}/24 dev eth0\n\
         addr add {INTERNET_V6}/64 dev eth0 nodad\n\
         addr add {LAN_CLIENT_V4}/24 dev eth0\n\
         link set eth0 up\n"
    ));
}

fn address_container(ns: &Netns, c: &Container) {
    ns.ip_batch(&format!(
        "addr add {}/16 dev eth0\n\
         addr add {}/64 dev eth0 nodad\n\
         link set eth0 up\n\
         route add default via {}\n\
         route add default via {}\n",
        c.v4, c.v6, c.bridge.gateway_v4, c.bridge.gateway_v6
    ));
}

/// Echo on ports 80 and 53 of the internet server, on port 80 of each container.
fn start_servers(internet: &Netns, containers: [&Netns; 3]) -> EchoServers {
    let mut servers = EchoServers::new();
    let internet_ips: [IpAddr; 2] = [INTERNET_V4.into(), INTERNET_V6.into()];
    let internet_addrs: Vec<SocketAddr> =
        internet_ips.iter().flat_map(|&ip| [SERVICE_PORT, DNS_PORT].map(|port| SocketAddr::new(ip, port))).collect();
    servers.tcp_and_udp(internet, &internet_addrs);
    for (ns, c) in containers.into_iter().zip(&CONTAINERS) {
        let addrs = [SocketAddr::new(c.v4.into(), SERVICE_PORT), SocketAddr::new(c.v6.into(), SERVICE_PORT)];
        servers.tcp_and_udp(ns, &addrs);
    }
    servers
}
