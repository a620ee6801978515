//! Names allowed to some containers only (labels, the config's tables): for each address a
//! container holds, the container's addresses and its names. `watch` replaces the whole map
//! whenever Docker's picture changes; the forwarder reads it for every query.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use super::names::{AllowDomain, DomainList};

/// One container's names, and every address it holds (its grants go from each of them).
#[derive(Debug, Default)]
pub struct Client {
    pub addresses: Vec<IpAddr>,
    pub domains: DomainList,
}

/// The map, shared between watch and the forwarder's threads.
#[derive(Debug, Default, Clone)]
pub struct Clients {
    by_address: Arc<RwLock<HashMap<IpAddr, Arc<Client>>>>,
}

impl Clients {
    /// Replaces the map with `containers`: (addresses, names) each. Containers without a name
    /// are left out, so an address not in the map is allowed only the names everyone is.
    pub fn set<'a>(&self, containers: impl IntoIterator<Item = (&'a [IpAddr], &'a [AllowDomain])>) {
        let mut map = HashMap::new();
        for (addresses, domains) in containers {
            if domains.is_empty() {
                continue;
            }
            let client = Arc::new(Client { addresses: addresses.to_vec(), domains: DomainList::new(domains) });
            for a in addresses {
                map.insert(*a, Arc::clone(&client));
            }
        }
        *self.by_address.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    /// The container that holds `address`, when it is allowed names of its own.
    pub fn get(&self, address: IpAddr) -> Option<Arc<Client>> {
        self.by_address.read().unwrap_or_else(|p| p.into_inner()).get(&address).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.by_address.read().unwrap_or_else(|p| p.into_inner()).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::names::parse_allow_domain;

    #[test]
    fn every_address_of_a_container_finds_it_and_a_new_picture_replaces_the_old() {
        let clients = Clients::default();
        let web: Vec<IpAddr> = vec!["172.18.0.2".parse().unwrap(), "fd00:18::2".parse().unwrap()];
        let db: Vec<IpAddr> = vec!["172.18.0.3".parse().unwrap()];
        let pypi = [parse_allow_domain("pypi.test").unwrap()];
        clients.set([(&web[..], &pypi[..]), (&db[..], &[][..])]);
        let by_v6 = clients.get(web[1]).expect("found by its IPv6 address");
        assert_eq!(by_v6.addresses, web);
        assert!(by_v6.domains.reach([&b"pypi"[..], b"test"]).is_some());
        assert!(clients.get(db[0]).is_none(), "no names of its own: not in the map");
        clients.set([]);
        assert!(clients.get(web[0]).is_none() && clients.is_empty());
    }
}
