//! nfnetlink messages: the 16-byte `nlmsghdr` plus 4-byte `nfgenmsg`, the batch that wraps a
//! transaction (with the generation id rustables cannot send), GETGEN, dump requests, and the
//! parsing of what comes back.

use super::attr::{AttrWriter, Attrs};
use super::sys::*;
use super::NlError;

pub const NLMSG_HDRLEN: usize = 16;
pub const NFGENMSG_LEN: usize = 4;

/// The `nlmsg_type` of an nf_tables message: subsystem in the high byte.
pub const fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// Builds one nfnetlink message: header, `nfgenmsg`, then the attributes `fill` writes.
pub fn build(ty: u16, flags: u16, seq: u32, family: u8, res_id: u16, fill: impl FnOnce(&mut AttrWriter)) -> Vec<u8> {
    let mut w = AttrWriter::new();
    fill(&mut w);
    let attrs = w.into_bytes();
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills in ours
    msg.push(family);
    msg.push(NFNETLINK_V0);
    // res_id is big-endian on the wire; batch delimiters carry the subsystem id in it.
    msg.extend_from_slice(&res_id.to_be_bytes());
    msg.extend_from_slice(&attrs);
    msg
}

/// `NFT_MSG_GETGEN`: asks for the ruleset generation, the base of optimistic concurrency.
pub fn getgen(seq: u32) -> Vec<u8> {
    build(nft_type(NFT_MSG_GETGEN), NLM_F_REQUEST, seq, AF_UNSPEC, 0, |_| {})
}

/// A request for one chain: answered by NEWCHAIN, or ENOENT when the table or chain is missing
/// (a filtered rule dump cannot tell: it answers an empty list either way).
pub fn getchain(seq: u32, family: u8, table: &str, chain: &str) -> Vec<u8> {
    build(nft_type(NFT_MSG_GETCHAIN), NLM_F_REQUEST, seq, family, 0, |w| {
        w.put_strz(NFTA_CHAIN_TABLE, table).put_strz(NFTA_CHAIN_NAME, chain);
    })
}

/// A request for one table: answered by NEWTABLE, or ENOENT.
pub fn gettable(seq: u32, family: u8, table: &str) -> Vec<u8> {
    build(nft_type(NFT_MSG_GETTABLE), NLM_F_REQUEST, seq, family, 0, |w| {
        w.put_strz(NFTA_TABLE_NAME, table);
    })
}

/// A dump request for the rules of one chain: the kernel filters by table and chain, so we
/// never read more of the ruleset than the chains we need.
pub fn getrule_dump(seq: u32, family: u8, table: &str, chain: &str) -> Vec<u8> {
    build(nft_type(NFT_MSG_GETRULE), NLM_F_REQUEST | NLM_F_DUMP, seq, family, 0, |w| {
        w.put_strz(NFTA_RULE_TABLE, table).put_strz(NFTA_RULE_CHAIN, chain);
    })
}

/// A complete batch, ready to send, and what each sequence number stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub bytes: Vec<u8>,
    /// Sequence number of BATCH_BEGIN: a stale generation is reported on it.
    pub begin_seq: u32,
    /// (seq, description) of every message between BEGIN and END.
    pub msgs: Vec<(u32, String)>,
    /// Sequence number of BATCH_END, the last one the batch uses.
    pub end_seq: u32,
}

/// Assembles `BATCH_BEGIN{NFNL_BATCH_GENID}` · messages · `BATCH_END`. Each message is built by
/// a closure that receives its sequence number.
#[derive(Debug)]
pub struct BatchBuilder {
    bytes: Vec<u8>,
    begin_seq: u32,
    next_seq: u32,
    msgs: Vec<(u32, String)>,
    genid: u32,
}

impl BatchBuilder {
    /// `genid` is the generation the batch was planned against: the kernel refuses the whole
    /// batch with ERESTART if anyone committed since. 0 would disable the check; we never send it.
    pub fn new(first_seq: u32, genid: u32) -> Self {
        let bytes = build(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, first_seq, AF_UNSPEC, NFNL_SUBSYS_NFTABLES, |w| {
            w.put_be32(NFNL_BATCH_GENID, genid);
        });
        Self { bytes, begin_seq: first_seq, next_seq: first_seq + 1, msgs: Vec::new(), genid }
    }

    /// The generation the batch was planned against; committed, it makes `genid + 1`.
    pub fn genid(&self) -> u32 {
        self.genid
    }

