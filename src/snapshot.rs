//! What a change can be taken back to: everything of ours in every place the backends write,
//! as the kernel held it — our rules with their exact expressions and their place among the
//! rules of others, our table with its chains, sets and elements. Backends take snapshots and
//! restore them (`Backend::snapshot`, `Backend::restore`); this file holds the types, which are
//! kept on disk as JSON (serde), and nothing here does I/O.

use serde::{Deserialize, Serialize};

use crate::net::Family;
use crate::nft::msg;
use crate::nft::rule::{NftRule, Position};
use crate::nft::NlError;

/// The format of snapshot files; another number is refused, never guessed at.
pub const VERSION: u32 = 1;

/// Every place of ours at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub version: u32,
    /// Seconds since the epoch when it was taken.
    pub taken: u64,
    pub places: Vec<PlaceSnapshot>,
}

/// One place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PlaceSnapshot {
    /// A family's DOCKER-USER: its rules in order, ours in full, others by handle (only to
    /// know where ours stood among them).
    DockerUser { family: Family, exists: bool, chain: Vec<ChainItem> },
    /// Our table: whether it existed, and if so all of it.
    Table { name: String, exists: bool, chains: Vec<ChainSnapshot>, sets: Vec<SetSnapshot> },
}

/// A rule of a chain we share with others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum ChainItem {
    /// One of ours, as its NEWRULE message (hex).
    Ours { rule: String },
    /// Someone else's, by kernel handle.
    Foreign { handle: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSnapshot {
    pub name: String,
    pub hook: u32,
    pub priority: i32,
    /// NEWRULE messages (hex), in order.
    pub rules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSnapshot {
    pub name: String,
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    pub fields: Vec<u32>,
    /// Elements: key, key end (concatenated intervals) and flags, keys in hex.
    pub elems: Vec<(String, Option<String>, u32)>,
}

/// A rule as it goes into a snapshot: its NEWRULE message, in hex.
pub fn rule_to_hex(rule: &NftRule) -> String {
    hex(&rule.new_msg(0, Position::End))
}

/// A rule back from a snapshot.
pub fn rule_from_hex(text: &str) -> Result<NftRule, NlError> {
    let bytes = unhex(text).ok_or(NlError::Malformed("a snapshot's rule is not hex"))?;
    let msgs = msg::parse(&bytes)?;
    let first = msgs.first().ok_or(NlError::Malformed("a snapshot's rule is empty"))?;
    NftRule::decode(first)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// Where each rule of ours goes back: before the first rule of someone else's that followed it
/// and is still there (`present`), else at the end; in snapshot order, so runs of ours sent
/// before the same rule keep their order.
pub fn positions(chain: &[ChainItem], present: &dyn Fn(u64) -> bool) -> Vec<(usize, Position)> {
    let mut out = Vec::new();
    for (i, item) in chain.iter().enumerate() {
        if let ChainItem::Ours { .. } = item {
            let next = chain[i..].iter().find_map(|later| match later {
                ChainItem::Foreign { handle } if present(*handle) => Some(*handle),
                _ => None,
            });
            out.push((i, next.map_or(Position::End, Position::Before)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::expr::Expr;

    #[test]
    fn a_rule_survives_the_trip_through_hex() {
        let rule = NftRule {
            family: 2,
            table: "filter".into(),
            chain: "DOCKER-USER".into(),
            handle: None,
            exprs: vec![Expr::Counter { bytes: 0, packets: 0 }, Expr::Verdict { code: -5, chain: None }],
            compat: None,
            userdata: Some(vec![0, 2, b'x', 0]),
        };
        assert_eq!(rule_from_hex(&rule_to_hex(&rule)).unwrap(), rule);
        assert!(rule_from_hex("zz").is_err() && rule_from_hex("abc").is_err());
    }

    #[test]
    fn ours_go_back_before_the_foreign_rule_that_followed_them() {
        let ours = || ChainItem::Ours { rule: String::new() };
        let foreign = |handle| ChainItem::Foreign { handle };
        let chain = [foreign(1), ours(), ours(), foreign(2), ours(), foreign(3)];
        assert_eq!(
            positions(&chain, &|_| true),
            [(1, Position::Before(2)), (2, Position::Before(2)), (4, Position::Before(3))]
        );
        // Rule 2 was deleted meanwhile: the next one that is still there.
        assert_eq!(positions(&chain, &|h| h != 2)[0], (1, Position::Before(3)));
        assert_eq!(positions(&chain, &|h| h == 1)[2], (4, Position::End));
    }

    #[test]
    fn the_format_is_strict() {
        let json = r#"{"version":1,"taken":5,"places":[{"kind":"docker-user","family":"ipv4","exists":true,"chain":[{"foreign":{"handle":3}}]}]}"#;
        let s: Snapshot = serde_json::from_str(json).unwrap();
        assert_eq!(s.places.len(), 1);
        assert!(serde_json::from_str::<Snapshot>(&json.replace("\"taken\"", "\"takne\"")).is_err());
    }
}
