//! What the user wants, validated and normalised before anything touches the kernel.
//!
//! Each value is checked where it is written: a flag's value by clap through the `parse_*`
//! functions here, a config value by `config` through the same functions, so both say the same
//! thing about the same mistake, each naming where it was made. What is left for
//! [`PolicySpec::resolve`] are the checks across values (duplicates, families, logging).

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::dns::forwarder::RefuseWith;
use crate::dns::grant::Lifetimes;
use crate::dns::names::AllowDomain;
use crate::grants::{Grants, Live};
use crate::net::{Family, Limit, Proto};

/// The bridges Docker creates: the default bridge and every user-defined network.
pub const DEFAULT_IFACES: [&str; 2] = ["docker0", "br-+"];
/// Linux interface names are at most IFNAMSIZ - 1 bytes.
pub const IFNAME_MAX: usize = 15;
/// The prefix of log lines when `--log` has no value.
pub const DEFAULT_LOG_PREFIX: &str = "egress-guard: ";
/// Blocked attempts logged at most this often (`--log-rate`): enough to see a pattern, too few
/// to flood the log when a container hammers a closed port.
pub const DEFAULT_LOG_RATE: Limit = Limit { rate: 10, unit: 60, burst: 5 };
/// `xt_log_info.prefix` holds 29 bytes and a NUL.
pub const LOG_PREFIX_MAX: usize = 29;
/// NFLOG prefixes (`xt_nflog_info`, nft `log prefix`) hold 63 bytes and a NUL.
pub const NFLOG_PREFIX_MAX: usize = 63;
/// What `--log` leaves of NFLOG's 63 bytes: the rule's prefix also carries what the guard does
/// with the packet (a space and up to 16 bytes, see `audit::tag`), for `egress-guard log`.
pub const NFLOG_USER_PREFIX_MAX: usize = NFLOG_PREFIX_MAX - 1 - crate::audit::tag::WORD_MAX;
/// The NFLOG group `--log` writes to unless `--nflog-group` says otherwise: far from the 0–2
/// that ulogd's and suricata's examples use, so the guard's attempts do not land in their logs.
pub const DEFAULT_NFLOG_GROUP: u16 = 4711;
/// The bit of the packet mark our table sets on packets an allow-list lets out (`--mark-bit`),
/// for the DOCKER-USER rules and watch's shield to let them pass. Clear of the bits
/// Kubernetes (0x4000, 0x8000), Tailscale (0xff0000), Podman (0x2000) and WireGuard use.
pub const DEFAULT_MARK_BIT: u32 = 0x0100_0000;

/// How blocked packets are answered (`--reject-with`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// ICMP port unreachable: "connection refused" (TCP sees it after its first SYN retry, ~1 s)
    #[default]
    PortUnreachable,
    /// ICMP administratively prohibited: "no route to host"
    AdminProhibited,
    /// TCP refused at once by a reset; everything else by port-unreachable
    TcpReset,
    /// No answer: clients wait for their timeout
    Drop,
}

impl Refusal {
    pub const ALL: [Refusal; 4] =
        [Refusal::PortUnreachable, Refusal::AdminProhibited, Refusal::TcpReset, Refusal::Drop];

    /// The word `--reject-with` takes.
    pub fn word(self) -> &'static str {
        match self {
            Refusal::PortUnreachable => "port-unreachable",
            Refusal::AdminProhibited => "admin-prohibited",
            Refusal::TcpReset => "tcp-reset",
            Refusal::Drop => "drop",
        }
    }

    pub fn from_word(word: &str) -> Option<Refusal> {
        Refusal::ALL.into_iter().find(|r| r.word() == word)
    }
}

/// Where `--log` writes (`--log-to`, config `log_to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogTo {
    /// An NFLOG group (--nflog-group, default 4711): `egress-guard log` reads it and names the
    /// container
    #[default]
    Nflog,
    /// The kernel log (dmesg, journalctl -k), as iptables' LOG target writes it
    Kernel,
}

/// A bridge pattern: an interface name, or a prefix followed by the wildcard `+`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Iface(String);

impl Iface {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without the wildcard, and whether there was one.
    pub fn stem(&self) -> (&str, bool) {
        match self.0.strip_suffix('+') {
            Some(prefix) => (prefix, true),
            None => (&self.0, false),
        }
    }
}

impl fmt::Display for Iface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A destination containers may still reach: a network, optionally one port of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Allow {
    pub net: IpNet,
    pub port: Option<(u16, Proto)>,
}

impl fmt::Display for Allow {
    /// The form `--allow` takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port, self.net) {
            (None, net) => write!(f, "{net}"),
            (Some((port, proto)), IpNet::V4(net)) => write!(f, "{net}:{port}/{}", proto.name()),
            (Some((port, proto)), IpNet::V6(net)) => write!(f, "[{net}]:{port}/{}", proto.name()),
        }
    }
}

