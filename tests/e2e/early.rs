//! A starting container is in the follower's book, with its addresses and labels, before its
//! first packet leaves and before dockerd announces its `start`: against a real dockerd, on the
//! default bridge and a user-defined network, IPv4 and IPv6, with an entrypoint that dials out
//! at once (`nc`, a TCP SYN as the first thing the process does). Each run is timed on one
//! clock (CLOCK_REALTIME): the events as dockerd stamped them, the `network connect` read by a
//! second subscriber, the moment the book was complete (a waiter woken by the follower, as
//! watch's will be), the container's first packet as it
//! entered dockerd's namespace (kernel timestamp on an AF_PACKET socket there), the `start`
//! read, and when an inspect sent at the connect answered (the way the book learned addresses
//! before). `early_timeline_distribution` (ignored) prints the distribution that
//! docs/docker-events.md quotes: `cargo test --test e2e early_timeline -- --ignored --nocapture`
//! (`EG_EARLY_RUNS`, default 50 per case); `a_dropped_first_syn_…` (ignored) measures what a
//! dropped first SYN costs, the way to close what remains of the race.

use std::collections::BTreeMap;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use egress_guard::docker::{Client, DockerState, Endpoint, Event, FollowOptions, Follower};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use nix::sys::socket::{recvmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned, MsgFlags};
use nix::sys::socket::{SockFlag, SockProtocol, SockType};
use nix::sys::time::{TimeSpec, TimeVal};

use crate::harness::{Netns, Watch, INTERNET_V4, INTERNET_V6, SERVICE_PORT};
use crate::{require_dockerd, Dockerd, Options};

/// The label every run's container carries, and what the book must show.
const ALLOW: &str = "198.51.100.2/32:80/tcp,[2001:db8::2/128]:80/tcp";

/// One container's start, on one clock.
#[derive(Clone, Debug)]
struct Run {
    name: String,
    /// dockerd's own times of the events (its clock is ours).
    create_emitted: SystemTime,
    connect_emitted: SystemTime,
    connect_read: SystemTime,
    /// When a waiter on the follower first saw the container with its labels and an address
    /// of the family it dials in.
    book_complete: SystemTime,
    /// That address.
    address: IpAddr,
    first_packet: SystemTime,
    start_read: SystemTime,
    /// When each request sent as the connect was read answered, and whether with an address.
    network_answered: (SystemTime, bool),
    summary_answered: (SystemTime, bool),
    inspect_answered: (SystemTime, bool),
}

/// Signed milliseconds from `a` to `b`.
fn ms(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

/// A container's name → when the book first held it with its labels, and its addresses then.
type Completions = BTreeMap<String, (SystemTime, Vec<IpAddr>)>;

/// The kernel's time, source, destination and destination port of a TCP SYN or UDP datagram.
type Packet = (SystemTime, IpAddr, IpAddr, u16);

/// (container id, request) → when the request sent at its connect answered, and whether the
/// answer had one of the container's addresses.
type Answers = BTreeMap<(String, Request), (SystemTime, bool)>;

/// What the second subscriber asks dockerd as soon as it reads a `network connect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Request {
    /// `GET /networks/ID`, what the follower asks.
    Network,
    /// The containers list by id, what the follower asks when it missed the create.
    Summary,
    /// `GET /containers/ID/json`, what the follower asked before.
    Inspect,
}

