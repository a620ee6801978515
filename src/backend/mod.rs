//! Where the guard's rules live, behind one small trait. `docker_user` writes into Docker's
//! DOCKER-USER chains in iptables-nft's own encoding; `table` keeps its own `inet egress_guard`
//! table (Docker's nftables backend, Docker 20.10's IPv6, iptables-legacy hosts, Podman).
//! `detect` decides, per family, which to use. Everything about a place — its chains, its
//! encoding, how to read, change and judge it — is in that backend's file; the commands loop
//! over the backends `detect` returns and know none of it.

pub mod detect;
pub mod docker_user;
pub mod table;

use crate::net::Family;
use crate::nft::msg::BatchBuilder;
use crate::nft::socket::Netlink;
use crate::nft::NlError;
use crate::policy::Policy;
use crate::snapshot::PlaceSnapshot;

/// `--target`: where the rules live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Per family: DOCKER-USER where it exists, our own table where it does not
    #[default]
    Auto,
    /// Docker's DOCKER-USER chains (ip and ip6 filter)
    DockerUser,
    /// Our own nftables table, inet egress_guard
    Table,
    /// Both, in one batch: belt and braces
    Both,
}

impl Target {
    /// The word `--target` takes.
    pub fn word(self) -> &'static str {
        match self {
            Target::Auto => "auto",
            Target::DockerUser => "docker-user",
            Target::Table => "table",
            Target::Both => "both",
        }
    }
}

/// One kind of place for the guard. Each method reads what it needs (a few filtered dumps,
/// never the whole ruleset) and, where it changes anything, only adds messages to the batch the
/// caller commits under the generation it read.
pub trait Backend {
    /// What it is, in messages: "docker-user" or "table", with its families.
    fn describe(&self) -> String;

    /// Adds to `batch` what makes this backend's places hold `policy` (nothing when they do).
    fn sync(&self, nl: &mut Netlink, batch: &mut BatchBuilder, policy: &Policy) -> Result<Vec<Step>, BackendError>;

    /// Adds to `batch` the removal of everything of ours in this backend's places.
    fn remove(&self, nl: &mut Netlink, batch: &mut BatchBuilder) -> Result<Vec<Step>, BackendError>;

    /// Judges this backend's places against `policy`, for `status` and `check`.
    fn judge(&self, nl: &mut Netlink, policy: &Policy) -> Result<Vec<PlaceReport>, BackendError>;

    /// Everything of ours in this backend's places, exactly, to take a change back to.
    fn snapshot(&self, nl: &mut Netlink) -> Result<Vec<PlaceSnapshot>, BackendError>;

    /// Adds to `batch` what puts this backend's places back as `snapshot` has them: our rules
    /// only, each where it stood among the rules of others that are still there.
    fn restore(
        &self,
        nl: &mut Netlink,
        batch: &mut BatchBuilder,
        snapshot: &[PlaceSnapshot],
    ) -> Result<Vec<Step>, BackendError>;
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// `ip filter DOCKER-USER` is missing, so there is nowhere to put the guard.
    #[error(
        "{} filter DOCKER-USER does not exist: start dockerd with its iptables backend (iptables-nft), \
         check with `{} -S DOCKER-USER`, or use --target auto",
        family.nft_name(),
        family.iptables()
    )]
    NoDockerUser { family: Family },
    /// A table, chain or set by our name that we did not make.
    #[error("{what} exists but was not made by egress-guard (no egress-guard comment): {hint}")]
    NotOurs { what: String, hint: &'static str },
    /// Another process's netlink socket owns the table: another `watch` runs here.
    #[error("{what} is held by another egress-guard watch (netlink port {port}, usually its pid): stop it first; one watch per network namespace")]
    HeldByOther { what: String, port: u32 },
    #[error(transparent)]
    Netlink(#[from] NlError),
}

/// What one place (a family's DOCKER-USER, or our table) needed, or got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// e.g. "ip filter DOCKER-USER" or "inet egress_guard".
    pub place: String,
    pub change: Change,
    /// The rules (and sets) written.
    pub added: Vec<RuleText>,
    /// The rules deleted, as an admin reads them.
    pub removed: Vec<String>,
    /// What the admin should know (not reached, bypassed, a family not covered).
    pub warnings: Vec<String>,
}

impl Step {
    pub fn unchanged(place: String) -> Step {
        Step { place, change: Change::Unchanged, added: Vec::new(), removed: Vec::new(), warnings: Vec::new() }
    }
}

/// A rule as an admin reads it: as `iptables -S` prints it (rules in iptables' tables) and in
/// nft syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleText {
    pub iptables: Option<String>,
    pub nft: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Already as planned: nothing sent.
    Unchanged,
    /// Rules added and/or removed.
    Written,
    /// The place does not exist (e.g. no ip6 DOCKER-USER): not covered.
    Missing,
}

/// How a place stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Verdict {
    /// Our rules are exactly the plan, and packets reach them first.
    #[serde(rename = "in place")]
    InPlace,
    /// Something of ours is there but differs from the plan, or is not reached, or bypassed.
    #[serde(rename = "drifted")]
    Drifted,
    /// None of our rules are there.
    #[serde(rename = "absent")]
    Absent,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::InPlace => "in place",
            Verdict::Drifted => "drifted",
            Verdict::Absent => "absent",
        }
    }
}

/// One of our rules as found in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleReport {
    /// As an admin reads it (`iptables -S`, or nft syntax for our table).
    pub rule: String,
    /// Packets the rule matched (for a refusal: refused).
    pub packets: u64,
}

/// One place, judged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlaceReport {
    /// "ip filter DOCKER-USER", "inet egress_guard".
    pub place: String,
    /// Which backend: "docker-user" or "table".
    pub backend: &'static str,
    /// The families this place guards.
    pub families: Vec<Family>,
    pub exists: bool,
    /// Whether packets get there first (FORWARD jumps to DOCKER-USER and nothing lets them
    /// out before; our base chain is hooked).
    pub reached: bool,
    /// Whether the place must hold the guard: a missing ip6 DOCKER-USER is not required when
    /// no guarded bridge has an IPv6 address.
    pub required: bool,
    pub verdict: Verdict,
    /// Why the verdict is not "in place", in a few words.
    pub reason: Option<String>,
    pub foreign_rules: usize,
    pub rules: Vec<RuleReport>,
    /// Attempts refused since our rules were written: the sum of the refusing rules' counters.
    pub refused: u64,
    /// Rules of other programs that let guarded traffic out before it reaches ours.
    pub bypass: Vec<String>,
}
