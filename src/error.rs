//! Every way a command can fail, each with the exit code DESIGN.md promises and a message that
//! says what is wrong and what to do. The modules below have their own error types; this one
//! gathers them and maps each to its exit code.

use nix::errno::Errno;

use crate::audit::rotate::RotateError;
use crate::audit::trail::TrailError;
use crate::backend::BackendError;
use crate::config::ConfigError;
use crate::exit::ExitCode;
use crate::netns::NetnsError;
use crate::nft::NlError;
use crate::policy::PolicyError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or value that cannot work; nothing was changed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The config file has a mistake, or cannot be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Two settings that cannot go together.
    #[error("{0}")]
    Usage(&'static str),
    /// A command that cannot run now (a change awaits confirmation, nothing to roll back).
    #[error("{0}")]
    Refused(String),
    /// A state file (pending confirmation, history) that is not ours or not readable.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// `--netns` could not be entered.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// We lack CAP_NET_ADMIN in the target namespace.
    #[error("permission denied by nf_tables ({op}): run as root or grant CAP_NET_ADMIN")]
    Permission { op: String },
    /// No nfnetlink / nf_tables in this kernel.
    #[error("this kernel offers no nf_tables: enable CONFIG_NF_TABLES (or `modprobe nf_tables`)")]
    NoNfTables,
    /// A place we cannot write to (a chain missing, a table that is not ours).
    #[error(transparent)]
    Backend(BackendError),
    /// The kernel refused a request, or answered something we cannot read.
    #[error(transparent)]
    Kernel(NlError),
    /// `install-service` / `uninstall-service` could not do their part.
    #[error(transparent)]
    Service(#[from] crate::cmd::service::ServiceError),
    /// `egress-guard log` could not read the NFLOG group, or write its output.
    #[error(transparent)]
    Trail(#[from] TrailError),
    /// `DOCKER_HOST` names something we cannot talk to.
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
    /// `log --summary` could not read a file.
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A thread of ours could not start (the system is out of threads or memory).
    #[error("cannot start the {0} thread")]
    Thread(&'static str, #[source] std::io::Error),
    /// Other writers kept committing between our read and our batch.
    #[error("gave up after {0} attempts: another program kept changing the ruleset; run the command again")]
    GaveUp(u32),
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Policy(_) | Error::Config(_) | Error::Usage(_) | Error::Refused(_) => ExitCode::Usage,
            // A file that is not ours is for the admin to move away; a directory we may not
            // write is the system's refusal.
            Error::State(crate::state::StateError::Io { .. }) => ExitCode::Kernel,
            Error::State(_) => ExitCode::Usage,
            Error::Netns(e) if e.is_usage() => ExitCode::Usage,
            Error::Netns(_) | Error::Permission { .. } | Error::NoNfTables | Error::Backend(_) | Error::Kernel(_) => {
                ExitCode::Kernel
            }
            Error::GaveUp(_) => ExitCode::GaveUp,
            // Files named on the command line are the user's to fix; nothing was changed.
            Error::Trail(TrailError::File(RotateError::Open { .. })) | Error::Docker(_) | Error::Read { .. } => {
                ExitCode::Usage
            }
            Error::Trail(_) | Error::Thread(..) => ExitCode::Kernel,
            Error::Service(e) => e.exit_code(),
        }
    }
}

impl From<NlError> for Error {
    fn from(e: NlError) -> Self {
        match (&e, e.errno()) {
            (NlError::Kernel { what, .. }, Some(Errno::EPERM | Errno::EACCES)) => {
                Error::Permission { op: what.clone() }
            }
            (NlError::Io { op, .. }, Some(Errno::EPERM | Errno::EACCES)) => Error::Permission { op: op.to_string() },
            (_, Some(Errno::EPROTONOSUPPORT | Errno::EAFNOSUPPORT | Errno::EOPNOTSUPP)) => Error::NoNfTables,
            _ => Error::Kernel(e),
        }
    }
}

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Netlink(e) => e.into(),
            other => Error::Backend(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn kernel(errno: Errno) -> Error {
        Error::from(NlError::Kernel { what: "GETGEN".into(), errno })
    }

    #[test]
    fn kernel_errors_map_to_what_the_admin_must_fix() {
        assert!(matches!(kernel(Errno::EPERM), Error::Permission { .. }));
        // nfnetlink without the nf_tables subsystem answers EOPNOTSUPP; no nfnetlink at all
        // fails socket() with EPROTONOSUPPORT.
        assert!(matches!(kernel(Errno::EOPNOTSUPP), Error::NoNfTables));
        let no_socket = NlError::Io { op: "socket", errno: Errno::EPROTONOSUPPORT };
        assert!(matches!(Error::from(no_socket), Error::NoNfTables));
        assert!(matches!(kernel(Errno::EINVAL), Error::Kernel(_)));
        for e in [kernel(Errno::EPERM), Error::NoNfTables, kernel(Errno::EINVAL)] {
            assert_eq!(e.exit_code(), ExitCode::Kernel, "{e}");
        }
        assert!(kernel(Errno::EPERM).to_string().contains("CAP_NET_ADMIN"));
    }

    #[test]
    fn a_kernel_error_names_the_operation_and_keeps_errno_as_its_cause() {
        let e = kernel(Errno::EINVAL);
        assert_eq!(e.to_string(), "GETGEN");
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("EINVAL: Invalid argument"));
    }
}
