//! The audit trail of blocked attempts: the guard rules log them to an NFLOG group, and this
//! module reads that group back. `packet` turns a logged packet into an [`packet::Attempt`]
//! (pure), `events` keeps count of what the kernel dropped (pure), and `reader` is the socket.

pub mod events;
pub mod packet;
pub mod reader;
pub mod tag;
