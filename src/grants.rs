//! Allowances per container and per network (pure). Docker labels on a container or a network
//! (`egress-guard.allow`, a comma-separated list in `--allow` syntax,
//! `egress-guard.allow-domain`, the same in `--allow-domain` syntax, and
//! `egress-guard.egress=open`) and the config file's `[container.NAME]`, `[network.NAME]` and
//! `[service.NAME]` tables say what a container may reach beyond the policy's own allow-list.
//! Here they become source ranges (a container's addresses, a network's subnets) with what each
//! may reach, for the sets of our table. Allowances only ever add: the default stays closed,
//! and a malformed label gives nothing (it is reported, the rest of the guard stays).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::dns::names::AllowDomain;
use crate::docker::{Container, Network};
use crate::policy::{self, Allow, ValueError};

/// Destinations a container (or every member of a network) may reach, `--allow` syntax.
pub const ALLOW_LABEL: &str = "egress-guard.allow";
/// Names a container (or every member of a network) may resolve and reach through watch's
/// DNS forwarder, `--allow-domain` syntax.
pub const ALLOW_DOMAIN_LABEL: &str = "egress-guard.allow-domain";
/// `open`: the container (or the network's members) may reach anywhere; `closed`: the default.
pub const EGRESS_LABEL: &str = "egress-guard.egress";

/// What one container or network may reach besides the policy's allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    pub allow: Vec<Allow>,
    /// Names whose looked-up addresses it may reach (`egress-guard.allow-domain`).
    pub domains: Vec<AllowDomain>,
    /// Anywhere (`egress-guard.egress=open`).
    pub open: bool,
}

impl Grant {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.domains.is_empty() && !self.open
    }

    fn add(&mut self, other: &Grant) {
        for a in &other.allow {
            if !self.allow.contains(a) {
                self.allow.push(*a);
            }
        }
        for d in &other.domains {
            if !self.domains.contains(d) {
                self.domains.push(d.clone());
            }
        }
        self.open |= other.open;
    }

    /// As `status` shows it: `open`, or the destinations in `--allow` syntax and the names in
    /// `--allow-domain` syntax.
    pub fn describe(&self) -> String {
        if self.open {
            return "open (anywhere)".into();
        }
        let all: Vec<String> =
            self.allow.iter().map(Allow::to_string).chain(self.domains.iter().map(AllowDomain::to_string)).collect();
        match all.is_empty() {
            true => "closed".into(),
            false => all.join(", "),
        }
    }
}

/// How `egress` is written, in a label or in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Egress {
    Open,
    Closed,
}

impl Egress {
    fn from_word(word: &str) -> Option<Egress> {
        match word {
            "open" => Some(Egress::Open),
            "closed" => Some(Egress::Closed),
            _ => None,
        }
    }
}

/// The config file's per-container, per-network and per-service tables, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub containers: BTreeMap<String, Grant>,
    pub networks: BTreeMap<String, Grant>,
    /// By docker compose service (the `com.docker.compose.service` label).
    pub services: BTreeMap<String, Grant>,
}

impl Grants {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.services.is_empty()
    }

    /// Whether any table allows names (then watch answers DNS for the containers it names).
    pub fn has_domains(&self) -> bool {
        [&self.containers, &self.networks, &self.services]
            .iter()
            .flat_map(|m| m.values())
            .any(|g| !g.domains.is_empty())
    }
}

/// A label that cannot work: the object it is on gets nothing from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label {ALLOW_LABEL}: {entry:?}: {why}")]
    Allow { entry: String, why: ValueError },
    #[error("label {ALLOW_LABEL} is empty: list destinations (e.g. 198.51.100.53/32:53/udp), or drop the label")]
    EmptyAllow,
    #[error("label {EGRESS_LABEL}={0:?}: takes open or closed")]
    Egress(String),
    #[error("label {ALLOW_DOMAIN_LABEL}: {entry:?}: {why}")]
    AllowDomain { entry: String, why: ValueError },
    #[error(
        "label {ALLOW_DOMAIN_LABEL} is empty: list names (e.g. pypi.org,*.pythonhosted.org:443/tcp), or drop the label"
    )]
    EmptyAllowDomain,
}

