//! nf_tables over netlink: the parts rustables 0.9 has no API for (xt match/target expressions,
//! the rule COMPAT attribute, rule insertion at a position, the batch generation id, GETGEN),
//! written as small encoder/decoder pairs, plus the socket that carries them.

pub mod attr;
pub mod chain;
pub mod expr;
pub mod monitor;
pub mod msg;
pub mod nflog;
pub mod rule;
pub mod rustables_bridge;
pub mod set;
pub mod socket;
pub mod sys;
pub mod text;
pub mod xt;

use nix::errno::Errno;

/// What can go wrong talking to nf_tables.
#[derive(Debug, thiserror::Error)]
pub enum NlError {
    /// The kernel sent something we cannot parse.
    #[error("malformed netlink message from the kernel: {0}")]
    Malformed(&'static str),
    /// socket()/bind()/send()/recv() failed.
    #[error("netlink {op} failed")]
    Io {
        op: &'static str,
        #[source]
        errno: Errno,
    },
    /// The kernel refused a request or a message of a batch (`what` names it, e.g. "GETGEN",
    /// "GETRULE ip filter DOCKER-USER", "NEWRULE ip filter DOCKER-USER").
    #[error("{what}")]
    Kernel {
        what: String,
        #[source]
        errno: Errno,
    },
    /// Someone else committed between our read and our batch (ERESTART on the batch genid),
    /// or a dump was interrupted by a commit.
    #[error("the ruleset changed while we were reading it")]
    Concurrent,
    /// No answer for a message of ours within the timeout.
    #[error("the kernel did not answer {0}")]
    NoAnswer(String),
}

/// Bytes written as hex pairs separated by whitespace (how the tests keep captured messages).
#[cfg(test)]
pub(crate) fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace().map(|b| u8::from_str_radix(b, 16).expect("hex byte")).collect()
}

impl NlError {
    /// The errno behind a kernel or socket failure, if any.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NlError::Io { errno, .. } | NlError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}
