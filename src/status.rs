//! What is in place, read from the kernel: per family, whether DOCKER-USER exists and is
//! reached from FORWARD, our rules as `iptables -S` lines with their counters, how many
//! foreign rules share the chain, and a verdict. `check` is this report's exit status.

use std::fmt::Write;

use crate::ipt::{codec, Family};
use crate::nft::expr::Expr;
use crate::nft::rule::NftRule;
use crate::plan;
use crate::policy::Policy;
use crate::target::docker_user::{self, ChainState, CHAIN};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Our rules are exactly the plan and FORWARD reaches them.
    InPlace,
    /// Something of ours is there but differs from the plan, or is not reached.
    Drifted,
    /// None of our rules are there.
    Absent,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::InPlace => "in place",
            Verdict::Drifted => "drifted",
            Verdict::Absent => "absent",
        }
    }
}

/// One of our rules as found in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurRule {
    /// `iptables -S` form, or `None` when the rule was changed into something we don't write.
    pub line: Option<String>,
    /// Packets the rule matched, i.e. rejected.
    pub packets: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyStatus {
    pub family: Family,
    pub chain_exists: bool,
    pub forward_jumps: bool,
    pub ours: Vec<OurRule>,
    pub foreign: usize,
    pub verdict: Verdict,
    /// Why the verdict is not "in place", in a few words.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub families: Vec<FamilyStatus>,
}

impl FamilyStatus {
    /// Compares one family's chain with the plan (pure: the state was read by the caller).
    pub fn judge(state: &ChainState, policy: &Policy) -> FamilyStatus {
        let family = state.family;
        let planned = docker_user::encode(family, &plan::docker_user_rules(policy, family));
        let ours: Vec<OurRule> = state
            .ours()
            .iter()
            .map(|r| OurRule {
                line: codec::decode(family, &r.exprs).map(|rule| rule.to_iptables(family, CHAIN)),
                packets: r.packets(),
            })
            .collect();
        let (verdict, reason) = if !state.exists() {
            (Verdict::Absent, Some(format!("{} filter {CHAIN} does not exist", family.nft_name())))
        } else if ours.is_empty() {
            (Verdict::Absent, Some("no egress-guard rules".to_string()))
        } else if !state.matches(&planned) {
            (Verdict::Drifted, Some(drift(state, &planned)))
        } else if !state.forward_jumps {
            (Verdict::Drifted, Some(format!("FORWARD does not jump to {CHAIN}: the guard is inert")))
        } else {
            (Verdict::InPlace, None)
        };
        FamilyStatus {
            family,
            chain_exists: state.exists(),
            forward_jumps: state.forward_jumps,
            foreign: state.foreign_count(),
            ours,
            verdict,
            reason,
        }
    }
}

/// Says how our rules differ from the plan: how many are missing, changed or extra.
fn drift(state: &ChainState, planned: &[NftRule]) -> String {
    let ours: Vec<Vec<Expr>> = state.ours().iter().map(|r| r.shape()).collect();
    let planned: Vec<Vec<Expr>> = planned.iter().map(|r| r.shape()).collect();
    let missing = planned.iter().filter(|p| !ours.contains(p)).count();
    let extra = ours.iter().filter(|o| !planned.contains(o)).count();
    match missing.max(extra) {
        0 => "our rules are out of order".to_string(),
        n => format!("{n} of {} rules differ from the policy", planned.len()),
    }
}

impl Report {
    pub fn new(states: &[ChainState], policy: &Policy) -> Report {
        Report { families: states.iter().map(|s| FamilyStatus::judge(s, policy)).collect() }
    }

    /// In place when every family that has DOCKER-USER is in place, and IPv4 has it.
    pub fn verdict(&self) -> Verdict {
        let present: Vec<&FamilyStatus> = self.families.iter().filter(|f| f.chain_exists).collect();
        let v4_missing = self.families.iter().any(|f| f.family == Family::V4 && !f.chain_exists);
        if v4_missing || present.iter().all(|f| f.verdict == Verdict::Absent) {
            Verdict::Absent
        } else if present.iter().all(|f| f.verdict == Verdict::InPlace) {
            Verdict::InPlace
        } else {
            Verdict::Drifted
        }
    }

