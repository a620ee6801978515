//! What the user wants, validated and normalised before anything touches the kernel. Flags and
//! the config file both produce a `PolicySpec` (raw words); `PolicySpec::resolve` turns it into
//! a `Policy` or one error line that names the bad value and the fix.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::ipt::{Family, Limit, Proto, RejectWith};

/// The bridges Docker creates: the default bridge and every user-defined network.
pub const DEFAULT_IFACES: [&str; 2] = ["docker0", "br-+"];
/// Linux interface names are at most IFNAMSIZ - 1 bytes.
pub const IFNAME_MAX: usize = 15;
/// The prefix of kernel log lines when `--log` has no value.
pub const DEFAULT_LOG_PREFIX: &str = "egress-guard: ";
/// Blocked attempts logged at most this often (`--log-rate`): enough to see a pattern, too few
/// to flood the log when a container hammers a closed port.
pub const DEFAULT_LOG_RATE: Limit = Limit { rate: 10, unit: 60, burst: 5 };

/// How blocked packets are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// REJECT with this ICMP answer (tcp-reset: TCP gets a RST, everything else port-unreachable).
    With(RejectWith),
    /// Silently dropped: the client waits for its timeout.
    Drop,
}

impl Reject {
    pub fn parse(word: &str) -> Option<Reject> {
        Some(match word {
            "port-unreachable" => Reject::With(RejectWith::PortUnreachable),
            "admin-prohibited" => Reject::With(RejectWith::AdminProhibited),
            "tcp-reset" => Reject::With(RejectWith::TcpReset),
            "drop" => Reject::Drop,
            _ => return None,
        })
    }
}

/// A destination containers may still reach: a network, optionally one port of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Allow {
    pub net: IpNet,
    pub port: Option<(u16, Proto)>,
}

impl std::fmt::Display for Allow {
    /// The form `--allow` takes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
    /// An NFLOG group, for `egress-guard log` or ulogd (`-j NFLOG --nflog-group`).
    Nflog { group: u16, prefix: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    pub sink: LogSink,
    pub rate: Limit,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Bridge patterns whose traffic is guarded (`+` at the end is a wildcard); empty when only
    /// `subnets` select the sources.
    pub ifaces: Vec<String>,
    /// Source subnets (network addresses, normalised); empty when only `ifaces` select.
    pub subnets: Vec<IpNet>,
    pub allow: Vec<Allow>,
    pub reject: Reject,
    pub log: Option<Logging>,
    /// Also refuse new connections from the containers to the host itself (INPUT), except to
    /// allowed destinations. Table target only.
    pub block_host: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            ifaces: DEFAULT_IFACES.iter().map(|s| s.to_string()).collect(),
            subnets: Vec::new(),
            allow: Vec::new(),
            reject: Reject::With(RejectWith::PortUnreachable),
            log: None,
            block_host: false,
        }
    }
}

impl Policy {
    /// Subnets of one family.
    pub fn subnets_of(&self, family: Family) -> Vec<IpNet> {
        self.subnets.iter().copied().filter(|n| family_of(n) == family).collect()
    }

    /// Allowed destinations of one family.
    pub fn allow_of(&self, family: Family) -> Vec<Allow> {
        self.allow.iter().copied().filter(|a| family_of(&a.net) == family).collect()
    }
}

pub fn family_of(net: &IpNet) -> Family {
    match net {
        IpNet::V4(_) => Family::V4,
        IpNet::V6(_) => Family::V6,
    }
}

/// A value the user gave that cannot work; the message names it and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn err<T>(msg: String) -> Result<T, PolicyError> {
    Err(PolicyError(msg))
}

/// The policy as words, from flags or the config file (`None` = not given there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySpec {
    pub ifaces: Option<Vec<String>>,
    pub subnets: Option<Vec<String>>,
    pub allow: Option<Vec<String>>,
    pub reject_with: Option<String>,
    /// `Some(None)`: `--log` without a prefix.
    pub log: Option<Option<String>>,
    pub log_rate: Option<String>,
    pub nflog_group: Option<String>,
    pub block_host: Option<bool>,
}

