//! Words every layer shares: address families, the transport protocols a rule can name, and
//! packet-rate limits.

use ipnet::IpNet;

/// Address family of a rule or a place: IPv4 (`ip`, `iptables`) or IPv6 (`ip6`, `ip6tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Family {
    #[serde(rename = "ipv4")]
    V4,
    #[serde(rename = "ipv6")]
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    pub fn nfproto(self) -> u8 {
        match self {
            Family::V4 => crate::nft::sys::NFPROTO_IPV4,
            Family::V6 => crate::nft::sys::NFPROTO_IPV6,
        }
    }

    /// The nft family keyword, also used in messages ("ip filter DOCKER-USER").
    pub fn nft_name(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// The command an admin would type for this family.
    pub fn iptables(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    /// "IPv4" or "IPv6", for sentences.
    pub fn word(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// At most RATE packets per UNIT seconds, with a burst of BURST (`-m limit`, nft `limit rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub rate: u64,
    /// Seconds per unit: 1, 60, 3600 or 86400.
    pub unit: u64,
    pub burst: u32,
}

impl Limit {
    /// `XT_LIMIT_BURST`: what `--limit-burst` defaults to, and iptables then does not print.
    pub const DEFAULT_BURST: u32 = 5;

    /// The unit as nft spells it.
    pub fn unit_word(self) -> &'static str {
        match self.unit {
            1 => "second",
            60 => "minute",
            3600 => "hour",
            _ => "day",
        }
    }
}
