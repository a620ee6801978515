//! NEWRULE / DELRULE messages and rules read back from a GETRULE dump. rustables' `Rule` cannot
//! carry xt expressions or `NFTA_RULE_COMPAT`, and always appends; iptables-nft compatibility
//! needs all three, so rule messages are encoded here.

use super::attr::AttrWriter;
use super::expr::Expr;
use super::msg::{build, nft_type, Reply};
use super::sys::*;
use super::NlError;

/// `NFTA_RULE_COMPAT`: the `-p` protocol and its inversion, which xt extensions such as
/// `REJECT --reject-with tcp-reset` check. iptables-nft always sends it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compat {
    pub proto: u32,
    pub flags: u32,
}

/// A rule as it travels to and from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftRule {
    pub family: u8,
    pub table: String,
    pub chain: String,
    /// Set on rules read back from the kernel.
    pub handle: Option<u64>,
    pub exprs: Vec<Expr>,
    /// Written, never dumped back by the kernel.
    pub compat: Option<Compat>,
    /// `NFTA_RULE_USERDATA`: where nft keeps a rule's comment (see [`comment_udata`]).
    pub userdata: Option<Vec<u8>>,
}

/// A comment as nft stores it in rule, table or chain userdata: one TLV of type 0
/// (`NFTNL_UDATA_*_COMMENT`) whose length counts the trailing NUL.
pub fn comment_udata(comment: &str) -> Vec<u8> {
    let mut tlv = vec![0, comment.len() as u8 + 1];
    tlv.extend_from_slice(comment.as_bytes());
    tlv.push(0);
    tlv
}

/// Where a new rule goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// At the top of the chain (`iptables -I CHAIN`).
    Top,
    /// Just before the rule with this handle (`iptables -I CHAIN N`).
    Before(u64),
    /// Just after the rule with this handle.
    After(u64),
    /// At the end (`iptables -A`).
    End,
}

impl NftRule {
    /// The NEWRULE message, attributes and flags as libnftnl's (no NLM_F_ACK: a batch's
    /// answers are errors only, see `Netlink::commit`). The kernel inserts before
    /// NFTA_RULE_POSITION, or after it with NLM_F_APPEND; without a position, APPEND appends.
    pub fn new_msg(&self, seq: u32, at: Position) -> Vec<u8> {
        let flags = match at {
            Position::Top | Position::Before(_) => NLM_F_REQUEST | NLM_F_CREATE,
            Position::After(_) | Position::End => NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND,
        };
        build(nft_type(NFT_MSG_NEWRULE), flags, seq, self.family, 0, |w| {
            w.put_strz(NFTA_RULE_TABLE, &self.table).put_strz(NFTA_RULE_CHAIN, &self.chain);
            if let Position::Before(handle) | Position::After(handle) = at {
                w.put_be64(NFTA_RULE_POSITION, handle);
            }
            self.write_exprs(w);
            if let Some(c) = self.compat {
                w.nest(NFTA_RULE_COMPAT, |w| {
                    w.put_be32(NFTA_RULE_COMPAT_PROTO, c.proto).put_be32(NFTA_RULE_COMPAT_FLAGS, c.flags);
                });
            }
            if let Some(udata) = &self.userdata {
                w.put_bytes(NFTA_RULE_USERDATA, udata);
            }
        })
    }

    /// The NEWRULE message that puts this rule in the place of the rule with `handle`, in one
    /// step (NLM_F_REPLACE): the chain never lacks it.
    pub fn replace_msg(&self, seq: u32, handle: u64) -> Vec<u8> {
        build(nft_type(NFT_MSG_NEWRULE), NLM_F_REQUEST | NLM_F_REPLACE, seq, self.family, 0, |w| {
            w.put_strz(NFTA_RULE_TABLE, &self.table)
                .put_strz(NFTA_RULE_CHAIN, &self.chain)
                .put_be64(NFTA_RULE_HANDLE, handle);
            self.write_exprs(w);
            if let Some(udata) = &self.userdata {
                w.put_bytes(NFTA_RULE_USERDATA, udata);
            }
        })
    }