/// Where blocked attempts are logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSink {
    /// The kernel log (`-j LOG --log-prefix`).
    Kernel { prefix: String },
    /// An NFLOG group, for `egress-guard log` or ulogd (`-j NFLOG --nflog-group`). In the
    /// policy `prefix` is the user's (or the default); `rules` adds what the guard does.
    Nflog { group: u16, prefix: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    pub sink: LogSink,
    pub rate: Limit,
}

/// The DNS forwarder's settings; off while no name is allowed, to everyone (`domains`) or to
/// some containers (`for_containers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    pub domains: Vec<AllowDomain>,
    /// Where allowed queries go; empty: the host's /etc/resolv.conf.
    pub upstreams: Vec<SocketAddr>,
    pub lifetimes: Lifetimes,
    pub refuse_with: RefuseWith,
    /// The port the forwarder listens on, where the nat rule redirects containers' port 53.
    pub port: u16,
    /// Whether containers may be allowed names of their own (the config's tables, labels):
    /// then the guard keeps the sets of who may look names up and what each got. Not from the
    /// user's words but decided beside `Policy::per_source`, and kept while those sets exist.
    pub for_containers: bool,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            domains: Vec::new(),
            upstreams: Vec::new(),
            lifetimes: Lifetimes::default(),
            refuse_with: RefuseWith::default(),
            port: DEFAULT_DNS_PORT,
            for_containers: false,
        }
    }
}

impl Dns {
    /// Whether every guarded container's DNS is answered by the forwarder (names allowed to all).
    pub fn is_on(&self) -> bool {
        !self.domains.is_empty()
    }
}

/// The forwarder's port: high, unassigned, and not mDNS's 5353.
pub const DEFAULT_DNS_PORT: u16 = 53053;

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Bridge patterns whose traffic is guarded; empty when only `subnets` select the sources.
    pub ifaces: Vec<Iface>,
    /// Source subnets (network addresses, normalised); empty when only `ifaces` select.
    pub subnets: Vec<IpNet>,
    pub allow: Vec<Allow>,
    pub refusal: Refusal,
    pub log: Option<Logging>,
    /// Also refuse new connections from the containers to the host itself (INPUT), except to
    /// allowed destinations. Lives in our own table, whatever guards FORWARD.
    pub block_host: bool,
    /// The packet mark bit that says "an allow-list lets this out".
    pub mark_bit: u32,
    /// Allowances per container, network and compose service from the config file.
    pub grants: Grants,
    /// Whether the guard keeps per-container and per-network allowances (labels, the config's
    /// tables): true where egress-guard can reach Docker's API. Not from the user's words but
    /// from the host, so `apply` and `watch` agree on what the table holds.
    pub per_source: bool,
    /// Names containers may reach (`--allow-domain`), through watch's DNS forwarder.
    pub dns: Dns,
    /// A digest of what `apply` was given (flags, config file, version), kept in our table so
    /// the same apply against an untouched ruleset can say "in place" without parsing anything.
    pub input: Option<u64>,
    /// What Docker runs now, for the per-source sets, when the caller follows Docker (`watch`,
    /// `status`): those sets are made to hold exactly this. `None`: they are left as they are.
    pub live: Option<std::sync::Arc<Live>>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            ifaces: DEFAULT_IFACES.iter().map(|s| Iface(s.to_string())).collect(),
            subnets: Vec::new(),
            allow: Vec::new(),
            refusal: Refusal::PortUnreachable,
            log: None,
            block_host: false,
            mark_bit: DEFAULT_MARK_BIT,
            grants: Grants::default(),
            per_source: false,
            dns: Dns::default(),
            input: None,
            live: None,
        }
    }
}

impl Policy {
    /// Subnets of one family.
    pub fn subnets_of(&self, family: Family) -> Vec<IpNet> {
        self.subnets.iter().copied().filter(|n| Family::of(n) == family).collect()
    }

    /// Allowed destinations of one family.
    pub fn allow_of(&self, family: Family) -> Vec<Allow> {
        self.allow.iter().copied().filter(|a| Family::of(&a.net) == family).collect()
    }

    /// Whether any rule guards this family (a subnet-only policy guards only its families).
    pub fn guards(&self, family: Family) -> bool {
        !self.ifaces.is_empty() || !self.subnets_of(family).is_empty()
    }

    /// Whether anything may get out past the refusal: then our table marks what an allow-list
    /// lets out, and the refusing rules skip marked packets.
    pub fn marks(&self) -> bool {
        !self.allow.is_empty() || self.per_source || self.dns.is_on()
    }

    /// Whether some containers' DNS is answered by watch's forwarder: the redirect, the
    /// forwarder's sets and its port's guard are in our table.
    pub fn answers_dns(&self) -> bool {
        self.dns.is_on() || self.per_source_dns()
    }

    /// Whether names allowed per container (labels, the config's tables) have their sets.
    pub fn per_source_dns(&self) -> bool {
        self.per_source && self.dns.for_containers
    }
}

// ---- where a value came from ----

/// Where a value was written: a flag, or a key at a line and column of the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag(&'static str),
    File { path: String, line: usize, col: usize, key: &'static str },
}