/// The grant a container's or network's labels give; labels of ours that cannot be read are
/// errors, other labels are not looked at.
pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<Grant, LabelError> {
    let mut grant = Grant::default();
    if let Some(list) = labels.get(ALLOW_LABEL) {
        let entries: Vec<&str> = list.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        if entries.is_empty() {
            return Err(LabelError::EmptyAllow);
        }
        for entry in entries {
            let allow = policy::parse_allow(entry).map_err(|why| LabelError::Allow { entry: entry.into(), why })?;
            grant.add(&Grant { allow: vec![allow], ..Grant::default() });
        }
    }
    if let Some(list) = labels.get(ALLOW_DOMAIN_LABEL) {
        let entries: Vec<&str> = list.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        if entries.is_empty() {
            return Err(LabelError::EmptyAllowDomain);
        }
        for entry in entries {
            let domain = policy::parse_allow_domain(entry)
                .map_err(|why| LabelError::AllowDomain { entry: entry.into(), why })?;
            grant.add(&Grant { domains: vec![domain], ..Grant::default() });
        }
    }
    if let Some(word) = labels.get(EGRESS_LABEL) {
        match Egress::from_word(word.trim()) {
            Some(e) => grant.open = e == Egress::Open,
            None => return Err(LabelError::Egress(word.clone())),
        }
    }
    Ok(grant)
}

/// One source range and what it may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceGrant {
    pub source: IpNet,
    pub grant: Grant,
}

/// A running container as `status` shows it: its addresses, what it may reach beyond the
/// policy's allow-list, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContainerView {
    pub name: String,
    /// The first 12 hex digits, as `docker ps` shows it.
    pub id: String,
    pub addresses: Vec<IpAddr>,
    /// `open (anywhere)`, `closed`, or the destinations.
    pub egress: String,
    /// Where that comes from: `label`, `network NAME (label)`, `config container.NAME`, …
    pub from: Vec<String>,
    /// The names it may look up and reach (its own and its networks'): what watch's DNS
    /// forwarder answers it. In `egress` for people.
    #[serde(skip)]
    pub domains: Vec<AllowDomain>,
}

impl Live {
    /// Whether any running container, or any network (its members to come), may look names
    /// up: then the table keeps the redirect and the sets for them.
    pub fn has_domains(&self) -> bool {
        self.containers.iter().any(|c| !c.domains.is_empty())
            || self.sources.iter().any(|s| !s.grant.domains.is_empty())
    }
}

/// What the sets of our table hold for the containers Docker runs now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// Disjointness is not needed here: the table's layout takes care of overlaps.
    pub sources: Vec<SourceGrant>,
    pub containers: Vec<ContainerView>,
    /// Malformed labels, one line each, naming the container or network.
    pub problems: Vec<String>,
}

/// Grants of the running containers and their networks, from labels and the config's tables.
pub fn resolve<'a>(
    containers: impl IntoIterator<Item = &'a Container>,
    networks: impl IntoIterator<Item = &'a Network>,
    config: &Grants,
) -> Live {
    let mut live = Live::default();
    let mut by_network: BTreeMap<&str, (Grant, Vec<String>)> = BTreeMap::new();
    for net in networks {
        let (grant, from) = network_grant(net, config, &mut live.problems);
        if grant.is_empty() {
            continue;
        }
        for source in net.subnets() {
            live.sources.push(SourceGrant { source, grant: grant.clone() });
        }
        by_network.insert(net.id.as_str(), (grant, from));
    }
    for c in containers.into_iter().filter(|c| !c.has_exited()) {
        let (own, mut from) = container_grant(c, config, &mut live.problems);
        let addresses: Vec<IpAddr> = c.addresses().map(|(ip, _, _)| ip).collect();
        if !own.is_empty() {
            live.sources
                .extend(addresses.iter().map(|ip| SourceGrant { source: IpNet::from(*ip), grant: own.clone() }));
        }
        let mut effective = own;
        for attachment in c.networks.values() {
            if let Some((grant, net_from)) = by_network.get(attachment.network_id.as_str()) {
                effective.add(grant);
                from.extend(net_from.iter().cloned());
            }
        }
        from.dedup();
        live.containers.push(ContainerView {
            name: c.name.clone(),
            id: c.id.chars().take(12).collect(),
            addresses,
            egress: effective.describe(),
            from,
            domains: if effective.open { Vec::new() } else { effective.domains },
        });
    }
    live
}

