//! egress-guard: keeps Docker containers from dialing out by writing iptables-nft-compatible
//! rules into DOCKER-USER over nf_tables netlink.
//!
//! Layers, pure first: `policy` (what the user wants) → `plan` (the rules) → `ipt` (iptables
//! rule ⇄ nf_tables expressions) → `nft` encoders (messages). The I/O shell is `nft::socket`,
//! `netns` and `cmd`. Nothing below `apply` opens a socket or reads the environment.

pub mod apply;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod error;
pub mod ipt;
pub mod netns;
pub mod nft;
pub mod plan;
pub mod policy;
pub mod status;
pub mod systemd;
pub mod target;
