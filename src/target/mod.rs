//! Where the guard's rules live. `docker_user` writes into Docker's DOCKER-USER chains in
//! iptables-nft's own encoding; `table` keeps its own `inet egress_guard` table (for Docker's
//! nftables backend, iptables-legacy hosts and Podman). `detect` picks one for `auto`.

pub mod detect;
pub mod docker_user;
pub mod table;

/// `--target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `docker-user` where `ip filter DOCKER-USER` exists in nf_tables, `table` otherwise.
    Auto,
    DockerUser,
    Table,
    /// Both, in one batch: belt and braces.
    Both,
}

impl Target {
    pub const WORDS: [&'static str; 4] = ["auto", "docker-user", "table", "both"];

    /// The word `--target` takes for this target.
    pub fn word(self) -> &'static str {
        match self {
            Target::Auto => "auto",
            Target::DockerUser => "docker-user",
            Target::Table => "table",
            Target::Both => "both",
        }
    }

    pub fn parse(word: &str) -> Option<Target> {
        [Target::Auto, Target::DockerUser, Target::Table, Target::Both].into_iter().find(|t| t.word() == word)
    }

    pub fn uses_docker_user(self) -> bool {
        matches!(self, Target::DockerUser | Target::Both)
    }

    pub fn uses_table(self) -> bool {
        matches!(self, Target::Table | Target::Both)
    }
}

/// What one place (a family's DOCKER-USER, or our table) needs or got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// e.g. "ip filter DOCKER-USER" or "inet egress_guard".
    pub place: String,
    pub change: Change,
    /// The rules written.
    pub added: Vec<RuleText>,
    /// The rules deleted, likewise.
    pub removed: Vec<String>,
    /// Something the admin should know (no FORWARD jump, family not covered).
    pub warning: Option<String>,
}

/// A rule as an admin reads it: as `iptables -S` prints it (for rules in iptables' tables)
/// and in nft syntax.
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
