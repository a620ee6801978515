//! Named sets: NEWSET and NEWSETELEM for interval sets and concatenations of intervals, which
//! rustables 0.9 cannot describe (its `Set` has no `NFTA_SET_DESC`, its elements neither flags
//! nor `KEY_END`), elements that expire (`flags timeout`, for the DNS forwarder's grants) and
//! DELSETELEM, the dump requests that read them back, and their decoders.

use super::attr::{Attr, AttrWriter};
use super::msg::{build, nft_type, Reply};
use super::sys::*;
use super::NlError;

/// A set's definition as it travels to and from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftSet {
    pub family: u8,
    pub table: String,
    pub name: String,
    /// `NFT_SET_*` flags, e.g. `NFT_SET_INTERVAL`.
    pub flags: u32,
    /// nft's datatype id (for display only; concatenations combine ids 6 bits apart).
    pub key_type: u32,
    /// Key length in bytes, each field of a concatenation padded to 4.
    pub key_len: u32,
    /// Unpadded length of each field of a concatenation; empty for a single field.
    pub fields: Vec<u32>,
}

/// One element: a key, and for concatenated intervals (pipapo) the last key of the range.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetElem {
    pub key: Vec<u8>,
    pub key_end: Option<Vec<u8>>,
    /// `NFT_SET_ELEM_INTERVAL_END` on the element that closes an rbtree interval.
    pub flags: u32,
}

/// An element list must fit one `NFTA_SET_ELEM_LIST_ELEMENTS` attribute, whose length is a u16.
const ELEMENTS_BUDGET: usize = 60 * 1024;

impl NftSet {
    /// NEWSET, attributes in libnftnl's order, without nft's display userdata (nft lists the
    /// set fine without). `id` must be unique in the batch: the kernel demands one, although we
    /// refer to sets by name.
    pub fn new_msg(&self, seq: u32, id: u32) -> Vec<u8> {
        build(nft_type(NFT_MSG_NEWSET), NLM_F_REQUEST | NLM_F_CREATE, seq, self.family, 0, |w| {
            w.put_strz(NFTA_SET_TABLE, &self.table)
                .put_strz(NFTA_SET_NAME, &self.name)
                .put_be32(NFTA_SET_FLAGS, self.flags)
                .put_be32(NFTA_SET_KEY_TYPE, self.key_type)
                .put_be32(NFTA_SET_KEY_LEN, self.key_len)
                .put_be32(NFTA_SET_ID, id);
            if !self.fields.is_empty() {
                w.nest(NFTA_SET_DESC, |w| {
                    w.nest(NFTA_SET_DESC_CONCAT, |w| {
                        for len in &self.fields {
                            w.nest(NFTA_LIST_ELEM, |w| {
                                w.put_be32(NFTA_SET_FIELD_LEN, *len);
                            });
                        }
                    });
                });
            }
        })
    }

