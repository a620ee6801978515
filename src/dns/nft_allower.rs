//! An [`Allower`] over nf_tables: grants become timed elements of the sets of one table (per
//! family, address alone and address . protocol . port; for a grant to one container, its
//! source address first), added in one batch that
//! [`Netlink::commit`] returns from only once the kernel has processed it. It is what the tests
//! use and the reference for the table backend's own.

use std::net::IpAddr;

use super::grant::{Allower, Commit, Grant};
use crate::nft::msg::BatchBuilder;
use crate::nft::set::{NftSet, TimedElem};
use crate::nft::socket::Netlink;
use crate::nft::sys::*;
use crate::nft::NlError;

/// The sets grants go to, all in one table of family `inet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSets {
    pub table: String,
    /// `type ipv4_addr; flags timeout`
    pub v4: String,
    /// `type ipv6_addr; flags timeout`
    pub v6: String,
    /// `type ipv4_addr . inet_proto . inet_service; flags timeout`
    pub v4_port: String,
    /// `type ipv6_addr . inet_proto . inet_service; flags timeout`
    pub v6_port: String,
    /// `type ipv4_addr . ipv4_addr; flags timeout`: source . destination
    pub v4_from: String,
    /// `type ipv6_addr . ipv6_addr; flags timeout`
    pub v6_from: String,
    /// `type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags timeout`
    pub v4_from_port: String,
    /// `type ipv6_addr . ipv6_addr . inet_proto . inet_service; flags timeout`
    pub v6_from_port: String,
}

impl GrantSets {
    /// `dns4`, `dns6`, `dns4_port`, `dns6_port`, `dnsfrom4`, … in `table`.
    pub fn named_in(table: &str) -> GrantSets {
        GrantSets {
            table: table.into(),
            v4: "dns4".into(),
            v6: "dns6".into(),
            v4_port: "dns4_port".into(),
            v6_port: "dns6_port".into(),
            v4_from: "dnsfrom4".into(),
            v6_from: "dnsfrom6".into(),
            v4_from_port: "dnsfrom4_port".into(),
            v6_from_port: "dnsfrom6_port".into(),
        }
    }

    /// The sets as `nft -f` declares them (the tests' table, and the layout to copy).
    pub fn nft_declarations(&self) -> String {
        let line = |name: &str, ty: &str| format!("  set {name} {{ type {ty}; flags timeout; }}\n");
        let port = "inet_proto . inet_service";
        [
            line(&self.v4, "ipv4_addr"),
            line(&self.v6, "ipv6_addr"),
            line(&self.v4_port, &format!("ipv4_addr . {port}")),
            line(&self.v6_port, &format!("ipv6_addr . {port}")),
            line(&self.v4_from, "ipv4_addr . ipv4_addr"),
            line(&self.v6_from, "ipv6_addr . ipv6_addr"),
            line(&self.v4_from_port, &format!("ipv4_addr . ipv4_addr . {port}")),
            line(&self.v6_from_port, &format!("ipv6_addr . ipv6_addr . {port}")),
        ]
        .concat()
    }

    /// The set a grant's element goes to.
    fn set_for(&self, grant: &Grant) -> NftSet {
        let v4 = grant.addr.is_ipv4();
        let (for_v4, for_v6) = match (grant.from.is_some(), grant.port.is_some()) {
            (false, false) => (&self.v4, &self.v6),
            (false, true) => (&self.v4_port, &self.v6_port),
            (true, false) => (&self.v4_from, &self.v6_from),
            (true, true) => (&self.v4_from_port, &self.v6_from_port),
        };
        let name = if v4 { for_v4 } else { for_v6 };
        // nft's datatype ids (ipv4_addr 7, ipv6_addr 8, inet_proto 12, inet_service 13), the
        // fields of a concatenation 6 bits apart, in the key's order.
        let addr = if v4 { 7 } else { 8 };
        let fields =
            grant.from.map(|_| addr).into_iter().chain([addr]).chain(grant.port.into_iter().flat_map(|_| [12, 13]));
        let key_type = fields.fold(0, |t, f| t << 6 | f);
        let key_len = key(grant).len() as u32;
        NftSet {
            family: NFPROTO_INET,
            table: self.table.clone(),
            name: name.clone(),
            flags: NFT_SET_TIMEOUT,
            key_type,
            key_len,
            fields: Vec::new(),
        }
    }
}

