//! `watch`'s DNS forwarder, for `--allow-domain` and names allowed per container: started once
//! the guard's table holds the sets it grants into (and the redirect that brings containers'
//! queries to it), or before the first container allowed names of its own is let in; restarted
//! when a reload changes its settings, told to forget its grants whenever the table may have
//! lost them, and heard in the journal for every name it refused, with the container's name.

use std::net::IpAddr;
use std::sync::Arc;

use super::{say, warn};
use crate::backend::table::TABLE;
use crate::dns::clients::Clients;
use crate::dns::forwarder::{Config, Forwarder, Refusal, Refusals};
use crate::dns::names::DomainList;
use crate::dns::nft_allower::{GrantSets, NftAllower};
use crate::dns::upstream::{self, RESOLV_CONF};
use crate::docker::Follower;
use crate::grants::Live;
use crate::policy::Dns;

/// The forwarder while a name is allowed to anyone.
#[derive(Default)]
pub struct Hook {
    running: Option<(Dns, Forwarder)>,
    /// The names containers are allowed of their own, which the forwarder reads per query.
    clients: Clients,
}

impl Hook {
    /// Starts, restarts (other settings) or stops the forwarder to match `dns` and the names
    /// containers were allowed. One that cannot start is said loudly: allowed names then get
    /// no answer (nothing is opened).
    pub fn follow(&mut self, dns: &Dns, docker: Option<Arc<Follower>>) {
        let wanted = dns.is_on() || !self.clients.is_empty();
        match &self.running {
            // Kept while its settings hold, even once no container is allowed a name: the
            // next one is then answered at once.
            Some((d, _)) if d == dns => return,
            None if !wanted => return,
            _ => {}
        }
        self.stop();
        if !wanted {
            return;
        }
        match start(dns, self.clients.clone(), docker) {
            Ok(f) => {
                say(&format!(
                    "egress-guard: answering containers' DNS on port {} for {} name(s) allowed to all",
                    f.port(),
                    dns.domains.len()
                ));
                self.running = Some((dns.clone(), f));
            }
            Err(e) => warn(&format!("dns: {e}; allowed names get no answer (nothing is opened)")),
        }
    }

    /// Docker's new picture: the names each running container is allowed of its own.
    pub fn set_clients(&self, live: &Live) {
        self.clients.set(live.containers.iter().map(|c| (&c.addresses[..], &c.domains[..])));
    }

    /// The grants may be gone from the kernel (the table was rewritten, someone changed the
    /// ruleset): the next lookup of each name commits again.
    pub fn forget_grants(&self) {
        if let Some((_, f)) = &self.running {
            f.forget_grants();
        }
    }

    pub fn stop(&mut self) {
        if let Some((_, f)) = self.running.take() {
            f.stop();
        }
    }
}

fn start(dns: &Dns, clients: Clients, docker: Option<Arc<Follower>>) -> Result<Forwarder, Box<dyn std::error::Error>> {
    let upstreams = match dns.upstreams.is_empty() {
        true => upstream::from_resolv_conf(RESOLV_CONF)?,
        false => dns.upstreams.clone(),
    };
    let mut config = Config::new(dns.port, upstreams, DomainList::new(&dns.domains));
    config.refuse_with = dns.refuse_with;
    config.clients = clients;
    config.lifetimes = dns.lifetimes;
    let allower = NftAllower::new(GrantSets::named_in(TABLE))?;
    Ok(Forwarder::start(config, allower, Journal { docker })?)
}

/// Refused names to watch's journal, with the container that asked.
struct Journal {
    docker: Option<Arc<Follower>>,
}

impl Journal {
    fn who(&self, client: IpAddr) -> String {
        let named = self.docker.as_ref().and_then(|f| f.who(client, std::time::SystemTime::now()));
        match named {
            Some(id) => format!("{} ({}, {})", id.name, &id.id[..id.id.len().min(12)], client),
            None => client.to_string(),
        }
    }
}

impl Refusals for Journal {
    fn refused(&self, refusal: &Refusal) {
        say(&format!(
            "egress-guard: dns: {} asked for {} ({}): refused, not an allowed name",
            self.who(refusal.client),
            refusal.name,
            refusal.qtype
        ));
    }

    fn grant_failed(&self, client: IpAddr, name: &str, error: &(dyn std::error::Error + 'static)) {
        warn(&format!(
            "dns: {} asked for {name}, allowed, but its addresses could not be granted: {error}",
            self.who(client)
        ));
    }
}
