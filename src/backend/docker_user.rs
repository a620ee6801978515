//! The `docker-user` backend: our rules at the top of `ip filter DOCKER-USER` and
//! `ip6 filter DOCKER-USER`, encoded as iptables-nft encodes them (so `iptables -S` and dockerd
//! keep reading the chain), every other rule left alone and in its order. A change adds only
//! what is missing and deletes only what is ours and wrong, in one batch; the guard counts as in
//! place only when FORWARD jumps to DOCKER-USER and no rule lets guarded traffic out first.

pub mod codec;
pub mod ipt;
pub mod reach;

use std::collections::HashMap;

use ipt::{Action, AddrMatch, IfaceMatch, IptRule, RejectWith};
use reach::{Chains, Reach};

use super::{Backend, BackendError, Change, PlaceReport, RuleReport, RuleText, Step, Verdict};
use crate::net::{Family, Proto};
use crate::nft::chain::ChainDef;
use crate::nft::expr::Expr;
use crate::nft::msg::{self, BatchBuilder};
use crate::nft::rule::{Compat, NftRule, Position};
use crate::nft::socket::Netlink;
use crate::nft::sys::{NFT_CMP_NEQ, NFT_META_L4PROTO, NF_ACCEPT};
use crate::nft::xt::{Comment, Conntrack};
use crate::nft::{text, NlError};
use crate::policy::{Iface, Policy, Refusal};
use crate::rules::{self, Scope, Section, Step as RuleStep, COMMENT};
use crate::snapshot::{self, ChainItem, PlaceSnapshot};

pub const TABLE: &str = "filter";
pub const CHAIN: &str = "DOCKER-USER";
pub const FORWARD: &str = "FORWARD";

/// The DOCKER-USER chains of some families.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerUser {
    pub families: Vec<Family>,
    /// Families whose guarded bridges carry addresses: a missing chain of such a family leaves
    /// containers' traffic of that family unguarded.
    pub in_use: Vec<Family>,
}

impl DockerUser {
    fn required(&self, family: Family) -> bool {
        family == Family::V4 || self.in_use.contains(&family)
    }
}

/// What one family's DOCKER-USER looks like in the kernel right now.
#[derive(Debug, Clone)]
pub struct ChainState {
    pub family: Family,
    /// The chain's rules in order; `None` when the chain (or `ip filter`) does not exist.
    pub rules: Option<Vec<NftRule>>,
    /// Whether FORWARD reaches DOCKER-USER, and what lets traffic out before it.
    pub reach: Reach,
    /// Chains FORWARD and DOCKER-USER jump to, read to follow those jumps.
    pub chains: Chains,
}

impl ChainState {
    /// Reads DOCKER-USER and FORWARD of one family (two filtered dumps), and the chains they
    /// jump to before reaching our rules, if any; never the whole ruleset.
    pub fn read(nl: &mut Netlink, family: Family, ifaces: &[Iface]) -> Result<ChainState, NlError> {
        let nfproto = family.nfproto();
        let rules = nl.dump_rules(nfproto, TABLE, CHAIN)?;
        let forward = nl.dump_rules(nfproto, TABLE, FORWARD)?.unwrap_or_default();
        let mut chains = Chains::new();
        let mut wanted = reach::jump_targets(reach::before_jump(&forward));
        wanted.extend(reach::jump_targets(rules.as_deref().unwrap_or(&[])));
        for _ in 0..3 {
            let mut next = Vec::new();
            for name in wanted.drain(..).filter(|n| n != FORWARD) {
                if chains.contains_key(&name) {
                    continue;
                }
                let found = nl.dump_rules(nfproto, TABLE, &name)?.unwrap_or_default();
                next.extend(reach::jump_targets(&found));
                chains.insert(name, found);
            }
            wanted = next;
        }
        let mut reach = reach::forward(family, &forward, &chains, ifaces);
        if !reach.returns.is_empty() && forward_policy_accepts(nl, family)? {
            reach.bypass.append(&mut reach.returns);
        }
        Ok(ChainState { family, rules, reach, chains })
    }

    pub fn exists(&self) -> bool {
        self.rules.is_some()
    }

