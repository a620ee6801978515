//! Who held an address when: every container address dockerd handed out, as a history of
//! intervals `[from, until)`, so a blocked packet is blamed on the container that had its source
//! address at that moment even if the address has since gone to another. Also the index of the
//! current containers and networks (with their labels) that allow-lists follow. Pure: the
//! caller does the I/O ([`AddressBook::on_event`] says what to fetch) and passes times in.
//!
//! A starting container is known early (docs/docker-events.md has the measured timeline): its
//! labels, name and image from its `container create` event, its addresses from the network's
//! endpoint list as soon as its `network connect` event is read, which is before its process
//! runs; the `start` event's inspect only confirms.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::model::{linux_bridge, Compose, Container, Event, Network, STARTING};

/// An address that churns faster than the retention keeps at most this many intervals.
const MAX_HISTORY: usize = 64;
/// Created and stopped containers whose labels the book keeps for their (re)start; beyond this
/// the one kept longest is forgotten, and its start costs one more request.
const MAX_DORMANT: usize = 1024;

/// A container on one network, as a log line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub name: String,
    pub image: String,
    pub compose: Option<Compose>,
    /// The network the address is on.
    pub network: String,
    /// That network's Linux bridge, `None` for drivers without one (macvlan, …).
    pub bridge: Option<String>,
}

/// One interval `[from, until)` during which a container held an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// `None`: held since before the book's first snapshot.
    pub from: Option<SystemTime>,
    /// `None`: still held.
    pub until: Option<SystemTime>,
    pub who: Identity,
}

impl Holding {
    fn covers(&self, at: SystemTime) -> bool {
        self.from.is_none_or(|from| from <= at) && self.until.is_none_or(|until| at < until)
    }
}

/// What the caller must fetch from dockerd to complete an event, in this order, and hand back;
/// `at` is when the event happened, to pass back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// `GET /networks/ID`, for [`AddressBook::learn_network`].
    Network { id: String },
    /// The container as the list shows it (`GET /containers/json?all=1` filtered by id), which
    /// answers at once even while the container starts, for [`AddressBook::learn_container`]
    /// (or [`AddressBook::forget`] if the list does not have it).
    Summary { id: String, at: SystemTime },
    /// `GET /networks/ID` for the endpoint of `container` that a `network connect` announced,
    /// for [`AddressBook::learn_endpoint`] (which may ask for an inspect next). A 404 means
    /// the network is gone: inspect the container instead.
    Endpoint { network: String, container: String, at: SystemTime },
    /// Inspect the container (`GET /containers/ID/json`), for
    /// [`AddressBook::learn_container`] (or [`AddressBook::container_gone`] on a 404). While
    /// dockerd starts the container this waits until its process runs.
    Container { id: String, at: SystemTime },
}

/// What dockerd has now: the running containers and all networks.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub containers: Vec<Container>,
    pub networks: Vec<Network>,
}

#[derive(Debug, Clone)]
pub struct AddressBook {
    retention: Duration,
    history: HashMap<IpAddr, Vec<Holding>>,
    /// The addresses each container holds now.
    held_by: HashMap<String, BTreeSet<IpAddr>>,
    /// Those that hold an address or run.
    containers: BTreeMap<String, Container>,
    /// Those that exist but hold no address (created, or stopped), with the order they came
    /// in: their labels, so that a `network connect` completes them without another request.
    dormant: HashMap<String, (u64, Container)>,
    dormant_seq: u64,
    networks: BTreeMap<String, Network>,
    loaded: bool,
    /// Since when we cannot see dockerd (its socket went away).
    blind_since: Option<SystemTime>,
    revision: u64,
    policy_revision: u64,
}

impl AddressBook {
    /// A book that forgets an interval `retention` after it closed.
    pub fn new(retention: Duration) -> AddressBook {
        AddressBook {
            retention,
            history: HashMap::new(),
            held_by: HashMap::new(),
            containers: BTreeMap::new(),
            dormant: HashMap::new(),
            dormant_seq: 0,
            networks: BTreeMap::new(),
            loaded: false,
            blind_since: None,
            revision: 0,
            policy_revision: 0,
        }
    }

    /// Who held `addr` at `at`, as far as the book knows. While dockerd is out of sight,
    /// addresses still count as held by their last holder (true for containers that live
    /// through a dockerd restart; [`AddressBook::is_blind`] says when to doubt it).
    pub fn who(&self, addr: IpAddr, at: SystemTime) -> Option<&Identity> {
        self.history.get(&addr)?.iter().rev().find(|h| h.covers(at)).map(|h| &h.who)
    }

    /// Who holds `addr` now.
    pub fn holder(&self, addr: IpAddr) -> Option<&Identity> {
        self.history.get(&addr)?.last().filter(|h| h.until.is_none()).map(|h| &h.who)
    }

    /// Every interval the book remembers for `addr`, oldest first (for `status` and debugging).
    pub fn history(&self, addr: IpAddr) -> &[Holding] {
        self.history.get(&addr).map_or(&[], Vec::as_slice)
    }

    /// The containers that hold an address or run, by id, with their labels and networks: a
    /// container is in from the moment its first `network connect` is applied (in state
    /// [`STARTING`], with its addresses and labels, before its process runs) and out as soon
    /// as its `die` (or removal, or a disconnect from its last network while not running) is
    /// applied, which dockerd announces before it frees the container's addresses.
    pub fn containers(&self) -> impl Iterator<Item = &Container> {
        self.containers.values()
    }

    pub fn container(&self, id: &str) -> Option<&Container> {
        self.containers.get(id)
    }

    /// All networks, by id, with their labels.
    pub fn networks(&self) -> impl Iterator<Item = &Network> {
        self.networks.values()
    }

    pub fn network(&self, id: &str) -> Option<&Network> {
        self.networks.get(id)
    }

