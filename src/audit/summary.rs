//! `log --summary`: the top containers and destinations in a JSON-lines file that `log --output`
//! wrote (attempts count one, summaries their count, overflows only in the total), with what
//! was lost. Lines it cannot read are counted, not fatal: a file cut by a crash still sums.
//! Pure: the caller reads the files.

use std::collections::HashMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::record::{count, short_id};

/// How many containers and destinations are listed.
pub const TOP: usize = 10;

/// The fields of a record `--summary` reads; the rest are ignored.
#[derive(Debug, Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    time: Option<String>,
    since: Option<String>,
    count: Option<u64>,
    container: Option<String>,
    id: Option<String>,
    src: Option<String>,
    dst: Option<String>,
    proto: Option<String>,
    dport: Option<u16>,
    icmp_type: Option<u8>,
}

/// Who, as the summary lists them: a container by id, or an unnamed source address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Source {
    Container { id: String, name: String },
    Address(String),
}

#[derive(Debug, Default)]
pub struct Tally {
    pub attempts: u64,
    /// Of `attempts`, those only an overflow line counted (no container or destination).
    pub unlisted: u64,
    pub lost: u64,
    pub unreadable_lines: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    sources: HashMap<Source, u64>,
    destinations: HashMap<String, u64>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct Entry {
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst: Option<String>,
    count: u64,
}

#[derive(Serialize)]
struct Json<'a> {
    attempts: u64,
    unlisted: u64,
    lost: u64,
    unreadable_lines: u64,
    first: Option<&'a str>,
    last: Option<&'a str>,
    containers: Vec<Entry>,
    destinations: Vec<Entry>,
}

impl Tally {
    pub fn new() -> Tally {
        Tally::default()
    }

    /// Adds one line of a file.
    pub fn line(&mut self, text: &str) {
        if text.trim().is_empty() {
            return;
        }
        let Ok(line) = serde_json::from_str::<Line>(text) else {
            self.unreadable_lines += 1;
            return;
        };
        let n = match line.kind.as_str() {
            "attempt" => 1,
            "summary" | "overflow" => line.count.unwrap_or(0),
            "lost" => {
                self.lost += line.count.unwrap_or(0);
                return;
            }
            _ => return,
        };
        for time in [&line.since, &line.time].into_iter().flatten() {
            // RFC 3339 in UTC with a fixed width: text order is time order.
            if self.first.as_ref().is_none_or(|f| time < f) {
                self.first = Some(time.clone());
            }
            if self.last.as_ref().is_none_or(|l| time > l) {
                self.last = Some(time.clone());
            }
        }
        self.attempts += n;
        if line.kind == "overflow" {
            self.unlisted += n;
            return;
        }
        let source = match (line.id, line.container, line.src) {
            (Some(id), name, _) => Source::Container { name: name.unwrap_or_default(), id },
            (None, _, Some(src)) => Source::Address(src),
            (None, _, None) => Source::Address("?".into()),
        };
        *self.sources.entry(source).or_default() += n;
        if let Some(dst) = destination(&line.dst, &line.proto, line.dport, line.icmp_type) {
            *self.destinations.entry(dst).or_default() += n;
        }
    }

    fn top_sources(&self) -> Vec<(&Source, u64)> {
        top(self.sources.iter().map(|(s, n)| (s, *n)))
    }

    fn top_destinations(&self) -> Vec<(&String, u64)> {
        top(self.destinations.iter().map(|(d, n)| (d, *n)))
    }

    pub fn text(&self, files: usize) -> String {
        let mut s = format!("{} blocked attempt(s)", count(self.attempts));
        if let (Some(first), Some(last)) = (&self.first, &self.last) {
            let _ = write!(s, " from {first} to {last}");
        }
        let _ = write!(s, " in {files} file(s)");
        if self.lost > 0 {
            let _ = write!(s, "; {} more lost by the kernel before they were read", count(self.lost));
        }
        if self.unreadable_lines > 0 {
            let _ = write!(s, "; {} line(s) not readable", count(self.unreadable_lines));
        }
        s.push('\n');
        let width = count(self.attempts).len();
        s.push_str("\ntop containers:\n");
        for (source, n) in self.top_sources() {
            let who = match source {
                Source::Container { id, name } => format!("{name} ({})", short_id(id)),
                Source::Address(src) => format!("unknown container at {src}"),
            };
            let _ = writeln!(s, "  {:>width$}  {who}", count(n));
        }
        s.push_str("\ntop destinations:\n");
        for (dst, n) in self.top_destinations() {
            let _ = writeln!(s, "  {:>width$}  {dst}", count(n));
        }
        if self.unlisted > 0 {
            let _ = writeln!(s, "\n({} attempt(s) came in bursts too many to list one by one)", count(self.unlisted));
        }
        s
    }