    /// The DELRULE message that empties this rule's chain (no handle: every rule in it).
    pub fn flush_msg(&self, seq: u32) -> Vec<u8> {
        build(nft_type(NFT_MSG_DELRULE), NLM_F_REQUEST, seq, self.family, 0, |w| {
            w.put_strz(NFTA_RULE_TABLE, &self.table).put_strz(NFTA_RULE_CHAIN, &self.chain);
        })
    }

    /// The DELRULE message for this rule, found by its kernel handle.
    pub fn del_msg(&self, handle: u64, seq: u32) -> Vec<u8> {
        build(nft_type(NFT_MSG_DELRULE), NLM_F_REQUEST, seq, self.family, 0, |w| {
            w.put_strz(NFTA_RULE_TABLE, &self.table)
                .put_strz(NFTA_RULE_CHAIN, &self.chain)
                .put_be64(NFTA_RULE_HANDLE, handle);
        })
    }

    fn write_exprs(&self, w: &mut AttrWriter) {
        w.nest(NFTA_RULE_EXPRESSIONS, |w| {
            for e in &self.exprs {
                e.encode(w);
            }
        });
    }

    /// Reads a NEWRULE message from a dump.
    pub fn decode(reply: &Reply<'_>) -> Result<NftRule, NlError> {
        let mut rule = NftRule {
            family: reply.family,
            table: String::new(),
            chain: String::new(),
            handle: None,
            exprs: Vec::new(),
            compat: None,
            userdata: None,
        };
        for attr in reply.attrs() {
            let attr = attr?;
            match attr.ty {
                NFTA_RULE_TABLE => rule.table = attr.string()?,
                NFTA_RULE_CHAIN => rule.chain = attr.string()?,
                NFTA_RULE_HANDLE => rule.handle = Some(attr.be64()?),
                NFTA_RULE_USERDATA => rule.userdata = Some(attr.payload.to_vec()),
                NFTA_RULE_EXPRESSIONS => {
                    for elem in attr.nested() {
                        rule.exprs.push(Expr::decode(&elem?)?);
                    }
                }
                _ => {}
            }
        }
        Ok(rule)
    }

    /// The expressions with counters zeroed: what a rule *is*, regardless of traffic seen.
    pub fn shape(&self) -> Vec<Expr> {
        self.exprs
            .iter()
            .map(|e| match e {
                Expr::Counter { .. } => Expr::Counter { bytes: 0, packets: 0 },
                other => other.clone(),
            })
            .collect()
    }

    /// Packets counted by the rule's first counter.
    pub fn packets(&self) -> u64 {
        self.exprs
            .iter()
            .find_map(|e| match e {
                Expr::Counter { packets, .. } => Some(*packets),
                _ => None,
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_is_userdata_as_nft_writes_it() {
        // nft 1.0.6, `… comment "egress-guard"` in an inet table: the NEWRULE ends in
        // 13 00 07 00 | 00 0d "egress-guard\0" | 1 byte padding
        let rule = NftRule {
            family: NFPROTO_INET,
            table: "egress_guard".into(),
            chain: "forward".into(),
            handle: None,
            exprs: Vec::new(),
            compat: None,
            userdata: Some(comment_udata("egress-guard")),
        };
        let msg = rule.new_msg(7, Position::End);
        let mut tail = vec![0x13, 0, 0x07, 0, 0, 0x0d];
        tail.extend_from_slice(b"egress-guard\0\0");
        assert!(msg.ends_with(&tail), "{msg:02x?}");
        let replies = crate::nft::msg::parse(&msg).unwrap();
        assert_eq!(NftRule::decode(&replies[0]).unwrap().userdata, rule.userdata);
    }
}
