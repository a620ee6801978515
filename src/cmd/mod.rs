//! One file per subcommand; each resolves its inputs (config, policy, target) before any socket
//! is opened, then calls the library once and returns what to print.

mod apply;
mod check;
mod confirm;
mod dns_hook;
mod docker_feed;
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

/// Where dockerd listens, for the commands that read it: `--docker-host`, else `DOCKER_HOST`,
/// else the default socket — except that with `--netns` only the first two count: the default
/// socket's dockerd manages the host's namespace, not another (rootless Docker has a socket of
/// its own, which DOCKER_HOST names). `None`: Docker is not consulted.
pub(crate) fn docker_endpoint(
    arg: &crate::cli::DockerHostArg,
    netns: &NetnsArg,
) -> Result<Option<crate::docker::Endpoint>, Error> {
    let env = std::env::var("DOCKER_HOST").ok().filter(|v| !v.is_empty());
    if netns.netns.is_some() && arg.docker_host.is_none() && env.is_none() {
        return Ok(None);
    }
    Ok(Some(crate::docker::endpoint(arg.docker_host.as_deref(), env.as_deref())?))
}

/// Docker's containers and networks now, and what they are granted, for `status` and `check`;
/// or why Docker was not looked at.
pub(crate) fn docker_picture(
    arg: &crate::cli::DockerHostArg,
    netns: &NetnsArg,
    config: &crate::grants::Grants,
) -> Result<crate::report::DockerReport, Error> {
    use crate::docker::{Client, Container};
    let Some(endpoint) = docker_endpoint(arg, netns)? else {
        return Ok(crate::report::DockerReport::not_consulted(crate::audit::trail::NOT_CONSULTED));
    };
    let client = Client::new(&endpoint).with_timeout(std::time::Duration::from_secs(5));
    let picture = client.networks().and_then(|n| Ok((n, client.containers()?)));
    Ok(match picture {
        Ok((networks, containers)) => {
            let containers: Vec<Container> = containers.iter().map(Container::from).collect();
            let live = crate::grants::resolve(&containers, &networks, config);
            crate::report::DockerReport::seen(&endpoint, live)
        }
        Err(e) => crate::report::DockerReport::not_consulted(&format!("Docker unavailable: {e}")),
    })
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
