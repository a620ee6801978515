//! Rules in nft syntax, for people: one printer for every rule we write or read back, in
//! DOCKER-USER (xt matches and targets) and in our own table (native expressions, sets). It
//! reads the expressions themselves, so what it prints is what the kernel holds, including a
//! rule someone changed by hand. The conntrack test is printed as the mask test it is,
//! `ct state & (established | related) == 0`, never as `ct state != established,related`,
//! which in nft means "not both bits at once" and also matches replies.

use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::expr::Expr;
use super::rule::NftRule;
use super::sys::*;
use super::xt::{self, Conntrack};

/// A value loaded into a register and not yet compared.
#[derive(Debug, Clone)]
enum Load {
    Meta(u32),
    /// Network header: family, source (else destination), bytes loaded, mask if any.
    Addr {
        v6: bool,
        src: bool,
        len: u32,
        mask: Option<Vec<u8>>,
    },
    /// Transport header destination port.
    Dport,
    CtState {
        mask: Option<Vec<u8>>,
    },
    /// `fib daddr oifname`: the interface a route to the destination leaves by.
    FibOifname,
    /// A value an `immediate` put in a register (a redirect's port).
    Value(Vec<u8>),
    /// The packet mark, host-endian, maybe through `& MASK ^ XOR`.
    Mark {
        bits: Option<(Vec<u8>, Vec<u8>)>,
    },
    Other(String),
}

/// `add rule FAMILY TABLE CHAIN …` for a rule.
pub fn rule(r: &NftRule) -> String {
    let family = match r.family {
        NFPROTO_IPV4 => "ip",
        NFPROTO_IPV6 => "ip6",
        NFPROTO_INET => "inet",
        _ => "?",
    };
    let mut out = format!("add rule {family} {} {}", r.table, r.chain);
    let words = exprs(r.family, &r.exprs);
    if !words.is_empty() {
        out.push(' ');
        out.push_str(&words);
    }
    if let Some(comment) = r.userdata.as_deref().and_then(udata_comment) {
        let _ = write!(out, " comment {comment:?}");
    }
    out
}

/// The nft words for a rule's expressions (without the `add rule` head).
pub fn exprs(family: u8, exprs: &[Expr]) -> String {
    let mut p = Printer {
        family,
        v6: family == NFPROTO_IPV6,
        words: Vec::new(),
        loads: Vec::new(),
        comment: None,
        skip: false,
    };
    for (i, e) in exprs.iter().enumerate() {
        if std::mem::take(&mut p.skip) {
            continue;
        }
        p.expr(e, &exprs[i + 1..]);
    }
    p.flush();
    if let Some(c) = p.comment.take() {
        p.words.push(format!("comment {c:?}"));
    }
    p.words.join(" ")
}

/// The comment in nft's rule userdata (TLV type 0, NUL-terminated), if any.
fn udata_comment(udata: &[u8]) -> Option<String> {
    let (&ty, rest) = udata.split_first()?;
    let (&len, value) = rest.split_first()?;
    let value = value.get(..len as usize)?;
    (ty == 0).then(|| String::from_utf8_lossy(value.strip_suffix(&[0]).unwrap_or(value)).into_owned())
}

struct Printer {
    family: u8,
    /// The family the rule's headers are read as: the table's, or the last `meta nfproto`.
    v6: bool,
    words: Vec<String>,
    loads: Vec<Load>,
    comment: Option<String>,
    /// The next expression was already printed (the upper end of a range).
    skip: bool,
}

impl Printer {
    fn say(&mut self, w: impl Into<String>) {
        self.words.push(w.into());
    }

    /// Loads that nothing consumed are shown as what they load.
    fn flush(&mut self) {
        for l in std::mem::take(&mut self.loads) {
            let w = self.show_load(&l);
            self.say(w);
        }
    }

