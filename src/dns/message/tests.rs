//! Tests of the DNS message layer: captured dig queries and dnsmasq answers, answers built to
//! lie, and random, truncated and mutated bytes through every parser.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::Record;
use proptest::prelude::*;

use super::*;

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace().map(|b| u8::from_str_radix(b, 16).expect("hex byte")).collect()
}

// Captured in a namespace: dig 9.18 (Debian 12) queries relayed to dnsmasq 2.89 run as
//   dnsmasq --no-resolv --no-hosts --host-record=cdn.example.test,198.51.100.80,2001:db8::80,30
//     --host-record=pypi.test,198.51.100.81,60 --cname=files.pypi.test,alias.cdn.test,300
//     --cname=alias.cdn.test,cdn.example.test,120

/// `dig +noedns pypi.test A`: id 0x8710, RD and AD, one question.
const Q_PYPI: &str = "87 10 01 20 00 01 00 00 00 00 00 00 04 70 79 70 69 04 74 65 73 74 00 00 01 00 01";
/// dnsmasq's answer: pypi.test A 198.51.100.81 TTL 60 (the owner a pointer to the question).
const A_PYPI: &str = "87 10 85 80 00 01 00 01 00 00 00 00 04 70 79 70 69 04 74 65 73 74 00 00 01 00 01 c0 0c 00 \
                      01 00 01 00 00 00 3c 00 04 c6 33 64 51";
/// `dig files.pypi.test AAAA`: with EDNS (payload 1232) and a cookie option.
const Q_FILES6: &str = "2c c9 01 20 00 01 00 00 00 00 00 01 05 66 69 6c 65 73 04 70 79 70 69 04 74 65 73 74 00 00 \
                        1c 00 01 00 00 29 04 d0 00 00 00 00 00 0c 00 0a 00 08 84 c2 55 41 66 0a f5 61";
/// files.pypi.test CNAME alias.cdn.test (300) CNAME cdn.example.test (120) AAAA 2001:db8::80 (30).
const A_FILES6: &str = "2c c9 85 80 00 01 00 03 00 00 00 01 05 66 69 6c 65 73 04 70 79 70 69 04 74 65 73 74 00 00 \
                        1c 00 01 c0 0c 00 05 00 01 00 00 01 2c 00 10 05 61 6c 69 61 73 03 63 64 6e 04 74 65 73 74 \
                        00 c0 2d 00 05 00 01 00 00 00 78 00 12 03 63 64 6e 07 65 78 61 6d 70 6c 65 04 74 65 73 74 \
                        00 c0 49 00 1c 00 01 00 00 00 1e 00 10 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 80 00 \
                        00 29 04 d0 00 00 00 00 00 00";
/// `dig nothere.test A` and dnsmasq's REFUSED (it serves no such zone).
const Q_NOTHERE: &str = "29 6e 01 20 00 01 00 00 00 00 00 01 07 6e 6f 74 68 65 72 65 04 74 65 73 74 00 00 01 00 01 \
                         00 00 29 04 d0 00 00 00 00 00 0c 00 0a 00 08 d0 67 5a 95 3a 58 d1 24";
const A_NOTHERE: &str = "29 6e 81 85 00 01 00 00 00 00 00 01 07 6e 6f 74 68 65 72 65 04 74 65 73 74 00 00 01 00 01 \
                         00 00 29 04 d0 00 00 00 00 00 06 00 0f 00 02 00 0e";

fn query(text: &str) -> ClientQuery {
    ClientQuery::parse(&hex(text)).expect("a query")
}

#[test]
fn reads_digs_queries() {
    let q = query(Q_PYPI);
    assert_eq!((q.id, q.display_name(), q.qtype()), (0x8710, "pypi.test".to_string(), RecordType::A));
    assert_eq!(q.labels().collect::<Vec<_>>(), [b"pypi".as_slice(), b"test"]);
    assert_eq!((q.recursion_desired, q.edns, q.udp_limit()), (true, None, 512));
    let q = query(Q_FILES6);
    assert_eq!(
        (q.display_name(), q.qtype(), q.edns, q.udp_limit()),
        ("files.pypi.test".into(), RecordType::AAAA, Some((1232, false)), 1232)
    );
}

