//! `IptRule` ⇄ nf_tables expressions, in the exact layout iptables-nft 1.8.9 produces for the
//! same `iptables` command (see shared/reference/iptables-nft-wire-format.md §3–4). Decoding
//! accepts only the shapes we encode; anything else reads as `None` (a foreign or hand-made rule).

use std::net::IpAddr;

use ipnet::IpNet;

use super::ipt::{Action, AddrMatch, Family, IfaceMatch, IptRule, Limit, Proto, RejectWith};
use crate::nft::expr::Expr;
use crate::nft::rule::Compat;
use crate::nft::sys::*;
use crate::nft::xt::{self, Conntrack};

/// The expressions and the COMPAT attribute for a rule.
pub fn encode(family: Family, rule: &IptRule) -> (Vec<Expr>, Compat) {
    let mut e = Vec::new();
    if let Some(i) = &rule.in_iface {
        iface(&mut e, NFT_META_IIFNAME, i);
    }
    if let Some(o) = &rule.out_iface {
        iface(&mut e, NFT_META_OIFNAME, o);
    }
    if let Some(p) = rule.proto {
        e.push(Expr::Meta { key: NFT_META_L4PROTO, dreg: NFT_REG_1 });
        e.push(cmp(NFT_CMP_EQ, vec![p.number()]));
    }
    if let Some(a) = &rule.src {
        addr(&mut e, src_offset(family), a);
    }
    if let Some(a) = &rule.dst {
        addr(&mut e, dst_offset(family), a);
    }
    if let Some(port) = rule.dport {
        // `-m tcp/udp --dport` becomes a native transport-header load at offset 2.
        e.push(Expr::Payload { dreg: NFT_REG_1, base: NFT_PAYLOAD_TRANSPORT_HEADER, offset: 2, len: 2 });
        e.push(cmp(NFT_CMP_EQ, port.to_be_bytes().to_vec()));
    }
    if let Some(bit) = rule.mark {
        // `-m mark --mark B/B` is native: meta mark, `& B`, `== B`, the mark host-endian.
        e.push(Expr::Meta { key: NFT_META_MARK, dreg: NFT_REG_1 });
        e.push(Expr::Bitwise {
            sreg: NFT_REG_1,
            dreg: NFT_REG_1,
            len: 4,
            mask: bit.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        });
        e.push(cmp(NFT_CMP_EQ, bit.to_ne_bytes().to_vec()));
    }
    if let Some(ct) = &rule.ctstate {
        e.push(Expr::Match { name: Conntrack::NAME.into(), rev: Conntrack::REV, info: ct.encode() });
    }
    if let Some(l) = &rule.limit {
        e.push(Expr::Limit { rate: l.rate, unit: l.unit, burst: l.burst, ty: 0, flags: 0 });
    }
    if let Some(c) = &rule.comment {
        e.push(Expr::Match { name: xt::Comment::NAME.into(), rev: xt::Comment::REV, info: xt::Comment::encode(c) });
    }
    e.push(Expr::Counter { bytes: 0, packets: 0 });
    e.push(action(family, &rule.action));
    let compat = Compat { proto: rule.proto.map_or(0, |p| p.number() as u32), flags: 0 };
    (e, compat)
}

fn cmp(op: u32, data: Vec<u8>) -> Expr {
    Expr::Cmp { sreg: NFT_REG_1, op, data }
}

fn op(negate: bool) -> u32 {
    if negate {
        NFT_CMP_NEQ
    } else {
        NFT_CMP_EQ
    }
}

/// Exact names are compared with their NUL; `name+` compares the prefix without one.
fn iface(e: &mut Vec<Expr>, key: u32, m: &IfaceMatch) {
    let data = match m.name.strip_suffix('+') {
        Some(prefix) => prefix.as_bytes().to_vec(),
        None => [m.name.as_bytes(), &[0]].concat(),
    };
    e.push(Expr::Meta { key, dreg: NFT_REG_1 });
    e.push(cmp(op(m.negate), data));
}

fn src_offset(family: Family) -> u32 {
    match family {
        Family::V4 => 12,
        Family::V6 => 8,
    }
}