    fn expr(&mut self, e: &Expr, rest: &[Expr]) {
        let next = rest.first();
        match e {
            Expr::Meta { key: NFT_META_MARK, .. } => self.loads.push(Load::Mark { bits: None }),
            Expr::Meta { key, .. } => self.loads.push(Load::Meta(*key)),
            Expr::MetaSet { key: NFT_META_MARK, .. } => {
                let value = match self.loads.pop() {
                    Some(Load::Mark { bits: Some((mask, xor)) }) => mark_math(&mask, &xor),
                    Some(l) => self.show_load(&l),
                    None => "?".into(),
                };
                self.say(format!("meta mark set {value}"));
            }
            Expr::MetaSet { key, .. } => {
                self.loads.pop();
                self.say(format!("meta key {key} set"));
            }
            Expr::Payload { base, offset, len, .. } => {
                let load = match (*base, *offset, *len) {
                    (NFT_PAYLOAD_NETWORK_HEADER, o, l) if !self.v6 && (o == 12 || o == 16) && l <= 4 => {
                        Load::Addr { v6: false, src: o == 12, len: l, mask: None }
                    }
                    (NFT_PAYLOAD_NETWORK_HEADER, o, l) if self.v6 && (o == 8 || o == 24) && l <= 16 => {
                        Load::Addr { v6: true, src: o == 8, len: l, mask: None }
                    }
                    (NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2) => Load::Dport,
                    // After `meta l4proto icmp(v6)`, the first byte of the header is the type.
                    (NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1) if matches!(self.loads.last(), Some(Load::Other(p)) if p.starts_with("icmp")) =>
                    {
                        let Some(Load::Other(p)) = self.loads.pop() else { return };
                        Load::Other(format!("{p} type"))
                    }
                    (b, o, l) => Load::Other(format!(
                        "@{},{},{}",
                        ["ll", "nh", "th"].get(b as usize).unwrap_or(&"?"),
                        u64::from(o) * 8,
                        u64::from(l) * 8
                    )),
                };
                self.loads.push(load);
            }
            Expr::Ct { key: NFT_CT_STATE, .. } => self.loads.push(Load::CtState { mask: None }),
            Expr::Ct { key, .. } => self.loads.push(Load::Other(format!("ct key {key}"))),
            Expr::Bitwise { mask, xor, .. } => match self.loads.last_mut() {
                Some(Load::Addr { mask: m, .. }) | Some(Load::CtState { mask: m }) => *m = Some(mask.clone()),
                Some(Load::Mark { bits }) => *bits = Some((mask.clone(), xor.clone())),
                _ => self.say("bitwise"),
            },
            Expr::Cmp { op: NFT_CMP_GTE, data: lo, .. } if matches!(next, Some(Expr::Cmp { op: NFT_CMP_LTE, .. })) => {
                let Some(Expr::Cmp { data: hi, .. }) = next else { return };
                let key = self.loads.pop().map_or_else(|| "?".to_string(), |l| self.show_load(&l));
                self.skip = true;
                self.say(format!("{key} {}-{}", number(lo), number(hi)));
            }
            Expr::Cmp { op, data, .. } => self.cmp(*op, data, rest),
            Expr::Lookup { set, inv, .. } => {
                let keys: Vec<String> = std::mem::take(&mut self.loads).iter().map(|l| self.show_load(l)).collect();
                let neg = if *inv { "!= " } else { "" };
                self.say(format!("{} {neg}@{set}", keys.join(" . ")));
            }
            Expr::Fib { flags: NFTA_FIB_F_DADDR, result: NFT_FIB_RESULT_OIFNAME, .. } => {
                self.loads.push(Load::FibOifname)
            }
            Expr::Fib { .. } => self.loads.push(Load::Other("fib".into())),
            Expr::Immediate { data, .. } => self.loads.push(Load::Value(data.clone())),
            Expr::Redir { .. } => {
                let w = match self.loads.pop() {
                    Some(Load::Value(port)) if port.len() >= 2 => {
                        format!("redirect to :{}", u16::from_be_bytes([port[0], port[1]]))
                    }
                    _ => "redirect".to_string(),
                };
                self.say(w);
            }
            Expr::Counter { .. } => self.say("counter"),
            Expr::Limit { rate, unit, burst, ty: 0, flags: 0 } => {
                let unit = crate::net::Limit { rate: *rate, unit: *unit, burst: *burst }.unit_word();
                self.say(format!("limit rate {rate}/{unit} burst {burst} packets"));
            }
            Expr::Limit { .. } => self.say("limit (bytes or over)"),
            Expr::Verdict { code, chain } => {
                self.flush();
                let w = match (*code, chain) {
                    (NF_ACCEPT, _) => "accept".to_string(),
                    (NF_DROP, _) => "drop".to_string(),
                    (NFT_RETURN, _) => "return".to_string(),
                    (NFT_CONTINUE, _) => "continue".to_string(),
                    (NFT_JUMP, Some(c)) => format!("jump {c}"),
                    (NFT_GOTO, Some(c)) => format!("goto {c}"),
                    (c, _) => format!("verdict {c}"),
                };
                self.say(w);
            }
            Expr::Log { group, prefix } => {
                self.say(match prefix {
                    Some(p) => format!("log prefix {p:?} group {group}"),
                    None => format!("log group {group}"),
                });
            }
            Expr::LogKernel { prefix, level } => {
                let level = if *level == NFT_LOGLEVEL_WARNING { String::new() } else { format!(" level {level}") };
                self.say(match prefix {
                    Some(p) => format!("log prefix {p:?}{level}"),
                    None => format!("log{level}"),
                });
            }
            Expr::Reject { ty, code } => {
                let w = match (*ty, *code) {
                    (NFT_REJECT_TCP_RST, _) => "reject with tcp reset".to_string(),
                    (NFT_REJECT_ICMPX_UNREACH, NFT_REJECT_ICMPX_PORT_UNREACH) => {
                        "reject with icmpx port-unreachable".to_string()
                    }
                    (NFT_REJECT_ICMPX_UNREACH, NFT_REJECT_ICMPX_ADMIN_PROHIBITED) => {
                        "reject with icmpx admin-prohibited".to_string()
                    }
                    (t, c) => format!("reject type {t} code {c}"),
                };
                self.say(w);
            }
            Expr::Match { name, info, .. } => self.xt_match(name, info),
            Expr::Target { name, info, .. } => self.xt_target(name, info),
            Expr::Other { name, .. } => self.say(format!("<{name}>")),
        }
    }

