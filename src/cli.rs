//! The command line: syntax only. Nothing here touches the system. Each value is checked by
//! clap as it is parsed, with the same functions the config file uses, into the policy's own
//! types (`ValueEnum`s and value parsers); `cmd` merges flags with the config file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;

use crate::backend::Target;
use crate::net::Limit;
use std::net::SocketAddr;

use crate::dns::forwarder::RefuseWith;
use crate::dns::names::AllowDomain;
use crate::policy::{self, Allow, Iface, LogTo, PolicySpec, Refusal, Sourced, ValueError};

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
        For a family without DOCKER-USER (Docker's nftables backend, Docker 20.10's IPv6, \
        iptables-legacy hosts, Podman) the same policy goes into egress-guard's own table, \
        `table inet egress_guard`, whose base chain runs just before the filter priority \
        (--target auto decides per family; --target table or docker-user forces one; \
        --target both writes both in one batch).\n\n\
        Exit codes: 0 done / in place, 1 check found drift or absence, 2 bad usage or config \
        (nothing changed), 3 the kernel refused (permission, no nf_tables, chain missing, a table \
        not ours), 4 gave up after concurrent changes.",
    after_help = "Examples:\n  \
        egress-guard apply                                  guard docker0 and every br-* network\n  \
        egress-guard apply --allow 198.51.100.53:53/udp     ...but let containers use this resolver\n  \
        egress-guard apply --dry-run                        show the rules, change nothing\n  \
        egress-guard status                                 what is in place, with counters\n  \
        egress-guard check                                  for monitoring: exit 0 only when guarded\n  \
        egress-guard log                                    who tried to get out, with container names\n  \
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
    /// Show what is in place: each chain, whether packets reach it first, our rules and their
    /// counters, and what bypasses them
    Status(StatusArgs),
    /// Exit 0 when the guard is in place and reached first, 1 otherwise (one line says why)
    Check(CheckArgs),
    /// Apply, then heal whenever another program changes the ruleset; runs until stopped
    Watch(WatchArgs),
    /// Keep the change made with `--confirm`: its rollback timer stops
    Confirm(ConfirmArgs),
    /// Put back, now, the state before the latest apply or remove (confirmed or not)
    ///
    /// Only our rules are put back, each where it stood among the rules of others; rules others
    /// wrote since stay. Rolling back twice puts back what the first rollback undid.
    Rollback(RollbackArgs),
    /// (internal) the detached timer of a change made with --confirm
    #[command(hide = true)]
    RollbackTimer(TimerArgs),
    /// Print blocked attempts as they happen, naming the container that made each
    ///
    /// Reads the NFLOG group the guard's --log rules write to and looks each source address up
    /// in Docker (at the time of the attempt, so a container that is gone, or whose address went
    /// to another, is still named right): time, container, image, compose project/service,
    /// network, source, destination, protocol, port or ICMP type, and what the guard did. A
    /// burst from one container to one destination is its first line and one summary per 10 s.
    /// Runs until stopped (SIGINT, SIGTERM).
    Log(LogArgs),
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
    /// Where the rules live (default auto: per family, docker-user where DOCKER-USER exists,
    /// else our own table)
    #[arg(long, value_name = "TARGET", value_enum)]
    pub target: Option<Target>,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Guard traffic entering from this bridge (repeatable; a trailing + is a wildcard, as in
    /// iptables). Default: docker0 and br-+ (every user-defined Docker network)
    #[arg(long = "iface", value_name = "NAME", value_parser = iface)]
    pub ifaces: Vec<Iface>,

    /// Guard traffic from this source subnet to anywhere outside it, like the classic
    /// `-s CIDR` recipe (repeatable; IPv4 or IPv6). With --iface, a rule needs both
    #[arg(long = "subnet", value_name = "CIDR", value_parser = subnet)]
    pub subnets: Vec<IpNet>,

    /// Let containers reach this destination: CIDR, CIDR:PORT/PROTO or [IPv6-CIDR]:PORT/PROTO
    /// with PROTO tcp or udp (repeatable), e.g. a DNS resolver 198.51.100.53:53/udp. To make
    /// an exception, allow it here: rules of your own ahead of ours are moved below them
    #[arg(long = "allow", value_name = "DEST", value_parser = allow)]
    pub allow: Vec<Allow>,

    /// Let containers reach this name's addresses: NAME, *.NAME (every subdomain) or
    /// NAME:PORT/PROTO (repeatable), e.g. pypi.org, *.githubusercontent.com:443/tcp. watch
    /// answers containers' DNS, adds an allowed name's addresses to the guard's sets with the
    /// answer's TTL and releases the answer only then; other names get NXDOMAIN
    #[arg(long = "allow-domain", value_name = "NAME", value_parser = allow_domain)]
    pub allow_domains: Vec<AllowDomain>,

    /// Where allowed queries go: ADDR or ADDR:PORT (repeatable; default: the nameservers of
    /// /etc/resolv.conf)
    #[arg(long = "dns-upstream", value_name = "ADDR", value_parser = upstream)]
    pub dns_upstreams: Vec<SocketAddr>,

    /// An allowed name's addresses stay open at least this long after a lookup (default 60)
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub dns_min_ttl: Option<u32>,

    /// ...and at most this long, whatever the TTL (default 86400)
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub dns_max_ttl: Option<u32>,

    /// How names that are not allowed are answered
    #[arg(long, value_name = "HOW", value_enum)]
    pub dns_refuse_with: Option<RefuseWith>,

    /// The port watch's DNS forwarder listens on, where containers' DNS is redirected
    /// (default 53053)
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub dns_port: Option<u16>,

    /// How refused connections are answered
    #[arg(long, value_name = "HOW", value_enum)]
    pub reject_with: Option<Refusal>,

    /// Log blocked attempts, rate-limited, with this prefix (default "egress-guard: "): to NFLOG
    /// group 4711, where `egress-guard log` names the container (the prefix then ends with what
    /// the guard does, e.g. "egress-guard: drop"), or to the kernel log with --log-to kernel
    #[arg(long, value_name = "PREFIX", num_args = 0..=1, require_equals = true, value_parser = prefix)]
    pub log: Option<Option<String>>,

    /// Where --log writes: an NFLOG group (default), or the kernel log
    #[arg(long, value_name = "WHERE", value_enum)]
    pub log_to: Option<LogTo>,

    /// At most this many log entries: RATE/UNIT, UNIT second, minute, hour or day
    /// (default 10/minute, burst 5)
    #[arg(long, value_name = "RATE", value_parser = rate)]
    pub log_rate: Option<Limit>,

    /// The NFLOG group --log writes to (default 4711); alone, it turns --log on
    #[arg(long, value_name = "N", value_parser = group)]
    pub nflog_group: Option<u16>,

    /// Also refuse new connections from containers to the host itself (except to --allow
    /// destinations); kept in our own table, so not with --target docker-user
    #[arg(long)]
    pub block_host: bool,

    /// The packet mark bit our table sets on what an allow-list lets out, for the refusing
    /// rules to skip (default 0x1000000); pick one no other program on the host uses
    #[arg(long, value_name = "BIT", value_parser = mark_bit)]
    pub mark_bit: Option<u32>,

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
    #[arg(long, conflicts_with = "confirm")]
    pub dry_run: bool,
    #[command(flatten)]
    pub confirm: ConfirmArg,
    #[command(flatten)]
    pub netns: NetnsArg,
}

