//! Probes: one TCP line exchange, UDP exchange or ICMP echo from inside a namespace, waiting a
//! bounded time, and telling Open from the ways a path can be closed.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::sockopt::{ReceiveTimeout, SendTimeout};
use nix::sys::socket::{
    bind, connect, recv, send, setsockopt, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
    SockaddrStorage,
};
use nix::sys::time::TimeVal;

use super::addrs::is_test_destination;
use super::netns::Netns;

/// How long a probe waits for the connection and for the answer, unless told otherwise.
///
/// Longer than TCP's first SYN retransmission (1 s) on purpose: over veth the REJECT's ICMP error
/// comes back while connect() still holds the socket lock, so the kernel keeps it as a soft
/// error and only the retransmitted SYN's error fails connect() with ECONNREFUSED. A shorter
/// timeout sees an ICMP-rejected TCP path as `Timeout` (a TCP RST is seen at once either way).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1500);

/// What a probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The exchange completed: the far end echoed our message.
    Open,
    Closed(Closed),
}

/// How a path turned out to be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// TCP RST or ICMP port unreachable (ECONNREFUSED): e.g. `-j REJECT`.
    Refused,
    /// ICMP host/net unreachable or admin prohibited (EHOSTUNREACH, ENETUNREACH; ICMPv6
    /// admin prohibited arrives as EACCES).
    Unreachable,
    /// Nothing came back in time: e.g. `-j DROP`.
    Timeout,
    /// Connected, but the exchange failed (reset, early EOF, a reply that is not our echo).
    Broken,
    /// Any other error from the kernel.
    Error(Errno),
}

impl Outcome {
    pub fn is_open(self) -> bool {
        self == Outcome::Open
    }
}

/// Which kind of exchange a probe makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    /// ICMP / ICMPv6 echo, through an ICMP datagram ("ping") socket.
    Ping,
}

/// One exchange to make: protocol, destination, optional source address, timeout.
///
/// `Probe::tcp((INTERNET_V4, 80)).from(LAN_CLIENT_V4).timeout(ms(300)).run_in(&ns)`
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub proto: Proto,
    pub to: SocketAddr,
    pub from: Option<IpAddr>,
    pub timeout: Duration,
}

impl Probe {
    pub fn tcp(to: impl Into<SocketAddr>) -> Probe {
        Probe { proto: Proto::Tcp, to: to.into(), from: None, timeout: DEFAULT_TIMEOUT }
    }

    pub fn udp(to: impl Into<SocketAddr>) -> Probe {
        Probe { proto: Proto::Udp, ..Probe::tcp(to) }
    }

    pub fn ping(to: impl Into<IpAddr>) -> Probe {
        Probe { proto: Proto::Ping, ..Probe::tcp((to.into(), 0)) }
    }

    /// Sends from `source`, which must be an address of the probing namespace.
    pub fn from(self, source: impl Into<IpAddr>) -> Probe {
        Probe { from: Some(source.into()), ..self }
    }

    /// Waits at most `timeout` for the connection, and again for the answer.
    pub fn timeout(self, timeout: Duration) -> Probe {
        Probe { timeout, ..self }
    }

    /// Makes the exchange from inside `ns`.
    pub fn run_in(&self, ns: &Netns) -> Outcome {
        assert!(is_test_destination(self.to.ip()), "{self}: not an address of the test network");
        ns.enter(|| self.run_here())
    }

    /// Makes the exchange from the calling thread's namespace (the caller has entered one).
    pub(super) fn run_here(&self) -> Outcome {
        let result = match self.proto {
            Proto::Tcp => self.tcp_exchange(),
            Proto::Udp => self.udp_exchange(),
            Proto::Ping => self.ping_exchange(),
        };
        match result {
            Ok(()) => Outcome::Open,
            Err(closed) => Outcome::Closed(closed),
        }
    }

    fn tcp_exchange(&self) -> Result<(), Closed> {
        let fd = self.socket(SockType::Stream, None);
        connect(fd.as_raw_fd(), &SockaddrStorage::from(self.to)).map_err(closed_by)?;
        let stream = TcpStream::from(fd);
        let token = token();
        (&stream).write_all(&token).map_err(io_closed_by)?;
        let mut reply = Vec::new();
        let mut reader = BufReader::new((&stream).take(token.len() as u64));
        reader.read_until(b'\n', &mut reply).map_err(io_closed_by)?;
        same_echo(&reply, &token)
    }

    fn udp_exchange(&self) -> Result<(), Closed> {
        let fd = self.socket(SockType::Datagram, None);
        // Connected, so an ICMP error for our datagram comes back as ECONNREFUSED & co.
        connect(fd.as_raw_fd(), &SockaddrStorage::from(self.to)).map_err(closed_by)?;
        let token = token();
        send(fd.as_raw_fd(), &token, MsgFlags::empty()).map_err(closed_by)?;
        let mut reply = [0u8; 512];
        let len = recv(fd.as_raw_fd(), &mut reply, MsgFlags::empty()).map_err(closed_by)?;
        same_echo(&reply[..len], &token)
    }

