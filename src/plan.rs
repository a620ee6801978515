//! Policy → the iptables rules each family needs. Pure: no sockets, files, clock or environment.

use crate::ipt::{Action, Family, IfaceMatch, IptRule};
use crate::nft::xt::Conntrack;
use crate::policy::Policy;

/// Every rule we write carries this comment; it is how we tell ours from everyone else's.
pub const COMMENT: &str = "egress-guard";

/// The DOCKER-USER rules for one family, in chain order: per bridge pattern, "in from the
/// bridge, out by another interface, not part of a connection someone else opened → reject".
/// `! -o` keeps same-bridge traffic (seen in FORWARD with br_netfilter) alone, and the
/// conntrack test lets replies of inbound connections (published ports) through.
pub fn docker_user_rules(policy: &Policy, _family: Family) -> Vec<IptRule> {
    policy
        .ifaces
        .iter()
        .map(|iface| IptRule {
            in_iface: Some(IfaceMatch { name: iface.clone(), negate: false }),
            out_iface: Some(IfaceMatch { name: iface.clone(), negate: true }),
            ctstate: Some(Conntrack { states: Conntrack::RELATED | Conntrack::ESTABLISHED, invert: true }),
            comment: Some(COMMENT.into()),
            ..IptRule::new(Action::Reject(policy.reject))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plan_is_the_design_rules() {
        let lines: Vec<String> = docker_user_rules(&Policy::default(), Family::V4)
            .iter()
            .map(|r| r.to_iptables(Family::V4, "DOCKER-USER"))
            .collect();
        assert_eq!(
            lines,
            [
                "-A DOCKER-USER -i docker0 ! -o docker0 -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment egress-guard -j REJECT --reject-with icmp-port-unreachable",
                "-A DOCKER-USER -i br-+ ! -o br-+ -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment egress-guard -j REJECT --reject-with icmp-port-unreachable",
            ]
        );
    }
}