impl Origin {
    /// How a message names the value: `--allow X` or `config.toml:3:5: allow "X"`.
    pub fn show(&self, value: &str) -> String {
        match self {
            Origin::Flag(flag) => format!("{flag} {value}"),
            Origin::File { path, line, col, key } => format!("{path}:{line}:{col}: {key} {value:?}"),
        }
    }
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Sourced<T> {
    pub fn flag(flag: &'static str, value: T) -> Self {
        Sourced { value, origin: Origin::Flag(flag) }
    }
}

// ---- errors ----

/// Why one value cannot work; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("empty interface name (use e.g. docker0 or br-+)")]
    EmptyIface,
    #[error("\".\" and \"..\" are not interface names")]
    DotIface,
    #[error("longer than 15 bytes, the kernel's limit for interface names")]
    LongIface,
    #[error("'+' is only a wildcard at the end (e.g. br-+)")]
    InnerWildcard,
    #[error("interface names cannot hold spaces, '/' or ':'")]
    KernelIfaceChars,
    #[error(
        "interface names here are printable ASCII without quotes or backslashes (Docker's are docker0 and br-<id>)"
    )]
    IfaceChars,
    #[error("not an IPv4 or IPv6 CIDR (e.g. 172.17.0.0/16, fd00::/8)")]
    NotCidr,
    #[error("a subnet needs a prefix length, e.g. {0} for one address")]
    NoPrefix(IpNet),
    #[error("host bits are set; the network is {0}")]
    HostBits(IpNet),
    #[error("matches every address; to guard all sources use --iface instead")]
    Everything,
    #[error("missing ']' after the IPv6 network")]
    NoCloseBracket,
    #[error("expected [NET]:PORT/PROTO, e.g. [2001:db8::53]:53/udp")]
    AfterBracket,
    #[error("brackets are for IPv6: write {0}")]
    BracketedV4(String),
    #[error("an IPv6 address with a port needs brackets: {0}")]
    NeedsBrackets(String),
    #[error("not a destination: CIDR, CIDR:PORT/PROTO or [IPv6-CIDR]:PORT/PROTO (e.g. 198.51.100.53:53/udp)")]
    NotDest,
    #[error("give the protocol too, e.g. {0}/udp or {0}/tcp")]
    NoProto(String),
    #[error("protocol {0:?} must be tcp or udp")]
    BadProto(String),
    #[error("port {0:?} must be a number from 1 to 65535, without sign or leading zeros")]
    BadPort(String),
    #[error("expected RATE/UNIT such as 10/minute (unit second, minute, hour or day; at most 10000/second)")]
    BadRate,
    #[error("the prefix is empty; give text, or plain --log for the default")]
    EmptyPrefix,
    #[error("the prefix holds control characters")]
    PrefixControl,
    #[error(transparent)]
    Domain(#[from] crate::dns::names::NameError),
    #[error("not an upstream address: ADDR, ADDR:PORT or [IPv6]:PORT (e.g. 198.51.100.53, [2001:db8::53]:53)")]
    BadUpstream,
    #[error("a number of seconds from 0 to 604800 (a week)")]
    BadSeconds,
    #[error("expected one bit of the packet mark in hex, such as 0x1000000 (bits already used by other programs on this host must be avoided)")]
    BadMarkBit,
}

/// A policy that cannot work; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// One value is wrong; the message names where it was written.
    #[error("{shown}: {why}")]
    Value { shown: String, why: ValueError },
    #[error("no sources to guard: give --iface NAME or --subnet CIDR")]
    NoSources,
    #[error("{0} is given twice: drop one")]
    Twice(String),
    #[error("{shown}: an {family} destination, but no {family} --subnet is guarded", family = family.word())]
    AllowFamily { shown: String, family: Family },
    #[error("--dns-min-ttl is longer than --dns-max-ttl: swap them")]
    TtlOrder,
    #[error("dns_port 0 is no port: give one from 1 to 65535 (default 53053)")]
    DnsPortZero,
    #[error("--log-rate needs --log or --nflog-group: add one, or drop --log-rate")]
    RateWithoutLog,
    #[error("--log-to needs --log: add it, or drop --log-to")]
    LogToWithoutLog,
    #[error("--nflog-group is for --log-to nflog, and --log-to kernel writes the kernel log: drop one")]
    GroupWithKernelLog,
    #[error("{shown}: prefix longer than {max} bytes, the kernel's limit")]
    LongPrefix { shown: String, max: usize },
}

impl PolicyError {
    pub fn value(origin: &Origin, value: &str, why: ValueError) -> PolicyError {
        PolicyError::Value { shown: origin.show(value), why }
    }
}

// ---- the policy as given, before the checks across values ----

