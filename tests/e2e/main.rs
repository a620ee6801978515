//! End-to-end tests against a real dockerd: a private one in a network namespace of its own (see
//! `dockerd`), real containers from a busybox image, and the binary under test run with
//! `--netns` on that namespace. Run by `cargo xtask e2e` (`cargo test --test e2e`), not by plain
//! `cargo test`: each test starts a dockerd and takes seconds.
//!
//! ```text
//!            ┌────────────── dk (eg-PID-N-dk): the private dockerd ──────────────┐
//!  c1 ──veth─┤ docker0 172.17.0.1/16 fd00:17::1/64                               │
//!  c2 ──veth─┤                                 uplink 198.51.100.1 2001:db8::1   ├──veth── inet
//!  c3 ──veth─┤ br-… (docker network create) 172.18.x.0/24 fd00:18::x:0:0:0/80    │         198.51.100.2
//!            │ dockerd, containerd, shims, docker-proxy; dockerd's own firewall  │         2001:db8::2
//!            └───────────────────────────────────────────────────────────────────┘         TCP/UDP echo
//! ```
//!
//! A scenario starts a [`Dockerd`], runs [`Container`]s, and probes from them:
//!
//! ```ignore
//! #[test]
//! fn apply_blocks_egress() {
//!     require_dockerd!();
//!     let dk = Dockerd::start(Options::default());
//!     let c1 = dk.container("c1").run();
//!     dk.egress_guard_ok(&["apply"]);
//!     assert!(!c1.nc((INTERNET_V4, SERVICE_PORT).into()).is_open());
//! }
//! ```

mod dockerd;
mod gate;
mod image;
mod leftovers;
mod paths;
mod reach;
mod timeline;

mod apply;
mod blame;
mod dns;
mod early;
mod labels;
mod restarts;

/// The harness of the emulated tests, shared file for file: namespaces, probes, echo servers,
/// floods, expectation tables, and running the binary under test.
#[allow(dead_code, unused_imports)]
#[path = "../harness"]
mod harness {
    pub mod addrs;
    pub mod dns;
    pub mod echo;
    pub mod expect;
    pub mod flood;
    pub mod journal;
    pub mod log_run;
    pub mod netns;
    pub mod probe;
    pub mod tool;

    pub use addrs::*;
    pub use echo::EchoServers;
    pub use expect::{expect_all, Expect, Want};
    pub use flood::{Flood, FloodReport};
    pub use log_run::LogRun;
    pub use netns::Netns;
    pub use probe::{Closed, Outcome, Probe, Proto};
    pub use tool::Watch;
}

pub use dockerd::{Container, Dockerd, Network, Options};
pub(crate) use gate::require_dockerd;