#[derive(Debug, Args)]
pub struct ConfirmArg {
    /// Take the change back by itself after SECS seconds unless `egress-guard confirm` comes
    /// first (a detached timer, which survives the SSH session that ran this): for changes on
    /// a remote host, --block-host above all
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub confirm: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Only from the places of this target (default: everywhere egress-guard writes)
    #[arg(long, value_name = "TARGET", value_enum)]
    pub target: Option<Target>,
    #[command(flatten)]
    pub confirm: ConfirmArg,
    #[command(flatten)]
    pub netns: NetnsArg,
}

#[derive(Debug, Args)]
pub struct ConfirmArgs {
    #[command(flatten)]
    pub netns: NetnsArg,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub netns: NetnsArg,
}

#[derive(Debug, Args)]
pub struct TimerArgs {
    /// The confirmation this timer is for
    #[arg(long)]
    pub token: u64,
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
    #[command(flatten)]
    pub docker: DockerHostArg,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub netns: NetnsArg,
    #[command(flatten)]
    pub docker: DockerHostArg,
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
    #[command(flatten)]
    pub docker: DockerHostArg,
}

#[derive(Debug, Args)]
pub struct DockerHostArg {
    /// dockerd's API socket, for container names and labels: unix:///PATH or /PATH (default
    /// $DOCKER_HOST, else /var/run/docker.sock; with --netns only these two)
    #[arg(long, value_name = "SOCKET", value_parser = docker_host)]
    pub docker_host: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Print JSON lines: one object per attempt, summary, overflow or loss
    #[arg(long)]
    pub json: bool,
    /// Also append JSON lines to this file (created 0600), rotated at --max-size
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Rotate --output before it grows past this size: BYTES, or with K, M or G (default 10M);
    /// FILE.1 to FILE.5 are kept
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub max_size: Option<u64>,
    /// Print the top containers and destinations of the --output file (and its rotations), or
    /// of --from FILE, and exit
    #[arg(long)]
    pub summary: bool,
    /// With --summary: the JSON-lines file to read
    #[arg(long, value_name = "FILE", requires = "summary")]
    pub from: Option<PathBuf>,
    /// The NFLOG group to read (default: nflog_group from the config file, else 4711)
    #[arg(long, value_name = "N", value_parser = group)]
    pub nflog_group: Option<u16>,
    /// The config file whose nflog_group to read (default /etc/egress-guard/config.toml when
    /// present)
    #[arg(long, value_name = "PATH")]
    pub config: Option<String>,
    #[command(flatten)]
    pub docker: DockerHostArg,
    #[command(flatten)]
    pub netns: NetnsArg,
}

