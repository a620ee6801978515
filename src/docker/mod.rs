//! Docker, read-only: which container is behind an address. A small blocking client for the
//! Engine API over its unix socket, the few models we read from it, and an address book that
//! remembers who held each address when, fed by a snapshot and then by Docker's event stream.
//!
//! Pure first: `endpoint` (where the socket is), `http` (request bytes, response framing),
//! `model` (JSON), `book` (address → container over time). The I/O shell is `client` (one
//! connection per request, plus the long-lived `/events` stream) and `follow` (a thread keeping
//! a book up to date across dockerd restarts).
//!
//! Only API fields present in both Docker 20.10 (API 1.41) and 29 (which refuses versions below
//! 1.44) are read, and paths are unversioned so the daemon answers in its own version.

pub mod book;
pub mod client;
pub mod endpoint;
pub mod follow;
pub mod http;
pub mod model;

use std::path::PathBuf;

pub use book::{AddressBook, Fetch, Holding, Identity, Snapshot};
pub use client::{Client, EventStream, Stopper};
pub use endpoint::{endpoint, Endpoint, DEFAULT_SOCKET};
pub use follow::{DockerState, FollowOptions, Follower};
pub use model::{
    Attachment, Compose, Container, ContainerInspect, ContainerSummary, Event, Network, NetworkEndpoint, Version,
    STARTING,
};

/// What can go wrong finding or talking to dockerd.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// `--docker-host` / `DOCKER_HOST` names something other than a unix socket.
    #[error("unsupported docker host {0:?}: only unix sockets are supported (unix:///path or /path)")]
    UnsupportedEndpoint(String),
    /// Nothing exists at the socket path: dockerd is not running, or runs elsewhere.
    #[error("docker socket {} does not exist: is dockerd running? (set --docker-host or DOCKER_HOST)", .0.display())]
    SocketMissing(PathBuf),
    /// The socket exists but we may not open it.
    #[error("permission denied on docker socket {}: add the user to the docker group or run as root", .0.display())]
    PermissionDenied(PathBuf),
    /// The socket exists but no daemon accepts on it (a stale socket after dockerd died).
    #[error("nothing listens on docker socket {}: is dockerd running?", .0.display())]
    Refused(PathBuf),
    /// The daemon did not answer within the timeout.
    #[error("dockerd did not answer {0} in time")]
    Timeout(String),
    /// Any other socket error.
    #[error("{op} on docker socket {} failed", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The daemon answered with an error status; `message` is its own explanation.
    #[error("dockerd refused {what}: {message} (HTTP {status})")]
    Daemon { what: String, status: u16, message: String },
    /// The daemon sent something that is not the HTTP or JSON we expect.
    #[error("malformed answer from dockerd to {what}: {why}")]
    Malformed { what: String, why: String },
    /// A body that is not the JSON we expect.
    #[error("cannot decode dockerd's answer to {what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// The connection ended (dockerd stopped or restarted, or the stream was stopped).
    #[error("dockerd closed the connection during {0}")]
    Closed(String),
    /// A container or network name that cannot be put into a request path.
    #[error("not a docker object name or id: {0:?}")]
    BadName(String),
}

impl DockerError {
    /// True for a 404 from the daemon: the container or network no longer exists.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DockerError::Daemon { status: 404, .. })
    }
}

/// Test data: a file of `src/docker/testdata`, without the `# ` lines at its top that say how
/// it was captured.
#[cfg(test)]
pub(crate) fn testdata(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/docker/testdata").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rest = &bytes[..];
    while rest.starts_with(b"# ") {
        let end = rest.iter().position(|&b| b == b'\n').expect("comment line ends");
        rest = &rest[end + 1..];
    }
    rest.to_vec()
}
