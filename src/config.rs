//! The config file (`/etc/egress-guard/config.toml`, or `--config PATH`): the same settings as
//! the flags, in a small, strict subset of TOML — `key = value` lines with strings, integers,
//! booleans and arrays of strings, `#` comments. Unknown keys and wrong types are errors that
//! name the file, the line and the key. Parsing is pure; reading the file is the caller's.

use crate::policy::PolicySpec;

/// Where the config is read from when `--config` is not given (if it exists).
pub const DEFAULT_PATH: &str = "/etc/egress-guard/config.toml";

/// What the file sets besides the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub policy: PolicySpec,
    pub target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {msg}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub msg: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<String>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Bool(_) => "a boolean",
            Value::List(_) => "an array",
        }
    }
}

const KEYS: &str = "iface, subnet, allow, reject_with, log, log_rate, nflog_group, block_host, target";

pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    let mut seen: Vec<String> = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, raw)) = lines.next() {
        let line_no = index + 1;
        let fail = |msg: String| ConfigError { file: file.to_string(), line: line_no, msg };
        let mut line = strip_comment(raw).trim().to_string();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            return Err(fail(format!("tables are not used here; write `key = value` at the top level (keys: {KEYS})")));
        }
        let (key, _) = line.split_once('=').ok_or_else(|| fail(format!("expected `key = value`, found {:?}", line)))?;
        let key = key.trim().to_string();
        // A multi-line array continues until its closing bracket: the one that ends a line, not
        // one inside a string such as "[2001:db8::53]:53/udp".
        let is_array = line.split_once('=').is_some_and(|(_, v)| v.trim_start().starts_with('['));
        while is_array && !line.ends_with(']') {
            let (_, next) = lines.next().ok_or_else(|| fail(format!("key {key:?}: array is never closed with ']'")))?;
            line.push(' ');
            line.push_str(strip_comment(next).trim());
        }
        let value_text = line.split_once('=').map(|(_, v)| v.trim()).unwrap_or("");
        let value = parse_value(value_text).map_err(|why| fail(format!("key {key:?}: {why}")))?;
        if seen.contains(&key) {
            return Err(fail(format!("key {key:?} is set twice")));
        }
        seen.push(key.clone());
        set(&mut config, &key, value).map_err(fail)?;
    }
    Ok(config)
}

/// Drops a `#` comment that is not inside a string.
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            '\\' if in_string => escaped = !escaped,
            '"' if !escaped => in_string = !in_string,
            '#' if !in_string => return &line[..i],
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
    }
    line
}

fn parse_value(s: &str) -> Result<Value, String> {
    match s {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        "" => return Err("missing value".into()),
        _ => {}
    }
    if s.starts_with('"') {
        let (text, rest) = parse_string(s)?;
        return if rest.trim().is_empty() {
            Ok(Value::Str(text))
        } else {
            Err(format!("unexpected {rest:?} after the string"))
        };
    }
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("array must end with ']'")?;
        return parse_list(inner).map(Value::List);
    }
    s.parse::<i64>()
        .map(Value::Int)
        .map_err(|_| format!("{s:?} is not a string, integer, boolean or array (quote strings)"))
}

/// A basic TOML string: `"…"` with `\"` and `\\`; returns the text and what follows.
fn parse_string(s: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, other)) => return Err(format!("unsupported escape \\{other}")),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("string is never closed with '\"'".into())
}

fn parse_list(mut s: &str) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(items);
        }
        if !s.starts_with('"') {
            return Err(format!("array items must be quoted strings, found {s:?}"));
        }
        let (item, rest) = parse_string(s)?;
        items.push(item);
        s = rest.trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

fn set(config: &mut Config, key: &str, value: Value) -> Result<(), String> {
    let p = &mut config.policy;
    let wrong = |want: &str, v: &Value| Err(format!("key {key:?} must be {want}, not {}", v.kind()));
    match (key, value) {
        ("iface", Value::List(l)) => p.ifaces = Some(l),
        ("subnet", Value::List(l)) => p.subnets = Some(l),
        ("allow", Value::List(l)) => p.allow = Some(l),
        ("iface" | "subnet" | "allow", v) => return wrong("an array of strings", &v),
        ("reject_with", Value::Str(s)) => p.reject_with = Some(s),
        ("log_rate", Value::Str(s)) => p.log_rate = Some(s),
        ("target", Value::Str(s)) => config.target = Some(s),
        ("reject_with" | "log_rate" | "target", v) => return wrong("a string", &v),
        ("log", Value::Bool(true)) => p.log = Some(None),
        ("log", Value::Bool(false)) => p.log = None,
        ("log", Value::Str(s)) => p.log = Some(Some(s)),
        ("log", v) => return wrong("true, false or a prefix string", &v),
        ("nflog_group", Value::Int(n)) => p.nflog_group = Some(n.to_string()),
        ("nflog_group", v) => return wrong("an integer", &v),
        ("block_host", Value::Bool(b)) => p.block_host = Some(b),
        ("block_host", v) => return wrong("true or false", &v),
        (other, _) => return Err(format!("unknown key {other:?} (keys: {KEYS})")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_example_parses() {
        let text = r#"
# egress-guard settings
iface = ["docker0", "br-+"]   # the default
subnet = [
  "172.17.0.0/16",
  "fd00::/8",
]
allow = ["198.51.100.53:53/udp"]
reject_with = "tcp-reset"
log = "egress # blocked: "
log_rate = "5/minute"
nflog_group = 7
block_host = true
target = "docker-user"
"#;
        let c = parse("config.toml", text).unwrap();
        assert_eq!(c.policy.ifaces, Some(vec!["docker0".to_string(), "br-+".to_string()]));
        assert_eq!(c.policy.subnets.as_ref().unwrap().len(), 2);
        assert_eq!(c.policy.log, Some(Some("egress # blocked: ".into())));
        assert_eq!(c.policy.nflog_group.as_deref(), Some("7"));
        assert_eq!(c.target.as_deref(), Some("docker-user"));
        assert_eq!(c.policy.block_host, Some(true));
    }

    #[test]
    fn a_multi_line_array_may_hold_bracketed_ipv6_entries() {
        let text = "allow = [\n  \"[2001:db8::53]:53/udp\",  # resolver\n  \"203.0.113.0/24\",\n]\nlog = true\n";
        let c = parse("config.toml", text).unwrap();
        assert_eq!(c.policy.allow, Some(vec!["[2001:db8::53]:53/udp".to_string(), "203.0.113.0/24".to_string()]));
        assert_eq!(c.policy.log, Some(None));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = |text: &str| parse("/etc/egress-guard/config.toml", text).unwrap_err().to_string();
        assert_eq!(
            e("\nifac = [\"docker0\"]"),
            "/etc/egress-guard/config.toml:2: unknown key \"ifac\" (keys: iface, subnet, allow, reject_with, log, log_rate, nflog_group, block_host, target)"
        );
        assert_eq!(
            e("nflog_group = \"5\""),
            "/etc/egress-guard/config.toml:1: key \"nflog_group\" must be an integer, not a string"
        );
        assert_eq!(
            e("iface = \"docker0\""),
            "/etc/egress-guard/config.toml:1: key \"iface\" must be an array of strings, not a string"
        );
        assert!(e("log = tru").contains(":1: key \"log\": \"tru\" is not a string"));
        assert!(e("iface = [\"a\"]\niface = [\"b\"]").contains(":2: key \"iface\" is set twice"));
        assert!(e("[policy]").contains(":1: tables are not used here"));
        assert!(e("allow = [\"x\"").contains("never closed"));
    }
}