#[test]
fn the_upstream_query_keeps_the_question_and_drops_the_rest() {
    // dig's query with its cookie option, re-read after we rebuilt it: same question, our id,
    // RD, an OPT record with the payload size and no options.
    let q = query(Q_FILES6);
    let ours = q.upstream(0x4242);
    let msg = Message::from_vec(&ours).unwrap();
    assert_eq!(msg.metadata.id, 0x4242);
    assert_eq!(msg.queries, std::slice::from_ref(&q.question));
    assert!(msg.metadata.recursion_desired && msg.answers.is_empty() && msg.additionals.is_empty());
    let edns = msg.edns.expect("OPT");
    assert_eq!((edns.max_payload(), edns.options().as_ref().len()), (1232, 0));
    // Without EDNS from the client, none from us: byte for byte what dig sent, but for the id.
    let q = query(Q_PYPI);
    assert_eq!(q.upstream(0x8710), hex(Q_PYPI));
}

#[test]
fn relays_dnsmasqs_answer_with_the_clients_id() {
    let q = query(Q_PYPI);
    let bytes = with_id(&hex(A_PYPI), 0x1111);
    let answer = Answer::parse(&bytes, 0x1111, &q).unwrap();
    assert_eq!((answer.rcode, answer.truncated), (ResponseCode::NoError, false));
    assert_eq!(answer.addresses, [(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 81)), 60)]);
    assert_eq!(answer.for_client(&bytes, &q, q.udp_limit()), hex(A_PYPI));
}

#[test]
fn follows_the_cname_chain_with_the_shortest_ttl() {
    let q = query(Q_FILES6);
    let answer = Answer::parse(&hex(A_FILES6), 0x2cc9, &q).unwrap();
    assert_eq!(answer.addresses, [(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x80)), 30)]);
}

#[test]
fn refused_upstream_grants_nothing() {
    let q = query(Q_NOTHERE);
    let answer = Answer::parse(&hex(A_NOTHERE), 0x296e, &q).unwrap();
    assert_eq!((answer.rcode, answer.addresses.len()), (ResponseCode::Refused, 0));
}

#[test]
fn answers_to_other_queries_are_not_taken() {
    let q = query(Q_PYPI);
    assert_eq!(Answer::parse(&hex(A_PYPI), 0x8711, &q).unwrap_err(), AnswerError::Mismatch, "wrong id");
    let other = query(Q_FILES6);
    assert_eq!(Answer::parse(&hex(A_PYPI), 0x8710, &other).unwrap_err(), AnswerError::Mismatch, "wrong question");
    assert_eq!(Answer::parse(&hex(Q_PYPI), 0x8710, &q).unwrap_err(), AnswerError::Mismatch, "a query, not an answer");
    // Same name in another case is the same question (some resolvers echo 0x20-randomised case).
    let mut upper = hex(A_PYPI);
    upper[13] = b'P';
    assert!(Answer::parse(&upper, 0x8710, &q).is_ok());
}

/// A NOERROR answer to `q` under `id` with these records.
fn answer_with(q: &ClientQuery, id: u16, records: Vec<Record>) -> Vec<u8> {
    let mut msg = Message::response(id, OpCode::Query);
    msg.add_query(q.question.clone());
    msg.add_answers(records);
    msg.to_vec().unwrap()
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

#[test]
fn records_of_names_off_the_chain_are_ignored() {
    let q = query(Q_PYPI);
    let a = |owner: &str, ip: [u8; 4], ttl| Record::from_rdata(name(owner), ttl, RData::A(A::from(Ipv4Addr::from(ip))));
    let records = vec![
        a("evil.test.", [203, 0, 113, 66], 600),
        Record::from_rdata(name("other.test."), 600, RData::CNAME(CNAME(name("pypi.test.")))),
        a("pypi.test.", [198, 51, 100, 81], 60),
        Record::from_rdata(name("pypi.test."), 600, RData::AAAA(AAAA::from(Ipv6Addr::LOCALHOST))),
    ];
    let answer = Answer::parse(&answer_with(&q, 9, records), 9, &q).unwrap();
    assert_eq!(
        answer.addresses,
        [(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 81)), 60), (IpAddr::V6(Ipv6Addr::LOCALHOST), 600)]
    );
    // Addresses in the authority and additional sections are never taken either.
    let mut msg = Message::response(10, OpCode::Query);
    msg.add_query(q.question.clone());
    msg.add_additional(a("pypi.test.", [203, 0, 113, 1], 60));
    msg.add_authority(a("pypi.test.", [203, 0, 113, 2], 60));
    let answer = Answer::parse(&msg.to_vec().unwrap(), 10, &q).unwrap();
    assert!(answer.addresses.is_empty());
}

