//! Whether packets from the guarded bridges reach our DOCKER-USER rules first (pure). FORWARD
//! must jump to DOCKER-USER, and no rule before that jump — nor, inside DOCKER-USER, before our
//! rules — may let a container's new connection through. A rule is judged by the parts that can
//! rule egress out (interfaces, conntrack state) and by what it does; anything we cannot read is
//! taken as able to let traffic through, so doubt fails `check` rather than passing it.

use std::collections::HashMap;

use super::codec;
use super::CHAIN;
use crate::net::Family;
use crate::nft::expr::Expr;
use crate::nft::rule::NftRule;
use crate::nft::sys::*;
use crate::nft::text;
use crate::nft::xt::{self, Conntrack};
use crate::policy::Iface;

/// How deep we follow jumps into other chains before assuming the worst.
const MAX_DEPTH: usize = 4;

/// An interface match as a rule compares it: an exact name, or a name prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Name {
    text: Vec<u8>,
    prefix: bool,
}

impl Name {
    fn of(iface: &Iface) -> Name {
        let (stem, prefix) = iface.stem();
        Name { text: stem.as_bytes().to_vec(), prefix }
    }

    /// As a `cmp` holds it: with a NUL (or NUL padding) for an exact name, without for a prefix.
    fn from_cmp(data: &[u8]) -> Name {
        match data.iter().position(|b| *b == 0) {
            Some(end) => Name { text: data[..end].to_vec(), prefix: false },
            None => Name { text: data.to_vec(), prefix: true },
        }
    }

    /// Whether some name matches both.
    fn meets(&self, other: &Name) -> bool {
        match (self.prefix, other.prefix) {
            (false, false) => self.text == other.text,
            (true, false) => other.text.starts_with(&self.text),
            (false, true) => self.text.starts_with(&other.text),
            (true, true) => self.text.starts_with(&other.text) || other.text.starts_with(&self.text),
        }
    }

    /// Whether every name matching `self` matches `other`.
    fn within(&self, other: &Name) -> bool {
        match (self.prefix, other.prefix) {
            (_, true) => self.text.starts_with(&other.text),
            (false, false) => self.text == other.text,
            (true, false) => false,
        }
    }
}

/// What a rule does to a packet it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Exit {
    /// Accepted (or a target we do not know: assume it lets the packet through).
    Pass,
    /// Dropped or rejected.
    Block,
    /// Back to the calling chain (in a base chain: the policy).
    Return,
    /// On to the next rule (no verdict, or LOG, NFLOG, MARK…).
    Continue,
    Jump(String),
    Goto(String),
}

/// The conditions of a rule that can rule egress out.
#[derive(Debug, Default)]
struct Conditions {
    iif: Vec<(bool, Name)>,
    oif: Vec<(bool, Name)>,
    /// False when the rule only matches established or related packets.
    new_ok: bool,
    /// Only a counter and the verdict: matches every packet.
    unconditional: bool,
}

/// The first 32-bit register a register number names (NFT_REG_1…4 are 16 bytes each, the
/// same space as NFT_REG32_00…15), and how many 32-bit words a load of `len` bytes fills.
fn words(reg: u32, len: u32) -> std::ops::Range<u32> {
    // Numbers from the kernel (a rule someone made by hand): saturate, never overflow.
    let start = if (1..=4).contains(&reg) { NFT_REG32_00 + (reg - 1) * 4 } else { reg };
    start..start.saturating_add(len.div_ceil(4).max(1))
}

