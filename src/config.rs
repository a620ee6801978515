//! The config file (`/etc/egress-guard/config.toml`, or `--config PATH`): the same settings as
//! the flags, in TOML, read with the `toml` crate into serde types. Unknown keys, wrong types
//! and bad values are errors naming the file, the line and the column; `parse` is pure, `load`
//! reads the file.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::ops::Range;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::backend::Target;
use crate::dns::forwarder::RefuseWith;
use crate::grants::{Egress, Grant, Grants};
use crate::policy::{self, LogTo, Origin, PolicyError, PolicySpec, Refusal, Sourced, ValueError};

/// Where the config is read from when `--config` is not given (if it exists).
pub const DEFAULT_PATH: &str = "/etc/egress-guard/config.toml";

/// What the file sets besides the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub policy: PolicySpec,
    pub target: Option<Target>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, or not the keys and types we take.
    #[error("{path}:{line}:{col}: {msg}")]
    Syntax { path: String, line: usize, col: usize, msg: String },
    /// A value that cannot work (it names the file, line and column itself).
    #[error(transparent)]
    Value(#[from] PolicyError),
    #[error("cannot read config {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path} is not a regular file")]
    NotAFile { path: String },
}

/// The file as TOML gives it. Every key is optional; `deny_unknown_fields` turns a typo into
/// an error listing the keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    iface: Option<Vec<Spanned<String>>>,
    subnet: Option<Vec<Spanned<String>>>,
    allow: Option<Vec<Spanned<String>>>,
    reject_with: Option<Refusal>,
    log: Option<Spanned<LogSetting>>,
    log_rate: Option<Spanned<String>>,
    log_to: Option<LogTo>,
    nflog_group: Option<u16>,
    block_host: Option<bool>,
    mark_bit: Option<Spanned<String>>,
    allow_domain: Option<Vec<Spanned<String>>>,
    dns_upstream: Option<Vec<Spanned<String>>>,
    dns_min_ttl: Option<u32>,
    dns_max_ttl: Option<u32>,
    dns_refuse_with: Option<RefuseWith>,
    dns_port: Option<u16>,
    target: Option<Target>,
    container: Option<BTreeMap<String, GrantTable>>,
    network: Option<BTreeMap<String, GrantTable>>,
    service: Option<BTreeMap<String, GrantTable>>,
}

/// `[container.NAME]`, `[network.NAME]`, `[service.NAME]`: what it may reach besides `allow`
/// and `allow_domain`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantTable {
    allow: Option<Vec<Spanned<String>>>,
    allow_domain: Option<Vec<Spanned<String>>>,
    egress: Option<Egress>,
}

/// `log = true`, `log = false` or `log = "prefix"`.
#[derive(Debug)]
enum LogSetting {
    On(bool),
    Prefix(String),
}

impl<'de> Deserialize<'de> for LogSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LogVisitor;
        impl Visitor<'_> for LogVisitor {
            type Value = LogSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false or a prefix string")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<LogSetting, E> {
                Ok(LogSetting::On(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LogSetting, E> {
                Ok(LogSetting::Prefix(v.to_string()))
            }
        }
        d.deserialize_any(LogVisitor)
    }
}

/// Reads the file named by `--config` (which must exist), or the default one if it exists.
pub fn load(path: Option<&str>) -> Result<Config, ConfigError> {
    let (path, required) = match path {
        Some(p) => (p, true),
        None => (DEFAULT_PATH, false),
    };
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(ConfigError::NotAFile { path: path.into() }),
        Err(e) if e.kind() == ErrorKind::NotFound && !required => return Ok(Config::default()),
        _ => {}
    }
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(source) => Err(ConfigError::Read { path: path.to_string(), source }),
    }
}