    fn cmp(&mut self, op: u32, data: &[u8], rest: &[Expr]) {
        let next = rest.first();
        let Some(load) = self.loads.pop() else {
            return self.say(format!("cmp {}", hex(data)));
        };
        let neg = match op {
            NFT_CMP_EQ => "",
            NFT_CMP_NEQ => "!= ",
            NFT_CMP_LTE => "<= ",
            NFT_CMP_GTE => ">= ",
            _ => "<op> ",
        };
        let value = match &load {
            Load::Meta(NFT_META_IIFNAME | NFT_META_OIFNAME) | Load::FibOifname => iface_name(data),
            Load::Meta(NFT_META_NFPROTO) => {
                self.v6 = data.first() == Some(&(NFPROTO_IPV6));
                let word = if self.v6 { "ipv6" } else { "ipv4" };
                // nft leaves out the family check it adds before a header read (an address,
                // or `icmpv6 type`, which implies both the family and the protocol).
                let header_read = matches!(next, Some(Expr::Payload { base: NFT_PAYLOAD_NETWORK_HEADER, .. }))
                    || (matches!(next, Some(Expr::Meta { key: NFT_META_L4PROTO, .. }))
                        && icmp_type_follows(rest.get(2..).unwrap_or(&[])));
                let implicit = op == NFT_CMP_EQ && header_read && self.family == NFPROTO_INET;
                if implicit {
                    return;
                }
                word.to_string()
            }
            Load::Meta(NFT_META_L4PROTO) => match data.first() {
                // `-p tcp --dport N` reads as `tcp dport N`: the port comes next.
                Some(6) if op == NFT_CMP_EQ && next_is_dport(next) => {
                    return self.loads.push(Load::Other("tcp".into()))
                }
                Some(17) if op == NFT_CMP_EQ && next_is_dport(next) => {
                    return self.loads.push(Load::Other("udp".into()))
                }
                Some(&n @ (1 | 58)) if op == NFT_CMP_EQ && icmp_type_follows(rest) => {
                    let word = if n == 1 { "icmp" } else { "icmpv6" };
                    return self.loads.push(Load::Other(word.into()));
                }
                Some(&n) => proto_name(n),
                None => "?".into(),
            },
            Load::Addr { v6, len, mask, .. } => prefix(*v6, *len, mask.as_deref(), data),
            Load::Dport if data.len() == 2 => u16::from_be_bytes([data[0], data[1]]).to_string(),
            Load::Mark { .. } => mark_hex(data),
            Load::CtState { mask: Some(mask) } if op == NFT_CMP_EQ && data.iter().all(|b| *b == 0) => {
                let bits = u32::from_ne_bytes(mask.get(..4).and_then(|m| m.try_into().ok()).unwrap_or([0; 4]));
                return self.say(format!("ct state & ({}) == 0", ct_bits(bits)));
            }
            _ => hex(data),
        };
        // `tcp dport 53`: the protocol word was kept aside for the port.
        let key = match (&load, self.loads.last()) {
            (Load::Dport, Some(Load::Other(p))) if p == "tcp" || p == "udp" => {
                let p = p.clone();
                self.loads.pop();
                format!("{p} dport")
            }
            _ => self.show_load(&load),
        };
        // A masked mark reads `meta mark & 0x01000000 == 0x01000000`, as nft prints it.
        let neg = match (&load, op) {
            (Load::Mark { bits: Some(_) }, NFT_CMP_EQ) => "== ",
            _ => neg,
        };
        self.say(format!("{key} {neg}{value}"));
    }

