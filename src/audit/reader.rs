//! The I/O shell of the audit trail: one NETLINK_NETFILTER socket bound to an NFLOG group in
//! the calling thread's network namespace, waiting with a timeout (or polled by the caller
//! through [`AsFd`]), handing back decoded [`Event`]s and counting what the kernel dropped.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, getsockopt, recv, send, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};

use super::events::{Event, Stats, Tracker};
use crate::nft::nflog::{Cmd, Config, Mode, NFULNL_CFG_F_SEQ, NFULNL_COPY_PACKET, NFULNL_NLBUFSIZ_MAX};
use crate::nft::NlError;

/// A config request is answered at once; this only guards against a kernel that never does.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Room for the largest datagram the kernel sends us: a batch is at most nlbufsiz (which it
/// caps at 128 KiB), or one message when a single one is larger.
const RECV_BUF: usize = 2 * NFULNL_NLBUFSIZ_MAX as usize;
/// Datagrams one `recv` takes at most, so a flood cannot keep a caller from its other work.
const MAX_DATAGRAMS: usize = 256;

/// How the kernel should log to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Bytes of each packet copied to us, from the network header on: enough for IPv6 and a
    /// TCP header with options; we never need the data.
    pub copy_range: u32,
    /// Receive buffer: what the kernel may queue for us while we are busy. Set with
    /// SO_RCVBUFFORCE (root may exceed `net.core.rmem_max`), else SO_RCVBUF; the kernel
    /// doubles it. The default 4 MiB holds roughly 30,000 messages batched 64 to a 16 KiB datagram.
    pub rcvbuf: usize,
    /// Kernel-side batching: up to `qthresh` messages, or `nlbufsiz` bytes, in one datagram,
    /// sent after `flush_timeout` at the latest. Fewer, fuller datagrams keep up with floods;
    /// the timeout bounds how late a lone attempt shows.
    pub qthresh: u32,
    pub nlbufsiz: u32,
    pub flush_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            copy_range: 128,
            rcvbuf: 4 << 20,
            qthresh: 64,
            nlbufsiz: 16 << 10,
            flush_timeout: Duration::from_millis(100),
        }
    }
}

/// Why the reader failed.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// Another socket in this network namespace holds the group (the kernel lets one socket
    /// bind a group; it answers EPERM to others, EBUSY to the holder binding again).
    #[error(
        "nflog group {group} is taken by another program in this network namespace \
         (ulogd, `tcpdump -i nflog:{group}`, or egress-guard watch or log: with watch, read its journal)"
    )]
    GroupTaken { group: u16 },
    /// The kernel said EPERM and this process lacks CAP_NET_ADMIN.
    #[error("reading nflog group {group} needs CAP_NET_ADMIN (run as root)")]
    NotPermitted { group: u16 },
    /// A socket call failed.
    #[error("nflog group {group}: {op} failed")]
    Io {
        group: u16,
        op: &'static str,
        #[source]
        errno: Errno,
    },
    /// The kernel refused a config request.
    #[error("nflog group {group}: the kernel refused {what}")]
    Refused {
        group: u16,
        what: &'static str,
        #[source]
        errno: Errno,
    },
    /// A config request got no answer in time.
    #[error("nflog group {group}: the kernel did not answer {what}")]
    NoAnswer { group: u16, what: &'static str },
}

/// What one receive found.
enum Took {
    /// Nothing was queued.
    Nothing,
    /// A datagram (or an ENOBUFS report), decoded into events.
    Datagram,
    /// A datagram holding the answer (errno, 0 for an ACK) to the config request we wait for.
    Answer(i32),
}

/// A bound NFLOG group. Dropping it unbinds the group.
pub struct NflogReader {
    fd: OwnedFd,
    group: u16,
    seq: u32,
    buf: Vec<u8>,
    tracker: Tracker,
    /// Events that arrived while we waited for an answer to a config request.
    pending: Vec<Event>,
}

impl NflogReader {
    /// Binds `group` in the calling thread's network namespace with [`Options::default`].
    pub fn open(group: u16) -> Result<NflogReader, ReaderError> {
        NflogReader::open_with(group, &Options::default())
    }

    pub fn open_with(group: u16, options: &Options) -> Result<NflogReader, ReaderError> {
        let io = |op| move |errno| ReaderError::Io { group, op, errno };
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
            .map_err(io("socket"))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(io("bind"))?;
        setsockopt(&fd, sockopt::RcvBufForce, &options.rcvbuf)
            .or_else(|_| setsockopt(&fd, sockopt::RcvBuf, &options.rcvbuf))
            .map_err(io("setsockopt SO_RCVBUF"))?;
        let mut reader =
            NflogReader { fd, group, seq: 1, buf: vec![0; RECV_BUF], tracker: Tracker::new(), pending: Vec::new() };
        // One request: the kernel binds, then applies the rest, so no packet is ever sent to us
        // with the default settings (a 64 KiB copy, no sequence numbers).
        let bind = Config {
            cmd: Some(Cmd::Bind),
            mode: Some(Mode { copy_mode: NFULNL_COPY_PACKET, copy_range: options.copy_range }),
            nlbufsiz: Some(options.nlbufsiz.min(NFULNL_NLBUFSIZ_MAX)),
            timeout: Some(u32::try_from(options.flush_timeout.as_millis().div_ceil(10)).unwrap_or(u32::MAX)),
            qthresh: Some(options.qthresh.max(1)),
            flags: Some(NFULNL_CFG_F_SEQ),
            ..Config::group(group)
        };
        match reader.request(&bind, "BIND") {
            Err(ReaderError::Refused { errno: Errno::EBUSY, .. }) => Err(ReaderError::GroupTaken { group }),
            Err(ReaderError::Refused { errno: Errno::EPERM, .. }) => Err(if has_cap_net_admin() {
                ReaderError::GroupTaken { group }
            } else {
                ReaderError::NotPermitted { group }
            }),
            other => other,
        }?;
        Ok(reader)
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    /// What the reader has seen and what the kernel dropped, so far.
    pub fn stats(&self) -> Stats {
        self.tracker.stats()
    }

    /// The receive buffer the kernel granted (it doubles what was asked, for bookkeeping).
    pub fn rcvbuf(&self) -> Result<usize, ReaderError> {
        getsockopt(&self.fd, sockopt::RcvBuf).map_err(|errno| self.io("getsockopt SO_RCVBUF", errno))
    }

    /// Waits up to `timeout` (`None`: as long as it takes) for messages, then takes what is
    /// already queued (up to 256 datagrams). An empty answer means the timeout passed or a
    /// signal came. After polling [`AsFd::as_fd`] yourself, call it with `Duration::ZERO`.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Vec<Event>, ReaderError> {
        let mut events = std::mem::take(&mut self.pending);
        if events.is_empty() && !self.wait(timeout)? {
            return Ok(events);
        }
        for _ in 0..MAX_DATAGRAMS {
            if let Took::Nothing = self.take(&mut events, None)? {
                break;
            }
        }
        Ok(events)
    }

