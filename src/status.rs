//! What is in place, read from the kernel: for each place (a family's DOCKER-USER, our table),
//! whether it exists and is reached, our rules with their counters, how many foreign rules share
//! it, and a verdict. `check` is this report's exit status.

use std::fmt::Write;

use crate::ipt::{codec, Family};
use crate::nft::expr::Expr;
use crate::nft::rule::NftRule;
use crate::plan;
use crate::policy::Policy;
use crate::target::detect::Choice;
use crate::target::docker_user::{self, ChainState, CHAIN, TABLE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Our rules are exactly the plan and packets reach them.
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
    /// As an admin reads it (`iptables -S` or nft syntax); `None` when changed into a shape we
    /// don't write.
    pub line: Option<String>,
    /// Packets the rule matched (for a reject: rejected).
    pub packets: u64,
}

/// One place rules can live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceStatus {
    /// "ip filter DOCKER-USER", "inet egress_guard".
    pub place: String,
    pub exists: bool,
    /// Whether packets get there (FORWARD jumps to DOCKER-USER; our base chain is hooked).
    pub reached: bool,
    pub ours: Vec<OurRule>,
    pub foreign: usize,
    pub verdict: Verdict,
    /// Why the verdict is not "in place", in a few words.
    pub reason: Option<String>,
}

impl PlaceStatus {
    /// Compares one family's DOCKER-USER with the plan (pure: the state was read by the caller).
    pub fn docker_user(state: &ChainState, policy: &Policy) -> PlaceStatus {
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
            (Verdict::Absent, Some("the chain does not exist".to_string()))
        } else if ours.is_empty() && !planned.is_empty() {
            (Verdict::Absent, Some("no egress-guard rules".to_string()))
        } else if !state.matches(&planned) {
            (Verdict::Drifted, Some(drift(state, &planned)))
        } else if !state.forward_jumps {
            (Verdict::Drifted, Some(format!("FORWARD does not jump to {CHAIN}: the guard is inert")))
        } else {
            (Verdict::InPlace, None)
        };
        PlaceStatus {
            place: format!("{} {TABLE} {CHAIN}", family.nft_name()),
            exists: state.exists(),
            reached: state.forward_jumps,
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

/// The whole picture: the chosen target and every place that matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub choice: Choice,
    /// Places that must hold the guard for the chosen target.
    pub required: Vec<PlaceStatus>,
    /// Places that exist besides (e.g. ip6 DOCKER-USER, or our table from an earlier `both`).
    pub optional: Vec<PlaceStatus>,
}

impl Report {
    /// Builds the docker-user part of a report from both families' chains.
    pub fn docker_user_places(states: &[ChainState], policy: &Policy) -> (Vec<PlaceStatus>, Vec<PlaceStatus>) {
        let mut required = Vec::new();
        let mut optional = Vec::new();
        for s in states {
            let place = PlaceStatus::docker_user(s, policy);
            // Docker always has the IPv4 chain; the IPv6 one only with ip6tables enabled.
            if s.family == Family::V4 {
                required.push(place);
            } else {
                optional.push(place);
            }
        }
        (required, optional)
    }

    /// Everything that counts: required places, and optional ones that exist.
    fn considered(&self) -> impl Iterator<Item = &PlaceStatus> {
        self.required.iter().chain(self.optional.iter().filter(|p| p.exists))
    }

    pub fn verdict(&self) -> Verdict {
        let verdicts: Vec<Verdict> = self.considered().map(|p| p.verdict).collect();
        if verdicts.iter().all(|v| *v == Verdict::InPlace) {
            Verdict::InPlace
        } else if verdicts.iter().all(|v| *v == Verdict::Absent) {
            Verdict::Absent
        } else {
            Verdict::Drifted
        }
    }

    /// One line for `check`: the verdict and the first reason, or what is guarded.
    pub fn summary(&self) -> String {
        let verdict = self.verdict();
        if verdict != Verdict::InPlace {
            if let Some(p) = self.considered().find(|p| p.verdict != Verdict::InPlace) {
                return format!("{}: {}: {}", verdict.word(), p.place, p.reason.as_deref().unwrap_or("differs"));
            }
        }
        let places: Vec<&str> = self.considered().map(|p| p.place.as_str()).collect();
        format!("{}: guarding {}", verdict.word(), places.join(" and "))
    }

