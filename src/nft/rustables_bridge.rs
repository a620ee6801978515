//! rustables builds the objects it describes well (our table with its userdata, base chains
//! with hook, priority and policy); this splices the messages of a finalized rustables batch
//! into our `BatchBuilder`, which carries the generation id rustables cannot send. Its own
//! BATCH_BEGIN/END are dropped, every message is renumbered in our sequence, and the ACK
//! rustables asks for is dropped: a batch's answers are its errors (see `Netlink::commit`).

use super::msg::{self, BatchBuilder, Reply, NLMSG_HDRLEN};
use super::sys::*;
use super::NlError;

/// Moves the messages of `finalized` (what `rustables::Batch::finalize` returns) into `batch`,
/// each described as "<MSG TYPE> <what>" for error messages.
pub fn splice(batch: &mut BatchBuilder, finalized: &[u8], what: &str) -> Result<(), NlError> {
    for reply in msg::parse(finalized)? {
        if reply.ty == NFNL_MSG_BATCH_BEGIN || reply.ty == NFNL_MSG_BATCH_END {
            continue;
        }
        batch.push(format!("{} {what}", msg_name(reply.ty)), |seq| renumbered(&reply, seq));
    }
    Ok(())
}

/// The message with a new sequence number and no ACK request; the port id stays 0 (the
/// kernel fills in ours).
fn renumbered(reply: &Reply<'_>, seq: u32) -> Vec<u8> {
    let len = (NLMSG_HDRLEN + reply.body.len()) as u32;
    let mut out = Vec::with_capacity(len as usize);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&reply.ty.to_ne_bytes());
    out.extend_from_slice(&(reply.flags & !NLM_F_ACK).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(reply.body);
    out
}

fn msg_name(ty: u16) -> String {
    let name = match ty {
        t if t == msg::nft_type(NFT_MSG_NEWTABLE) => "NEWTABLE",
        t if t == msg::nft_type(NFT_MSG_DELTABLE) => "DELTABLE",
        t if t == msg::nft_type(NFT_MSG_NEWCHAIN) => "NEWCHAIN",
        t if t == msg::nft_type(NFT_MSG_DELCHAIN) => "DELCHAIN",
        t if t == msg::nft_type(NFT_MSG_NEWSET) => "NEWSET",
        t if t == msg::nft_type(NFT_MSG_NEWRULE) => "NEWRULE",
        other => return format!("message {other:#06x}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustables::{Chain, ChainPolicy, ChainType, Hook, HookClass, MsgType, ProtocolFamily, Table};

    fn table() -> Table {
        Table::new(ProtocolFamily::Inet).with_name("egress_guard")
    }

    fn finalized(fill: impl FnOnce(&mut rustables::Batch)) -> Vec<u8> {
        let mut batch = rustables::Batch::new();
        fill(&mut batch);
        batch.finalize()
    }

    #[test]
    fn inner_messages_move_over_renumbered() {
        let chain = Chain::new(&table())
            .with_name("forward")
            .with_hook(Hook::new(HookClass::Forward, -1))
            .with_policy(ChainPolicy::Accept)
            .with_type(ChainType::Filter);
        let theirs = finalized(|b| {
            b.add(&table(), MsgType::Add);
            b.add(&chain, MsgType::Add);
        });
        let mut ours = BatchBuilder::new(100, 7);
        splice(&mut ours, &theirs, "inet egress_guard").unwrap();
        let ours = ours.finish();
        let what: Vec<(u32, &str)> = ours.msgs.iter().map(|(s, w)| (*s, w.as_str())).collect();
        assert_eq!(what, [(101, "NEWTABLE inet egress_guard"), (102, "NEWCHAIN inet egress_guard")]);

        // Between our BEGIN (genid 7) and END: rustables' two messages, byte for byte, except
        // the sequence numbers and the ACK flag.
        let mine = msg::parse(&ours.bytes).unwrap();
        let rust = msg::parse(&theirs).unwrap();
        assert_eq!(mine.len(), 4);
        assert_eq!((mine[0].ty, mine[3].ty), (NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END));
        assert_eq!(msg::parse_genid(&Reply { ty: 0, ..mine[0].clone() }).ok(), Some(7));
        for (m, r) in mine[1..3].iter().zip(&rust[1..3]) {
            assert_eq!((m.ty, m.flags, m.family, m.body), (r.ty, r.flags & !NLM_F_ACK, r.family, r.body));
        }
        assert_eq!((mine[1].seq, mine[2].seq, mine[3].seq), (101, 102, 103));
        // rustables asks an ACK for every message; a big batch's ACKs would overflow our socket.
        assert!(rust[1..3].iter().all(|m| m.flags & NLM_F_ACK != 0));
        assert!(mine[1..3].iter().all(|m| m.flags & NLM_F_ACK == 0));
    }

    #[test]
    fn a_batch_with_nothing_in_it_adds_nothing() {
        let mut ours = BatchBuilder::new(1, 1);
        splice(&mut ours, &finalized(|_| {}), "nothing").unwrap();
        assert!(ours.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut ours = BatchBuilder::new(1, 1);
        assert!(splice(&mut ours, &[0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "x").is_err());
    }
}