/// The policy as flags or the config file give it (`None` = not given there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySpec {
    pub ifaces: Option<Vec<Sourced<Iface>>>,
    pub subnets: Option<Vec<Sourced<IpNet>>>,
    pub allow: Option<Vec<Sourced<Allow>>>,
    pub refusal: Option<Refusal>,
    /// `Some(None)`: `--log` without a prefix.
    pub log: Option<Sourced<Option<String>>>,
    pub log_rate: Option<Limit>,
    pub log_to: Option<LogTo>,
    pub nflog_group: Option<u16>,
    pub block_host: Option<bool>,
    pub mark_bit: Option<u32>,
    /// Only from the config file: tables have no flags.
    pub grants: Option<Grants>,
    pub allow_domains: Option<Vec<Sourced<AllowDomain>>>,
    pub dns_upstreams: Option<Vec<SocketAddr>>,
    pub dns_min_ttl: Option<u32>,
    pub dns_max_ttl: Option<u32>,
    pub dns_refuse_with: Option<RefuseWith>,
    pub dns_port: Option<u16>,
}

impl PolicySpec {
    /// Flags win over the config file, key by key.
    pub fn over(self, base: PolicySpec) -> PolicySpec {
        PolicySpec {
            ifaces: self.ifaces.or(base.ifaces),
            subnets: self.subnets.or(base.subnets),
            allow: self.allow.or(base.allow),
            refusal: self.refusal.or(base.refusal),
            log: self.log.or(base.log),
            log_rate: self.log_rate.or(base.log_rate),
            log_to: self.log_to.or(base.log_to),
            nflog_group: self.nflog_group.or(base.nflog_group),
            block_host: self.block_host.or(base.block_host),
            mark_bit: self.mark_bit.or(base.mark_bit),
            grants: self.grants.or(base.grants),
            allow_domains: self.allow_domains.or(base.allow_domains),
            dns_upstreams: self.dns_upstreams.or(base.dns_upstreams),
            dns_min_ttl: self.dns_min_ttl.or(base.dns_min_ttl),
            dns_max_ttl: self.dns_max_ttl.or(base.dns_max_ttl),
            dns_refuse_with: self.dns_refuse_with.or(base.dns_refuse_with),
            dns_port: self.dns_port.or(base.dns_port),
        }
    }

    pub fn resolve(&self) -> Result<Policy, PolicyError> {
        let subnets = self.subnets.clone().unwrap_or_default();
        let ifaces: Vec<Sourced<Iface>> = match (&self.ifaces, subnets.is_empty()) {
            (Some(list), _) => list.clone(),
            (None, true) => DEFAULT_IFACES.iter().map(|s| Sourced::flag("--iface", Iface(s.to_string()))).collect(),
            (None, false) => Vec::new(),
        };
        if ifaces.is_empty() && subnets.is_empty() {
            return Err(PolicyError::NoSources);
        }
        no_duplicates(&ifaces)?;
        no_duplicates(&subnets)?;
        let allow = self.allow.clone().unwrap_or_default();
        no_duplicates(&allow)?;
        for a in &allow {
            let family = Family::of(&a.value.net);
            if ifaces.is_empty() && !subnets.iter().any(|n| Family::of(&n.value) == family) {
                return Err(PolicyError::AllowFamily { shown: a.origin.show(&a.value.to_string()), family });
            }
        }
        Ok(Policy {
            ifaces: ifaces.into_iter().map(|i| i.value).collect(),
            subnets: subnets.into_iter().map(|s| s.value).collect(),
            allow: allow.into_iter().map(|a| a.value).collect(),
            refusal: self.refusal.unwrap_or_default(),
            log: self.logging()?,
            block_host: self.block_host.unwrap_or(false),
            mark_bit: self.mark_bit.unwrap_or(DEFAULT_MARK_BIT),
            grants: self.grants.clone().unwrap_or_default(),
            per_source: false,
            dns: self.dns()?,
            input: None,
            live: None,
        })
    }

    /// `--allow-domain` and the forwarder's settings. The settings stand without a name: the
    /// names may come from containers' labels, which only `watch` sees.
    fn dns(&self) -> Result<Dns, PolicyError> {
        let domains = self.allow_domains.clone().unwrap_or_default();
        no_duplicates(&domains)?;
        let defaults = Lifetimes::default();
        let min = self.dns_min_ttl.map_or(defaults.min, |s| std::time::Duration::from_secs(s.into()));
        let max = self.dns_max_ttl.map_or(defaults.max, |s| std::time::Duration::from_secs(s.into()));
        if min > max {
            return Err(PolicyError::TtlOrder);
        }
        if self.dns_port == Some(0) {
            return Err(PolicyError::DnsPortZero);
        }
        Ok(Dns {
            domains: domains.into_iter().map(|d| d.value).collect(),
            upstreams: self.dns_upstreams.clone().unwrap_or_default(),
            lifetimes: Lifetimes { min, max },
            refuse_with: self.dns_refuse_with.unwrap_or_default(),
            port: self.dns_port.unwrap_or(DEFAULT_DNS_PORT),
            for_containers: false,
        })
    }