impl PolicySpec {
    /// Flags win over the config file, key by key.
    pub fn over(self, base: PolicySpec) -> PolicySpec {
        PolicySpec {
            ifaces: self.ifaces.or(base.ifaces),
            subnets: self.subnets.or(base.subnets),
            allow: self.allow.or(base.allow),
            reject_with: self.reject_with.or(base.reject_with),
            log: self.log.or(base.log),
            log_rate: self.log_rate.or(base.log_rate),
            nflog_group: self.nflog_group.or(base.nflog_group),
            block_host: self.block_host.or(base.block_host),
        }
    }

    pub fn resolve(&self) -> Result<Policy, PolicyError> {
        let subnets = self.subnets.iter().flatten().map(|s| parse_subnet(s)).collect::<Result<Vec<_>, _>>()?;
        let ifaces = match (&self.ifaces, subnets.is_empty()) {
            (Some(list), _) => list.clone(),
            (None, true) => DEFAULT_IFACES.iter().map(|s| s.to_string()).collect(),
            (None, false) => Vec::new(),
        };
        if self.ifaces.as_ref().is_some_and(|l| l.is_empty()) && subnets.is_empty() {
            return err("no sources to guard: give --iface NAME or --subnet CIDR".into());
        }
        for (i, name) in ifaces.iter().enumerate() {
            check_iface(name)?;
            if ifaces[..i].contains(name) {
                return err(format!("--iface {name} is given twice: drop one"));
            }
        }
        no_duplicates("--subnet", &subnets)?;
        let allow = self.allow.iter().flatten().map(|s| parse_allow(s)).collect::<Result<Vec<_>, _>>()?;
        no_duplicates("--allow", &allow)?;
        check_allow_families(&allow, &subnets, &ifaces)?;
        let reject = match &self.reject_with {
            None => Reject::With(RejectWith::PortUnreachable),
            Some(w) => Reject::parse(w).ok_or_else(|| {
                PolicyError(format!(
                    "--reject-with {w:?}: unknown; use port-unreachable, admin-prohibited, tcp-reset or drop"
                ))
            })?,
        };
        let log = self.logging()?;
        Ok(Policy { ifaces, subnets, allow, reject, log, block_host: self.block_host.unwrap_or(false) })
    }

    fn logging(&self) -> Result<Option<Logging>, PolicyError> {
        let rate = self.log_rate.as_deref().map(parse_rate).transpose()?;
        let group = self.nflog_group.as_deref().map(parse_group).transpose()?;
        let prefix = match &self.log {
            Some(Some(p)) => Some(check_prefix(p, group.is_some())?),
            _ => None,
        };
        let sink = match (group, &self.log) {
            (Some(group), _) => LogSink::Nflog { group, prefix },
            (None, Some(_)) => LogSink::Kernel { prefix: prefix.unwrap_or_else(|| DEFAULT_LOG_PREFIX.to_string()) },
            (None, None) if rate.is_some() => {
                return err("--log-rate needs --log or --nflog-group: add one, or drop --log-rate".into())
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(Logging { sink, rate: rate.unwrap_or(DEFAULT_LOG_RATE) }))
    }
}

/// One pass with a hash set: an allow-list of 10,000 destinations must not cost 50 million
/// comparisons.
fn no_duplicates<T: std::hash::Hash + Eq + std::fmt::Display>(flag: &str, items: &[T]) -> Result<(), PolicyError> {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    match items.iter().find(|x| !seen.insert(*x)) {
        Some(x) => err(format!("{flag} {x} is given twice: drop one")),
        None => Ok(()),
    }
}

/// Checks an interface pattern as the kernel and iptables will see it.
pub fn check_iface(name: &str) -> Result<(), PolicyError> {
    let bad = |why: &str| err(format!("--iface {name:?}: {why}"));
    let stem = name.strip_suffix('+').unwrap_or(name);
    if stem.is_empty() {
        return bad("empty interface name (use e.g. docker0 or br-+)");
    }
    if name.len() > IFNAME_MAX {
        return bad("longer than 15 bytes, the kernel's limit for interface names");
    }
    if stem.contains('+') {
        return bad("'+' is only a wildcard at the end (e.g. br-+)");
    }
    if stem.chars().any(|c| c.is_whitespace() || c == '/' || c == ':' || c.is_control()) {
        return bad("interface names cannot hold spaces, '/' or ':'");
    }
    Ok(())
}

/// `172.17.0.0/16` or `fd00::/8`. Host bits set are an error naming the network, never
/// silently dropped (the classic recipe's `172.17.0.0/12` is really `172.16.0.0/12`).
pub fn parse_subnet(s: &str) -> Result<IpNet, PolicyError> {
    parse_net("--subnet", s, true)
}

fn parse_net(flag: &str, s: &str, need_prefix: bool) -> Result<IpNet, PolicyError> {
    let net: IpNet = match s.parse() {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(ip) if !need_prefix => IpNet::from(ip),
            Ok(ip) => {
                let host = IpNet::from(ip);
                return err(format!("{flag} {s}: a subnet needs a prefix length, e.g. {host} for one address"));
            }
            Err(_) => return err(format!("{flag} {s:?}: not an IPv4 or IPv6 CIDR (e.g. 172.17.0.0/16, fd00::/8)")),
        },
    };
    if net.addr() != net.network() {
        return err(format!("{flag} {s}: host bits are set; the network is {}", net.trunc()));
    }
    if net.prefix_len() == 0 {
        return err(format!("{flag} {s}: matches every address; to guard all sources use --iface instead"));
    }
    Ok(net)
}

