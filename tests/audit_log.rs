//! The NFLOG reader against a real kernel: a container namespace behind a forwarding host that
//! logs (and drops) everything it forwards, real TCP, UDP and ICMP attempts over IPv4 and IPv6,
//! a second reader, a second namespace, and bounded floods that must lose nothing or say so.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use egress_guard::audit::events::{Event, Stats};
use egress_guard::audit::packet::{Attempt, Proto};
use egress_guard::audit::reader::{interface_name, NflogReader, Options, ReaderError};
use egress_guard::nft::nflog::NflogPacket;

use crate::harness::{self, *};

const PREFIX: &str = "egress-guard: ";
/// Each test uses its own group: groups are per namespace, but distinct numbers keep a
/// mix-up between tests from passing silently.
const GROUP_ATTEMPTS: u16 = 7101;
const GROUP_COPY: u16 = 7102;
const GROUP_TAKEN: u16 = 7103;
const GROUP_FLOOD: u16 = 7104;
const GROUP_TINY: u16 = 7105;

/// The attempts go to the discard port of the "internet" namespace; nothing reaches it.
const FLOOD_PORT: u16 = 9;
const FLOOD_PACKETS: u32 = 10_000;
/// A flood and its draining each stop after this long, whatever they reached.
const FLOOD_BOUND: Duration = Duration::from_secs(10);

/// `ct` (172.17.0.2, fd00:17::2 on `vc`) → `host` (`vh` 172.17.0.1, fd00:17::1; `up0`
/// 198.51.100.1, 2001:db8::1; forwarding on) → `net` (198.51.100.2, 2001:db8::2). The host
/// counts, logs to `group` with PREFIX and drops every forwarded packet.
struct LogNet {
    ct: Netns,
    host: Netns,
    /// Kept so the host's route out has a far end; no test traffic reaches it.
    _net: Netns,
}

impl LogNet {
    fn new(group: u16) -> LogNet {
        let (ct, host, net) = (Netns::new("ct"), Netns::new("host"), Netns::new("net"));
        host.ip_batch(&format!(
            "link add vh type veth peer name vc netns {ct}\n\
             link add up0 type veth peer name eth0 netns {net}\n\
             addr add 172.17.0.1/16 dev vh\naddr add fd00:17::1/64 dev vh\n\
             addr add 198.51.100.1/24 dev up0\naddr add 2001:db8::1/64 dev up0\n\
             link set vh up\nlink set up0 up\n",
            ct = ct.name(),
            net = net.name()
        ));
        host.sysctl("net.ipv4.ip_forward", "1");
        host.sysctl("net.ipv6.conf.all.forwarding", "1");
        ct.ip_batch(
            "addr add 172.17.0.2/16 dev vc\naddr add fd00:17::2/64 dev vc\nlink set vc up\n\
             route add default via 172.17.0.1\nroute add default via fd00:17::1\n",
        );
        net.ip_batch("addr add 198.51.100.2/24 dev eth0\naddr add 2001:db8::2/64 dev eth0\nlink set eth0 up\n");
        host.run_with_input(&["nft", "-f", "-"], &log_table("forward", group));
        LogNet { ct, host, _net: net }
    }

    /// Opens a reader in the host namespace.
    fn reader(&self, group: u16, options: Options) -> NflogReader {
        self.host.enter(|| NflogReader::open_with(group, &options)).expect("open the reader in host")
    }

    /// Packets the host's log rule has seen: every one it logged.
    fn logged(&self) -> u64 {
        counter(&self.host.run(&["nft", "list", "chain", "inet", "eg_log", "guard"]))
    }
}

/// `table inet eg_log` with a base chain on `hook` that counts, logs (no rate limit) and drops.
fn log_table(hook: &str, group: u16) -> String {
    format!(
        "table inet eg_log {{\n  chain guard {{\n    type filter hook {hook} priority 0; policy accept;\n    \
         ip daddr 198.51.100.0/24 counter log group {group} prefix \"{PREFIX}\" drop\n    \
         ip6 daddr 2001:db8::/64 counter log group {group} prefix \"{PREFIX}\" drop\n  }}\n}}\n"
    )
}