    /// `--log` (or `--nflog-group` alone, as before `--log-to`) turns logging on; NFLOG unless
    /// `--log-to kernel`.
    fn logging(&self) -> Result<Option<Logging>, PolicyError> {
        if self.log.is_none() && self.nflog_group.is_none() {
            return match (self.log_rate, self.log_to) {
                (Some(_), _) => Err(PolicyError::RateWithoutLog),
                (None, Some(_)) => Err(PolicyError::LogToWithoutLog),
                (None, None) => Ok(None),
            };
        }
        let to = self.log_to.unwrap_or_default();
        if to == LogTo::Kernel && self.nflog_group.is_some() {
            return Err(PolicyError::GroupWithKernelLog);
        }
        let prefix = match &self.log {
            Some(Sourced { value: Some(p), origin }) => {
                let max = if to == LogTo::Nflog { NFLOG_USER_PREFIX_MAX } else { LOG_PREFIX_MAX };
                if p.len() > max {
                    return Err(PolicyError::LongPrefix { shown: origin.show(&format!("{p:?}")), max });
                }
                p.clone()
            }
            _ => DEFAULT_LOG_PREFIX.to_string(),
        };
        let sink = match to {
            LogTo::Nflog => {
                LogSink::Nflog { group: self.nflog_group.unwrap_or(DEFAULT_NFLOG_GROUP), prefix: Some(prefix) }
            }
            LogTo::Kernel => LogSink::Kernel { prefix },
        };
        Ok(Some(Logging { sink, rate: self.log_rate.unwrap_or(DEFAULT_LOG_RATE) }))
    }
}

/// One pass with a hash set: an allow-list of 10,000 destinations must not cost 50 million
/// comparisons.
fn no_duplicates<T: std::hash::Hash + Eq + fmt::Display>(items: &[Sourced<T>]) -> Result<(), PolicyError> {
    let mut seen = HashSet::with_capacity(items.len());
    match items.iter().find(|x| !seen.insert(&x.value)) {
        Some(x) => Err(PolicyError::Twice(x.origin.show(&x.value.to_string()))),
        None => Ok(()),
    }
}

// ---- one value each: shared by clap (flags) and the config file ----

/// An interface pattern as the kernel and iptables will see it (`dev_valid_name`), limited to
/// what both `iptables -S` and nft syntax can print as typed.
pub fn parse_iface(name: &str) -> Result<Iface, ValueError> {
    let stem = name.strip_suffix('+').unwrap_or(name);
    if stem.is_empty() {
        return Err(ValueError::EmptyIface);
    }
    if name == "." || name == ".." {
        return Err(ValueError::DotIface);
    }
    if name.len() > IFNAME_MAX {
        return Err(ValueError::LongIface);
    }
    if stem.contains('+') {
        return Err(ValueError::InnerWildcard);
    }
    if stem.chars().any(|c| c.is_whitespace() || c == '/' || c == ':') {
        return Err(ValueError::KernelIfaceChars);
    }
    if !stem.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\')) {
        return Err(ValueError::IfaceChars);
    }
    Ok(Iface(name.to_string()))
}

/// `172.17.0.0/16` or `fd00::/8`. Host bits set are an error naming the network, never
/// silently dropped (the classic recipe's `172.17.0.0/12` is really `172.16.0.0/12`).
pub fn parse_subnet(s: &str) -> Result<IpNet, ValueError> {
    parse_net(s, true)
}

fn parse_net(s: &str, need_prefix: bool) -> Result<IpNet, ValueError> {
    let net: IpNet = match s.parse() {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(ip) if !need_prefix => IpNet::from(ip),
            Ok(ip) => return Err(ValueError::NoPrefix(IpNet::from(ip))),
            Err(_) => return Err(ValueError::NotCidr),
        },
    };
    if net.addr() != net.network() {
        return Err(ValueError::HostBits(net.trunc()));
    }
    if net.prefix_len() == 0 {
        return Err(ValueError::Everything);
    }
    Ok(net)
}

/// `CIDR`, `CIDR:PORT/PROTO` or `[IPv6-CIDR]:PORT/PROTO`; a bare address means /32 or /128.
pub fn parse_allow(s: &str) -> Result<Allow, ValueError> {
    if let Some(rest) = s.strip_prefix('[') {
        let (net, after) = rest.split_once(']').ok_or(ValueError::NoCloseBracket)?;
        let port = after.strip_prefix(':').ok_or(ValueError::AfterBracket)?;
        let net = parse_net(net, false).map_err(|e| match e {
            ValueError::NotCidr => ValueError::AfterBracket,
            e => e,
        })?;
        if let IpNet::V4(v4) = net {
            let plain = if v4.prefix_len() == 32 { v4.addr().to_string() } else { v4.to_string() };
            return Err(ValueError::BracketedV4(format!("{plain}:{port}")));
        }
        return Ok(Allow { net, port: Some(parse_port(port)?) });
    }
    match s.matches(':').count() {
        0 => Ok(Allow { net: parse_net(s, false)?, port: None }),
        1 => {
            let (net, port) = s.split_once(':').unwrap_or((s, ""));
            Ok(Allow { net: parse_net(net, false)?, port: Some(parse_port(port)?) })
        }
        _ => match parse_net(s, false) {
            Ok(net) => Ok(Allow { net, port: None }),
            // `2001:db8::53:53/udp`: an IPv6 address, then what looks like a port.
            Err(_) if s.ends_with("/udp") || s.ends_with("/tcp") => {
                let (addr, port) = s.rsplit_once(':').unwrap_or((s, ""));
                Err(ValueError::NeedsBrackets(format!("[{addr}]:{port}")))
            }
            Err(ValueError::NotCidr) => Err(ValueError::NotDest),
            Err(e) => Err(e),
        },
    }
}

