//! Where dockerd listens: `--docker-host`, else `DOCKER_HOST`, else the default socket. Pure:
//! the caller reads the environment and passes what it found.

use std::path::{Path, PathBuf};

use super::DockerError;

/// Where dockerd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// A dockerd API socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub socket: PathBuf,
}

/// The endpoint the flag names, else the one `DOCKER_HOST` names, else the default socket. An
/// empty value counts as unset (as the docker CLI treats `DOCKER_HOST=`).
pub fn endpoint(flag: Option<&str>, docker_host_env: Option<&str>) -> Result<Endpoint, DockerError> {
    let chosen = [flag, docker_host_env].into_iter().flatten().find(|v| !v.is_empty());
    match chosen {
        None => Ok(Endpoint { socket: PathBuf::from(DEFAULT_SOCKET) }),
        Some(value) => parse(value),
    }
}

/// `unix:///path` or a bare absolute path; tcp://, ssh://, npipe:// and relative paths are
/// refused: we only speak HTTP over a local unix socket.
fn parse(value: &str) -> Result<Endpoint, DockerError> {
    let path = value.strip_prefix("unix://").unwrap_or(value);
    if Path::new(path).is_absolute() && !path.contains('\0') {
        Ok(Endpoint { socket: PathBuf::from(path) })
    } else {
        Err(DockerError::UnsupportedEndpoint(value.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(flag: Option<&str>, env: Option<&str>) -> String {
        endpoint(flag, env).unwrap().socket.display().to_string()
    }

    #[test]
    fn flag_wins_over_environment_and_default() {
        assert_eq!(socket(None, None), "/var/run/docker.sock");
        assert_eq!(socket(None, Some("unix:///run/user/1000/docker.sock")), "/run/user/1000/docker.sock");
        assert_eq!(socket(Some("/tmp/d.sock"), Some("unix:///run/other.sock")), "/tmp/d.sock");
        assert_eq!(socket(Some("unix:///tmp/d.sock"), None), "/tmp/d.sock");
    }

    #[test]
    fn empty_values_count_as_unset() {
        assert_eq!(socket(Some(""), Some("unix:///run/d.sock")), "/run/d.sock");
        assert_eq!(socket(None, Some("")), "/var/run/docker.sock");
    }

    #[test]
    fn only_unix_sockets_are_supported() {
        for bad in ["tcp://127.0.0.1:2375", "ssh://me@host", "npipe:////./pipe/docker_engine", "unix://rel", "d.sock"] {
            let err = endpoint(Some(bad), None).unwrap_err();
            assert!(matches!(&err, DockerError::UnsupportedEndpoint(v) if v == bad), "{bad}: {err:?}");
            assert!(err.to_string().contains("only unix sockets are supported"), "{err}");
        }
        // A bad environment value is an error too, not a silent fall back to the default.
        assert!(endpoint(None, Some("tcp://localhost:2376")).is_err());
    }
}
