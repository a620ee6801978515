//! The parts of dockerd's JSON we read: containers (list and inspect), networks, events and the
//! version. Only fields that Docker 20.10 (API 1.41) and 29 both send; anything Docker may omit
//! or send as `null` defaults to empty.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// The state the address book gives a container between its `network connect` and its
/// `start` (dockerd itself still says `created`, or `exited` for one being restarted).
pub const STARTING: &str = "starting";

/// Attributes dockerd adds to a `container create` event besides the container's labels (which
/// it copies in first, so a label of one of these names is shadowed there).
const CREATE_ATTRIBUTES: &[&str] = &["name", "image"];

/// Labels docker compose puts on the containers it creates.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
/// The bridge driver's option naming the Linux bridge (the default network sets `docker0`).
pub const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// Go encodes an empty map or slice as `null`: read that as empty.
fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

type Labels = BTreeMap<String, String>;

/// One network attachment as `NetworkSettings.Networks.NAME` shows it (list and inspect alike).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EndpointSettings {
    #[serde(rename = "NetworkID", default)]
    pub network_id: String,
    /// Empty while the container is not running.
    #[serde(rename = "IPAddress", default)]
    pub ip_address: String,
    /// Empty unless the network has IPv6 on.
    #[serde(rename = "GlobalIPv6Address", default)]
    pub global_ipv6_address: String,
    #[serde(rename = "MacAddress", default)]
    pub mac_address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NetworkSettings {
    #[serde(rename = "Networks", default, deserialize_with = "null_default")]
    pub networks: BTreeMap<String, EndpointSettings>,
}

/// An entry of `GET /containers/json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    #[serde(rename = "Id")]
    pub id: String,
    /// `/name`, plus `/other/alias` entries for legacy links.
    #[serde(default, deserialize_with = "null_default")]
    pub names: Vec<String>,
    /// The image as the user named it (`egprobe`), not its id.
    #[serde(default)]
    pub image: String,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: Labels,
    /// `running`, `created`, `exited`, …
    #[serde(default)]
    pub state: String,
    #[serde(default, deserialize_with = "null_default")]
    pub network_settings: NetworkSettings,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectConfig {
    /// The image as the user named it; the top-level `Image` of inspect is the sha256 id.
    #[serde(default)]
    pub image: String,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: Labels,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectState {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub running: bool,
}

/// `GET /containers/ID/json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
    #[serde(rename = "Id")]
    pub id: String,
    /// `/name`.
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub config: InspectConfig,
    #[serde(default, deserialize_with = "null_default")]
    pub state: InspectState,
    #[serde(default, deserialize_with = "null_default")]
    pub network_settings: NetworkSettings,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct IpamConfig {
    #[serde(rename = "Subnet", default)]
    pub subnet: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Ipam {
    #[serde(rename = "Config", default, deserialize_with = "null_default")]
    pub config: Vec<IpamConfig>,
}

/// An entry of `GET /networks`, or `GET /networks/ID`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// `bridge`, `host`, `null`, `macvlan`, `overlay`, …
    #[serde(default)]
    pub driver: String,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: Labels,
    #[serde(default, deserialize_with = "null_default")]
    pub options: Labels,
    #[serde(rename = "EnableIPv6", default)]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM", default, deserialize_with = "null_default")]
    pub ipam: Ipam,
    /// Its endpoints by container id, in `GET /networks/ID` only (`GET /networks` sends it
    /// empty). An endpoint is listed from the moment the container joined the network, which is
    /// before the `network connect` event and before the container's process runs; one without
    /// a container yet is keyed `ep-ENDPOINTID`.
    #[serde(rename = "Containers", default, deserialize_with = "null_default")]
    pub containers: BTreeMap<String, NetworkEndpoint>,
}

/// A container's endpoint as `GET /networks/ID` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NetworkEndpoint {
    /// The container's name.
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "MacAddress", default)]
    pub mac_address: String,
    /// With its prefix length (`172.17.0.2/16`); empty on networks without addresses (host,
    /// none).
    #[serde(rename = "IPv4Address", default)]
    pub ipv4_address: String,
    /// Likewise (`fd00:17::242:ac11:2/64`); empty unless the network has IPv6 on.
    #[serde(rename = "IPv6Address", default)]
    pub ipv6_address: String,
}

