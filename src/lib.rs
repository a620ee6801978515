//! egress-guard: keeps Docker containers from dialing out, with rules in Docker's DOCKER-USER
//! chains (iptables-nft's own encoding) or in its own nftables table, over nf_tables netlink.
//!
//! Layers, pure first (see ARCHITECTURE.md): `cli` and `config` (what was written) → `policy`
//! (what the user wants) → `rules` (the guard, in no backend's terms) → `backend` (each
//! backend's rendering, diff and judgement) → `nft` encoders (messages). The I/O shell is
//! `nft::socket`, `netns`, `transact` and `cmd`. policy, rules and the encoders do no I/O.

pub mod audit;
pub mod backend;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod dns;
pub mod docker;
pub mod error;
pub mod exit;
pub mod fnv;
pub mod grants;
pub mod net;
pub mod netns;
pub mod nft;
pub mod policy;
#[cfg(test)]
mod proptests;
pub mod report;
pub mod rules;
pub mod snapshot;
pub mod state;
pub mod syslog;
pub mod systemd;
pub mod transact;