/// One row of the table: what it measures, and how from a run.
type Interval = (&'static str, fn(&Run) -> f64);

/// Where a case starts its containers and what they dial.
struct Case {
    label: &'static str,
    /// `None`: the default bridge.
    network: Option<String>,
    target: IpAddr,
}

/// Everything the runs are timed by: the follower under test, a waiter on it, a second event
/// subscriber, and a packet clock in dockerd's namespace.
struct Clocks {
    follower: Arc<Follower>,
    stop: Arc<AtomicBool>,
    complete: Arc<Mutex<Completions>>,
    /// (read at, event).
    events: Arc<Mutex<Vec<(SystemTime, Event)>>>,
    asked: Arc<Mutex<Answers>>,
    packets: Arc<Mutex<Vec<Packet>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Clocks {
    fn start(dk: &Dockerd) -> Clocks {
        let client = Client::new(&Endpoint { socket: dk.dir().join("docker.sock") });
        let options = FollowOptions { tick: Duration::from_millis(100), ..Default::default() };
        let follower = Arc::new(Follower::spawn(client.clone(), options).expect("spawn the follower"));
        let following = |_: &egress_guard::docker::AddressBook, s: &DockerState| *s == DockerState::Following;
        assert!(follower.wait_until(Duration::from_secs(20), following), "{}", follower.state());
        let mut clocks = Clocks {
            follower,
            stop: Arc::default(),
            complete: Arc::default(),
            events: Arc::default(),
            asked: Arc::default(),
            packets: Arc::default(),
            threads: Vec::new(),
        };
        clocks.wait_on_the_book();
        clocks.subscribe(client);
        clocks.capture(&dk.host);
        clocks
    }

    /// What watch will do: wait for the policy revision to move, look at the book at once.
    fn wait_on_the_book(&mut self) {
        let (follower, stop, complete) = (self.follower.clone(), self.stop.clone(), self.complete.clone());
        self.threads.push(std::thread::spawn(move || {
            let mut seen = 0;
            while !stop.load(Ordering::SeqCst) {
                let found = follower.next_change(seen, Duration::from_millis(100), |book, _| {
                    let at = SystemTime::now();
                    let labelled = book
                        .containers()
                        .filter(|c| c.labels.get("egress-guard.allow").map(String::as_str) == Some(ALLOW));
                    labelled
                        .map(|c| (c.name.clone(), at, c.addresses().map(|(ip, _, _)| ip).collect::<Vec<_>>()))
                        .collect::<Vec<_>>()
                });
                let Some((revision, containers)) = found else { continue };
                seen = revision;
                let mut complete = complete.lock().unwrap();
                for (name, at, addresses) in containers {
                    if !addresses.is_empty() {
                        complete.entry(name).or_insert((at, addresses));
                    }
                }
            }
        }));
    }

    /// A second subscriber: when each event was read, and what dockerd answers at each connect
    /// (each request on a thread of its own, so none waits for another).
    fn subscribe(&mut self, client: Client) {
        let (stop, events, asked) = (self.stop.clone(), self.events.clone(), self.asked.clone());
        let mut stream = client.events(None, Duration::from_millis(100)).expect("subscribe to events");
        self.threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let event = match stream.next_event() {
                    Ok(Some(event)) => event,
                    Ok(None) => continue,
                    Err(_) => break,
                };
                let read = SystemTime::now();
                if (event.kind.as_str(), event.action.as_str()) == ("network", "connect") {
                    let id = event.attribute("container").unwrap_or_default().to_string();
                    for request in [Request::Network, Request::Summary, Request::Inspect] {
                        let (client, asked, id, network) =
                            (client.clone(), asked.clone(), id.clone(), event.actor.id.clone());
                        std::thread::spawn(move || {
                            let addressed =
                                match request {
                                    Request::Network => client.network(&network).ok().map(|n| {
                                        n.containers
                                            .get(&id)
                                            .is_some_and(|e| !e.ipv4_address.is_empty() || !e.ipv6_address.is_empty())
                                    }),
                                    Request::Summary => client.container_summary(&id).ok().flatten().map(|c| {
                                        c.network_settings.networks.values().any(|e| !e.ip_address.is_empty())
                                    }),
                                    Request::Inspect => client.inspect_container(&id).ok().map(|c| {
                                        c.network_settings.networks.values().any(|e| !e.ip_address.is_empty())
                                    }),
                                };
                            if let Some(addressed) = addressed {
                                asked.lock().unwrap().entry((id, request)).or_insert((SystemTime::now(), addressed));
                            }
                        });
                    }
                }
                events.lock().unwrap().push((read, event));
            }
        }));
    }

    /// Every TCP SYN and UDP datagram from a container address as it enters dockerd's
    /// namespace (on the container's veth, before any hook; and again on the bridge, a few µs
    /// later), with the kernel's timestamp.
    fn capture(&mut self, host: &Netns) {
        let fd: OwnedFd = host.enter(|| {
            socket(AddressFamily::Packet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, SockProtocol::EthAll)
                .expect("AF_PACKET socket in dockerd's namespace")
        });
        setsockopt(&fd, sockopt::ReceiveTimestampns, &true).expect("SO_TIMESTAMPNS");
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 100_000)).expect("SO_RCVTIMEO");
        let (stop, packets) = (self.stop.clone(), self.packets.clone());
        self.threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut space = nix::cmsg_space!(TimeSpec);
            while !stop.load(Ordering::SeqCst) {
                let mut iov = [IoSliceMut::new(&mut buf)];
                let Ok(msg) = recvmsg::<()>(fd.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty()) else {
                    continue;
                };
                let at = msg.cmsgs().ok().into_iter().flatten().find_map(|c| match c {
                    ControlMessageOwned::ScmTimestampns(ts) => {
                        Some(UNIX_EPOCH + Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32))
                    }
                    _ => None,
                });
                let len = msg.bytes;
                let (Some(at), Some(packet)) = (at, first_of_a_flow(&buf[..len])) else { continue };
                packets.lock().unwrap().push((at, packet.0, packet.1, packet.2));
            }
        }));
    }

    /// Times `name`'s start, once the container has sent its packet (or 10 s passed).
    fn run(&self, name: &str, target: IpAddr) -> Run {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(run) = self.timed(name, target) {
                return run;
            }
            assert!(Instant::now() < deadline, "{name}: incomplete: {:#?}", self.debug(name));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn timed(&self, name: &str, target: IpAddr) -> Option<Run> {
        let events = self.events.lock().unwrap().clone();
        let of = |kind: &str, action: &str, id: &str| {
            events.iter().find(|(_, e)| {
                e.kind == kind && e.action == action && (e.actor.id == id || e.attribute("container") == Some(id))
            })
        };
        let (create_read, create) =
            events.iter().find(|(_, e)| e.action == "create" && e.attribute("name") == Some(name))?;
        let id = create.actor.id.clone();
        let (connect_read, connect) = of("network", "connect", &id)?;
        let (start_read, _) = of("container", "start", &id)?;
        let answer = |request| self.asked.lock().unwrap().get(&(id.clone(), request)).copied();
        let (network_answered, summary_answered) = (answer(Request::Network)?, answer(Request::Summary)?);
        let inspect_answered = answer(Request::Inspect)?;
        let (book_complete, addresses) = self.complete.lock().unwrap().get(name).cloned()?;
        let address = *addresses.iter().find(|a| a.is_ipv4() == target.is_ipv4())?;
        let packets = self.packets.lock().unwrap();
        // The address was the previous run's container's before (removed before this run).
        let (first_packet, ..) = packets.iter().find(|(at, src, dst, port)| {
            at > create_read && *src == address && *dst == target && *port == SERVICE_PORT
        })?;
        Some(Run {
            name: name.to_string(),
            create_emitted: create.at(),
            connect_emitted: connect.at(),
            connect_read: *connect_read,
            book_complete,
            address,
            first_packet: *first_packet,
            start_read: *start_read,
            network_answered,
            summary_answered,
            inspect_answered,
        })
    }

    fn debug(&self, name: &str) -> String {
        let complete = self.complete.lock().unwrap().get(name).cloned();
        let events: Vec<String> = self
            .events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| format!("{} {} {:?}", e.kind, e.action, e.attribute("name")))
            .collect();
        let packets = self.packets.lock().unwrap().len();
        format!("book: {complete:?}; events: {events:#?}; {packets} packets seen")
    }
}