/// The sum of `counter packets N` in an `nft list` output.
fn counter(listing: &str) -> u64 {
    let numbers = listing.split("counter packets ").skip(1);
    numbers.filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok()).sum()
}

/// Receives until `done` says so or `bound` passes; returns every packet and the reader's stats.
fn collect(
    reader: &mut NflogReader,
    bound: Duration,
    mut done: impl FnMut(&[NflogPacket], Stats) -> bool,
) -> Vec<NflogPacket> {
    let deadline = Instant::now() + bound;
    let mut packets = Vec::new();
    while !done(&packets, reader.stats()) && Instant::now() < deadline {
        for event in reader.recv(Some(Duration::from_millis(50))).expect("recv") {
            match event {
                Event::Packet(p) => packets.push(p),
                Event::Malformed(e) => panic!("the kernel sent something we cannot decode: {e}"),
                Event::Lost(_) | Event::Overrun => {}
            }
        }
    }
    packets
}

fn attempt(p: &NflogPacket) -> Attempt {
    Attempt::of(p).unwrap_or_else(|e| panic!("{e}: {p:?}"))
}

#[test]
fn tcp_udp_and_icmp_attempts_are_reported_with_their_devices() {
    harness::require_kernel!();
    let ln = LogNet::new(GROUP_ATTEMPTS);
    let mut reader = ln.reader(GROUP_ATTEMPTS, Options::default());
    let short = Duration::from_millis(200);
    let probes = [
        Probe::tcp((INTERNET_V4, 443)),
        Probe::udp((INTERNET_V4, 53)),
        Probe::ping(INTERNET_V4),
        Probe::tcp((INTERNET_V6, 443)),
        Probe::udp((INTERNET_V6, 53)),
        Probe::ping(INTERNET_V6),
    ];
    for probe in probes {
        assert!(!probe.timeout(short).run_in(&ln.ct).is_open(), "{probe} got through a dropping host");
    }
    let wanted = |a: &Attempt, probe: &Probe| {
        let port = match probe.proto {
            harness::Proto::Ping => None,
            _ => Some(probe.to.port()),
        };
        let icmp = match (probe.proto, probe.to.ip()) {
            (harness::Proto::Ping, IpAddr::V4(_)) => Some((8, 0)),
            (harness::Proto::Ping, IpAddr::V6(_)) => Some((128, 0)),
            _ => None,
        };
        a.dst == probe.to.ip() && a.dport == port && a.icmp == icmp
    };
    let seen = |packets: &[NflogPacket]| probes.iter().all(|pr| packets.iter().any(|p| wanted(&attempt(p), pr)));
    let packets = collect(&mut reader, Duration::from_secs(5), |packets, _| seen(packets));
    assert!(seen(&packets), "not every attempt was reported: {:#?}", packets.iter().map(attempt).collect::<Vec<_>>());

    let (vh, up0) = ln.host.enter(|| (interface_name_of("vh"), interface_name_of("up0")));
    let now = std::time::SystemTime::now();
    for p in &packets {
        let a = attempt(p);
        let src: IpAddr = if a.dst.is_ipv4() { C1_V4.into() } else { C1_V6.into() };
        assert_eq!(a.src, src, "{a}");
        let proto_ok = match a.dst {
            IpAddr::V4(_) => matches!(a.proto, Proto::Tcp | Proto::Udp | Proto::Icmp),
            IpAddr::V6(_) => matches!(a.proto, Proto::Tcp | Proto::Udp | Proto::Icmpv6),
        };
        assert!(proto_ok, "{a}");
        assert_eq!(p.prefix.as_deref(), Some(PREFIX));
        assert_eq!(p.hook, 2, "NF_INET_FORWARD");
        assert_eq!((p.indev, p.outdev), (Some(vh), Some(up0)), "{a}");
        let (indev, outdev) = ln.host.enter(|| (p.indev.and_then(interface_name), p.outdev.and_then(interface_name)));
        assert_eq!((indev.as_deref(), outdev.as_deref()), (Some("vh"), Some("up0")));
        // A forwarded packet may or may not carry the time it arrived; when it does, it is now.
        if let Some(at) = p.timestamp.and_then(|t| t.to_system_time()) {
            let skew = now.duration_since(at).unwrap_or_else(|e| e.duration());
            assert!(skew < Duration::from_secs(60), "timestamp {at:?} is {skew:?} from now");
        }
    }
    assert_eq!(reader.stats().lost, 0);
    assert_eq!(reader.stats().overruns, 0);
}

