//! Attempts read from packets the kernel really logged (the payloads of the NFLOG captures in
//! src/nft/testdata), cut at every length, bent, and random.

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::nft::msg::parse;
use crate::nft::nflog::tests::datagrams;
use crate::nft::nflog::{ulog_type, NFULNL_MSG_PACKET};

const CAPTURES: [&str; 3] = [
    include_str!("../../nft/testdata/nflog-forward-tcpdump.hex"),
    include_str!("../../nft/testdata/nflog-forward-ulogd.hex"),
    include_str!("../../nft/testdata/nflog-output-ulogd.hex"),
];

/// Every packet message in the captures, in file order.
fn logged() -> Vec<NflogPacket> {
    let mut out = Vec::new();
    for text in CAPTURES {
        for (_, datagram) in datagrams(text) {
            for msg in parse(&datagram).unwrap().iter().filter(|m| m.ty == ulog_type(NFULNL_MSG_PACKET)) {
                out.push(NflogPacket::decode(msg).unwrap());
            }
        }
    }
    out
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// What `traffic.py` sent (see the captures' comments): tcp :443, udp :53, echo request.
fn expected(kind: &str, v6: bool) -> (IpAddr, IpAddr, Proto, Option<u16>, Option<(u8, u8)>) {
    let (src, dst) = if v6 { (ip("fd00:17::2"), ip("2001:db8::2")) } else { (ip("172.17.0.2"), ip("198.51.100.2")) };
    match (kind, v6) {
        ("tcp", _) => (src, dst, Proto::Tcp, Some(443), None),
        ("udp", _) => (src, dst, Proto::Udp, Some(53), None),
        (_, false) => (src, dst, Proto::Icmp, None, Some((8, 0))),
        (_, true) => (src, dst, Proto::Icmpv6, None, Some((128, 0))),
    }
}

/// The kind of each captured packet, in `logged()` order.
const KINDS: [(&str, bool); 14] = [
    ("tcp", false),
    ("udp", false),
    ("icmp", false),
    ("tcp", true),
    ("udp", true),
    ("icmp", true),
    ("tcp", false),
    ("udp", false),
    ("icmp", false),
    ("tcp", true),
    ("udp", true),
    ("icmp", true),
    ("udp", false),
    ("tcp", true),
];

#[test]
fn captured_packets_give_their_attempts() {
    let logged = logged();
    assert_eq!(logged.len(), KINDS.len());
    for (packet, (kind, v6)) in logged.iter().zip(KINDS) {
        let a = Attempt::of(packet).unwrap();
        assert_eq!((a.src, a.dst, a.proto, a.dport, a.icmp), expected(kind, v6), "{a}");
        assert_eq!(a.sport.is_some(), a.dport.is_some());
    }
    let first = Attempt::of(&logged[0]).unwrap();
    assert_eq!(first.to_string(), "172.17.0.2 -> 198.51.100.2 tcp/443");
    assert_eq!(first.sport, Some(35612));
    assert_eq!(Attempt::of(&logged[5]).unwrap().to_string(), "fd00:17::2 -> 2001:db8::2 icmpv6 type 128 code 0");
}

/// The kernel cuts a packet at the copy range: every cut gives an error while the IP header is
/// incomplete, then the addresses, then the port once the whole transport header is in.
#[test]
fn cut_packets_give_what_they_hold() {
    for (packet, (kind, v6)) in logged().iter().zip(KINDS) {
        let (src, dst, proto, dport, icmp) = expected(kind, v6);
        let ip_len = if v6 { 40 } else { 20 };
        let l4_len = match kind {
            "tcp" => usize::from(packet.payload[ip_len + 12] >> 4) * 4,
            _ => 8,
        };
        for cut in 0..=packet.payload.len() {
            let got = Attempt::parse(packet.hw_protocol, &packet.payload[..cut]);
            if cut < ip_len {
                assert!(matches!(got, Err(PacketError::Header(_))), "{kind} v6={v6} cut at {cut}: {got:?}");
                continue;
            }
            let a = got.unwrap_or_else(|e| panic!("{kind} v6={v6} cut at {cut}: {e}"));
            assert_eq!((a.src, a.dst, a.proto), (src, dst, proto), "cut at {cut}");
            let whole = cut >= ip_len + l4_len;
            assert_eq!(a.dport, if whole { dport } else { None }, "{kind} v6={v6} cut at {cut}");
            assert_eq!(a.icmp, if whole { icmp } else { None }, "{kind} v6={v6} cut at {cut}");
        }
    }
}

#[test]
fn a_later_fragment_has_no_port() {
    let mut tcp = logged()[0].payload.clone();
    // Fragment offset 185 (×8 bytes), no flags: the TCP header was in the first fragment.
    tcp[6..8].copy_from_slice(&185u16.to_be_bytes());
    let a = Attempt::parse(ETH_P_IP, &tcp).unwrap();
    assert_eq!((a.proto, a.dport, a.dst), (Proto::Tcp, None, ip("198.51.100.2")));
}

#[test]
fn other_protocols_keep_their_number() {
    let mut udp = logged()[1].payload.clone();
    udp[9] = 47; // GRE
    let a = Attempt::parse(ETH_P_IP, &udp).unwrap();
    assert_eq!((a.proto, a.sport, a.dport, a.icmp), (Proto::Other(47), None, None, None));
    assert_eq!(a.to_string(), "172.17.0.2 -> 198.51.100.2 proto 47");
}

#[test]
fn the_header_must_match_the_hardware_protocol() {
    let v4 = &logged()[0].payload;
    assert!(matches!(
        Attempt::parse(ETH_P_IPV6, v4),
        Err(PacketError::VersionMismatch { hw_protocol: ETH_P_IPV6, version: 4 })
    ));
    assert!(matches!(Attempt::parse(0x0806, v4), Err(PacketError::NotIp(0x0806))));
    assert!(matches!(Attempt::parse(ETH_P_IP, b"GET / HTTP/1.1\r\n\r\n"), Err(PacketError::Header(_))));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(v6 in any::<bool>(), bytes in prop::collection::vec(any::<u8>(), 0..160)) {
        let _ = Attempt::parse(if v6 { ETH_P_IPV6 } else { ETH_P_IP }, &bytes);
    }

    /// Real headers with random bytes written over them: the parser meets broken lengths,
    /// versions and option fields deep inside otherwise plausible packets.
    #[test]
    fn bent_packets_never_panic(which in 0usize..14, at in 0usize..100, junk in prop::collection::vec(any::<u8>(), 1..8)) {
        let packet = &logged()[which];
        let mut bytes = packet.payload.clone();
        for (i, b) in junk.iter().enumerate() {
            if let Some(slot) = bytes.get_mut(at + i) {
                *slot = *b;
            }
        }
        let _ = Attempt::parse(packet.hw_protocol, &bytes);
    }
}