    /// ICMP datagram sockets let the kernel pick the echo id, fill in checksums and hand us
    /// only our own replies; connected, they report ICMP errors as errno like UDP does.
    fn ping_exchange(&self) -> Result<(), Closed> {
        let (protocol, request, reply_type) = match self.to {
            SocketAddr::V4(_) => (SockProtocol::Icmp, 8, 0),
            SocketAddr::V6(_) => (SockProtocol::IcmpV6, 128, 129),
        };
        let fd = self.socket(SockType::Datagram, Some(protocol));
        connect(fd.as_raw_fd(), &SockaddrStorage::from(self.to)).map_err(closed_by)?;
        let token = token();
        let mut packet = vec![request, 0, 0, 0, 0, 0, 0, 1]; // type, code, sum, id, seq 1
        packet.extend_from_slice(&token);
        send(fd.as_raw_fd(), &packet, MsgFlags::empty()).map_err(closed_by)?;
        let mut reply = [0u8; 512];
        let len = recv(fd.as_raw_fd(), &mut reply, MsgFlags::empty()).map_err(closed_by)?;
        match reply[..len].split_at_checked(8) {
            Some((header, echoed)) if header[0] == reply_type => same_echo(echoed, &token),
            _ => Err(Closed::Broken),
        }
    }

    /// A socket for this probe with both timeouts set and the source bound. Failing here is a
    /// mistake in the test (say, a source address the namespace lacks), not a closed path.
    fn socket(&self, ty: SockType, protocol: Option<SockProtocol>) -> OwnedFd {
        let family = match self.to {
            SocketAddr::V4(_) => AddressFamily::Inet,
            SocketAddr::V6(_) => AddressFamily::Inet6,
        };
        let fd = socket(family, ty, SockFlag::SOCK_CLOEXEC, protocol).unwrap_or_else(|e| panic!("{self}: socket: {e}"));
        // SO_SNDTIMEO also bounds a blocking connect() on Linux (it then fails with EINPROGRESS).
        setsockopt(&fd, SendTimeout, &timeval(self.timeout)).expect("SO_SNDTIMEO");
        setsockopt(&fd, ReceiveTimeout, &timeval(self.timeout)).expect("SO_RCVTIMEO");
        if let Some(source) = self.from {
            let local = SockaddrStorage::from(SocketAddr::new(source, 0));
            bind(fd.as_raw_fd(), &local).unwrap_or_else(|e| panic!("{self}: bind: {e}"));
        }
        fd
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proto {
            Proto::Tcp => write!(f, "tcp to {}", self.to)?,
            Proto::Udp => write!(f, "udp to {}", self.to)?,
            Proto::Ping => write!(f, "ping to {}", self.to.ip())?,
        }
        match self.from {
            Some(source) => write!(f, " from {source}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Open => write!(f, "open"),
            Outcome::Closed(Closed::Error(errno)) => write!(f, "closed ({errno})"),
            Outcome::Closed(why) => write!(f, "closed ({why:?})"),
        }
    }
}

/// Shorthands: probe from this namespace with the default timeout.
impl Netns {
    pub fn tcp(&self, to: impl Into<SocketAddr>) -> Outcome {
        Probe::tcp(to).run_in(self)
    }

    pub fn udp(&self, to: impl Into<SocketAddr>) -> Outcome {
        Probe::udp(to).run_in(self)
    }

    pub fn ping(&self, to: impl Into<IpAddr>) -> Outcome {
        Probe::ping(to).run_in(self)
    }
}

/// How the kernel's answer to our packet shows up as errno.
fn closed_by(errno: Errno) -> Closed {
    match errno {
        Errno::ECONNREFUSED => Closed::Refused,
        Errno::EHOSTUNREACH | Errno::ENETUNREACH | Errno::EACCES => Closed::Unreachable,
        // EINPROGRESS: connect() ran out of SO_SNDTIMEO; EAGAIN: recv() out of SO_RCVTIMEO.
        Errno::EINPROGRESS | Errno::EAGAIN | Errno::ETIMEDOUT => Closed::Timeout,
        Errno::ECONNRESET | Errno::EPIPE => Closed::Broken,
        other => Closed::Error(other),
    }
}

fn io_closed_by(e: std::io::Error) -> Closed {
    e.raw_os_error().map_or(Closed::Broken, |raw| closed_by(Errno::from_raw(raw)))
}

fn same_echo(reply: &[u8], token: &[u8]) -> Result<(), Closed> {
    if reply == token {
        Ok(())
    } else {
        Err(Closed::Broken)
    }
}

/// A line no earlier probe sent, so a stray late reply cannot pass for this one's echo.
fn token() -> Vec<u8> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("egress-guard probe {} {n}\n", std::process::id()).into_bytes()
}

pub(super) fn timeval(d: Duration) -> TimeVal {
    // Zero would mean "wait forever" to the kernel; a probe always gives up.
    let d = d.max(Duration::from_millis(1));
    TimeVal::new(d.as_secs() as _, d.subsec_micros() as _)
}
