//! Test harness: an emulated Docker host in throw-away network namespaces, and probes to prove by
//! traffic which paths are open.
//!
//! ```text
//!                      ┌──────────── host (eg-PID-N-host) ────────────┐
//!  c1 172.17.0.2 ──veth┤ docker0 172.17.0.1/16   eth0 198.51.100.1/24 ├──veth── internet
//!  c2 172.17.0.3 ──veth┤         fd00:17::1/64        2001:db8::1/64  │         198.51.100.2/24
//!  c3 172.18.0.2 ──veth┤ br-eg1  172.18.0.1/16                        │         2001:db8::2/64
//!                      │         fd00:18::1/64   dockerd's iptables   │         172.16.99.2/24 (LAN)
//!                      └──────────────────────────────────────────────┘
//! ```
//!
//! Nothing here touches the root namespace: every namespace is created by the test that uses it,
//! no link leads out of them, and all of them are deleted when the fixture is dropped (also when
//! the test panics; a killed run's leftovers are swept by the next run). Start with
//! [`DockerHost::new`], probe with [`Netns::tcp`] and friends or with a table of [`Expect`]s,
//! and gate each kernel test with [`require_kernel!`]:
//!
//! ```ignore
//! #[test]
//! fn guard_blocks_egress_but_not_the_published_port() {
//!     harness::require_kernel!();
//!     let dh = DockerHost::new();
//!     assert!(dh.egress_guard("apply", &[]).status.success());
//!     expect_all(&[
//!         Expect::closed(&dh.c1, Probe::tcp((INTERNET_V4, SERVICE_PORT))),
//!         Expect::open(&dh.internet, Probe::tcp((HOST_V4, PUBLISHED_PORT))),
//!     ]);
//! }
//! ```

// Tests written later use parts of the harness (and its re-exports) that today's tests don't.
#![allow(dead_code, unused_imports)]

mod addrs;
pub mod dns;
mod docker_host;
mod dockerd_rules;
mod echo;
mod expect;
mod flood;
pub mod journal;
mod log_run;
mod matrix;
mod netns;
mod nft_backend;
mod nft_events;
mod probe;
mod selftest;
mod skip;
mod tool;

pub use addrs::*;
pub use docker_host::{DockerHost, DockerHostBuilder};
pub use dockerd_rules::DockerUser;
pub use echo::EchoServers;
pub use expect::{expect_all, Expect, Want};
pub use flood::{Flood, FloodReport, FloodRun};
pub use log_run::{LogRun, Stopped};
pub use matrix::{egress, matrix, must_stay_open};
pub use netns::Netns;
pub use nft_events::{Event, NftEvents};
pub use probe::{Closed, Outcome, Probe, Proto, DEFAULT_TIMEOUT};
pub use skip::kernel_tests_enabled;
pub(crate) use skip::require_kernel;
pub use tool::{docker_user_namespace, dry_run_lines, egress_guard, egress_guard_ok, status_json, within, Watch};
