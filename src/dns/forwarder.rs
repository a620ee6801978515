//! The forwarder's I/O: UDP and TCP listeners on one port for IPv4 and IPv6, a fixed pool of
//! workers for UDP queries, a bounded number of TCP connections with a thread each, upstream
//! queries over UDP (retried, and over TCP when truncated) or TCP, and the grant committed
//! before the answer is released. No async runtime: every wait is a blocking call with a
//! deadline, so one query's failure holds one worker for at most its timeout.
//!
//! Bounds: a UDP query waits in a queue of `Config::queue` (more are dropped and counted, as
//! a busy resolver does), is handled by one of `Config::workers` threads; at most
//! `Config::tcp_connections` TCP clients are served at once, each for at most
//! `Config::tcp_idle` per message and `TCP_QUERIES_MAX` messages.

use std::hash::{BuildHasher, RandomState};
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use nix::sys::socket::{self, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage};

use super::clients::Clients;
use super::grant::{self, Allower, GrantCache, Lifetimes};
use super::message::{Answer, ClientQuery};
use super::names::DomainList;
use super::names::Reach;

/// How often a blocked listener looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// A UDP datagram we read: larger than any EDNS payload we advertise.
const UDP_BUF: usize = 4096;
/// Queries one TCP connection may send before we close it.
const TCP_QUERIES_MAX: usize = 100;

/// How names that are not allowed are answered (`--dns-refuse-with`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefuseWith {
    /// "No such name": clients give up at once and say the host is unknown
    #[default]
    #[value(name = "nxdomain")]
    #[serde(rename = "nxdomain")]
    NxDomain,
    /// REFUSED: some clients try the next nameserver in their resolv.conf first
    Refused,
}

impl RefuseWith {
    fn rcode(self) -> ResponseCode {
        match self {
            RefuseWith::NxDomain => ResponseCode::NXDomain,
            RefuseWith::Refused => ResponseCode::Refused,
        }
    }
}

/// What the forwarder does, and its bounds.
#[derive(Debug, Clone)]
pub struct Config {
    /// The port the listeners bind on every address (0: one the kernel picks for UDP v4, then
    /// the same for the others). The nat rules redirect containers' port 53 here.
    pub port: u16,
    pub upstreams: Vec<SocketAddr>,
    /// Names allowed to every client.
    pub domains: DomainList,
    /// Names allowed to some containers only, by their addresses.
    pub clients: Clients,
    pub refuse_with: RefuseWith,
    pub lifetimes: Lifetimes,
    /// How long one upstream attempt waits for its answer.
    pub upstream_timeout: Duration,
    /// Attempts per query, over the upstreams in turn.
    pub attempts: usize,
    pub workers: usize,
    pub queue: usize,
    pub tcp_connections: usize,
    pub tcp_idle: Duration,
    /// Destinations whose grant time the cache remembers.
    pub cache_capacity: usize,
}

impl Config {
    /// Defaults for everything but what only the caller knows.
    pub fn new(port: u16, upstreams: Vec<SocketAddr>, domains: DomainList) -> Config {
        Config {
            port,
            upstreams,
            domains,
            clients: Clients::default(),
            refuse_with: RefuseWith::default(),
            lifetimes: Lifetimes::default(),
            upstream_timeout: Duration::from_millis(1500),
            attempts: 3,
            workers: 16,
            queue: 512,
            tcp_connections: 64,
            tcp_idle: Duration::from_secs(5),
            cache_capacity: 65_536,
        }
    }
}

/// A query for a name that is not allowed: answered by us, never forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub client: IpAddr,
    /// The name as [`ClientQuery::display_name`] escapes it.
    pub name: String,
    pub qtype: RecordType,
}

/// Where the forwarder reports what the audit log wants to know.
pub trait Refusals: Send + Sync {
    /// A name that is not allowed was asked for (called before the refusal is sent).
    fn refused(&self, refusal: &Refusal);

