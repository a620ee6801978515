//! The `table` backend: our own `table inet egress_guard`, base chain `forward` (and `input`
//! with `--block-host`) at priority filter - 1, native expressions and interval sets (see
//! `layout`). The table is ours alone — it carries our comment, and one without it is never
//! touched — so a change rebuilds it whole in one batch: delete the old table and create the
//! new one in the same transaction. The old base chain keeps filtering until the commit, and
//! the new one has its rules from the commit on, so no packet meets an empty chain. When the
//! kernel already holds the plan, nothing is sent.

mod layout;
pub(crate) mod ranges;

use rustables::{Chain, ChainPolicy, ChainType, Hook, HookClass, MsgType, ProtocolFamily, Table};

use super::{Backend, BackendError, Change, PlaceReport, RuleReport, RuleText, Step, Verdict};
use crate::net::Family;
use crate::nft::attr::Attrs;
use crate::nft::chain::ChainDef;
use crate::nft::expr::Expr;
use crate::nft::msg::{self, BatchBuilder};
use crate::nft::rule::{comment_udata, NftRule, Position};
use crate::nft::set::{self, NftSet, SetElem};
use crate::nft::socket::{Netlink, OwnedReply};
use crate::nft::sys::*;
use crate::nft::{rustables_bridge, text, NlError};
use crate::policy::Policy;
use crate::rules::COMMENT;
use crate::snapshot::{self, ChainSnapshot, PlaceSnapshot, SetSnapshot};

pub use layout::{plan, DigestNote, Filler, Spec, TablePlan, FORWARD, GUARD, INPUT, PRIORITY, SHIELD, TABLE};

/// One of our tables; its forward chain guards `families` (with `--block-host`, its input chain
/// guards both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnTable {
    pub families: Vec<Family>,
    pub spec: Spec,
}

impl OwnTable {
    /// The guard table `apply` writes.
    pub fn guard(families: Vec<Family>) -> OwnTable {
        OwnTable { families, spec: GUARD }
    }

    /// Which kinds of per-source sets the table holds (the GETSET dump the sync that follows
    /// reads again from the socket's kept answer).
    pub fn keeps(&self, nl: &mut Netlink) -> Result<Kept, NlError> {
        let mut kept = Kept::default();
        for set in set_defs(nl, self.spec.name)? {
            kept.docker_sets |= layout::is_docker_set(&set.name);
            kept.dns_clients |= layout::is_dns_client_set(&set.name);
        }
        Ok(kept)
    }

    /// `watch`'s shield: every family, in a table only watch's socket may change.
    pub fn shield() -> OwnTable {
        OwnTable { families: Family::ALL.to_vec(), spec: SHIELD }
    }
}

/// The sets of our table `table` (definitions only; they change only by a commit, so one
/// dump serves every read of one generation).
fn set_defs(nl: &mut Netlink, table: &str) -> Result<Vec<NftSet>, NlError> {
    let what = format!("GETSET inet {table}");
    let make = |seq| set::getset_dump(seq, NFPROTO_INET, table);
    nl.get_unchanged(&what, make, |found| {
        found.unwrap_or_default().iter().map(|r| NftSet::decode(&r.reply())).collect()
    })
}

/// What [`OwnTable::keeps`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kept {
    /// The per-container and per-network allowances' sets.
    pub docker_sets: bool,
    /// The sets of containers allowed names of their own, and of their grants.
    pub dns_clients: bool,
}

/// What our table holds in the kernel now.
#[derive(Debug, Clone)]
pub struct TableState {
    /// Which of our tables this is.
    pub spec: Spec,
    pub exists: bool,
    /// The table's userdata: our comment when we made it.
    pub userdata: Option<Vec<u8>>,
    /// For an owned table: the port id of the netlink socket that owns it.
    pub owner: Option<u32>,
    /// Our chains that exist, with their rules in order.
    pub chains: Vec<(ChainDef, Vec<NftRule>)>,
    /// The table's sets, with their elements (sorted) where they were read.
    pub sets: Vec<(NftSet, Option<Vec<SetElem>>)>,
}

