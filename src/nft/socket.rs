//! The I/O shell around nf_tables: one netlink socket, request/reply bookkeeping, dumps and
//! batch commits. Everything it sends is built by the pure encoders beside it.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    bind, getsockname, recv, send, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

use super::msg::{self, nft_type, Batch, Reply};
use super::rule::NftRule;
use super::sys::*;
use super::NlError;

/// Large enough for any single dump datagram the kernel sends (it caps them near 32 KiB).
const RECV_BUF: usize = 256 * 1024;
/// A netlink request is answered synchronously; this only guards against a kernel bug hanging us.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The kernel refuses a datagram larger than the socket's send buffer (EMSGSIZE); batches up
/// to this size fit the default one (`wmem_default`, 208 KiB), larger ones make us grow it.
const DEFAULT_SNDBUF: usize = 200 * 1024;

/// A message from a GET or dump answer, kept after the receive buffer is reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedReply {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub family: u8,
    pub body: Vec<u8>,
}

impl OwnedReply {
    fn new(reply: &Reply<'_>) -> Self {
        OwnedReply { ty: reply.ty, flags: reply.flags, seq: reply.seq, family: reply.family, body: reply.body.to_vec() }
    }

    /// A view the decoders take.
    pub fn reply(&self) -> Reply<'_> {
        Reply { ty: self.ty, flags: self.flags, seq: self.seq, family: self.family, body: &self.body }
    }
}

pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
    /// The port id the kernel bound us to: what it records as the owner of tables we own.
    port: u32,
    /// Answers of [`Netlink::get_unchanged`] and the generation they were read at.
    kept: Option<(u32, HashMap<String, Vec<OwnedReply>>)>,
}

