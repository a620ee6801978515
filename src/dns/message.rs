//! DNS messages (pure), parsed and built with hickory-proto: a client's query read and judged,
//! the refusal or error sent back without asking anyone, the query we send upstream in its
//! place, and the addresses an upstream answer gives along the question's CNAME chain.
//!
//! What goes upstream is rebuilt, not relayed: our own id, the client's one question (as the
//! client spelled it), its RD, CD and AD bits, and an OPT record only if the client sent one (its
//! payload size, capped, and its DO bit; no options). Whatever else a client packs into a query
//! (more records, EDNS options) stays here. What comes back is relayed as the upstream wrote
//! it, with only the id put back, so EDNS, DNSSEC records and the rest reach the client intact.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// The DNS header is 12 bytes.
pub const HEADER_LEN: usize = 12;
/// What a client without EDNS may receive over UDP (RFC 1035).
pub const CLASSIC_UDP: u16 = 512;
/// The largest EDNS payload we ask upstreams for (DNS flag day 2020: no IP fragmentation).
pub const EDNS_PAYLOAD_MAX: u16 = 1232;
/// A CNAME chain longer than this is not followed further (resolvers stop near 8-16).
pub const CHAIN_MAX: usize = 16;
/// A question takes at least 5 bytes on the wire (root name, type, class), a record 11.
const QUESTION_MIN: usize = 5;
const RECORD_MIN: usize = 11;

/// A client's query that we can answer or forward: exactly one question, opcode QUERY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientQuery {
    pub id: u16,
    pub question: Query,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    /// AD in a query: the client wants to know whether the upstream validated (RFC 6840 5.7).
    pub authentic_data: bool,
    /// The client's EDNS payload size and DO bit, if it sent an OPT record.
    pub edns: Option<(u16, bool)>,
}

/// Why a datagram is not a query we forward or refuse by name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Not even a header, or a response (QR set): dropped without an answer, so that no two
    /// servers can be made to answer each other forever.
    #[error("not a DNS query")]
    Ignored,
    /// A query we cannot read, or without exactly one question: FORMERR.
    #[error("query {id}: malformed or not exactly one question")]
    Malformed { id: u16 },
    /// An opcode other than QUERY (NOTIFY, UPDATE, …): NOTIMP.
    #[error("query {id}: opcode {op} is not QUERY")]
    NotQuery { id: u16, op: u8 },
}

impl QueryError {
    /// The answer owed to the client for this error, if any: the header echoed with `rcode`.
    pub fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        let rcode = match self {
            QueryError::Ignored => return None,
            QueryError::Malformed { .. } => ResponseCode::FormErr,
            QueryError::NotQuery { .. } => ResponseCode::NotImp,
        };
        let header = Header::read(&mut BinDecoder::new(query)).ok()?;
        let mut msg = Message::response(header.metadata.id, header.metadata.op_code);
        msg.metadata.recursion_desired = header.metadata.recursion_desired;
        msg.metadata.recursion_available = true;
        msg.metadata.response_code = rcode;
        msg.to_vec().ok()
    }
}

impl ClientQuery {
    /// Reads a query from a client. The header is read first: a datagram claiming more records
    /// than its bytes can hold is malformed before anything is allocated for them.
    pub fn parse(bytes: &[u8]) -> Result<ClientQuery, QueryError> {
        let header = Header::read(&mut BinDecoder::new(bytes)).map_err(|_| QueryError::Ignored)?;
        let meta = header.metadata;
        if meta.message_type != MessageType::Query {
            return Err(QueryError::Ignored);
        }
        let id = meta.id;
        if meta.op_code != OpCode::Query {
            return Err(QueryError::NotQuery { id, op: u8::from(meta.op_code) });
        }
        if header.counts.queries != 1 || !fits(bytes, &header) {
            return Err(QueryError::Malformed { id });
        }
        let msg = Message::from_vec(bytes).map_err(|_| QueryError::Malformed { id })?;
        let question = msg.queries.into_iter().next().ok_or(QueryError::Malformed { id })?;
        Ok(ClientQuery {
            id,
            question,
            recursion_desired: meta.recursion_desired,
            checking_disabled: meta.checking_disabled,
            authentic_data: meta.authentic_data,
            edns: msg.edns.map(|e| (e.max_payload(), e.flags().dnssec_ok)),
        })
    }