    /// NEWSETELEM messages adding `elems`, as many as it takes to stay under the attribute
    /// size limit; each is built by a closure that gets its sequence number.
    pub fn elems_msgs<'a>(&'a self, elems: &[SetElem]) -> Vec<impl FnOnce(u32) -> Vec<u8> + 'a> {
        let encoded = elems.iter().map(|elem| {
            let mut w = AttrWriter::new();
            elem.encode(&mut w);
            w.into_bytes()
        });
        self.list_msgs(NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE, encoded.collect())
    }

    /// NEWSETELEM messages adding elements that expire (the set has `NFT_SET_TIMEOUT`).
    pub fn timed_elems_msgs<'a>(&'a self, elems: &[TimedElem]) -> Vec<impl FnOnce(u32) -> Vec<u8> + 'a> {
        let encoded = elems.iter().map(|elem| {
            let mut w = AttrWriter::new();
            elem.encode(&mut w);
            w.into_bytes()
        });
        self.list_msgs(NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE, encoded.collect())
    }

    /// DELSETELEM messages removing the elements with these keys (the kernel answers ENOENT,
    /// and refuses the batch, if one is not there).
    pub fn del_elems_msgs<'a>(&'a self, keys: &[Vec<u8>]) -> Vec<impl FnOnce(u32) -> Vec<u8> + 'a> {
        let encoded = keys.iter().map(|key| {
            let mut w = AttrWriter::new();
            w.nest(NFTA_LIST_ELEM, |w| {
                put_key(w, NFTA_SET_ELEM_KEY, key);
            });
            w.into_bytes()
        });
        self.list_msgs(NFT_MSG_DELSETELEM, NLM_F_REQUEST, encoded.collect())
    }

    /// DELSETELEM messages removing `elems` as they were added: an interval's closing element
    /// is found by its INTERVAL_END flag, a concatenation's range by its key and key end.
    pub fn del_exact_msgs<'a>(&'a self, elems: &[SetElem]) -> Vec<impl FnOnce(u32) -> Vec<u8> + 'a> {
        let encoded = elems.iter().map(|elem| {
            let mut w = AttrWriter::new();
            elem.encode(&mut w);
            w.into_bytes()
        });
        self.list_msgs(NFT_MSG_DELSETELEM, NLM_F_REQUEST, encoded.collect())
    }

    /// Element-list messages of type `ty` holding the encoded `NFTA_LIST_ELEM`s, as many as it
    /// takes to stay under the attribute size limit.
    fn list_msgs<'a>(&'a self, ty: u16, flags: u16, encoded: Vec<Vec<u8>>) -> Vec<impl FnOnce(u32) -> Vec<u8> + 'a> {
        // (bytes, elements so far) per message; libnftnl numbers the list entries 1, 2, 3…
        // (the kernel ignores the number), and so do we.
        let mut chunks: Vec<(Vec<u8>, u16)> = vec![(Vec::new(), 0)];
        for mut bytes in encoded {
            if chunks.last().is_some_and(|(c, _)| c.len() + bytes.len() > ELEMENTS_BUDGET) {
                chunks.push((Vec::new(), 0));
            }
            if let Some((chunk, count)) = chunks.last_mut() {
                *count += 1;
                bytes[2..4].copy_from_slice(&(*count | super::attr::NLA_F_NESTED).to_ne_bytes());
                chunk.extend_from_slice(&bytes);
            }
        }
        chunks.retain(|(c, _)| !c.is_empty());
        chunks
            .into_iter()
            .map(move |(chunk, _)| {
                move |seq| {
                    build(nft_type(ty), flags, seq, self.family, 0, |w| {
                        w.put_strz(NFTA_SET_ELEM_LIST_TABLE, &self.table).put_strz(NFTA_SET_ELEM_LIST_SET, &self.name);
                        w.put_bytes(NFTA_SET_ELEM_LIST_ELEMENTS | super::attr::NLA_F_NESTED, &chunk);
                    })
                }
            })
            .collect()
    }

    /// Reads a NEWSET message from a dump.
    pub fn decode(reply: &Reply<'_>) -> Result<NftSet, NlError> {
        let mut set = NftSet {
            family: reply.family,
            table: String::new(),
            name: String::new(),
            flags: 0,
            key_type: 0,
            key_len: 0,
            fields: Vec::new(),
        };
        for attr in reply.attrs() {
            let attr = attr?;
            match attr.ty {
                NFTA_SET_TABLE => set.table = attr.string()?,
                NFTA_SET_NAME => set.name = attr.string()?,
                NFTA_SET_FLAGS => set.flags = attr.be32()?,
                NFTA_SET_KEY_TYPE => set.key_type = attr.be32()?,
                NFTA_SET_KEY_LEN => set.key_len = attr.be32()?,
                NFTA_SET_DESC => set.fields = decode_fields(&attr)?,
                _ => {}
            }
        }
        Ok(set)
    }
}

/// The field lengths inside `NFTA_SET_DESC` (a plain set's description has none).
fn decode_fields(desc: &Attr<'_>) -> Result<Vec<u32>, NlError> {
    let mut fields = Vec::new();
    for attr in desc.nested() {
        let attr = attr?;
        if attr.ty != NFTA_SET_DESC_CONCAT {
            continue;
        }
        for elem in attr.nested() {
            for field in elem?.nested() {
                let field = field?;
                if field.ty == NFTA_SET_FIELD_LEN {
                    fields.push(field.be32()?);
                }
            }
        }
    }
    Ok(fields)
}

impl SetElem {
    /// One `NFTA_LIST_ELEM`, attributes in libnftnl's order (FLAGS, KEY, KEY_END).
    fn encode(&self, w: &mut AttrWriter) {
        w.nest(NFTA_LIST_ELEM, |w| {
            if self.flags != 0 {
                w.put_be32(NFTA_SET_ELEM_FLAGS, self.flags);
            }
            put_key(w, NFTA_SET_ELEM_KEY, &self.key);
            if let Some(end) = &self.key_end {
                put_key(w, NFTA_SET_ELEM_KEY_END, end);
            }
        });
    }