    /// True when the socket is readable within `timeout`.
    fn wait(&self, timeout: Option<Duration>) -> Result<bool, ReaderError> {
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
        };
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(n) => Ok(n > 0),
            Err(Errno::EINTR) => Ok(false),
            Err(errno) => Err(self.io("poll", errno)),
        }
    }

    /// Receives and decodes one queued datagram, looking in it for the answer to config
    /// request `seq`.
    fn take(&mut self, events: &mut Vec<Event>, seq: Option<u32>) -> Result<Took, ReaderError> {
        // MSG_TRUNC makes netlink report a datagram's full length even if it was cut.
        match recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC) {
            Ok(n) if n > self.buf.len() => {
                self.tracker.malformed(NlError::Malformed("nflog datagram larger than our buffer"), events);
                Ok(Took::Datagram)
            }
            Ok(n) => {
                let answers = self.tracker.datagram(&self.buf[..n], events);
                match answers.iter().find(|(s, _)| Some(*s) == seq) {
                    Some(&(_, errno)) => Ok(Took::Answer(errno)),
                    None => Ok(Took::Datagram),
                }
            }
            Err(Errno::ENOBUFS) => {
                self.tracker.overrun(events);
                Ok(Took::Datagram)
            }
            Err(Errno::EAGAIN) => Ok(Took::Nothing),
            Err(Errno::EINTR) => Ok(Took::Datagram),
            Err(errno) => Err(self.io("recv", errno)),
        }
    }

    /// Sends a config request and waits for its answer; packets that arrive meanwhile are kept
    /// for the next `recv`.
    fn request(&mut self, config: &Config, what: &'static str) -> Result<(), ReaderError> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let bytes = config.encode(seq);
        let sent = send(self.fd.as_raw_fd(), &bytes, MsgFlags::empty()).map_err(|errno| self.io("send", errno))?;
        if sent != bytes.len() {
            return Err(self.io("send", Errno::EMSGSIZE));
        }
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut events = std::mem::take(&mut self.pending);
        let answer = 'wait: loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break None;
            }
            if !self.wait(Some(left))? {
                continue;
            }
            loop {
                match self.take(&mut events, Some(seq))? {
                    Took::Nothing => break,
                    Took::Datagram => {}
                    Took::Answer(errno) => break 'wait Some(errno),
                }
            }
        };
        self.pending = events;
        match answer {
            None => Err(ReaderError::NoAnswer { group: self.group, what }),
            Some(0) => Ok(()),
            Some(errno) => Err(ReaderError::Refused { group: self.group, what, errno: Errno::from_raw(errno) }),
        }
    }

    fn io(&self, op: &'static str, errno: Errno) -> ReaderError {
        ReaderError::Io { group: self.group, op, errno }
    }
}

impl AsFd for NflogReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for NflogReader {
    /// Unbinds; the kernel would also drop the group when the socket closes, but saying so
    /// is cheap. The answer is not waited for.
    fn drop(&mut self) {
        let _ = send(self.fd.as_raw_fd(), &Config::unbind(self.group).encode(self.seq), MsgFlags::MSG_DONTWAIT);
    }
}

/// The name of interface `index` in the calling thread's network namespace (the one the
/// reader was opened in), or `None` if it is gone.
pub fn interface_name(index: u32) -> Option<String> {
    nix::net::if_::if_indextoname(index).ok()?.into_string().ok()
}

/// Whether this thread has CAP_NET_ADMIN (the socket it opened carries its credentials): it
/// tells "someone else holds the group" from "we may not", which the kernel both answers
/// with EPERM.
fn has_cap_net_admin() -> bool {
    std::fs::read_to_string("/proc/thread-self/status").is_ok_and(|status| cap_net_admin_in(&status))
}

fn cap_net_admin_in(status: &str) -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim);
    eff.and_then(|hex| u64::from_str_radix(hex, 16).ok()).is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_net_admin_is_read_from_the_effective_set() {
        assert!(cap_net_admin_in("Name:\tx\nCapInh:\t0\nCapEff:\t000001ffffffffff\n"));
        assert!(!cap_net_admin_in("CapPrm:\t000001ffffffffff\nCapEff:\t0000000000000000\n"));
        assert!(!cap_net_admin_in("CapEff:\tgarbage\n"));
        assert!(!cap_net_admin_in(""));
    }
}
