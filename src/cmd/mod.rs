//! One file per subcommand; each resolves its inputs (netns, config, policy), then calls the
//! library once.

mod apply;
mod check;
mod remove;
mod service;
mod status;
mod watch;

use std::io::ErrorKind;

use crate::cli::{Command, NetnsArg, PolicyArgs};
use crate::config::{self, Config};
use crate::error::Error;
use crate::nft::socket::Netlink;
use crate::policy::{Policy, PolicyError};
use crate::target::Target;

/// Runs a command; the value is the exit code for outcomes that are not errors (`check` → 1).
pub fn run(command: Command) -> Result<i32, Error> {
    match command {
        Command::Apply(args) => apply::run(args),
        Command::Remove(args) => remove::run(args),
        Command::Status(args) => status::run(args),
        Command::Check(args) => check::run(args),
        Command::Watch(args) => watch::run(args),
        Command::InstallService(args) => Ok(service::install(args)),
        Command::UninstallService(args) => Ok(service::uninstall(args)),
    }
}

/// Enters `--netns` (if given) and opens the nf_tables socket there.
fn connect(netns: &NetnsArg) -> Result<Netlink, Error> {
    if let Some(ns) = &netns.netns {
        crate::netns::enter(ns)?;
    }
    Ok(Netlink::open()?)
}

/// The validated policy and target from the config file and the flags (flags win). Runs
/// before any socket is opened: bad input changes nothing.
fn resolve(args: &PolicyArgs) -> Result<(Policy, Target), Error> {
    let file = read_config(args.config.as_deref())?;
    let policy = args.spec().over(file.policy).resolve()?;
    let word = args.target.target.clone().or(file.target);
    Ok((policy, target(word.as_deref())?))
}

/// `--target` (or the config's `target`), `auto` when not given.
fn target(word: Option<&str>) -> Result<Target, Error> {
    let word = word.unwrap_or("auto");
    let unknown = || PolicyError(format!("target {word:?}: unknown; use {}", Target::WORDS.join(", ")));
    Ok(Target::parse(word).ok_or_else(unknown)?)
}

/// The config file: the one named, which must exist, or the default one if it exists.
fn read_config(path: Option<&str>) -> Result<Config, Error> {
    let (path, required) = match path {
        Some(p) => (p, true),
        None => (config::DEFAULT_PATH, false),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(config::parse(path, &text)?),
        Err(e) if e.kind() == ErrorKind::NotFound && !required => Ok(Config::default()),
        Err(source) => Err(Error::ConfigRead { path: path.to_string(), source }),
    }
}