    /// Adds a message; `make` gets the sequence number to put in its header.
    pub fn push(&mut self, what: impl Into<String>, make: impl FnOnce(u32) -> Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes.extend_from_slice(&make(seq));
        self.msgs.push((seq, what.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    pub fn finish(mut self) -> Batch {
        let end = build(NFNL_MSG_BATCH_END, NLM_F_REQUEST, self.next_seq, AF_UNSPEC, NFNL_SUBSYS_NFTABLES, |_| {});
        self.bytes.extend_from_slice(&end);
        Batch { bytes: self.bytes, begin_seq: self.begin_seq, msgs: self.msgs, end_seq: self.next_seq }
    }
}

/// One message received from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    /// For nfnetlink messages: the family from `nfgenmsg`.
    pub family: u8,
    /// Everything after `nlmsghdr` (for nf_tables messages: `nfgenmsg` then attributes).
    pub body: &'a [u8],
}

impl<'a> Reply<'a> {
    /// Attributes of an nf_tables message (after `nfgenmsg`).
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs::new(self.body.get(NFGENMSG_LEN..).unwrap_or(&[]))
    }

    /// For `NLMSG_ERROR`: the errno (0 is an ACK) and the seq of the message it answers.
    pub fn error(&self) -> Result<(i32, u32), NlError> {
        // struct nlmsgerr { int error; struct nlmsghdr msg; ... }
        let b = self.body;
        if b.len() < 4 + NLMSG_HDRLEN {
            return Err(NlError::Malformed("truncated NLMSG_ERROR"));
        }
        let err = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let seq = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]);
        // -i32::MIN does not exist; no kernel sends it, but these are bytes from outside.
        let errno = err.checked_neg().ok_or(NlError::Malformed("NLMSG_ERROR errno out of range"))?;
        Ok((errno, seq))
    }
}

/// Splits a receive buffer into messages.
pub fn parse(buf: &[u8]) -> Result<Vec<Reply<'_>>, NlError> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(NlError::Malformed("netlink message length out of bounds"));
        }
        let body = &rest[NLMSG_HDRLEN..len];
        out.push(Reply {
            ty: u16::from_ne_bytes([rest[4], rest[5]]),
            flags: u16::from_ne_bytes([rest[6], rest[7]]),
            seq: u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]),
            family: body.first().copied().unwrap_or(0),
            body,
        });
        rest = &rest[super::attr::align4(len).min(rest.len())..];
    }
    Ok(out)
}

/// The generation id from an `NFT_MSG_NEWGEN` reply.
pub fn parse_genid(reply: &Reply<'_>) -> Result<u32, NlError> {
    for attr in reply.attrs() {
        let attr = attr?;
        if attr.ty == NFTA_GEN_ID {
            return attr.be32();
        }
    }
    Err(NlError::Malformed("NEWGEN without NFTA_GEN_ID"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getgen_matches_reference_bytes() {
        // reference §9: 14 00 00 00 10 0a 01 00 <seq> 00000000 00 00 00 00
        let msg = getgen(0x65);
        assert_eq!(msg, [0x14, 0, 0, 0, 0x10, 0x0a, 0x01, 0, 0x65, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn batch_begin_carries_genid_and_big_endian_res_id() {
        // iptables 1.8.9 BATCH_BEGIN (seq 1, genid 3):
        // 1c 00 00 00 10 00 01 00 01 00 00 00 00 00 00 00 | 00 00 00 0a | 08 00 01 00 00 00 00 03
        let batch = BatchBuilder::new(1, 3).finish();
        assert_eq!(
            &batch.bytes[..28],
            [
                0x1c, 0, 0, 0, 0x10, 0, 0x01, 0, 1, 0, 0, 0, 0, 0, 0, 0, //
                0, 0, 0, 0x0a, 8, 0, 1, 0, 0, 0, 0, 3
            ]
        );
        // BATCH_END: 14 00 00 00 11 00 01 00 02 00 00 00 00 00 00 00 00 00 00 0a
        assert_eq!(&batch.bytes[28..], [0x14, 0, 0, 0, 0x11, 0, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a]);
    }

    #[test]
    fn parses_newgen_reply() {
        // reference §9, a NEWGEN reply from a fresh namespace (genid 1)
        let reply: &[u8] = &[
            0x30, 0, 0, 0, 0x0f, 0x0a, 0, 0, 0x65, 0, 0, 0, 0x27, 0x26, 0, 0, //
            0, 0, 0, 1, 8, 0, 1, 0, 0, 0, 0, 1, 8, 0, 2, 0, 0, 0, 0x26, 0x27, //
            0x0c, 0, 3, 0, b'p', b'y', b't', b'h', b'o', b'n', b'3', 0,
        ];
        let msgs = parse(reply).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].ty, nft_type(NFT_MSG_NEWGEN));
        assert_eq!(parse_genid(&msgs[0]).unwrap(), 1);
    }

    #[test]
    fn error_reply_gives_errno_and_seq() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&36u32.to_ne_bytes());
        buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        buf.extend_from_slice(&[0, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(&(-85i32).to_ne_bytes());
        buf.extend_from_slice(&[0; 8]);
        buf.extend_from_slice(&7u32.to_ne_bytes());
        buf.extend_from_slice(&[0; 4]);
        let msgs = parse(&buf).unwrap();
        assert_eq!(msgs[0].error().unwrap(), (85, 7));
    }
}
