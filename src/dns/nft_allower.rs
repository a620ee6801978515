//! An [`Allower`] over nf_tables: grants become timed elements of four sets of one table (per
//! family, address alone and address . protocol . port), added in one batch that
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
}

impl GrantSets {
    /// `dns4`, `dns6`, `dns4_port`, `dns6_port` in `table`.
    pub fn named_in(table: &str) -> GrantSets {
        GrantSets {
            table: table.into(),
            v4: "dns4".into(),
            v6: "dns6".into(),
            v4_port: "dns4_port".into(),
            v6_port: "dns6_port".into(),
        }
    }

    /// The four sets as `nft -f` declares them (the tests' table, and the layout to copy).
    pub fn nft_declarations(&self) -> String {
        let line = |name: &str, ty: &str| format!("  set {name} {{ type {ty}; flags timeout; }}\n");
        [
            line(&self.v4, "ipv4_addr"),
            line(&self.v6, "ipv6_addr"),
            line(&self.v4_port, "ipv4_addr . inet_proto . inet_service"),
            line(&self.v6_port, "ipv6_addr . inet_proto . inet_service"),
        ]
        .concat()
    }

    /// The set a grant's element goes to.
    fn set_for(&self, grant: &Grant) -> NftSet {
        let (name, key_type, key_len) = match (grant.addr, grant.port) {
            (IpAddr::V4(_), None) => (&self.v4, 7, 4),
            (IpAddr::V6(_), None) => (&self.v6, 8, 16),
            (IpAddr::V4(_), Some(_)) => (&self.v4_port, 7 << 12 | 12 << 6 | 13, 12),
            (IpAddr::V6(_), Some(_)) => (&self.v6_port, 8 << 12 | 12 << 6 | 13, 24),
        };
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

/// A grant's key: the address, then for a port grant the protocol and the port (big endian),
/// each field padded to 4 bytes as concatenations are.
pub fn key(grant: &Grant) -> Vec<u8> {
    let mut key = match grant.addr {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
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

    fn allow(&mut self, _client: IpAddr, commit: &Commit) -> Result<(), NftAllowError> {
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
            addr: "2001:db8::7".parse().unwrap(),
            port: Some((443, Proto::Tcp)),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(key(&g), [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 6, 0, 0, 0, 1, 0xbb, 0, 0]);
        let g = Grant { addr: "198.51.100.7".parse().unwrap(), port: None, timeout: Duration::from_secs(1) };
        assert_eq!(key(&g), [198, 51, 100, 7]);
    }
}
