//! What `egress-guard log` says, one record a line: a blocked attempt with the container that
//! made it, a summary of a burst, an overflow of too many bursts, messages the kernel lost, and
//! messages we could not read. Each has a text form (terminal, journal) and a JSON form (JSON
//! lines, serde_json). Pure.

use std::fmt::Write;
use std::net::IpAddr;
use std::time::SystemTime;

use serde::Serialize;

use super::packet::Attempt;
use super::tag::Action;
use super::time::{rfc3339, seconds};
use crate::docker::Identity;

/// Who made an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// The container that held the source address at the time.
    Container(Identity),
    /// No name: why not (Docker unreachable, not a container's address, …).
    Unnamed(String),
}

impl Who {
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Who::Container(id) => Some(id),
            Who::Unnamed(_) => None,
        }
    }
}

/// One blocked attempt, with what is known about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// When the kernel logged it (or, without a kernel timestamp, when we read it).
    pub at: SystemTime,
    pub attempt: Attempt,
    /// The interface it came in by: the bridge of the container's network.
    pub bridge: Option<String>,
    pub action: Action,
    pub who: Who,
}

/// One line of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The first attempt of a burst (or a lone one).
    Attempt(Blocked),
    /// `count` more attempts like `first` (same container, destination, protocol, port and
    /// action) in the window from `since` to `until`, the last of them at `last`.
    Summary { since: SystemTime, until: SystemTime, last: SystemTime, count: u64, first: Blocked },
    /// Attempts of bursts that were not printed one by one (too many new ones at once).
    Overflow { since: SystemTime, until: SystemTime, count: u64, sources: usize, destinations: usize },
    /// Messages the kernel dropped before we read them (gaps in its sequence numbers), and
    /// how often our receive buffer overflowed.
    Lost { at: SystemTime, count: u64, overruns: u64 },
    /// Logged messages we could not read, and the first reason.
    Unreadable { at: SystemTime, count: u64, why: String },
}

/// `198.51.100.2:4444/tcp`, `[2001:db8::2]:443/tcp`, `198.51.100.2 icmp type 8 code 0`.
pub fn destination(a: &Attempt) -> String {
    match (a.dport, a.icmp, a.dst) {
        (Some(port), _, IpAddr::V4(ip)) => format!("{ip}:{port}/{}", a.proto),
        (Some(port), _, IpAddr::V6(ip)) => format!("[{ip}]:{port}/{}", a.proto),
        (None, Some((ty, code)), ip) => format!("{ip} {} type {ty} code {code}", a.proto),
        (None, None, ip) => format!("{ip} {}", a.proto),
    }
}

/// A count with thousands separators: `4,211`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The first 12 characters of a container id, as `docker ps` shows it.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

impl Blocked {
    /// `ctf-web-1 (3f2a1b4c5d6e, busybox, compose ctf/web) on ctf_default (br-1a2b3c4d5e6f)`,
    /// or `unknown container on docker0 (why)`.
    fn who_text(&self) -> String {
        match &self.who {
            Who::Container(id) => {
                let mut s = format!("{} ({}, {}", id.name, short_id(&id.id), id.image);
                if let Some(c) = &id.compose {
                    let _ = write!(s, ", compose {}/{}", c.project, c.service);
                }
                let _ = write!(s, ") on {}", id.network);
                if let Some(bridge) = self.bridge.as_ref().or(id.bridge.as_ref()) {
                    let _ = write!(s, " ({bridge})");
                }
                s
            }
            Who::Unnamed(why) => {
                let bridge = self.bridge.as_deref().unwrap_or("an unknown interface");
                format!("unknown container on {bridge} ({why})")
            }
        }
    }

    /// The container's name, else the source address: who a summary line speaks of.
    fn who_short(&self) -> String {
        match &self.who {
            Who::Container(id) => id.name.clone(),
            Who::Unnamed(_) => self.attempt.src.to_string(),
        }
    }