/// Parses and checks the file's text; `path` is only for messages.
pub fn parse(path: &str, text: &str) -> Result<Config, ConfigError> {
    let file: File = toml::from_str(text).map_err(|e| {
        let (line, col) = line_col(text, e.span().map_or(0, |s| s.start));
        ConfigError::Syntax { path: path.into(), line, col, msg: e.message().trim().to_string() }
    })?;
    let ctx = Ctx::new(path, text);
    let log = match file.log {
        None => None,
        Some(spanned) => {
            let origin = ctx.at("log", spanned.span());
            match spanned.into_inner() {
                LogSetting::On(false) => None,
                LogSetting::On(true) => Some(Sourced { value: None, origin }),
                LogSetting::Prefix(p) => {
                    let prefix = policy::parse_prefix(&p).map_err(|why| PolicyError::value(&origin, &p, why))?;
                    Some(Sourced { value: Some(prefix), origin })
                }
            }
        }
    };
    let log_rate = match file.log_rate {
        None => None,
        Some(rate) => Some(ctx.check("log_rate", rate, policy::parse_rate)?.value),
    };
    let mark_bit = match file.mark_bit {
        None => None,
        Some(bit) => Some(ctx.check("mark_bit", bit, policy::parse_mark_bit)?.value),
    };
    let tables = [file.container, file.network, file.service];
    let grants = match tables.iter().all(Option::is_none) {
        true => None,
        false => {
            let [containers, networks, services] = tables.map(|t| ctx.grants(t.unwrap_or_default()));
            Some(Grants { containers: containers?, networks: networks?, services: services? })
        }
    };
    let policy = PolicySpec {
        ifaces: ctx.list("iface", file.iface, policy::parse_iface)?,
        subnets: ctx.list("subnet", file.subnet, policy::parse_subnet)?,
        allow: ctx.list("allow", file.allow, policy::parse_allow)?,
        refusal: file.reject_with,
        log,
        log_rate,
        log_to: file.log_to,
        nflog_group: file.nflog_group,
        block_host: file.block_host,
        mark_bit,
        grants,
        allow_domains: ctx.list("allow_domain", file.allow_domain, policy::parse_allow_domain)?,
        dns_upstreams: ctx
            .list("dns_upstream", file.dns_upstream, policy::parse_upstream)?
            .map(|l| l.into_iter().map(|u| u.value).collect()),
        dns_min_ttl: file.dns_min_ttl,
        dns_max_ttl: file.dns_max_ttl,
        dns_refuse_with: file.dns_refuse_with,
        dns_port: file.dns_port,
    };
    Ok(Config { policy, target: file.target })
}

/// The file being parsed, to name where a value stands.
struct Ctx<'a> {
    path: &'a str,
    text: &'a str,
    /// The last position named (byte offset, line, column): values come in file order, so
    /// each is found from the one before, and 100,000 of them on one line cost one pass, not
    /// 100,000.
    last: std::cell::Cell<(usize, usize, usize)>,
}