    /// One line for `check`: the verdict and the first reason.
    pub fn summary(&self) -> String {
        let why = self
            .families
            .iter()
            .filter(|f| f.chain_exists || f.family == Family::V4)
            .find_map(|f| f.reason.as_ref().map(|r| format!("{}: {r}", f.family.nft_name())));
        match why {
            Some(why) if self.verdict() != Verdict::InPlace => format!("{}: {why}", self.verdict().word()),
            _ => format!("{}: {}", self.verdict().word(), self.coverage()),
        }
    }

    fn coverage(&self) -> String {
        let covered: Vec<&str> =
            self.families.iter().filter(|f| f.verdict == Verdict::InPlace).map(|f| f.family.nft_name()).collect();
        format!("guarding {}", covered.join(" and "))
    }

    pub fn human(&self) -> String {
        let mut s = format!("egress-guard {} (target docker-user)\n", self.verdict().word());
        for f in &self.families {
            let _ = write!(s, "\n{} filter {CHAIN}: ", f.family.nft_name());
            if !f.chain_exists {
                let _ = writeln!(s, "missing ({} not covered)", f.family.nft_name());
                continue;
            }
            let jump = if f.forward_jumps { "reached from FORWARD" } else { "NOT reached from FORWARD (inert)" };
            let _ = writeln!(s, "{}, {jump}, {} foreign rule(s)", f.verdict.word(), f.foreign);
            for r in &f.ours {
                let line = r.line.as_deref().unwrap_or("(one of our rules, changed by hand)");
                let _ = writeln!(s, "  {line}\n    rejected {} packet(s)", r.packets);
            }
            if let Some(reason) = &f.reason {
                let _ = writeln!(s, "  note: {reason}");
            }
        }
        s
    }

    pub fn json(&self) -> String {
        let families: Vec<String> = self.families.iter().map(family_json).collect();
        format!(
            "{{\"target\":\"docker-user\",\"verdict\":{},\"families\":[{}]}}",
            json_str(self.verdict().word()),
            families.join(",")
        )
    }
}

fn family_json(f: &FamilyStatus) -> String {
    let rules: Vec<String> = f
        .ours
        .iter()
        .map(|r| format!("{{\"rule\":{},\"packets\":{}}}", r.line.as_deref().map_or("null".into(), json_str), r.packets))
        .collect();
    format!(
        "{{\"family\":{},\"chain_exists\":{},\"forward_jumps\":{},\"verdict\":{},\"reason\":{},\"foreign_rules\":{},\"rules\":[{}]}}",
        json_str(f.family.nft_name()),
        f.chain_exists,
        f.forward_jumps,
        json_str(f.verdict.word()),
        f.reason.as_deref().map_or("null".into(), json_str),
        f.foreign,
        rules.join(",")
    )
}

/// A JSON string literal (the few escapes our text can need).
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned_state(family: Family, forward_jumps: bool, keep: usize) -> ChainState {
        let mut rules: Vec<NftRule> = docker_user::encode(family, &plan::docker_user_rules(&Policy::default(), family));
        rules.truncate(keep);
        ChainState { family, rules: Some(rules), forward_jumps }
    }

    #[test]
    fn verdicts() {
        let p = Policy::default();
        let v = |states: Vec<ChainState>| Report::new(&states, &p).verdict();
        let missing = |family| ChainState { family, rules: None, forward_jumps: false };
        assert_eq!(v(vec![planned_state(Family::V4, true, 2), planned_state(Family::V6, true, 2)]), Verdict::InPlace);
        assert_eq!(v(vec![planned_state(Family::V4, true, 2), missing(Family::V6)]), Verdict::InPlace);
        assert_eq!(v(vec![planned_state(Family::V4, true, 1), planned_state(Family::V6, true, 2)]), Verdict::Drifted);
        assert_eq!(v(vec![planned_state(Family::V4, false, 2), planned_state(Family::V6, true, 2)]), Verdict::Drifted);
        assert_eq!(v(vec![planned_state(Family::V4, true, 0), planned_state(Family::V6, true, 0)]), Verdict::Absent);
        assert_eq!(v(vec![missing(Family::V4), planned_state(Family::V6, true, 2)]), Verdict::Absent);
    }

    #[test]
    fn json_escapes_and_nulls() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        let report = Report::new(&[planned_state(Family::V4, false, 2)], &Policy::default());
        let json = report.json();
        assert!(json.starts_with("{\"target\":\"docker-user\",\"verdict\":\"drifted\""), "{json}");
        assert!(json.contains("\"forward_jumps\":false"), "{json}");
    }
}