    pub fn name(&self) -> &Name {
        self.question.name()
    }

    pub fn qtype(&self) -> RecordType {
        self.question.query_type()
    }

    /// The name's labels as on the wire, for matching against the allow-list.
    pub fn labels(&self) -> impl Iterator<Item = &[u8]> {
        self.question.name().iter()
    }

    /// The name for people and logs: labels joined by dots, bytes outside printable ASCII (and
    /// dots or backslashes inside a label) written as `\DDD`, so that a hostile name cannot
    /// forge log lines.
    pub fn display_name(&self) -> String {
        display_name(self.question.name())
    }

    /// The most a UDP answer to this client may hold.
    pub fn udp_limit(&self) -> usize {
        usize::from(self.edns.map_or(CLASSIC_UDP, |(size, _)| size.max(CLASSIC_UDP)))
    }

    /// An answer from us alone with `rcode` (NXDOMAIN, REFUSED, SERVFAIL): the query's id,
    /// RD bit and question, and an OPT record if the query had one (RFC 6891 6.1.1).
    pub fn answer(&self, rcode: ResponseCode) -> Vec<u8> {
        let mut msg = Message::response(self.id, OpCode::Query);
        msg.metadata.recursion_desired = self.recursion_desired;
        msg.metadata.recursion_available = true;
        msg.metadata.checking_disabled = self.checking_disabled;
        msg.metadata.response_code = rcode;
        msg.add_query(self.question.clone());
        if self.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD_MAX);
            msg.set_edns(edns);
        }
        // A message of one question we parsed always encodes; if it ever did not, the header
        // alone still tells the client no.
        msg.to_vec().unwrap_or_else(|_| header_only(self.id, self.recursion_desired, rcode))
    }

    /// The query we send upstream in the client's place, under our own `id`.
    pub fn upstream(&self, id: u16) -> Vec<u8> {
        let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = self.recursion_desired;
        msg.metadata.checking_disabled = self.checking_disabled;
        msg.metadata.authentic_data = self.authentic_data;
        msg.add_query(self.question.clone());
        if let Some((size, dnssec_ok)) = self.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(size.clamp(CLASSIC_UDP, EDNS_PAYLOAD_MAX));
            edns.set_dnssec_ok(dnssec_ok);
            msg.set_edns(edns);
        }
        msg.to_vec().unwrap_or_default()
    }
}

/// An upstream's answer to one of our queries, checked against it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub rcode: ResponseCode,
    /// TC: the answer did not fit; ask again over TCP.
    pub truncated: bool,
    /// The addresses on the question's CNAME chain, each with the shortest TTL along the chain
    /// up to it. Empty unless the answer is NOERROR.
    pub addresses: Vec<(IpAddr, u32)>,
    message: Message,
}

/// Why an upstream's datagram is not the answer we wait for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("not a DNS message")]
    Malformed,
    #[error("an answer to another query (id or question differs)")]
    Mismatch,
}

impl Answer {
    /// Reads an upstream's answer to `ours` (sent under `id`). Anything that is not an answer to
    /// exactly that question (a late answer, a forgery with a guessed port but the wrong id) is
    /// an error, for the caller to ignore while it waits on.
    pub fn parse(bytes: &[u8], id: u16, ours: &ClientQuery) -> Result<Answer, AnswerError> {
        let header = Header::read(&mut BinDecoder::new(bytes)).map_err(|_| AnswerError::Malformed)?;
        let meta = header.metadata;
        if meta.id != id || meta.message_type != MessageType::Response || header.counts.queries != 1 {
            return Err(AnswerError::Mismatch);
        }
        if !fits(bytes, &header) {
            return Err(AnswerError::Malformed);
        }
        let message = Message::from_vec(bytes).map_err(|_| AnswerError::Malformed)?;
        let question = message.queries.first().ok_or(AnswerError::Mismatch)?;
        let asked = &ours.question;
        if question.name() != asked.name()
            || question.query_type() != asked.query_type()
            || question.query_class() != asked.query_class()
        {
            return Err(AnswerError::Mismatch);
        }
        let rcode = message.metadata.response_code;
        let addresses = if rcode == ResponseCode::NoError { chain_addresses(&message, asked.name()) } else { vec![] };
        Ok(Answer { rcode, truncated: meta.truncation, addresses, message })
    }