impl TableState {
    /// Reads the table: one GET for it, one per chain and a rule dump each, and the set
    /// definitions; never the rest of the ruleset, and no elements (see `load_elems`).
    pub fn read(nl: &mut Netlink, spec: Spec) -> Result<TableState, NlError> {
        let table = spec.name;
        let what = format!("GETTABLE inet {table}");
        let Some(found) = nl.get(&what, |seq| msg::gettable(seq, NFPROTO_INET, table))? else {
            return Ok(TableState::absent(spec));
        };
        let (userdata, owner) = match found.first() {
            Some(table) => table_attrs(&table.reply().attrs())?,
            None => (None, None),
        };
        let mut state = TableState { exists: true, userdata, owner, ..TableState::absent(spec) };
        for name in layout::CHAINS {
            let what = format!("GETCHAIN inet {table} {name}");
            let Some(found) = nl.get(&what, |seq| msg::getchain(seq, NFPROTO_INET, table, name))? else { continue };
            let Some(def) = found.first() else { continue };
            let def = ChainDef::decode(&def.reply())?;
            let what = format!("GETRULE inet {table} {name}");
            let dump = nl.get(&what, |seq| msg::getrule_dump(seq, NFPROTO_INET, table, name))?.unwrap_or_default();
            let rules = dump.iter().map(|r| NftRule::decode(&r.reply())).collect::<Result<_, _>>()?;
            state.chains.push((def, rules));
        }
        state.sets = set_defs(nl, table)?.into_iter().map(|set| (set, None)).collect();
        Ok(state)
    }

    /// Reads the elements of the sets `wanted` names (one dump each), if not read yet.
    pub fn load_elems(&mut self, nl: &mut Netlink, wanted: &[String]) -> Result<(), NlError> {
        let table = self.spec.name;
        for (def, elems) in self.sets.iter_mut().filter(|(d, e)| e.is_none() && wanted.contains(&d.name)) {
            let what = format!("GETSETELEM inet {table} {}", def.name);
            let make = |seq| set::getsetelem_dump(seq, NFPROTO_INET, table, &def.name);
            let decode = |dump: Option<&[OwnedReply]>| {
                let mut found = Vec::new();
                for m in dump.unwrap_or_default() {
                    found.extend(SetElem::decode_all(&m.reply())?);
                }
                Ok(found)
            };
            let mut found = match def.flags & NFT_SET_TIMEOUT {
                0 => nl.get_unchanged(&what, make, decode)?,
                _ => decode(nl.get(&what, make)?.as_deref())?,
            };
            found.sort();
            *elems = Some(found);
        }
        Ok(())
    }

    /// Reads the elements a snapshot keeps: every set's but the forwarder's timed grants,
    /// which a restore would make outlast their answers (see `snapshot_of`).
    pub fn load_kept_elems(&mut self, nl: &mut Netlink) -> Result<(), NlError> {
        let kept: Vec<String> =
            self.sets.iter().map(|(def, _)| def.name.clone()).filter(|n| !layout::is_dns_set(n)).collect();
        self.load_elems(nl, &kept)
    }

    /// A table that is not there.
    pub fn absent(spec: Spec) -> TableState {
        TableState { spec, exists: false, userdata: None, owner: None, chains: Vec::new(), sets: Vec::new() }
    }

    fn chain(&self, name: &str) -> Option<&(ChainDef, Vec<NftRule>)> {
        self.chains.iter().find(|(def, _)| def.name == name)
    }

    fn set(&self, name: &str) -> Option<&(NftSet, Option<Vec<SetElem>>)> {
        self.sets.iter().find(|(def, _)| def.name == name)
    }

    /// Every rule in our chains, with the chain it is in.
    fn rules(&self) -> impl Iterator<Item = (&str, &NftRule)> {
        self.chains.iter().flat_map(|(def, rules)| rules.iter().map(move |r| (def.name.as_str(), r)))
    }

    /// The digest rule: the last rule of the first chain, if it carries a digest.
    fn digest(&self) -> Option<&NftRule> {
        self.chains.first()?.1.last().filter(|r| is_digest(r.userdata.as_deref()))
    }

    /// Whether we made the table: it carries our comment. (Kernels before 5.13 keep no table
    /// userdata; there a table holding only our chains, sets and rules counts as ours.)
    pub fn ours(&self) -> bool {
        match &self.userdata {
            Some(udata) => *udata == comment_udata(COMMENT),
            None => {
                let our_chains = self.chains.iter().all(|(def, _)| layout::CHAINS.contains(&def.name.as_str()));
                our_chains && !self.chains.is_empty() && self.rules().all(|(_, r)| is_ours(r))
            }
        }
    }
}

fn is_digest(udata: Option<&[u8]>) -> bool {
    udata.and_then(layout::comment_of).is_some_and(|c| c.starts_with(layout::DIGEST_PREFIX))
}

