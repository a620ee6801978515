//! The command line: syntax only. Nothing here touches the system; `Policy` is resolved from
//! these values and validated before any netlink message is built.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::ipt::RejectWith;
use crate::policy::{Policy, DEFAULT_IFACES};

#[derive(Debug, Parser)]
#[command(
    name = "egress-guard",
    version,
    about = "Keep Docker containers from opening connections to the outside, while published ports keep serving",
    long_about = "Keep Docker containers from opening connections to the outside, while published ports keep serving.\n\n\
        egress-guard writes a few rules at the top of Docker's DOCKER-USER chains (IPv4 and IPv6), \
        encoded exactly as iptables-nft would write them, in one atomic nf_tables batch. \
        Packets that enter from a container bridge, leave by another interface and belong to no \
        connection someone else opened are rejected. Other rules in the chain are never touched.\n\n\
        Exit codes: 0 done / in place, 1 check found drift or absence, 2 bad usage (nothing changed), \
        3 the kernel refused (permission, no nf_tables, chain missing), 4 gave up after concurrent changes.",
    after_help = "Examples:\n  egress-guard apply                 guard docker0 and every br-* network\n  \
        egress-guard apply --dry-run       show the rules, change nothing\n  \
        egress-guard status                what is in place, with counters\n  \
        egress-guard check                 for monitoring: exit 0 only when guarded\n  \
        egress-guard remove                delete our rules, and only ours"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Put the guard in place, in one atomic batch (nothing is sent when it already is)
    Apply(ApplyArgs),
    /// Delete our rules (those commented "egress-guard") from both families, in one batch
    Remove(NetnsArg),
    /// Show what is in place: per family, the chain, the FORWARD jump, our rules and counters
    Status(StatusArgs),
    /// Exit 0 when the guard is in place and reached from FORWARD, 1 otherwise (one line why)
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct NetnsArg {
    /// Work in this network namespace: a name under /run/netns, or a path such as /proc/PID/ns/net
    /// (rootless Docker keeps its rules inside RootlessKit's namespace)
    #[arg(long, value_name = "NAME|PATH")]
    pub netns: Option<String>,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Guard traffic entering from this bridge (repeatable; a trailing + is a wildcard, as in iptables).
    /// Default: docker0 and br-+ (every user-defined Docker network)
    #[arg(long = "iface", value_name = "NAME")]
    pub ifaces: Vec<String>,

    /// How refused connections are answered
    #[arg(long, value_enum, default_value_t = RejectArg::PortUnreachable, value_name = "HOW")]
    pub reject_with: RejectArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RejectArg {
    /// ICMP port unreachable: the client's connect() fails at once with "connection refused"
    PortUnreachable,
    /// ICMP administratively prohibited: connect() fails with "no route to host"
    AdminProhibited,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Print the rules that would be written, as `iptables -S` lines, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub netns: NetnsArg,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub netns: NetnsArg,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub netns: NetnsArg,
}

impl PolicyArgs {
    /// The policy these flags ask for (not yet validated).
    pub fn to_policy(&self) -> Policy {
        let ifaces = if self.ifaces.is_empty() {
            DEFAULT_IFACES.iter().map(|s| s.to_string()).collect()
        } else {
            self.ifaces.clone()
        };
        let reject = match self.reject_with {
            RejectArg::PortUnreachable => RejectWith::PortUnreachable,
            RejectArg::AdminProhibited => RejectWith::AdminProhibited,
        };
        Policy { ifaces, reject }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ifaces_replace_the_default_set() {
        let cli = Cli::try_parse_from(["egress-guard", "apply", "--iface", "br-+"]).unwrap();
        let Command::Apply(a) = cli.command else { panic!() };
        assert_eq!(a.policy.to_policy().ifaces, ["br-+"]);
        let cli = Cli::try_parse_from(["egress-guard", "check"]).unwrap();
        let Command::Check(c) = cli.command else { panic!() };
        assert_eq!(c.policy.to_policy(), Policy::default());
    }
}
