//! What is in place, judged: the places the chosen target uses, each with whether it exists and
//! is reached first, our rules and their counters, what bypasses them, and a verdict; places
//! no longer used that still hold something of ours. `check` is this report's exit status;
//! `status` prints it as text or as JSON (serde_json).

use std::fmt::Write;

use crate::backend::{PlaceReport, Target, Verdict};

/// The whole picture.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub target: Target,
    /// Why these places, one line per family.
    #[serde(serialize_with = "joined")]
    pub why: Vec<String>,
    /// Places the target uses.
    pub places: Vec<PlaceReport>,
    /// Places it does not use that still hold rules of ours (a target changed by hand).
    pub leftovers: Vec<PlaceReport>,
    /// A change made with `--confirm` that awaits confirmation.
    pub pending: Option<PendingStatus>,
    /// The running containers and what each may reach (`status`, `check`).
    pub docker: Option<DockerReport>,
}

/// The containers Docker runs and their effective allowances, or why Docker was not read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DockerReport {
    /// `/var/run/docker.sock`, or why it was not read.
    pub source: String,
    pub containers: Vec<crate::grants::ContainerView>,
    /// Malformed labels: the container or network gets nothing from them.
    pub problems: Vec<String>,
    #[serde(skip)]
    pub live: Option<std::sync::Arc<crate::grants::Live>>,
}

impl DockerReport {
    pub fn seen(endpoint: &crate::docker::Endpoint, live: crate::grants::Live) -> DockerReport {
        DockerReport {
            source: endpoint.socket.display().to_string(),
            containers: live.containers.clone(),
            problems: live.problems.clone(),
            live: Some(std::sync::Arc::new(live)),
        }
    }

    pub fn not_consulted(why: &str) -> DockerReport {
        DockerReport { source: why.to_string(), containers: Vec::new(), problems: Vec::new(), live: None }
    }

    fn text(&self, s: &mut String) {
        if self.live.is_none() {
            let _ = writeln!(s, "\ncontainers: not known ({})", self.source);
            return;
        }
        let _ = writeln!(s, "\ncontainers (from {}): {} running", self.source, self.containers.len());
        for c in &self.containers {
            let addrs: Vec<String> = c.addresses.iter().map(ToString::to_string).collect();
            let from = if c.from.is_empty() { String::new() } else { format!(" ({})", c.from.join(", ")) };
            let _ = writeln!(s, "  {} ({}) {}: {}{from}", c.name, c.id, addrs.join(" "), c.egress);
        }
        for p in &self.problems {
            let _ = writeln!(s, "  PROBLEM: {p}");
        }
    }
}

/// A change awaiting confirmation, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PendingStatus {
    /// "apply" or "remove".
    pub command: String,
    /// Seconds since the epoch.
    pub deadline: u64,
    pub seconds_left: u64,
    pub timer_pid: Option<u32>,
    /// False when the timer is gone (killed): nothing will roll the change back by itself.
    pub timer_running: bool,
}

impl PendingStatus {
    pub fn line(&self) -> String {
        if self.timer_running {
            format!(
                "a change ({}) awaits confirmation: rolled back in {} s unless `egress-guard confirm`",
                self.command, self.seconds_left
            )
        } else {
            let pid = self.timer_pid.map_or("?".into(), |p| p.to_string());
            format!(
                "a change ({}) awaits confirmation, but its rollback timer (pid {pid}) is gone: \
                 `egress-guard confirm` keeps it, `egress-guard rollback` takes it back",
                self.command
            )
        }
    }
}

fn joined<S: serde::Serializer>(why: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&why.join("; "))
}

/// `{ "verdict": …, …report }` as `status --json` prints it.
#[derive(serde::Serialize)]
struct Json<'a> {
    target: Target,
    #[serde(serialize_with = "joined")]
    why: &'a [String],
    verdict: Verdict,
    places: &'a [PlaceReport],
    leftovers: &'a [PlaceReport],
    pending: &'a Option<PendingStatus>,
    docker: &'a Option<DockerReport>,
}