    fn show_load(&self, l: &Load) -> String {
        match l {
            Load::Meta(NFT_META_IIFNAME) => "iifname".into(),
            Load::Meta(NFT_META_OIFNAME) => "oifname".into(),
            Load::Meta(NFT_META_L4PROTO) => "meta l4proto".into(),
            Load::Meta(NFT_META_NFPROTO) => "meta nfproto".into(),
            Load::Meta(k) => format!("meta key {k}"),
            Load::Addr { v6, src, .. } => {
                format!("{} {}", if *v6 { "ip6" } else { "ip" }, if *src { "saddr" } else { "daddr" })
            }
            Load::Dport => "th dport".into(),
            Load::CtState { .. } => "ct state".into(),
            Load::Mark { bits: None } => "meta mark".into(),
            Load::FibOifname => "fib daddr oifname".into(),
            Load::Value(v) => hex(v),
            Load::Mark { bits: Some((mask, xor)) } => mark_math(mask, xor),
            Load::Other(s) => s.clone(),
        }
    }

    fn xt_match(&mut self, name: &str, info: &[u8]) {
        self.flush();
        if name == Conntrack::NAME {
            if let Some(ct) = Conntrack::decode(info) {
                let bits = u32::from(ct.states) & !u32::from(Conntrack::UNTRACKED);
                return self.say(if ct.invert {
                    format!("ct state & ({}) == 0", ct_bits(bits))
                } else {
                    format!("ct state {}", ct_bits(bits).replace(" | ", ","))
                });
            }
        }
        if name == xt::Comment::NAME {
            if let Some(c) = xt::Comment::decode(info) {
                self.comment = Some(c);
                return;
            }
        }
        self.say(format!("xt match {name:?}"));
    }

    fn xt_target(&mut self, name: &str, info: &[u8]) {
        self.flush();
        let icmp = if self.v6 { "icmpv6" } else { "icmp" };
        if name == xt::Reject::NAME {
            let with = xt::Reject::decode(info);
            let w = match (self.v6, with) {
                (false, Some(3)) | (true, Some(4)) => format!("reject with {icmp} type port-unreachable"),
                (false, Some(8)) | (true, Some(1)) => format!("reject with {icmp} type admin-prohibited"),
                (false, Some(7)) | (true, Some(6)) => "reject with tcp reset".into(),
                (_, Some(c)) => format!("reject with {icmp} code {c}"),
                (_, None) => "reject".into(),
            };
            return self.say(w);
        }
        if name == xt::Log::NAME {
            if let Some(log) = xt::Log::decode(info) {
                return self.say(format!("log prefix {:?} level warn", log.prefix));
            }
        }
        self.say(format!("xt target {name:?}"));
    }
}

/// Whether `rest` starts with a load of the transport header's first byte (an ICMP type).
fn icmp_type_follows(rest: &[Expr]) -> bool {
    matches!(rest.first(), Some(Expr::Payload { base: NFT_PAYLOAD_TRANSPORT_HEADER, offset: 0, len: 1, .. }))
}

/// A compared value as a number (big-endian), for ranges.
fn number(data: &[u8]) -> u64 {
    data.iter().fold(0u64, |n, b| n << 8 | u64::from(*b))
}

fn next_is_dport(next: Option<&Expr>) -> bool {
    matches!(next, Some(Expr::Payload { base: NFT_PAYLOAD_TRANSPORT_HEADER, offset: 2, len: 2, .. }))
}

fn proto_name(n: u8) -> String {
    match n {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "ipv6-icmp".into(),
        n => n.to_string(),
    }
}

/// `"docker0"` for an exact name (NUL-terminated or padded), `"br-*"` for a prefix.
fn iface_name(data: &[u8]) -> String {
    match data.iter().position(|b| *b == 0) {
        Some(end) => format!("{:?}", String::from_utf8_lossy(&data[..end])),
        None => format!("\"{}*\"", String::from_utf8_lossy(data).escape_debug()),
    }
}