    fn decode(elem: &Attr<'_>) -> Result<SetElem, NlError> {
        let mut out = SetElem { key: Vec::new(), key_end: None, flags: 0 };
        for attr in elem.nested() {
            let attr = attr?;
            match attr.ty {
                NFTA_SET_ELEM_FLAGS => out.flags = attr.be32()?,
                NFTA_SET_ELEM_KEY => out.key = data_value(&attr)?,
                NFTA_SET_ELEM_KEY_END => out.key_end = Some(data_value(&attr)?),
                _ => {}
            }
        }
        Ok(out)
    }

    /// The elements of one NEWSETELEM message from a dump.
    pub fn decode_all(reply: &Reply<'_>) -> Result<Vec<SetElem>, NlError> {
        let mut elems = Vec::new();
        for attr in reply.attrs() {
            let attr = attr?;
            if attr.ty == NFTA_SET_ELEM_LIST_ELEMENTS {
                for elem in attr.nested() {
                    elems.push(SetElem::decode(&elem?)?);
                }
            }
        }
        Ok(elems)
    }
}

/// An element of a set with `NFT_SET_TIMEOUT`: a key (each field of a concatenation padded
/// to 4 bytes) and how long it lives. The kernel removes it when its time is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedElem {
    pub key: Vec<u8>,
    /// `NFTA_SET_ELEM_TIMEOUT`, in ms.
    pub timeout_ms: u64,
    /// `NFTA_SET_ELEM_EXPIRATION`, in ms: what is left of the timeout (sent: start the element
    /// part-way; dumped: the time it still has).
    pub expiration_ms: Option<u64>,
}

impl TimedElem {
    /// One `NFTA_LIST_ELEM`, attributes in libnftnl's order (TIMEOUT, EXPIRATION, KEY).
    fn encode(&self, w: &mut AttrWriter) {
        w.nest(NFTA_LIST_ELEM, |w| {
            w.put_be64(NFTA_SET_ELEM_TIMEOUT, self.timeout_ms);
            if let Some(left) = self.expiration_ms {
                w.put_be64(NFTA_SET_ELEM_EXPIRATION, left);
            }
            put_key(w, NFTA_SET_ELEM_KEY, &self.key);
        });
    }

    fn decode(elem: &Attr<'_>) -> Result<TimedElem, NlError> {
        let mut out = TimedElem { key: Vec::new(), timeout_ms: 0, expiration_ms: None };
        for attr in elem.nested() {
            let attr = attr?;
            match attr.ty {
                NFTA_SET_ELEM_KEY => out.key = data_value(&attr)?,
                NFTA_SET_ELEM_TIMEOUT => out.timeout_ms = attr.be64()?,
                NFTA_SET_ELEM_EXPIRATION => out.expiration_ms = Some(attr.be64()?),
                _ => {}
            }
        }
        Ok(out)
    }

    /// The elements of one NEWSETELEM message from a dump of a timeout set.
    pub fn decode_all(reply: &Reply<'_>) -> Result<Vec<TimedElem>, NlError> {
        let mut elems = Vec::new();
        for attr in reply.attrs() {
            let attr = attr?;
            if attr.ty == NFTA_SET_ELEM_LIST_ELEMENTS {
                for elem in attr.nested() {
                    elems.push(TimedElem::decode(&elem?)?);
                }
            }
        }
        Ok(elems)
    }
}

/// A key attribute: `NFTA_DATA_VALUE` nested in `ty` (KEY or KEY_END).
fn put_key(w: &mut AttrWriter, ty: u16, key: &[u8]) {
    w.nest(ty, |w| {
        w.put_bytes(NFTA_DATA_VALUE, key);
    });
}

fn data_value(attr: &Attr<'_>) -> Result<Vec<u8>, NlError> {
    for inner in attr.nested() {
        let inner = inner?;
        if inner.ty == NFTA_DATA_VALUE {
            return Ok(inner.payload.to_vec());
        }
    }
    Err(NlError::Malformed("set element key without a value"))
}

/// A dump request for the sets of one table (the kernel filters by table).
pub fn getset_dump(seq: u32, family: u8, table: &str) -> Vec<u8> {
    build(nft_type(NFT_MSG_GETSET), NLM_F_REQUEST | NLM_F_DUMP, seq, family, 0, |w| {
        w.put_strz(NFTA_SET_TABLE, table);
    })
}

