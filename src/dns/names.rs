//! `--allow-domain` values (pure): the pattern syntax, its normalised form, and which allowed
//! entries a query name matches.
//!
//! `pypi.org` allows that name only; `*.example.org` allows every name below example.org but not
//! example.org itself (as a DNS wildcard does: give both to allow both); either may end in
//! `:PORT/PROTO`, as `--allow` does, to open only that port of the addresses the name resolves
//! to. Names are compared in lowercase without the trailing dot.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use crate::net::Proto;

/// A DNS name in text is at most 253 bytes without its trailing dot (255 on the wire).
pub const NAME_MAX: usize = 253;
/// One label is at most 63 bytes.
pub const LABEL_MAX: usize = 63;

/// What a pattern covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pattern {
    /// This name exactly (lowercase, no trailing dot).
    Exact(String),
    /// Every name strictly below this suffix (`*.SUFFIX`).
    Subdomains(String),
}

/// One `--allow-domain` value: names, and optionally one port of one protocol.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllowDomain {
    pub pattern: Pattern,
    pub port: Option<(u16, Proto)>,
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(name) => f.write_str(name),
            Pattern::Subdomains(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

impl fmt::Display for AllowDomain {
    /// The form `--allow-domain` takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            None => write!(f, "{}", self.pattern),
            Some((port, proto)) => write!(f, "{}:{port}/{}", self.pattern, proto.name()),
        }
    }
}

/// Why a value is not a domain pattern; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty name (use e.g. pypi.org or *.githubusercontent.com)")]
    Empty,
    #[error("{0} is an address, not a name: use --allow for addresses")]
    Address(IpAddr),
    #[error("an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("label {0:?} is longer than 63 bytes")]
    LongLabel(String),
    #[error("longer than 253 bytes, the limit for a DNS name")]
    LongName,
    #[error("label {0:?}: names hold letters, digits, '-' and '_' only")]
    LabelChars(String),
    #[error("'*' is only a whole first label, as in *.example.org")]
    InnerWildcard,
    #[error("'*' alone matches every name; list the domains instead")]
    Everything,
    #[error("expected NAME or NAME:PORT/PROTO, e.g. pypi.org:443/tcp")]
    Colons,
    #[error("give the protocol too, e.g. {0}/tcp or {0}/udp")]
    NoProto(String),
    #[error("protocol {0:?} must be tcp or udp")]
    BadProto(String),
    #[error("port {0:?} must be a number from 1 to 65535, without sign or leading zeros")]
    BadPort(String),
}

/// `NAME`, `*.NAME`, optionally followed by `:PORT/PROTO`; case and a trailing dot are
/// normalised away.
pub fn parse_allow_domain(s: &str) -> Result<AllowDomain, NameError> {
    let (name, port) = match s.split_once(':') {
        None => (s, None),
        Some((_, rest)) if rest.contains(':') => {
            return Err(match s.parse::<IpAddr>() {
                Ok(ip) => NameError::Address(ip),
                Err(_) => NameError::Colons,
            })
        }
        Some((name, port)) => (name, Some(parse_port(port)?)),
    };
    Ok(AllowDomain { pattern: parse_pattern(name)?, port })
}

fn parse_pattern(name: &str) -> Result<Pattern, NameError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Err(NameError::Address(ip));
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name == "*" {
        return Err(NameError::Everything);
    }
    let (wild, rest) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest.to_string()),
        None => (false, name.clone()),
    };
    if name.len() > NAME_MAX {
        return Err(NameError::LongName);
    }
    for label in rest.split('.') {
        check_label(label)?;
    }
    Ok(if wild { Pattern::Subdomains(rest) } else { Pattern::Exact(rest) })
}

fn check_label(label: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel);
    }
    if label.contains('*') {
        return Err(NameError::InnerWildcard);
    }
    if label.len() > LABEL_MAX {
        return Err(NameError::LongLabel(label.to_string()));
    }
    if !label.bytes().all(label_byte) {
        return Err(NameError::LabelChars(label.to_string()));
    }
    Ok(())
}

/// Bytes a label of an allowed name may hold (after lowercasing).
fn label_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