impl NetworkEndpoint {
    /// The container's addresses on network `network_id`, as an inspect would show them.
    pub fn attachment(&self, network_id: &str) -> Attachment {
        /// An address without its prefix length; dockerd sends the two together.
        fn address<T: std::str::FromStr>(cidr: &str) -> Option<T> {
            cidr.split('/').next()?.parse().ok()
        }
        Attachment {
            network_id: network_id.to_string(),
            ipv4: address(&self.ipv4_address),
            ipv6: address(&self.ipv6_address),
            mac: self.mac_address.clone(),
        }
    }
}

impl Network {
    /// The Linux bridge its containers hang off; `None` for drivers other than `bridge`.
    pub fn bridge_name(&self) -> Option<String> {
        linux_bridge(&self.driver, &self.id, &self.options)
    }

    /// Its subnets (IPv4 and IPv6), skipping any that do not parse.
    pub fn subnets(&self) -> Vec<IpNet> {
        self.ipam.config.iter().filter_map(|c| c.subnet.parse().ok()).collect()
    }
}

/// The Linux bridge of a network of `driver`: the bridge-name option when set (the default
/// network sets it to `docker0`), else `br-` and the first 12 hex digits of the network id, as
/// dockerd's bridge driver names it.
pub fn linux_bridge(driver: &str, id: &str, options: &Labels) -> Option<String> {
    if driver != "bridge" {
        return None;
    }
    match options.get(BRIDGE_NAME_OPTION) {
        Some(name) if !name.is_empty() => Some(name.clone()),
        _ => Some(format!("br-{}", id.get(..12).unwrap_or(id))),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID", default)]
    pub id: String,
    /// For containers: `name`, `image` and the container's labels (and `exitCode`, `signal`);
    /// for networks: `name`, `type` and, on connect/disconnect, `container`.
    #[serde(rename = "Attributes", default, deserialize_with = "null_default")]
    pub attributes: Labels,
}

/// One object of the `GET /events` stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Event {
    /// `container`, `network`, `image`, …
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// `create`, `start`, `die`, `connect`, …; also `exec_start: CMD` and `health_status: …`.
    #[serde(rename = "Action", default)]
    pub action: String,
    #[serde(rename = "Actor", default, deserialize_with = "null_default")]
    pub actor: Actor,
    #[serde(default)]
    pub time: i64,
    #[serde(rename = "timeNano", default)]
    pub time_nano: i64,
}

impl Event {
    /// When dockerd says it happened (its clock is ours: the socket is local).
    pub fn at(&self) -> SystemTime {
        if self.time_nano > 0 {
            UNIX_EPOCH + Duration::from_nanos(self.time_nano as u64)
        } else {
            UNIX_EPOCH + Duration::from_secs(self.time.max(0) as u64)
        }
    }

    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.actor.attributes.get(key).map(String::as_str)
    }
}

/// `GET /version`, the fields a log line wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(rename = "MinAPIVersion", default)]
    pub min_api_version: String,
}

/// A compose project and service, from the labels compose sets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Compose {
    pub project: String,
    /// Empty if the service label is missing.
    pub service: String,
}

impl Compose {
    pub fn from_labels(labels: &Labels) -> Option<Compose> {
        let project = labels.get(COMPOSE_PROJECT).filter(|p| !p.is_empty())?;
        Some(Compose { project: project.clone(), service: labels.get(COMPOSE_SERVICE).cloned().unwrap_or_default() })
    }
}

/// A container's addresses on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub network_id: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub mac: String,
}

impl From<&EndpointSettings> for Attachment {
    fn from(e: &EndpointSettings) -> Attachment {
        Attachment {
            network_id: e.network_id.clone(),
            ipv4: e.ip_address.parse().ok(),
            ipv6: e.global_ipv6_address.parse().ok(),
            mac: e.mac_address.clone(),
        }
    }
}