fn iface(s: &str) -> Result<Iface, ValueError> {
    policy::parse_iface(s)
}
fn subnet(s: &str) -> Result<IpNet, ValueError> {
    policy::parse_subnet(s)
}
fn allow(s: &str) -> Result<Allow, ValueError> {
    policy::parse_allow(s)
}
fn prefix(s: &str) -> Result<String, ValueError> {
    policy::parse_prefix(s)
}
fn allow_domain(s: &str) -> Result<AllowDomain, ValueError> {
    policy::parse_allow_domain(s)
}
fn upstream(s: &str) -> Result<SocketAddr, ValueError> {
    policy::parse_upstream(s)
}
fn seconds(s: &str) -> Result<u32, ValueError> {
    policy::parse_seconds(s)
}
fn mark_bit(s: &str) -> Result<u32, ValueError> {
    policy::parse_mark_bit(s)
}
fn rate(s: &str) -> Result<Limit, ValueError> {
    policy::parse_rate(s)
}
fn group(s: &str) -> Result<u16, String> {
    s.parse::<u16>().map_err(|_| "must be a number from 0 to 65535".to_string())
}
fn docker_host(s: &str) -> Result<String, String> {
    crate::docker::endpoint(Some(s), None).map(|_| s.to_string()).map_err(|e| e.to_string())
}
fn size(s: &str) -> Result<u64, String> {
    crate::audit::rotate::parse_size(s)
}

