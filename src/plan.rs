//! Policy → the iptables rules each family needs. Pure: no sockets, files, clock or environment.
//!
//! For every source selector (a bridge pattern, a subnet, or both), in this order:
//! allowed destinations (RETURN), the rate-limited log, then the reject. Every rule but the
//! allow-list tests conntrack state, so replies to connections others opened (published ports)
//! are never logged or refused.

use ipnet::IpNet;

use crate::ipt::{Action, AddrMatch, Family, IfaceMatch, IptRule, Proto, RejectWith};
use crate::nft::xt::Conntrack;
use crate::policy::{Allow, LogSink, Policy, Reject};

/// Every rule we write carries this comment; it is how we tell ours from everyone else's.
pub const COMMENT: &str = "egress-guard";

/// Which packets count as "from the containers": matches shared by all rules of one selector.
#[derive(Debug, Clone)]
struct Selector {
    iface: Option<String>,
    subnet: Option<ipnet::IpNet>,
}

impl Selector {
    /// In from the bridge and out by another interface (`! -o` keeps same-bridge traffic, seen
    /// in FORWARD with br_netfilter, alone); from the subnet to outside it.
    fn rule(&self, action: Action) -> IptRule {
        IptRule {
            in_iface: self.iface.as_ref().map(|i| IfaceMatch { name: i.clone(), negate: false }),
            out_iface: self.iface.as_ref().map(|i| IfaceMatch { name: i.clone(), negate: true }),
            src: self.subnet.map(|net| AddrMatch { net, negate: false }),
            dst: self.subnet.map(|net| AddrMatch { net, negate: true }),
            comment: Some(COMMENT.into()),
            ..IptRule::new(action)
        }
    }
}

fn not_related_established() -> Option<Conntrack> {
    Some(Conntrack { states: Conntrack::RELATED | Conntrack::ESTABLISHED, invert: true })
}

/// The sources of one family: every bridge pattern × every subnet of the family. With only
/// bridges or only subnets, the other side is "any".
fn selectors(policy: &Policy, family: Family) -> Vec<Selector> {
    let subnets = policy.subnets_of(family);
    match (policy.ifaces.is_empty(), subnets.is_empty()) {
        (false, true) => policy.ifaces.iter().map(|i| Selector { iface: Some(i.clone()), subnet: None }).collect(),
        (true, false) => subnets.iter().map(|n| Selector { iface: None, subnet: Some(*n) }).collect(),
        (false, false) => policy
            .ifaces
            .iter()
            .flat_map(|i| subnets.iter().map(move |n| Selector { iface: Some(i.clone()), subnet: Some(*n) }))
            .collect(),
        // Only subnets of the other family: this family is not guarded.
        (true, true) => Vec::new(),
    }
}

/// The DOCKER-USER rules for one family, in chain order.
pub fn docker_user_rules(policy: &Policy, family: Family) -> Vec<IptRule> {
    let allow = policy.allow_of(family);
    selectors(policy, family).iter().flat_map(|sel| selector_rules(policy, sel, &allow)).collect()
}

fn selector_rules(policy: &Policy, sel: &Selector, allow: &[Allow]) -> Vec<IptRule> {
    let mut rules: Vec<IptRule> = Vec::new();
    if let (None, Some(subnet)) = (&sel.iface, sel.subnet) {
        // Without a bridge match nothing tells same-bridge frames (in FORWARD with br_netfilter)
        // from routed ones; multicast such as IPv6 neighbour discovery (ff02::1:ff…) is
        // never routed out, and blocking it breaks IPv6 between containers. Let it pass.
        let multicast = match subnet {
            IpNet::V4(_) => "224.0.0.0/4",
            IpNet::V6(_) => "ff00::/8",
        };
        let net = multicast.parse().expect("a valid multicast prefix");
        rules.push(IptRule { dst: Some(AddrMatch { net, negate: false }), ..sel.rule(Action::Return) });
    }
    rules.extend(allow.iter().map(|a| allow_rule(sel, a)));
    if let Some(log) = &policy.log {
        let action = match &log.sink {
            LogSink::Kernel { prefix } => Action::Log { prefix: prefix.clone() },
            LogSink::Nflog { group, prefix } => Action::Nflog { group: *group, prefix: prefix.clone() },
        };
        rules.push(IptRule { ctstate: not_related_established(), limit: Some(log.rate), ..sel.rule(action) });
    }
    let reject = |action| IptRule { ctstate: not_related_established(), ..sel.rule(action) };
    match policy.reject {
        Reject::Drop => rules.push(reject(Action::Drop)),
        Reject::With(RejectWith::TcpReset) => {
            // REJECT --reject-with tcp-reset only works on TCP; the rest is refused by ICMP.
            rules.push(IptRule { proto: Some(Proto::Tcp), ..reject(Action::Reject(RejectWith::TcpReset)) });
            rules.push(reject(Action::Reject(RejectWith::PortUnreachable)));
        }
        Reject::With(with) => rules.push(reject(Action::Reject(with))),
    }
    rules
}