/// A dump request for the elements of one set.
pub fn getsetelem_dump(seq: u32, family: u8, table: &str, set: &str) -> Vec<u8> {
    build(nft_type(NFT_MSG_GETSETELEM), NLM_F_REQUEST | NLM_F_DUMP, seq, family, 0, |w| {
        w.put_strz(NFTA_SET_ELEM_LIST_TABLE, table).put_strz(NFTA_SET_ELEM_LIST_SET, set);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::attr::Attrs;
    use crate::nft::hex;
    use crate::nft::msg::{parse, NFGENMSG_LEN, NLMSG_HDRLEN};

    /// `msg` with the top-level attributes of the given types cut out (and its length fixed):
    /// how a capture from nft compares with what we send without nft's extras.
    fn without(msg: &[u8], types: &[u16]) -> Vec<u8> {
        let head = NLMSG_HDRLEN + NFGENMSG_LEN;
        let mut out = msg[..head].to_vec();
        let mut rest = &msg[head..];
        while rest.len() >= 4 {
            let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
            let ty = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
            let padded = crate::nft::attr::align4(len).min(rest.len());
            if !types.contains(&ty) {
                out.extend_from_slice(&rest[..padded]);
            }
            rest = &rest[padded..];
        }
        let len = out.len() as u32;
        out[..4].copy_from_slice(&len.to_ne_bytes());
        out
    }

    fn interval4() -> NftSet {
        NftSet {
            family: NFPROTO_INET,
            table: "egress_guard".into(),
            name: "dst4".into(),
            flags: NFT_SET_INTERVAL,
            key_type: 7,
            key_len: 4,
            fields: Vec::new(),
        }
    }

    fn concat4() -> NftSet {
        NftSet {
            name: "dst4p".into(),
            flags: NFT_SET_INTERVAL | NFT_SET_CONCAT,
            key_type: 0x730d,
            key_len: 12,
            fields: vec![4, 1, 2],
            ..interval4()
        }
    }

    // The captures: nft 1.0.6 `nft -f` in `unshare -n`, strace -e trace=sendmsg -e write=all, of
    //   table inet egress_guard {
    //     set dst4 { type ipv4_addr; flags interval; elements = { 10.0.0.0/8 } }
    //     set dst4p { type ipv4_addr . inet_proto . inet_service; flags interval;
    //                 elements = { 198.51.100.53 . udp . 53 } } }

    #[test]
    fn interval_set_matches_nft() {
        // nlmsghdr (NEWSET, REQUEST|CREATE, seq 3) | inet | TABLE | NAME "dst4" | FLAGS be32 4
        // (interval) | KEY_TYPE be32 7 (ipv4_addr) | KEY_LEN be32 4 | ID be32 1 | USERDATA
        // (key byte order: big endian)
        let nft =
            hex("60 00 00 00 09 0a 01 04 03 00 00 00 00 00 00 00 01 00 00 00 11 00 01 00 65 67 72 65 73 73 5f 67 \
             75 61 72 64 00 00 00 00 09 00 02 00 64 73 74 34 00 00 00 00 08 00 03 00 00 00 00 04 08 00 04 00 \
             00 00 00 07 08 00 05 00 00 00 00 04 08 00 0a 00 00 00 00 01 0a 00 0d 00 00 04 02 00 00 00 00 00");
        // Flags too: REQUEST|CREATE, no ACK, as nft.
        let ours = interval4().new_msg(3, 1);
        assert_eq!(ours, without(&nft, &[NFTA_SET_USERDATA]));
        assert_eq!(NftSet::decode(&parse(&nft).unwrap()[0]).unwrap(), interval4());
    }

    #[test]
    fn concatenated_interval_set_matches_nft() {
        // … FLAGS be32 0x84 (interval | concat) | KEY_TYPE 0x730d (7 << 12 | 12 << 6 | 13) |
        // KEY_LEN 12 | ID | DESC { CONCAT { {FIELD_LEN 4} {FIELD_LEN 1} {FIELD_LEN 2} } } | USERDATA
        let nft =
            hex("94 00 00 00 09 0a 01 04 05 00 00 00 00 00 00 00 01 00 00 00 11 00 01 00 65 67 72 65 73 73 5f 67 \
             75 61 72 64 00 00 00 00 0a 00 02 00 64 73 74 34 70 00 00 00 08 00 03 00 00 00 00 84 08 00 04 00 \
             00 00 73 0d 08 00 05 00 00 00 00 0c 08 00 0a 00 00 00 00 02 2c 00 09 80 28 00 02 80 0c 00 01 80 \
             08 00 01 00 00 00 00 04 0c 00 01 80 08 00 01 00 00 00 00 01 0c 00 01 80 08 00 01 00 00 00 00 02 \
             14 00 0d 00 00 04 00 00 00 00 03 08 00 04 0d 00 00 00 01 00");
        let ours = concat4().new_msg(5, 2);
        assert_eq!(ours, without(&nft, &[NFTA_SET_USERDATA]));
        assert_eq!(NftSet::decode(&parse(&nft).unwrap()[0]).unwrap(), concat4());
    }

    #[test]
    fn interval_elements_match_nft() {
        // 10.0.0.0/8 as nft sends it: a closing element at 0.0.0.0 (which we leave out: the
        // kernel needs none), the start 10.0.0.0, and the end 11.0.0.0 flagged INTERVAL_END.
        // NEWSETELEM | TABLE | SET "dst4" | SET_ID | ELEMENTS { {FLAGS 1, KEY 0.0.0.0}
        // {KEY 10.0.0.0} {FLAGS 1, KEY 11.0.0.0} }
        let nft =
            hex("80 00 00 00 0c 0a 01 04 04 00 00 00 00 00 00 00 01 00 00 00 11 00 01 00 65 67 72 65 73 73 5f 67 \
             75 61 72 64 00 00 00 00 09 00 02 00 64 73 74 34 00 00 00 00 08 00 04 00 00 00 00 01 44 00 03 80 \
             18 00 01 80 08 00 03 00 00 00 00 01 0c 00 01 80 08 00 01 00 00 00 00 00 10 00 02 80 0c 00 01 80 \
             08 00 01 00 0a 00 00 00 18 00 03 80 08 00 03 00 00 00 00 01 0c 00 01 80 08 00 01 00 0b 00 00 00");
        let elems = SetElem::decode_all(&parse(&nft).unwrap()[0]).unwrap();
        let end = |key: Vec<u8>| SetElem { key, key_end: None, flags: NFT_SET_ELEM_INTERVAL_END };
        let start = |key: Vec<u8>| SetElem { key, key_end: None, flags: 0 };
        assert_eq!(elems, [end(vec![0, 0, 0, 0]), start(vec![10, 0, 0, 0]), end(vec![11, 0, 0, 0])]);
        let set = interval4();
        let mut msgs = set.elems_msgs(&elems);
        assert_eq!(msgs.len(), 1);
        let ours = msgs.remove(0)(4);
        assert_eq!(ours, without(&nft, &[NFTA_SET_ELEM_LIST_SET_ID]));
    }

    #[test]
    fn concatenated_range_element_matches_nft() {
        // 198.51.100.53 . udp . 53: KEY and KEY_END (the inclusive last key), each field
        // padded to 4 bytes: c6 33 64 35 | 11 00 00 00 | 00 35 00 00
        let nft =
            hex("6c 00 00 00 0c 0a 01 04 06 00 00 00 00 00 00 00 01 00 00 00 11 00 01 00 65 67 72 65 73 73 5f 67 \
             75 61 72 64 00 00 00 00 0a 00 02 00 64 73 74 34 70 00 00 00 08 00 04 00 00 00 00 02 30 00 03 80 \
             2c 00 01 80 14 00 01 80 10 00 01 00 c6 33 64 35 11 00 00 00 00 35 00 00 14 00 0a 80 10 00 01 00 \
             c6 33 64 35 11 00 00 00 00 35 00 00");
        let key = hex("c6 33 64 35 11 00 00 00 00 35 00 00");
        let elem = SetElem { key: key.clone(), key_end: Some(key), flags: 0 };
        assert_eq!(SetElem::decode_all(&parse(&nft).unwrap()[0]).unwrap(), std::slice::from_ref(&elem));
        let set = concat4();
        let ours = set.elems_msgs(&[elem]).remove(0)(6);
        assert_eq!(ours, without(&nft, &[NFTA_SET_ELEM_LIST_SET_ID]));
    }

    fn timeout4() -> NftSet {
        NftSet { name: "dns4".into(), flags: NFT_SET_TIMEOUT, ..interval4() }
    }

    fn timeout6p() -> NftSet {
        // ipv6_addr . inet_proto . inet_service: 8 << 12 | 12 << 6 | 13; a hash set, so nft
        // sends no field lengths (only concatenated intervals need them).
        NftSet { name: "dns6p".into(), flags: NFT_SET_TIMEOUT, key_type: 0x830d, key_len: 24, ..interval4() }
    }

    // The captures: nft 1.0.6 `nft -f` in `unshare -n` (kernel 6.18), strace -e trace=sendmsg
    // -e write=all, of
    //   table inet egress_guard {
    //     set dns4 { type ipv4_addr; flags timeout; }
    //     set dns6p { type ipv6_addr . inet_proto . inet_service; flags timeout; } }
    // then of
    //   add element inet egress_guard dns4 { 198.51.100.7 timeout 90s }
    //   add element inet egress_guard dns6p { 2001:db8::7 . tcp . 443 timeout 1h expires 30m }
    // then of `nft delete element inet egress_guard dns4 { 198.51.100.7 }`.

    #[test]
    fn timeout_sets_match_nft() {
        // NEWSET seq 2 | TABLE | NAME "dns4" | FLAGS be32 0x10 (timeout) | KEY_TYPE 7 | KEY_LEN 4
        // | ID 1 | USERDATA
        let dns4 =
            hex("60 00 00 00 09 0a 01 04 02 00 00 00 00 00 00 00 01 00 00 00 11 00 01 00 65 67 72 65 73 73 5f 67 \
             75 61 72 64 00 00 00 00 09 00 02 00 64 6e 73 34 00 00 00 00 08 00 03 00 00 00 00 10 08 00 04 00 \
             00 00 00 07 08 00 05 00 00 00 00 04 08 00 0a 00 00 00 00 01 0a 00 0d 00 00 04 02 00 00 00 00 00");
        assert_eq!(timeout4().new_msg(2, 1), without(&dns4, &[NFTA_SET_USERDATA]));
        assert_eq!(NftSet::decode(&parse(&dns4).unwrap()[0]).unwrap(), timeout4());
        // NEWSET seq 3 | … NAME "dns6p" | FLAGS 0x10 | KEY_TYPE 0x830d | KEY_LEN 24 | ID 2 | USERDATA
        let dns6p =
            hex("68 00 00 00 09 0a 01 04 03 00 00 00 00 00 00 00 01 00 00 00 11 00 01 00 65 67 72 65 73 73 5f 67 \
             75 61 72 64 00 00 00 00 0a 00 02 00 64 6e 73 36 70 00 00 00 08 00 03 00 00 00 00 10 08 00 04 00 \
             00 00 83 0d 08 00 05 00 00 00 00 18 08 00 0a 00 00 00 00 02 14 00 0d 00 00 04 00 00 00 00 03 08 \
             00 04 0d 00 00 00 01 00");
        assert_eq!(timeout6p().new_msg(3, 2), without(&dns6p, &[NFTA_SET_USERDATA]));
        assert_eq!(NftSet::decode(&parse(&dns6p).unwrap()[0]).unwrap(), timeout6p());
    }

    #[test]
    fn timed_elements_match_nft() {
        // NEWSETELEM seq 1 | TABLE | SET "dns4" | SET_ID | ELEMENTS { {TIMEOUT be64 90000,
        // KEY 198.51.100.7} }
        let dns4 =
            hex("5c 00 00 00 0c 0a 01 04 01 00 00 00 00 00 00 00 01 00 00 00 11 00 01 00 65 67 72 65 73 73 5f 67 \
             75 61 72 64 00 00 00 00 09 00 02 00 64 6e 73 34 00 00 00 00 08 00 04 00 00 00 00 01 20 00 03 80 \
             1c 00 01 80 0c 00 04 00 00 00 00 00 00 01 5f 90 0c 00 01 80 08 00 01 00 c6 33 64 07");
        let elem = TimedElem { key: vec![198, 51, 100, 7], timeout_ms: 90_000, expiration_ms: None };
        assert_eq!(TimedElem::decode_all(&parse(&dns4).unwrap()[0]).unwrap(), std::slice::from_ref(&elem));
        let set = timeout4();
        assert_eq!(set.timed_elems_msgs(&[elem]).remove(0)(1), without(&dns4, &[NFTA_SET_ELEM_LIST_SET_ID]));

        // NEWSETELEM seq 2 | … SET "dns6p" | SET_ID | ELEMENTS { {TIMEOUT 3600000, EXPIRATION
        // 1800000, KEY 2001:db8::7 | 06 000000 | 01bb 0000} }
        let dns6p =
            hex("7c 00 00 00 0c 0a 01 04 02 00 00 00 00 00 00 00 01 00 00 00 11 00 01 00 65 67 72 65 73 73 5f 67 \
             75 61 72 64 00 00 00 00 0a 00 02 00 64 6e 73 36 70 00 00 00 08 00 04 00 00 00 00 02 40 00 03 80 \
             3c 00 01 80 0c 00 04 00 00 00 00 00 00 36 ee 80 0c 00 05 00 00 00 00 00 00 1b 77 40 20 00 01 80 \
             1c 00 01 00 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 07 06 00 00 00 01 bb 00 00");
        let key = hex("20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 07 06 00 00 00 01 bb 00 00");
        let elem = TimedElem { key, timeout_ms: 3_600_000, expiration_ms: Some(1_800_000) };
        assert_eq!(TimedElem::decode_all(&parse(&dns6p).unwrap()[0]).unwrap(), std::slice::from_ref(&elem));
        let set = timeout6p();
        assert_eq!(set.timed_elems_msgs(&[elem]).remove(0)(2), without(&dns6p, &[NFTA_SET_ELEM_LIST_SET_ID]));
    }

    #[test]
    fn deleting_an_element_matches_nft() {
        // DELSETELEM (REQUEST only, no CREATE) seq 1 | TABLE | SET "dns4" | ELEMENTS { {KEY
        // 198.51.100.7} }
        let nft =
            hex("48 00 00 00 0e 0a 01 00 01 00 00 00 00 00 00 00 01 00 00 00 11 00 01 00 65 67 72 65 73 73 5f 67 \
             75 61 72 64 00 00 00 00 09 00 02 00 64 6e 73 34 00 00 00 00 14 00 03 80 10 00 01 80 0c 00 01 80 \
             08 00 01 00 c6 33 64 07");
        assert_eq!(timeout4().del_elems_msgs(&[vec![198, 51, 100, 7]]).remove(0)(1), nft);
    }

    #[test]
    fn dumped_timed_element_gives_its_time_left() {
        // The kernel's answer to `nft list set inet egress_guard dns6p` (GETSETELEM dump), 30 ms
        // after the add above: KEY first, then TIMEOUT 3600000 and EXPIRATION 1799972 (0x1b7724).
        let dump =
            hex("74 00 00 00 0c 0a 02 00 00 00 00 00 63 72 00 00 01 00 00 04 11 00 01 00 65 67 72 65 73 73 5f 67 \
             75 61 72 64 00 00 00 00 0a 00 02 00 64 6e 73 36 70 00 00 00 40 00 03 00 3c 00 01 00 20 00 01 00 \
             1c 00 01 00 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 07 06 00 00 00 01 bb 00 00 0c 00 04 00 \
             00 00 00 00 00 36 ee 80 0c 00 05 00 00 00 00 00 00 1b 77 24");
        let elems = TimedElem::decode_all(&parse(&dump).unwrap()[0]).unwrap();
        let key = hex("20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 07 06 00 00 00 01 bb 00 00");
        assert_eq!(elems, [TimedElem { key, timeout_ms: 3_600_000, expiration_ms: Some(1_799_972) }]);
    }

    #[test]
    fn long_element_lists_are_split_into_messages() {
        let set = interval4();
        let elems: Vec<SetElem> =
            (0..20_000u32).map(|i| SetElem { key: i.to_be_bytes().to_vec(), key_end: None, flags: i & 1 }).collect();
        let msgs: Vec<Vec<u8>> = set.elems_msgs(&elems).into_iter().enumerate().map(|(i, m)| m(i as u32)).collect();
        assert!(msgs.len() > 1);
        let mut back = Vec::new();
        for msg in &msgs {
            let replies = parse(msg).unwrap();
            for attr in Attrs::new(&replies[0].body[NFGENMSG_LEN..]) {
                let attr = attr.unwrap();
                assert!(attr.payload.len() < usize::from(u16::MAX));
            }
            back.extend(SetElem::decode_all(&replies[0]).unwrap());
        }
        assert_eq!(back, elems);
    }
}