/// `CIDR`, `CIDR:PORT/PROTO` or `[IPv6-CIDR]:PORT/PROTO`; a bare address means /32 or /128.
pub fn parse_allow(s: &str) -> Result<Allow, PolicyError> {
    let (net, port) = if let Some(rest) = s.strip_prefix('[') {
        let (net, after) = rest
            .split_once(']')
            .ok_or_else(|| PolicyError(format!("--allow {s:?}: missing ']' after the IPv6 network")))?;
        let port = after.strip_prefix(':').ok_or_else(|| {
            PolicyError(format!("--allow {s:?}: expected [NET]:PORT/PROTO, e.g. [2001:db8::53]:53/udp"))
        })?;
        (net, Some(port))
    } else if s.matches(':').count() == 1 {
        let (net, port) = s.split_once(':').unwrap_or((s, ""));
        (net, Some(port))
    } else {
        (s, None)
    };
    let net = parse_net("--allow", net, false)?;
    let port = port.map(|p| parse_port(s, p)).transpose()?;
    Ok(Allow { net, port })
}

fn parse_port(whole: &str, s: &str) -> Result<(u16, Proto), PolicyError> {
    let (port, proto) = s
        .split_once('/')
        .ok_or_else(|| PolicyError(format!("--allow {whole}: give the protocol too, e.g. {s}/udp or {s}/tcp")))?;
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return err(format!("--allow {whole}: protocol {proto:?} must be tcp or udp")),
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((p, proto)),
        _ => err(format!("--allow {whole}: port {port:?} must be a number from 1 to 65535")),
    }
}

/// An allow-list entry must be able to apply to some guarded source of its family.
fn check_allow_families(allow: &[Allow], subnets: &[IpNet], ifaces: &[String]) -> Result<(), PolicyError> {
    for a in allow {
        let family = family_of(&a.net);
        if ifaces.is_empty() && !subnets.iter().any(|n| family_of(n) == family) {
            let v = if family == Family::V4 { "IPv4" } else { "IPv6" };
            return err(format!("--allow {}: an {v} destination, but no {v} --subnet is guarded", a.net));
        }
    }
    Ok(())
}

/// `RATE/UNIT` with UNIT second, minute, hour or day (also sec, min, s, m, h, d).
pub fn parse_rate(s: &str) -> Result<Limit, PolicyError> {
    let bad = || {
        PolicyError(format!(
            "--log-rate {s:?}: expected RATE/UNIT such as 10/minute (unit second, minute, hour or day)"
        ))
    };
    let (rate, unit) = s.split_once('/').ok_or_else(bad)?;
    let unit = match unit {
        "second" | "sec" | "s" => 1,
        "minute" | "min" | "m" => 60,
        "hour" | "h" => 3600,
        "day" | "d" => 86400,
        _ => return Err(bad()),
    };
    match rate.parse::<u64>() {
        // The kernel's token bucket works in 1/10000 s; iptables caps the rate at 10000/second.
        Ok(r) if r > 0 && r <= 10_000 => Ok(Limit { rate: r, unit, burst: DEFAULT_LOG_RATE.burst }),
        _ => Err(bad()),
    }
}