/// A container as the address book keeps it, from a list entry or an inspect alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub image: String,
    pub labels: Labels,
    /// `running`, `created`, `exited`, … as dockerd says; [`STARTING`] while the address book
    /// knows its addresses from its `network connect` but has not seen it start.
    pub state: String,
    /// By network name.
    pub networks: BTreeMap<String, Attachment>,
}

impl Container {
    pub fn compose(&self) -> Option<Compose> {
        Compose::from_labels(&self.labels)
    }

    /// Whether its addresses are gone (it stopped): dockerd releases them when it exits.
    pub fn has_exited(&self) -> bool {
        matches!(self.state.as_str(), "exited" | "dead" | "removing")
    }

    /// Every address it holds, with the network it holds it on.
    pub fn addresses(&self) -> impl Iterator<Item = (IpAddr, &str, &Attachment)> + '_ {
        self.networks.iter().flat_map(|(name, a)| {
            let v4 = a.ipv4.map(IpAddr::V4);
            let v6 = a.ipv6.map(IpAddr::V6);
            v4.into_iter().chain(v6).map(move |ip| (ip, name.as_str(), a))
        })
    }
}

fn attachments(settings: &NetworkSettings) -> BTreeMap<String, Attachment> {
    settings.networks.iter().map(|(name, e)| (name.clone(), Attachment::from(e))).collect()
}

impl Container {
    /// A container as its `container create` event describes it: the labels (the image's and
    /// its own; dockerd copies them into the event's attributes), its name and image, no
    /// networks yet. `None` for events of other kinds.
    pub fn from_create_event(event: &Event) -> Option<Container> {
        if (event.kind.as_str(), event.action.as_str()) != ("container", "create") || event.actor.id.is_empty() {
            return None;
        }
        let attributes = &event.actor.attributes;
        let labels = attributes
            .iter()
            .filter(|(k, _)| !CREATE_ATTRIBUTES.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()));
        Some(Container {
            id: event.actor.id.clone(),
            name: attributes.get("name").cloned().unwrap_or_default(),
            image: attributes.get("image").cloned().unwrap_or_default(),
            labels: labels.collect(),
            state: "created".to_string(),
            networks: BTreeMap::new(),
        })
    }
}

impl From<&ContainerSummary> for Container {
    fn from(s: &ContainerSummary) -> Container {
        // Legacy links add `/other/alias` names; the container's own has no second slash.
        let name = s.names.iter().find(|n| !n.trim_start_matches('/').contains('/')).or(s.names.first());
        Container {
            id: s.id.clone(),
            name: name.map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default(),
            image: s.image.clone(),
            labels: s.labels.clone(),
            state: s.state.clone(),
            networks: attachments(&s.network_settings),
        }
    }
}

