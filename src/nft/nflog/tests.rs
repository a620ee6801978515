//! The NFLOG codec against what tcpdump, ulogd and the kernel really sent (src/nft/testdata/
//! nflog-*.hex say how each capture was made), plus malformed and random input.

use proptest::prelude::*;

use super::*;
use crate::nft::attr::align4;
use crate::nft::msg::{parse, NLMSG_HDRLEN};
use crate::nft::sys::{NFPROTO_IPV4, NFPROTO_IPV6, NLMSG_DONE};

const CONFIG_TCPDUMP: &str = include_str!("../testdata/nflog-config-tcpdump.hex");
const CONFIG_ULOGD: &str = include_str!("../testdata/nflog-config-ulogd.hex");
const FORWARD_TCPDUMP: &str = include_str!("../testdata/nflog-forward-tcpdump.hex");
const FORWARD_ULOGD: &str = include_str!("../testdata/nflog-forward-ulogd.hex");
const OUTPUT_ULOGD: &str = include_str!("../testdata/nflog-output-ulogd.hex");
const FORWARD_BRIDGE: &str = include_str!("../testdata/nflog-forward-bridge.hex");

/// The datagrams of a capture file: each starts at a `## title` line; `#` starts a comment.
pub(crate) fn datagrams(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            out.push((title.to_owned(), Vec::new()));
            continue;
        }
        let bytes = line.split('#').next().unwrap_or("");
        if let Some((_, datagram)) = out.last_mut() {
            datagram.extend(crate::nft::hex(bytes));
        }
    }
    out
}

/// The datagrams of a capture whose title starts with `title`.
fn titled(text: &str, title: &str) -> Vec<Vec<u8>> {
    datagrams(text).into_iter().filter(|(t, _)| t.starts_with(title)).map(|(_, d)| d).collect()
}

fn seq_of(msg: &[u8]) -> u32 {
    u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]])
}

/// Byte-for-byte, with a 4-bytes-per-row diff on failure.
fn assert_same_bytes(ours: &[u8], theirs: &[u8]) {
    if ours == theirs {
        return;
    }
    let rows = |b: &[u8]| b.chunks(4).map(|c| format!("{c:02x?}")).collect::<Vec<_>>();
    let (o, t) = (rows(ours), rows(theirs));
    let diff: Vec<String> = (0..o.len().max(t.len()))
        .map(|i| {
            let (a, b) = (o.get(i).map_or("-", String::as_str), t.get(i).map_or("-", String::as_str));
            format!("{:04x}: {a:<20} {b:<20}{}", i * 4, if a == b { "" } else { " <--" })
        })
        .collect();
    panic!("bytes differ (ours | theirs):\n{}", diff.join("\n"));
}

fn packets(datagram: &[u8]) -> Vec<NflogPacket> {
    parse(datagram).unwrap().iter().filter(|m| m.ty != NLMSG_DONE).map(|m| NflogPacket::decode(m).unwrap()).collect()
}

#[test]
fn bind_and_mode_are_byte_identical_to_libpcap() {
    let sent = titled(CONFIG_TCPDUMP, "sent");
    let bind = &sent[2];
    assert_same_bytes(&Config::bind(7).encode(seq_of(bind)), bind);
    let mode = &sent[3];
    let ours = Config { mode: Some(Mode { copy_mode: NFULNL_COPY_PACKET, copy_range: 262_144 }), ..Config::group(7) };
    assert_same_bytes(&ours.encode(seq_of(mode)), mode);
    // libpcap's legacy logger rebinding: PF_UNBIND, PF_BIND for AF_INET on group 0.
    let pf = Config { family: 2, cmd: Some(Cmd::PfUnbind), ..Config::group(0) };
    assert_same_bytes(&pf.encode(seq_of(&sent[0])), &sent[0]);
}

