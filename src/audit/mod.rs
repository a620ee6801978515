//! The audit trail of blocked attempts: the guard rules log them to an NFLOG group, and this
//! module reads that group back. `packet` turns a logged packet into an [`packet::Attempt`]
//! (pure), `events` keeps count of what the kernel dropped (pure), and `reader` is the socket.
//! `tag` is what the rule's prefix says the guard did; `pipeline` looks the source up in
//! Docker's address book a moment later and `burst` summarises floods, into `record`s printed
//! as text or JSON lines (`time`); `rotate` keeps the JSON file, `summary` reads it back. All
//! pure but `reader`, `rotate` and `trail`, the loop `egress-guard log` and `watch` run.

pub mod burst;
pub mod events;
pub mod packet;
pub mod pipeline;
pub mod reader;
pub mod record;
pub mod rotate;
pub mod summary;
pub mod tag;
pub mod time;
pub mod trail;
