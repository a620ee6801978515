//! The `docker-user` target: our rules at the top of `ip filter DOCKER-USER` and
//! `ip6 filter DOCKER-USER`, encoded as iptables-nft encodes them, every other rule left alone.

use crate::ipt::{codec, Family, IptRule};
use crate::nft::expr::Expr;
use crate::nft::msg::BatchBuilder;
use crate::nft::rule::{NftRule, Position};
use crate::nft::socket::Netlink;
use crate::nft::sys::{NFT_GOTO, NFT_JUMP};
use crate::nft::xt::Comment;
use crate::nft::NlError;
use crate::plan::COMMENT;

pub const TABLE: &str = "filter";
pub const CHAIN: &str = "DOCKER-USER";
pub const FORWARD: &str = "FORWARD";

/// What one family's DOCKER-USER looks like in the kernel right now.
#[derive(Debug, Clone)]
pub struct ChainState {
    pub family: Family,
    /// The chain's rules in order; `None` when the chain (or `ip filter`) does not exist.
    pub rules: Option<Vec<NftRule>>,
    /// Whether FORWARD jumps to DOCKER-USER; without that jump our rules never see a packet.
    pub forward_jumps: bool,
}

impl ChainState {
    /// Reads DOCKER-USER and FORWARD of one family: two filtered dumps, never the whole ruleset.
    pub fn read(nl: &mut Netlink, family: Family) -> Result<ChainState, NlError> {
        let rules = nl.dump_rules(family.nfproto(), TABLE, CHAIN)?;
        let forward = nl.dump_rules(family.nfproto(), TABLE, FORWARD)?.unwrap_or_default();
        Ok(ChainState { family, rules, forward_jumps: forward.iter().any(jumps_to_docker_user) })
    }

    pub fn exists(&self) -> bool {
        self.rules.is_some()
    }

    /// Our rules, in chain order.
    pub fn ours(&self) -> Vec<&NftRule> {
        self.rules.iter().flatten().filter(|r| is_ours(r)).collect()
    }

    pub fn foreign_count(&self) -> usize {
        self.rules.iter().flatten().filter(|r| !is_ours(r)).count()
    }

    /// True when our rules are exactly `planned`, in order (counters aside).
    pub fn matches(&self, planned: &[NftRule]) -> bool {
        let ours = self.ours();
        ours.len() == planned.len() && ours.iter().zip(planned).all(|(have, want)| have.shape() == want.shape())
    }
}

/// A rule is ours when it carries the xt comment `egress-guard`, as written by us (or by an
/// admin with `-m comment --comment egress-guard`, which then is ours to manage).
pub fn is_ours(rule: &NftRule) -> bool {
    rule.exprs.iter().any(|e| match e {
        Expr::Match { name, info, .. } if name == Comment::NAME => Comment::decode(info).as_deref() == Some(COMMENT),
        _ => false,
    })
}

fn jumps_to_docker_user(rule: &NftRule) -> bool {
    rule.exprs.iter().any(|e| {
        matches!(e, Expr::Verdict { code, chain: Some(c) } if (*code == NFT_JUMP || *code == NFT_GOTO) && c == CHAIN)
    })
}

/// The planned rules of one family as they go on the wire.
pub fn encode(family: Family, rules: &[IptRule]) -> Vec<NftRule> {
    rules
        .iter()
        .map(|r| {
            let (exprs, compat) = codec::encode(family, r);
            NftRule {
                family: family.nfproto(),
                table: TABLE.into(),
                chain: CHAIN.into(),
                handle: None,
                exprs,
                compat: Some(compat),
                userdata: None,
            }
        })
        .collect()
}

/// Adds to `batch` what turns `state` into `planned`: the new rules go where our first old
/// rule stood (the top of the chain if there was none), then the old ones are deleted, all
/// in the same transaction, so no packet ever sees the chain without a guard. Inserting each
/// rule before the same anchor keeps them in planned order.
pub fn replace(batch: &mut BatchBuilder, state: &ChainState, planned: &[NftRule]) {
    let anchor = state.ours().first().copied().or_else(|| state.rules.iter().flatten().next());
    let at = anchor.and_then(|r| r.handle).map_or(Position::End, Position::Before);
    for rule in planned {
        batch.push(describe("NEWRULE", state.family), |seq| rule.new_msg(seq, at));
    }
    remove(batch, state);
}