fn network_grant(net: &Network, config: &Grants, problems: &mut Vec<String>) -> (Grant, Vec<String>) {
    let mut grant = Grant::default();
    let mut from = Vec::new();
    match from_labels(&net.labels) {
        Ok(g) if !g.is_empty() => {
            grant.add(&g);
            from.push(format!("network {} (label)", net.name));
        }
        Ok(_) => {}
        Err(e) => problems.push(format!("network {}: {e}; its members get nothing from it", net.name)),
    }
    if let Some(g) = config.networks.get(&net.name) {
        grant.add(g);
        from.push(format!("network {} (config network.{})", net.name, net.name));
    }
    (grant, from)
}

fn container_grant(c: &Container, config: &Grants, problems: &mut Vec<String>) -> (Grant, Vec<String>) {
    let mut grant = Grant::default();
    let mut from = Vec::new();
    match from_labels(&c.labels) {
        Ok(g) if !g.is_empty() => {
            grant.add(&g);
            from.push("label".to_string());
        }
        Ok(_) => {}
        Err(e) => problems.push(format!("container {}: {e}; it gets nothing from it", c.name)),
    }
    if let Some(g) = config.containers.get(&c.name) {
        grant.add(g);
        from.push(format!("config container.{}", c.name));
    }
    if let Some(service) = c.compose().map(|s| s.service).filter(|s| !s.is_empty()) {
        if let Some(g) = config.services.get(&service) {
            grant.add(g);
            from.push(format!("config service.{service}"));
        }
    }
    (grant, from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::Attachment;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn allow(list: &[&str]) -> Vec<Allow> {
        list.iter().map(|a| policy::parse_allow(a).unwrap()).collect()
    }

    fn container(name: &str, network_id: &str, ip: &str, l: &[(&str, &str)]) -> Container {
        let attachment =
            Attachment { network_id: network_id.into(), ipv4: ip.parse().ok(), ipv6: None, mac: String::new() };
        Container {
            id: format!("{name:0<64}"),
            name: name.into(),
            image: "busybox".into(),
            labels: labels(l),
            state: "running".into(),
            networks: [("ctf".to_string(), attachment)].into(),
        }
    }

    fn network(id: &str, name: &str, subnet: &str, l: &[(&str, &str)]) -> Network {
        let json = format!(
            r#"{{"Id":"{id}","Name":"{name}","Driver":"bridge","IPAM":{{"Config":[{{"Subnet":"{subnet}"}}]}}}}"#
        );
        Network { labels: labels(l), ..serde_json::from_str(&json).unwrap() }
    }

    #[test]
    fn labels_take_the_allow_syntax_and_egress_words() {
        let g = from_labels(&labels(&[(ALLOW_LABEL, "198.51.100.53/32:53/udp, 203.0.113.0/24")])).unwrap();
        assert_eq!(g.allow, allow(&["198.51.100.53:53/udp", "203.0.113.0/24"]));
        assert!(!g.open);
        assert!(from_labels(&labels(&[(EGRESS_LABEL, "open")])).unwrap().open);
        assert!(from_labels(&labels(&[(EGRESS_LABEL, "closed")])).unwrap().is_empty());
        assert!(from_labels(&labels(&[("com.example", "x")])).unwrap().is_empty());
    }

    #[test]
    fn a_malformed_label_is_an_error_that_names_the_entry() {
        let bad = from_labels(&labels(&[(ALLOW_LABEL, "198.51.100.53/32,198.51.100.300")])).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "label egress-guard.allow: \"198.51.100.300\": not an IPv4 or IPv6 CIDR (e.g. 172.17.0.0/16, fd00::/8)"
        );
        assert_eq!(from_labels(&labels(&[(ALLOW_LABEL, " , ")])), Err(LabelError::EmptyAllow));
        assert_eq!(from_labels(&labels(&[(EGRESS_LABEL, "yes")])), Err(LabelError::Egress("yes".into())));
    }

    #[test]
    fn containers_grant_from_their_addresses_and_networks_from_their_subnets() {
        let nets = [network("n1", "ctf_default", "172.18.0.0/16", &[(ALLOW_LABEL, "198.51.100.0/24")])];
        let web = container("web", "n1", "172.18.0.2", &[(ALLOW_LABEL, "203.0.113.7:443/tcp")]);
        let db = container("db", "n1", "172.18.0.3", &[]);
        let live = resolve([&web, &db], &nets, &Grants::default());
        assert_eq!(
            live.sources,
            [
                SourceGrant {
                    source: "172.18.0.0/16".parse().unwrap(),
                    grant: Grant { allow: allow(&["198.51.100.0/24"]), ..Grant::default() }
                },
                SourceGrant {
                    source: "172.18.0.2/32".parse().unwrap(),
                    grant: Grant { allow: allow(&["203.0.113.7:443/tcp"]), ..Grant::default() }
                },
            ]
        );
        assert_eq!(live.containers[0].egress, "203.0.113.7/32:443/tcp, 198.51.100.0/24");
        assert_eq!(live.containers[0].from, ["label", "network ctf_default (label)"]);
        assert_eq!(live.containers[1].egress, "198.51.100.0/24");
        assert!(live.problems.is_empty());
    }

    #[test]
    fn config_tables_grant_by_container_network_and_compose_service() {
        let mut config = Grants::default();
        config.containers.insert("web".into(), Grant { allow: allow(&["198.51.100.1"]), ..Grant::default() });
        config.services.insert("worker".into(), Grant { open: true, ..Grant::default() });
        config.networks.insert("bridge".into(), Grant { allow: allow(&["203.0.113.0/24"]), ..Grant::default() });
        let nets = [network("n0", "bridge", "172.17.0.0/16", &[])];
        let web = container("web", "n0", "172.17.0.2", &[]);
        let worker = container(
            "w1",
            "n0",
            "172.17.0.3",
            &[("com.docker.compose.project", "p"), ("com.docker.compose.service", "worker")],
        );
        let live = resolve([&web, &worker], &nets, &config);
        assert_eq!(live.sources.len(), 3);
        assert_eq!(live.containers[0].from, ["config container.web", "network bridge (config network.bridge)"]);
        assert_eq!(live.containers[1].egress, "open (anywhere)");
    }

    #[test]
    fn names_come_from_the_containers_label_and_its_networks_and_open_needs_none() {
        let d = |list: &[&str]| list.iter().map(|n| policy::parse_allow_domain(n).unwrap()).collect::<Vec<_>>();
        let g = from_labels(&labels(&[(ALLOW_DOMAIN_LABEL, "pypi.test, *.pythonhosted.test:443/tcp")])).unwrap();
        assert_eq!(g.domains, d(&["pypi.test", "*.pythonhosted.test:443/tcp"]));
        assert_eq!(g.describe(), "pypi.test, *.pythonhosted.test:443/tcp");
        let bad = from_labels(&labels(&[(ALLOW_DOMAIN_LABEL, "pypi.test,198.51.100.7")])).unwrap_err();
        assert!(bad.to_string().starts_with("label egress-guard.allow-domain: \"198.51.100.7\": "), "{bad}");
        assert_eq!(from_labels(&labels(&[(ALLOW_DOMAIN_LABEL, ",")])), Err(LabelError::EmptyAllowDomain));

        let nets = [network("n1", "ci", "172.18.0.0/16", &[(ALLOW_DOMAIN_LABEL, "deb.test")])];
        let web = container("web", "n1", "172.18.0.2", &[(ALLOW_DOMAIN_LABEL, "pypi.test")]);
        let free = container("free", "n1", "172.18.0.3", &[(EGRESS_LABEL, "open")]);
        let live = resolve([&web, &free], &nets, &Grants::default());
        assert_eq!(live.containers[0].domains, d(&["pypi.test", "deb.test"]));
        assert!(live.containers[1].domains.is_empty(), "open: the forwarder has nothing to answer it");
        assert!(live.has_domains());
        let empty = [network("n1", "ci", "172.18.0.0/16", &[(ALLOW_DOMAIN_LABEL, "deb.test")])];
        assert!(resolve([], &empty, &Grants::default()).has_domains(), "a labelled network, no member yet");
        let mut config = Grants::default();
        config.containers.insert("db".into(), Grant { domains: d(&["pypi.test"]), ..Grant::default() });
        assert!(config.has_domains() && !Grants::default().has_domains());
    }

    #[test]
    fn a_malformed_label_drops_only_that_object_and_is_reported() {
        let bad = container("bad", "n1", "172.18.0.9", &[(ALLOW_LABEL, "anywhere")]);
        let good = container("good", "n1", "172.18.0.10", &[(EGRESS_LABEL, "open")]);
        let live = resolve([&bad, &good], &[], &Grants::default());
        assert_eq!(
            live.sources,
            [SourceGrant {
                source: "172.18.0.10/32".parse().unwrap(),
                grant: Grant { open: true, ..Grant::default() }
            }]
        );
        assert_eq!(live.problems.len(), 1);
        assert!(
            live.problems[0].starts_with("container bad: label egress-guard.allow: \"anywhere\""),
            "{}",
            live.problems[0]
        );
        assert_eq!(live.containers[0].egress, "closed");
    }
}