fn parse_group(s: &str) -> Result<u16, PolicyError> {
    s.parse::<u16>().map_err(|_| PolicyError(format!("--nflog-group {s:?}: must be a number from 0 to 65535")))
}

/// A log prefix must fit `xt_log_info` (29 bytes) or NFLOG's 63, and be printable.
fn check_prefix(p: &str, nflog: bool) -> Result<String, PolicyError> {
    let max = if nflog { 63 } else { crate::nft::xt::Log::MAX_PREFIX };
    if p.is_empty() {
        return err("--log=\"\": the prefix is empty; give text, or plain --log for the default".into());
    }
    if p.len() > max {
        return err(format!("--log {p:?}: prefix longer than {max} bytes, the kernel's limit"));
    }
    if p.chars().any(|c| c.is_control()) {
        return err(format!("--log {p:?}: the prefix holds control characters"));
    }
    Ok(p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PolicySpec {
        PolicySpec::default()
    }

    #[test]
    fn default_spec_is_the_default_policy() {
        assert_eq!(spec().resolve(), Ok(Policy::default()));
    }

    #[test]
    fn bad_interface_names_are_refused() {
        for bad in ["", "+", "a+b", "sixteen-bytes-xx", "br 0", "eth0:1"] {
            assert!(check_iface(bad).is_err(), "{bad:?}");
        }
        for good in ["docker0", "br-+", "fifteen-bytes-x", "veth+"] {
            assert_eq!(check_iface(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn host_bits_name_the_network() {
        assert_eq!(
            parse_subnet("172.17.0.0/12"),
            Err(PolicyError("--subnet 172.17.0.0/12: host bits are set; the network is 172.16.0.0/12".into()))
        );
        assert_eq!(parse_subnet("fd00::/8").unwrap().to_string(), "fd00::/8");
    }

    #[test]
    fn subnet_alone_replaces_the_default_bridges() {
        let p = PolicySpec { subnets: Some(vec!["172.17.0.0/16".into()]), ..spec() }.resolve().unwrap();
        assert!(p.ifaces.is_empty());
        assert_eq!(p.subnets_of(Family::V4).len(), 1);
        assert!(p.subnets_of(Family::V6).is_empty());
    }

    #[test]
    fn allow_forms() {
        let a = parse_allow("10.0.0.53/32:53/udp").unwrap();
        assert_eq!((a.net.to_string(), a.port), ("10.0.0.53/32".into(), Some((53, Proto::Udp))));
        let a = parse_allow("[2001:db8::53]:53/tcp").unwrap();
        assert_eq!((a.net.to_string(), a.port), ("2001:db8::53/128".into(), Some((53, Proto::Tcp))));
        assert_eq!(parse_allow("2001:db8::/32").unwrap().port, None);
        assert_eq!(parse_allow("198.51.100.0/24").unwrap().port, None);
        for bad in ["10.0.0.53:53", "10.0.0.53:0/udp", "10.0.0.53:53/icmp", "[2001:db8::1:53/udp", "10.1.2.3/8"] {
            assert!(parse_allow(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10/minute"), Ok(Limit { rate: 10, unit: 60, burst: 5 }));
        assert_eq!(parse_rate("3/s").unwrap().unit, 1);
        for bad in ["10", "0/minute", "10/fortnight", "x/minute"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_override_the_file_key_by_key() {
        let file = PolicySpec { ifaces: Some(vec!["docker0".into()]), reject_with: Some("drop".into()), ..spec() };
        let flags = PolicySpec { reject_with: Some("tcp-reset".into()), ..spec() };
        let p = flags.over(file).resolve().unwrap();
        assert_eq!(p.ifaces, ["docker0"]);
        assert_eq!(p.reject, Reject::With(RejectWith::TcpReset));
    }

    #[test]
    fn logging_choices() {
        let p = PolicySpec { log: Some(None), ..spec() }.resolve().unwrap();
        assert_eq!(p.log.unwrap().sink, LogSink::Kernel { prefix: DEFAULT_LOG_PREFIX.into() });
        let p = PolicySpec { nflog_group: Some("5".into()), ..spec() }.resolve().unwrap();
        assert_eq!(p.log.unwrap().sink, LogSink::Nflog { group: 5, prefix: None });
        assert!(PolicySpec { log_rate: Some("5/second".into()), ..spec() }.resolve().is_err());
    }
}
