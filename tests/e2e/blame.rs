//! `egress-guard log` against a real dockerd: a container named `ctf-web-1` (compose-labelled,
//! on a user-defined network) dials out and the line names it, its image, network and compose
//! service; then it is removed, another container is given the very same address (`--ip`), and
//! its attempt to the same destination is blamed on the new one, while the first line stands.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{LogRun, INTERNET_V4, INTERNET_V6};
use crate::{require_dockerd, Dockerd, Options};

/// The address both containers get, in the first network's 172.18.0.0/24.
const SHARED_V4: &str = "172.18.0.10";
/// Where the attacker dials: nothing listens there, and the guard refuses it anyway.
const PORT: u16 = 4444;

/// `docker run -d` on `network` at SHARED_V4 with compose labels; returns the full id.
fn run(dk: &Dockerd, name: &str, network: &str, service: &str) -> String {
    dk.docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        network,
        "--ip",
        SHARED_V4,
        "--label",
        "com.docker.compose.project=ctf",
        "--label",
        &format!("com.docker.compose.service={service}"),
        crate::image::IMAGE,
        "nc",
        "-ll",
        "-p",
        "80",
        "-e",
        "cat",
    ])
}

/// busybox nc from inside the container: the attempt (refused by the guard).
fn dial(dk: &Dockerd, name: &str, to: IpAddr) {
    let out = dk.try_docker(&["exec", name, "timeout", "5", "nc", "-w", "2", &to.to_string(), &PORT.to_string()]);
    assert!(!out.status.success(), "{name} reached {to}:{PORT} through the guard");
}

/// The attempt records from `name`'s address to `to`.
fn from<'a>(json: &'a [Value], name: &str, to: IpAddr) -> Vec<&'a Value> {
    json.iter().filter(|r| r["type"] == "attempt" && r["container"] == name && r["dst"] == to.to_string()).collect()
}

#[test]
fn log_names_the_container_and_blames_an_address_on_whoever_held_it_then() {
    require_dockerd!();
    let dk = Dockerd::start(Options::default());
    let net = dk.network("ctf_default");
    let first = run(&dk, "ctf-web-1", &net.name, "web");
    dk.egress_guard_ok(&["apply", "--log", "--log-rate", "100/second"]);
    let socket = dk.dir().join("docker.sock");
    let log = LogRun::start(dk.netns(), &["--json", "--docker-host", socket.to_str().expect("a UTF-8 path")]);

    dial(&dk, "ctf-web-1", INTERNET_V4.into());
    dial(&dk, "ctf-web-1", INTERNET_V6.into());
    let named = log.wait_for(Duration::from_secs(15), |json| {
        !from(json, "ctf-web-1", INTERNET_V4.into()).is_empty()
            && !from(json, "ctf-web-1", INTERNET_V6.into()).is_empty()
    });
    assert!(named, "ctf-web-1 not named: {:#?}", log.stdout());

    // Gone, and its address handed to another container.
    dk.docker(&["rm", "-f", "ctf-web-1"]);
    let removed = egress_guard::audit::time::rfc3339(std::time::SystemTime::now());
    let second = run(&dk, "ctf-pwn-1", &net.name, "pwn");
    dial(&dk, "ctf-pwn-1", INTERNET_V4.into());
    let blamed = log.wait_for(Duration::from_secs(15), |json| !from(json, "ctf-pwn-1", INTERNET_V4.into()).is_empty());
    let stopped = log.stop();
    let json = stopped.json();
    assert!(blamed, "the new holder not named: {json:#?}\n{:?}", stopped.stderr);
    eprintln!("egress-guard log on dockerd {}:\n{}", dk.version(), stopped.stdout.join("\n"));

    let old = from(&json, "ctf-web-1", INTERNET_V4.into())[0];
    assert_eq!(old["id"], first, "{old}");
    assert_eq!(old["image"], crate::image::IMAGE, "{old}");
    assert_eq!((&old["network"], &old["bridge"]), (&net.name.clone().into(), &net.bridge.clone().into()), "{old}");
    assert_eq!((&old["compose_project"], &old["compose_service"]), (&"ctf".into(), &"web".into()), "{old}");
    assert_eq!((&old["src"], &old["dport"], &old["proto"]), (&SHARED_V4.into(), &PORT.into(), &"tcp".into()), "{old}");
    assert_eq!(old["action"], "rejected", "{old}");
    let old6 = from(&json, "ctf-web-1", INTERNET_V6.into())[0];
    assert!(old6["src"].as_str().is_some_and(|s| s.starts_with("fd00:18:")), "{old6}");

    let new = from(&json, "ctf-pwn-1", INTERNET_V4.into())[0];
    assert_eq!((&new["id"], &new["src"]), (&second.clone().into(), &SHARED_V4.into()), "{new}");
    assert_eq!(new["compose_service"], "pwn", "{new}");
    // Nothing that happened after the removal is put on the container that is gone (times
    // are RFC 3339 UTC of one width: text order is time order).
    for r in json.iter().filter(|r| r["container"] == "ctf-web-1") {
        let last = r["last"].as_str().or(r["time"].as_str()).unwrap_or_default();
        assert!(last < removed.as_str(), "after {removed}: {r}");
    }
    // Every attempt from a container's address names a container.
    for r in json.iter().filter(|r| r["type"] == "attempt" || r["type"] == "summary") {
        assert!(r["container"].is_string(), "a line without a name: {r}");
    }
}