    /// An allowed name's addresses could not be granted; the client got SERVFAIL.
    fn grant_failed(&self, client: IpAddr, name: &str, error: &(dyn std::error::Error + 'static)) {
        let _ = (client, name, error);
    }
}

/// What happened so far, counted as it happens.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams and TCP messages that parsed as queries.
    pub queries: AtomicU64,
    /// Queries sent upstream (each once, however many attempts it took).
    pub forwarded: AtomicU64,
    /// Queries for names that are not allowed.
    pub refused: AtomicU64,
    /// Allowed queries no upstream answered (the client got SERVFAIL).
    pub upstream_errors: AtomicU64,
    /// Answers whose grants the kernel did not take (the client got SERVFAIL).
    pub grant_errors: AtomicU64,
    /// Commits made (lookups whose addresses were all granted already make none).
    pub commits: AtomicU64,
    /// Malformed queries and other opcodes, answered FORMERR or NOTIMP or not at all.
    pub malformed: AtomicU64,
    /// UDP queries dropped because the queue was full, TCP clients closed because too many
    /// were connected.
    pub dropped: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterValues {
    pub queries: u64,
    pub forwarded: u64,
    pub refused: u64,
    pub upstream_errors: u64,
    pub grant_errors: u64,
    pub commits: u64,
    pub malformed: u64,
    pub dropped: u64,
}

impl Counters {
    pub fn snapshot(&self) -> CounterValues {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterValues {
            queries: get(&self.queries),
            forwarded: get(&self.forwarded),
            refused: get(&self.refused),
            upstream_errors: get(&self.upstream_errors),
            grant_errors: get(&self.grant_errors),
            commits: get(&self.commits),
            malformed: get(&self.malformed),
            dropped: get(&self.dropped),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Why the forwarder could not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolver to forward to")]
    NoUpstream,
    #[error("cannot listen on {addr} ({proto})")]
    Listen {
        addr: SocketAddr,
        proto: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start a forwarder thread")]
    Thread(#[source] std::io::Error),
}

/// A running forwarder; `stop` (or drop) ends its threads.
pub struct Forwarder {
    port: u16,
    counters: Arc<Counters>,
    forget: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// What every thread shares.
struct Shared<A, R> {
    config: Config,
    grants: Mutex<(A, GrantCache)>,
    refusals: R,
    counters: Arc<Counters>,
    /// Set by [`Forwarder::forget_grants`]: the next grant clears the cache first.
    forget: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    tcp_active: AtomicUsize,
    /// Keyed hashing of a counter: unpredictable query ids without a random-number crate
    /// (the keys come from the OS once per process).
    ids: RandomState,
    next_id: AtomicU64,
}

/// A UDP query waiting for a worker: its bytes, who sent it, and the address it was sent to
/// (the answer must come from there for conntrack to undo the redirect).
struct UdpJob {
    bytes: Vec<u8>,
    client: SocketAddr,
    local: IpAddr,
    socket: Arc<UdpSocket>,
}

impl Forwarder {
    /// Binds the listeners in the calling thread's network namespace and starts the threads.
    pub fn start<A, R>(config: Config, allower: A, refusals: R) -> Result<Forwarder, ForwardError>
    where
        A: Allower + 'static,
        R: Refusals + 'static,
    {
        if config.upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let udp4 = bind_udp(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), config.port))?;
        let port = udp4.local_addr().map(|a| a.port()).unwrap_or(config.port);
        let udp6 = bind_udp(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))?;
        let tcp4 = bind_tcp(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port))?;
        let tcp6 = bind_tcp(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))?;

        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let forget = Arc::new(AtomicBool::new(false));
        let cache = GrantCache::new(config.cache_capacity);
        let (queue_tx, queue_rx) = mpsc::sync_channel::<UdpJob>(config.queue.max(1));
        let workers = config.workers.max(1);
        let shared = Arc::new(Shared {
            config,
            grants: Mutex::new((allower, cache)),
            refusals,
            counters: Arc::clone(&counters),
            forget: Arc::clone(&forget),
            stop: Arc::clone(&stop),
            tcp_active: AtomicUsize::new(0),
            ids: RandomState::new(),
            next_id: AtomicU64::new(0),
        });
        let mut forwarder = Forwarder { port, counters, forget, stop, threads: Vec::new() };
        let queue_rx = Arc::new(Mutex::new(queue_rx));
        for i in 0..workers {
            let (shared, rx) = (Arc::clone(&shared), Arc::clone(&queue_rx));
            forwarder.spawn(&format!("dns-worker-{i}"), move || work(&shared, &rx))?;
        }
        for socket in [udp4, udp6] {
            let (shared, tx, socket) = (Arc::clone(&shared), queue_tx.clone(), Arc::new(socket));
            forwarder.spawn("dns-udp", move || listen_udp(&shared, &socket, &tx))?;
        }
        drop(queue_tx);
        for listener in [tcp4, tcp6] {
            let shared = Arc::clone(&shared);
            forwarder.spawn("dns-tcp", move || listen_tcp(&shared, &listener))?;
        }
        Ok(forwarder)
    }

