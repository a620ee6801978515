//! Address ranges for interval sets (pure): networks as inclusive `[lo, hi]` ranges, merged so
//! the kernel never sees an overlap (the rbtree and pipapo backends refuse overlaps), turned
//! into set elements, and printed back as nft prints them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::net::Family;
use crate::nft::set::SetElem;
use crate::nft::sys::NFT_SET_ELEM_INTERVAL_END;

/// An inclusive range of addresses of one family, as integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub lo: u128,
    pub hi: u128,
}

pub fn bits(family: Family) -> u32 {
    match family {
        Family::V4 => 32,
        Family::V6 => 128,
    }
}

/// The highest address of a family.
fn max(family: Family) -> u128 {
    u128::MAX >> (128 - bits(family))
}

impl Range {
    pub fn of(net: &IpNet) -> Range {
        let (lo, hi) = match net {
            IpNet::V4(n) => (u32::from(n.network()) as u128, u32::from(n.broadcast()) as u128),
            IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
        };
        Range { lo, hi }
    }

    pub fn contains(&self, other: &Range) -> bool {
        self.lo <= other.lo && other.hi <= self.hi
    }
}

/// The address as the key bytes of a set element (network byte order).
pub fn key(family: Family, addr: u128) -> Vec<u8> {
    let bytes = addr.to_be_bytes();
    bytes[16 - bits(family) as usize / 8..].to_vec()
}

/// Sorted, with overlapping and adjacent ranges joined.
pub fn merge(mut ranges: Vec<Range>) -> Vec<Range> {
    ranges.sort();
    let mut out: Vec<Range> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.lo <= last.hi.saturating_add(1) => last.hi = last.hi.max(r.hi),
            _ => out.push(r),
        }
    }
    out
}

/// `outer` without the parts covered by `holes` (which need not be merged or sorted).
pub fn subtract(outer: Range, holes: &[Range]) -> Vec<Range> {
    let mut out = Vec::new();
    let mut next = outer.lo;
    for hole in merge(holes.to_vec()) {
        if hole.hi < next || hole.lo > outer.hi {
            continue;
        }
        if hole.lo > next {
            out.push(Range { lo: next, hi: hole.lo - 1 });
        }
        match hole.hi.checked_add(1) {
            Some(after) => next = after,
            None => return out,
        }
    }
    if next <= outer.hi {
        out.push(Range { lo: next, hi: outer.hi });
    }
    out
}

/// `(source, destination)` pairs made disjoint: the sources are cut where any of them begins
/// or ends, each piece gets every destination of the sources that cover it (merged), and
/// neighbouring pieces with the same destinations are joined again. A container's own
/// allowances inside its network's (a /32 inside a /16) then become three pieces, none
/// overlapping another, as pipapo sets require.
pub fn disjoint_pairs(entries: &[(Range, Range)]) -> Vec<(Range, Range)> {
    use std::collections::BTreeMap;
    // Sweep over the source axis: entries open at their `lo` and close past their `hi`.
    let mut events: BTreeMap<u128, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (i, (src, _)) in entries.iter().enumerate() {
        events.entry(src.lo).or_default().0.push(i);
        if let Some(past) = src.hi.checked_add(1) {
            events.entry(past).or_default().1.push(i);
        }
    }
    let mut active: BTreeMap<usize, Range> = BTreeMap::new();
    let mut pieces: Vec<(Range, Vec<Range>)> = Vec::new();
    let points: Vec<u128> = events.keys().copied().collect();
    for (n, at) in points.iter().enumerate() {
        let (open, close) = &events[at];
        for i in close {
            active.remove(i);
        }
        for &i in open {
            active.insert(i, entries[i].1);
        }
        if active.is_empty() {
            continue;
        }
        let hi = match points.get(n + 1) {
            Some(next) => next - 1,
            None => entries.iter().map(|(s, _)| s.hi).max().unwrap_or(*at),
        };
        let dests = merge(active.values().copied().collect());
        match pieces.last_mut() {
            Some((last, d)) if last.hi.checked_add(1) == Some(*at) && *d == dests => last.hi = hi,
            _ => pieces.push((Range { lo: *at, hi }, dests)),
        }
    }
    pieces.into_iter().flat_map(|(src, dests)| dests.into_iter().map(move |d| (src, d))).collect()
}

/// Elements of a one-field interval set (rbtree): each range opens with its first address and
/// is closed by the first address past it, flagged INTERVAL_END (none when the range runs to
/// the end of the address space).
pub fn interval_elems(family: Family, ranges: &[Range]) -> Vec<SetElem> {
    let mut elems = Vec::with_capacity(ranges.len() * 2);
    for r in ranges {
        elems.push(SetElem { key: key(family, r.lo), key_end: None, flags: 0 });
        if r.hi < max(family) {
            elems.push(SetElem { key: key(family, r.hi + 1), key_end: None, flags: NFT_SET_ELEM_INTERVAL_END });
        }
    }
    elems
}

