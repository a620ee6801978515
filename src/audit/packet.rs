//! What a logged packet was trying to do: source, destination, protocol and port or ICMP type,
//! read from the bytes NFLOG copied (from the network header on, cut at the copy range). The
//! bytes are the attacker's, so etherparse parses them, leniently: a cut header still gives
//! what it holds.

use std::fmt;
use std::net::IpAddr;

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};

use crate::nft::nflog::NflogPacket;

/// Ethertypes NFLOG reports in `hw_protocol` for the ip, ip6 and inet hooks.
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;

/// The transport protocol of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Any other IP protocol number (or, for IPv6, the extension header the copy ended in).
    Other(u8),
}

impl Proto {
    fn from_number(n: u8) -> Proto {
        match n {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            1 => Proto::Icmp,
            58 => Proto::Icmpv6,
            n => Proto::Other(n),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Tcp => f.write_str("tcp"),
            Proto::Udp => f.write_str("udp"),
            Proto::Icmp => f.write_str("icmp"),
            Proto::Icmpv6 => f.write_str("icmpv6"),
            Proto::Other(n) => write!(f, "proto {n}"),
        }
    }
}

/// One blocked attempt, as far as the copied bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attempt {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Proto,
    /// TCP/UDP ports; `None` for other protocols, fragments after the first, or a transport
    /// header the copy cut short.
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// ICMP or ICMPv6 (type, code).
    pub icmp: Option<(u8, u8)>,
}

/// Why a logged packet tells no attempt.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// NFLOG from a hook that is neither IPv4 nor IPv6 (arp, bridge, netdev without IP).
    #[error("logged packet has hardware protocol {0:#06x}, not IPv4 or IPv6")]
    NotIp(u16),
    /// Too short or broken for an IP header (the copy range is below 20 or 40 bytes, or the
    /// bytes are not IP at all).
    #[error("logged packet has no readable ip header")]
    Header(#[source] etherparse::err::ip::LaxHeaderSliceError),
    /// The header's version contradicts the hardware protocol NFLOG reported.
    #[error("logged packet has hardware protocol {hw_protocol:#06x} but an ipv{version} header")]
    VersionMismatch { hw_protocol: u16, version: u8 },
}

impl Attempt {
    /// The attempt in a logged packet: `hw_protocol` from NFULA_PACKET_HDR, `payload` from
    /// NFULA_PAYLOAD.
    pub fn parse(hw_protocol: u16, payload: &[u8]) -> Result<Attempt, PacketError> {
        let want = match hw_protocol {
            ETH_P_IP => 4,
            ETH_P_IPV6 => 6,
            other => return Err(PacketError::NotIp(other)),
        };
        let sliced = LaxSlicedPacket::from_ip(payload).map_err(PacketError::Header)?;
        let (version, src, dst, number) = match &sliced.net {
            Some(LaxNetSlice::Ipv4(v4)) => {
                let h = v4.header();
                (4, IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()), v4.payload().ip_number)
            }
            Some(LaxNetSlice::Ipv6(v6)) => {
                let h = v6.header();
                (6, IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()), v6.payload().ip_number)
            }
            // from_ip only ever finds IP; anything else is not an attempt we can describe.
            Some(LaxNetSlice::Arp(_)) | None => return Err(PacketError::NotIp(hw_protocol)),
        };
        if version != want {
            return Err(PacketError::VersionMismatch { hw_protocol, version });
        }
        let (sport, dport, icmp) = match &sliced.transport {
            Some(TransportSlice::Tcp(tcp)) => (Some(tcp.source_port()), Some(tcp.destination_port()), None),
            Some(TransportSlice::Udp(udp)) => (Some(udp.source_port()), Some(udp.destination_port()), None),
            Some(TransportSlice::Icmpv4(icmp)) => (None, None, Some((icmp.type_u8(), icmp.code_u8()))),
            Some(TransportSlice::Icmpv6(icmp)) => (None, None, Some((icmp.type_u8(), icmp.code_u8()))),
            Some(TransportSlice::Igmp(_)) | None => (None, None, None),
        };
        Ok(Attempt { src, dst, proto: Proto::from_number(number.0), sport, dport, icmp })
    }

    /// The attempt an NFLOG message logged.
    pub fn of(packet: &NflogPacket) -> Result<Attempt, PacketError> {
        Attempt::parse(packet.hw_protocol, &packet.payload)
    }
}

impl fmt::Display for Attempt {
    /// `172.17.0.2 -> 198.51.100.2 tcp/443`, `… icmp type 8 code 0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} {}", self.src, self.dst, self.proto)?;
        match (self.dport, self.icmp) {
            (Some(port), _) => write!(f, "/{port}"),
            (None, Some((ty, code))) => write!(f, " type {ty} code {code}"),
            (None, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