    fn spawn(&mut self, name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), ForwardError> {
        let handle = std::thread::Builder::new().name(name.into()).spawn(f).map_err(ForwardError::Thread);
        match handle {
            Ok(h) => {
                self.threads.push(h);
                Ok(())
            }
            Err(e) => {
                self.shutdown();
                Err(e)
            }
        }
    }

    /// The port every listener is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn counters(&self) -> CounterValues {
        self.counters.snapshot()
    }

    /// Forgets which grants the kernel holds: call it after the sets were emptied or made
    /// anew (a table rewritten, a flush), or lookups whose grants the cache still believes in
    /// would commit nothing until those ran low.
    pub fn forget_grants(&self) {
        self.forget.store(true, Ordering::Release);
    }

    /// Stops the listeners and workers and waits for them (at most about one poll interval,
    /// plus what a query in progress still takes).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ---- sockets ----

fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, ForwardError> {
    let fail = |source| ForwardError::Listen { addr, proto: "udp", source };
    let socket = match addr {
        SocketAddr::V4(_) => socket::socket(
            socket::AddressFamily::Inet,
            socket::SockType::Datagram,
            socket::SockFlag::SOCK_CLOEXEC,
            None,
        ),
        SocketAddr::V6(_) => socket::socket(
            socket::AddressFamily::Inet6,
            socket::SockType::Datagram,
            socket::SockFlag::SOCK_CLOEXEC,
            None,
        ),
    }
    .map_err(|e| fail(e.into()))?;
    // The address each query was sent to comes with it, and the answer leaves from there.
    match addr {
        SocketAddr::V4(_) => socket::setsockopt(&socket, sockopt::Ipv4PacketInfo, &true),
        SocketAddr::V6(_) => socket::setsockopt(&socket, sockopt::Ipv6V6Only, &true)
            .and_then(|()| socket::setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)),
    }
    .map_err(|e| fail(e.into()))?;
    socket::bind(socket.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(|e| fail(e.into()))?;
    let socket = UdpSocket::from(socket);
    socket.set_read_timeout(Some(POLL)).map_err(fail)?;
    Ok(socket)
}

fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ForwardError> {
    let fail = |source| ForwardError::Listen { addr, proto: "tcp", source };
    let family = match addr {
        SocketAddr::V4(_) => socket::AddressFamily::Inet,
        SocketAddr::V6(_) => socket::AddressFamily::Inet6,
    };
    let fd = socket::socket(family, socket::SockType::Stream, socket::SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| fail(e.into()))?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| fail(e.into()))?;
    if addr.is_ipv6() {
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(|e| fail(e.into()))?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(|e| fail(e.into()))?;
    let backlog = socket::Backlog::new(128).unwrap_or(socket::Backlog::MAXCONN);
    socket::listen(&fd, backlog).map_err(|e| fail(e.into()))?;
    // accept() honours SO_RCVTIMEO: the listener wakes to look at the stop flag.
    socket::setsockopt(&fd, sockopt::ReceiveTimeout, &timeval(POLL)).map_err(|e| fail(e.into()))?;
    Ok(TcpListener::from(fd))
}

fn timeval(d: Duration) -> nix::sys::time::TimeVal {
    let d = d.max(Duration::from_millis(1));
    nix::sys::time::TimeVal::new(d.as_secs() as _, d.subsec_micros() as _)
}

/// One datagram and the address it was sent to.
fn recv_udp(socket: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(nix::libc::in6_pktinfo);
    let msg = socket::recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
    let mut local = None;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                local = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr))))
            }
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                local = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)))
            }
            _ => {}
        }
    }
    let from = msg.address.and_then(|a| storage_to_addr(&a));
    let len = msg.bytes;
    match from {
        Some(from) => Ok((len, from, local)),
        None => Err(std::io::Error::other("datagram without a sender address")),
    }
}

