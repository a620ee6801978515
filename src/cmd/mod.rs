//! One file per subcommand; each resolves its inputs, then calls the library once.

mod apply;
mod check;
mod remove;
mod status;

use crate::cli::{Command, NetnsArg};
use crate::error::Error;
use crate::nft::socket::Netlink;

/// Runs a command; the value is the exit code for outcomes that are not errors (`check` → 1).
pub fn run(command: Command) -> Result<i32, Error> {
    match command {
        Command::Apply(args) => apply::run(args),
        Command::Remove(args) => remove::run(args),
        Command::Status(args) => status::run(args),
        Command::Check(args) => check::run(args),
    }
}

/// Enters `--netns` (if given) and opens the nf_tables socket there.
fn connect(netns: &NetnsArg) -> Result<Netlink, Error> {
    if let Some(ns) = &netns.netns {
        crate::netns::enter(ns)?;
    }
    Ok(Netlink::open()?)
}