/// A table's userdata and, for an owned table, its owner's port id.
fn table_attrs(attrs: &Attrs<'_>) -> Result<(Option<Vec<u8>>, Option<u32>), NlError> {
    let (mut userdata, mut owner) = (None, None);
    for attr in attrs.clone() {
        let attr = attr?;
        match attr.ty {
            NFTA_TABLE_USERDATA => userdata = Some(attr.payload.to_vec()),
            NFTA_TABLE_OWNER => owner = Some(attr.be32()?),
            _ => {}
        }
    }
    Ok((userdata, owner))
}

fn is_ours(rule: &NftRule) -> bool {
    rule.userdata.as_deref() == Some(comment_udata(COMMENT).as_slice()) || is_digest(rule.userdata.as_deref())
}

fn place_name(spec: Spec) -> String {
    format!("inet {}", spec.name)
}

/// The sets whose elements must be read: for `sync`, the policy's when the digest changed and
/// Docker's when the caller knows what Docker runs; for a judgement (`all`), every one of them.
/// The policy's sets are trusted to hold the plan without being read only while the digest
/// rule carries the planned digest and the generation is still the one it was stamped with.
pub fn elems_needed(state: &TableState, plan: &TablePlan, all: bool, genid: u32) -> Vec<String> {
    let have = state.digest().and_then(|r| r.userdata.as_deref()).and_then(DigestNote::read);
    let want = plan.digest().and_then(|r| DigestNote::read(&r.userdata));
    let trusted = matches!((have, want), (Some(h), Some(w)) if h.digest == w.digest && h.generation == Some(genid));
    let digest_moved = !trusted;
    plan.sets
        .iter()
        .filter(|s| match s.filler {
            Filler::Policy => all || digest_moved,
            // Without a picture of Docker (`plan.live`), their content is not ours to judge.
            Filler::Docker => plan.live,
            Filler::Dns => false,
        })
        .map(|s| s.set.name.clone())
        .collect()
}

/// How the kernel's table differs from the plan, in a few words each; empty when it holds
/// exactly the plan (counters aside). Sets whose elements were not read are compared by their
/// definition only.
pub fn differences(state: &TableState, plan: &TablePlan) -> Vec<String> {
    let mut diffs = shape_differences(state, plan);
    for chain in &plan.chains {
        let Some((_, rules)) = state.chain(chain.name) else { continue };
        let planned = &chain.rules;
        let differ = planned.iter().zip(rules).filter(|(p, r)| !p.matches(r)).count();
        if rules.len() != planned.len() {
            diffs.push(format!(
                "chain {} holds {} rules where the policy has {}",
                chain.name,
                rules.len(),
                planned.len()
            ));
        } else if differ > 0 {
            diffs.push(format!("{differ} of {} rules in chain {} differ from the policy", planned.len(), chain.name));
        }
    }
    for planned in &plan.sets {
        if let Some((_, Some(elems))) = state.set(&planned.set.name) {
            if planned.filler == Filler::Docker && !plan.live {
                continue;
            }
            if *elems != planned.elems {
                let (gone, new) = unit_diff(&planned.set, elems, &planned.elems);
                let who = match planned.filler {
                    Filler::Policy => "the policy",
                    Filler::Docker => "the running containers",
                    Filler::Dns => "the granted names",
                };
                diffs.push(format!(
                    "set {} differs from {who} ({} missing, {} not planned)",
                    planned.set.name,
                    new.len(),
                    gone.len()
                ));
            }
        }
    }
    diffs
}

/// What only a rebuild can change: the chains and how they are hooked, the sets and their
/// types.
fn shape_differences(state: &TableState, plan: &TablePlan) -> Vec<String> {
    let mut diffs = Vec::new();
    for chain in &plan.chains {
        let Some((def, _)) = state.chain(chain.name) else {
            diffs.push(format!("chain {} is missing", chain.name));
            continue;
        };
        if def.hook != Some((chain.hook, chain.priority))
            || def.ty.as_deref() != Some(chain.kind)
            || def.policy != Some(NF_ACCEPT as u32)
        {
            diffs.push(format!("chain {} is not hooked as planned", chain.name));
        }
    }
    for (def, _) in &state.chains {
        if !plan.chains.iter().any(|c| c.name == def.name) {
            diffs.push(format!("chain {} is not in the policy", def.name));
        }
    }
    for planned in &plan.sets {
        match state.set(&planned.set.name) {
            None => diffs.push(format!("set {} is missing", planned.set.name)),
            Some((def, _)) if !same_set(def, &planned.set) => {
                diffs.push(format!("set {} is not of the planned type", planned.set.name))
            }
            Some(_) => {}
        }
    }
    for (def, _) in &state.sets {
        if !plan.sets.iter().any(|s| s.set.name == def.name) {
            diffs.push(format!("set {} is not in the policy", def.name));
        }
    }
    diffs
}

