//! Where allowed queries go: `--dns-upstream ADDR` values, or the nameservers of the host's
//! /etc/resolv.conf. The file is the admin's and its `nameserver` lines are all we need, so a
//! few lines read it instead of a crate (options, search lists and sortlists do not concern a
//! forwarder: the clients' own resolv.conf applies those).

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

/// The DNS port.
pub const PORT: u16 = 53;
/// Where the host's resolvers are listed.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Why no upstream could be had.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("not an upstream address: ADDR, ADDR:PORT or [IPv6]:PORT (e.g. 198.51.100.53, [2001:db8::53]:53)")]
    Syntax,
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} lists no nameserver: give --dns-upstream ADDR")]
    None { path: String },
}

/// `ADDR`, `ADDR:PORT` or `[IPv6]:PORT`; the port defaults to 53.
pub fn parse_upstream(s: &str) -> Result<SocketAddr, UpstreamError> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, PORT));
    }
    match s.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(addr),
        _ => Err(UpstreamError::Syntax),
    }
}

/// The `nameserver` addresses of a resolv.conf text, in order. An IPv6 address may carry a
/// zone (`fe80::1%eth0`); `zone_index` turns its name into an interface index, and a zone it
/// cannot resolve drops that line rather than sending queries nowhere.
pub fn nameservers(text: &str, zone_index: impl Fn(&str) -> Option<u32>) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        let parsed = match addr.split_once('%') {
            None => addr.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, PORT)),
            Some((ip, zone)) => ip.parse().ok().and_then(|ip| {
                let index = zone.parse::<u32>().ok().or_else(|| zone_index(zone))?;
                Some(SocketAddr::V6(SocketAddrV6::new(ip, PORT, 0, index)))
            }),
        };
        if let Some(addr) = parsed.filter(|a| !out.contains(a)) {
            out.push(addr);
        }
    }
    out
}

/// The host's nameservers from `path` (normally [`RESOLV_CONF`]).
pub fn from_resolv_conf(path: &str) -> Result<Vec<SocketAddr>, UpstreamError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| UpstreamError::Read { path: path.to_string(), source })?;
    let zone = |name: &str| nix::net::if_::if_nametoindex(name).ok();
    let found = nameservers(&text, zone);
    if found.is_empty() {
        return Err(UpstreamError::None { path: path.to_string() });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameserver_lines_only() {
        let text = "# generated\nsearch example.org\nnameserver 198.51.100.53\n  nameserver   2001:db8::53 # v6\n\
                    options edns0\n;nameserver 203.0.113.1\nnameserver fe80::1%eth0\nnameserver fe80::2%7\n\
                    nameserver fe80::3%nosuch\nnameserver bogus\nnameserver\nnameserver 198.51.100.53\n";
        let zone = |name: &str| (name == "eth0").then_some(2);
        let found = nameservers(text, zone);
        let want: Vec<SocketAddr> = vec![
            "198.51.100.53:53".parse().unwrap(),
            "[2001:db8::53]:53".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 2)),
            SocketAddr::V6(SocketAddrV6::new("fe80::2".parse().unwrap(), 53, 0, 7)),
        ];
        assert_eq!(found, want);
    }

    #[test]
    fn upstream_flag_values() {
        assert_eq!(parse_upstream("198.51.100.53").unwrap(), "198.51.100.53:53".parse().unwrap());
        assert_eq!(parse_upstream("198.51.100.53:5353").unwrap(), "198.51.100.53:5353".parse().unwrap());
        assert_eq!(parse_upstream("2001:db8::53").unwrap(), "[2001:db8::53]:53".parse().unwrap());
        assert_eq!(parse_upstream("[2001:db8::53]:5353").unwrap(), "[2001:db8::53]:5353".parse().unwrap());
        for bad in ["", "dns.example", "198.51.100.53:0", "198.51.100.53:99999", "[2001:db8::53]"] {
            assert!(matches!(parse_upstream(bad), Err(UpstreamError::Syntax)), "{bad}");
        }
    }

    #[test]
    fn a_file_without_nameservers_says_what_to_do() {
        let dir = std::env::temp_dir().join(format!("eg-resolv-{}", std::process::id()));
        std::fs::write(&dir, "search example.org\n").unwrap();
        let err = from_resolv_conf(&dir.to_string_lossy()).unwrap_err();
        std::fs::remove_file(&dir).unwrap();
        assert!(err.to_string().ends_with("lists no nameserver: give --dns-upstream ADDR"), "{err}");
    }
}
