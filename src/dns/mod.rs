//! The DNS forwarder behind `--allow-domain` (see docs/dns.md): containers' queries for
//! allowed names go upstream, and the addresses in the answers are granted in nf_tables sets
//! before the answer is released; queries for other names are answered NXDOMAIN (or REFUSED)
//! and never leave the host.
//!
//! Pure parts first: `names` (the patterns and matching), `message` (DNS messages, through
//! hickory-proto), `grant` (what to add to the sets and when a lookup needs no commit). The
//! names allowed per container are `clients`. The I/O shell: `forwarder` (sockets and threads), `upstream` (resolv.conf), `nft_allower` (the
//! sets, over `nft::socket`).

pub mod clients;
pub mod forwarder;
pub mod grant;
pub mod message;
pub mod names;
pub mod nft_allower;
pub mod upstream;