#[test]
fn cname_loops_and_long_chains_end() {
    let q = query(Q_PYPI);
    let cname = |from: &str, to: &str| Record::from_rdata(name(from), 300, RData::CNAME(CNAME(name(to))));
    let looped = vec![cname("pypi.test.", "a.test."), cname("a.test.", "pypi.test.")];
    assert!(Answer::parse(&answer_with(&q, 1, looped), 1, &q).unwrap().addresses.is_empty());
    // A chain of 40 names, an address at its end: past CHAIN_MAX it is not followed.
    let mut records: Vec<Record> =
        (0..40).map(|i| cname(&format!("n{i}.test."), &format!("n{}.test.", i + 1))).collect();
    records.push(cname("pypi.test.", "n0.test."));
    records.push(Record::from_rdata(name("n40.test."), 300, RData::A(A::new(198, 51, 100, 9))));
    assert!(Answer::parse(&answer_with(&q, 2, records), 2, &q).unwrap().addresses.is_empty());
    // A short chain through the same names works.
    let records = vec![
        cname("pypi.test.", "n0.test."),
        cname("n0.test.", "n1.test."),
        Record::from_rdata(name("n1.test."), 5, RData::A(A::new(198, 51, 100, 9))),
    ];
    let addresses = Answer::parse(&answer_with(&q, 3, records), 3, &q).unwrap().addresses;
    assert_eq!(addresses, [(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9)), 5)]);
}

#[test]
fn refusals_echo_id_and_question() {
    let q = query(Q_NOTHERE);
    let bytes = q.answer(ResponseCode::NXDomain);
    let msg = Message::from_vec(&bytes).unwrap();
    assert_eq!(
        (msg.metadata.id, msg.metadata.message_type, msg.metadata.response_code),
        (0x296e, MessageType::Response, ResponseCode::NXDomain)
    );
    assert_eq!(msg.queries, std::slice::from_ref(&q.question));
    assert!(msg.edns.is_some(), "the query had an OPT record, so the answer has one");
    let q = query(Q_PYPI);
    let msg = Message::from_vec(&q.answer(ResponseCode::Refused)).unwrap();
    assert_eq!(
        (msg.metadata.response_code, msg.edns.is_none(), msg.metadata.recursion_desired),
        (ResponseCode::Refused, true, true)
    );
}

#[test]
fn queries_we_do_not_serve_get_formerr_notimp_or_nothing() {
    assert_eq!(ClientQuery::parse(&hex(A_PYPI)), Err(QueryError::Ignored), "a response is never answered");
    assert_eq!(ClientQuery::parse(&[0x12, 0x34, 1]), Err(QueryError::Ignored));
    // No question at all: FORMERR with the id.
    let mut empty = hex(Q_PYPI)[..12].to_vec();
    empty[5] = 0;
    let err = ClientQuery::parse(&empty).unwrap_err();
    assert_eq!(err, QueryError::Malformed { id: 0x8710 });
    let reply = Message::from_vec(&err.answer(&empty).unwrap()).unwrap();
    assert_eq!((reply.metadata.id, reply.metadata.response_code), (0x8710, ResponseCode::FormErr));
    // Two questions: FORMERR.
    let mut two = hex(Q_PYPI);
    two[5] = 2;
    two.extend_from_slice(&hex(Q_PYPI)[12..]);
    assert_eq!(ClientQuery::parse(&two), Err(QueryError::Malformed { id: 0x8710 }));
    // A header claiming 65535 answers in 27 bytes is malformed before anything is read.
    let mut claims = hex(Q_PYPI);
    claims[6] = 0xff;
    claims[7] = 0xff;
    assert_eq!(ClientQuery::parse(&claims), Err(QueryError::Malformed { id: 0x8710 }));
    // NOTIFY (opcode 4): NOTIMP.
    let mut notify = hex(Q_PYPI);
    notify[2] = 4 << 3;
    let err = ClientQuery::parse(&notify).unwrap_err();
    assert_eq!(err, QueryError::NotQuery { id: 0x8710, op: 4 });
    let reply = Message::from_vec(&err.answer(&notify).unwrap()).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
}