/// A range as nft prints it: an address, a network, or `first-last`.
pub fn show(family: Family, r: &Range) -> String {
    let addr = |v: u128| -> IpAddr {
        match family {
            Family::V4 => Ipv4Addr::from(v as u32).into(),
            Family::V6 => Ipv6Addr::from(v).into(),
        }
    };
    let size = r.hi - r.lo;
    let aligned = size.checked_add(1).is_none_or(|n| n.is_power_of_two() && r.lo.is_multiple_of(n));
    match (size, aligned) {
        (0, _) => addr(r.lo).to_string(),
        (_, true) => {
            let prefix = bits(family) - (size.count_ones());
            format!("{}/{prefix}", addr(r.lo))
        }
        _ => format!("{}-{}", addr(r.lo), addr(r.hi)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(net: &str) -> Range {
        Range::of(&net.parse().unwrap())
    }

    #[test]
    fn merging_joins_overlaps_and_neighbours() {
        let merged = merge(vec![r("10.1.0.0/16"), r("192.168.1.0/24"), r("10.0.0.0/8"), r("192.168.0.0/24")]);
        assert_eq!(merged, [r("10.0.0.0/8"), r("192.168.0.0/23")]);
    }

    #[test]
    fn subtracting_nested_networks() {
        assert_eq!(
            subtract(r("10.0.0.0/8"), &[r("10.1.0.0/16")]),
            [
                Range { lo: r("10.0.0.0/8").lo, hi: r("10.1.0.0/16").lo - 1 },
                Range { lo: r("10.1.0.0/16").hi + 1, hi: r("10.0.0.0/8").hi },
            ]
        );
        assert_eq!(subtract(r("10.1.0.0/16"), &[r("10.1.0.0/16")]), []);
        assert_eq!(subtract(r("10.0.0.0/8"), &[r("11.0.0.0/8")]), [r("10.0.0.0/8")]);
    }

    #[test]
    fn interval_elements_close_each_range() {
        let elems = interval_elems(Family::V4, &[r("10.0.0.0/8"), r("255.255.255.0/24")]);
        let keys: Vec<(Vec<u8>, u32)> = elems.into_iter().map(|e| (e.key, e.flags)).collect();
        assert_eq!(keys, [(vec![10, 0, 0, 0], 0), (vec![11, 0, 0, 0], 1), (vec![255, 255, 255, 0], 0)]);
        let v6 = interval_elems(Family::V6, &[r("2001:db8::/32")]);
        assert_eq!(v6[1].key, key(Family::V6, u128::from("2001:db9::".parse::<Ipv6Addr>().unwrap())));
    }

    #[test]
    fn pairs_are_cut_where_a_container_sits_inside_its_network() {
        let net = (r("172.18.0.0/16"), r("198.51.100.0/24"));
        let web = (r("172.18.0.2/32"), r("203.0.113.7/32"));
        let db = (r("172.18.0.3/32"), r("198.51.100.0/25"));
        let pairs = disjoint_pairs(&[web, net, db]);
        let two = r("172.18.0.2/32");
        assert_eq!(
            pairs,
            [
                (Range { lo: r("172.18.0.0/16").lo, hi: two.lo - 1 }, r("198.51.100.0/24")),
                (two, r("198.51.100.0/24")),
                (two, r("203.0.113.7/32")),
                // db's destination is inside the network's: nothing of its own is left.
                (Range { lo: two.lo + 1, hi: r("172.18.0.0/16").hi }, r("198.51.100.0/24")),
            ]
        );
        for (i, (s1, d1)) in pairs.iter().enumerate() {
            for (s2, d2) in &pairs[i + 1..] {
                let overlap = |a: &Range, b: &Range| a.lo <= b.hi && b.lo <= a.hi;
                assert!(!(overlap(s1, s2) && overlap(d1, d2)), "{s1:?} {d1:?} / {s2:?} {d2:?}");
            }
        }
        assert_eq!(disjoint_pairs(&[]), []);
        let everything = Range { lo: 0, hi: u32::MAX as u128 };
        assert_eq!(disjoint_pairs(&[(everything, r("10.0.0.0/8"))]), [(everything, r("10.0.0.0/8"))]);
    }

    #[test]
    fn shown_as_nft_shows_them() {
        assert_eq!(show(Family::V4, &r("10.0.0.0/8")), "10.0.0.0/8");
        assert_eq!(show(Family::V4, &r("198.51.100.53/32")), "198.51.100.53");
        assert_eq!(show(Family::V4, &Range { lo: 0x0a00_0000, hi: 0x0a00_0002 }), "10.0.0.0-10.0.0.2");
        assert_eq!(show(Family::V6, &r("fd00::/8")), "fd00::/8");
        assert_eq!(show(Family::V4, &Range { lo: 0, hi: u32::MAX as u128 }), "0.0.0.0/0");
    }
}
