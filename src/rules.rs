//! Policy → the guard's rules, in no backend's terms (pure: no I/O). The policy's meaning and
//! order are written here once: per source selector, multicast passes (subnet-only selectors),
//! then the allowed destinations, then the rate-limited log, then the refusal, the last two
//! only for packets that belong to no connection someone else opened. Each backend renders the
//! sections its own way (iptables-nft rules in DOCKER-USER, native rules and sets in our table).

use ipnet::IpNet;

use crate::audit::tag;
use crate::net::Family;
use crate::policy::{Iface, LogSink, Logging, Policy, Refusal};

/// The comment that marks everything of ours.
pub const COMMENT: &str = "egress-guard";

/// The rules for one source selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// In from this bridge and, forwarded, out by another interface (so same-bridge frames,
    /// which cross FORWARD with br_netfilter, pass). `None`: any interface.
    pub iface: Option<Iface>,
    pub scope: Scope,
    pub steps: Vec<Step>,
}

/// Which sources of which families a section guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Both families, every source (a bridge pattern and no subnets).
    Any,
    /// One family, every source: a bridge pattern when subnets were given for the other
    /// family only.
    Family(Family),
    /// One family's subnets: from a subnet to outside it (iptables' `-s S ! -d S`).
    Subnets(Family, Vec<IpNet>),
}

impl Scope {
    pub fn covers(&self, family: Family) -> bool {
        match self {
            Scope::Any => true,
            Scope::Family(f) | Scope::Subnets(f, _) => *f == family,
        }
    }
}

/// One step of a section, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Multicast passes: without a bridge match nothing tells same-bridge frames (in FORWARD
    /// with br_netfilter) from routed ones, multicast such as IPv6 neighbour discovery is never
    /// routed out, and blocking it breaks IPv6 between containers.
    PassMulticast,
    /// Packets our table marked (an allow-list lets them out: `--allow`, a container's or a
    /// network's labels) pass. The lists themselves live in sets, whatever their length, so
    /// this is one rule per selector.
    Marked { bit: u32 },
    /// New connections are logged, rate-limited. An NFLOG prefix says what the refusal that
    /// follows does (`audit::tag`), so `egress-guard log` can tell.
    Log(Logging),
    /// New connections are refused; only TCP ones when `tcp_only` (a reset answers only TCP).
    Refuse { answer: Refusal, tcp_only: bool },
}

/// The policy's sections, in order.
pub fn sections(policy: &Policy) -> Vec<Section> {
    let ifaces: Vec<Option<Iface>> = match policy.ifaces.is_empty() {
        true => vec![None],
        false => policy.ifaces.iter().cloned().map(Some).collect(),
    };
    let mut out = Vec::new();
    for iface in ifaces {
        for scope in scopes(policy, iface.is_some()) {
            let steps = steps(policy, iface.is_none() && matches!(scope, Scope::Subnets(..)));
            out.push(Section { iface: iface.clone(), scope, steps });
        }
    }
    out
}

fn scopes(policy: &Policy, has_iface: bool) -> Vec<Scope> {
    if policy.subnets.is_empty() {
        return vec![Scope::Any];
    }
    Family::ALL
        .into_iter()
        .filter_map(|f| match (policy.subnets_of(f), has_iface) {
            (nets, _) if !nets.is_empty() => Some(Scope::Subnets(f, nets)),
            (_, true) => Some(Scope::Family(f)),
            (_, false) => None,
        })
        .collect()
}

fn steps(policy: &Policy, multicast: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    if multicast {
        steps.push(Step::PassMulticast);
    }
    if policy.marks() {
        steps.push(Step::Marked { bit: policy.mark_bit });
    }
    if let Some(log) = &policy.log {
        let sink = match &log.sink {
            LogSink::Nflog { group, prefix } => {
                let user = prefix.as_deref().unwrap_or(crate::policy::DEFAULT_LOG_PREFIX);
                LogSink::Nflog { group: *group, prefix: Some(tag::compose(user, policy.refusal)) }
            }
            kernel @ LogSink::Kernel { .. } => kernel.clone(),
        };
        steps.push(Step::Log(Logging { sink, rate: log.rate }));
    }
    match policy.refusal {
        Refusal::TcpReset => {
            steps.push(Step::Refuse { answer: Refusal::TcpReset, tcp_only: true });
            steps.push(Step::Refuse { answer: Refusal::PortUnreachable, tcp_only: false });
        }
        answer => steps.push(Step::Refuse { answer, tcp_only: false }),
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{parse_iface, PolicySpec, Sourced};

    fn with_subnets(ifaces: &[&str], subnets: &[&str]) -> Policy {
        PolicySpec {
            ifaces: (!ifaces.is_empty())
                .then(|| ifaces.iter().map(|i| Sourced::flag("--iface", parse_iface(i).unwrap())).collect()),
            subnets: Some(subnets.iter().map(|s| Sourced::flag("--subnet", s.parse().unwrap())).collect()),
            ..Default::default()
        }
        .resolve()
        .unwrap()
    }

    #[test]
    fn default_policy_is_two_bridges_refusing_new_connections() {
        let s = sections(&Policy::default());
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].iface.as_ref().map(Iface::as_str), Some("docker0"));
        assert_eq!(s[1].scope, Scope::Any);
        assert_eq!(s[1].steps, [Step::Refuse { answer: Refusal::PortUnreachable, tcp_only: false }]);
    }

    #[test]
    fn subnet_only_sections_pass_multicast_first_and_cover_their_family() {
        let p = with_subnets(&[], &["172.17.0.0/16"]);
        let s = sections(&p);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].scope, Scope::Subnets(Family::V4, vec!["172.17.0.0/16".parse().unwrap()]));
        assert_eq!(s[0].steps[0], Step::PassMulticast);
        assert!(!s[0].scope.covers(Family::V6));
    }

    #[test]
    fn a_bridge_with_subnets_of_one_family_guards_the_other_family_whole() {
        let p = with_subnets(&["docker0"], &["172.17.0.0/16"]);
        let scopes: Vec<Scope> = sections(&p).into_iter().map(|s| s.scope).collect();
        assert_eq!(
            scopes,
            [Scope::Subnets(Family::V4, vec!["172.17.0.0/16".parse().unwrap()]), Scope::Family(Family::V6)]
        );
    }

    #[test]
    fn an_nflog_prefix_says_what_the_refusal_does() {
        let p = crate::policy::testing::spec().log(Some("blocked")).refusal(Refusal::Drop).policy();
        let log = sections(&p)[0].steps.iter().find_map(|s| match s {
            Step::Log(l) => Some(l.sink.clone()),
            _ => None,
        });
        assert_eq!(log, Some(LogSink::Nflog { group: 4711, prefix: Some("blocked drop".into()) }));
    }

    #[test]
    fn tcp_reset_refuses_tcp_by_reset_and_the_rest_by_icmp() {
        let p = Policy { refusal: Refusal::TcpReset, ..Policy::default() };
        let steps = &sections(&p)[0].steps;
        assert_eq!(
            steps,
            &[
                Step::Refuse { answer: Refusal::TcpReset, tcp_only: true },
                Step::Refuse { answer: Refusal::PortUnreachable, tcp_only: false }
            ]
        );
    }
}
