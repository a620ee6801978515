//! Per-container and per-network allowances from Docker labels, with `watch` following a real
//! dockerd: a labelled container reaches what its label allows and nothing else, its unlabelled
//! neighbour on the same network reaches nothing, and when it stops its allowance goes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::harness::{Outcome, Watch, DNS_PORT, INTERNET_V4, SERVICE_PORT};
use crate::{require_dockerd, Container, Dockerd, Options};

/// `watch` following `dk`'s dockerd.
fn watch(dk: &Dockerd) -> Watch {
    Watch::start(&dk.host, &["--docker-host", &dk.socket()])
}

/// Waits (up to 10 s) until `c`'s TCP connection to `to` is `open` or not.
fn eventually(c: &Container, to: SocketAddr, open: bool) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let outcome = c.nc(to);
        if outcome.is_open() == open || Instant::now() > deadline {
            return outcome;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_labelled_container_reaches_its_destination_and_its_neighbour_does_not() {
    require_dockerd!();
    let dk = Dockerd::start(Options::default());
    let net = dk.network("ctf");
    let allowed = SocketAddr::from((INTERNET_V4, SERVICE_PORT));
    let other = SocketAddr::from((INTERNET_V4, DNS_PORT));
    let _watch = watch(&dk);
    let db = dk.container("db").network(&net).run();
    assert!(!eventually(&db, allowed, false).is_open(), "watch closes egress");
    let web = dk
        .container("web")
        .network(&net)
        .label("egress-guard.allow", &format!("{INTERNET_V4}:{SERVICE_PORT}/tcp"))
        .run();
    assert!(eventually(&web, allowed, true).is_open(), "web reaches what its label allows");
    assert!(!web.nc(other).is_open(), "and nothing else");
    assert!(!db.nc(allowed).is_open(), "its unlabelled neighbour reaches nothing");
    let status =
        String::from_utf8_lossy(&dk.egress_guard(&["status", "--docker-host", &dk.socket()]).stdout).into_owned();
    assert!(status.contains(&format!("web ({}", &web.id[..12])), "{status}");
    assert!(status.contains(&format!("{INTERNET_V4}/32:{SERVICE_PORT}/tcp (label)")), "{status}");
    let check = dk.egress_guard(&["check", "--docker-host", &dk.socket()]);
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stdout));
}