impl Netlink {
    /// Opens a netfilter netlink socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NlError> {
        let io = |op| move |errno| NlError::Io { op, errno };
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
            .map_err(io("socket"))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(io("bind"))?;
        let port = getsockname::<NetlinkAddr>(fd.as_raw_fd()).map_err(io("getsockname"))?.pid();
        let timeout = TimeVal::new(ANSWER_TIMEOUT.as_secs() as i64, 0);
        setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).map_err(io("setsockopt"))?;
        // Sequence numbers only need to be unique per socket; starting from the clock keeps
        // strace output of consecutive runs apart.
        let seq = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs() as u32);
        Ok(Netlink { fd, seq, buf: vec![0; RECV_BUF], port, kept: None })
    }

    /// The port id of this socket (the kernel's autobind: the pid for a process's first one).
    pub fn port_id(&self) -> u32 {
        self.port
    }

    /// The first sequence number a new batch may use; `commit` moves past the batch.
    pub fn next_seq(&self) -> u32 {
        self.seq
    }

    fn take_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq.wrapping_sub(1)
    }

    fn send(&self, bytes: &[u8]) -> Result<(), NlError> {
        let sent =
            send(self.fd.as_raw_fd(), bytes, MsgFlags::empty()).map_err(|errno| NlError::Io { op: "send", errno })?;
        if sent != bytes.len() {
            return Err(NlError::Malformed("short netlink send"));
        }
        Ok(())
    }

    /// Receives one datagram; `None` when `nonblocking` and nothing is queued.
    fn recv(&mut self, nonblocking: bool, what: &str) -> Result<Option<usize>, NlError> {
        let flags = if nonblocking { MsgFlags::MSG_DONTWAIT } else { MsgFlags::empty() };
        match recv(self.fd.as_raw_fd(), &mut self.buf, flags) {
            Ok(n) => Ok(Some(n)),
            Err(Errno::EAGAIN) if nonblocking => Ok(None),
            Err(Errno::EAGAIN) => Err(NlError::NoAnswer(what.to_string())),
            Err(errno) => Err(NlError::Io { op: "recv", errno }),
        }
    }

    /// The current ruleset generation (`NFT_MSG_GETGEN`).
    pub fn generation(&mut self) -> Result<u32, NlError> {
        let seq = self.take_seq();
        self.send(&msg::getgen(seq))?;
        loop {
            let n = self.recv(false, "GETGEN")?.unwrap_or(0);
            for reply in msg::parse(&self.buf[..n])? {
                if reply.seq != seq {
                    continue;
                }
                if reply.ty == NLMSG_ERROR {
                    let (errno, _) = reply.error()?;
                    return Err(kernel_error("GETGEN", errno));
                }
                if reply.ty == nft_type(NFT_MSG_NEWGEN) {
                    let genid = msg::parse_genid(&reply)?;
                    if self.kept.as_ref().is_none_or(|(at, _)| *at != genid) {
                        self.kept = Some((genid, HashMap::new()));
                    }
                    return Ok(genid);
                }
            }
        }
    }

    /// Whether a chain exists.
    pub fn chain_exists(&mut self, family: u8, table: &str, chain: &str) -> Result<bool, NlError> {
        let what = format!("GETCHAIN {} {table} {chain}", family_name(family));
        Ok(self.get(&what, |seq| msg::getchain(seq, family, table, chain))?.is_some())
    }

    /// Whether a table exists.
    pub fn table_exists(&mut self, family: u8, table: &str) -> Result<bool, NlError> {
        let what = format!("GETTABLE {} {table}", family_name(family));
        Ok(self.get(&what, |seq| msg::gettable(seq, family, table))?.is_some())
    }

    /// The rules of one chain, in order; `None` when the table or chain does not exist.
    pub fn dump_rules(&mut self, family: u8, table: &str, chain: &str) -> Result<Option<Vec<NftRule>>, NlError> {
        let what = format!("GETRULE {} {table} {chain}", family_name(family));
        let dump = self.get(&what, |seq| msg::getrule_dump(seq, family, table, chain))?.unwrap_or_default();
        // A dump filtered by a missing chain answers an empty list too: only an empty answer
        // needs the extra question (a chain with rules exists; this keeps a steady apply at
        // one request per chain).
        if dump.is_empty() && !self.chain_exists(family, table, chain)? {
            return Ok(None);
        }
        dump.iter().map(|r| NftRule::decode(&r.reply())).collect::<Result<_, _>>().map(Some)
    }

    /// [`Netlink::get`] handed to `read`, answered from this socket's earlier answer to the same request while
    /// the generation is the one the last GETGEN read: a change's dry run, its rollback
    /// snapshot and its sync then dump a set of 100,000 elements once, not three times (each
    /// dump of that size is about a second of the kernel's time). Only for what a commit alone
    /// changes: a timed set's elements expire without one.
    ///
    /// Sound because generations only grow: an answer that saw a commit made after the GETGEN
    /// is kept under the older generation, which no later GETGEN returns, so it is never used;
    /// the reader that made it sees the generation move and reads again. Our own commit drops
    /// every answer.
    pub fn get_unchanged<T>(
        &mut self,
        what: &str,
        make: impl FnOnce(u32) -> Vec<u8>,
        read: impl FnOnce(Option<&[OwnedReply]>) -> Result<T, NlError>,
    ) -> Result<T, NlError> {
        // `read` borrows the kept answer: at 100,000 elements a copy would be megabytes more.
        if let Some(kept) = self.kept.as_ref().and_then(|(_, answers)| answers.get(what)) {
            return read(Some(kept));
        }
        let got = self.get(what, make)?;
        let out = read(got.as_deref())?;
        if let (Some((_, answers)), Some(objects)) = (&mut self.kept, got) {
            answers.insert(what.to_string(), objects);
        }
        Ok(out)
    }

    /// Sends the GET request `make` builds (a dump when it carries NLM_F_DUMP) and collects the
    /// objects it answers with; `None` when the kernel says ENOENT (no such table, chain or set).
    /// A dump that another writer's commit interrupted (NLM_F_DUMP_INTR) is read to its end and
    /// then reported as `Concurrent`, for the caller to read again.
    pub fn get(&mut self, what: &str, make: impl FnOnce(u32) -> Vec<u8>) -> Result<Option<Vec<OwnedReply>>, NlError> {
        let seq = self.take_seq();
        self.send(&make(seq))?;
        let mut objects = Vec::new();
        let mut interrupted = false;
        loop {
            let n = self.recv(false, what)?.unwrap_or(0);
            let buf = self.buf[..n].to_vec();
            for reply in msg::parse(&buf)? {
                if reply.seq != seq {
                    continue;
                }
                interrupted |= reply.flags & NLM_F_DUMP_INTR != 0;
                let last = match reply.ty {
                    NLMSG_DONE => true,
                    NLMSG_ERROR => match reply.error()?.0 {
                        0 => continue,
                        e if e == Errno::ENOENT as i32 && !interrupted => return Ok(None),
                        e if e == Errno::ENOENT as i32 => true,
                        e => return Err(kernel_error(what, e)),
                    },
                    _ => {
                        objects.push(OwnedReply::new(&reply));
                        // A plain GET is answered by one message; only a dump ends with NLMSG_DONE.
                        reply.flags & NLM_F_MULTI == 0
                    }
                };
                if last {
                    return if interrupted { Err(NlError::Concurrent) } else { Ok(Some(objects)) };
                }
            }
        }
    }

    /// Sends a batch and reads every answer the kernel has for it; returns the generation
    /// after the commit.
    ///
    /// nfnetlink processes a batch inside our `send()`, and queues its answers all at once. Our
    /// messages ask for no ACK (as iptables' and nft's don't), so a batch that commits queues
    /// nothing, and one that fails queues an error for each failing message (or one ERESTART on
    /// BATCH_BEGIN for a stale generation). A GETGEN sent after the batch is the fence: once its
    /// answer arrives, every answer of the batch has been read. Asking an ACK per message would
    /// queue one answer per message, and a batch of a few hundred overflows the receive buffer
    /// (ENOBUFS) with no way to tell what was lost. If answers are lost anyway (errors from a
    /// huge failing batch), losing them still means the batch failed: only errors are queued.
    pub fn commit(&mut self, batch: &Batch) -> Result<u32, NlError> {
        self.kept = None;
        self.seq = batch.end_seq.wrapping_add(1);
        self.fit_send_buffer(batch.bytes.len())?;
        self.send(&batch.bytes)?;
        let in_batch = |seq: u32| seq.wrapping_sub(batch.begin_seq) <= batch.end_seq.wrapping_sub(batch.begin_seq);
        let mut errors: Vec<(u32, i32)> = Vec::new();
        let mut lost = false;
        let mut fence = self.send_fence()?;
        let genid = loop {
            let n = match recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(Errno::ENOBUFS) => {
                    // Drain what did fit, then ask again: the first fence's answer may be lost too.
                    lost = true;
                    while let Some(n) = self.recv(true, "the batch")? {
                        errors.extend(batch_errors(&self.buf[..n], &in_batch)?);
                    }
                    fence = self.send_fence()?;
                    continue;
                }
                Err(Errno::EAGAIN) => return Err(NlError::NoAnswer("the batch".into())),
                Err(errno) => return Err(NlError::Io { op: "recv", errno }),
            };
            errors.extend(batch_errors(&self.buf[..n], &in_batch)?);
            if let Some(genid) = fence_answer(&self.buf[..n], fence)? {
                break genid;
            }
        };
        match errors.iter().min_by_key(|(seq, _)| seq.wrapping_sub(batch.begin_seq)) {
            Some(&(seq, errno)) if seq == batch.begin_seq && errno == Errno::ERESTART as i32 => {
                Err(NlError::Concurrent)
            }
            Some(&(seq, errno)) => {
                let what = batch.msgs.iter().find(|(s, _)| *s == seq).map_or("commit", |(_, w)| w.as_str());
                Err(kernel_error(what, errno))
            }
            None if lost => {
                Err(NlError::Kernel { what: "commit (answers lost: ENOBUFS)".into(), errno: Errno::ENOBUFS })
            }
            None => Ok(genid),
        }
    }

    /// Sends the GETGEN that fences a batch's answers; returns its sequence number.
    fn send_fence(&mut self) -> Result<u32, NlError> {
        let seq = self.take_seq();
        self.send(&msg::getgen(seq))?;
        Ok(seq)
    }

    /// Grows the send buffer so one datagram holds the whole batch (a batch must be one
    /// sendmsg: the kernel only treats messages in one datagram as a transaction). As root we
    /// may exceed `wmem_max` (SO_SNDBUFFORCE, what nft does too); otherwise we ask for what we
    /// may have and let the kernel say EMSGSIZE if it is not enough.
    fn fit_send_buffer(&self, len: usize) -> Result<(), NlError> {
        if len <= DEFAULT_SNDBUF {
            return Ok(());
        }
        // The kernel doubles the value for its bookkeeping and needs a little headroom.
        let want = len + 4096;
        setsockopt(&self.fd, sockopt::SndBufForce, &want)
            .or_else(|_| setsockopt(&self.fd, sockopt::SndBuf, &want))
            .map_err(|errno| NlError::Io { op: "setsockopt", errno })
    }
}