fn dst_offset(family: Family) -> u32 {
    match family {
        Family::V4 => 16,
        Family::V6 => 24,
    }
}

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Byte-aligned prefixes load only their bytes; others load the address and mask it.
fn addr(e: &mut Vec<Expr>, offset: u32, m: &AddrMatch) {
    let net = addr_bytes(m.net.network());
    let plen = m.net.prefix_len() as usize;
    let load =
        |len: usize| Expr::Payload { dreg: NFT_REG_1, base: NFT_PAYLOAD_NETWORK_HEADER, offset, len: len as u32 };
    if plen.is_multiple_of(8) {
        e.push(load(plen / 8));
        e.push(cmp(op(m.negate), net[..plen / 8].to_vec()));
    } else {
        e.push(load(net.len()));
        let mask = addr_bytes(m.net.netmask());
        e.push(Expr::Bitwise {
            sreg: NFT_REG_1,
            dreg: NFT_REG_1,
            len: net.len() as u32,
            mask,
            xor: vec![0; net.len()],
        });
        e.push(cmp(op(m.negate), net));
    }
}

fn action(family: Family, a: &Action) -> Expr {
    let verdict = |code, chain: Option<&String>| Expr::Verdict { code, chain: chain.cloned() };
    match a {
        Action::Accept => verdict(NF_ACCEPT, None),
        Action::Drop => verdict(NF_DROP, None),
        Action::Return => verdict(NFT_RETURN, None),
        Action::Jump(chain) => verdict(NFT_JUMP, Some(chain)),
        Action::Reject(with) => Expr::Target {
            name: xt::Reject::NAME.into(),
            rev: xt::Reject::REV,
            info: xt::Reject::encode(with.code(family)),
        },
        Action::Log { prefix } => Expr::Target {
            name: xt::Log::NAME.into(),
            rev: xt::Log::REV,
            info: xt::Log { level: 4, prefix: prefix.clone() }.encode(),
        },
        Action::Nflog { group, prefix } => Expr::Log { group: *group, prefix: prefix.clone() },
    }
}

/// Reads expressions back into a rule, if they are a shape `encode` produces. The result is
/// checked by re-encoding, so a decoded rule always means exactly what the kernel holds.
pub fn decode(family: Family, exprs: &[Expr]) -> Option<IptRule> {
    let rule = Decoder { family, exprs, at: 0 }.rule()?;
    let (mut again, _) = encode(family, &rule);
    let shape: Vec<Expr> = exprs.iter().map(zero_counter).collect();
    again.iter_mut().for_each(|e| *e = zero_counter(e));
    (again == shape).then_some(rule)
}

fn zero_counter(e: &Expr) -> Expr {
    match e {
        Expr::Counter { .. } => Expr::Counter { bytes: 0, packets: 0 },
        other => other.clone(),
    }
}

struct Decoder<'a> {
    family: Family,
    exprs: &'a [Expr],
    at: usize,
}