fn parse_port(s: &str) -> Result<(u16, Proto), ValueError> {
    let (port, proto) = s.split_once('/').ok_or_else(|| ValueError::NoProto(s.to_string()))?;
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return Err(ValueError::BadProto(proto.to_string())),
    };
    // Digits only, no leading zero: `+53` and `053` parse as numbers but are not what
    // iptables prints back, so they are refused rather than silently rewritten.
    let canonical = port.bytes().all(|b| b.is_ascii_digit()) && !port.starts_with('0');
    match port.parse::<u16>() {
        Ok(p) if canonical && p > 0 => Ok((p, proto)),
        _ => Err(ValueError::BadPort(port.to_string())),
    }
}

/// `RATE/UNIT` with UNIT second, minute, hour or day (also sec, min, s, m, h, d).
pub fn parse_rate(s: &str) -> Result<Limit, ValueError> {
    let (rate, unit) = s.split_once('/').ok_or(ValueError::BadRate)?;
    let unit = match unit {
        "second" | "sec" | "s" => 1,
        "minute" | "min" | "m" => 60,
        "hour" | "h" => 3600,
        "day" | "d" => 86400,
        _ => return Err(ValueError::BadRate),
    };
    let digits = rate.bytes().all(|b| b.is_ascii_digit());
    match rate.parse::<u64>() {
        // The kernel's token bucket works in 1/10000 s; iptables caps the rate at 10000/second.
        Ok(r) if digits && r > 0 && r <= 10_000 => Ok(Limit { rate: r, unit, burst: DEFAULT_LOG_RATE.burst }),
        _ => Err(ValueError::BadRate),
    }
}

/// A log prefix: printable, not empty (its length is checked against the sink in `resolve`).
pub fn parse_prefix(p: &str) -> Result<String, ValueError> {
    if p.is_empty() {
        return Err(ValueError::EmptyPrefix);
    }
    if p.chars().any(|c| c.is_control()) {
        return Err(ValueError::PrefixControl);
    }
    Ok(p.to_string())
}

/// `--allow-domain NAME[:PORT/PROTO]`.
pub fn parse_allow_domain(s: &str) -> Result<AllowDomain, ValueError> {
    Ok(crate::dns::names::parse_allow_domain(s)?)
}

/// `--dns-upstream ADDR[:PORT]`.
pub fn parse_upstream(s: &str) -> Result<SocketAddr, ValueError> {
    crate::dns::upstream::parse_upstream(s).map_err(|_| ValueError::BadUpstream)
}

/// `--dns-min-ttl` / `--dns-max-ttl`: whole seconds, at most a week.
pub fn parse_seconds(s: &str) -> Result<u32, ValueError> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    match s.parse::<u32>() {
        Ok(n) if canonical && n <= 604_800 => Ok(n),
        _ => Err(ValueError::BadSeconds),
    }
}