    /// Grows whenever the containers or networks (or their labels) change: a consumer of the
    /// index recomputes only when it moved.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Grows exactly when something a per-container or per-network policy can depend on
    /// changes: a container enters or leaves [`AddressBook::containers`], or its name, labels,
    /// networks or addresses change; a network appears, goes, or changes (name, labels,
    /// subnets, options); a snapshot is loaded. Not when only a state, MAC or image name
    /// changes: the inspect after `start` confirms what the `network connect` told and moves
    /// nothing. Each change is one call of the book, so one increment covers a container's
    /// addresses and labels together.
    pub fn policy_revision(&self) -> u64 {
        self.policy_revision
    }

    /// Whether a snapshot has been loaded since the book was created or last lost dockerd.
    pub fn is_current(&self) -> bool {
        self.loaded && self.blind_since.is_none()
    }

    /// Since when dockerd has been out of sight, if it is.
    pub fn is_blind(&self) -> Option<SystemTime> {
        self.blind_since
    }

    /// Says the event stream broke at `at`: what changes before the next snapshot is unknown.
    pub fn lost(&mut self, at: SystemTime) {
        self.blind_since.get_or_insert(at);
    }

    /// Loads what dockerd has at `at`. The first snapshot opens its addresses as held since
    /// forever (nothing earlier is known). A later one (after [`AddressBook::lost`]) keeps the
    /// intervals of containers that kept their address, closes the others when sight was
    /// lost and opens the new ones at `at`: who held an address in between is unknown.
    pub fn load(&mut self, snapshot: Snapshot, at: SystemTime) {
        let close_at = self.blind_since.take().unwrap_or(at).min(at);
        let open_from = if self.loaded { Some(at) } else { None };
        self.loaded = true;
        self.networks = snapshot.networks.into_iter().map(|n| (n.id.clone(), without_endpoints(n))).collect();
        // Whatever happened to them while we could not see is unknown; a connect asks again.
        self.dormant.clear();
        let containers: BTreeMap<String, Container> =
            snapshot.containers.into_iter().filter(|c| !c.has_exited()).map(|c| (c.id.clone(), c)).collect();
        let vanished: Vec<String> = self.held_by.keys().filter(|id| !containers.contains_key(*id)).cloned().collect();
        for id in vanished {
            self.set_holdings(&id, Vec::new(), close_at, open_from);
        }
        for container in containers.values() {
            let want = self.identities(container);
            self.set_holdings(&container.id, want, close_at, open_from);
        }
        self.containers = containers;
        self.revision += 1;
        self.policy_revision += 1;
    }