impl Drop for Clocks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Source, destination and destination port of a TCP SYN (without ACK) or a UDP datagram.
fn first_of_a_flow(ip: &[u8]) -> Option<(IpAddr, IpAddr, u16)> {
    let packet = SlicedPacket::from_ip(ip).ok()?;
    let (src, dst): (IpAddr, IpAddr) = match packet.net? {
        NetSlice::Ipv4(v4) => (v4.header().source_addr().into(), v4.header().destination_addr().into()),
        NetSlice::Ipv6(v6) => (v6.header().source_addr().into(), v6.header().destination_addr().into()),
        _ => return None,
    };
    let port = match packet.transport? {
        TransportSlice::Tcp(tcp) if tcp.syn() && !tcp.ack() => tcp.destination_port(),
        TransportSlice::Udp(udp) => udp.destination_port(),
        _ => return None,
    };
    Some((src, dst, port))
}

/// Starts `runs` labelled containers one after the other in each case and times them.
fn timeline(runs: usize) -> (String, Vec<(&'static str, Vec<Run>)>) {
    let dk = Dockerd::start(Options::default());
    let net = dk.network("early_net");
    let clocks = Clocks::start(&dk);
    let cases = [
        Case { label: "default bridge, IPv4", network: None, target: INTERNET_V4.into() },
        Case { label: "default bridge, IPv6", network: None, target: INTERNET_V6.into() },
        Case { label: "user network, IPv4", network: Some(net.name.clone()), target: INTERNET_V4.into() },
        Case { label: "user network, IPv6", network: Some(net.name.clone()), target: INTERNET_V6.into() },
    ];
    let mut results = Vec::new();
    for (c, case) in cases.iter().enumerate() {
        let mut timed = Vec::new();
        for i in 0..runs {
            let name = format!("early-{c}-{i}");
            let target = SocketAddr::new(case.target, SERVICE_PORT);
            let mut args = vec!["run", "-d", "--name", &name, "--label"];
            let label = format!("egress-guard.allow={ALLOW}");
            args.push(&label);
            if let Some(network) = &case.network {
                args.extend(["--network", network]);
            }
            let (ip, port) = (target.ip().to_string(), target.port().to_string());
            args.extend([crate::image::IMAGE, "nc", "-w", "1", &ip, &port]);
            dk.docker(&args);
            let run = clocks.run(&name, case.target);
            let _ = dk.try_docker(&["rm", "-f", &name]);
            timed.push(run);
        }
        results.push((case.label, timed));
    }
    (dk.version(), results)
}

fn assert_known_in_time(results: &[(&str, Vec<Run>)]) {
    for (label, runs) in results {
        for run in runs {
            let what = format!("{label}: {} ({})", run.name, run.address);
            assert!(run.book_complete < run.first_packet, "{what}: the book was late: {run:#?}");
            assert!(run.book_complete <= run.start_read, "{what}: complete only after the start: {run:#?}");
        }
    }
}

/// A few runs of each case: the book is complete before the packet and the start.
#[test]
fn a_labelled_container_is_in_the_book_before_its_first_packet() {
    require_dockerd!();
    let (version, results) = timeline(3);
    eprintln!("dockerd {version}:\n{}", table(&results));
    assert_known_in_time(&results);
}

/// The distribution docs/docker-events.md quotes.
#[test]
#[ignore = "takes minutes: run with --ignored (EG_EARLY_RUNS runs per case, default 50)"]
fn early_timeline_distribution() {
    require_dockerd!();
    let runs = std::env::var("EG_EARLY_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(50);
    let (version, results) = timeline(runs);
    println!("dockerd {version}, {runs} runs per case:\n{}", table(&results));
    assert_known_in_time(&results);
}

/// min / median / p99 / max of each interval, per case, in ms.
fn table(results: &[(&str, Vec<Run>)]) -> String {
    let intervals: [Interval; 10] = [
        ("create emitted → connect emitted", |r| ms(r.create_emitted, r.connect_emitted)),
        ("connect emitted → book complete", |r| ms(r.connect_emitted, r.book_complete)),
        ("connect read → book complete", |r| ms(r.connect_read, r.book_complete)),
        ("book complete → first packet", |r| ms(r.book_complete, r.first_packet)),
        ("connect read → first packet", |r| ms(r.connect_read, r.first_packet)),
        ("first packet → start read", |r| ms(r.first_packet, r.start_read)),
        ("connect read → network answered", |r| ms(r.connect_read, r.network_answered.0)),
        ("connect read → list by id answered", |r| ms(r.connect_read, r.summary_answered.0)),
        ("connect read → inspect answered", |r| ms(r.connect_read, r.inspect_answered.0)),
        ("first packet → inspect answered", |r| ms(r.first_packet, r.inspect_answered.0)),
    ];
    let mut out = String::new();
    for (label, runs) in results {
        out.push_str(&format!("{label} ({} runs)             min   median      p99      max  ms\n", runs.len()));
        for (name, f) in &intervals {
            let mut values: Vec<f64> = runs.iter().map(f).collect();
            values.sort_by(f64::total_cmp);
            let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
            out.push_str(&format!(
                "  {name:34} {:8.3} {:8.3} {:8.3} {:8.3}\n",
                values[0],
                at(0.5),
                at(0.99),
                values[values.len() - 1]
            ));
        }
        let n = runs.len();
        let count = |f: fn(&Run) -> bool| runs.iter().filter(|r| f(r)).count();
        let late = count(|r| r.inspect_answered.0 > r.first_packet);
        let listed = count(|r| r.network_answered.1);
        let bare = count(|r| !r.summary_answered.1);
        out.push_str(&format!(
            "  at the connect: the network listed the address in {listed} of {n} runs, the list by id had none \
             in {bare}; an inspect answered after the first packet in {late}\n"
        ));
    }
    out
}

/// The way to close what remains of the race, measured: a source's first SYN dropped (as a
/// guard could drop, rather than refuse, packets from an address the book does not know yet),
/// the entrypoint's `nc` retransmits it about a second later (Linux's initial RTO) and connects.
#[test]
#[ignore = "a measurement behind docs/docker-events.md: run with --ignored"]
fn a_dropped_first_syn_is_sent_again_a_second_later_and_connects() {
    require_dockerd!();
    let dk = Dockerd::start(Options::default());
    let clocks = Clocks::start(&dk);
    let first_syn = "table inet eg_e2e_first_syn {
        set seen4 { type ipv4_addr; }
        set seen6 { type ipv6_addr; }
        chain forward {
            type filter hook forward priority -10;
            tcp flags & (syn | ack) == syn ip saddr != @seen4 add @seen4 { ip saddr } drop
            tcp flags & (syn | ack) == syn ip6 saddr != @seen6 add @seen6 { ip6 saddr } drop
        }
    }";
    dk.host.run_with_input(&["nft", "-f", "-"], first_syn);
    let mut gaps = Vec::new();
    for (i, target) in [IpAddr::from(INTERNET_V4), INTERNET_V6.into()].into_iter().cycle().take(10).enumerate() {
        dk.host.run(&["nft", "flush set inet eg_e2e_first_syn seen4; flush set inet eg_e2e_first_syn seen6"]);
        let name = format!("resend-{i}");
        let label = format!("egress-guard.allow={ALLOW}");
        let ip = target.to_string();
        let port = SERVICE_PORT.to_string();
        dk.docker(&["run", "-d", "--name", &name, "--label", &label, crate::image::IMAGE, "nc", "-w", "5", &ip, &port]);
        let code = dk.docker(&["wait", &name]);
        let (_, addresses) = clocks.complete.lock().unwrap().get(&name).cloned().expect("in the book");
        let address = *addresses.iter().find(|a| a.is_ipv4() == target.is_ipv4()).expect("an address");
        let mut syns: Vec<SystemTime> = clocks
            .packets
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, src, dst, port)| *src == address && *dst == target && *port == SERVICE_PORT)
            .map(|(at, ..)| *at)
            .collect();
        // Each packet is seen twice, on the container's veth and then on the bridge.
        syns.dedup_by(|later, earlier| ms(*earlier, *later) < 1.0);
        let _ = dk.try_docker(&["rm", "-f", &name]);
        clocks.packets.lock().unwrap().clear();
        assert_eq!((syns.len(), code.as_str()), (2, "0"), "{name} to {target}: SYNs {syns:?}, exit code {code}");
        let gap = ms(syns[0], syns[1]);
        assert!((900.0..1500.0).contains(&gap), "{name}: resent after {gap} ms");
        gaps.push(gap);
    }
    gaps.sort_by(f64::total_cmp);
    println!(
        "dockerd {}: first SYN dropped, sent again after {:.1}–{:.1} ms, connected (10 of 10)",
        dk.version(),
        gaps[0],
        gaps[9]
    );
}

