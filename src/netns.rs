//! `--netns NAME|PATH`: move this (single-threaded) process into another network namespace
//! before any netlink socket is opened, so every later socket lives there.

use std::fs::File;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The name or path does not lead to a file.
    #[error("network namespace {path} not found (see `ip netns list`, or pass /proc/PID/ns/net)")]
    NotFound { path: String },
    /// The file is there, but it is not a network namespace.
    #[error("{path} is not a network namespace (see `ip netns list`, or pass /proc/PID/ns/net)")]
    NotANamespace { path: String },
    /// We may not enter it.
    #[error("cannot enter network namespace {path} (needs CAP_SYS_ADMIN)")]
    Enter {
        path: String,
        #[source]
        errno: Errno,
    },
}

impl NetnsError {
    /// A wrong name or path is bad usage; a refusal to enter is the kernel's.
    pub fn is_usage(&self) -> bool {
        matches!(self, NetnsError::NotFound { .. } | NetnsError::NotANamespace { .. })
    }
}

/// A bare name means `/run/netns/NAME` (what `ip netns add` creates); anything with a `/` is a path.
pub fn resolve(spec: &str) -> PathBuf {
    if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        PathBuf::from("/run/netns").join(spec)
    }
}

pub fn enter(spec: &str) -> Result<(), NetnsError> {
    let path = resolve(spec);
    let shown = path.display().to_string();
    let file = File::open(&path).map_err(|_| NetnsError::NotFound { path: shown.clone() })?;
    setns(file, CloneFlags::CLONE_NEWNET).map_err(|errno| match errno {
        Errno::EINVAL => NetnsError::NotANamespace { path: shown.clone() },
        errno => NetnsError::Enter { path: shown.clone(), errno },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_live_under_run_netns_and_paths_are_kept() {
        assert_eq!(resolve("ci-host"), PathBuf::from("/run/netns/ci-host"));
        assert_eq!(resolve("/proc/42/ns/net"), PathBuf::from("/proc/42/ns/net"));
    }
}