    /// Applies what an event says by itself, and returns what must be fetched to apply the
    /// rest. Events of the other kinds and actions (exec, health, …) change nothing.
    pub fn on_event(&mut self, event: &Event) -> Vec<Fetch> {
        let at = event.at();
        let id = event.actor.id.as_str();
        match (event.kind.as_str(), event.action.as_str()) {
            // Its labels, kept for its network connect (a replay of one the snapshot already
            // has running changes nothing).
            ("container", "create") => {
                if let Some(container) = Container::from_create_event(event) {
                    if !self.containers.contains_key(&container.id) {
                        self.keep_dormant(container);
                    }
                }
                Vec::new()
            }
            // rename changes the name a log line shows; start confirms the addresses its
            // connect gave (and brings them, should the connect have found none).
            ("container", "start" | "rename") => vec![Fetch::Container { id: id.to_string(), at }],
            ("container", "die" | "stop") => {
                self.container_gone(id, at);
                Vec::new()
            }
            ("container", "destroy") => {
                self.forget(id, at);
                Vec::new()
            }
            // `kill` only says a signal was sent (`docker kill -s HUP` leaves the container
            // running); `die` follows when it ends the container.
            ("network", "connect") => {
                let Some(container) = event.attribute("container") else { return Vec::new() };
                let mut fetch = Vec::new();
                // Missed its create (or it was created before we followed): its labels first.
                if !self.containers.contains_key(container) && !self.dormant.contains_key(container) {
                    fetch.push(Fetch::Summary { id: container.to_string(), at });
                }
                fetch.push(Fetch::Endpoint { network: id.to_string(), container: container.to_string(), at });
                fetch
            }
            ("network", "disconnect") => {
                if let Some(container) = event.attribute("container") {
                    self.detach(container, id, at);
                }
                Vec::new()
            }
            ("network", "create") => vec![Fetch::Network { id: id.to_string() }],
            ("network", "destroy") => {
                if self.networks.remove(id).is_some() {
                    self.revision += 1;
                    self.policy_revision += 1;
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// A network as dockerd describes it now (its endpoint list is not kept: containers say
    /// where they are).
    pub fn learn_network(&mut self, network: Network) {
        let network = without_endpoints(network);
        if self.networks.get(&network.id) != Some(&network) {
            self.networks.insert(network.id.clone(), network);
            self.revision += 1;
            self.policy_revision += 1;
        }
    }

    /// `network` as `GET /networks/ID` described it right after the `network connect` of
    /// `container` at `at`: the container's endpoint there gives its addresses on that network
    /// at once, with the labels the book already has (from its create event, an earlier life,
    /// or the list), in one change. Returns the inspect to make instead when the endpoint is
    /// not listed (the container left again) or the container is unknown.
    pub fn learn_endpoint(&mut self, network: Network, container: &str, at: SystemTime) -> Vec<Fetch> {
        let endpoint = network.containers.get(container).map(|e| e.attachment(&network.id));
        let name = network.name.clone();
        self.learn_network(network);
        let known = self.containers.get(container).or_else(|| self.dormant.get(container).map(|(_, c)| c));
        let (Some(attachment), Some(known)) = (endpoint, known) else {
            return vec![Fetch::Container { id: container.to_string(), at }];
        };
        let mut known = known.clone();
        known.networks.insert(name, attachment);
        if !matches!(known.state.as_str(), "running" | "paused") {
            known.state = STARTING.to_string();
        }
        self.learn_container(known, at);
        Vec::new()
    }

    /// A container as dockerd describes it now (inspected or listed after an event at `at`):
    /// its addresses are held by it from `at` on, and those it no longer has are released at
    /// `at`. An address still held by another container passes to this one at `at`.
    pub fn learn_container(&mut self, mut container: Container, at: SystemTime) {
        if container.has_exited() {
            self.container_gone(&container.id, at);
            // Kept as dockerd says it is now (renamed while stopped, say) for its restart.
            container.networks.clear();
            self.keep_dormant(container);
            return;
        }
        let want = self.identities(&container);
        self.set_holdings(&container.id, want, at, Some(at));
        self.place(container);
    }

    /// The container died at `at`: it holds nothing from then on. Its labels are kept while it
    /// exists, for a restart (which brings a connect but no create).
    pub fn container_gone(&mut self, id: &str, at: SystemTime) {
        self.set_holdings(id, Vec::new(), at, Some(at));
        if let Some(mut container) = self.remove_live(id) {
            container.networks.clear();
            container.state = "exited".to_string();
            self.keep_dormant(container);
        }
    }

    /// The container was removed at `at`: it holds nothing and is forgotten.
    pub fn forget(&mut self, id: &str, at: SystemTime) {
        self.container_gone(id, at);
        self.dormant.remove(id);
    }

    /// Puts `container` among those that hold an address or run, or else among the dormant.
    fn place(&mut self, container: Container) {
        let live =
            container.state == "running" || container.state == "paused" || container.addresses().next().is_some();
        if !live {
            self.remove_live(&container.id);
            self.keep_dormant(container);
            return;
        }
        self.dormant.remove(&container.id);
        let old = self.containers.get(&container.id);
        if old != Some(&container) {
            self.revision += 1;
        }
        if old.is_none_or(|old| !same_policy(old, &container)) {
            self.policy_revision += 1;
        }
        self.containers.insert(container.id.clone(), container);
    }

    fn remove_live(&mut self, id: &str) -> Option<Container> {
        let removed = self.containers.remove(id)?;
        self.revision += 1;
        self.policy_revision += 1;
        Some(removed)
    }

    fn keep_dormant(&mut self, container: Container) {
        if self.dormant.len() >= MAX_DORMANT && !self.dormant.contains_key(&container.id) {
            if let Some(oldest) = self.dormant.iter().min_by_key(|(_, (seq, _))| *seq).map(|(id, _)| id.clone()) {
                self.dormant.remove(&oldest);
            }
        }
        self.dormant_seq += 1;
        self.dormant.insert(container.id.clone(), (self.dormant_seq, container));
    }

    /// The container left the network `network_id` at `at`.
    fn detach(&mut self, id: &str, network_id: &str, at: SystemTime) {
        let Some(mut container) = self.containers.get(id).cloned() else { return };
        container.networks.retain(|_, a| a.network_id != network_id);
        self.learn_container(container, at);
    }

    /// Forgets intervals that closed longer than the retention before `now`.
    pub fn prune(&mut self, now: SystemTime) {
        let keep_after = now.checked_sub(self.retention).unwrap_or(SystemTime::UNIX_EPOCH);
        self.history.retain(|_, holdings| {
            holdings.retain(|h| h.until.is_none_or(|until| until > keep_after));
            !holdings.is_empty()
        });
    }

    /// The identities `container` holds its addresses under.
    fn identities(&self, container: &Container) -> Vec<(IpAddr, Identity)> {
        container
            .addresses()
            .map(|(ip, network, attachment)| {
                let bridge = match self.networks.get(&attachment.network_id) {
                    Some(n) => n.bridge_name(),
                    // Not seen yet (the caller fetches networks first, so this is rare): the
                    // bridge driver's naming, with the default network's usual bridge.
                    None if network == "bridge" => Some("docker0".to_string()),
                    None => linux_bridge("bridge", &attachment.network_id, &BTreeMap::new()),
                };
                let who = Identity {
                    id: container.id.clone(),
                    name: container.name.clone(),
                    image: container.image.clone(),
                    compose: container.compose(),
                    network: network.to_string(),
                    bridge,
                };
                (ip, who)
            })
            .collect()
    }

    /// Makes `want` the addresses container `id` holds: the ones it no longer holds (or holds
    /// under another identity) close at `close_at`; new ones open at `open_from`.
    fn set_holdings(
        &mut self,
        id: &str,
        want: Vec<(IpAddr, Identity)>,
        close_at: SystemTime,
        open_from: Option<SystemTime>,
    ) {
        let held = self.held_by.remove(id).unwrap_or_default();
        for addr in held {
            let same = want.iter().any(|(ip, who)| *ip == addr && self.holder(addr) == Some(who));
            if !same {
                self.close(addr, close_at);
            }
        }
        let mut now_held = BTreeSet::new();
        for (addr, who) in want {
            now_held.insert(addr);
            if self.holder(addr) == Some(&who) {
                continue;
            }
            // Another container's, if the book missed its end (or dockerd freed it before
            // saying so, as a disconnect does): it ended when this one took it, and the other
            // no longer shows it.
            if let Some(previous) = self.holder(addr).filter(|h| h.id != who.id).map(|h| h.id.clone()) {
                self.strip(&previous, addr);
            }
            self.close(addr, close_at);
            self.open(addr, who, open_from);
        }
        if !now_held.is_empty() {
            self.held_by.insert(id.to_string(), now_held);
        }
    }

    /// Takes `addr` off container `id`'s networks (it went to another).
    fn strip(&mut self, id: &str, addr: IpAddr) {
        let Some(mut container) = self.containers.get(id).cloned() else { return };
        for attachment in container.networks.values_mut() {
            if attachment.ipv4.map(IpAddr::V4) == Some(addr) {
                attachment.ipv4 = None;
            }
            if attachment.ipv6.map(IpAddr::V6) == Some(addr) {
                attachment.ipv6 = None;
            }
        }
        self.place(container);
    }

    fn close(&mut self, addr: IpAddr, at: SystemTime) {
        let Some(last) = self.history.get_mut(&addr).and_then(|h| h.last_mut()) else { return };
        if last.until.is_some() {
            return;
        }
        // Events can arrive with earlier times than the snapshot that opened an interval
        // (dockerd replays those since our subscription): an interval never ends before it began.
        last.until = Some(last.from.map_or(at, |from| from.max(at)));
        let owner = last.who.id.clone();
        if let Some(set) = self.held_by.get_mut(&owner) {
            set.remove(&addr);
            if set.is_empty() {
                self.held_by.remove(&owner);
            }
        }
    }

    fn open(&mut self, addr: IpAddr, who: Identity, from: Option<SystemTime>) {
        let holdings = self.history.entry(addr).or_default();
        // Intervals stay ordered and disjoint whatever order the times came in.
        let from = match (from, holdings.last().and_then(|h| h.until)) {
            (Some(from), Some(until)) => Some(from.max(until)),
            (None, Some(until)) => Some(until),
            (from, None) => from,
        };
        if holdings.len() >= MAX_HISTORY {
            holdings.remove(0);
        }
        holdings.push(Holding { from, until: None, who });
    }
}

/// The network as the book keeps it: where containers are is theirs to say.
fn without_endpoints(mut network: Network) -> Network {
    network.containers.clear();
    network
}

/// Whether two views of a container give the same policy: same name, labels, and networks
/// with the same addresses (state, image and MACs aside).
fn same_policy(a: &Container, b: &Container) -> bool {
    let addresses = |c: &Container| -> Vec<(String, String, Option<IpAddr>, Option<IpAddr>)> {
        c.networks
            .iter()
            .map(|(name, a)| (name.clone(), a.network_id.clone(), a.ipv4.map(IpAddr::V4), a.ipv6.map(IpAddr::V6)))
            .collect()
    };
    a.id == b.id && a.name == b.name && a.labels == b.labels && addresses(a) == addresses(b)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::super::http::Conn;
    use super::super::model::{Attachment, ContainerInspect, ContainerSummary};
    use super::super::testdata;
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn ms(secs: u64, millis: u64) -> SystemTime {
        t(secs) + Duration::from_millis(millis)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const EGNET: &str = "e8770a5aac58212c1e6d0df24f0e51ff75c04639a0491b45561988495f3926f8";

    fn egnet() -> Network {
        Network { id: EGNET.into(), name: "egnet".into(), driver: "bridge".into(), ..Default::default() }
    }

    /// A running container on egnet with one IPv4 (and maybe an IPv6) address.
    fn container(id: &str, name: &str, v4: &str, v6: Option<&str>) -> Container {
        let attachment = Attachment {
            network_id: EGNET.into(),
            ipv4: Some(v4.parse().unwrap()),
            ipv6: v6.map(|a| a.parse().unwrap()),
            mac: String::new(),
        };
        Container {
            id: id.into(),
            name: name.into(),
            image: "egprobe".into(),
            labels: BTreeMap::new(),
            state: "running".into(),
            networks: [("egnet".to_string(), attachment)].into(),
        }
    }

    fn name(book: &AddressBook, addr: &str, at: SystemTime) -> Option<String> {
        book.who(ip(addr), at).map(|w| w.name.clone())
    }

    fn loaded(containers: Vec<Container>) -> AddressBook {
        let mut book = AddressBook::new(HOUR);
        book.load(Snapshot { containers, networks: vec![egnet()] }, t(0));
        book
    }

    #[test]
    fn a_reused_address_is_blamed_on_whoever_held_it_then() {
        let mut book = loaded(vec![]);
        book.learn_container(container("aaa", "first", "172.18.0.2", Some("fd00:18::2")), t(10));
        book.container_gone("aaa", t(20));
        book.learn_container(container("bbb", "second", "172.18.0.2", Some("fd00:18::2")), t(30));
        for addr in ["172.18.0.2", "fd00:18::2"] {
            assert_eq!(name(&book, addr, t(5)), None, "{addr} before anyone held it");
            assert_eq!(name(&book, addr, t(10)).as_deref(), Some("first"));
            assert_eq!(name(&book, addr, ms(19, 999)).as_deref(), Some("first"));
            assert_eq!(name(&book, addr, t(20)), None, "{addr} between the two");
            assert_eq!(name(&book, addr, t(30)).as_deref(), Some("second"));
            assert_eq!(name(&book, addr, t(99_999)).as_deref(), Some("second"));
        }
        let who = book.who(ip("172.18.0.2"), t(30)).unwrap();
        assert_eq!((who.network.as_str(), who.bridge.as_deref()), ("egnet", Some("br-e8770a5aac58")));
    }

    #[test]
    fn a_handover_without_a_seen_end_closes_the_first_at_the_second_start() {
        let mut book = loaded(vec![]);
        book.learn_container(container("aaa", "first", "172.18.0.2", None), t(10));
        // The first one's die was missed; the second got its address at t(30).
        book.learn_container(container("bbb", "second", "172.18.0.2", None), t(30));
        assert_eq!(name(&book, "172.18.0.2", ms(29, 999)).as_deref(), Some("first"));
        assert_eq!(name(&book, "172.18.0.2", t(30)).as_deref(), Some("second"));
        // Its late die changes nothing for the address the second one holds now.
        book.container_gone("aaa", t(31));
        assert_eq!(name(&book, "172.18.0.2", t(40)).as_deref(), Some("second"));
        assert_eq!(book.containers().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["second"]);
    }

    #[test]
    fn the_first_snapshot_holds_since_forever_and_unchanged_views_change_nothing() {
        let mut book = loaded(vec![container("aaa", "first", "172.18.0.2", None)]);
        assert_eq!(name(&book, "172.18.0.2", UNIX_EPOCH).as_deref(), Some("first"));
        let revision = book.revision();
        // A replayed start from before the snapshot: same view, same interval.
        book.learn_container(container("aaa", "first", "172.18.0.2", None), t(0) - Duration::from_secs(5));
        assert_eq!(name(&book, "172.18.0.2", UNIX_EPOCH).as_deref(), Some("first"));
        assert_eq!(book.revision(), revision);
    }

    #[test]
    fn a_rename_starts_a_new_interval_under_the_new_name() {
        let mut book = loaded(vec![container("aaa", "old", "172.18.0.2", None)]);
        book.learn_container(container("aaa", "new", "172.18.0.2", None), t(10));
        assert_eq!(name(&book, "172.18.0.2", t(9)).as_deref(), Some("old"));
        assert_eq!(name(&book, "172.18.0.2", t(10)).as_deref(), Some("new"));
    }

    #[test]
    fn a_rebuild_after_losing_dockerd_keeps_survivors_and_leaves_the_gap_unknown() {
        let mut book = loaded(vec![
            container("aaa", "survivor", "172.18.0.2", None),
            container("bbb", "gone", "172.18.0.3", None),
        ]);
        book.lost(t(50));
        assert!(book.is_blind().is_some() && !book.is_current());
        // dockerd is back at t(60): bbb is gone, ccc got its address meanwhile.
        let snapshot =
            vec![container("aaa", "survivor", "172.18.0.2", None), container("ccc", "newcomer", "172.18.0.3", None)];
        book.load(Snapshot { containers: snapshot, networks: vec![egnet()] }, t(60));
        assert!(book.is_current());
        assert_eq!(name(&book, "172.18.0.2", t(55)).as_deref(), Some("survivor"));
        assert_eq!(name(&book, "172.18.0.3", ms(49, 999)).as_deref(), Some("gone"));
        assert_eq!(name(&book, "172.18.0.3", t(55)), None);
        assert_eq!(name(&book, "172.18.0.3", t(60)).as_deref(), Some("newcomer"));
    }

    #[test]
    fn disconnect_releases_only_that_network() {
        let mut book = loaded(vec![]);
        let mut two = container("aaa", "web", "172.18.0.2", None);
        let other = Attachment {
            network_id: "f".repeat(64),
            ipv4: Some("172.19.0.2".parse().unwrap()),
            ipv6: None,
            mac: "".into(),
        };
        two.networks.insert("named".into(), other);
        book.learn_container(two, t(10));
        let event = |action: &str, net: &str| Event {
            kind: "network".into(),
            action: action.into(),
            actor: super::super::model::Actor {
                id: net.into(),
                attributes: [("container".to_string(), "aaa".to_string())].into(),
            },
            time_nano: t(20).duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64,
            ..Default::default()
        };
        assert_eq!(book.on_event(&event("disconnect", &"f".repeat(64))), []);
        assert_eq!(name(&book, "172.19.0.2", t(19)).as_deref(), Some("web"));
        assert_eq!(name(&book, "172.19.0.2", t(20)), None);
        assert_eq!(name(&book, "172.18.0.2", t(20)).as_deref(), Some("web"));
        // A connect asks the network for the endpoint (which brings the network too)…
        let endpoint = Fetch::Endpoint { network: "abc".into(), container: "aaa".into(), at: t(20) };
        assert_eq!(book.on_event(&event("connect", "abc")), [endpoint]);
        // … and, for a container the book does not know, the list's view of it first.
        let stranger = Event {
            actor: super::super::model::Actor {
                id: "abc".into(),
                attributes: [("container".to_string(), "zzz".to_string())].into(),
            },
            ..event("connect", "abc")
        };
        assert_eq!(
            book.on_event(&stranger),
            [
                Fetch::Summary { id: "zzz".into(), at: t(20) },
                Fetch::Endpoint { network: "abc".into(), container: "zzz".into(), at: t(20) }
            ]
        );
    }

    #[test]
    fn closed_intervals_are_pruned_after_the_retention() {
        let mut book = loaded(vec![]);
        book.learn_container(container("aaa", "first", "172.18.0.2", None), t(10));
        book.learn_container(container("bbb", "other", "172.18.0.9", None), t(10));
        book.container_gone("aaa", t(20));
        book.prune(t(20) + HOUR - Duration::from_secs(1));
        assert_eq!(name(&book, "172.18.0.2", t(15)).as_deref(), Some("first"));
        book.prune(t(20) + HOUR);
        assert_eq!(name(&book, "172.18.0.2", t(15)), None);
        assert!(!book.history.contains_key(&ip("172.18.0.2")), "an empty history is dropped");
        // Open intervals stay, however old.
        book.prune(t(20) + 1000 * HOUR);
        assert_eq!(name(&book, "172.18.0.9", t(15)).as_deref(), Some("other"));
    }

    #[test]
    fn an_address_that_churns_keeps_a_bounded_history() {
        let mut book = loaded(vec![]);
        for i in 0..200 {
            book.learn_container(container(&format!("c{i}"), "churn", "172.18.0.2", None), t(i));
        }
        assert_eq!(book.history[&ip("172.18.0.2")].len(), MAX_HISTORY);
        assert_eq!(book.who(ip("172.18.0.2"), t(199)).map(|w| w.id.as_str()), Some("c199"));
    }

    /// The captured `/events` stream replayed into a book loaded with the captured networks,
    /// each container fetch answered from the captured list (taken after every connect, so
    /// only moments after each connect are asked about). The networks answer without their
    /// endpoints (the list's view), so every connect takes the slow way: the inspect.
    #[test]
    fn captured_event_stream() {
        fn body<T: serde::de::DeserializeOwned>(name: &str) -> T {
            let bytes = testdata(name);
            serde_json::from_slice(&Conn::new(&bytes[..], name.into()).response(name, 1 << 20).unwrap().body).unwrap()
        }
        let networks: Vec<Network> = body("networks-v4.http");
        let list: Vec<ContainerSummary> = body("containers-v4.http");
        let mut book = AddressBook::new(HOUR);
        book.load(Snapshot { containers: vec![], networks: networks.clone() }, t(0));
        let bytes = testdata("events-v4.http");
        let text = String::from_utf8_lossy(&bytes);
        let events: Vec<Event> =
            text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
        let mut fetched = Vec::new();
        for event in &events {
            let mut fetches: std::collections::VecDeque<Fetch> = book.on_event(event).into();
            while let Some(fetch) = fetches.pop_front() {
                let what = match &fetch {
                    Fetch::Network { .. } => "network",
                    Fetch::Summary { .. } => "summary",
                    Fetch::Endpoint { .. } => "endpoint",
                    Fetch::Container { .. } => "inspect",
                };
                fetched.push(format!("{} {}: {what}", event.kind, event.action));
                match fetch {
                    Fetch::Network { id } => {
                        book.learn_network(networks.iter().find(|n| n.id == id).unwrap().clone());
                    }
                    Fetch::Endpoint { network, container, at } => {
                        let network = networks.iter().find(|n| n.id == network).unwrap().clone();
                        fetches.extend(book.learn_endpoint(network, &container, at));
                    }
                    Fetch::Summary { id, at } | Fetch::Container { id, at } => {
                        book.learn_container(list.iter().find(|c| c.id == id).unwrap().into(), at);
                    }
                }
            }
        }
        assert_eq!(
            fetched,
            [
                "network create: network",
                "network create: network",
                "network connect: endpoint",
                "network connect: inspect",
                "container start: inspect",
                "network connect: endpoint",
                "network connect: inspect",
                "container start: inspect",
                "network connect: endpoint",
                "network connect: inspect",
            ]
        );
        let at = |i: usize| events[i].at() + Duration::from_millis(1);
        let (connect_named, disconnect_named, die_api) = (8, 9, 17);
        assert_eq!(events[connect_named].attribute("name"), Some("named"));
        let api = book.who(ip("172.18.0.2"), at(7)).unwrap();
        assert_eq!(api.name, "proj-api-1");
        assert_eq!(api.compose, Some(Compose { project: "proj".into(), service: "api".into() }));
        assert_eq!(api.bridge.as_deref(), Some("br-e8770a5aac58"));
        let web = book.who(ip("172.19.0.2"), at(connect_named)).unwrap();
        assert_eq!((web.name.as_str(), web.bridge.as_deref()), ("web", Some("egbr1")));
        assert_eq!(book.who(ip("172.17.0.2"), at(connect_named)).unwrap().bridge.as_deref(), Some("docker0"));
        assert_eq!(name(&book, "172.19.0.2", at(disconnect_named)), None);
        assert_eq!(name(&book, "172.17.0.2", at(disconnect_named)).as_deref(), Some("web"));
        assert_eq!(events[die_api].action, "die");
        assert_eq!(
            name(&book, "172.18.0.2", events[die_api].at() - Duration::from_millis(1)).as_deref(),
            Some("proj-api-1")
        );
        assert_eq!(name(&book, "172.18.0.2", events[die_api].at()), None);
        // Everything was removed and both user networks destroyed by the end.
        assert_eq!(book.containers().count(), 0);
        assert_eq!(
            book.networks().map(|n| n.name.as_str()).collect::<BTreeSet<_>>(),
            ["bridge", "host", "none"].into()
        );
        assert!(book.held_by.is_empty());
    }

    /// A dockerd stand-in that answers the follower's requests with what the real one
    /// answered at that moment (testdata/start, see capture-start.sh): the K-th connect's
    /// network and list, the K-th start's inspect.
    struct AtTheMoment {
        connects: usize,
        starts: usize,
        /// Each request, as `event: request`.
        asked: Vec<String>,
    }

    impl AtTheMoment {
        fn body<T: serde::de::DeserializeOwned>(name: &str) -> T {
            let name = format!("start/{name}");
            let bytes = testdata(&name);
            let response = Conn::new(&bytes[..], name.clone().into()).response(&name, 1 << 20).unwrap();
            serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("{name}: {e}"))
        }

        /// Applies `event` as the follower does, fetches included.
        fn apply(&mut self, book: &mut AddressBook, event: &Event) {
            match (event.kind.as_str(), event.action.as_str()) {
                ("network", "connect") => self.connects += 1,
                ("container", "start") => self.starts += 1,
                _ => {}
            }
            let mut fetches: std::collections::VecDeque<Fetch> = book.on_event(event).into();
            while let Some(fetch) = fetches.pop_front() {
                let what = format!("{} {}", event.kind, event.action);
                match fetch {
                    Fetch::Summary { id, at } => {
                        self.asked.push(format!("{what}: summary"));
                        let list: Vec<ContainerSummary> =
                            Self::body(&format!("connect-{}-summary.http", self.connects));
                        book.learn_container(list.iter().find(|c| c.id == id).unwrap().into(), at);
                    }
                    Fetch::Endpoint { network, container, at } => {
                        self.asked.push(format!("{what}: endpoint"));
                        let answer: Network = Self::body(&format!("connect-{}-network.http", self.connects));
                        assert_eq!(answer.id, network);
                        fetches.extend(book.learn_endpoint(answer, &container, at));
                    }
                    Fetch::Container { id, at } => {
                        self.asked.push(format!("{what}: inspect"));
                        let inspect: ContainerInspect = Self::body(&format!("start-{}-inspect.http", self.starts));
                        assert_eq!(inspect.id, id);
                        book.learn_container(Container::from(&inspect), at);
                    }
                    Fetch::Network { id } => panic!("{what}: network {id} not captured"),
                }
            }
        }
    }

    fn start_events() -> Vec<Event> {
        let bytes = testdata("start/events.http");
        let text = String::from_utf8_lossy(&bytes);
        text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn live(book: &AddressBook, name: &str) -> Option<Container> {
        book.containers().find(|c| c.name == name).cloned()
    }

    fn addresses(c: &Container) -> Vec<String> {
        c.addresses().map(|(ip, net, _)| format!("{net} {ip}")).collect()
    }

    /// The captured start, restart, connect, disconnect and removal of two labelled containers,
    /// replayed event by event: each is complete (addresses and labels) as soon as its `network
    /// connect` is applied, with one request, and the inspect after its `start` moves nothing a
    /// policy depends on.
    #[test]
    fn a_starting_container_is_complete_at_its_network_connect() {
        let events = start_events();
        let mut book = AddressBook::new(HOUR);
        book.load(Snapshot::default(), events[0].at() - Duration::from_secs(1));
        let mut dockerd = AtTheMoment { connects: 0, starts: 0, asked: Vec::new() };
        let mut seen = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let policy = book.policy_revision();
            dockerd.apply(&mut book, event);
            let name = event.attribute("name").unwrap_or_default();
            let moved = if book.policy_revision() != policy { " *" } else { "" };
            let mut line = format!("{i:2} {} {} {name}{moved}:", event.kind, event.action);
            for c in book.containers() {
                line.push_str(&format!(" {}({}) {:?}", c.name, c.state, addresses(c)));
            }
            seen.push(line);
        }
        // `*`: the policy revision moved.
        let expected = [
            " 0 container create early:",
            " 1 network connect bridge *: early(starting) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"]",
            " 2 container start early: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"]",
            " 3 container create early6: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"]",
            " 4 network connect usernet *: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"] \
             early6(starting) [\"usernet 172.31.1.2\", \"usernet fd00:31:1::2\"]",
            " 5 container start early6: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"] \
             early6(running) [\"usernet 172.31.1.2\", \"usernet fd00:31:1::2\"]",
            " 6 container kill early6: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"] \
             early6(running) [\"usernet 172.31.1.2\", \"usernet fd00:31:1::2\"]",
            " 7 container kill early6: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"] \
             early6(running) [\"usernet 172.31.1.2\", \"usernet fd00:31:1::2\"]",
            " 8 container die early6 *: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"]",
            " 9 network disconnect usernet: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"]",
            "10 container stop early6: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"]",
            "11 network connect usernet *: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"] \
             early6(starting) [\"usernet 172.31.1.2\", \"usernet fd00:31:1::2\"]",
            "12 container start early6: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"] \
             early6(running) [\"usernet 172.31.1.2\", \"usernet fd00:31:1::2\"]",
            "13 container restart early6: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"] \
             early6(running) [\"usernet 172.31.1.2\", \"usernet fd00:31:1::2\"]",
            "14 network connect usernet *: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\", \
             \"usernet 172.31.1.3\", \"usernet fd00:31:1::3\"] early6(running) [\"usernet 172.31.1.2\", \"usernet fd00:31:1::2\"]",
            "15 network disconnect usernet *: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"] \
             early6(running) [\"usernet 172.31.1.2\", \"usernet fd00:31:1::2\"]",
            "16 network disconnect usernet: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"] \
             early6(running) [\"usernet 172.31.1.2\", \"usernet fd00:31:1::2\"]",
            "17 container kill early: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"] \
             early6(running) [\"usernet 172.31.1.2\", \"usernet fd00:31:1::2\"]",
            "18 container kill early6: early(running) [\"bridge 172.17.0.2\", \"bridge fd00:17::242:ac11:2\"] \
             early6(running) [\"usernet 172.31.1.2\", \"usernet fd00:31:1::2\"]",
            "19 container die early *: early6(running) [\"usernet 172.31.1.2\", \"usernet fd00:31:1::2\"]",
            "20 container die early6 *:",
            "21 network disconnect bridge:",
            "22 network disconnect usernet:",
            "23 container destroy early:",
            "24 container destroy early6:",
            "25 network destroy usernet *:",
        ];
        assert_eq!(seen, expected, "{seen:#?}");
        // One request per connect (the create, or the earlier life, gave the labels); the
        // inspects are the starts'.
        assert_eq!(
            dockerd.asked,
            [
                "network connect: endpoint",
                "container start: inspect",
                "network connect: endpoint",
                "container start: inspect",
                "network connect: endpoint",
                "container start: inspect",
                "network connect: endpoint",
            ]
        );
        assert!(book.dormant.is_empty() && book.held_by.is_empty(), "the removals are forgotten");

        // Who held what when, by the events' own times.
        let (connect, start, die, reconnect) = (events[4].at(), events[5].at(), events[8].at(), events[11].at());
        let name = |addr: &str, at| book.who(ip(addr), at).map(|w| w.name.clone());
        assert_eq!(name("172.31.1.2", connect - Duration::from_nanos(1)), None);
        assert_eq!(name("fd00:31:1::2", connect).as_deref(), Some("early6"));
        assert_eq!(name("172.31.1.2", start).as_deref(), Some("early6"));
        assert_eq!(name("172.31.1.2", die), None, "released at the die of the restart");
        assert_eq!(name("172.31.1.2", reconnect).as_deref(), Some("early6"));
        assert_eq!(name("172.31.1.3", events[14].at()).as_deref(), Some("early"));
        assert_eq!(name("172.31.1.3", events[15].at()), None);
        let early6 = book.who(ip("172.31.1.2"), start).unwrap();
        assert_eq!(early6.compose, Some(Compose { project: "proj".into(), service: "api".into() }));
        assert_eq!((early6.network.as_str(), early6.bridge.as_deref()), ("usernet", Some("br-6192e4767874")));
        assert_eq!(book.who(ip("172.17.0.2"), start).unwrap().bridge.as_deref(), Some("docker0"));
    }

    /// What the book holds right after each connect is what the inspect after the start says,
    /// labels included (the image's too), but for the state.
    #[test]
    fn the_connect_view_equals_the_inspect_but_for_the_state() {
        let events = start_events();
        let mut book = AddressBook::new(HOUR);
        book.load(Snapshot::default(), events[0].at());
        let mut dockerd = AtTheMoment { connects: 0, starts: 0, asked: Vec::new() };
        for (connect, name) in [(1, "early"), (4, "early6"), (11, "early6")] {
            for event in &events[..=connect] {
                dockerd.apply(&mut book, event);
            }
            let early = live(&book, name).unwrap();
            dockerd.apply(&mut book, &events[connect + 1]);
            let started = live(&book, name).unwrap();
            assert_eq!((early.state.as_str(), started.state.as_str()), (STARTING, "running"));
            assert_eq!(Container { state: "running".into(), ..early.clone() }, started, "{name}");
            assert_eq!(early.labels["org.example.from-image"], "yes", "the image's labels are the container's");
            dockerd = AtTheMoment { connects: 0, starts: 0, asked: Vec::new() };
            book = AddressBook::new(HOUR);
            book.load(Snapshot::default(), events[0].at());
        }
        let early = {
            let mut dockerd = AtTheMoment { connects: 0, starts: 0, asked: Vec::new() };
            for event in &events[..2] {
                dockerd.apply(&mut book, event);
            }
            live(&book, "early").unwrap()
        };
        assert_eq!(early.labels.get("egress-guard.allow").map(String::as_str), Some("198.51.100.53/32:53/udp"));
        assert!(!early.labels.contains_key("name") && !early.labels.contains_key("image"));
    }

    /// A follower that missed the creates (it began between create and connect) asks the list
    /// for the labels first, and is as complete after the connect.
    #[test]
    fn without_the_create_the_list_gives_the_labels_at_the_connect() {
        let events: Vec<Event> = start_events().into_iter().filter(|e| e.action != "create").collect();
        let mut book = AddressBook::new(HOUR);
        book.load(Snapshot::default(), events[0].at());
        let mut dockerd = AtTheMoment { connects: 0, starts: 0, asked: Vec::new() };
        dockerd.apply(&mut book, &events[0]);
        assert_eq!(dockerd.asked, ["network connect: summary", "network connect: endpoint"]);
        let early = live(&book, "early").unwrap();
        assert_eq!(early.state, STARTING);
        assert_eq!(addresses(&early), ["bridge 172.17.0.2", "bridge fd00:17::242:ac11:2"]);
        assert_eq!(early.labels["egress-guard.allow"], "198.51.100.53/32:53/udp");
        let policy = book.policy_revision();
        dockerd.apply(&mut book, &events[1]);
        assert_eq!((live(&book, "early").unwrap().state.as_str(), book.policy_revision()), ("running", policy));
    }

    #[test]
    fn an_endpoint_not_listed_falls_back_to_the_inspect() {
        let mut book = loaded(vec![]);
        let created = Container {
            state: "created".into(),
            networks: BTreeMap::new(),
            ..container("aaa", "web", "172.18.0.2", None)
        };
        book.keep_dormant(created);
        // Left again before the network was asked.
        assert_eq!(book.learn_endpoint(egnet(), "aaa", t(10)), [Fetch::Container { id: "aaa".into(), at: t(10) }]);
        assert_eq!(book.containers().count(), 0);
        // Or a container nobody knows.
        assert_eq!(book.learn_endpoint(egnet(), "zzz", t(10)), [Fetch::Container { id: "zzz".into(), at: t(10) }]);
    }

    #[test]
    fn only_what_a_policy_reads_moves_the_policy_revision() {
        let mut book = loaded(vec![container("aaa", "web", "172.18.0.2", None)]);
        let (revision, policy) = (book.revision(), book.policy_revision());
        let mut paused = container("aaa", "web", "172.18.0.2", None);
        paused.state = "paused".into();
        paused.image = "sha256:0123".into();
        paused.networks.get_mut("egnet").unwrap().mac = "02:42:ac:12:00:02".into();
        book.learn_container(paused, t(1));
        assert!(book.revision() > revision);
        assert_eq!(book.policy_revision(), policy, "state, image and MAC are not policy");
        book.learn_container(container("aaa", "renamed", "172.18.0.2", None), t(2));
        assert_eq!(book.policy_revision(), policy + 1, "a name is (config tables are keyed by it)");
        let mut labelled = container("aaa", "renamed", "172.18.0.2", None);
        labelled.labels.insert("egress-guard.allow".into(), "198.51.100.7".into());
        book.learn_container(labelled, t(3));
        assert_eq!(book.policy_revision(), policy + 2);
        book.learn_network(Network { labels: [("egress-guard.egress".into(), "open".into())].into(), ..egnet() });
        assert_eq!(book.policy_revision(), policy + 3);
        book.container_gone("aaa", t(4));
        assert_eq!((book.policy_revision(), book.containers().count()), (policy + 4, 0));
    }

    /// dockerd frees an address before it announces the disconnect: should another container
    /// take it first, the one that had it no longer shows it.
    #[test]
    fn an_address_taken_over_leaves_its_former_holder() {
        let mut book = loaded(vec![]);
        book.learn_container(container("aaa", "first", "172.18.0.2", Some("fd00:18::2")), t(10));
        book.learn_container(container("bbb", "second", "172.18.0.2", None), t(20));
        let first = book.container("aaa").unwrap();
        assert_eq!(addresses(first), ["egnet fd00:18::2"]);
        assert_eq!(book.holder(ip("172.18.0.2")).unwrap().name, "second");
        // With no address left and not running, the former holder drops out.
        book.learn_container(
            Container { state: STARTING.into(), ..container("ccc", "third", "172.18.0.3", None) },
            t(30),
        );
        book.learn_container(container("ddd", "fourth", "172.18.0.3", None), t(40));
        assert!(book.container("ccc").is_none() && book.dormant.contains_key("ccc"));
    }

    #[test]
    fn a_container_renamed_while_stopped_restarts_under_its_new_name() {
        let mut book = loaded(vec![container("aaa", "old", "172.18.0.2", None)]);
        book.container_gone("aaa", t(10));
        // `docker rename old new` while stopped: its rename event's inspect.
        let stopped = Container { state: "exited".into(), ..container("aaa", "new", "172.18.0.2", None) };
        book.learn_container(stopped, t(11));
        assert_eq!(book.containers().count(), 0);
        let endpoint = super::super::model::NetworkEndpoint {
            name: "new".into(),
            ipv4_address: "172.18.0.2/16".into(),
            ..Default::default()
        };
        let egnet = Network { containers: [("aaa".to_string(), endpoint)].into(), ..egnet() };
        assert_eq!(book.learn_endpoint(egnet, "aaa", t(20)), []);
        let restarted = book.container("aaa").unwrap();
        assert_eq!((restarted.name.as_str(), restarted.state.as_str()), ("new", STARTING));
        assert!(book.network(EGNET).unwrap().containers.is_empty(), "endpoints are not kept");
    }

    #[test]
    fn dormant_containers_are_bounded() {
        let mut book = loaded(vec![]);
        for i in 0..MAX_DORMANT + 10 {
            let created = Event {
                kind: "container".into(),
                action: "create".into(),
                actor: super::super::model::Actor {
                    id: format!("c{i}"),
                    attributes: [("name".to_string(), format!("n{i}"))].into(),
                },
                ..Default::default()
            };
            book.on_event(&created);
        }
        assert_eq!(book.dormant.len(), MAX_DORMANT);
        assert!(!book.dormant.contains_key("c0") && book.dormant.contains_key(&format!("c{}", MAX_DORMANT + 9)));
    }
}