/// The whole path under `watch`: a labelled container whose entrypoint dials at once, `runs`
/// times per case; counts the connections made, and those whose first SYN went through (a
/// refused first SYN is retried a second later, over veth even an ICMP-rejected one, so
/// "connected" alone would hide a lost race). An unlabelled container first shows that the
/// guard is closed.
#[test]
#[ignore = "takes minutes: run with --ignored (EG_EARLY_RUNS runs per case, default 50)"]
fn with_watch_a_container_that_dials_at_once_gets_through_at_the_first_syn() {
    require_dockerd!();
    let runs: usize = std::env::var("EG_EARLY_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(50);
    let dk = Dockerd::start(Options::default());
    let net = dk.network("early_net");
    let clocks = Clocks::start(&dk);
    let _watch = Watch::start(&dk.host, &["--docker-host", &dk.socket()]);
    let label = format!("egress-guard.allow={ALLOW}");
    let dial = |name: &str, network: Option<&str>, target: IpAddr, labelled: bool| -> (bool, usize) {
        let (ip, port) = (target.to_string(), SERVICE_PORT.to_string());
        let mut args = vec!["run", "-d", "--name", name];
        if labelled {
            args.extend(["--label", &label]);
        }
        if let Some(network) = network {
            args.extend(["--network", network]);
        }
        args.extend([crate::image::IMAGE, "nc", "-w", "3", &ip, &port]);
        let id = dk.docker(&args);
        let code = dk.docker(&["wait", name]);
        let _ = dk.try_docker(&["rm", "-f", name]);
        // The book kept its addresses (the inspect after the exit has none).
        let kept = clocks.complete.lock().unwrap().get(name).map(|(_, a)| a.clone()).unwrap_or_default();
        let address = kept.into_iter().find(|a| a.is_ipv4() == target.is_ipv4());
        let mut syns: Vec<SystemTime> = clocks
            .packets
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, src, dst, port)| Some(*src) == address && *dst == target && *port == SERVICE_PORT)
            .map(|(at, ..)| *at)
            .collect();
        syns.dedup_by(|later, earlier| ms(*earlier, *later) < 1.0);
        clocks.packets.lock().unwrap().clear();
        assert!(labelled || address.is_none() || !syns.is_empty(), "{name} ({id}, {address:?}): no SYN seen");
        (code == "0", syns.len())
    };
    // watch is up and closed: an unlabelled container does not get out (retried until watch
    // has written its table).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    while dial(&format!("closed-{n}"), None, INTERNET_V4.into(), false).0 {
        assert!(Instant::now() < deadline, "watch never closed egress");
        n += 1;
    }
    let cases: [(&str, Option<&str>, IpAddr); 4] = [
        ("default bridge, IPv4", None, INTERNET_V4.into()),
        ("user network, IPv4", Some(&net.name), INTERNET_V4.into()),
        ("default bridge, IPv6", None, INTERNET_V6.into()),
        ("user network, IPv6", Some(&net.name), INTERNET_V6.into()),
    ];
    let mut report = Vec::new();
    for (c, (label, network, target)) in cases.into_iter().enumerate() {
        let closed = !dial(&format!("unlabelled-{c}"), network, target, false).0;
        let (mut connected, mut first_syn) = (0, 0);
        for i in 0..runs {
            let (ok, syns) = dial(&format!("dial-{c}-{i}"), network, target, true);
            connected += usize::from(ok);
            first_syn += usize::from(ok && syns == 1);
        }
        report.push(format!(
            "{label}: unlabelled {}; labelled connected {connected} of {runs}, at the first SYN {first_syn} of {runs}",
            if closed { "refused" } else { "GOT OUT" }
        ));
    }
    println!("dockerd {} under watch:\n{}", dk.version(), report.join("\n"));
    for line in &report {
        assert!(line.contains("unlabelled refused"), "{line}");
        assert!(line.ends_with(&format!("at the first SYN {runs} of {runs}")), "{line}");
    }
}