#[test]
fn settings_are_byte_identical_to_ulogd() {
    let sent = titled(CONFIG_ULOGD, "sent");
    let expected = [
        Config::bind(7),
        // MODE is checked by value below: ulogd sends a non-zero pad byte.
        Config { qthresh: Some(32), ..Config::group(7) },
        Config { timeout: Some(10), ..Config::group(7) },
        Config { flags: Some(NFULNL_CFG_F_SEQ), ..Config::group(7) },
        Config::unbind(7),
    ];
    let without_mode: Vec<&Vec<u8>> = sent.iter().filter(|m| m.len() != 32).collect();
    assert_eq!(without_mode.len(), expected.len());
    for (ours, theirs) in expected.iter().zip(without_mode) {
        assert_same_bytes(&ours.encode(seq_of(theirs)), theirs);
        assert_eq!(&Config::decode(&parse(theirs).unwrap()[0]).unwrap(), ours);
    }
    let mode = Config::decode(&parse(&sent[1]).unwrap()[0]).unwrap();
    assert_eq!(mode.mode, Some(Mode { copy_mode: NFULNL_COPY_PACKET, copy_range: 0xffff }));
}

#[test]
fn config_requests_decode_to_what_encoded_them() {
    let all = Config {
        family: AF_UNSPEC,
        group: 0x1234,
        cmd: Some(Cmd::Bind),
        mode: Some(Mode { copy_mode: NFULNL_COPY_PACKET, copy_range: 128 }),
        nlbufsiz: Some(65_536),
        timeout: Some(10),
        qthresh: Some(64),
        flags: Some(NFULNL_CFG_F_SEQ),
    };
    let bytes = all.encode(9);
    // res_id is big-endian: 12 34.
    assert_eq!(&bytes[16..20], [0, 0, 0x12, 0x34]);
    assert_eq!(Config::decode(&parse(&bytes).unwrap()[0]).unwrap(), all);
}

#[test]
fn the_kernel_acks_every_captured_request() {
    for text in [CONFIG_TCPDUMP, CONFIG_ULOGD] {
        let sent = titled(text, "sent");
        let acks = titled(text, "kernel");
        assert_eq!(sent.len(), acks.len());
        for (request, ack) in sent.iter().zip(&acks) {
            let reply = &parse(ack).unwrap()[0];
            assert_eq!(reply.error().unwrap(), (0, seq_of(request)));
        }
    }
}

#[test]
fn forwarded_packets_decode_with_every_field() {
    let batches = titled(FORWARD_TCPDUMP, "kernel");
    let v4 = packets(&batches[0]);
    assert_eq!(v4.len(), 3, "three messages, then NLMSG_DONE");
    let tcp = &v4[0];
    assert_eq!((tcp.family, tcp.group, tcp.hw_protocol, tcp.hook), (NFPROTO_IPV4, 7, 0x0800, 2));
    assert_eq!(tcp.prefix.as_deref(), Some("egress-guard: "));
    assert_eq!((tcp.indev, tcp.outdev, tcp.physindev, tcp.physoutdev), (Some(2), Some(3), None, None));
    assert_eq!(tcp.timestamp, Some(Timestamp { sec: 1_796_153_672, usec: 130_188 }));
    assert_eq!((tcp.mark, tcp.uid, tcp.gid, tcp.seq), (None, None, None, None));
    assert_eq!(tcp.payload.len(), 60);
    assert_eq!(&tcp.payload[..2], [0x45, 0x00]);
    let other: Vec<u16> = tcp.other.iter().map(|a| a.ty).collect();
    assert_eq!(other, [NFULA_HWADDR, NFULA_HWTYPE, NFULA_HWLEN, NFULA_HWHEADER]);
    assert_eq!(v4[1].payload.len(), 46);
    let v6 = packets(&batches[1]);
    assert_eq!(v6.len(), 3);
    assert!(v6.iter().all(|p| p.family == NFPROTO_IPV6 && p.hw_protocol == 0x86dd && p.payload[0] >> 4 == 6));
}

#[test]
fn sequence_numbers_count_from_zero() {
    let seqs: Vec<Option<u32>> =
        titled(FORWARD_ULOGD, "kernel").iter().flat_map(|d| packets(d)).map(|p| p.seq).collect();
    assert_eq!(seqs, (0..6).map(Some).collect::<Vec<_>>());
}