    pub fn human(&self) -> String {
        let mut s = format!(
            "egress-guard {} (target {}: {})\n",
            self.verdict().word(),
            self.choice.target.word(),
            self.choice.why
        );
        for p in self.required.iter().chain(&self.optional) {
            let _ = write!(s, "\n{}: ", p.place);
            if !p.exists {
                let _ = writeln!(s, "missing (not covered)");
                continue;
            }
            let reach = if p.reached { "reached" } else { "NOT reached (inert)" };
            let _ = writeln!(s, "{}, {reach}, {} foreign rule(s)", p.verdict.word(), p.foreign);
            for r in &p.ours {
                let line = r.line.as_deref().unwrap_or("(a rule of ours changed by hand)");
                let _ = writeln!(s, "  {line}\n    matched {} packet(s)", r.packets);
            }
            if let Some(reason) = &p.reason {
                let _ = writeln!(s, "  note: {reason}");
            }
        }
        s
    }

    pub fn json(&self) -> String {
        let places: Vec<String> = self.required.iter().chain(&self.optional).map(place_json).collect();
        format!(
            "{{\"target\":{},\"why\":{},\"verdict\":{},\"places\":[{}]}}",
            json_str(self.choice.target.word()),
            json_str(&self.choice.why),
            json_str(self.verdict().word()),
            places.join(",")
        )
    }
}

fn place_json(p: &PlaceStatus) -> String {
    let rules: Vec<String> = p
        .ours
        .iter()
        .map(|r| {
            format!("{{\"rule\":{},\"packets\":{}}}", r.line.as_deref().map_or("null".into(), json_str), r.packets)
        })
        .collect();
    format!(
        "{{\"place\":{},\"exists\":{},\"reached\":{},\"verdict\":{},\"reason\":{},\"foreign_rules\":{},\"rules\":[{}]}}",
        json_str(&p.place),
        p.exists,
        p.reached,
        json_str(p.verdict.word()),
        p.reason.as_deref().map_or("null".into(), json_str),
        p.foreign,
        rules.join(",")
    )
}

/// A JSON string literal (the few escapes our text can need).
pub fn json_str(s: &str) -> String {
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
    use crate::target::Target;

    fn planned_state(family: Family, forward_jumps: bool, keep: usize) -> ChainState {
        let mut rules: Vec<NftRule> = docker_user::encode(family, &plan::docker_user_rules(&Policy::default(), family));
        rules.truncate(keep);
        ChainState { family, rules: Some(rules), forward_jumps }
    }

    fn report(states: Vec<ChainState>) -> Report {
        let (required, optional) = Report::docker_user_places(&states, &Policy::default());
        Report { choice: Choice { target: Target::DockerUser, why: "test".into() }, required, optional }
    }

    #[test]
    fn verdicts() {
        let v = |states: Vec<ChainState>| report(states).verdict();
        let missing = |family| ChainState { family, rules: None, forward_jumps: false };
        assert_eq!(v(vec![planned_state(Family::V4, true, 2), planned_state(Family::V6, true, 2)]), Verdict::InPlace);
        assert_eq!(v(vec![planned_state(Family::V4, true, 2), missing(Family::V6)]), Verdict::InPlace);
        assert_eq!(v(vec![planned_state(Family::V4, true, 1), planned_state(Family::V6, true, 2)]), Verdict::Drifted);
        assert_eq!(v(vec![planned_state(Family::V4, false, 2), planned_state(Family::V6, true, 2)]), Verdict::Drifted);
        assert_eq!(v(vec![planned_state(Family::V4, true, 0), planned_state(Family::V6, true, 0)]), Verdict::Absent);
        assert_eq!(v(vec![missing(Family::V4), planned_state(Family::V6, true, 2)]), Verdict::Drifted);
    }

    #[test]
    fn json_escapes_and_nulls() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        let json = report(vec![planned_state(Family::V4, false, 2)]).json();
        assert!(json.starts_with("{\"target\":\"docker-user\",\"why\":\"test\",\"verdict\":\"drifted\""), "{json}");
        assert!(json.contains("\"reached\":false"), "{json}");
    }
}