/// One element, or for an rbtree interval set one range (its opening element and the one
/// closing it): what is added or deleted as a whole. Deleting or adding half a range would
/// leave the kernel an overlap to refuse (an end inside another range). Borrowed: a set can
/// hold 200,000 elements, and copying both sides to compare them doubled apply's memory.
type Unit<'a> = (&'a SetElem, Option<&'a SetElem>);

fn units<'a>(set: &NftSet, elems: &'a [SetElem]) -> Vec<Unit<'a>> {
    let rbtree = set.flags & NFT_SET_INTERVAL != 0 && set.fields.is_empty();
    if !rbtree {
        return elems.iter().map(|e| (e, None)).collect();
    }
    // In address order, and where one range ends on the address the next begins (touching
    // ranges: never ours, which are merged, but an element added by hand can touch them) the
    // end first, so each opening element is followed by its own closing one.
    let mut ordered: Vec<&SetElem> = elems.iter().collect();
    ordered.sort_by(|a, b| a.key.cmp(&b.key).then(end_first(a).cmp(&end_first(b))));
    let mut out: Vec<Unit> = Vec::with_capacity(elems.len() / 2 + 1);
    for e in ordered {
        match out.last_mut() {
            Some((_, end @ None)) if e.flags & NFT_SET_ELEM_INTERVAL_END != 0 => *end = Some(e),
            _ => out.push((e, None)),
        }
    }
    out
}

fn end_first(e: &SetElem) -> bool {
    e.flags & NFT_SET_ELEM_INTERVAL_END == 0
}

/// The units to delete and to add to turn `have` into `want`.
fn unit_diff<'a>(set: &NftSet, have: &'a [SetElem], want: &'a [SetElem]) -> (Vec<Unit<'a>>, Vec<Unit<'a>>) {
    use std::collections::HashSet;
    let (have, want) = (units(set, have), units(set, want));
    let had: HashSet<&Unit> = have.iter().collect();
    let wanted: HashSet<&Unit> = want.iter().collect();
    let gone = have.iter().filter(|u| !wanted.contains(u)).copied().collect();
    let new = want.iter().filter(|u| !had.contains(u)).copied().collect();
    (gone, new)
}

fn flatten(units: &[Unit]) -> Vec<SetElem> {
    units.iter().flat_map(|(a, b)| std::iter::once(*a).chain(*b)).cloned().collect()
}

fn same_set(have: &NftSet, want: &NftSet) -> bool {
    (have.flags, have.key_type, have.key_len, &have.fields) == (want.flags, want.key_type, want.key_len, &want.fields)
}

/// Every rule of ours in the table, in nft syntax: what the kernel holds, as it holds it.
fn lines(state: &TableState) -> Vec<String> {
    state.rules().filter(|(_, r)| is_ours(r)).map(|(_, r)| text::rule(r)).collect()
}

/// Refuses a table by our name that we did not make.
fn must_be_ours(state: &TableState) -> Result<(), BackendError> {
    if state.exists && !state.ours() {
        return Err(BackendError::NotOurs {
            what: place_name(state.spec),
            hint:
                "rename or delete it (nft delete table inet egress_guard) if it is yours, or use --target docker-user",
        });
    }
    Ok(())
}

