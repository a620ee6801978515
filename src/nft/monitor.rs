//! Listening to nf_tables: every committed transaction is announced on the NFNLGRP_NFTABLES
//! multicast group (its changes, then a NEWGEN naming the process that committed). `watch`
//! sleeps here and wakes when someone else changed the ruleset.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

use super::attr::Attrs;
use super::msg::{self, nft_type, NFGENMSG_LEN};
use super::sys::*;
use super::NlError;

/// Room for a burst of notifications (a whole ruleset reload announces every rule).
const RECV_BUF: usize = 1024 * 1024;

/// What woke the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Another process committed a change.
    Changed,
    /// Only our own commits were announced.
    OwnChange,
    /// Nothing happened within the timeout.
    Quiet,
    /// The kernel dropped notifications (our buffer overflowed): assume anything changed.
    Overrun,
}

pub struct Monitor {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Monitor {
    /// Subscribes to nf_tables changes in the calling thread's network namespace.
    pub fn open(timeout: Duration) -> Result<Monitor, NlError> {
        let io = |op| move |errno| NlError::Io { op, errno };
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
            .map_err(io("socket"))?;
        // Groups 1..=32 can be joined through bind()'s bitmask.
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1 << (NFNLGRP_NFTABLES - 1))).map_err(io("bind"))?;
        let timeout = TimeVal::new(timeout.as_secs() as i64, timeout.subsec_micros() as i64);
        setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).map_err(io("setsockopt"))?;
        setsockopt(&fd, sockopt::RcvBuf, &RECV_BUF).map_err(io("setsockopt"))?;
        Ok(Monitor { fd, buf: vec![0; RECV_BUF] })
    }

    /// Takes every announcement already queued, without waiting: `Quiet` when there was none.
    /// For a caller that polls the socket together with others (see `AsFd`).
    pub fn drain(&mut self) -> Result<Wake, NlError> {
        let mut wake = Wake::Quiet;
        while let Some(more) = self.take(MsgFlags::MSG_DONTWAIT)? {
            wake = merge(wake, more);
        }
        Ok(wake)
    }

    /// Waits up to the timeout for announcements, then takes every one already queued, so a
    /// burst (dockerd adding a dozen rules) wakes us once.
    pub fn wait(&mut self) -> Result<Wake, NlError> {
        let mut wake = match self.take(MsgFlags::empty())? {
            None => return Ok(Wake::Quiet),
            Some(w) => w,
        };
        while let Some(more) = self.take(MsgFlags::MSG_DONTWAIT)? {
            wake = merge(wake, more);
        }
        Ok(wake)
    }

    /// One datagram: who committed what it announces; `None` on timeout or when drained.
    fn take(&mut self, flags: MsgFlags) -> Result<Option<Wake>, NlError> {
        match recv(self.fd.as_raw_fd(), &mut self.buf, flags) {
            Ok(n) => Ok(Some(classify(&self.buf[..n], &one_of_our_threads)?)),
            Err(Errno::EAGAIN) => Ok(None),
            Err(Errno::ENOBUFS) => Ok(Some(Wake::Overrun)),
            Err(errno) => Err(NlError::Io { op: "recv", errno }),
        }
    }
}

impl AsFd for Monitor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The strongest reason to look: overrun > changed by others > only our own commits.
fn merge(a: Wake, b: Wake) -> Wake {
    let rank = |w| match w {
        Wake::Overrun => 3,
        Wake::Changed => 2,
        Wake::OwnChange => 1,
        Wake::Quiet => 0,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// Whether the kernel's "pid" in a NEWGEN is one of this process's threads: the kernel names
/// the committing thread (`task_pid_nr(current)`), so the DNS forwarder's grants, committed by
/// its worker threads, are ours too, and must not wake watch as someone else's change.
fn one_of_our_threads(tid: u32) -> bool {
    tid == std::process::id() || std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

/// Who committed the transactions a datagram announces: each transaction ends with a NEWGEN
/// naming the committing thread; `ours` says whether that is one of ours. A datagram holding
/// only the changes themselves decides nothing (it reads as our own); the NEWGEN that follows
/// it, in the same drain or the next wake, decides.
pub fn classify(datagram: &[u8], ours: &dyn Fn(u32) -> bool) -> Result<Wake, NlError> {
    let mut wake = Wake::Quiet;
    for m in msg::parse(datagram)? {
        if m.ty != nft_type(NFT_MSG_NEWGEN) {
            continue;
        }
        let attrs = Attrs::new(m.body.get(NFGENMSG_LEN..).unwrap_or(&[]));
        let pid = attrs.filter_map(Result::ok).find(|a| a.ty == NFTA_GEN_PROC_PID).and_then(|a| a.be32().ok());
        wake = merge(wake, if pid.is_some_and(ours) { Wake::OwnChange } else { Wake::Changed });
    }
    Ok(if wake == Wake::Quiet { Wake::OwnChange } else { wake })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NEWGEN as the kernel announces it (reference §9 layout): genid, pid, process name.
    fn newgen(pid: u32) -> Vec<u8> {
        msg::build(nft_type(NFT_MSG_NEWGEN), 0, 0, AF_UNSPEC, 0, |w| {
            w.put_be32(NFTA_GEN_ID, 5).put_be32(NFTA_GEN_PROC_PID, pid).put_strz(3, "iptables");
        })
    }

    #[test]
    fn commits_are_told_apart_by_the_pid_in_newgen() {
        let ours = |pid| pid == 42 || pid == 43;
        assert_eq!(classify(&newgen(42), &ours).unwrap(), Wake::OwnChange);
        assert_eq!(classify(&newgen(43), &ours).unwrap(), Wake::OwnChange, "another thread of ours");
        assert_eq!(classify(&newgen(7), &ours).unwrap(), Wake::Changed);
        let both = [newgen(42), newgen(7)].concat();
        assert_eq!(classify(&both, &ours).unwrap(), Wake::Changed);
    }

    #[test]
    fn this_process_and_its_threads_are_ours() {
        assert!(one_of_our_threads(std::process::id()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
            let _ = done_rx.recv();
        });
        assert!(one_of_our_threads(rx.recv().unwrap()), "a running thread of ours");
        drop(done_tx);
        t.join().unwrap();
    }

    #[test]
    fn the_strongest_reason_wins() {
        assert_eq!(merge(Wake::OwnChange, Wake::Changed), Wake::Changed);
        assert_eq!(merge(Wake::Overrun, Wake::Changed), Wake::Overrun);
        assert_eq!(merge(Wake::Quiet, Wake::OwnChange), Wake::OwnChange);
    }
}