    fn action_text(&self) -> String {
        match self.action.answer() {
            Some(answer) => format!("{} ({})", self.action.word(), answer.word()),
            None => self.action.word().to_string(),
        }
    }

    fn fields(&self) -> Fields<'_> {
        let id = self.who.identity();
        let compose = id.and_then(|i| i.compose.as_ref());
        Fields {
            container: id.map(|i| i.name.as_str()),
            id: id.map(|i| i.id.as_str()),
            image: id.map(|i| i.image.as_str()),
            compose_project: compose.map(|c| c.project.as_str()),
            compose_service: compose.map(|c| c.service.as_str()),
            network: id.map(|i| i.network.as_str()),
            bridge: self.bridge.as_deref().or(id.and_then(|i| i.bridge.as_deref())),
            unnamed: match &self.who {
                Who::Unnamed(why) => Some(why.as_str()),
                Who::Container(_) => None,
            },
            src: self.attempt.src,
            dst: self.attempt.dst,
            proto: proto_word(&self.attempt),
            dport: self.attempt.dport,
            icmp_type: self.attempt.icmp.map(|(ty, _)| ty),
            icmp_code: self.attempt.icmp.map(|(_, code)| code),
            action: self.action.word(),
            reject_with: self.action.answer().map(|r| r.word()),
        }
    }
}

/// `tcp`, `udp`, `icmp`, `icmpv6`, or the protocol number.
fn proto_word(a: &Attempt) -> String {
    match a.proto {
        super::packet::Proto::Other(n) => n.to_string(),
        p => p.to_string(),
    }
}

/// The fields of an attempt in JSON, shared by attempts and summaries.
#[derive(Serialize)]
struct Fields<'a> {
    container: Option<&'a str>,
    id: Option<&'a str>,
    image: Option<&'a str>,
    compose_project: Option<&'a str>,
    compose_service: Option<&'a str>,
    network: Option<&'a str>,
    bridge: Option<&'a str>,
    /// Why `container` is null.
    unnamed: Option<&'a str>,
    src: IpAddr,
    dst: IpAddr,
    proto: String,
    dport: Option<u16>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
    action: &'static str,
    reject_with: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Json<'a> {
    Attempt {
        time: String,
        #[serde(flatten)]
        fields: Fields<'a>,
    },
    Summary {
        time: String,
        since: String,
        last: String,
        count: u64,
        seconds: u64,
        #[serde(flatten)]
        fields: Fields<'a>,
    },
    Overflow {
        time: String,
        since: String,
        count: u64,
        seconds: u64,
        sources: usize,
        destinations: usize,
    },
    Lost {
        time: String,
        count: u64,
        overruns: u64,
    },
    Unreadable {
        time: String,
        count: u64,
        why: &'a str,
    },
}

impl Record {
    /// The line for a terminal or the journal.
    pub fn text(&self) -> String {
        match self {
            Record::Attempt(b) => format!(
                "{} {}: {} -> {} {}",
                rfc3339(b.at),
                b.who_text(),
                b.attempt.src,
                destination(&b.attempt),
                b.action_text()
            ),
            Record::Summary { since, until, count: n, first, .. } => format!(
                "{} …and {} more from {} to {} in {} s",
                rfc3339(*until),
                count(*n),
                first.who_short(),
                destination(&first.attempt),
                seconds(*since, *until)
            ),
            Record::Overflow { since, until, count: n, sources, destinations } => format!(
                "{} …and {} more attempts from {} source(s) to {} destination(s) in {} s, too many to list one by one",
                rfc3339(*until),
                count(*n),
                count(*sources as u64),
                count(*destinations as u64),
                seconds(*since, *until)
            ),
            Record::Lost { at, count: 0, overruns } => format!(
                "{} lost attempts: the kernel's receive buffer overflowed {} time(s); the next attempt read says how many",
                rfc3339(*at),
                count(*overruns)
            ),
            Record::Lost { at, count: n, overruns } => format!(
                "{} lost {} attempt(s): the kernel dropped them before egress-guard read them \
                 (receive buffer overflowed {} time(s))",
                rfc3339(*at),
                count(*n),
                count(*overruns)
            ),
            Record::Unreadable { at, count: n, why } => {
                format!("{} {} logged message(s) could not be read: {why}", rfc3339(*at), count(*n))
            }
        }
    }