/// A grant's key: the source address for a grant to one container, the destination address,
/// then for a port grant the protocol and the port (big endian), each field padded to 4 bytes
/// as concatenations are.
pub fn key(grant: &Grant) -> Vec<u8> {
    let octets = |a: IpAddr| match a {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let mut key = grant.from.map(octets).unwrap_or_default();
    key.extend(octets(grant.addr));
    if let Some((port, proto)) = grant.port {
        key.extend_from_slice(&[proto.number(), 0, 0, 0]);
        key.extend_from_slice(&port.to_be_bytes());
        key.extend_from_slice(&[0, 0]);
    }
    key
}

/// What went wrong putting grants into the kernel.
#[derive(Debug, thiserror::Error)]
pub enum NftAllowError {
    #[error("cannot open a netlink socket for the DNS grants")]
    Open(#[source] NlError),
    #[error("adding {count} DNS grants to inet {table}")]
    Commit {
        table: String,
        count: usize,
        #[source]
        source: NlError,
    },
}

/// Grants into [`GrantSets`] over one netlink socket.
pub struct NftAllower {
    nl: Netlink,
    sets: GrantSets,
}

impl NftAllower {
    /// Opens the socket in the calling thread's network namespace.
    pub fn new(sets: GrantSets) -> Result<NftAllower, NftAllowError> {
        Ok(NftAllower { nl: Netlink::open().map_err(NftAllowError::Open)?, sets })
    }

    /// The batch for `commit`: extended elements deleted, then every element added with its
    /// timeout. With `replace` false, nothing is deleted (a re-added element is then a no-op
    /// before kernel 6.x, an update since).
    fn batch(&self, commit: &Commit, replace: bool) -> crate::nft::msg::Batch {
        // No generation check (genid 0): adding elements depends on nothing we read, so another
        // writer's commit between two of ours must not make the kernel refuse a grant.
        let mut batch = BatchBuilder::new(self.nl.next_seq(), 0);
        let table = &self.sets.table;
        if replace {
            for grant in &commit.extend {
                let set = self.sets.set_for(grant);
                for msg in set.del_elems_msgs(&[key(grant)]) {
                    batch.push(format!("DELSETELEM inet {table} {}", set.name), msg);
                }
            }
        }
        for grant in commit.all() {
            let set = self.sets.set_for(grant);
            let elem = TimedElem { key: key(grant), timeout_ms: grant.timeout.as_millis() as u64, expiration_ms: None };
            for msg in set.timed_elems_msgs(&[elem]) {
                batch.push(format!("NEWSETELEM inet {table} {}", set.name), msg);
            }
        }
        batch.finish()
    }
}

impl Allower for NftAllower {
    type Error = NftAllowError;

    fn allow(&mut self, commit: &Commit) -> Result<(), NftAllowError> {
        if commit.is_empty() {
            return Ok(());
        }
        let count = commit.add.len() + commit.extend.len();
        let err = |source| NftAllowError::Commit { table: self.sets.table.clone(), count, source };
        let replace = !commit.extend.is_empty();
        match self.nl.commit(&self.batch(commit, replace)) {
            Ok(_) => Ok(()),
            // An element we meant to replace was gone already (expired, or the set was
            // flushed): the batch was refused whole, so add everything instead.
            Err(NlError::Kernel { errno: nix::errno::Errno::ENOENT, .. }) if replace => {
                self.nl.commit(&self.batch(commit, false)).map(drop).map_err(err)
            }
            Err(e) => Err(err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::net::Proto;

    #[test]
    fn keys_are_laid_out_as_nft_concatenations() {
        // As in nft::set's capture of `2001:db8::7 . tcp . 443`.
        let g = Grant {
            from: None,
            addr: "2001:db8::7".parse().unwrap(),
            port: Some((443, Proto::Tcp)),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(key(&g), [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 6, 0, 0, 0, 1, 0xbb, 0, 0]);
        let g =
            Grant { from: None, addr: "198.51.100.7".parse().unwrap(), port: None, timeout: Duration::from_secs(1) };
        assert_eq!(key(&g), [198, 51, 100, 7]);
        // Source first: `172.17.0.2 . 198.51.100.7 . udp . 53` (tests/dns_forwarder.rs has nft
        // list what the allower wrote).
        let g = Grant { from: Some("172.17.0.2".parse().unwrap()), port: Some((53, Proto::Udp)), ..g };
        assert_eq!(key(&g), [172, 17, 0, 2, 198, 51, 100, 7, 17, 0, 0, 0, 0, 53, 0, 0]);
    }
}