    fn all(&self) -> &[NftRule] {
        self.rules.as_deref().unwrap_or(&[])
    }

    /// Our rules, in chain order.
    pub fn ours(&self) -> Vec<&NftRule> {
        self.all().iter().filter(|r| is_ours(r)).collect()
    }

    pub fn foreign_count(&self) -> usize {
        self.all().iter().filter(|r| !is_ours(r)).count()
    }

    /// Foreign rules ahead of ours that let guarded traffic past them.
    fn ahead(&self, ifaces: &[Iface]) -> Vec<String> {
        let last = self.all().iter().rposition(is_ours).unwrap_or(0);
        reach::ahead_of_ours(self.family, self.all(), last, &self.chains, ifaces)
    }
}

/// FORWARD's policy (one GET, only asked when a rule before the jump returns to it).
fn forward_policy_accepts(nl: &mut Netlink, family: Family) -> Result<bool, NlError> {
    let what = format!("GETCHAIN {} {TABLE} {FORWARD}", family.nft_name());
    let found = nl.get(&what, |seq| msg::getchain(seq, family.nfproto(), TABLE, FORWARD))?.unwrap_or_default();
    match found.first() {
        Some(reply) => Ok(ChainDef::decode(&reply.reply())?.policy == Some(NF_ACCEPT as u32)),
        None => Ok(false),
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

// ---- the plan: the neutral rule list as iptables rules ----

/// The DOCKER-USER rules for one family, in chain order.
pub fn plan(policy: &Policy, family: Family) -> Vec<IptRule> {
    let mut out = Vec::new();
    for section in rules::sections(policy).iter().filter(|s| s.scope.covers(family)) {
        let subnets = match &section.scope {
            Scope::Subnets(_, nets) => nets.iter().copied().map(Some).collect(),
            Scope::Any | Scope::Family(_) => vec![None],
        };
        for subnet in subnets {
            out.extend(selector_rules(family, section, subnet));
        }
    }
    out
}

/// The rules of one selector: `-i BR ! -o BR` and/or `-s S ! -d S`, then the section's steps.
fn selector_rules(family: Family, section: &Section, subnet: Option<ipnet::IpNet>) -> Vec<IptRule> {
    let base = |action: Action| {
        let mut r = IptRule::new(action);
        if let Some(i) = &section.iface {
            r.in_iface = Some(IfaceMatch { name: i.to_string(), negate: false });
            r.out_iface = Some(IfaceMatch { name: i.to_string(), negate: true });
        }
        if let Some(net) = subnet {
            r.src = Some(AddrMatch { net, negate: false });
            r.dst = Some(AddrMatch { net, negate: true });
        }
        r.comment = Some(COMMENT.to_string());
        r
    };
    let new_only = || Some(Conntrack { states: Conntrack::RELATED | Conntrack::ESTABLISHED, invert: true });
    let mut out = Vec::new();
    for step in &section.steps {
        match step {
            RuleStep::PassMulticast => {
                let net = match family {
                    Family::V4 => "224.0.0.0/4",
                    Family::V6 => "ff00::/8",
                };
                let dst = net.parse().ok().map(|net| AddrMatch { net, negate: false });
                out.push(IptRule { dst, ..base(Action::Return) });
            }
            RuleStep::Marked { bit } => out.push(IptRule { mark: Some(*bit), ..base(Action::Return) }),
            RuleStep::Log(log) => {
                let action = match &log.sink {
                    crate::policy::LogSink::Kernel { prefix } => Action::Log { prefix: prefix.clone() },
                    crate::policy::LogSink::Nflog { group, prefix } => {
                        Action::Nflog { group: *group, prefix: prefix.clone() }
                    }
                };
                out.push(IptRule { ctstate: new_only(), limit: Some(log.rate), ..base(action) });
            }
            RuleStep::Refuse { answer, tcp_only } => {
                let action = match answer {
                    Refusal::PortUnreachable => Action::Reject(RejectWith::PortUnreachable),
                    Refusal::AdminProhibited => Action::Reject(RejectWith::AdminProhibited),
                    Refusal::TcpReset => Action::Reject(RejectWith::TcpReset),
                    Refusal::Drop => Action::Drop,
                };
                let proto = tcp_only.then_some(Proto::Tcp);
                out.push(IptRule { proto, ctstate: new_only(), ..base(action) });
            }
        }
    }
    out
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

// ---- the diff: what turns the chain into the plan ----

/// What to send for one chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainDiff {
    /// Planned rules to insert (by index), each at its position, in the order to send them.
    pub inserts: Vec<(usize, Position)>,
    /// Handles of our rules to delete.
    pub deletes: Vec<u64>,
    /// Why the chain needs a change, for `status`.
    pub why: Option<String>,
}

impl ChainDiff {
    pub fn is_empty(&self) -> bool {
        self.inserts.is_empty() && self.deletes.is_empty()
    }
}

/// Compares the chain's rules with the plan. Our rules that are as planned and in order stay
/// (their counters too); the missing ones are inserted beside them, where they belong; ours
/// that are not planned are deleted. When a foreign rule ahead of ours lets traffic past them
/// (`bypass`), every rule of ours moves to the top of the chain instead.
pub fn diff(rules: &[NftRule], planned: &[NftRule], bypass: &[String]) -> ChainDiff {
    let ours: Vec<&NftRule> = rules.iter().filter(|r| is_ours(r)).collect();
    let first = rules.first().and_then(|r| r.handle);
    if !bypass.is_empty() {
        let at = first.map_or(Position::End, Position::Before);
        return ChainDiff {
            inserts: (0..planned.len()).map(|i| (i, at)).collect(),
            deletes: ours.iter().filter_map(|r| r.handle).collect(),
            why: Some(format!("a rule ahead of ours lets traffic past them: {}", bypass.join("; "))),
        };
    }
    // The rules of ours that stay: a longest common subsequence of ours and the plan (by shape),
    // so the fewest rules move. Hunt-Szymanski: each rule of ours stands for the planned places
    // of its shape, in decreasing order, and a longest increasing run through them is the LCS.
    let mut places: HashMap<Vec<Expr>, Vec<usize>> = HashMap::new();
    for (i, p) in planned.iter().enumerate().rev() {
        places.entry(p.shape()).or_default().push(i);
    }
    let candidates: Vec<(usize, usize)> = ours
        .iter()
        .enumerate()
        .flat_map(|(k, r)| places.get(&r.shape()).into_iter().flatten().map(move |&i| (k, i)))
        .collect();
    let mut kept: Vec<Option<u64>> = vec![None; planned.len()];
    let mut staying = std::collections::HashSet::new();
    for (k, i) in longest_increasing(&candidates) {
        if let Some(h) = ours[k].handle {
            kept[i] = Some(h);
            staying.insert(k);
        }
    }
    let deletes: Vec<u64> =
        ours.iter().enumerate().filter(|(k, _)| !staying.contains(k)).filter_map(|(_, r)| r.handle).collect();
    let inserts = positions(&kept, ours.first().and_then(|r| r.handle).or(first));
    let missing = inserts.len();
    let why = match (missing, deletes.len()) {
        (0, 0) => None,
        (m, 0) => Some(format!("{m} of {} rules missing", planned.len())),
        (0, d) => Some(format!("{d} rule(s) of ours not in the policy")),
        (m, d) => Some(format!("{} of {} rules differ from the policy", m.max(d), planned.len())),
    };
    ChainDiff { inserts, deletes, why }
}

/// A longest run of `(rule, place)` pairs whose places strictly increase (patience sorting,
/// O(n log n): a chain may hold 100,000 rules of ours). Pairs of one rule come with decreasing
/// places, so a run takes at most one place per rule.
fn longest_increasing(pairs: &[(usize, usize)]) -> Vec<(usize, usize)> {
    // tails[l] = index into `pairs` of the smallest last place of a run of length l + 1.
    let mut tails: Vec<usize> = Vec::new();
    let mut prev: Vec<Option<usize>> = vec![None; pairs.len()];
    for (n, &(_, place)) in pairs.iter().enumerate() {
        let at = tails.partition_point(|&t| pairs[t].1 < place);
        if at > 0 {
            prev[n] = Some(tails[at - 1]);
        }
        if at == tails.len() {
            tails.push(n);
        } else {
            tails[at] = n;
        }
    }
    let mut run = Vec::new();
    let mut n = tails.last().copied();
    while let Some(i) = n {
        run.push(pairs[i]);
        n = prev[i];
    }
    run.reverse();
    run
}

/// Where each planned rule that is not kept goes: before the next kept one; after the last
/// kept one (sent in reverse, so they keep their order); with none kept, where our first old
/// rule stood or at the top of the chain (`anchor`), else at its end.
fn positions(kept: &[Option<u64>], anchor: Option<u64>) -> Vec<(usize, Position)> {
    let mut out = Vec::new();
    let mut trailing = Vec::new();
    for i in (0..kept.len()).filter(|&i| kept[i].is_none()) {
        match kept[i..].iter().flatten().next() {
            Some(&next) => out.push((i, Position::Before(next))),
            None => trailing.push(i),
        }
    }
    match kept.iter().flatten().last() {
        Some(&prev) => out.extend(trailing.into_iter().rev().map(|i| (i, Position::After(prev)))),
        None => out.extend(trailing.into_iter().map(|i| (i, anchor.map_or(Position::End, Position::Before)))),
    }
    out
}

/// `iptables -S` for a rule of ours, or a note for one changed by hand.
fn our_line(family: Family, rule: &NftRule) -> String {
    codec::decode(family, &rule.exprs).map_or_else(
        || format!("(a rule of ours changed by hand: {})", text::rule(rule)),
        |r| r.to_iptables(family, CHAIN),
    )
}

fn place(family: Family) -> String {
    format!("{} {TABLE} {CHAIN}", family.nft_name())
}

fn describe(op: &str, family: Family) -> String {
    format!("{op} {}", place(family))
}

/// What an admin applying the guard should hear about this chain.
fn warnings(state: &ChainState, required: bool) -> Vec<String> {
    let name = state.family.nft_name();
    let mut out = Vec::new();
    if !state.exists() {
        let why = if required { "containers' traffic of this family is NOT guarded" } else { "not covered" };
        out.push(format!("no {name} {TABLE} {CHAIN}: {why} (use --target auto, or enable ip6tables in dockerd)"));
    } else if !state.reach.jumps {
        out.push(format!("{name} FORWARD does not jump to {CHAIN}: the guard is inert until dockerd adds the jump"));
    }
    if !state.reach.bypass.is_empty() {
        out.push(format!(
            "{name} FORWARD lets containers out before it jumps to {CHAIN}: {} (remove that rule, or add --target both)",
            state.reach.bypass.join("; ")
        ));
    }
    out
}

impl Backend for DockerUser {
    fn describe(&self) -> String {
        let f: Vec<&str> = self.families.iter().map(|f| f.nft_name()).collect();
        format!("docker-user ({})", f.join(", "))
    }

    fn sync(&self, nl: &mut Netlink, batch: &mut BatchBuilder, policy: &Policy) -> Result<Vec<Step>, BackendError> {
        let mut steps = Vec::new();
        for &family in &self.families {
            let state = ChainState::read(nl, family, &policy.ifaces)?;
            let mut step = Step { warnings: warnings(&state, self.required(family)), ..Step::unchanged(place(family)) };
            let Some(rules) = &state.rules else {
                if family == Family::V4 {
                    return Err(BackendError::NoDockerUser { family });
                }
                step.change = Change::Missing;
                steps.push(step);
                continue;
            };
            let planned_rules = plan(policy, family);
            let planned = encode(family, &planned_rules);
            let d = diff(rules, &planned, &state.ahead(&policy.ifaces));
            if !d.is_empty() {
                for (i, at) in &d.inserts {
                    batch.push(describe("NEWRULE", family), |seq| planned[*i].new_msg(seq, *at));
                }
                let by_handle: HashMap<u64, &NftRule> = rules.iter().filter_map(|r| Some((r.handle?, r))).collect();
                for (h, rule) in d.deletes.iter().filter_map(|h| Some((h, *by_handle.get(h)?))) {
                    batch.push(describe("DELRULE", family), |seq| rule.del_msg(*h, seq));
                    step.removed.push(our_line(family, rule));
                }
                let mut added: Vec<usize> = d.inserts.iter().map(|(i, _)| *i).collect();
                added.sort_unstable();
                step.added = added
                    .iter()
                    .map(|&i| RuleText {
                        iptables: Some(planned_rules[i].to_iptables(family, CHAIN)),
                        nft: text::rule(&planned[i]),
                    })
                    .collect();
                step.change = Change::Written;
            }
            steps.push(step);
        }
        Ok(steps)
    }

    fn remove(&self, nl: &mut Netlink, batch: &mut BatchBuilder) -> Result<Vec<Step>, BackendError> {
        let mut steps = Vec::new();
        for &family in &self.families {
            let rules = nl.dump_rules(family.nfproto(), TABLE, CHAIN)?;
            let mut step = Step::unchanged(place(family));
            match &rules {
                None => step.change = Change::Missing,
                Some(rules) => {
                    for rule in rules.iter().filter(|r| is_ours(r)) {
                        let Some(h) = rule.handle else { continue };
                        batch.push(describe("DELRULE", family), |seq| rule.del_msg(h, seq));
                        step.removed.push(our_line(family, rule));
                        step.change = Change::Written;
                    }
                }
            }
            steps.push(step);
        }
        Ok(steps)
    }

    fn judge(&self, nl: &mut Netlink, policy: &Policy) -> Result<Vec<PlaceReport>, BackendError> {
        let mut places = Vec::new();
        for &family in &self.families {
            let state = ChainState::read(nl, family, &policy.ifaces)?;
            places.push(judge_chain(&state, policy, self.required(family)));
        }
        Ok(places)
    }

    fn snapshot(&self, nl: &mut Netlink) -> Result<Vec<PlaceSnapshot>, BackendError> {
        let mut out = Vec::new();
        for &family in &self.families {
            let rules = nl.dump_rules(family.nfproto(), TABLE, CHAIN)?;
            let chain = items(rules.as_deref().unwrap_or(&[]));
            out.push(PlaceSnapshot::DockerUser { family, exists: rules.is_some(), chain });
        }
        Ok(out)
    }

    fn restore(
        &self,
        nl: &mut Netlink,
        batch: &mut BatchBuilder,
        snapshot: &[PlaceSnapshot],
    ) -> Result<Vec<Step>, BackendError> {
        let mut steps = Vec::new();
        for &family in &self.families {
            let Some(chain) = snapshot.iter().find_map(|p| match p {
                PlaceSnapshot::DockerUser { family: f, chain, .. } if *f == family => Some(chain),
                _ => None,
            }) else {
                continue;
            };
            let mut step = Step::unchanged(place(family));
            let Some(rules) = nl.dump_rules(family.nfproto(), TABLE, CHAIN)? else {
                if chain.iter().any(|i| matches!(i, ChainItem::Ours { .. })) {
                    step.warnings.push(format!("{} is gone: its rules of ours cannot be put back", place(family)));
                }
                step.change = Change::Missing;
                steps.push(step);
                continue;
            };
            if !as_then(chain, &items(&rules))? {
                let present = |h: u64| rules.iter().any(|r| r.handle == Some(h) && !is_ours(r));
                for (i, at) in snapshot::positions(chain, &present) {
                    let ChainItem::Ours { rule } = &chain[i] else { continue };
                    let mut rule = snapshot::rule_from_hex(rule)?;
                    rule.compat = Some(compat_of(family, &rule.exprs));
                    batch.push(describe("NEWRULE", family), |seq| rule.new_msg(seq, at));
                    step.added.push(RuleText { iptables: Some(our_line(family, &rule)), nft: text::rule(&rule) });
                }
                for r in rules.iter().filter(|r| is_ours(r)) {
                    let Some(h) = r.handle else { continue };
                    batch.push(describe("DELRULE", family), |seq| r.del_msg(h, seq));
                    step.removed.push(our_line(family, r));
                }
                step.change = Change::Written;
            }
            steps.push(step);
        }
        Ok(steps)
    }
}

/// A chain's rules as a snapshot keeps them: ours whole, others by handle.
fn items(rules: &[NftRule]) -> Vec<ChainItem> {
    rules
        .iter()
        .filter_map(|r| match is_ours(r) {
            true => Some(ChainItem::Ours { rule: snapshot::rule_to_hex(&NftRule { handle: None, ..r.clone() }) }),
            false => r.handle.map(|handle| ChainItem::Foreign { handle }),
        })
        .collect()
}

/// Whether the chain `now` already holds our rules as `then` had them: the same rules (counters
/// aside), in the same places among the foreign rules both know. Then a restore sends nothing.
fn as_then(then: &[ChainItem], now: &[ChainItem]) -> Result<bool, NlError> {
    let handles = |items: &[ChainItem]| -> Vec<u64> {
        items.iter().filter_map(|i| if let ChainItem::Foreign { handle } = i { Some(*handle) } else { None }).collect()
    };
    let (known_then, known_now) = (handles(then), handles(now));
    let project = |items: &[ChainItem], known: &[u64]| -> Result<Vec<Result<Vec<Expr>, u64>>, NlError> {
        let mut out = Vec::new();
        for item in items {
            match item {
                ChainItem::Ours { rule } => out.push(Ok(snapshot::rule_from_hex(rule)?.shape())),
                ChainItem::Foreign { handle } if known.contains(handle) => out.push(Err(*handle)),
                ChainItem::Foreign { .. } => {}
            }
        }
        Ok(out)
    };
    Ok(project(then, &known_now)? == project(now, &known_then)?)
}

/// `NFTA_RULE_COMPAT` for a rule read back (the kernel keeps none): the `-p` protocol and its
/// inversion, as iptables would send them; what xt extensions such as `REJECT --reject-with
/// tcp-reset` check when the rule is created again.
fn compat_of(family: Family, exprs: &[Expr]) -> Compat {
    if let Some(rule) = codec::decode(family, exprs) {
        return codec::encode(family, &rule).1;
    }
    let proto = exprs.windows(2).find_map(|w| match w {
        [Expr::Meta { key: NFT_META_L4PROTO, .. }, Expr::Cmp { op, data, .. }] if data.len() == 1 => {
            Some(Compat { proto: u32::from(data[0]), flags: if *op == NFT_CMP_NEQ { 2 } else { 0 } })
        }
        _ => None,
    });
    proto.unwrap_or_default()
}

/// Compares one family's DOCKER-USER with the plan (pure: the state was read by the caller).
pub fn judge_chain(state: &ChainState, policy: &Policy, required: bool) -> PlaceReport {
    let family = state.family;
    let planned = encode(family, &plan(policy, family));
    let ours = state.ours();
    let rules = ours.iter().map(|r| RuleReport { rule: our_line(family, r), packets: r.packets() }).collect();
    let refused = ours.iter().filter(|r| refuses(family, r)).map(|r| r.packets()).sum();
    let d = diff(state.all(), &planned, &state.ahead(&policy.ifaces));
    let (verdict, reason) = if !state.exists() {
        (Verdict::Absent, Some("the chain does not exist".to_string()))
    } else if ours.is_empty() && !planned.is_empty() {
        (Verdict::Absent, Some("no egress-guard rules".to_string()))
    } else if let Some(why) = d.why {
        (Verdict::Drifted, Some(why))
    } else if !state.reach.jumps {
        (Verdict::Drifted, Some(format!("FORWARD does not jump to {CHAIN}: the guard is inert")))
    } else if !state.reach.bypass.is_empty() {
        let rules = state.reach.bypass.join("; ");
        (Verdict::Drifted, Some(format!("FORWARD lets containers out before it jumps to {CHAIN}: {rules}")))
    } else {
        (Verdict::InPlace, None)
    };
    PlaceReport {
        place: place(family),
        backend: "docker-user",
        families: vec![family],
        exists: state.exists(),
        reached: state.exists() && state.reach.jumps && state.reach.bypass.is_empty(),
        required: required || state.exists(),
        verdict,
        reason,
        foreign_rules: state.foreign_count(),
        rules,
        refused,
        bypass: state.reach.bypass.clone(),
    }
}

/// Whether a rule of ours refuses what it matches (REJECT or DROP).
fn refuses(family: Family, rule: &NftRule) -> bool {
    codec::decode(family, &rule.exprs).is_some_and(|r| matches!(r.action, Action::Reject(_) | Action::Drop))
}

#[cfg(test)]
mod tests;