    /// The answer as the client gets it over UDP: the upstream's bytes with the client's id,
    /// or, when they exceed what the client can take, a truncated answer (header and question,
    /// TC set) that sends it to TCP.
    pub fn for_client(&self, upstream_bytes: &[u8], client: &ClientQuery, limit: usize) -> Vec<u8> {
        if upstream_bytes.len() <= limit {
            return with_id(upstream_bytes, client.id);
        }
        let mut short = self.message.truncate();
        short.metadata.id = client.id;
        short.to_vec().unwrap_or_else(|_| header_only(client.id, client.recursion_desired, ResponseCode::ServFail))
    }
}

/// `bytes` with its first two bytes (the id) replaced.
pub fn with_id(bytes: &[u8], id: u16) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if let Some(head) = out.get_mut(..2) {
        head.copy_from_slice(&id.to_be_bytes());
    }
    out
}

/// Whether the counts in the header can be true of a message this long.
fn fits(bytes: &[u8], header: &Header) -> bool {
    let c = header.counts;
    let records = usize::from(c.answers) + usize::from(c.authorities) + usize::from(c.additionals);
    HEADER_LEN + usize::from(c.queries) * QUESTION_MIN + records * RECORD_MIN <= bytes.len()
}

/// A, AAAA of class IN owned by `name` or by a name its CNAME chain in the answer section
/// leads to; records of other owners are ignored, so an upstream cannot make us grant an
/// address for a name nobody asked for.
fn chain_addresses(message: &Message, name: &Name) -> Vec<(IpAddr, u32)> {
    let mut owner = name.clone();
    let mut chain_ttl = u32::MAX;
    let mut out: Vec<(IpAddr, u32)> = Vec::new();
    let mut visited: Vec<Name> = Vec::new();
    for _ in 0..CHAIN_MAX {
        let mut next: Option<(Name, u32)> = None;
        for record in message.answers.iter().filter(|r| r.dns_class == DNSClass::IN && r.name == owner) {
            let ttl = record.ttl.min(chain_ttl);
            match &record.data {
                RData::A(a) => out.push((IpAddr::V4(a.0), ttl)),
                RData::AAAA(aaaa) => out.push((IpAddr::V6(aaaa.0), ttl)),
                RData::CNAME(target) if next.is_none() => next = Some((target.0.clone(), ttl)),
                _ => {}
            }
        }
        visited.push(owner);
        match next {
            Some((target, ttl)) if !visited.contains(&target) => {
                owner = target;
                chain_ttl = ttl;
            }
            _ => break,
        }
    }
    // One entry per address, with its longest TTL (the same RRset may come twice).
    out.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    out.dedup_by_key(|(ip, _)| *ip);
    out
}

/// A bare header: id, QR, RD, RA and the rcode; what we send when even that is all we can say.
fn header_only(id: u16, rd: bool, rcode: ResponseCode) -> Vec<u8> {
    let mut msg = Message::response(id, OpCode::Query);
    msg.metadata.recursion_desired = rd;
    msg.metadata.recursion_available = true;
    msg.metadata.response_code = rcode;
    msg.to_vec().unwrap_or_else(|_| {
        let flags: u16 = 0x8000 | if rd { 0x0100 } else { 0 } | 0x0080 | u16::from(rcode.low());
        let mut h = vec![0u8; HEADER_LEN];
        h[..2].copy_from_slice(&id.to_be_bytes());
        h[2..4].copy_from_slice(&flags.to_be_bytes());
        h
    })
}

/// A name for logs, escaped like a zone file (see [`ClientQuery::display_name`]).
pub fn display_name(name: &Name) -> String {
    let mut out = String::new();
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("\\{b:03}"));
            }
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests;
