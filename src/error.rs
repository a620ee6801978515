//! Every way a command can fail, each with the exit code DESIGN.md promises and a message
//! that says what is wrong and what to do.

use nix::errno::Errno;

use crate::ipt::Family;
use crate::netns::NetnsError;
use crate::nft::NlError;
use crate::policy::PolicyError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or value that cannot work; nothing was changed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The config file has a mistake.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The config file could not be read.
    #[error("cannot read config {path}")]
    ConfigRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `--netns` could not be entered.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// We lack CAP_NET_ADMIN in the target namespace.
    #[error("permission denied by nf_tables: run as root or grant CAP_NET_ADMIN")]
    Permission,
    /// No nfnetlink / nf_tables in this kernel.
    #[error("this kernel offers no nf_tables: enable CONFIG_NF_TABLES (or `modprobe nf_tables`)")]
    NoNfTables,
    /// `ip filter DOCKER-USER` is missing, so there is nowhere to put the guard.
    #[error(
        "{} filter DOCKER-USER does not exist: start dockerd with its iptables backend (iptables-nft), \
         or check with `{} -S DOCKER-USER`",
        family.nft_name(),
        family.iptables()
    )]
    NoDockerUser { family: Family },
    /// The kernel refused a request.
    #[error("nf_tables refused the change")]
    Kernel(#[source] NlError),
    /// Other writers kept committing between our read and our batch.
    #[error("gave up after {0} attempts: another program kept changing the ruleset; run the command again")]
    GaveUp(u32),
}

impl Error {
    /// Exit codes: 2 bad usage (nothing changed), 3 kernel refused, 4 gave up on concurrency.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Policy(_)
            | Error::Config(_)
            | Error::ConfigRead { .. }
            | Error::Netns(NetnsError::NotFound { .. }) => 2,
            Error::Netns(_) | Error::Permission | Error::NoNfTables | Error::NoDockerUser { .. } | Error::Kernel(_) => {
                3
            }
            Error::GaveUp(_) => 4,
        }
    }
}

impl From<NlError> for Error {
    fn from(e: NlError) -> Self {
        match e.errno() {
            Some(Errno::EPERM | Errno::EACCES) => Error::Permission,
            Some(Errno::EPROTONOSUPPORT | Errno::EAFNOSUPPORT | Errno::EOPNOTSUPP) => Error::NoNfTables,
            _ => Error::Kernel(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(errno: Errno) -> Error {
        Error::from(NlError::Kernel { what: "GETGEN".into(), errno })
    }

    #[test]
    fn kernel_errors_map_to_what_the_admin_must_fix() {
        assert!(matches!(kernel(Errno::EPERM), Error::Permission));
        // nfnetlink without the nf_tables subsystem answers EOPNOTSUPP; no nfnetlink at all
        // fails socket() with EPROTONOSUPPORT.
        assert!(matches!(kernel(Errno::EOPNOTSUPP), Error::NoNfTables));
        let no_socket = NlError::Io { op: "socket", errno: Errno::EPROTONOSUPPORT };
        assert!(matches!(Error::from(no_socket), Error::NoNfTables));
        assert!(matches!(kernel(Errno::EINVAL), Error::Kernel(_)));
        for e in [Error::Permission, Error::NoNfTables, kernel(Errno::EINVAL)] {
            assert_eq!(e.exit_code(), 3, "{e}");
        }
        assert!(Error::Permission.to_string().contains("CAP_NET_ADMIN"));
    }
}