/// A rule's conditions that can rule egress out, read up to its first verdict (the kernel stops
/// there). Which register each `cmp` reads is followed: an interface name compared is the one a
/// `meta iifname`/`oifname` loaded into that register; any other comparison we cannot read.
fn conditions(rule: &NftRule) -> Conditions {
    let mut c = Conditions { new_ok: true, unconditional: true, ..Conditions::default() };
    // 32-bit register where a load starts → what it loaded (`None`: something we do not read).
    let mut regs: HashMap<u32, Option<u32>> = HashMap::new();
    let store = |regs: &mut HashMap<u32, Option<u32>>, reg: u32, len: u32, what: Option<u32>| {
        let filled = words(reg, len);
        regs.retain(|start, _| !filled.contains(start));
        regs.insert(filled.start, what);
    };
    for e in &rule.exprs {
        match e {
            Expr::Counter { .. } => {}
            Expr::Verdict { .. } | Expr::Reject { .. } => break,
            Expr::Target { name, .. } if !continues(name) => break,
            Expr::Target { .. } => {}
            Expr::Match { name, .. } if name == xt::Comment::NAME => {}
            Expr::Match { name, info, .. } if name == Conntrack::NAME => {
                c.unconditional = false;
                if let Some(ct) = Conntrack::decode(info) {
                    // A container's new connection is NEW (or INVALID, UNTRACKED).
                    let egress = Conntrack::NEW | Conntrack::INVALID | Conntrack::UNTRACKED;
                    c.new_ok = if ct.invert { ct.states & egress != egress } else { ct.states & egress != 0 };
                }
            }
            Expr::Meta { key, dreg } => {
                let len = if *key == NFT_META_IIFNAME || *key == NFT_META_OIFNAME { 16 } else { 4 };
                store(&mut regs, *dreg, len, Some(*key));
                c.unconditional = false;
            }
            Expr::Payload { dreg, len, .. } => {
                store(&mut regs, *dreg, *len, None);
                c.unconditional = false;
            }
            Expr::Ct { dreg, .. } => {
                store(&mut regs, *dreg, 16, None);
                c.unconditional = false;
            }
            Expr::Bitwise { dreg, len, .. } => {
                store(&mut regs, *dreg, *len, None);
                c.unconditional = false;
            }
            Expr::Cmp { sreg, op, data } => {
                c.unconditional = false;
                let negate = *op == NFT_CMP_NEQ;
                let loaded = regs.get(&words(*sreg, 4).start).copied().flatten();
                match (loaded, *op == NFT_CMP_EQ || negate) {
                    (Some(NFT_META_IIFNAME), true) => c.iif.push((negate, Name::from_cmp(data))),
                    (Some(NFT_META_OIFNAME), true) => c.oif.push((negate, Name::from_cmp(data))),
                    _ => {}
                }
            }
            // Anything else (a lookup, a limit, an expression we do not know) may match.
            _ => {
                regs.clear();
                c.unconditional = false;
            }
        }
    }
    c
}

/// xt targets that let the rule's verdict fall through to the next rule.
fn continues(target: &str) -> bool {
    matches!(target, "LOG" | "NFLOG" | "MARK" | "CONNMARK" | "TCPMSS" | "CLASSIFY" | "AUDIT" | "TRACE")
}

/// Whether the rule may match a new connection from a bridge matching `pattern` that leaves by
/// an interface not matching it (`None`: a subnet-only policy, any interface).
fn may_match(c: &Conditions, pattern: Option<&Name>) -> bool {
    if !c.new_ok {
        return false;
    }
    let Some(p) = pattern else { return true };
    let iif_ok = c.iif.iter().all(|(negate, x)| if *negate { !p.within(x) } else { p.meets(x) });
    // The output interface is any name outside the pattern: `-o Y` rules it out only when
    // every name Y matches is inside the pattern (e.g. `-i docker0 -o docker0`).
    let oif_ok = c.oif.iter().all(|(negate, y)| *negate || !y.within(p));
    iif_ok && oif_ok
}

/// What a rule does with a packet it matches: its first verdict decides (the kernel stops
/// there), a target we do not know lets the packet through.
fn exit(rule: &NftRule) -> Exit {
    for e in &rule.exprs {
        match e {
            Expr::Verdict { code: NF_ACCEPT, .. } => return Exit::Pass,
            Expr::Verdict { code: NF_DROP, .. } => return Exit::Block,
            Expr::Verdict { code: NFT_RETURN, .. } => return Exit::Return,
            Expr::Verdict { code: NFT_JUMP, chain: Some(c) } => return Exit::Jump(c.clone()),
            Expr::Verdict { code: NFT_GOTO, chain: Some(c) } => return Exit::Goto(c.clone()),
            Expr::Verdict { .. } => return Exit::Pass,
            Expr::Reject { .. } => return Exit::Block,
            Expr::Target { name, .. } if name == "REJECT" || name == "DROP" => return Exit::Block,
            Expr::Target { name, .. } if !continues(name) => return Exit::Pass,
            _ => {}
        }
    }
    Exit::Continue
}

/// Whether packets can reach a chain's end (then a `goto` to it returns past its caller): no
/// rule that matches everything accepts or blocks them first.
fn falls_through(rules: &[NftRule]) -> bool {
    !rules.iter().any(|r| conditions(r).unconditional && matches!(exit(r), Exit::Pass | Exit::Block))
}

/// What stands between the guarded bridges and our rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// FORWARD jumps to DOCKER-USER for every packet.
    pub jumps: bool,
    /// Rules that let guarded traffic out first, as an admin reads them.
    pub bypass: Vec<String>,
    /// Rules that return guarded traffic to FORWARD's policy before the jump: a bypass when
    /// that policy is accept (the caller knows).
    pub returns: Vec<String>,
}