/// The same rules as `--allow`'s `PORT/PROTO`.
fn parse_port(s: &str) -> Result<(u16, Proto), NameError> {
    let (port, proto) = s.split_once('/').ok_or_else(|| NameError::NoProto(s.to_string()))?;
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return Err(NameError::BadProto(proto.to_string())),
    };
    let canonical = port.bytes().all(|b| b.is_ascii_digit()) && !port.starts_with('0');
    match port.parse::<u16>() {
        Ok(p) if canonical && p > 0 => Ok((p, proto)),
        _ => Err(NameError::BadPort(port.to_string())),
    }
}

/// Which ports of a name's addresses an allow-list opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Every port (some matching entry has no port).
    Any,
    /// Only these, sorted, without duplicates.
    Ports(Vec<(u16, Proto)>),
}

/// The allow-list, indexed for matching: a lookup costs one hash probe per label of the query.
#[derive(Debug, Clone, Default)]
pub struct DomainList {
    exact: HashMap<String, Vec<Option<(u16, Proto)>>>,
    below: HashMap<String, Vec<Option<(u16, Proto)>>>,
}

impl DomainList {
    pub fn new(entries: &[AllowDomain]) -> DomainList {
        let mut list = DomainList::default();
        for entry in entries {
            let (map, key) = match &entry.pattern {
                Pattern::Exact(name) => (&mut list.exact, name),
                Pattern::Subdomains(suffix) => (&mut list.below, suffix),
            };
            map.entry(key.clone()).or_default().push(entry.port);
        }
        list
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.below.is_empty()
    }