/// The ifindex of `name` in the calling thread's namespace.
fn interface_name_of(name: &str) -> u32 {
    nix::net::if_::if_nametoindex(name).unwrap_or_else(|e| panic!("ifindex of {name}: {e}"))
}

#[test]
fn the_kernel_copies_only_the_copy_range() {
    harness::require_kernel!();
    let ln = LogNet::new(GROUP_COPY);
    let mut reader = ln.reader(GROUP_COPY, Options { copy_range: 64, ..Options::default() });
    ln.ct.enter(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
        socket.send_to(&[0x55; 1000], (INTERNET_V4, 5353)).expect("send");
    });
    let packets = collect(&mut reader, Duration::from_secs(5), |packets, _| !packets.is_empty());
    let p = packets.first().expect("the datagram was logged");
    assert_eq!(p.payload.len(), 64, "IP and UDP headers and 36 bytes of the datagram, not 1028 bytes");
    let a = attempt(p);
    assert_eq!((a.src, a.dst, a.proto, a.dport), (C1_V4.into(), INTERNET_V4.into(), Proto::Udp, Some(5353)));
    assert_eq!(p.seq, Some(0), "sequence numbers are on from the first message");
}

#[test]
fn one_reader_per_group_and_namespace() {
    harness::require_kernel!();
    let ln = LogNet::new(GROUP_TAKEN);
    let first = ln.reader(GROUP_TAKEN, Options::default());
    let second = ln.host.enter(|| NflogReader::open(GROUP_TAKEN));
    assert!(
        matches!(second, Err(ReaderError::GroupTaken { group: GROUP_TAKEN })),
        "a second reader of the group in the same namespace: {:?}",
        second.err()
    );
    // Groups are per network namespace: ct may bind the same number, and each reader hears
    // only its own namespace's rules (ct logs on output, host on forward).
    ln.ct.run_with_input(&["nft", "-f", "-"], &log_table("output", GROUP_TAKEN));
    let mut in_ct = ln.ct.enter(|| NflogReader::open(GROUP_TAKEN)).expect("the same group in another namespace");
    let mut in_host = first;
    // ct's own rule drops it on the way out, so send() says EPERM: the attempt was made.
    let sent = ln.ct.enter(|| UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"x", (INTERNET_V4, 53))));
    assert_eq!(sent.map_err(|e| e.kind()), Err(std::io::ErrorKind::PermissionDenied));
    let from_ct = collect(&mut in_ct, Duration::from_secs(5), |p, _| !p.is_empty());
    let from_host = collect(&mut in_host, Duration::from_secs(1), |p, _| !p.is_empty());
    // ct's output rule drops the datagram, so the host never forwards it.
    assert_eq!(from_ct.iter().map(|p| p.hook).collect::<Vec<_>>(), [3], "NF_INET_LOCAL_OUT in ct");
    assert!(from_host.is_empty(), "host logged {from_host:?}");
    assert_eq!(from_ct[0].uid, Some(0), "a local socket's owner");
    // Dropping a reader frees the group.
    drop(in_host);
    let again = ln.host.enter(|| NflogReader::open(GROUP_TAKEN));
    assert!(again.is_ok(), "after the first reader is dropped: {:?}", again.err());
}

/// What a flood did: the sender's count, the rule's count, and what the reader saw.
#[derive(Debug)]
struct FloodResult {
    sent: u32,
    logged: u64,
    stats: Stats,
    flood_time: Duration,
}

impl std::fmt::Display for FloodResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = f64::from(self.sent) / self.flood_time.as_secs_f64().max(1e-9);
        let s = &self.stats;
        write!(
            f,
            "sent {} in {:?} ({rate:.0}/s), logged {}, read {} in {} datagrams, lost {} (sequence gaps), {} ENOBUFS",
            self.sent, self.flood_time, self.logged, s.packets, s.datagrams, s.lost, s.overruns
        )
    }
}

