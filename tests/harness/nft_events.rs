//! The kernel's own account of what a commit changed: every nf_tables change announced on the
//! NFNLGRP_NFTABLES multicast group of a namespace (what `nft monitor` prints), recorded while
//! a test runs a command. What the kernel announces is what it got, whatever we meant to send.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use egress_guard::nft::msg;
use egress_guard::nft::set::SetElem;
use egress_guard::nft::sys::*;
use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

use super::netns::Netns;
use super::probe::timeval;

/// Room for the announcements of a large commit (each set element is one message).
const RECV_BUF: usize = 16 << 20;

/// One announced change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `NFT_MSG_*`: NEWSETELEM, DELRULE, NEWGEN…
    pub ty: u16,
    /// NFPROTO_* of the table it happened in.
    pub family: u8,
    /// The set it names (NEWSET, DELSET and the element messages).
    pub set: Option<String>,
    /// How many elements it carries (the element messages).
    pub elems: usize,
}

/// Records announcements inside a namespace from [`NftEvents::start`] until [`NftEvents::stop`].
pub struct NftEvents {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Vec<Event>, String>>>,
}

impl NftEvents {
    /// Returns once subscribed: every commit from then on is recorded.
    pub fn start(ns: &Netns) -> NftEvents {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, subscribed) = mpsc::channel();
        let flag = Arc::clone(&stop);
        let thread = ns.spawn(move || record(&flag, &ready));
        subscribed.recv().expect("the recorder thread").unwrap_or_else(|e| panic!("nf_tables events: {e}"));
        NftEvents { stop, thread: Some(thread) }
    }

    /// Everything announced so far (commits are announced before the committing call returns,
    /// so a command that has exited is in it).
    pub fn stop(mut self) -> Vec<Event> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("running");
        thread.join().expect("the recorder thread").unwrap_or_else(|e| panic!("nf_tables events: {e}"))
    }
}

impl Drop for NftEvents {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Subscribes, says so on `ready`, then reads until `stop` and the queue is empty.
fn record(stop: &AtomicBool, ready: &mpsc::Sender<Result<(), String>>) -> Result<Vec<Event>, String> {
    let subscribe = || -> Result<_, Errno> {
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1 << (NFNLGRP_NFTABLES - 1)))?;
        // Root may go past rmem_max: a dropped announcement would make the count a lie.
        setsockopt(&fd, sockopt::RcvBufForce, &RECV_BUF)?;
        setsockopt(&fd, sockopt::ReceiveTimeout, &timeval(Duration::from_millis(50)))?;
        Ok(fd)
    };
    let fd = match subscribe() {
        Ok(fd) => fd,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return Err(e.to_string());
        }
    };
    let _ = ready.send(Ok(()));
    let mut buf = vec![0u8; RECV_BUF];
    let mut events = Vec::new();
    loop {
        match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => events.extend(decode(&buf[..n])?),
            // Queued announcements come first: a timeout means the queue is empty.
            Err(Errno::EAGAIN) if stop.load(Ordering::Relaxed) => return Ok(events),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(Errno::ENOBUFS) => return Err("the kernel dropped announcements (receive buffer full)".into()),
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
}

fn decode(datagram: &[u8]) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    for m in msg::parse(datagram).map_err(|e| e.to_string())? {
        let ty = m.ty & 0xff;
        let attrs = || m.attrs().filter_map(Result::ok);
        let name_attr = match ty {
            NFT_MSG_NEWSET | NFT_MSG_DELSET => Some(NFTA_SET_NAME),
            NFT_MSG_NEWSETELEM | NFT_MSG_DELSETELEM => Some(NFTA_SET_ELEM_LIST_SET),
            _ => None,
        };
        let set = name_attr.and_then(|want| attrs().find(|a| a.ty == want).and_then(|a| a.string().ok()));
        let elems = match ty {
            NFT_MSG_NEWSETELEM | NFT_MSG_DELSETELEM => SetElem::decode_all(&m).map_err(|e| e.to_string())?.len(),
            _ => 0,
        };
        events.push(Event { ty, family: m.family, set, elems });
    }
    Ok(events)
}