#[test]
fn output_packets_carry_owner_and_mark_but_no_timestamp() {
    let both = packets(&titled(OUTPUT_ULOGD, "kernel")[0]);
    let udp = &both[0];
    assert_eq!((udp.hook, udp.indev, udp.outdev), (3, None, Some(2)));
    assert_eq!((udp.uid, udp.gid, udp.mark, udp.seq), (Some(65534), Some(65534), Some(0x2a), Some(0)));
    assert_eq!((udp.timestamp, udp.other.len()), (None, 0));
    assert_eq!(udp.prefix.as_deref(), Some("eg-out: "));
    let tcp = &both[1];
    assert_eq!((tcp.uid, tcp.gid, tcp.mark, tcp.seq, tcp.hw_protocol), (Some(0), Some(0), None, Some(1), 0x86dd));
}

#[test]
fn a_bridge_port_is_the_physical_in_device() {
    let both = packets(&titled(FORWARD_BRIDGE, "kernel")[0]);
    assert_eq!(both.len(), 2);
    for p in both {
        assert_eq!((p.indev, p.physindev, p.outdev, p.physoutdev), (Some(4), Some(2), Some(3), None));
    }
}

#[test]
fn every_captured_packet_re_encodes_to_the_kernels_bytes() {
    let mut checked = 0;
    for text in [FORWARD_TCPDUMP, FORWARD_ULOGD, OUTPUT_ULOGD, FORWARD_BRIDGE] {
        for (_, datagram) in datagrams(text) {
            let mut offset = 0;
            for msg in parse(&datagram).unwrap() {
                let len = NLMSG_HDRLEN + msg.body.len();
                if msg.ty == ulog_type(NFULNL_MSG_PACKET) {
                    assert_same_bytes(&NflogPacket::decode(&msg).unwrap().encode(), &datagram[offset..offset + len]);
                    checked += 1;
                }
                offset += align4(len);
            }
        }
    }
    assert_eq!(checked, 3 + 3 + 6 + 2 + 2);
}

/// A packet message with attributes `fill` writes (after a valid PACKET_HDR when `header`).
fn packet_with(header: bool, fill: impl FnOnce(&mut AttrWriter)) -> Vec<u8> {
    msg::build(ulog_type(NFULNL_MSG_PACKET), 0, 0, NFPROTO_IPV4, 7, |w| {
        if header {
            w.put_bytes(NFULA_PACKET_HDR, &[8, 0, 2, 0]);
        }
        fill(w);
    })
}

fn decode_bytes(bytes: &[u8]) -> Result<NflogPacket, NlError> {
    NflogPacket::decode(&parse(bytes)?[0])
}

/// A packet message holding one attribute (after a valid PACKET_HDR when `header`).
fn one_attr(header: bool, ty: u16, payload: &[u8]) -> Vec<u8> {
    packet_with(header, |w| {
        w.put_bytes(ty, payload);
    })
}

#[test]
fn malformed_attributes_are_errors() {
    let cases = [
        ("no header", one_attr(false, NFULA_MARK, &[0, 0, 0, 1])),
        ("short header", one_attr(false, NFULA_PACKET_HDR, &[8, 0])),
        ("short ifindex", one_attr(true, NFULA_IFINDEX_INDEV, &[0, 0, 2])),
        ("long seq", one_attr(true, NFULA_SEQ, &[0; 8])),
        ("short timestamp", one_attr(true, NFULA_TIMESTAMP, &[0; 15])),
        ("long timestamp", one_attr(true, NFULA_TIMESTAMP, &[0; 20])),
    ];
    for (what, bytes) in cases {
        assert!(matches!(decode_bytes(&bytes), Err(NlError::Malformed(_))), "{what}");
    }
    // An attribute running past its message.
    let mut bytes = one_attr(true, NFULA_MARK, &[0, 0, 0, 1]);
    let last = bytes.len() - 8;
    bytes[last] = 0x40;
    assert!(matches!(decode_bytes(&bytes), Err(NlError::Malformed(_))));
    // No nfgenmsg at all.
    let mut bare = packet_with(false, |_| {});
    bare.truncate(NLMSG_HDRLEN + 2);
    bare[0] = bare.len() as u8;
    assert!(decode_bytes(&bare).is_err());
}