/// Sends up to FLOOD_PACKETS UDP datagrams from ct as fast as it can, stopping at FLOOD_BOUND.
fn flood(ct: &Netns) -> std::thread::JoinHandle<(u32, Duration)> {
    ct.spawn(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
        let to = SocketAddr::from((INTERNET_V4, FLOOD_PORT));
        let start = Instant::now();
        let mut sent = 0;
        while sent < FLOOD_PACKETS && start.elapsed() < FLOOD_BOUND {
            // A full neighbour queue or backlog refuses some; the rule's counter has the truth.
            if socket.send_to(&sent.to_be_bytes(), to).is_ok() {
                sent += 1;
            }
        }
        (sent, start.elapsed())
    })
}

#[test]
fn a_flood_is_read_in_full_with_a_normal_buffer() {
    harness::require_kernel!();
    let ln = LogNet::new(GROUP_FLOOD);
    let mut reader = ln.reader(GROUP_FLOOD, Options::default());
    let sender = flood(&ln.ct);
    let mut packets = 0u64;
    let mut count = |reader: &mut NflogReader, until: &dyn Fn(u64) -> bool| {
        let deadline = Instant::now() + FLOOD_BOUND;
        while !until(reader.stats().packets + reader.stats().lost) && Instant::now() < deadline {
            for event in reader.recv(Some(Duration::from_millis(50))).expect("recv") {
                if let Event::Packet(p) = event {
                    assert_eq!(attempt(&p).dport, Some(FLOOD_PORT));
                    packets += 1;
                }
            }
        }
    };
    count(&mut reader, &|_| sender.is_finished());
    let (sent, flood_time) = sender.join().expect("flood thread");
    let logged = ln.logged();
    count(&mut reader, &|seen| seen >= logged);
    let r = FloodResult { sent, logged, stats: reader.stats(), flood_time };
    eprintln!("flood, normal buffer ({} bytes granted): {r}", reader.rcvbuf().unwrap_or(0));
    assert!(r.logged >= u64::from(FLOOD_PACKETS) * 9 / 10, "the flood hardly reached the rule: {r:?}");
    assert_eq!(packets, r.stats.packets);
    assert_eq!((r.stats.lost, r.stats.overruns), (0, 0), "lost messages with a 4 MiB buffer: {r:?}");
    assert_eq!(r.stats.packets, r.logged, "{r:?}");
}

#[test]
fn a_tiny_buffer_loses_messages_and_says_how_many() {
    harness::require_kernel!();
    let ln = LogNet::new(GROUP_TINY);
    let tiny = Options { rcvbuf: 4096, ..Options::default() };
    let mut reader = ln.reader(GROUP_TINY, tiny);
    // The reader stalls for the whole flood, as one would behind a slow terminal.
    let (sent, flood_time) = flood(&ln.ct).join().expect("flood thread");
    let mut overrun_seen = false;
    let mut lost_events = 0;
    let mut drain = |reader: &mut NflogReader| {
        for event in reader.recv(Some(Duration::from_millis(300))).expect("recv") {
            match event {
                Event::Overrun => overrun_seen = true,
                Event::Lost(n) => lost_events += n,
                Event::Packet(_) | Event::Malformed(_) => {}
            }
        }
    };
    drain(&mut reader);
    // Messages dropped at the end of the flood only show as a gap before the next one: send it.
    let last = ln.ct.enter(|| UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"last", (INTERNET_V4, FLOOD_PORT))));
    last.expect("send the last datagram");
    let logged = ln.logged();
    let deadline = Instant::now() + FLOOD_BOUND;
    while reader.stats().packets + reader.stats().lost < logged && Instant::now() < deadline {
        drain(&mut reader);
    }
    let r = FloodResult { sent, logged, stats: reader.stats(), flood_time };
    eprintln!("flood, tiny buffer ({} bytes granted), reader stalled: {r}", reader.rcvbuf().unwrap_or(0));
    assert!(overrun_seen && r.stats.overruns >= 1, "no ENOBUFS: {r:?}");
    assert!(r.stats.lost > 0 && lost_events == r.stats.lost, "{r:?}");
    assert_eq!(r.stats.packets + r.stats.lost, r.logged, "every logged attempt is read or counted as lost: {r:?}");
}