/// Chains read from the kernel, by name, for following jumps.
pub type Chains = HashMap<String, Vec<NftRule>>;

/// Judges FORWARD: the rules before its first unconditional jump to DOCKER-USER, following
/// jumps into other chains.
pub fn forward(family: Family, forward: &[NftRule], chains: &Chains, ifaces: &[Iface]) -> Reach {
    let patterns = patterns(ifaces);
    let before = before_jump(forward);
    let mut reach = Reach { jumps: before.len() < forward.len(), ..Reach::default() };
    for rule in before {
        let c = conditions(rule);
        if exit(rule) == Exit::Return && patterns.iter().any(|p| may_match(&c, p.as_ref())) {
            reach.returns.push(show(family, rule));
            continue;
        }
        if walk_rule(family, rule, &c, &patterns, chains, false, 0, &mut reach.bypass) {
            // A goto whose chain falls through ends at FORWARD's policy.
            reach.returns.push(show(family, rule));
        }
    }
    reach
}

/// The rules of FORWARD before its first unconditional jump to DOCKER-USER (all of them when
/// there is none).
pub fn before_jump(forward: &[NftRule]) -> &[NftRule] {
    let at = forward.iter().position(|r| conditions(r).unconditional && exit(r) == Exit::Jump(CHAIN.into()));
    &forward[..at.unwrap_or(forward.len())]
}

/// Judges the foreign rules of DOCKER-USER that stand before `before` (the index of our last
/// rule): one that may let guarded traffic through (accept, return to FORWARD, a jump) bypasses
/// the rules of ours after it.
pub fn ahead_of_ours(
    family: Family,
    rules: &[NftRule],
    before: usize,
    chains: &Chains,
    ifaces: &[Iface],
) -> Vec<String> {
    let patterns = patterns(ifaces);
    let mut bypass = Vec::new();
    for rule in rules.iter().take(before).filter(|r| !super::is_ours(r)) {
        // In DOCKER-USER a RETURN goes back to FORWARD, where Docker's own ACCEPTs follow.
        walk_rule(family, rule, &conditions(rule), &patterns, chains, true, 0, &mut bypass);
    }
    bypass
}

fn patterns(ifaces: &[Iface]) -> Vec<Option<Name>> {
    if ifaces.is_empty() {
        vec![None]
    } else {
        ifaces.iter().map(|i| Some(Name::of(i))).collect()
    }
}

/// Adds to `bypass` what of `rule` (and the chains it jumps to) lets guarded traffic through;
/// `return_passes`: a return from this chain passes (DOCKER-USER's caller, FORWARD, accepts
/// what Docker accepts). Returns true when a `goto` sends packets past this chain's end, which
/// in a base chain is its policy (the caller decides).
#[allow(clippy::too_many_arguments)]
fn walk_rule(
    family: Family,
    rule: &NftRule,
    c: &Conditions,
    patterns: &[Option<Name>],
    chains: &Chains,
    return_passes: bool,
    depth: usize,
    bypass: &mut Vec<String>,
) -> bool {
    if !patterns.iter().any(|p| may_match(c, p.as_ref())) {
        return false;
    }
    let (chain, goto) = match exit(rule) {
        Exit::Pass => {
            bypass.push(show(family, rule));
            return false;
        }
        Exit::Return if return_passes => {
            bypass.push(show(family, rule));
            return false;
        }
        Exit::Jump(chain) if chain != CHAIN => (chain, false),
        Exit::Goto(chain) if chain != CHAIN => (chain, true),
        _ => return false,
    };
    let Some(rules) = chains.get(&chain).filter(|_| depth < MAX_DEPTH) else {
        bypass.push(show(family, rule));
        return false;
    };
    for inner in rules {
        let ic = conditions(inner);
        // A RETURN inside goes back to the caller, which goes on: not a pass; a goto inside
        // that falls through ends this chain too.
        if walk_rule(family, inner, &ic, patterns, chains, false, depth + 1, bypass) {
            bypass.push(show(family, inner));
        }
    }
    if goto && falls_through(rules) {
        // Past the goto'd chain's end, packets return to the caller of this chain.
        if depth == 0 && !return_passes {
            return true;
        }
        bypass.push(show(family, rule));
    }
    false
}

/// A rule as `iptables -S` prints it when it is a shape we can read, else in nft syntax.
fn show(family: Family, rule: &NftRule) -> String {
    match codec::decode(family, &rule.exprs) {
        Some(r) => r.to_iptables(family, &rule.chain),
        None => text::rule(rule),
    }
}