impl PolicyArgs {
    /// The policy the flags give (`None` where a flag was not used).
    pub fn spec(&self) -> PolicySpec {
        fn list<T: Clone>(flag: &'static str, v: &[T]) -> Option<Vec<Sourced<T>>> {
            (!v.is_empty()).then(|| v.iter().cloned().map(|x| Sourced::flag(flag, x)).collect())
        }
        PolicySpec {
            ifaces: list("--iface", &self.ifaces),
            subnets: list("--subnet", &self.subnets),
            allow: list("--allow", &self.allow),
            refusal: self.reject_with,
            log: self.log.clone().map(|p| Sourced::flag("--log", p)),
            log_rate: self.log_rate,
            log_to: self.log_to,
            nflog_group: self.nflog_group,
            block_host: self.block_host.then_some(true),
            mark_bit: self.mark_bit,
            grants: None,
            allow_domains: list("--allow-domain", &self.allow_domains),
            dns_upstreams: (!self.dns_upstreams.is_empty()).then(|| self.dns_upstreams.clone()),
            dns_min_ttl: self.dns_min_ttl,
            dns_max_ttl: self.dns_max_ttl,
            dns_refuse_with: self.dns_refuse_with,
            dns_port: self.dns_port,
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
    fn flags_become_typed_values() {
        let cli =
            Cli::try_parse_from(["egress-guard", "apply", "--iface", "br-+", "--log", "--allow", "10.0.0.53:53/udp"])
                .unwrap();
        let Command::Apply(a) = cli.command else { panic!() };
        let spec = a.policy.spec();
        assert_eq!(spec.ifaces.unwrap()[0].value.as_str(), "br-+");
        assert_eq!(spec.log.map(|l| l.value), Some(None));
        assert_eq!(spec.allow.unwrap()[0].value.to_string(), "10.0.0.53/32:53/udp");
        let cli =
            Cli::try_parse_from(["egress-guard", "check", "--log=egress: ", "--reject-with", "tcp-reset"]).unwrap();
        let Command::Check(c) = cli.command else { panic!() };
        assert_eq!(c.policy.spec().log.map(|l| l.value), Some(Some("egress: ".into())));
        assert_eq!(c.policy.reject_with, Some(Refusal::TcpReset));
    }

    #[test]
    fn a_bad_value_is_refused_by_clap_with_our_reason() {
        let e = Cli::try_parse_from(["egress-guard", "apply", "--subnet", "172.17.0.0/12"]).unwrap_err();
        assert!(e.to_string().contains("host bits are set; the network is 172.16.0.0/12"), "{e}");
    }

    /// Every `egress-guard …` line in a code block of the README and docs parses (the part
    /// before a comment, a pipe or `&&`), and its policy resolves.
    #[test]
    fn every_example_command_in_the_docs_parses() {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut seen = 0;
        for doc in ["README.md", "docs/operations.md", "docs/configuration.md", "docs/faq.md", "docs/design.md"] {
            let text = std::fs::read_to_string(format!("{root}/{doc}")).unwrap_or_default();
            // The fence's language, inside a code block: commands are lines of a `sh` block,
            // or `$ `-prompted lines of any block (the rest of those is sample output).
            let mut block: Option<&str> = None;
            for line in text.lines().map(str::trim) {
                if let Some(lang) = line.strip_prefix("```") {
                    block = if block.is_some() { None } else { Some(lang) };
                    continue;
                }
                let command = match block {
                    Some("sh") => line.strip_prefix("egress-guard ").or(line.strip_prefix("$ egress-guard ")),
                    Some(_) => line.strip_prefix("$ egress-guard "),
                    None => None,
                };
                let Some(rest) = command else { continue };
                let cut = rest.find(['#', '|', '&', '>']).unwrap_or(rest.len());
                let words = std::iter::once("egress-guard").chain(rest[..cut].split_whitespace());
                let words: Vec<String> = words.map(|w| w.trim_matches('"').replace("$pid", "1")).collect();
                let cli = match Cli::try_parse_from(&words) {
                    Ok(cli) => cli,
                    Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => continue,
                    Err(e) => panic!("{doc}: {line}\n{e}"),
                };
                let policy = match &cli.command {
                    Command::Apply(a) => Some(&a.policy),
                    Command::Status(a) => Some(&a.policy),
                    Command::Check(a) => Some(&a.policy),
                    Command::Watch(a) => Some(&a.policy),
                    Command::Remove(_)
                    | Command::Confirm(_)
                    | Command::Rollback(_)
                    | Command::RollbackTimer(_)
                    | Command::Log(_)
                    | Command::InstallService(_)
                    | Command::UninstallService(_) => None,
                };
                if let Some(p) = policy {
                    p.spec().resolve().unwrap_or_else(|e| panic!("{doc}: {line}\n{e}"));
                }
                seen += 1;
            }
        }
        assert!(seen >= 8, "only {seen} examples found");
    }
}
