//! The command line: syntax only. Nothing here touches the system; flags become a
//! `PolicySpec` that is merged with the config file and validated before any netlink message.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::policy::PolicySpec;
use crate::target::Target;

#[derive(Debug, Parser)]
#[command(
    name = "egress-guard",
    version,
    about = "Keep Docker containers from opening connections to the outside, while published ports keep serving",
    long_about = "Keep Docker containers from opening connections to the outside, while published ports keep serving.\n\n\
        egress-guard puts a few rules at the top of Docker's DOCKER-USER chains (IPv4 and IPv6), \
        encoded exactly as iptables-nft would write them, in one atomic nf_tables batch. \
        Packets that enter from a container bridge, leave by another interface and belong to no \
        connection someone else opened are refused. Rules it did not write are never touched.\n\n\
        Where DOCKER-USER does not exist (Docker's nftables backend, iptables-legacy hosts, Podman), \
        the same policy goes into egress-guard's own table, `table inet egress_guard`, whose base \
        chain runs just before the filter priority (--target table; --target auto chooses, \
        --target both writes both in one batch).\n\n\
        Exit codes: 0 done / in place, 1 check found drift or absence, 2 bad usage or config \
        (nothing changed), 3 the kernel refused (permission, no nf_tables, chain missing), \
        4 gave up after concurrent changes.",
    after_help = "Examples:\n  \
        egress-guard apply                                  guard docker0 and every br-* network\n  \
        egress-guard apply --allow 198.51.100.53:53/udp     ...but let containers use this resolver\n  \
        egress-guard apply --dry-run                        show the rules, change nothing\n  \
        egress-guard status                                 what is in place, with counters\n  \
        egress-guard check                                  for monitoring: exit 0 only when guarded\n  \
        egress-guard remove                                 delete our rules, and only ours"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Put the guard in place, in one atomic batch (nothing is sent when it already is)
    Apply(ApplyArgs),
    /// Delete our rules (those commented "egress-guard"), in one batch
    Remove(RemoveArgs),
    /// Show what is in place: each chain, whether packets reach it, our rules and their counters
    Status(StatusArgs),
    /// Exit 0 when the guard is in place and reached, 1 otherwise (one line says why)
    Check(CheckArgs),
    /// Apply, then heal whenever another program changes the ruleset; runs until stopped
    Watch(WatchArgs),
    /// Run `watch` as a systemd service: write egress-guard.service and enable it
    ///
    /// Writes /etc/systemd/system/egress-guard.service, which runs `egress-guard watch` at boot
    /// before dockerd and containerd start (so no container starts unguarded), restarts it if it
    /// dies, and confines it to netlink with CAP_NET_ADMIN; then `systemctl daemon-reload` and
    /// `systemctl enable`. Where systemd is not running, the unit is written and the commands to
    /// enable it are printed. Running it again rewrites the unit (after an upgrade, say).
    /// Exit codes: 2 bad usage (nothing changed), 3 no permission (run as root).
    InstallService(InstallServiceArgs),
    /// Stop, disable and delete the unit install-service wrote; the guard stays in place
    ///
    /// Deletes only a unit install-service wrote (it carries a marker line); the rules stay in
    /// the kernel until `egress-guard remove`. Exit codes: 2 the unit is not ours (nothing
    /// changed), 3 no permission (run as root).
    UninstallService(UninstallServiceArgs),
}

#[derive(Debug, Args)]
pub struct NetnsArg {
    /// Work in this network namespace: a name under /run/netns, or a path such as
    /// /proc/PID/ns/net (rootless Docker keeps its rules in RootlessKit's namespace)
    #[arg(long, value_name = "NAME|PATH")]
    pub netns: Option<String>,
}