/// The chains FORWARD (or DOCKER-USER) jumps to, to read before judging.
pub fn jump_targets(rules: &[NftRule]) -> Vec<String> {
    let mut names: Vec<String> = rules
        .iter()
        .filter_map(|r| match exit(r) {
            Exit::Jump(c) | Exit::Goto(c) if c != CHAIN => Some(c),
            _ => None,
        })
        .collect();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::super::ipt::{Action, IfaceMatch, IptRule};
    use super::*;
    use crate::policy::parse_iface;

    fn rule(chain: &str, r: IptRule) -> NftRule {
        let (exprs, _) = codec::encode(Family::V4, &r);
        NftRule {
            family: 2,
            table: "filter".into(),
            chain: chain.into(),
            handle: None,
            exprs,
            compat: None,
            userdata: None,
        }
    }

    fn iface(name: &str, negate: bool) -> Option<IfaceMatch> {
        Some(IfaceMatch { name: name.into(), negate })
    }

    fn default_ifaces() -> Vec<Iface> {
        ["docker0", "br-+"].iter().map(|i| parse_iface(i).unwrap()).collect()
    }

    fn jump() -> NftRule {
        rule("FORWARD", IptRule::new(Action::Jump(CHAIN.into())))
    }

    #[test]
    fn names_meet_and_nest() {
        let n = |s: &str| Name::of(&parse_iface(s).unwrap());
        assert!(n("br-+").meets(&n("br-abc")) && !n("br-+").meets(&n("docker0")));
        assert!(n("br-abc").within(&n("br-+")) && !n("br-+").within(&n("br-abc")));
    }

    #[test]
    fn a_jump_first_is_reached_and_an_accept_first_is_a_bypass() {
        let ifaces = default_ifaces();
        let reach = forward(Family::V4, &[jump()], &Chains::new(), &ifaces);
        assert_eq!(reach, Reach { jumps: true, ..Reach::default() });
        let accept = rule("FORWARD", IptRule { in_iface: iface("docker0", false), ..IptRule::new(Action::Accept) });
        let reach = forward(Family::V4, &[accept, jump()], &Chains::new(), &ifaces);
        assert_eq!(reach.bypass, ["-A FORWARD -i docker0 -j ACCEPT"]);
    }

    #[test]
    fn rules_that_cannot_match_egress_are_no_bypass() {
        let ifaces = default_ifaces();
        let same_bridge = rule(
            "FORWARD",
            IptRule {
                in_iface: iface("docker0", false),
                out_iface: iface("docker0", false),
                ..IptRule::new(Action::Accept)
            },
        );
        let other_iface = rule("FORWARD", IptRule { in_iface: iface("eth0", false), ..IptRule::new(Action::Accept) });
        let replies = rule(
            "FORWARD",
            IptRule {
                ctstate: Some(Conntrack { states: Conntrack::RELATED | Conntrack::ESTABLISHED, invert: false }),
                ..IptRule::new(Action::Accept)
            },
        );
        let drop = rule("FORWARD", IptRule::new(Action::Drop));
        let reach = forward(Family::V4, &[same_bridge, other_iface, replies, drop, jump()], &Chains::new(), &ifaces);
        assert_eq!(reach, Reach { jumps: true, ..Reach::default() });
    }

    #[test]
    fn jumps_are_followed_and_a_return_to_the_policy_is_set_aside() {
        let ifaces = default_ifaces();
        let to_other = rule("FORWARD", IptRule::new(Action::Jump("MINE".into())));
        let mut chains = Chains::new();
        chains.insert(
            "MINE".into(),
            vec![rule("MINE", IptRule { in_iface: iface("br-+", false), ..IptRule::new(Action::Accept) })],
        );
        let reach = forward(Family::V4, &[to_other.clone(), jump()], &chains, &ifaces);
        assert_eq!(reach.bypass, ["-A MINE -i br-+ -j ACCEPT"]);
        let unknown = forward(Family::V4, &[to_other, jump()], &Chains::new(), &ifaces);
        assert_eq!(unknown.bypass, ["-A FORWARD -j MINE"], "a chain we could not read is assumed to accept");
        let ret = rule("FORWARD", IptRule::new(Action::Return));
        let reach = forward(Family::V4, &[ret, jump()], &Chains::new(), &ifaces);
        assert_eq!((reach.bypass.len(), reach.returns.as_slice()), (0, &["-A FORWARD -j RETURN".to_string()][..]));
    }

    #[test]
    fn a_conditional_jump_does_not_count_as_reaching() {
        let ifaces = default_ifaces();
        let partial =
            rule("FORWARD", IptRule { in_iface: iface("docker0", false), ..IptRule::new(Action::Jump(CHAIN.into())) });
        assert!(!forward(Family::V4, &[partial], &Chains::new(), &ifaces).jumps);
    }
}