/// The errors for messages of the batch in one datagram, as (seq, errno).
fn batch_errors(datagram: &[u8], in_batch: &impl Fn(u32) -> bool) -> Result<Vec<(u32, i32)>, NlError> {
    let mut errors = Vec::new();
    for reply in msg::parse(datagram)? {
        if reply.ty == NLMSG_ERROR {
            let (errno, seq) = reply.error()?;
            if errno != 0 && in_batch(seq) {
                errors.push((seq, errno));
            }
        }
    }
    Ok(errors)
}

/// The generation in the fence's answer, if the datagram holds it.
fn fence_answer(datagram: &[u8], fence: u32) -> Result<Option<u32>, NlError> {
    for reply in msg::parse(datagram)? {
        if reply.seq != fence {
            continue;
        }
        if reply.ty == NLMSG_ERROR {
            let (errno, _) = reply.error()?;
            return Err(kernel_error("GETGEN after the batch", errno));
        }
        if reply.ty == nft_type(NFT_MSG_NEWGEN) {
            return msg::parse_genid(&reply).map(Some);
        }
    }
    Ok(None)
}

fn kernel_error(what: &str, errno: i32) -> NlError {
    NlError::Kernel { what: what.to_string(), errno: Errno::from_raw(errno) }
}

fn family_name(family: u8) -> &'static str {
    match family {
        NFPROTO_IPV4 => "ip",
        NFPROTO_IPV6 => "ip6",
        NFPROTO_INET => "inet",
        _ => "?",
    }
}