/// Adds to `batch` what makes our table hold `plan`: nothing when it already does. The state
/// must hold the elements `elems_needed` names. A new table is written whole; a new chain or
/// set, or one of another type, rebuilds it (delete and create in one batch, the sets' Docker
/// content carried over); otherwise only what changed is sent: a chain's rules refilled,
/// elements added and deleted one by one (deletions first), the digest rule replaced.
pub fn sync(batch: &mut BatchBuilder, state: &TableState, plan: &TablePlan) -> Result<Step, BackendError> {
    must_be_ours(state)?;
    let mut step = Step::unchanged(place_name(plan.spec));
    if !state.exists || !shape_differences(state, plan).is_empty() {
        if state.exists {
            delete_table(batch, plan.spec)?;
            step.removed = lines(state);
        }
        let mut plan = carry_docker_sets(state, plan);
        stamp_digest(&mut plan, batch.genid());
        write_table(batch, &plan)?;
        step.change = Change::Written;
        let texts =
            plan.sets.iter().map(|s| &s.text).chain(plan.chains.iter().flat_map(|c| c.rules.iter().map(|r| &r.text)));
        step.added = texts.map(|t| RuleText { iptables: None, nft: t.clone() }).collect();
        return Ok(step);
    }
    let mut refilled = false;
    for (n, chain) in plan.chains.iter().enumerate() {
        let Some((_, rules)) = state.chain(chain.name) else { continue };
        let first = n == 0 && state.chains.first().is_some_and(|(def, _)| def.name == chain.name);
        let (have, have_digest) = without_digest(rules, state.digest().filter(|_| first));
        let (want, _) = without_digest_plan(&chain.rules);
        let same = have.len() == want.len() && want.iter().zip(&have).all(|(p, r)| p.matches(r));
        if same {
            continue;
        }
        // Our own chain: emptied and refilled in the same batch, so no packet sees it half.
        let rule = NftRule { handle: None, ..chain.rules[0].to_rule(chain.name) };
        batch.push(format!("DELRULE {} {} (all)", place_name(plan.spec), chain.name), |seq| rule.flush_msg(seq));
        step.removed.extend(rules.iter().map(text::rule));
        for r in &chain.rules {
            let r = if is_digest(Some(&r.userdata)) { r.stamped(batch.genid()) } else { r.clone() };
            let rule = r.to_rule(chain.name);
            batch.push(format!("NEWRULE {} {}", place_name(plan.spec), chain.name), |seq| {
                rule.new_msg(seq, Position::End)
            });
            step.added.push(RuleText { iptables: None, nft: r.text.clone() });
        }
        // Only the chain that holds the digest brings a new one with its rules.
        refilled |= first && (have_digest.is_some() || plan.digest().is_some());
    }
    for s in &plan.sets {
        let Some((_, Some(have))) = state.set(&s.set.name) else { continue };
        if s.filler == Filler::Docker && !plan.live {
            continue;
        }
        let (gone, new) = unit_diff(&s.set, have, &s.elems);
        let what = format!("inet {} set {}", plan.spec.name, s.set.name);
        if !gone.is_empty() {
            step.removed.push(elements_text(plan.spec.name, &s.set, "delete", &gone));
            for make in s.set.del_exact_msgs(&flatten(&gone)) {
                batch.push(format!("DELSETELEM {what}"), make);
            }
        }
        if !new.is_empty() {
            step.added.push(RuleText { iptables: None, nft: elements_text(plan.spec.name, &s.set, "add", &new) });
            for make in s.set.elems_msgs(&flatten(&new)) {
                batch.push(format!("NEWSETELEM {what}"), make);
            }
        }
    }
    if !refilled {
        if let Some(want) = plan.digest() {
            let chain = plan.chains[0].name;
            // Whenever this batch writes our table, the stamp follows the generation it makes.
            let writing = !batch_is_unchanged(&step) || !batch.is_empty();
            let want = want.stamped(batch.genid());
            let rule = want.to_rule(chain);
            match state.digest() {
                Some(have) if want.matches(have) && !writing => {}
                Some(have) => {
                    let handle = have.handle.ok_or(NlError::Malformed("a rule without a handle"))?;
                    batch.push(format!("NEWRULE {} {chain} (replace)", place_name(plan.spec)), |seq| {
                        rule.replace_msg(seq, handle)
                    });
                    step.added.push(RuleText { iptables: None, nft: want.text.clone() });
                }
                None => {
                    batch.push(format!("NEWRULE {} {chain}", place_name(plan.spec)), |seq| {
                        rule.new_msg(seq, Position::End)
                    });
                    step.added.push(RuleText { iptables: None, nft: want.text.clone() });
                }
            }
        }
    }
    if !batch_is_unchanged(&step) {
        step.change = Change::Written;
    }
    Ok(step)
}

fn batch_is_unchanged(step: &Step) -> bool {
    step.added.is_empty() && step.removed.is_empty()
}

/// The plan with its digest rule stamped for a batch against `genid`.
fn stamp_digest(plan: &mut TablePlan, genid: u32) {
    for r in plan.chains.iter_mut().flat_map(|c| c.rules.iter_mut()) {
        if is_digest(Some(&r.userdata)) {
            *r = r.stamped(genid);
        }
    }
}

/// The chain's rules without the digest rule.
fn without_digest<'a>(rules: &'a [NftRule], digest: Option<&NftRule>) -> (Vec<&'a NftRule>, Option<&'a NftRule>) {
    let is = |r: &NftRule| digest.is_some_and(|d| d.handle == r.handle);
    (rules.iter().filter(|r| !is(r)).collect(), rules.iter().find(|r| is(r)))
}