fn allow_rule(sel: &Selector, a: &Allow) -> IptRule {
    let mut rule = sel.rule(Action::Return);
    rule.dst = Some(AddrMatch { net: a.net, negate: false });
    if let Some((port, proto)) = a.port {
        rule.proto = Some(proto);
        rule.dport = Some(port);
    }
    rule
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySpec;

    fn lines(policy: &Policy, family: Family) -> Vec<String> {
        docker_user_rules(policy, family).iter().map(|r| r.to_iptables(family, "DOCKER-USER")).collect()
    }

    fn spec() -> PolicySpec {
        PolicySpec::default()
    }

    #[test]
    fn default_plan_is_the_design_rules() {
        assert_eq!(
            lines(&Policy::default(), Family::V4),
            [
                "-A DOCKER-USER -i docker0 ! -o docker0 -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment egress-guard -j REJECT --reject-with icmp-port-unreachable",
                "-A DOCKER-USER -i br-+ ! -o br-+ -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment egress-guard -j REJECT --reject-with icmp-port-unreachable",
            ]
        );
    }

    #[test]
    fn allow_log_and_tcp_reset_in_order() {
        let p = PolicySpec {
            ifaces: Some(vec!["docker0".into()]),
            allow: Some(vec!["198.51.100.53:53/udp".into(), "[2001:db8::53]:53/udp".into()]),
            reject_with: Some("tcp-reset".into()),
            log: Some(Some("egress: ".into())),
            ..spec()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            lines(&p, Family::V4),
            [
                "-A DOCKER-USER -d 198.51.100.53/32 -i docker0 ! -o docker0 -p udp -m udp --dport 53 -m comment --comment egress-guard -j RETURN",
                "-A DOCKER-USER -i docker0 ! -o docker0 -m conntrack ! --ctstate RELATED,ESTABLISHED -m limit --limit 10/min -m comment --comment egress-guard -j LOG --log-prefix \"egress: \"",
                "-A DOCKER-USER -i docker0 ! -o docker0 -p tcp -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment egress-guard -j REJECT --reject-with tcp-reset",
                "-A DOCKER-USER -i docker0 ! -o docker0 -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment egress-guard -j REJECT --reject-with icmp-port-unreachable",
            ]
        );
        assert_eq!(lines(&p, Family::V6)[0], "-A DOCKER-USER -d 2001:db8::53/128 -i docker0 ! -o docker0 -p udp -m udp --dport 53 -m comment --comment egress-guard -j RETURN");
    }

    #[test]
    fn subnets_match_source_and_spare_their_own_network() {
        let p = PolicySpec { subnets: Some(vec!["172.17.0.0/16".into()]), reject_with: Some("drop".into()), ..spec() }
            .resolve()
            .unwrap();
        assert_eq!(
            lines(&p, Family::V4),
            [
                "-A DOCKER-USER -s 172.17.0.0/16 -d 224.0.0.0/4 -m comment --comment egress-guard -j RETURN",
                "-A DOCKER-USER -s 172.17.0.0/16 ! -d 172.17.0.0/16 -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment egress-guard -j DROP"
            ]
        );
        assert!(lines(&p, Family::V6).is_empty(), "no IPv6 subnet: IPv6 not guarded");
    }

    #[test]
    fn bridges_times_subnets() {
        let p = PolicySpec {
            ifaces: Some(vec!["docker0".into(), "br-+".into()]),
            subnets: Some(vec!["172.17.0.0/16".into(), "fd00::/8".into()]),
            ..spec()
        }
        .resolve()
        .unwrap();
        assert_eq!(docker_user_rules(&p, Family::V4).len(), 2);
        assert!(lines(&p, Family::V6)[1].starts_with("-A DOCKER-USER -s fd00::/8 ! -d fd00::/8 -i br-+ ! -o br-+"));
    }
}