impl Report {
    /// The places that must hold the guard.
    fn considered(&self) -> impl Iterator<Item = &PlaceReport> {
        self.places.iter().filter(|p| p.required)
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
            self.target.word(),
            self.why.join("; ")
        );
        for p in &self.places {
            place_text(&mut s, p, "");
        }
        for p in &self.leftovers {
            place_text(&mut s, p, " (no longer used: the next apply removes these)");
        }
        if let Some(d) = &self.docker {
            d.text(&mut s);
        }
        if let Some(p) = &self.pending {
            let _ = writeln!(s, "\n{}", p.line());
        }
        s
    }

    pub fn json(&self) -> String {
        let json = Json {
            target: self.target,
            why: &self.why,
            verdict: self.verdict(),
            places: &self.places,
            leftovers: &self.leftovers,
            pending: &self.pending,
            docker: &self.docker,
        };
        // Plain data (strings, numbers, bools): serialising it cannot fail.
        serde_json::to_string(&json).unwrap_or_default()
    }
}

fn place_text(s: &mut String, p: &PlaceReport, note: &str) {
    let _ = write!(s, "\n{}{note}: ", p.place);
    if !p.exists {
        let covered = if p.required { "missing (NOT covered)" } else { "missing (not needed: no addresses)" };
        let _ = writeln!(s, "{covered}");
        return;
    }
    let reach = if p.reached { "reached" } else { "NOT reached" };
    let _ = writeln!(s, "{}, {reach}, {} foreign rule(s)", p.verdict.word(), p.foreign_rules);
    let _ = writeln!(s, "  refused {} attempt(s) since the rules were written", p.refused);
    for r in &p.rules {
        let _ = writeln!(s, "  {}\n    matched {} packet(s)", r.rule, r.packets);
    }
    for b in &p.bypass {
        let _ = writeln!(s, "  bypassed by: {b}");
    }
    if let Some(reason) = &p.reason {
        let _ = writeln!(s, "  note: {reason}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::RuleReport;
    use crate::net::Family;

    fn place(verdict: Verdict, required: bool) -> PlaceReport {
        PlaceReport {
            place: "ip filter DOCKER-USER".into(),
            backend: "docker-user",
            families: vec![Family::V4],
            exists: true,
            reached: verdict == Verdict::InPlace,
            required,
            verdict,
            reason: (verdict != Verdict::InPlace).then(|| "test".into()),
            foreign_rules: 0,
            rules: vec![RuleReport { rule: "-A DOCKER-USER \"x\"".into(), packets: 3 }],
            refused: 3,
            bypass: vec![],
        }
    }

    fn report(places: Vec<PlaceReport>) -> Report {
        Report {
            target: Target::DockerUser,
            why: vec!["test".into()],
            places,
            leftovers: vec![],
            pending: None,
            docker: None,
        }
    }

    #[test]
    fn verdicts() {
        use Verdict::*;
        let v = |places| report(places).verdict();
        assert_eq!(v(vec![place(InPlace, true), place(InPlace, true)]), InPlace);
        assert_eq!(v(vec![place(InPlace, true), place(Absent, false)]), InPlace, "not required");
        assert_eq!(v(vec![place(InPlace, true), place(Drifted, true)]), Drifted);
        assert_eq!(v(vec![place(Absent, true), place(Absent, true)]), Absent);
        assert_eq!(v(vec![place(Absent, true), place(InPlace, true)]), Drifted);
    }

    #[test]
    fn json_is_what_serde_json_reads_back() {
        let json = report(vec![place(Verdict::Drifted, true)]).json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["target"], "docker-user");
        assert_eq!(v["verdict"], "drifted");
        assert_eq!(v["places"][0]["reached"], false);
        assert_eq!(v["places"][0]["families"][0], "ipv4");
        assert_eq!(v["places"][0]["rules"][0]["rule"], "-A DOCKER-USER \"x\"");
        assert_eq!(v["places"][0]["refused"], 3);
        assert!(report(vec![place(Verdict::InPlace, true)]).human().contains("refused 3 attempt(s) since"));
    }
}