fn without_digest_plan(rules: &[layout::RulePlan]) -> (Vec<&layout::RulePlan>, Option<&layout::RulePlan>) {
    let is = |r: &layout::RulePlan| is_digest(Some(&r.userdata));
    (rules.iter().filter(|r| !is(r)).collect(), rules.iter().find(|r| is(r)))
}

/// The plan with its Docker sets holding what the kernel's do, where the plan does not know
/// what Docker runs: a rebuild by `apply` keeps watch's work.
fn carry_docker_sets(state: &TableState, plan: &TablePlan) -> TablePlan {
    let mut plan = plan.clone();
    if plan.live {
        return plan;
    }
    for s in plan.sets.iter_mut().filter(|s| s.filler == Filler::Docker) {
        if let Some((def, Some(elems))) = state.set(&s.set.name) {
            if same_set(def, &s.set) {
                s.elems = elems.clone();
            }
        }
    }
    plan
}

/// `add element inet egress_guard allow4 { 198.51.100.7, … }`, the first elements shown.
fn elements_text(table: &str, set: &NftSet, op: &str, units: &[Unit]) -> String {
    const SHOWN: usize = 16;
    let mut shown: Vec<String> = units.iter().take(SHOWN).map(|u| layout::show_unit(set, u.0, u.1)).collect();
    if units.len() > SHOWN {
        shown.push(format!("… ({} more)", units.len() - SHOWN));
    }
    format!("{op} element inet {table} {} {{ {} }}", set.name, shown.join(", "))
}

/// Adds to `batch` the deletion of our table, if it exists.
pub fn remove(batch: &mut BatchBuilder, state: &TableState) -> Result<Step, BackendError> {
    must_be_ours(state)?;
    let mut step = Step::unchanged(place_name(state.spec));
    if state.exists {
        delete_table(batch, state.spec)?;
        step.change = Change::Written;
        step.removed = lines(state);
    }
    Ok(step)
}

fn rustables_table(spec: Spec) -> Table {
    Table::new(ProtocolFamily::Inet).with_name(spec.name)
}

fn delete_table(batch: &mut BatchBuilder, spec: Spec) -> Result<(), NlError> {
    let mut rb = rustables::Batch::new();
    rb.add(&rustables_table(spec), MsgType::Del);
    rustables_bridge::splice(batch, &rb.finalize(), &place_name(spec))
}

/// The whole table, in dependency order: table, chains, sets, elements, rules.
fn write_table(batch: &mut BatchBuilder, plan: &TablePlan) -> Result<(), NlError> {
    let mut rb = rustables::Batch::new();
    // The comment as table userdata: kernels without NFTA_TABLE_USERDATA ignore it.
    let spec = plan.spec;
    let mut table = rustables_table(spec).with_userdata(comment_udata(COMMENT));
    if spec.owner {
        table = table.with_flags(NFT_TABLE_F_OWNER);
    }
    rb.add(&table, MsgType::Add);
    rustables_bridge::splice(batch, &rb.finalize(), &place_name(spec))?;
    for chain in &plan.chains {
        let hook = match chain.hook {
            NF_INET_LOCAL_IN => HookClass::In,
            NF_INET_PRE_ROUTING => HookClass::PreRouting,
            _ => HookClass::Forward,
        };
        let kind = if chain.kind == "nat" { ChainType::Nat } else { ChainType::Filter };
        let base = Chain::new(&table)
            .with_name(chain.name)
            .with_hook(Hook::new(hook, chain.priority))
            .with_type(kind)
            .with_policy(ChainPolicy::Accept);
        let mut rb = rustables::Batch::new();
        rb.add(&base, MsgType::Add);
        rustables_bridge::splice(batch, &rb.finalize(), &format!("{} {}", place_name(spec), chain.name))?;
    }
    for (id, s) in (1..).zip(&plan.sets) {
        let what = format!("inet {} set {}", spec.name, s.set.name);
        batch.push(format!("NEWSET {what}"), |seq| s.set.new_msg(seq, id));
        for make in s.set.elems_msgs(&s.elems) {
            batch.push(format!("NEWSETELEM {what}"), make);
        }
    }
    // Rules as planned (or as a snapshot had them): sync stamps the digest rule first.
    for chain in &plan.chains {
        for r in &chain.rules {
            let rule = r.to_rule(chain.name);
            batch.push(format!("NEWRULE {} {}", place_name(spec), chain.name), |seq| rule.new_msg(seq, Position::End));
        }
    }
    Ok(())
}