impl From<&ContainerInspect> for Container {
    fn from(i: &ContainerInspect) -> Container {
        Container {
            id: i.id.clone(),
            name: i.name.trim_start_matches('/').to_string(),
            image: i.config.image.clone(),
            labels: i.config.labels.clone(),
            state: i.state.status.clone(),
            networks: attachments(&i.network_settings),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::Conn;
    use super::super::testdata;
    use super::*;

    /// The JSON body of a captured response.
    fn body<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let bytes = testdata(name);
        let response = Conn::new(&bytes[..], name.into()).response(name, 1 << 20).unwrap();
        serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn by_name(list: &[ContainerSummary]) -> BTreeMap<String, Container> {
        list.iter().map(Container::from).map(|c| (c.name.clone(), c)).collect()
    }

    #[test]
    fn container_list_v4() {
        let list = by_name(&body::<Vec<ContainerSummary>>("containers-v4.http"));
        assert_eq!(list.keys().collect::<Vec<_>>(), ["proj-api-1", "web"]);
        let web = &list["web"];
        assert_eq!((web.image.as_str(), web.state.as_str(), web.compose()), ("egprobe", "running", None));
        let addrs: Vec<_> = web.addresses().map(|(ip, net, _)| (ip, net)).collect();
        assert_eq!(addrs, [(ip("172.17.0.2"), "bridge"), (ip("172.19.0.2"), "named")]);
        assert_eq!(web.networks["bridge"].mac, "02:42:ac:11:00:02");
        assert!(web.networks["bridge"].network_id.starts_with("232910d27099"));
        let api = &list["proj-api-1"];
        assert_eq!(api.compose(), Some(Compose { project: "proj".into(), service: "api".into() }));
        assert_eq!(api.labels["egress-guard.allow"], "198.51.100.7");
        assert_eq!(api.networks["egnet"].ipv4, Some("172.18.0.2".parse().unwrap()));
        assert_eq!(api.networks["egnet"].ipv6, None);
    }

    #[test]
    fn container_list_v6_has_addresses_per_network_only() {
        let list = by_name(&body::<Vec<ContainerSummary>>("containers-v6.http"));
        let dual: Vec<_> = list["dual"].addresses().map(|(ip, net, _)| (ip, net)).collect();
        assert_eq!(dual, [(ip("172.31.0.2"), "egnet6"), (ip("fd00:18::2"), "egnet6")]);
        // On the default bridge dockerd 20.10 derives the IPv6 address from the MAC.
        let web6: Vec<_> = list["web6"].addresses().map(|(ip, _, _)| ip).collect();
        assert_eq!(web6, [ip("172.17.0.2"), ip("fd00:17::242:ac11:2")]);
    }

    #[test]
    fn inspect_matches_the_list_entry() {
        let list = by_name(&body::<Vec<ContainerSummary>>("containers-v4.http"));
        let web = Container::from(&body::<ContainerInspect>("inspect-web-v4.http"));
        assert_eq!(web, list["web"]);
        let api = body::<ContainerInspect>("inspect-compose-v4.http");
        // Inspect's top-level Image is the image id; the name the user gave is in Config.
        assert_eq!(Container::from(&api), list["proj-api-1"]);
        assert!(api.state.running);
        let dual = Container::from(&body::<ContainerInspect>("inspect-dual-v6.http"));
        assert_eq!(dual.networks["egnet6"].ipv6, Some("fd00:18::2".parse().unwrap()));
    }

    #[test]
    fn networks_and_their_bridges() {
        let nets: BTreeMap<String, Network> =
            body::<Vec<Network>>("networks-v4.http").into_iter().map(|n| (n.name.clone(), n)).collect();
        let bridge = |name: &str| nets[name].bridge_name();
        assert_eq!(bridge("bridge").as_deref(), Some("docker0"));
        assert_eq!(bridge("named").as_deref(), Some("egbr1"));
        assert_eq!(bridge("egnet"), Some(format!("br-{}", &nets["egnet"].id[..12])));
        assert_eq!(bridge("egnet").as_deref(), Some("br-e8770a5aac58"));
        assert_eq!((bridge("host"), bridge("none")), (None, None));
        assert_eq!(nets["egnet"].labels["egress-guard.allow"], "203.0.113.0/24,53/udp");
        assert_eq!(nets["egnet"].subnets(), ["172.18.0.0/16".parse::<IpNet>().unwrap()]);
        assert!(nets["none"].subnets().is_empty());
        let one = body::<Network>("network-egnet-v4.http");
        assert_eq!((one.id.as_str(), one.labels.len()), (nets["egnet"].id.as_str(), 2));

        let v6: BTreeMap<String, Network> =
            body::<Vec<Network>>("networks-v6.http").into_iter().map(|n| (n.name.clone(), n)).collect();
        assert!(v6["bridge"].enable_ipv6 && v6["egnet6"].enable_ipv6);
        let subnets = |name: &str| v6[name].subnets().iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(subnets("bridge"), ["172.17.0.0/16", "fd00:17::/64"]);
        assert_eq!(subnets("egnet6"), ["172.31.0.0/24", "fd00:18::/64"]);
    }

    #[test]
    fn events_of_the_captured_stream() {
        let bytes = testdata("events-v4.http");
        let text = String::from_utf8_lossy(&bytes);
        let events: Vec<Event> =
            text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
        let seen: Vec<String> = events.iter().map(|e| format!("{} {}", e.kind, e.action)).collect();
        assert_eq!(
            seen[..5],
            ["network create", "network create", "container create", "network connect", "container start"]
        );
        let connect = &events[3];
        assert_eq!(connect.attribute("name"), Some("bridge"));
        assert_eq!(connect.attribute("container"), Some(events[2].actor.id.as_str()));
        let start_api = &events[7];
        assert_eq!((start_api.action.as_str(), start_api.attribute("name")), ("start", Some("proj-api-1")));
        // Container events carry the container's labels among their attributes.
        assert_eq!(start_api.attribute(COMPOSE_PROJECT), Some("proj"));
        assert_eq!(start_api.at(), UNIX_EPOCH + Duration::from_nanos(1796153631804201349));
        assert_eq!(events.iter().filter(|e| e.action == "die").count(), 2);
    }

    #[test]
    fn a_network_lists_its_endpoints_with_their_addresses() {
        let net: Network = body("start/connect-4-network.http");
        assert_eq!(net.containers.len(), 2);
        let early = &net.containers["36bee288496d76f859b0ef0c43e1c131382041f4231f8b9d3fcbeb5488dd6a01"];
        assert_eq!((early.name.as_str(), early.ipv4_address.as_str()), ("early", "172.31.1.3/24"));
        let attachment = early.attachment(&net.id);
        assert_eq!(attachment.network_id, net.id);
        assert_eq!(attachment.ipv4, Some("172.31.1.3".parse().unwrap()));
        assert_eq!(attachment.ipv6, Some("fd00:31:1::3".parse().unwrap()));
        assert_eq!(attachment.mac, "02:42:ac:1f:01:03");
        // On the default bridge dockerd 20.10 derives the IPv6 address from the MAC.
        let bridge: Network = body("start/connect-1-network.http");
        let (_, early) = bridge.containers.iter().next().unwrap();
        assert_eq!(early.attachment(&bridge.id).ipv6, Some("fd00:17::242:ac11:2".parse().unwrap()));
        // host and none list their containers with empty addresses.
        let host = NetworkEndpoint { name: "hostc".into(), ..Default::default() }.attachment("h");
        assert_eq!((host.ipv4, host.ipv6), (None, None));
        // The list of all networks leaves the endpoints out.
        assert!(body::<Vec<Network>>("networks-v4.http").iter().all(|n| n.containers.is_empty()));
    }

    #[test]
    fn a_create_event_carries_the_labels_name_and_image() {
        let bytes = testdata("start/events.http");
        let text = String::from_utf8_lossy(&bytes);
        let events: Vec<Event> =
            text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
        let early6 = events.iter().filter_map(Container::from_create_event).nth(1).unwrap();
        assert_eq!(
            (early6.name.as_str(), early6.image.as_str(), early6.state.as_str()),
            ("early6", "egprobe", "created")
        );
        let labels: Vec<_> = early6.labels.keys().map(String::as_str).collect();
        assert_eq!(
            labels,
            [
                "com.docker.compose.project",
                "com.docker.compose.service",
                "egress-guard.egress",
                "org.example.from-image"
            ]
        );
        assert_eq!(early6.compose(), Some(Compose { project: "proj".into(), service: "api".into() }));
        assert!(early6.networks.is_empty() && !early6.has_exited());
        let start = events.iter().find(|e| e.action == "start").unwrap();
        assert_eq!(Container::from_create_event(start), None);
    }

    #[test]
    fn version_and_daemon_error() {
        let v: Version = body("version.http");
        assert_eq!(
            (v.version.as_str(), v.api_version.as_str(), v.min_api_version.as_str()),
            ("20.10.24+dfsg1", "1.41", "1.12")
        );
        #[derive(Deserialize)]
        struct Message {
            message: String,
        }
        let e: Message = body("error-404.http");
        assert_eq!(e.message, "No such container: nosuch");
    }

    #[test]
    fn null_and_missing_fields_are_empty() {
        let s: ContainerSummary =
            serde_json::from_str(r#"{"Id":"x","Names":null,"Labels":null,"NetworkSettings":{"Networks":null}}"#)
                .unwrap();
        assert!(s.names.is_empty() && s.labels.is_empty() && s.network_settings.networks.is_empty());
        let n: Network = serde_json::from_str(r#"{"Id":"abc","Driver":"bridge","IPAM":{"Config":null}}"#).unwrap();
        assert_eq!(n.bridge_name().as_deref(), Some("br-abc"));
        assert!(n.subnets().is_empty());
    }
}