    /// What the allow-list opens for a query name given as its wire labels (any case; the
    /// root label left out). `None`: the name is not allowed. A label with a byte no allowed
    /// name can hold (a dot inside a label, a space, non-ASCII) never matches.
    pub fn reach<'a>(&self, labels: impl IntoIterator<Item = &'a [u8]>) -> Option<Reach> {
        let mut name = String::with_capacity(NAME_MAX);
        let mut starts = Vec::new();
        for label in labels {
            if label.is_empty() || !label.iter().all(|b| label_byte(b.to_ascii_lowercase())) {
                return None;
            }
            if !name.is_empty() {
                name.push('.');
            }
            starts.push(name.len());
            name.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
        }
        let mut ports: Vec<Option<(u16, Proto)>> = Vec::new();
        if let Some(p) = self.exact.get(&name) {
            ports.extend(p);
        }
        // Every proper suffix: the name minus its first label, minus its first two, …
        for &start in starts.iter().skip(1) {
            if let Some(p) = self.below.get(&name[start..]) {
                ports.extend(p);
            }
        }
        if ports.is_empty() {
            return None;
        }
        if ports.contains(&None) {
            return Some(Reach::Any);
        }
        let mut ports: Vec<(u16, Proto)> = ports.into_iter().flatten().collect();
        ports.sort();
        ports.dedup();
        Some(Reach::Ports(ports))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(name: &str) -> AllowDomain {
        AllowDomain { pattern: Pattern::Exact(name.into()), port: None }
    }

    fn below(suffix: &str) -> AllowDomain {
        AllowDomain { pattern: Pattern::Subdomains(suffix.into()), port: None }
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(parse_allow_domain("pypi.org"), Ok(exact("pypi.org")));
        assert_eq!(parse_allow_domain("PyPI.Org."), Ok(exact("pypi.org")));
        assert_eq!(parse_allow_domain("*.githubusercontent.com"), Ok(below("githubusercontent.com")));
        assert_eq!(parse_allow_domain("_acme-challenge.example.org"), Ok(exact("_acme-challenge.example.org")));
        assert_eq!(
            parse_allow_domain("pypi.org:443/tcp"),
            Ok(AllowDomain { port: Some((443, Proto::Tcp)), ..exact("pypi.org") })
        );
        assert_eq!(
            parse_allow_domain("*.Example.ORG.:53/udp"),
            Ok(AllowDomain { port: Some((53, Proto::Udp)), ..below("example.org") })
        );
        assert_eq!(parse_allow_domain("localhost"), Ok(exact("localhost")));
    }

    #[test]
    fn displays_as_the_flag_is_written() {
        for s in ["pypi.org", "*.githubusercontent.com", "pypi.org:443/tcp", "*.example.org:53/udp"] {
            assert_eq!(parse_allow_domain(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn refuses_what_is_no_name() {
        let long_label = "a".repeat(64);
        let label63 = "a".repeat(63);
        let long_name = [label63.as_str(); 4].join("."); // 255 bytes
        let name253 = format!("{}.{}", [label63.as_str(); 3].join("."), "a".repeat(61));
        assert_eq!(name253.len(), 253);
        assert!(parse_allow_domain(&name253).is_ok());
        assert!(parse_allow_domain(&format!("{name253}.")).is_ok(), "a trailing dot does not count");
        let cases = [
            ("", NameError::Empty),
            (".", NameError::Empty),
            ("*", NameError::Everything),
            ("*.", NameError::Everything),
            ("a..b", NameError::EmptyLabel),
            (".a", NameError::EmptyLabel),
            ("*.", NameError::Everything),
            ("a.*.org", NameError::InnerWildcard),
            ("*example.org", NameError::InnerWildcard),
            ("**.example.org", NameError::InnerWildcard),
            ("*.*.org", NameError::InnerWildcard),
            (&long_label, NameError::LongLabel(long_label.clone())),
            (&long_name, NameError::LongName),
            ("exa mple.org", NameError::LabelChars("exa mple".into())),
            ("bücher.de", NameError::LabelChars("bücher".into())),
            ("a/b.org", NameError::LabelChars("a/b".into())),
            ("198.51.100.7", NameError::Address("198.51.100.7".parse().unwrap())),
            ("2001:db8::1", NameError::Address("2001:db8::1".parse().unwrap())),
            ("198.51.100.7:53/udp", NameError::Address("198.51.100.7".parse().unwrap())),
            ("a.org:443:1/tcp", NameError::Colons),
            ("a.org:443", NameError::NoProto("443".into())),
            ("a.org:443/sctp", NameError::BadProto("sctp".into())),
            ("a.org:0/tcp", NameError::BadPort("0".into())),
            ("a.org:0443/tcp", NameError::BadPort("0443".into())),
            ("a.org:+443/tcp", NameError::BadPort("+443".into())),
            ("a.org:65536/tcp", NameError::BadPort("65536".into())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_allow_domain(input), Err(want), "{input:?}");
        }
    }

    fn labels(name: &str) -> Vec<&[u8]> {
        name.split('.').filter(|l| !l.is_empty()).map(str::as_bytes).collect()
    }

    #[test]
    fn matches_exact_names_and_strict_subdomains() {
        let list = DomainList::new(&[exact("pypi.org"), below("githubusercontent.com")]);
        assert_eq!(list.reach(labels("pypi.org")), Some(Reach::Any));
        assert_eq!(list.reach(labels("PYPI.org")), Some(Reach::Any));
        assert_eq!(list.reach(labels("files.pypi.org")), None);
        assert_eq!(list.reach(labels("evilpypi.org")), None);
        assert_eq!(list.reach(labels("raw.githubusercontent.com")), Some(Reach::Any));
        assert_eq!(list.reach(labels("a.b.GitHubUserContent.com")), Some(Reach::Any));
        assert_eq!(list.reach(labels("githubusercontent.com")), None, "the apex is not below itself");
        assert_eq!(list.reach(labels("xgithubusercontent.com")), None);
        assert_eq!(list.reach(labels("org")), None);
        assert_eq!(list.reach(Vec::<&[u8]>::new()), None, "the root");
    }

    #[test]
    fn a_label_with_a_dot_inside_never_matches() {
        // On the wire, "pypi.org" can be one label: it is not the name pypi.org.
        let list = DomainList::new(&[exact("pypi.org"), below("org")]);
        assert_eq!(list.reach([b"pypi.org".as_slice()]), None);
        assert_eq!(list.reach([b"x\x00".as_slice(), b"org"]), None);
        assert_eq!(list.reach([b"pypi".as_slice(), b"org"]), Some(Reach::Any));
    }

    #[test]
    fn ports_of_every_matching_entry_add_up() {
        let tcp443 = |d: AllowDomain| AllowDomain { port: Some((443, Proto::Tcp)), ..d };
        let list = DomainList::new(&[
            tcp443(exact("pypi.org")),
            AllowDomain { port: Some((80, Proto::Tcp)), ..exact("pypi.org") },
            tcp443(below("org")),
            below("example.org"),
        ]);
        assert_eq!(list.reach(labels("pypi.org")), Some(Reach::Ports(vec![(80, Proto::Tcp), (443, Proto::Tcp)])));
        assert_eq!(list.reach(labels("a.org")), Some(Reach::Ports(vec![(443, Proto::Tcp)])));
        assert_eq!(list.reach(labels("www.example.org")), Some(Reach::Any), "an entry without port wins");
    }
}