/// Compares our table with `plan`.
pub fn judge(state: &TableState, plan: &TablePlan, families: &[Family]) -> PlaceReport {
    // The digest rule is bookkeeping, not a rule an admin needs to see counted.
    let rules: Vec<RuleReport> = state
        .rules()
        .filter(|(_, r)| is_ours(r) && !is_digest(r.userdata.as_deref()))
        .map(|(_, r)| RuleReport { rule: text::rule(r), packets: r.packets() })
        .collect();
    let refused = state.rules().filter(|(_, r)| is_ours(r) && refuses(r)).map(|(_, r)| r.packets()).sum();
    let diffs = differences(state, plan);
    let (verdict, reason) = if !state.exists {
        (Verdict::Absent, Some("the table does not exist".to_string()))
    } else if !state.ours() {
        (Verdict::Absent, Some("a table by our name that egress-guard did not make".to_string()))
    } else if rules.is_empty() {
        (Verdict::Absent, Some("no egress-guard rules".to_string()))
    } else if !diffs.is_empty() {
        (Verdict::Drifted, Some(diffs.join("; ")))
    } else {
        (Verdict::InPlace, None)
    };
    PlaceReport {
        place: place_name(plan.spec),
        backend: if plan.spec.owner { "watch" } else { "table" },
        families: families.to_vec(),
        exists: state.exists,
        // A base chain sees every packet of its hook once it exists.
        reached: state.chain(FORWARD).is_some_and(|(def, _)| def.hook.is_some()),
        // The shield goes with watch; only the guard must be there.
        required: !plan.spec.owner,
        verdict,
        reason,
        foreign_rules: state.rules().filter(|(_, r)| !is_ours(r)).count(),
        rules,
        refused,
        bypass: Vec::new(),
    }
}

/// Whether a rule ends in a refusal: `reject …` or `drop`.
fn refuses(rule: &NftRule) -> bool {
    matches!(rule.exprs.last(), Some(Expr::Reject { .. } | Expr::Verdict { code: NF_DROP, .. }))
}

impl Backend for OwnTable {
    fn describe(&self) -> String {
        let f: Vec<&str> = self.families.iter().map(|f| f.nft_name()).collect();
        format!("table {} ({})", self.spec.name, f.join(", "))
    }

    fn sync(&self, nl: &mut Netlink, batch: &mut BatchBuilder, policy: &Policy) -> Result<Vec<Step>, BackendError> {
        let mut state = TableState::read(nl, self.spec)?;
        if let Some(port) = state.owner.filter(|p| *p != nl.port_id()) {
            return Err(BackendError::HeldByOther { what: place_name(self.spec), port });
        }
        let plan = plan(policy, &self.families, self.spec);
        let mut wanted = elems_needed(&state, &plan, false, batch.genid());
        if !shape_differences(&state, &plan).is_empty() && !plan.live {
            // A rebuild carries the Docker sets' content over.
            wanted.extend(plan.sets.iter().filter(|s| s.filler == Filler::Docker).map(|s| s.set.name.clone()));
        }
        state.load_elems(nl, &wanted)?;
        Ok(vec![sync(batch, &state, &plan)?])
    }

    fn remove(&self, nl: &mut Netlink, batch: &mut BatchBuilder) -> Result<Vec<Step>, BackendError> {
        let state = TableState::read(nl, self.spec)?;
        Ok(vec![remove(batch, &state)?])
    }

    fn judge(&self, nl: &mut Netlink, policy: &Policy) -> Result<Vec<PlaceReport>, BackendError> {
        let mut state = TableState::read(nl, self.spec)?;
        let plan = plan(policy, &self.families, self.spec);
        state.load_elems(nl, &elems_needed(&state, &plan, true, 0))?;
        Ok(vec![judge(&state, &plan, &self.families)])
    }

    fn snapshot(&self, nl: &mut Netlink) -> Result<Vec<PlaceSnapshot>, BackendError> {
        let mut state = TableState::read(nl, self.spec)?;
        state.load_kept_elems(nl)?;
        if state.exists && !state.ours() {
            // Not ours: nothing of ours there to keep (and a restore will refuse to touch it).
            return Ok(vec![PlaceSnapshot::Table {
                name: self.spec.name.into(),
                exists: false,
                chains: vec![],
                sets: vec![],
            }]);
        }
        Ok(vec![snapshot_of(&state)])
    }