/// `0x1000000`: exactly one bit, in hex (as `iptables -S` prints marks).
pub fn parse_mark_bit(s: &str) -> Result<u32, ValueError> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).ok_or(ValueError::BadMarkBit)?;
    match u32::from_str_radix(hex, 16) {
        Ok(bit) if bit.is_power_of_two() && !hex.starts_with('+') => Ok(bit),
        _ => Err(ValueError::BadMarkBit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_bit_is_one_hex_bit() {
        assert_eq!(parse_mark_bit("0x1000000"), Ok(0x0100_0000));
        assert_eq!(parse_mark_bit("0X1"), Ok(1));
        for bad in ["16777216", "0x3", "0x0", "0x", "0x+1", "0x100000000", "1000000"] {
            assert_eq!(parse_mark_bit(bad), Err(ValueError::BadMarkBit), "{bad}");
        }
    }

    fn flags<T>(flag: &'static str, values: Vec<T>) -> Option<Vec<Sourced<T>>> {
        Some(values.into_iter().map(|v| Sourced::flag(flag, v)).collect())
    }

    fn iface(s: &str) -> Iface {
        parse_iface(s).unwrap()
    }

    #[test]
    fn default_spec_is_the_default_policy() {
        assert_eq!(PolicySpec::default().resolve(), Ok(Policy::default()));
    }

    #[test]
    fn interface_names_follow_the_kernel_and_print_as_typed() {
        for (bad, why) in [
            ("", ValueError::EmptyIface),
            ("+", ValueError::EmptyIface),
            (".", ValueError::DotIface),
            ("..", ValueError::DotIface),
            ("a+b", ValueError::InnerWildcard),
            ("sixteen-bytes-xx", ValueError::LongIface),
            ("br 0", ValueError::KernelIfaceChars),
            ("eth0:1", ValueError::KernelIfaceChars),
            ("br\"x", ValueError::IfaceChars),
            ("br\u{e4}", ValueError::IfaceChars),
            ("br\\x", ValueError::IfaceChars),
        ] {
            assert_eq!(parse_iface(bad), Err(why), "{bad:?}");
        }
        for good in ["docker0", "br-+", "fifteen-bytes-x", "veth+", "...", ".x"] {
            assert_eq!(parse_iface(good).map(|i| i.0), Ok(good.to_string()), "{good:?}");
        }
    }

    #[test]
    fn host_bits_name_the_network() {
        assert_eq!(parse_subnet("172.17.0.0/12"), Err(ValueError::HostBits("172.16.0.0/12".parse().unwrap())));
        assert_eq!(
            ValueError::HostBits("172.16.0.0/12".parse().unwrap()).to_string(),
            "host bits are set; the network is 172.16.0.0/12"
        );
        assert_eq!(parse_subnet("fd00::/8").unwrap().to_string(), "fd00::/8");
        assert_eq!(parse_subnet("10.0.0.1"), Err(ValueError::NoPrefix("10.0.0.1/32".parse().unwrap())));
    }

    #[test]
    fn allow_forms() {
        let a = parse_allow("10.0.0.53/32:53/udp").unwrap();
        assert_eq!((a.net.to_string(), a.port), ("10.0.0.53/32".into(), Some((53, Proto::Udp))));
        let a = parse_allow("[2001:db8::53]:53/tcp").unwrap();
        assert_eq!((a.net.to_string(), a.port), ("2001:db8::53/128".into(), Some((53, Proto::Tcp))));
        assert_eq!(parse_allow("2001:db8::/32").unwrap().port, None);
        assert_eq!(parse_allow("2001:db8::53:53").unwrap().port, None, "a valid IPv6 address");
        assert_eq!(parse_allow("198.51.100.0/24").unwrap().port, None);
        for (bad, why) in [
            ("10.0.0.53:53", ValueError::NoProto("53".into())),
            ("10.0.0.53:0/udp", ValueError::BadPort("0".into())),
            ("10.0.0.53:+53/udp", ValueError::BadPort("+53".into())),
            ("10.0.0.53:053/udp", ValueError::BadPort("053".into())),
            ("10.0.0.53:53/icmp", ValueError::BadProto("icmp".into())),
            ("[2001:db8::1:53/udp", ValueError::NoCloseBracket),
            ("[198.51.100.53]:53/udp", ValueError::BracketedV4("198.51.100.53:53/udp".into())),
            ("2001:db8::53:53/udp", ValueError::NeedsBrackets("[2001:db8::53]:53/udp".into())),
            ("10.1.2.3/8", ValueError::HostBits("10.0.0.0/8".parse().unwrap())),
            ("nowhere", ValueError::NotCidr),
        ] {
            assert_eq!(parse_allow(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10/minute"), Ok(Limit { rate: 10, unit: 60, burst: 5 }));
        assert_eq!(parse_rate("3/s").unwrap().unit, 1);
        for bad in ["10", "0/minute", "10/fortnight", "x/minute", "+5/minute", "10001/second"] {
            assert_eq!(parse_rate(bad), Err(ValueError::BadRate), "{bad}");
        }
    }

    #[test]
    fn subnet_alone_replaces_the_default_bridges() {
        let spec =
            PolicySpec { subnets: flags("--subnet", vec!["172.17.0.0/16".parse().unwrap()]), ..Default::default() };
        let p = spec.resolve().unwrap();
        assert!(p.ifaces.is_empty());
        assert!(p.guards(Family::V4) && !p.guards(Family::V6));
    }

    #[test]
    fn checks_across_values_name_where_the_value_was_written() {
        let twice =
            PolicySpec { ifaces: flags("--iface", vec![iface("docker0"), iface("docker0")]), ..Default::default() };
        assert_eq!(twice.resolve().unwrap_err().to_string(), "--iface docker0 is given twice: drop one");
        let origin = Origin::File { path: "/etc/eg.toml".into(), line: 3, col: 9, key: "allow" };
        let v6 = Sourced { value: parse_allow("2001:db8::53").unwrap(), origin };
        let spec = PolicySpec {
            subnets: flags("--subnet", vec!["172.17.0.0/16".parse().unwrap()]),
            allow: Some(vec![v6]),
            ..Default::default()
        };
        assert_eq!(
            spec.resolve().unwrap_err().to_string(),
            "/etc/eg.toml:3:9: allow \"2001:db8::53/128\": an IPv6 destination, but no IPv6 --subnet is guarded"
        );
        let none = PolicySpec { ifaces: Some(Vec::new()), ..Default::default() };
        assert_eq!(none.resolve(), Err(PolicyError::NoSources));
    }

    #[test]
    fn flags_override_the_file_key_by_key() {
        let file = PolicySpec {
            ifaces: flags("iface", vec![iface("docker0")]),
            refusal: Some(Refusal::Drop),
            ..Default::default()
        };
        let cli = PolicySpec { refusal: Some(Refusal::TcpReset), ..Default::default() };
        let p = cli.over(file).resolve().unwrap();
        assert_eq!(p.ifaces, [iface("docker0")]);
        assert_eq!(p.refusal, Refusal::TcpReset);
    }

    #[test]
    fn logging_choices() {
        let log = |prefix: Option<&str>| Some(Sourced::flag("--log", prefix.map(str::to_string)));
        let sink = |spec: PolicySpec| spec.resolve().map(|p| p.log.map(|l| l.sink));
        let nflog = |group, prefix: &str| Ok(Some(LogSink::Nflog { group, prefix: Some(prefix.into()) }));
        assert_eq!(sink(PolicySpec { log: log(None), ..Default::default() }), nflog(4711, DEFAULT_LOG_PREFIX));
        assert_eq!(sink(PolicySpec { nflog_group: Some(5), ..Default::default() }), nflog(5, DEFAULT_LOG_PREFIX));
        let kernel = PolicySpec { log: log(Some("egress: ")), log_to: Some(LogTo::Kernel), ..Default::default() };
        assert_eq!(sink(kernel), Ok(Some(LogSink::Kernel { prefix: "egress: ".into() })));
        let rate_only = PolicySpec { log_rate: Some(parse_rate("5/second").unwrap()), ..Default::default() };
        assert_eq!(rate_only.resolve(), Err(PolicyError::RateWithoutLog));
        let to_only = PolicySpec { log_to: Some(LogTo::Nflog), ..Default::default() };
        assert_eq!(to_only.resolve(), Err(PolicyError::LogToWithoutLog));
        let both = PolicySpec { nflog_group: Some(5), log_to: Some(LogTo::Kernel), ..Default::default() };
        assert_eq!(both.resolve(), Err(PolicyError::GroupWithKernelLog));
    }

    #[test]
    fn prefixes_are_bounded_by_their_sink() {
        let log = |prefix: &str| Some(Sourced::flag("--log", Some(prefix.to_string())));
        let long = "a-prefix-that-is-far-too-long-for-LOG";
        let kernel = PolicySpec { log: log(long), log_to: Some(LogTo::Kernel), ..Default::default() };
        assert_eq!(
            kernel.resolve().unwrap_err().to_string(),
            format!("--log {long:?}: prefix longer than 29 bytes, the kernel's limit")
        );
        assert!(PolicySpec { log: log(long), ..Default::default() }.resolve().is_ok(), "NFLOG takes 46 bytes");
        let fits = "x".repeat(NFLOG_USER_PREFIX_MAX);
        assert!(PolicySpec { log: log(&fits), ..Default::default() }.resolve().is_ok());
        let over = PolicySpec { log: log(&format!("{fits}x")), ..Default::default() };
        assert!(over.resolve().unwrap_err().to_string().ends_with("prefix longer than 46 bytes, the kernel's limit"));
    }

    #[test]
    fn refusal_words_are_the_ones_clap_takes() {
        use clap::ValueEnum;
        for r in Refusal::ALL {
            assert_eq!(r.to_possible_value().map(|v| v.get_name().to_string()).as_deref(), Some(r.word()));
            assert_eq!(Refusal::from_word(r.word()), Some(r));
        }
        assert_eq!(Refusal::value_variants().len(), Refusal::ALL.len());
    }
}

/// Policies from words, for tests of the layers above: `spec().iface(&["docker0"]).policy()`.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn spec() -> Spec {
        Spec(PolicySpec::default())
    }

    pub struct Spec(pub PolicySpec);

    fn words<T>(
        flag: &'static str,
        list: &[&str],
        parse: fn(&str) -> Result<T, ValueError>,
    ) -> Option<Vec<Sourced<T>>> {
        Some(list.iter().map(|w| Sourced::flag(flag, parse(w).unwrap_or_else(|e| panic!("{w}: {e}")))).collect())
    }

    impl Spec {
        pub fn iface(mut self, list: &[&str]) -> Spec {
            self.0.ifaces = words("--iface", list, parse_iface);
            self
        }
        pub fn subnet(mut self, list: &[&str]) -> Spec {
            self.0.subnets = words("--subnet", list, parse_subnet);
            self
        }
        pub fn allow(mut self, list: &[&str]) -> Spec {
            self.0.allow = words("--allow", list, parse_allow);
            self
        }
        pub fn refusal(mut self, r: Refusal) -> Spec {
            self.0.refusal = Some(r);
            self
        }
        pub fn log(mut self, prefix: Option<&str>) -> Spec {
            self.0.log = Some(Sourced::flag("--log", prefix.map(str::to_string)));
            self
        }
        pub fn nflog(mut self, group: u16) -> Spec {
            self.0.nflog_group = Some(group);
            self
        }
        pub fn log_to(mut self, to: LogTo) -> Spec {
            self.0.log_to = Some(to);
            self
        }
        pub fn block_host(mut self) -> Spec {
            self.0.block_host = Some(true);
            self
        }
        pub fn policy(self) -> Policy {
            self.0.resolve().unwrap()
        }
    }
}
