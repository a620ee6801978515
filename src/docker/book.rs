//! Who held an address when: every container address dockerd handed out, as a history of
//! intervals `[from, until)`, so a blocked packet is blamed on the container that had its source
//! address at that moment even if the address has since gone to another. Also the index of the
//! current containers and networks (with their labels) that allow-lists follow. Pure: the
//! caller does the I/O ([`AddressBook::on_event`] says what to fetch) and passes times in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::model::{linux_bridge, Compose, Container, Event, Network};

/// An address that churns faster than the retention keeps at most this many intervals.
const MAX_HISTORY: usize = 64;

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

/// What the caller must fetch from dockerd to complete an event, and hand back with
/// [`AddressBook::learn_network`] / [`AddressBook::learn_container`] (or
/// [`AddressBook::container_gone`] if dockerd says it no longer exists). Networks come first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    Network {
        id: String,
    },
    /// Inspect the container; `at` is when the event happened, to pass back.
    Container {
        id: String,
        at: SystemTime,
    },
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
    containers: BTreeMap<String, Container>,
    networks: BTreeMap<String, Network>,
    loaded: bool,
    /// Since when we cannot see dockerd (its socket went away).
    blind_since: Option<SystemTime>,
    revision: u64,
}

impl AddressBook {
    /// A book that forgets an interval `retention` after it closed.
    pub fn new(retention: Duration) -> AddressBook {
        AddressBook {
            retention,
            history: HashMap::new(),
            held_by: HashMap::new(),
            containers: BTreeMap::new(),
            networks: BTreeMap::new(),
            loaded: false,
            blind_since: None,
            revision: 0,
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

    /// Running (and just created) containers, by id, with their labels and networks.
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
        self.networks = snapshot.networks.into_iter().map(|n| (n.id.clone(), n)).collect();
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
    }

    /// Applies what an event says by itself, and returns what must be fetched to apply the
    /// rest. Events of the other kinds and actions (exec, health, …) change nothing.
    pub fn on_event(&mut self, event: &Event) -> Vec<Fetch> {
        let at = event.at();
        let id = event.actor.id.as_str();
        match (event.kind.as_str(), event.action.as_str()) {
            // rename changes the name a log line shows; start brings addresses (again).
            ("container", "start" | "rename") => vec![Fetch::Container { id: id.to_string(), at }],
            ("container", "die" | "stop" | "destroy") => {
                self.container_gone(id, at);
                Vec::new()
            }
            // `kill` only says a signal was sent (`docker kill -s HUP` leaves the container
            // running); `die` follows when it ends the container.
            ("network", "connect") => {
                let Some(container) = event.attribute("container") else { return Vec::new() };
                let mut fetch = Vec::new();
                if !self.networks.contains_key(id) {
                    fetch.push(Fetch::Network { id: id.to_string() });
                }
                fetch.push(Fetch::Container { id: container.to_string(), at });
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
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// A network as dockerd describes it now.
    pub fn learn_network(&mut self, network: Network) {
        if self.networks.get(&network.id) != Some(&network) {
            self.networks.insert(network.id.clone(), network);
            self.revision += 1;
        }
    }

    /// A container as dockerd describes it now (inspected after an event at `at`): its
    /// addresses are held by it from `at` on, and those it no longer has are released at `at`.
    /// An address still held by another container passes to this one at `at`.
    pub fn learn_container(&mut self, container: Container, at: SystemTime) {
        if container.has_exited() {
            self.container_gone(&container.id, at);
            return;
        }
        let want = self.identities(&container);
        self.set_holdings(&container.id, want, at, Some(at));
        if self.containers.get(&container.id) != Some(&container) {
            self.containers.insert(container.id.clone(), container);
            self.revision += 1;
        }
    }

    /// The container died or was removed at `at`: it holds nothing from then on.
    pub fn container_gone(&mut self, id: &str, at: SystemTime) {
        self.set_holdings(id, Vec::new(), at, Some(at));
        if self.containers.remove(id).is_some() {
            self.revision += 1;
        }
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
            // Another container's, if the book missed its end: it ended when this one took it.
            self.close(addr, close_at);
            self.open(addr, who, open_from);
        }
        if !now_held.is_empty() {
            self.held_by.insert(id.to_string(), now_held);
        }
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

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::super::http::Conn;
    use super::super::model::{Attachment, ContainerSummary};
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
        // A network the book has not seen yet is fetched before the container.
        assert_eq!(
            book.on_event(&event("connect", "abc")),
            [Fetch::Network { id: "abc".into() }, Fetch::Container { id: "aaa".into(), at: t(20) }]
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
    /// only moments after each connect are asked about).
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
            for fetch in book.on_event(event) {
                fetched.push(format!("{} {}", event.kind, event.action));
                match fetch {
                    Fetch::Network { id } => {
                        book.learn_network(networks.iter().find(|n| n.id == id).unwrap().clone());
                    }
                    Fetch::Container { id, at } => {
                        book.learn_container(list.iter().find(|c| c.id == id).unwrap().into(), at);
                    }
                }
            }
        }
        assert_eq!(
            fetched,
            [
                "network create",
                "network create",
                "network connect",
                "container start",
                "network connect",
                "container start",
                "network connect"
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
}