    fn restore(
        &self,
        nl: &mut Netlink,
        batch: &mut BatchBuilder,
        snapshot: &[PlaceSnapshot],
    ) -> Result<Vec<Step>, BackendError> {
        let Some(then) =
            snapshot.iter().find(|p| matches!(p, PlaceSnapshot::Table { name, .. } if name == self.spec.name))
        else {
            return Ok(Vec::new());
        };
        let mut state = TableState::read(nl, self.spec)?;
        must_be_ours(&state)?;
        state.load_kept_elems(nl)?;
        let mut step = Step::unchanged(place_name(self.spec));
        if snapshot_of(&state) == *then {
            // Nothing to say about a table that neither was nor is there.
            return Ok(if state.exists { vec![step] } else { Vec::new() });
        }
        if state.exists {
            delete_table(batch, self.spec)?;
            step.removed = lines(&state);
        }
        if let Some(plan) = plan_of(then, self.spec)? {
            write_table(batch, &plan)?;
            let texts = plan.chains.iter().flat_map(|c| c.rules.iter().map(|r| r.text.clone()));
            step.added = texts.map(|nft| RuleText { iptables: None, nft }).collect();
        }
        step.change = Change::Written;
        Ok(vec![step])
    }
}

/// Our table as a snapshot keeps it (rules without counters: a restore starts them at zero).
fn snapshot_of(state: &TableState) -> PlaceSnapshot {
    let chains = state
        .chains
        .iter()
        .filter_map(|(def, rules)| {
            let (hook, priority) = def.hook?;
            let rules = rules
                .iter()
                .map(|r| snapshot::rule_to_hex(&NftRule { handle: None, exprs: r.shape(), ..r.clone() }))
                .collect();
            Some(ChainSnapshot { name: def.name.clone(), hook, priority, rules })
        })
        .collect();
    let sets = state
        .sets
        .iter()
        .map(|(set, elems)| (set, if layout::is_dns_set(&set.name) { &None } else { elems }))
        // The forwarder's grants expire: a restore would make them last, so none are kept.
        .map(|(set, elems)| SetSnapshot {
            name: set.name.clone(),
            flags: set.flags,
            key_type: set.key_type,
            key_len: set.key_len,
            fields: set.fields.clone(),
            elems: elems
                .iter()
                .flatten()
                .map(|e| (snapshot::hex(&e.key), e.key_end.as_deref().map(snapshot::hex), e.flags))
                .collect(),
        })
        .collect();
    PlaceSnapshot::Table { name: state.spec.name.into(), exists: state.exists, chains, sets }
}

/// What writes the table of a snapshot back; `None` when it had no table.
fn plan_of(then: &PlaceSnapshot, spec: Spec) -> Result<Option<TablePlan>, NlError> {
    let PlaceSnapshot::Table { exists: true, chains, sets, .. } = then else { return Ok(None) };
    let bad = || NlError::Malformed("a snapshot's table holds something we do not write");
    let mut plan = TablePlan { spec, sets: Vec::new(), chains: Vec::new(), live: true };
    for c in chains {
        let name = layout::CHAINS.into_iter().find(|n| *n == c.name).ok_or_else(bad)?;
        let rules = c
            .rules
            .iter()
            .map(|hex| {
                let rule = snapshot::rule_from_hex(hex)?;
                let text = text::rule(&rule);
                let userdata = rule.userdata.unwrap_or_else(|| comment_udata(COMMENT));
                Ok(layout::RulePlan { table: spec.name, exprs: rule.exprs, userdata, text })
            })
            .collect::<Result<Vec<_>, NlError>>()?;
        let (kind, _) = layout::ChainPlan::shape(name, spec);
        plan.chains.push(layout::ChainPlan { name, hook: c.hook, kind, priority: c.priority, rules });
    }
    for s in sets {
        let set = NftSet {
            family: NFPROTO_INET,
            table: spec.name.into(),
            name: s.name.clone(),
            flags: s.flags,
            key_type: s.key_type,
            key_len: s.key_len,
            fields: s.fields.clone(),
        };
        let key = |h: &str| snapshot::unhex(h).ok_or(NlError::Malformed("a snapshot's set key is not hex"));
        let elems = s
            .elems
            .iter()
            .map(|(k, end, flags)| {
                Ok(SetElem { key: key(k)?, key_end: end.as_deref().map(key).transpose()?, flags: *flags })
            })
            .collect::<Result<Vec<_>, NlError>>()?;
        let mut elems = elems;
        elems.sort();
        plan.sets.push(layout::SetPlan { set, elems, text: String::new(), filler: Filler::Policy });
    }
    Ok(Some(plan))
}

#[cfg(test)]
mod tests;