#[test]
fn too_big_for_the_client_is_truncated() {
    let q = query(Q_PYPI);
    let records: Vec<Record> =
        (0..60).map(|i| Record::from_rdata(name("pypi.test."), 60, RData::A(A::new(198, 51, 100, i)))).collect();
    let bytes = answer_with(&q, 7, records);
    assert!(bytes.len() > 512);
    let answer = Answer::parse(&bytes, 7, &q).unwrap();
    assert_eq!(answer.addresses.len(), 60);
    let short = answer.for_client(&bytes, &q, q.udp_limit());
    assert!(short.len() <= 512);
    let msg = Message::from_vec(&short).unwrap();
    assert!(msg.metadata.truncation && msg.answers.is_empty());
    assert_eq!((msg.metadata.id, &msg.queries[..]), (0x8710, std::slice::from_ref(&q.question)));
}

#[test]
fn hostile_names_are_escaped_for_logs() {
    let mut bytes = hex(Q_PYPI);
    // The first label "pypi" becomes "p\ni." : a newline and a dot inside one label.
    bytes[13..17].copy_from_slice(b"p\ni.");
    let q = ClientQuery::parse(&bytes).unwrap();
    assert_eq!(q.display_name(), "p\\010i\\046.test");
}

/// Every parser, on the same bytes: none may panic.
fn parse_everything(bytes: &[u8]) {
    let parsed = ClientQuery::parse(bytes);
    if let Err(e) = &parsed {
        let _ = e.answer(bytes);
    }
    let q = parsed.unwrap_or_else(|_| query(Q_PYPI));
    let _ = q.display_name();
    let _ = q.answer(ResponseCode::NXDomain);
    let _ = q.upstream(1);
    let id = bytes.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    for ours in [&q, &query(Q_PYPI), &query(Q_FILES6)] {
        if let Ok(answer) = Answer::parse(bytes, id, ours) {
            let _ = answer.for_client(bytes, ours, 512);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        parse_everything(&bytes);
    }

    #[test]
    fn truncated_captures_never_panic(which in 0usize..6, cut in 0usize..200) {
        let capture = hex([Q_PYPI, A_PYPI, Q_FILES6, A_FILES6, Q_NOTHERE, A_NOTHERE][which]);
        let cut = cut.min(capture.len());
        parse_everything(&capture[..cut]);
    }

    #[test]
    fn mutated_captures_never_panic(
        which in 0usize..6,
        edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..8),
    ) {
        let mut capture = hex([Q_PYPI, A_PYPI, Q_FILES6, A_FILES6, Q_NOTHERE, A_NOTHERE][which]);
        for (at, byte) in edits {
            let at = usize::from(at) % capture.len();
            capture[at] = byte;
        }
        parse_everything(&capture);
    }

    #[test]
    fn answers_never_grant_outside_the_answer_section_chain(
        addrs in proptest::collection::vec((any::<[u8; 4]>(), 0u8..3, any::<u32>()), 0..20),
    ) {
        // Records owned by the question's name, by a name it CNAMEs to, or by a stranger:
        // only the first two kinds may come out.
        let q = query(Q_PYPI);
        let owners = ["pypi.test.", "cdn.test.", "stranger.test."];
        let mut records = vec![Record::from_rdata(name("pypi.test."), 100, RData::CNAME(CNAME(name("cdn.test."))))];
        for (ip, owner, ttl) in &addrs {
            records.push(Record::from_rdata(name(owners[usize::from(*owner)]), *ttl, RData::A(A::from(Ipv4Addr::from(*ip)))));
        }
        let answer = Answer::parse(&answer_with(&q, 5, records), 5, &q).unwrap();
        for (ip, ttl) in &answer.addresses {
            let from = addrs.iter().filter(|(a, o, _)| IpAddr::V4(Ipv4Addr::from(*a)) == *ip && *o < 2);
            prop_assert!(from.clone().next().is_some(), "{} came from nowhere on the chain", ip);
            // TTL: at most the record's and at most the CNAME's 100 for names behind it.
            let mut ttls = from.map(|(_, o, t)| if *o == 1 { (*t).min(100) } else { *t });
            prop_assert!(ttls.any(|t| t == *ttl), "{} has a TTL no record on the chain gave", ip);
        }
    }
}