/// Adds deletions of our rules (only ours) to `batch`.
pub fn remove(batch: &mut BatchBuilder, state: &ChainState) {
    // Rules read back from the kernel always carry a handle.
    for (rule, handle) in state.ours().into_iter().filter_map(|r| Some((r, r.handle?))) {
        batch.push(describe("DELRULE", state.family), |seq| rule.del_msg(handle, seq));
    }
}

fn describe(op: &str, family: Family) -> String {
    format!("{op} {} {TABLE} {CHAIN}", family.nft_name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::docker_user_rules;
    use crate::policy::Policy;

    /// Parses a hex capture: `#` lines are comments, the rest hex byte pairs.
    fn capture(text: &str) -> Vec<u8> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| l.split_whitespace())
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// Compares two messages 4 bytes a row, so a failure shows where they part.
    fn assert_same_bytes(ours: &[u8], theirs: &[u8]) {
        if ours == theirs {
            return;
        }
        let rows = ours.len().max(theirs.len()).div_ceil(4);
        let mut diff = String::new();
        for row in 0..rows {
            let a = ours.get(row * 4..(row * 4 + 4).min(ours.len())).unwrap_or(&[]);
            let b = theirs.get(row * 4..(row * 4 + 4).min(theirs.len())).unwrap_or(&[]);
            let mark = if a == b { "  " } else { "!!" };
            diff += &format!("{mark} {:04x}  ours {a:02x?}  iptables {b:02x?}\n", row * 4);
        }
        panic!("messages differ ({} vs {} bytes):\n{diff}", ours.len(), theirs.len());
    }

    fn docker0_rule(family: Family) -> NftRule {
        let rules = docker_user_rules(&Policy::default(), family);
        encode(family, &rules[..1]).remove(0)
    }

    /// Our NEWRULE equals iptables-nft's byte for byte, nlmsghdr flags (REQUEST|CREATE) and
    /// sequence number included.
    fn check_against_iptables(family: Family, capture_text: &str) {
        let theirs = capture(capture_text);
        let ours = docker0_rule(family).new_msg(2, Position::Top);
        assert_same_bytes(&ours, &theirs);
    }

    #[test]
    fn ip_rule_is_byte_identical_to_iptables() {
        check_against_iptables(Family::V4, include_str!("testdata/ip-docker0-newrule.hex"));
    }

    #[test]
    fn ip6_rule_is_byte_identical_to_ip6tables() {
        check_against_iptables(Family::V6, include_str!("testdata/ip6-docker0-newrule.hex"));
    }

    fn state(rules: Vec<NftRule>) -> ChainState {
        ChainState { family: Family::V4, rules: Some(rules), forward_jumps: true }
    }

    fn with_handle(mut r: NftRule, h: u64) -> NftRule {
        r.handle = Some(h);
        r
    }

    fn foreign(h: u64) -> NftRule {
        let mut r = docker0_rule(Family::V4);
        r.exprs.retain(|e| !matches!(e, Expr::Match { name, .. } if name == "comment"));
        with_handle(r, h)
    }

    #[test]
    fn ownership_is_the_comment() {
        assert!(is_ours(&docker0_rule(Family::V4)));
        assert!(!is_ours(&foreign(1)));
    }

    #[test]
    fn new_rules_take_the_place_of_the_old_ones() {
        let planned = encode(Family::V4, &docker_user_rules(&Policy::default(), Family::V4));
        let s = state(vec![foreign(1), with_handle(planned[0].clone(), 7), foreign(3)]);
        assert!(!s.matches(&planned));
        let mut batch = BatchBuilder::new(1, 1);
        replace(&mut batch, &s, &planned);
        let b = batch.finish();
        let what: Vec<&str> = b.msgs.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(
            what,
            ["NEWRULE ip filter DOCKER-USER", "NEWRULE ip filter DOCKER-USER", "DELRULE ip filter DOCKER-USER"]
        );
        // Each NEWRULE is positioned before handle 7 (NFTA_RULE_POSITION = 7).
        let needle = [0x0c, 0, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 7];
        assert_eq!(b.bytes.windows(12).filter(|w| *w == needle).count(), 2);
    }

    #[test]
    fn counters_do_not_count_as_drift() {
        let planned = encode(Family::V4, &docker_user_rules(&Policy::default(), Family::V4));
        let mut busy: Vec<NftRule> =
            planned.iter().cloned().enumerate().map(|(i, r)| with_handle(r, i as u64 + 2)).collect();
        for e in &mut busy[0].exprs {
            if let Expr::Counter { packets, .. } = e {
                *packets = 12;
            }
        }
        busy.insert(0, foreign(1));
        assert!(state(busy).matches(&planned));
    }
}