    /// The JSON line (without the newline).
    pub fn json(&self) -> String {
        let json = match self {
            Record::Attempt(b) => Json::Attempt { time: rfc3339(b.at), fields: b.fields() },
            Record::Summary { since, until, last, count, first } => Json::Summary {
                time: rfc3339(*until),
                since: rfc3339(*since),
                last: rfc3339(*last),
                count: *count,
                seconds: seconds(*since, *until),
                fields: first.fields(),
            },
            Record::Overflow { since, until, count, sources, destinations } => Json::Overflow {
                time: rfc3339(*until),
                since: rfc3339(*since),
                count: *count,
                seconds: seconds(*since, *until),
                sources: *sources,
                destinations: *destinations,
            },
            Record::Lost { at, count, overruns } => {
                Json::Lost { time: rfc3339(*at), count: *count, overruns: *overruns }
            }
            Record::Unreadable { at, count, why } => Json::Unreadable { time: rfc3339(*at), count: *count, why },
        };
        // Strings, numbers and addresses only: serialising cannot fail.
        serde_json::to_string(&json).unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::audit::packet::Proto;
    use crate::docker::Compose;
    use crate::policy::Refusal;

    pub fn web() -> Identity {
        Identity {
            id: "3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708".into(),
            name: "ctf-web-1".into(),
            image: "ctfd/web:latest".into(),
            compose: Some(Compose { project: "ctf".into(), service: "web".into() }),
            network: "ctf_default".into(),
            bridge: Some("br-1a2b3c4d5e6f".into()),
        }
    }

    pub fn tcp(src: &str, dst: &str, port: u16) -> Attempt {
        Attempt {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto: Proto::Tcp,
            sport: Some(40000),
            dport: Some(port),
            icmp: None,
        }
    }

    pub fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_709_210_096) + Duration::from_millis(secs * 1000 + 123)
    }

    pub fn blocked(attempt: Attempt, who: Who) -> Blocked {
        let bridge = who.identity().and_then(|i| i.bridge.clone()).or(Some("docker0".into()));
        Blocked { at: at(0), attempt, bridge, action: Action::Rejected(Refusal::PortUnreachable), who }
    }

    fn json(r: &Record) -> serde_json::Value {
        serde_json::from_str(&r.json()).unwrap()
    }

    #[test]
    fn an_attempt_names_the_container_in_text_and_json() {
        let b = blocked(tcp("172.18.0.2", "203.0.113.7", 4444), Who::Container(web()));
        let r = Record::Attempt(b);
        assert_eq!(
            r.text(),
            "2024-02-29T12:34:56.123Z ctf-web-1 (3f2a1b4c5d6e, ctfd/web:latest, compose ctf/web) on ctf_default \
             (br-1a2b3c4d5e6f): 172.18.0.2 -> 203.0.113.7:4444/tcp rejected (port-unreachable)"
        );
        assert_eq!(
            json(&r),
            serde_json::json!({
                "type": "attempt", "time": "2024-02-29T12:34:56.123Z", "container": "ctf-web-1",
                "id": web().id, "image": "ctfd/web:latest", "compose_project": "ctf",
                "compose_service": "web", "network": "ctf_default", "bridge": "br-1a2b3c4d5e6f",
                "unnamed": null, "src": "172.18.0.2", "dst": "203.0.113.7", "proto": "tcp",
                "dport": 4444, "icmp_type": null, "icmp_code": null, "action": "rejected",
                "reject_with": "port-unreachable",
            })
        );
    }

    #[test]
    fn without_a_name_the_line_says_why_and_keeps_bridge_and_address() {
        let ping = Attempt {
            src: "fd00:17::2".parse().unwrap(),
            dst: "2001:db8::2".parse().unwrap(),
            proto: Proto::Icmpv6,
            sport: None,
            dport: None,
            icmp: Some((128, 0)),
        };
        let mut b = blocked(ping, Who::Unnamed("Docker unavailable: no socket".into()));
        b.action = Action::Dropped;
        let r = Record::Attempt(b);
        assert_eq!(
            r.text(),
            "2024-02-29T12:34:56.123Z unknown container on docker0 (Docker unavailable: no socket): \
             fd00:17::2 -> 2001:db8::2 icmpv6 type 128 code 0 dropped"
        );
        let v = json(&r);
        assert_eq!(
            (&v["container"], &v["bridge"], &v["unnamed"]),
            (&json!(null), &json!("docker0"), &json!("Docker unavailable: no socket"))
        );
        assert_eq!(
            (&v["proto"], &v["dport"], &v["icmp_type"], &v["icmp_code"]),
            (&json!("icmpv6"), &json!(null), &json!(128), &json!(0))
        );
        assert_eq!((&v["action"], &v["reject_with"]), (&json!("dropped"), &json!(null)));
    }

    use serde_json::json;

    #[test]
    fn summaries_losses_and_overflows_are_one_line_each() {
        let first = blocked(tcp("172.18.0.2", "203.0.113.7", 4444), Who::Container(web()));
        let summary = Record::Summary { since: at(0), until: at(10), last: at(9), count: 4211, first: first.clone() };
        assert_eq!(
            summary.text(),
            "2024-02-29T12:35:06.123Z …and 4,211 more from ctf-web-1 to 203.0.113.7:4444/tcp in 10 s"
        );
        let v = json(&summary);
        assert_eq!(
            (&v["type"], &v["count"], &v["seconds"], &v["container"]),
            (&json!("summary"), &json!(4211), &json!(10), &json!("ctf-web-1"))
        );
        assert_eq!((&v["since"], &v["last"]), (&json!("2024-02-29T12:34:56.123Z"), &json!("2024-02-29T12:35:05.123Z")));
        let unnamed = Blocked { who: Who::Unnamed("x".into()), ..first };
        let six = "[2001:db8::2]:443/tcp";
        let mut v6 = unnamed.clone();
        v6.attempt = tcp("fd00:17::2", "2001:db8::2", 443);
        assert!(Record::Summary { since: at(0), until: at(3), last: at(2), count: 2, first: v6 }
            .text()
            .ends_with(&format!("from fd00:17::2 to {six} in 3 s")));
        let over = Record::Overflow { since: at(0), until: at(10), count: 52_000, sources: 3, destinations: 40_000 };
        assert!(over.text().contains("…and 52,000 more attempts from 3 source(s) to 40,000 destination(s) in 10 s"));
        assert_eq!(json(&over)["type"], "overflow");
        let lost = Record::Lost { at: at(1), count: 120, overruns: 2 };
        assert!(lost.text().contains("lost 120 attempt(s): the kernel dropped them"), "{}", lost.text());
        assert_eq!((json(&lost)["type"].clone(), json(&lost)["count"].clone()), (json!("lost"), json!(120)));
        assert!(Record::Lost { at: at(1), count: 0, overruns: 1 }.text().contains("overflowed 1 time(s)"));
        let bad = Record::Unreadable { at: at(1), count: 1, why: "not IP".into() };
        assert_eq!(json(&bad)["why"], "not IP");
    }

    #[test]
    fn counts_and_ids() {
        for (n, s) in [(0, "0"), (999, "999"), (1000, "1,000"), (4211, "4,211"), (1_234_567, "1,234,567")] {
            assert_eq!(count(n), s);
        }
        assert_eq!(short_id("3f2a1b4c5d6e7f80"), "3f2a1b4c5d6e");
        assert_eq!(short_id("abc"), "abc");
    }
}
