//! One file per subcommand; each resolves its inputs (config, policy, target) before any socket
//! is opened, then calls the library once and returns what to print.

mod apply;
mod check;
mod confirm;
mod log;
mod remove;
pub mod service;
mod status;
mod trial;
mod watch;

use std::io::Write;

use crate::backend::Target;
use crate::cli::{Command, NetnsArg, PolicyArgs};
use crate::config;
use crate::error::Error;
use crate::exit::ExitCode;
use crate::nft::socket::Netlink;
use crate::policy::Policy;

/// What a command has to say when it is done: its exit code, its report, and whether it
/// committed a change (a report that cannot be written must not hide that).
#[derive(Debug, Default)]
pub struct Done {
    pub code: Option<ExitCode>,
    pub stdout: String,
    pub warnings: Vec<String>,
    pub committed: bool,
}

/// Runs a command.
pub fn run(command: Command) -> Result<Done, Error> {
    match command {
        Command::Apply(args) => apply::run(args),
        Command::Remove(args) => remove::run(args),
        Command::Status(args) => status::run(args),
        Command::Check(args) => check::run(args),
        Command::Watch(args) => watch::run(args),
        Command::Confirm(args) => confirm::confirm(args),
        Command::Rollback(args) => confirm::rollback(args),
        Command::RollbackTimer(args) => confirm::timer(args),
        Command::Log(args) => log::run(args),
        Command::InstallService(args) => service::install(args),
        Command::UninstallService(args) => service::uninstall(args),
    }
}

/// Enters `--netns` (if given) and opens the nf_tables socket there.
fn connect(netns: &NetnsArg) -> Result<Netlink, Error> {
    if let Some(ns) = &netns.netns {
        crate::netns::enter(ns)?;
    }
    Ok(Netlink::open()?)
}

/// The validated policy and target from the config file and the flags (flags win), with every
/// conflict between them found: bad input changes nothing.
fn resolve(args: &PolicyArgs) -> Result<(Policy, Target), Error> {
    let file = config::load(args.config.as_deref())?;
    let policy = args.spec().over(file.policy).resolve()?;
    let target = args.target.target.or(file.target).unwrap_or_default();
    if policy.block_host && target == Target::DockerUser {
        return Err(Error::Usage(
            "--block-host keeps its rules in our own table, and --target docker-user writes only DOCKER-USER: \
             use --target auto, table or both",
        ));
    }
    Ok((policy, target))
}

/// A line for a long-running command: written at once, and a closed or full stdout does not
/// stop it (a guard that heals matters more than its log).
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// A warning or an error line on stderr, never a panic.
pub fn warn(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "egress-guard: {line}");
}