/// An address prefix from the loaded bytes, the optional mask and the compared value.
fn prefix(v6: bool, len: u32, mask: Option<&[u8]>, data: &[u8]) -> String {
    let full = if v6 { 16 } else { 4 };
    let mut bytes = data.to_vec();
    bytes.resize(full, 0);
    let bits = match mask {
        Some(m) => m.iter().map(|b| b.count_ones()).sum::<u32>(),
        None => len * 8,
    };
    let addr = if v6 {
        let a: [u8; 16] = bytes.try_into().unwrap_or([0; 16]);
        Ipv6Addr::from(a).to_string()
    } else {
        let a: [u8; 4] = bytes.try_into().unwrap_or([0; 4]);
        Ipv4Addr::from(a).to_string()
    };
    if bits == (full as u32) * 8 {
        addr
    } else {
        format!("{addr}/{bits}")
    }
}

/// Conntrack state bits as nft names them, `|`-joined.
fn ct_bits(bits: u32) -> String {
    const NAMES: [(u32, &str); 4] = [(1 << 1, "established"), (1 << 2, "related"), (1, "invalid"), (1 << 3, "new")];
    let names: Vec<&str> = NAMES.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| *n).collect();
    names.join(" | ")
}

/// A host-endian u32 register value as nft prints marks: `0x01000000`.
fn mark_hex(data: &[u8]) -> String {
    match <[u8; 4]>::try_from(data) {
        Ok(b) => format!("0x{:08x}", u32::from_ne_bytes(b)),
        Err(_) => hex(data),
    }
}

/// `meta mark & MASK ^ XOR` as nft reads it: `meta mark | BITS` when the mask keeps all else
/// and the xor sets exactly what it clears, `meta mark & MASK` when nothing is set.
fn mark_math(mask: &[u8], xor: &[u8]) -> String {
    let word = |d: &[u8]| <[u8; 4]>::try_from(d).map(u32::from_ne_bytes).ok();
    match (word(mask), word(xor)) {
        (Some(m), Some(0)) => format!("meta mark & 0x{m:08x}"),
        (Some(m), Some(x)) if m == !x => format!("meta mark | 0x{x:08x}"),
        (Some(m), Some(x)) => format!("meta mark & 0x{m:08x} ^ 0x{x:08x}"),
        _ => format!("meta mark & {} ^ {}", hex(mask), hex(xor)),
    }
}

fn hex(data: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in data {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(op: u32, data: &[u8]) -> Expr {
        Expr::Cmp { sreg: NFT_REG_1, op, data: data.to_vec() }
    }

    #[test]
    fn masked_and_byte_aligned_prefixes() {
        let e = [
            Expr::Payload { dreg: 1, base: NFT_PAYLOAD_NETWORK_HEADER, offset: 12, len: 4 },
            Expr::Bitwise { sreg: 1, dreg: 1, len: 4, mask: vec![0xff, 0xf0, 0, 0], xor: vec![0; 4] },
            cmp(NFT_CMP_EQ, &[0xac, 0x10, 0, 0]),
            Expr::Payload { dreg: 1, base: NFT_PAYLOAD_NETWORK_HEADER, offset: 16, len: 1 },
            cmp(NFT_CMP_NEQ, &[10]),
            Expr::Counter { bytes: 0, packets: 0 },
            Expr::Verdict { code: NFT_RETURN, chain: None },
        ];
        assert_eq!(exprs(NFPROTO_IPV4, &e), "ip saddr 172.16.0.0/12 ip daddr != 10.0.0.0/8 counter return");
    }

    #[test]
    fn ports_read_as_the_protocol_and_interfaces_as_names() {
        let e = [
            Expr::Meta { key: NFT_META_IIFNAME, dreg: 1 },
            cmp(NFT_CMP_EQ, b"br-"),
            Expr::Meta { key: NFT_META_OIFNAME, dreg: 1 },
            cmp(NFT_CMP_NEQ, b"docker0\0"),
            Expr::Meta { key: NFT_META_L4PROTO, dreg: 1 },
            cmp(NFT_CMP_EQ, &[17]),
            Expr::Payload { dreg: 1, base: NFT_PAYLOAD_TRANSPORT_HEADER, offset: 2, len: 2 },
            cmp(NFT_CMP_EQ, &[0, 53]),
            Expr::Verdict { code: NF_ACCEPT, chain: None },
        ];
        assert_eq!(exprs(NFPROTO_IPV4, &e), "iifname \"br-*\" oifname != \"docker0\" udp dport 53 accept");
    }

    #[test]
    fn an_unknown_expression_is_named_not_dropped() {
        let e = [Expr::Other { name: "quota".into(), data: vec![] }, Expr::Verdict { code: NF_DROP, chain: None }];
        assert_eq!(exprs(NFPROTO_IPV4, &e), "<quota> drop");
    }
}
