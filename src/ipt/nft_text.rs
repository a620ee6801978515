//! An `IptRule` in nft syntax, for people: `--dry-run` and docs show what a rule means in the
//! language of `nft list ruleset`. Conntrack negation is printed as the mask test it is
//! (`ct state & (established | related) == 0`), never as `ct state != established,related`,
//! which in nft means "not equal to both bits at once" and also matches replies.

use std::fmt::Write;

use super::{Action, AddrMatch, Family, IfaceMatch, IptRule, RejectWith};
use crate::nft::xt::Conntrack;

impl IptRule {
    /// `add rule FAMILY TABLE CHAIN …`
    pub fn to_nft(&self, family: Family, table: &str, chain: &str) -> String {
        let mut s = format!("add rule {} {table} {chain}", family.nft_name());
        for (key, m) in [("iifname", &self.in_iface), ("oifname", &self.out_iface)] {
            if let Some(m) = m {
                let _ = write!(s, " {key} {}{}", op(m.negate), iface(m));
            }
        }
        let ip = family.nft_name();
        for (key, m) in [("saddr", &self.src), ("daddr", &self.dst)] {
            if let Some(AddrMatch { net, negate }) = m {
                let _ = write!(s, " {ip} {key} {}{net}", op(*negate));
            }
        }
        match (self.proto, self.dport) {
            (Some(p), Some(port)) => {
                let _ = write!(s, " {} dport {port}", p.name());
            }
            (Some(p), None) => {
                let _ = write!(s, " meta l4proto {}", p.name());
            }
            _ => {}
        }
        if let Some(ct) = &self.ctstate {
            s.push_str(&ct_state(ct));
        }
        if let Some(l) = &self.limit {
            let unit = match l.unit {
                1 => "second",
                60 => "minute",
                3600 => "hour",
                _ => "day",
            };
            let _ = write!(s, " limit rate {}/{unit} burst {} packets", l.rate, l.burst);
        }
        s.push_str(" counter ");
        s.push_str(&action(&self.action, family));
        if let Some(c) = &self.comment {
            let _ = write!(s, " comment {c:?}");
        }
        s
    }
}

fn op(negate: bool) -> &'static str {
    if negate {
        "!= "
    } else {
        ""
    }
}

fn iface(m: &IfaceMatch) -> String {
    match m.name.strip_suffix('+') {
        Some(prefix) => format!("\"{prefix}*\""),
        None => format!("\"{}\"", m.name),
    }
}

fn ct_state(ct: &Conntrack) -> String {
    let names: Vec<String> = Conntrack::state_names(ct.states).split(',').map(|n| n.to_lowercase()).collect();
    if ct.invert {
        format!(" ct state & ({}) == 0", names.join(" | "))
    } else {
        format!(" ct state {}", names.join(","))
    }
}

fn action(a: &Action, family: Family) -> String {
    let icmp = match family {
        Family::V4 => "icmp",
        Family::V6 => "icmpv6",
    };
    match a {
        Action::Accept => "accept".into(),
        Action::Drop => "drop".into(),
        Action::Return => "return".into(),
        Action::Jump(c) => format!("jump {c}"),
        Action::Reject(RejectWith::PortUnreachable) => format!("reject with {icmp} type port-unreachable"),
        Action::Reject(RejectWith::AdminProhibited) => format!("reject with {icmp} type admin-prohibited"),
        Action::Reject(RejectWith::TcpReset) => "reject with tcp reset".into(),
        Action::Log { prefix } => format!("log prefix {prefix:?} level warn"),
        Action::Nflog { group, prefix: Some(p) } => format!("log prefix {p:?} group {group}"),
        Action::Nflog { group, prefix: None } => format!("log group {group}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::docker_user_rules;
    use crate::policy::Policy;

    #[test]
    fn default_rule_reads_as_the_mask_test() {
        let rule = &docker_user_rules(&Policy::default(), Family::V4)[1];
        assert_eq!(
            rule.to_nft(Family::V4, "filter", "DOCKER-USER"),
            "add rule ip filter DOCKER-USER iifname \"br-*\" oifname != \"br-*\" \
             ct state & (related | established) == 0 counter reject with icmp type port-unreachable comment \"egress-guard\""
        );
    }
}