impl Ctx<'_> {
    fn new<'a>(path: &'a str, text: &'a str) -> Ctx<'a> {
        Ctx { path, text, last: std::cell::Cell::new((0, 1, 1)) }
    }

    fn at(&self, key: &'static str, span: Range<usize>) -> Origin {
        let (line, col) = self.line_col(span.start);
        Origin::File { path: self.path.to_string(), line, col, key }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let (from, mut line, mut col) = match self.last.get() {
            (at, line, col) if at <= offset => (at, line, col),
            _ => (0, 1, 1),
        };
        for c in self.text.get(from..offset).unwrap_or("").chars() {
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        self.last.set((offset, line, col));
        (line, col)
    }

    /// One value through the same check its flag has.
    fn check<T>(
        &self,
        key: &'static str,
        item: Spanned<String>,
        parse: fn(&str) -> Result<T, ValueError>,
    ) -> Result<Sourced<T>, PolicyError> {
        let origin = self.at(key, item.span());
        let text = item.into_inner();
        match parse(&text) {
            Ok(value) => Ok(Sourced { value, origin }),
            Err(why) => Err(PolicyError::value(&origin, &text, why)),
        }
    }

    fn list<T>(
        &self,
        key: &'static str,
        items: Option<Vec<Spanned<String>>>,
        parse: fn(&str) -> Result<T, ValueError>,
    ) -> Result<Option<Vec<Sourced<T>>>, PolicyError> {
        items.map(|items| items.into_iter().map(|item| self.check(key, item, parse)).collect()).transpose()
    }

    /// One kind of `[KIND.NAME]` table.
    fn grants(&self, tables: BTreeMap<String, GrantTable>) -> Result<BTreeMap<String, Grant>, PolicyError> {
        tables
            .into_iter()
            .map(|(name, t)| {
                let allow = self.list("allow", t.allow, policy::parse_allow)?.unwrap_or_default();
                let domains =
                    self.list("allow_domain", t.allow_domain, policy::parse_allow_domain)?.unwrap_or_default();
                let grant = Grant {
                    allow: allow.into_iter().map(|a| a.value).collect(),
                    domains: domains.into_iter().map(|d| d.value).collect(),
                    open: t.egress == Some(Egress::Open),
                };
                Ok((name, grant))
            })
            .collect()
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/etc/egress-guard/config.toml";

    fn err(text: &str) -> String {
        parse(PATH, text).unwrap_err().to_string()
    }

    #[test]
    fn full_toml_parses() {
        let text = r#"
# egress-guard settings
iface = ['docker0', "br-+"]   # literal and basic strings, an inline comment
subnet = [
  "172.17.0.0/16",
  "fd00::/8",
]
allow = ["198.51.100.53:53/udp", "[2001:db8::53]:53/udp"]
reject_with = "tcp-reset"
log = "egress # blocked: "
log_rate = "5/minute"
log_to = "nflog"
nflog_group = 7
block_host = true
target = "docker-user"
"#;
        let c = parse("config.toml", text).unwrap();
        let p = c.policy.resolve().unwrap();
        assert_eq!(p.ifaces.iter().map(|i| i.as_str()).collect::<Vec<_>>(), ["docker0", "br-+"]);
        assert_eq!(p.subnets.len(), 2);
        assert_eq!(p.allow.len(), 2);
        assert_eq!(p.refusal, Refusal::TcpReset);
        assert_eq!(c.target, Some(Target::DockerUser));
        assert!(p.block_host);
        assert_eq!(
            p.log.unwrap().sink,
            crate::policy::LogSink::Nflog { group: 7, prefix: Some("egress # blocked: ".into()) }
        );
        let kernel = parse("c.toml", "log = true\nlog_to = \"kernel\"").unwrap().policy.resolve().unwrap();
        assert_eq!(kernel.log.unwrap().sink, crate::policy::LogSink::Kernel { prefix: "egress-guard: ".into() });
    }

    #[test]
    fn positions_found_from_the_last_one_are_the_positions() {
        let text = "allow = [\"a\", \"bé\",\n  \"c\"]\n# x\niface = [\"d\"]";
        let ctx = Ctx::new("f", text);
        let offsets: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        // In order, as values come, and back again (a fresh scan from the start).
        for &o in offsets.iter().chain(offsets.iter().rev()) {
            assert_eq!(ctx.line_col(o), line_col(text, o), "offset {o}");
        }
    }

    #[test]
    fn errors_name_file_line_and_column() {
        assert!(
            err("\nifac = [\"docker0\"]").starts_with(&format!("{PATH}:2:1: unknown field `ifac`, expected one of"))
        );
        assert_eq!(err("nflog_group = \"5\""), format!("{PATH}:1:15: invalid type: string \"5\", expected u16"));
        assert!(err("log = 3")
            .starts_with(&format!("{PATH}:1:7: invalid type: integer `3`, expected true, false or a prefix string")));
        assert_eq!(
            err("subnet = [\n  \"10.0.0.0/8\",\n  \"172.17.0.0/12\",\n]"),
            format!("{PATH}:3:3: subnet \"172.17.0.0/12\": host bits are set; the network is 172.16.0.0/12")
        );
        assert!(err("[policy]\niface = []").starts_with(&format!("{PATH}:1:2: unknown field `policy`")));
        assert!(err("reject_with = \"sometimes\"").contains("1:15: unknown variant `sometimes`"));
        assert!(err("log_to = \"syslog\"").contains("1:10: unknown variant `syslog`, expected `nflog` or `kernel`"));
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("../docs/configuration.md");
        let blocks = toml_blocks(doc);
        assert!(!blocks.is_empty());
        for block in blocks {
            let config = parse("docs/configuration.md", &block).unwrap_or_else(|e| panic!("{e}\n{block}"));
            let policy = config.policy.resolve().unwrap_or_else(|e| panic!("{e}\n{block}"));
            let web = &policy.grants.containers["ctf-web-1"];
            assert_eq!(web.domains, [policy::parse_allow_domain("deb.test").unwrap()]);
        }
    }

    /// The ```toml blocks of a markdown text.
    pub(crate) fn toml_blocks(md: &str) -> Vec<String> {
        let mut blocks = Vec::new();
        let mut current: Option<String> = None;
        for line in md.lines() {
            match (&mut current, line.trim_start()) {
                (None, l) if l.starts_with("```toml") => current = Some(String::new()),
                (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
                (Some(block), _) => {
                    block.push_str(line);
                    block.push('\n');
                }
                _ => {}
            }
        }
        blocks
    }
}