impl Decoder<'_> {
    fn next(&mut self) -> Option<&Expr> {
        let e = self.exprs.get(self.at)?;
        self.at += 1;
        Some(e)
    }

    fn cmp(&mut self) -> Option<(bool, Vec<u8>)> {
        match self.next()? {
            Expr::Cmp { sreg: NFT_REG_1, op, data } if *op == NFT_CMP_EQ || *op == NFT_CMP_NEQ => {
                Some((*op == NFT_CMP_NEQ, data.clone()))
            }
            _ => None,
        }
    }

    fn rule(mut self) -> Option<IptRule> {
        let mut r = IptRule::new(Action::Return);
        loop {
            match self.next()?.clone() {
                Expr::Meta { key, .. } if key == NFT_META_IIFNAME => r.in_iface = Some(self.iface()?),
                Expr::Meta { key, .. } if key == NFT_META_OIFNAME => r.out_iface = Some(self.iface()?),
                Expr::Meta { key, .. } if key == NFT_META_L4PROTO => {
                    let (_, data) = self.cmp()?;
                    r.proto = Some(Proto::from_number(*data.first()?)?);
                }
                Expr::Payload { base, offset, len, .. } if base == NFT_PAYLOAD_NETWORK_HEADER => {
                    let m = self.addr(len)?;
                    match offset {
                        o if o == src_offset(self.family) => r.src = Some(m),
                        o if o == dst_offset(self.family) => r.dst = Some(m),
                        _ => return None,
                    }
                }
                Expr::Payload { base, offset: 2, len: 2, .. } if base == NFT_PAYLOAD_TRANSPORT_HEADER => {
                    let (_, data) = self.cmp()?;
                    r.dport = Some(u16::from_be_bytes(data.try_into().ok()?));
                }
                Expr::Meta { key, .. } if key == NFT_META_MARK => r.mark = Some(self.mark()?),
                Expr::Match { name, info, .. } if name == Conntrack::NAME => {
                    r.ctstate = Some(Conntrack::decode(&info)?)
                }
                Expr::Match { name, info, .. } if name == xt::Comment::NAME => {
                    r.comment = Some(xt::Comment::decode(&info)?)
                }
                Expr::Limit { rate, unit, burst, .. } => r.limit = Some(Limit { rate, unit, burst }),
                Expr::Counter { .. } => {
                    r.action = self.action()?;
                    return (self.at == self.exprs.len()).then_some(r);
                }
                _ => return None,
            }
        }
    }

    /// `& BIT == BIT`; other masks are not ours (re-encoding checks the rest).
    fn mark(&mut self) -> Option<u32> {
        let Expr::Bitwise { mask, .. } = self.next()? else { return None };
        let bit = u32::from_ne_bytes(mask.as_slice().try_into().ok()?);
        self.cmp()?;
        Some(bit)
    }

    fn iface(&mut self) -> Option<IfaceMatch> {
        let (negate, data) = self.cmp()?;
        let name = match data.strip_suffix(&[0]) {
            Some(exact) => String::from_utf8(exact.to_vec()).ok()?,
            None => format!("{}+", String::from_utf8(data).ok()?),
        };
        Some(IfaceMatch { name, negate })
    }

    fn addr(&mut self, len: u32) -> Option<AddrMatch> {
        let full = match self.family {
            Family::V4 => 4,
            Family::V6 => 16,
        };
        let (plen, (negate, data)) = match self.exprs.get(self.at)? {
            Expr::Bitwise { mask, .. } => {
                let plen = mask.iter().map(|b| b.count_ones()).sum::<u32>() as u8;
                self.at += 1;
                (plen, self.cmp()?)
            }
            _ => (u8::try_from(len).ok()?.checked_mul(8)?, self.cmp()?),
        };
        let mut bytes = data;
        bytes.resize(full, 0);
        let ip = match self.family {
            Family::V4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
            Family::V6 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        };
        Some(AddrMatch { net: IpNet::new(ip, plen).ok()?, negate })
    }

    fn action(&mut self) -> Option<Action> {
        Some(match self.next()?.clone() {
            Expr::Verdict { code: NF_ACCEPT, chain: None } => Action::Accept,
            Expr::Verdict { code: NF_DROP, chain: None } => Action::Drop,
            Expr::Verdict { code: NFT_RETURN, chain: None } => Action::Return,
            Expr::Verdict { code: NFT_JUMP, chain: Some(c) } => Action::Jump(c),
            Expr::Target { name, info, .. } if name == xt::Reject::NAME => {
                Action::Reject(RejectWith::from_code(xt::Reject::decode(&info)?, self.family)?)
            }
            Expr::Target { name, info, .. } if name == xt::Log::NAME => {
                Action::Log { prefix: xt::Log::decode(&info)?.prefix }
            }
            Expr::Log { group, prefix } => Action::Nflog { group, prefix },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(iface: &str) -> IptRule {
        IptRule {
            in_iface: Some(IfaceMatch { name: iface.into(), negate: false }),
            out_iface: Some(IfaceMatch { name: iface.into(), negate: true }),
            ctstate: Some(Conntrack { states: Conntrack::RELATED | Conntrack::ESTABLISHED, invert: true }),
            comment: Some("egress-guard".into()),
            ..IptRule::new(Action::Reject(RejectWith::PortUnreachable))
        }
    }

    #[test]
    fn default_rule_prints_like_iptables() {
        // `iptables -S DOCKER-USER` after `iptables -I DOCKER-USER -i br-+ ! -o br-+ -m conntrack
        // ! --ctstate RELATED,ESTABLISHED -m comment --comment egress-guard -j REJECT`
        assert_eq!(
            guard("br-+").to_iptables(Family::V4, "DOCKER-USER"),
            "-A DOCKER-USER -i br-+ ! -o br-+ -m conntrack ! --ctstate RELATED,ESTABLISHED \
             -m comment --comment egress-guard -j REJECT --reject-with icmp-port-unreachable"
        );
        assert!(guard("docker0").to_iptables(Family::V6, "DOCKER-USER").ends_with("icmp6-port-unreachable"));
    }

    #[test]
    fn wildcard_compares_prefix_without_nul() {
        let (e, _) = encode(Family::V4, &guard("br-+"));
        assert_eq!(e[1], Expr::Cmp { sreg: 1, op: NFT_CMP_EQ, data: b"br-".to_vec() });
        assert_eq!(e[3], Expr::Cmp { sreg: 1, op: NFT_CMP_NEQ, data: b"br-".to_vec() });
        let (e, _) = encode(Family::V4, &guard("docker0"));
        assert_eq!(e[1], Expr::Cmp { sreg: 1, op: NFT_CMP_EQ, data: b"docker0\0".to_vec() });
    }

    #[test]
    fn unaligned_prefix_is_masked_aligned_is_not() {
        // reference §3: -s 172.16.0.0/12 → payload nh+12 len 4, bitwise ff f0 00 00, cmp ac 10 00 00
        let mut r = IptRule::new(Action::Return);
        r.src = Some(AddrMatch { net: "172.16.0.0/12".parse().unwrap(), negate: false });
        let (e, _) = encode(Family::V4, &r);
        assert_eq!(e[0], Expr::Payload { dreg: 1, base: 1, offset: 12, len: 4 });
        assert_eq!(e[1], Expr::Bitwise { sreg: 1, dreg: 1, len: 4, mask: vec![0xff, 0xf0, 0, 0], xor: vec![0; 4] });
        assert_eq!(e[2], Expr::Cmp { sreg: 1, op: 0, data: vec![0xac, 0x10, 0, 0] });
        // -d fd00::/8 (ip6) → payload nh+24 len 1, cmp fd
        let mut r = IptRule::new(Action::Return);
        r.dst = Some(AddrMatch { net: "fd00::/8".parse().unwrap(), negate: true });
        let (e, _) = encode(Family::V6, &r);
        assert_eq!(e[0], Expr::Payload { dreg: 1, base: 1, offset: 24, len: 1 });
        assert_eq!(e[1], Expr::Cmp { sreg: 1, op: NFT_CMP_NEQ, data: vec![0xfd] });
    }

    #[test]
    fn rules_decode_to_what_was_encoded() {
        let mut dns = IptRule::new(Action::Return);
        dns.proto = Some(Proto::Udp);
        dns.dst = Some(AddrMatch { net: "10.0.0.53/32".parse().unwrap(), negate: false });
        dns.dport = Some(53);
        dns.comment = Some("egress-guard".into());
        let mut log = guard("docker0");
        log.limit = Some(Limit { rate: 10, unit: 60, burst: 5 });
        log.action = Action::Log { prefix: "egress: ".into() };
        let mut nflog = guard("br-+");
        nflog.action = Action::Nflog { group: 5, prefix: None };
        let mut marked = guard("docker0");
        marked.ctstate = None;
        marked.mark = Some(0x0100_0000);
        marked.action = Action::Return;
        let mut reset = guard("br-+");
        reset.proto = Some(Proto::Tcp);
        reset.action = Action::Reject(RejectWith::TcpReset);
        for family in Family::ALL {
            for rule in [guard("docker0"), guard("br-+"), log.clone(), nflog.clone(), reset.clone(), marked.clone()] {
                let (e, _) = encode(family, &rule);
                assert_eq!(decode(family, &e), Some(rule), "{family:?}");
            }
        }
        let (e, compat) = encode(Family::V4, &dns);
        assert_eq!(decode(Family::V4, &e), Some(dns));
        assert_eq!(compat, Compat { proto: 17, flags: 0 });
    }

    #[test]
    fn foreign_shapes_do_not_decode() {
        let (mut e, _) = encode(Family::V4, &guard("docker0"));
        e.insert(0, Expr::Other { name: "ct".into(), data: vec![] });
        assert_eq!(decode(Family::V4, &e), None);
        let (mut e, _) = encode(Family::V4, &guard("docker0"));
        e.pop(); // no verdict
        assert_eq!(decode(Family::V4, &e), None);
    }
}
