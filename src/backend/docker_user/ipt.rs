//! An iptables rule as iptables itself understands it (`-i`, `-s`, `-m conntrack`, `-j REJECT`…),
//! printed the way `iptables -S` prints it. `codec` turns it into the nf_tables expressions
//! iptables-nft would write, and back.

use ipnet::IpNet;
use std::fmt::Write;

pub use crate::net::{Family, Limit, Proto};
use crate::nft::xt::Conntrack;

/// `-i NAME` / `! -o NAME`; a trailing `+` is iptables' prefix wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceMatch {
    pub name: String,
    pub negate: bool,
}

/// `-s CIDR` / `! -d CIDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrMatch {
    pub net: IpNet,
    pub negate: bool,
}

/// The `-j REJECT --reject-with` answers we write, named for what the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectWith {
    PortUnreachable,
    AdminProhibited,
    TcpReset,
}

impl RejectWith {
    /// The `with` value of `ipt_reject_info` / `ip6t_reject_info`.
    pub fn code(self, family: Family) -> u32 {
        match (self, family) {
            (RejectWith::PortUnreachable, Family::V4) => 3,
            (RejectWith::AdminProhibited, Family::V4) => 8,
            (RejectWith::TcpReset, Family::V4) => 7,
            (RejectWith::PortUnreachable, Family::V6) => 4,
            (RejectWith::AdminProhibited, Family::V6) => 1,
            (RejectWith::TcpReset, Family::V6) => 6,
        }
    }

    pub fn from_code(code: u32, family: Family) -> Option<RejectWith> {
        [RejectWith::PortUnreachable, RejectWith::AdminProhibited, RejectWith::TcpReset]
            .into_iter()
            .find(|r| r.code(family) == code)
    }

    /// As `iptables -S` prints it.
    pub fn iptables_name(self, family: Family) -> &'static str {
        match (self, family) {
            (RejectWith::PortUnreachable, Family::V4) => "icmp-port-unreachable",
            (RejectWith::AdminProhibited, Family::V4) => "icmp-admin-prohibited",
            (RejectWith::PortUnreachable, Family::V6) => "icmp6-port-unreachable",
            (RejectWith::AdminProhibited, Family::V6) => "icmp6-adm-prohibited",
            (RejectWith::TcpReset, _) => "tcp-reset",
        }
    }
}

/// What a rule does when it matches (`-j …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
    Return,
    Jump(String),
    Reject(RejectWith),
    /// `-j LOG --log-prefix P` (level 4, the default).
    Log {
        prefix: String,
    },
    /// `-j NFLOG --nflog-group G [--nflog-prefix P]`.
    Nflog {
        group: u16,
        prefix: Option<String>,
    },
}

/// One iptables rule. Field order is the order iptables-nft 1.8.9 encodes and prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IptRule {
    pub in_iface: Option<IfaceMatch>,
    pub out_iface: Option<IfaceMatch>,
    pub proto: Option<Proto>,
    pub src: Option<AddrMatch>,
    pub dst: Option<AddrMatch>,
    /// `-m tcp/udp --dport PORT`; needs `proto`.
    pub dport: Option<u16>,
    /// `-m mark --mark BIT/BIT`: the packet carries this mark bit.
    pub mark: Option<u32>,
    pub ctstate: Option<Conntrack>,
    pub limit: Option<Limit>,
    pub comment: Option<String>,
    pub action: Action,
}

impl IptRule {
    /// A rule that matches everything and does `action`; fill in the matches.
    pub fn new(action: Action) -> Self {
        IptRule {
            in_iface: None,
            out_iface: None,
            proto: None,
            src: None,
            dst: None,
            dport: None,
            mark: None,
            ctstate: None,
            limit: None,
            comment: None,
            action,
        }
    }

    /// `-A CHAIN …` exactly as `iptables -S CHAIN` prints this rule.
    pub fn to_iptables(&self, family: Family, chain: &str) -> String {
        let mut s = format!("-A {chain}");
        let neg = |n: bool| if n { "! " } else { "" };
        if let Some(a) = &self.src {
            let _ = write!(s, " {}-s {}", neg(a.negate), a.net);
        }
        if let Some(a) = &self.dst {
            let _ = write!(s, " {}-d {}", neg(a.negate), a.net);
        }
        if let Some(i) = &self.in_iface {
            let _ = write!(s, " {}-i {}", neg(i.negate), i.name);
        }
        if let Some(o) = &self.out_iface {
            let _ = write!(s, " {}-o {}", neg(o.negate), o.name);
        }
        if let Some(p) = self.proto {
            let _ = write!(s, " -p {}", p.name());
            if let Some(port) = self.dport {
                let _ = write!(s, " -m {} --dport {port}", p.name());
            }
        }
        if let Some(bit) = self.mark {
            // libxt_mark prints `mark/mask` unless the mask is all ones.
            let _ = write!(s, " -m mark --mark {bit:#x}/{bit:#x}");
        }
        if let Some(ct) = &self.ctstate {
            let _ = write!(s, " -m conntrack {}--ctstate {}", neg(ct.invert), Conntrack::state_names(ct.states));
        }
        if let Some(l) = &self.limit {
            let _ = write!(s, " -m limit --limit {}/{}", l.rate, unit_name(l.unit));
            // iptables leaves out the burst when it is libxt_limit's default.
            if l.burst != Limit::DEFAULT_BURST {
                let _ = write!(s, " --limit-burst {}", l.burst);
            }
        }
        if let Some(c) = &self.comment {
            let _ = write!(s, " -m comment --comment {}", quote(c));
        }
        s.push_str(&action_words(&self.action, family));
        s
    }
}

fn action_words(action: &Action, family: Family) -> String {
    match action {
        Action::Accept => " -j ACCEPT".into(),
        Action::Drop => " -j DROP".into(),
        Action::Return => " -j RETURN".into(),
        Action::Jump(chain) => format!(" -j {chain}"),
        Action::Reject(with) => format!(" -j REJECT --reject-with {}", with.iptables_name(family)),
        Action::Log { prefix } => format!(" -j LOG --log-prefix {}", quote(prefix)),
        Action::Nflog { group, prefix } => {
            let mut s = " -j NFLOG".to_string();
            if let Some(p) = prefix {
                let _ = write!(s, " --nflog-prefix {}", quote(p));
            }
            if *group != 0 {
                let _ = write!(s, " --nflog-group {group}");
            }
            s
        }
    }
}

fn unit_name(unit: u64) -> &'static str {
    match unit {
        1 => "sec",
        60 => "min",
        3600 => "hour",
        _ => "day",
    }
}

/// iptables' `xtables_save_string`: bare when only `[A-Za-z0-9_-]`, else double-quoted with
/// `"`, `\` and `'` escaped.
pub fn quote(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !value.is_empty() && value.chars().all(plain) {
        return value.to_string();
    }
    let mut s = String::from("\"");
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_follows_xtables_save_string() {
        assert_eq!(quote("egress-guard"), "egress-guard");
        assert_eq!(quote("egress: "), "\"egress: \"");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        assert_eq!(quote(""), "\"\"");
    }
}