fn storage_to_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(std::net::SocketAddrV6::new(v6.ip(), v6.port(), v6.flowinfo(), v6.scope_id())))
}

/// Sends `bytes` to `client` from `local`.
fn send_udp(socket: &UdpSocket, bytes: &[u8], client: SocketAddr, local: IpAddr) {
    let iov = [IoSlice::new(bytes)];
    let dest = SockaddrStorage::from(client);
    let result = match local {
        IpAddr::V4(v4) => {
            let info = nix::libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: nix::libc::in_addr { s_addr: u32::from(v4).to_be() },
                ipi_addr: nix::libc::in_addr { s_addr: 0 },
            };
            socket::sendmsg(
                socket.as_raw_fd(),
                &iov,
                &[ControlMessage::Ipv4PacketInfo(&info)],
                MsgFlags::empty(),
                Some(&dest),
            )
        }
        IpAddr::V6(v6) => {
            let info =
                nix::libc::in6_pktinfo { ipi6_addr: nix::libc::in6_addr { s6_addr: v6.octets() }, ipi6_ifindex: 0 };
            socket::sendmsg(
                socket.as_raw_fd(),
                &iov,
                &[ControlMessage::Ipv6PacketInfo(&info)],
                MsgFlags::empty(),
                Some(&dest),
            )
        }
    };
    // A client gone is not our problem; the next query is.
    let _ = result;
}