#[derive(Debug, Args)]
pub struct TargetArg {
    /// Where the rules live: docker-user (Docker's DOCKER-USER chains), table (our own nftables
    /// table), both, or auto (docker-user where it exists, else table)
    #[arg(long, value_name = "TARGET", value_parser = Target::WORDS)]
    pub target: Option<String>,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Guard traffic entering from this bridge (repeatable; a trailing + is a wildcard, as in
    /// iptables). Default: docker0 and br-+ (every user-defined Docker network)
    #[arg(long = "iface", value_name = "NAME")]
    pub ifaces: Vec<String>,

    /// Guard traffic from this source subnet to anywhere outside it, like the classic
    /// `-s CIDR` recipe (repeatable; IPv4 or IPv6). With --iface, a rule needs both
    #[arg(long = "subnet", value_name = "CIDR")]
    pub subnets: Vec<String>,

    /// Let containers reach this destination: CIDR, CIDR:PORT/PROTO or [IPv6-CIDR]:PORT/PROTO
    /// with PROTO tcp or udp (repeatable), e.g. a DNS resolver 10.0.0.53:53/udp
    #[arg(long = "allow", value_name = "DEST")]
    pub allow: Vec<String>,

    /// How refused connections are answered: port-unreachable (the default: "connection
    /// refused"; TCP sees it after its first SYN retry, about 1 s), admin-prohibited ("no route
    /// to host"), tcp-reset (TCP refused at once by a reset, the rest by port-unreachable), drop
    /// (no answer: clients wait for their timeout)
    #[arg(long, value_name = "HOW", value_parser = ["port-unreachable", "admin-prohibited", "tcp-reset", "drop"])]
    pub reject_with: Option<String>,

    /// Log blocked attempts to the kernel log first, rate-limited, with this prefix
    /// (default "egress-guard: ")
    #[arg(long, value_name = "PREFIX", num_args = 0..=1, require_equals = true)]
    pub log: Option<Option<String>>,

    /// At most this many log entries: RATE/UNIT, UNIT second, minute, hour or day
    /// (default 10/minute, burst 5)
    #[arg(long, value_name = "RATE")]
    pub log_rate: Option<String>,

    /// Log blocked attempts to this NFLOG group instead of the kernel log (for `ulogd`)
    #[arg(long, value_name = "N")]
    pub nflog_group: Option<String>,

    /// Also refuse new connections from containers to the host itself (except to --allow
    /// destinations); needs the table target (--target table or both)
    #[arg(long)]
    pub block_host: bool,

    /// Read settings from this TOML file (default /etc/egress-guard/config.toml when present);
    /// flags override it key by key
    #[arg(long, value_name = "PATH")]
    pub config: Option<String>,

    #[command(flatten)]
    pub target: TargetArg,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Print what would be written and deleted (as `iptables -S` lines and nft syntax) and
    /// change nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub netns: NetnsArg,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub target: TargetArg,
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

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Also check every this many seconds, in case a change notification was lost
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub interval: u64,
    #[command(flatten)]
    pub netns: NetnsArg,
}

impl PolicyArgs {
    /// The policy words the flags give (`None` where a flag was not used).
    pub fn spec(&self) -> PolicySpec {
        let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        PolicySpec {
            ifaces: list(&self.ifaces),
            subnets: list(&self.subnets),
            allow: list(&self.allow),
            reject_with: self.reject_with.clone(),
            log: self.log.clone(),
            log_rate: self.log_rate.clone(),
            nflog_group: self.nflog_group.clone(),
            block_host: self.block_host.then_some(true),
        }
    }
}

#[derive(Debug, Args)]
pub struct InstallServiceArgs {
    /// The service runs `watch --config PATH` (checked now, so a typo shows here and not at
    /// boot). Default: watch reads /etc/egress-guard/config.toml when present
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The binary the unit runs (default: this one). Not under /home, /root or /tmp: the
    /// service's sandbox hides them
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Start the service now too (`systemctl enable --now`)
    #[arg(long)]
    pub now: bool,
}

#[derive(Debug, Args)]
pub struct UninstallServiceArgs {}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_become_a_spec() {
        let cli =
            Cli::try_parse_from(["egress-guard", "apply", "--iface", "br-+", "--log", "--allow", "10.0.0.53:53/udp"])
                .unwrap();
        let Command::Apply(a) = cli.command else { panic!() };
        let spec = a.policy.spec();
        assert_eq!(spec.ifaces, Some(vec!["br-+".to_string()]));
        assert_eq!(spec.log, Some(None));
        let cli = Cli::try_parse_from(["egress-guard", "check", "--log=egress: "]).unwrap();
        let Command::Check(c) = cli.command else { panic!() };
        assert_eq!(c.policy.spec().log, Some(Some("egress: ".into())));
        assert_eq!(c.policy.spec().ifaces, None);
    }
}