#[test]
fn unknown_attributes_are_kept_and_odd_prefixes_shown() {
    let bytes = packet_with(true, |w| {
        w.put_bytes(NFULA_PREFIX, b"caf\xe9\0").put_bytes(99, &[1, 2, 3]).put_be32(NFULA_SEQ_GLOBAL, 5);
    });
    let p = decode_bytes(&bytes).unwrap();
    assert_eq!(p.prefix.as_deref(), Some("caf\u{fffd}"));
    assert_eq!(
        p.other,
        [RawAttr { ty: 99, payload: vec![1, 2, 3] }, RawAttr { ty: NFULA_SEQ_GLOBAL, payload: vec![0, 0, 0, 5] }]
    );
}

#[test]
fn timestamps_out_of_range_give_none() {
    assert_eq!(Timestamp { sec: u64::MAX, usec: u64::MAX }.to_system_time(), None);
    let t = Timestamp { sec: 1_796_153_672, usec: 130_188 }.to_system_time().unwrap();
    assert_eq!(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros(), 1_796_153_672_130_188);
}

fn arb_packet() -> impl Strategy<Value = NflogPacket> {
    let ids = (any::<Option<u32>>(), any::<Option<u32>>(), any::<Option<u32>>(), any::<Option<u32>>());
    let owner = (any::<Option<u32>>(), any::<Option<u32>>(), any::<Option<u32>>(), any::<Option<u32>>());
    let other = prop::collection::vec(
        (prop::sample::select(vec![NFULA_HWADDR, NFULA_HWLEN, NFULA_SEQ_GLOBAL, NFULA_CT_INFO, 30]), any::<Vec<u8>>()),
        0..4,
    );
    (
        (any::<u8>(), any::<u16>(), any::<u16>(), any::<u8>()),
        prop::option::of("[^\u{0}]{0,40}"),
        ids,
        owner,
        any::<Option<(u64, u64)>>(),
        prop::collection::vec(any::<u8>(), 0..200),
        other,
    )
        .prop_map(|((family, group, hw_protocol, hook), prefix, ids, owner, ts, payload, other)| {
            // Encode puts link-layer attributes before the timestamp and the rest after SEQ, as
            // the kernel does; order the generated ones the same way.
            let (mut other, rest): (Vec<_>, Vec<_>) = other.into_iter().partition(|(ty, _)| LINK_LAYER.contains(ty));
            other.extend(rest);
            NflogPacket {
                family,
                group,
                hw_protocol,
                hook,
                prefix,
                indev: ids.0,
                physindev: ids.1,
                outdev: ids.2,
                physoutdev: ids.3,
                mark: owner.0,
                timestamp: ts.map(|(sec, usec)| Timestamp { sec, usec }),
                uid: owner.1,
                gid: owner.2,
                seq: owner.3,
                payload,
                other: other.into_iter().map(|(ty, payload)| RawAttr { ty, payload }).collect(),
            }
        })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(msgs) = parse(&bytes) {
            for m in &msgs {
                let _ = NflogPacket::decode(m);
                let _ = Config::decode(m);
            }
        }
    }

    #[test]
    fn random_attributes_never_panic(ty in 0u16..32, payload in prop::collection::vec(any::<u8>(), 0..40)) {
        let bytes = packet_with(true, |w| {
            w.put_bytes(ty, &payload);
        });
        let _ = decode_bytes(&bytes);
        let config = msg::build(ulog_type(NFULNL_MSG_CONFIG), 0, 0, 0, 7, |w| {
            w.put_bytes(ty % 8, &payload);
        });
        let _ = Config::decode(&parse(&config).unwrap()[0]);
    }

    #[test]
    fn packets_round_trip(p in arb_packet()) {
        prop_assert_eq!(decode_bytes(&p.encode()).unwrap(), p);
    }
}