/// After a failed receive or accept: nothing to wait for when it was the poll timeout (the
/// loop looks at the stop flag); a pause when it was anything else (out of file descriptors,
/// say), so that a lasting error does not spin a core.
fn back_off(e: &std::io::Error) {
    if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---- UDP ----

fn listen_udp<A: Allower, R: Refusals>(shared: &Shared<A, R>, socket: &Arc<UdpSocket>, queue: &SyncSender<UdpJob>) {
    let mut buf = vec![0u8; UDP_BUF];
    let unspecified = socket.local_addr().map(|a| a.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    while !shared.stop.load(Ordering::Relaxed) {
        let (len, client, local) = match recv_udp(socket, &mut buf) {
            Ok(got) => got,
            Err(e) => {
                back_off(&e);
                continue;
            }
        };
        let job = UdpJob {
            bytes: buf[..len].to_vec(),
            client,
            local: local.unwrap_or(unspecified),
            socket: Arc::clone(socket),
        };
        match queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => bump(&shared.counters.dropped),
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

fn work<A: Allower, R: Refusals>(shared: &Shared<A, R>, queue: &Mutex<Receiver<UdpJob>>) {
    loop {
        let job = {
            let Ok(rx) = queue.lock() else { return };
            rx.recv_timeout(POLL)
        };
        match job {
            Ok(job) => {
                if let Some(answer) = shared.answer(&job.bytes, job.client.ip(), Transport::Udp) {
                    send_udp(&job.socket, &answer, job.client, job.local);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) if !shared.stop.load(Ordering::Relaxed) => {}
            Err(_) => return,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

impl<A: Allower, R: Refusals> Shared<A, R> {
    /// The answer to one query from `client`, or `None` when it gets none.
    fn answer(&self, bytes: &[u8], client: IpAddr, transport: Transport) -> Option<Vec<u8>> {
        let query = match ClientQuery::parse(bytes) {
            Ok(q) => q,
            Err(e) => {
                bump(&self.counters.malformed);
                return e.answer(bytes);
            }
        };
        bump(&self.counters.queries);
        let everyone = self.config.domains.reach(query.labels());
        // The container's own names, unless everyone may reach every port of this one anyway.
        let own = match everyone {
            Some(Reach::Any) => None,
            _ => self.config.clients.get(client).and_then(|c| Some((c.domains.reach(query.labels())?, c))),
        };
        if everyone.is_none() && own.is_none() {
            bump(&self.counters.refused);
            let refusal = Refusal { client, name: query.display_name(), qtype: query.qtype() };
            self.refusals.refused(&refusal);
            return Some(query.answer(self.config.refuse_with.rcode()));
        }
        bump(&self.counters.forwarded);
        let Some((answer, raw)) = self.resolve(&query, transport) else {
            bump(&self.counters.upstream_errors);
            return Some(query.answer(ResponseCode::ServFail));
        };
        if !answer.addresses.is_empty() {
            let lifetimes = &self.config.lifetimes;
            let mut grants =
                everyone.as_ref().map(|r| grant::grants(&answer.addresses, r, lifetimes)).unwrap_or_default();
            if let Some((reach, c)) = own {
                let theirs = grant::grants(&answer.addresses, &reach, lifetimes);
                grants.extend(grant::from_sources(&theirs, &c.addresses));
            }
            if let Err(e) = self.grant(&grants) {
                bump(&self.counters.grant_errors);
                self.refusals.grant_failed(client, &query.display_name(), &e);
                return Some(query.answer(ResponseCode::ServFail));
            }
        }
        let limit = match transport {
            Transport::Udp => query.udp_limit(),
            Transport::Tcp => usize::from(u16::MAX),
        };
        Some(answer.for_client(&raw, &query, limit))
    }

    /// Commits what the cache says is missing; returns once the kernel has it.
    fn grant(&self, grants: &[grant::Grant]) -> Result<(), A::Error> {
        let mut guard = match self.grants.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (allower, cache) = &mut *guard;
        if self.forget.swap(false, Ordering::AcqRel) {
            cache.clear();
        }
        let now = Instant::now();
        let commit = cache.plan(now, grants);
        if commit.is_empty() {
            return Ok(());
        }
        bump(&self.counters.commits);
        match allower.allow(&commit) {
            Ok(()) => {
                cache.committed(now, &commit);
                Ok(())
            }
            Err(e) => {
                cache.clear();
                Err(e)
            }
        }
    }

    fn fresh_id(&self) -> u16 {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.ids.hash_one(n) as u16
    }

    /// The upstream's answer and its bytes: over UDP, upstreams in turn, and again over TCP
    /// from the upstream whose answer was truncated; over TCP for TCP clients.
    fn resolve(&self, query: &ClientQuery, transport: Transport) -> Option<(Answer, Vec<u8>)> {
        let upstreams = &self.config.upstreams;
        for attempt in 0..self.config.attempts.max(1) {
            let upstream = upstreams[attempt % upstreams.len()];
            let id = self.fresh_id();
            let got = match transport {
                Transport::Udp => udp_exchange(upstream, query, id, self.config.upstream_timeout),
                Transport::Tcp => tcp_exchange(upstream, query, id, self.config.upstream_timeout),
            };
            match got {
                Some((answer, _)) if answer.truncated && transport == Transport::Udp => {
                    let id = self.fresh_id();
                    if let Some(full) = tcp_exchange(upstream, query, id, self.config.upstream_timeout) {
                        return Some(full);
                    }
                }
                Some(found) => return Some(found),
                None => {}
            }
        }
        None
    }
}

/// One query to `upstream` over UDP from a socket of its own (a fresh source port per query),
/// waiting until `timeout` for the answer to exactly it.
fn udp_exchange(upstream: SocketAddr, query: &ClientQuery, id: u16, timeout: Duration) -> Option<(Answer, Vec<u8>)> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).ok()?;
    socket.connect(upstream).ok()?;
    socket.send(&query.upstream(id)).ok()?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; UDP_BUF];
    loop {
        let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        socket.set_read_timeout(Some(left)).ok()?;
        let len = socket.recv(&mut buf).ok()?;
        if let Ok(answer) = Answer::parse(&buf[..len], id, query) {
            return Some((answer, buf[..len].to_vec()));
        }
    }
}

/// One query to `upstream` over TCP, all of it within `timeout`.
fn tcp_exchange(upstream: SocketAddr, query: &ClientQuery, id: u16, timeout: Duration) -> Option<(Answer, Vec<u8>)> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&upstream, timeout).ok()?;
    stream.set_nodelay(true).ok()?;
    let bytes = query.upstream(id);
    let len = u16::try_from(bytes.len()).ok()?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream.write_all(&framed).ok()?;
    let raw = read_framed(&mut stream, deadline)?;
    let answer = Answer::parse(&raw, id, query).ok()?;
    Some((answer, raw))
}

/// One length-prefixed DNS message, read by `deadline`.
fn read_framed(stream: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    read_exact_by(stream, &mut len, deadline)?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_exact_by(stream, &mut msg, deadline)?;
    Some(msg)
}

/// `read_exact` that gives up at `deadline`, however slowly the bytes trickle in.
fn read_exact_by(stream: &mut TcpStream, mut buf: &mut [u8], deadline: Instant) -> Option<()> {
    while !buf.is_empty() {
        let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        stream.set_read_timeout(Some(left)).ok()?;
        match stream.read(buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf = &mut buf[n..],
        }
    }
    Some(())
}

// ---- TCP clients ----

fn listen_tcp<A: Allower + 'static, R: Refusals + 'static>(shared: &Arc<Shared<A, R>>, listener: &TcpListener) {
    while !shared.stop.load(Ordering::Relaxed) {
        let (stream, client) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                back_off(&e);
                continue;
            }
        };
        if shared.tcp_active.fetch_add(1, Ordering::AcqRel) >= shared.config.tcp_connections {
            shared.tcp_active.fetch_sub(1, Ordering::AcqRel);
            bump(&shared.counters.dropped);
            continue; // dropping the stream closes it
        }
        let shared2 = Arc::clone(shared);
        let spawned = std::thread::Builder::new().name("dns-tcp-client".into()).spawn(move || {
            serve_tcp(&shared2, stream, client.ip());
            shared2.tcp_active.fetch_sub(1, Ordering::AcqRel);
        });
        if spawned.is_err() {
            shared.tcp_active.fetch_sub(1, Ordering::AcqRel);
            bump(&shared.counters.dropped);
        }
    }
}

fn serve_tcp<A: Allower, R: Refusals>(shared: &Shared<A, R>, mut stream: TcpStream, client: IpAddr) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(shared.config.tcp_idle));
    for _ in 0..TCP_QUERIES_MAX {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(query) = read_framed(&mut stream, Instant::now() + shared.config.tcp_idle) else { return };
        let Some(answer) = shared.answer(&query, client, Transport::Tcp) else { return };
        let Ok(len) = u16::try_from(answer.len()) else { return };
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&answer);
        if stream.write_all(&framed).is_err() {
            return;
        }
    }
}