    pub fn json(&self) -> String {
        let containers = self
            .top_sources()
            .into_iter()
            .map(|(source, count)| match source {
                Source::Container { id, name } => {
                    Entry { container: Some(name.clone()), id: Some(id.clone()), src: None, dst: None, count }
                }
                Source::Address(src) => Entry { container: None, id: None, src: Some(src.clone()), dst: None, count },
            })
            .collect();
        let destinations = self
            .top_destinations()
            .into_iter()
            .map(|(dst, count)| Entry { container: None, id: None, src: None, dst: Some(dst.clone()), count })
            .collect();
        let json = Json {
            attempts: self.attempts,
            unlisted: self.unlisted,
            lost: self.lost,
            unreadable_lines: self.unreadable_lines,
            first: self.first.as_deref(),
            last: self.last.as_deref(),
            containers,
            destinations,
        };
        serde_json::to_string(&json).unwrap_or_default()
    }
}

/// The destination as the log lines write it.
fn destination(dst: &Option<String>, proto: &Option<String>, dport: Option<u16>, icmp: Option<u8>) -> Option<String> {
    let dst = dst.as_deref()?;
    let proto = proto.as_deref().unwrap_or("?");
    Some(match (dport, icmp, dst.contains(':')) {
        (Some(port), _, false) => format!("{dst}:{port}/{proto}"),
        (Some(port), _, true) => format!("[{dst}]:{port}/{proto}"),
        (None, Some(ty), _) => format!("{dst} {proto} type {ty}"),
        (None, None, _) => format!("{dst} {proto}"),
    })
}

/// The largest counts first, ties in key order, at most [`TOP`].
fn top<K: Ord>(items: impl Iterator<Item = (K, u64)>) -> Vec<(K, u64)> {
    let mut v: Vec<(K, u64)> = items.collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(TOP);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::tests::{at, blocked, tcp, web};
    use crate::audit::record::{Record, Who};

    #[test]
    fn what_log_wrote_sums_up() {
        let web_attempt = blocked(tcp("172.18.0.2", "203.0.113.7", 4444), Who::Container(web()));
        let stray = blocked(tcp("fd00:17::9", "2001:db8::2", 443), Who::Unnamed("x".into()));
        let records = [
            Record::Attempt(web_attempt.clone()),
            Record::Summary { since: at(0), until: at(10), last: at(9), count: 4211, first: web_attempt.clone() },
            Record::Attempt(Blocked { at: at(12), ..stray.clone() }),
            Record::Overflow { since: at(20), until: at(30), count: 500, sources: 1, destinations: 500 },
            Record::Lost { at: at(31), count: 7, overruns: 1 },
        ];
        let mut t = Tally::new();
        for r in &records {
            t.line(&r.json());
        }
        t.line("{\"type\":\"attempt\",\"src\":"); // cut by a crash
        t.line("");
        assert_eq!((t.attempts, t.unlisted, t.lost, t.unreadable_lines), (4713, 500, 7, 1));
        let text = t.text(2);
        assert!(
            text.starts_with(
                "4,713 blocked attempt(s) from 2024-02-29T12:34:56.123Z to 2024-02-29T12:35:26.123Z in 2 file(s); \
                 7 more lost by the kernel before they were read; 1 line(s) not readable\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\ntop containers:\n  4,212  ctf-web-1 (3f2a1b4c5d6e)\n      1  unknown container at fd00:17::9\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\ntop destinations:\n  4,212  203.0.113.7:4444/tcp\n      1  [2001:db8::2]:443/tcp\n"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&t.json()).unwrap();
        assert_eq!(v["containers"][0], serde_json::json!({"container": "ctf-web-1", "id": web().id, "count": 4212}));
        assert_eq!(v["containers"][1], serde_json::json!({"src": "fd00:17::9", "count": 1}));
        assert_eq!(v["destinations"][1], serde_json::json!({"dst": "[2001:db8::2]:443/tcp", "count": 1}));
        assert_eq!(v["lost"], 7);
    }

    use crate::audit::record::Blocked;

    #[test]
    fn only_the_top_ten_are_listed() {
        let mut t = Tally::new();
        for port in 1..=30u16 {
            for _ in 0..port {
                let b = blocked(tcp("172.18.0.2", "203.0.113.7", port), Who::Container(web()));
                t.line(&Record::Attempt(b).json());
            }
        }
        assert_eq!(t.top_destinations().len(), TOP);
        assert_eq!(t.top_destinations()[0], (&"203.0.113.7:30/tcp".to_string(), 30));
    }
}
