//! What egress-guard keeps on disk between commands, one set of files per network namespace:
//! a change awaiting confirmation in /run/egress-guard (tmpfs: a reboot ends it, with the rules
//! as the boot brings them) and the state before the latest apply/remove in
//! /var/lib/egress-guard (one level of history). Directories 0700, files 0600, written whole
//! (a temporary file renamed into place); a file that is not ours, or not what we write, is an
//! error with a hint, never trusted. `EG_RUN_DIR` / `EG_STATE_DIR` move them (tests, packaging).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::snapshot::Snapshot;

pub const RUN_DIR: &str = "/run/egress-guard";
pub const STATE_DIR: &str = "/var/lib/egress-guard";
/// The format of these files; another number is refused.
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {why}: if egress-guard did not write it, move it away (rm {path})")]
    Foreign { path: String, why: &'static str },
    #[error("{path} is not a state file of this egress-guard: move it away (rm {path})")]
    Corrupt {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path} belongs to another network namespace (it names {found}, this is {ours}): move it away (rm {path})"
    )]
    OtherNamespace { path: String, found: String, ours: String },
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `SO_NETNS_COOKIE` (kernel 5.14+): a number unique to a network namespace for as long as the
/// system runs; its inode number is reused once it is gone.
const SO_NETNS_COOKIE: libc::c_int = 71;
use nix::{getsockopt_impl, libc, sockopt_impl};
sockopt_impl!(NetnsCookie, GetOnly, libc::SOL_SOCKET, SO_NETNS_COOKIE, u64);

/// A change that takes itself back unless confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub version: u32,
    /// The network namespace it is about.
    pub namespace: String,
    /// That namespace's cookie, to tell it from a later one with the same inode.
    pub cookie: Option<u64>,
    /// Tells this confirmation from a later one, for the timer that waits for it.
    pub token: u64,
    /// What was run, for `status`: "apply" or "remove".
    pub command: String,
    /// Seconds since the epoch.
    pub created: u64,
    pub deadline: u64,
    /// The detached process that rolls back at the deadline.
    pub timer_pid: Option<u32>,
    /// The state before the change.
    pub before: Snapshot,
}

/// The state before the latest change, for `rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    pub version: u32,
    pub namespace: String,
    pub cookie: Option<u64>,
    /// What made the change: "apply", "remove", "rollback", "rollback (not confirmed in time)".
    pub command: String,
    pub at: u64,
    pub before: Snapshot,
}

/// The state files of one network namespace.
#[derive(Debug, Clone)]
pub struct Store {
    run_dir: PathBuf,
    state_dir: PathBuf,
    /// This namespace, as `net:[INODE]` (what /proc/self/ns/net links to).
    pub namespace: String,
    /// Its cookie, where the kernel has them.
    pub cookie: Option<u64>,
}

/// The lock all state-changing commands of one namespace take, held until dropped.
pub struct Lock(#[allow(dead_code)] Flock<File>);

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Store {
    /// The store of the calling process's network namespace (after `--netns` is entered).
    pub fn here() -> Result<Store, StateError> {
        let link = "/proc/self/ns/net";
        let target = fs::read_link(link).map_err(|source| StateError::Io { op: "read", path: link.into(), source })?;
        let dir =
            |var: &str, default: &str| std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
        Ok(Store {
            run_dir: dir("EG_RUN_DIR", RUN_DIR),
            state_dir: dir("EG_STATE_DIR", STATE_DIR),
            namespace: target.to_string_lossy().into_owned(),
            cookie: netns_cookie(),
        })
    }

    /// `net:[4026531840]` → `net-4026531840`, `net:[cookie 7]` → `net-cookie-7`: a file name.
    fn key(&self) -> String {
        let digits: String = self.namespace.chars().filter(char::is_ascii_digit).collect();
        match self.namespace.contains("cookie") {
            true => format!("net-cookie-{digits}"),
            false => format!("net-{digits}"),
        }
    }

    fn pending_path(&self) -> PathBuf {
        self.run_dir.join(format!("pending-{}.json", self.key()))
    }

    fn history_path(&self) -> PathBuf {
        self.state_dir.join(format!("history-{}.json", self.key()))
    }

    /// Takes this namespace's lock (waiting for another command that holds it).
    pub fn lock(&self) -> Result<Lock, StateError> {
        make_dir(&self.run_dir)?;
        let path = self.run_dir.join(format!("{}.lock", self.key()));
        let io = |op, source| StateError::Io { op, path: path.display().to_string(), source };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io("open", e))?;
        Flock::lock(file, FlockArg::LockExclusive).map(Lock).map_err(|(_, errno)| io("lock", errno.into()))
    }

    pub fn pending(&self) -> Result<Option<Pending>, StateError> {
        let found: Option<Pending> = read(&self.pending_path())?;
        let found = found.map(|p| self.same_namespace(&self.pending_path(), &p.namespace).map(|()| p)).transpose()?;
        Ok(found.filter(|p| self.alive(p.cookie)))
    }

    pub fn set_pending(&self, pending: &Pending) -> Result<(), StateError> {
        make_dir(&self.run_dir)?;
        write(&self.pending_path(), pending)
    }

    pub fn clear_pending(&self) -> Result<(), StateError> {
        remove(&self.pending_path())
    }

    pub fn history(&self) -> Result<Option<History>, StateError> {
        let found: Option<History> = read(&self.history_path())?;
        let found = found.map(|h| self.same_namespace(&self.history_path(), &h.namespace).map(|()| h)).transpose()?;
        Ok(found.filter(|h| self.alive(h.cookie)))
    }

    /// A file about a namespace that had our inode number but another cookie is about one that
    /// is gone (two living namespaces never share an inode): it says nothing about this one.
    fn alive(&self, cookie: Option<u64>) -> bool {
        match (self.cookie, cookie) {
            (Some(ours), Some(theirs)) => ours == theirs,
            _ => true,
        }
    }

    pub fn set_history(&self, command: &str, before: Snapshot) -> Result<(), StateError> {
        make_dir(&self.state_dir)?;
        let history = History {
            version: VERSION,
            namespace: self.namespace.clone(),
            cookie: self.cookie,
            command: command.into(),
            at: now(),
            before,
        };
        write(&self.history_path(), &history)
    }

    fn same_namespace(&self, path: &Path, found: &str) -> Result<(), StateError> {
        if found == self.namespace {
            return Ok(());
        }
        Err(StateError::OtherNamespace {
            path: path.display().to_string(),
            found: found.into(),
            ours: self.namespace.clone(),
        })
    }
}

/// This namespace's cookie, read from a socket made here; `None` on kernels before 5.14.
fn netns_cookie() -> Option<u64> {
    use nix::sys::socket::{getsockopt, socket, AddressFamily, SockFlag, SockType};
    let fd = socket(AddressFamily::Unix, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).ok()?;
    getsockopt(&fd, NetnsCookie).ok()
}

fn make_dir(dir: &Path) -> Result<(), StateError> {
    match fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => check_owned(dir, true),
        Err(source) => Err(StateError::Io { op: "create", path: dir.display().to_string(), source }),
    }
}

/// Ours: owned by us and not writable by anyone else (a directory), readable only by us (a file).
fn check_owned(path: &Path, dir: bool) -> Result<(), StateError> {
    let shown = path.display().to_string();
    let meta =
        fs::symlink_metadata(path).map_err(|source| StateError::Io { op: "stat", path: shown.clone(), source })?;
    let foreign = |why| Err(StateError::Foreign { path: shown.clone(), why });
    if dir && !meta.is_dir() || !dir && !meta.file_type().is_file() {
        return foreign(if dir { "not a directory" } else { "not a regular file" });
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return foreign("owned by another user");
    }
    let loose = if dir { 0o022 } else { 0o077 };
    if meta.mode() & loose != 0 {
        return foreign(if dir { "writable by others" } else { "readable or writable by others" });
    }
    Ok(())
}

fn read<T: DeserializeOwned + HasVersion>(path: &Path) -> Result<Option<T>, StateError> {
    let shown = path.display().to_string();
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Io { op: "stat", path: shown, source }),
        Ok(_) => match check_owned(path, false) {
            Err(StateError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => return Ok(None),
            other => other?,
        },
    }
    // Removed between the two looks (a confirmation ending): not there.
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Io { op: "read", path: shown, source }),
    };
    let value: T = serde_json::from_str(&text).map_err(|source| StateError::Corrupt { path: shown.clone(), source })?;
    if value.version() != VERSION {
        return Err(StateError::Foreign { path: shown, why: "written by another version of egress-guard" });
    }
    Ok(Some(value))
}

/// Writes the whole file under a temporary name and renames it into place.
fn write<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let shown = path.display().to_string();
    let io = |op, source| StateError::Io { op, path: shown.clone(), source };
    let text = serde_json::to_vec(value).map_err(|e| io("encode", std::io::Error::other(e)))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(|e| io("create", e))?;
    file.write_all(&text).and_then(|()| file.sync_all()).map_err(|e| io("write", e))?;
    fs::rename(&tmp, path).map_err(|e| io("rename", e))
}

fn remove(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(StateError::Io { op: "remove", path: path.display().to_string(), source: e })
        }
        _ => Ok(()),
    }
}

trait HasVersion {
    fn version(&self) -> u32;
}

impl HasVersion for Pending {
    fn version(&self) -> u32 {
        self.version
    }
}

impl HasVersion for History {
    fn version(&self) -> u32 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> Store {
        Store {
            run_dir: dir.join("run"),
            state_dir: dir.join("lib"),
            namespace: "net:[4026532000]".into(),
            cookie: Some(9),
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot { version: crate::snapshot::VERSION, taken: 7, places: Vec::new() }
    }

    #[test]
    fn files_are_private_written_whole_and_checked_on_read() {
        let dir = std::env::temp_dir().join(format!("eg-state-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = store(&dir);
        assert_eq!(s.history().unwrap(), None);
        s.set_history("apply", snapshot()).unwrap();
        let h = s.history().unwrap().unwrap();
        assert_eq!((h.command.as_str(), h.before.taken), ("apply", 7));
        let path = s.history_path();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(dir.join("lib")).unwrap().mode() & 0o777, 0o700);

        // Loosened permissions, garbage and another namespace's file are refused with a hint.
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        assert!(s.history().unwrap_err().to_string().contains("readable or writable by others"));
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        fs::write(&path, r#"{"version":1}"#).unwrap();
        let e = s.history().unwrap_err().to_string();
        assert!(e.contains("is not a state file of this egress-guard: move it away (rm "), "{e}");
        let other = Store { namespace: "net:[1]".into(), ..store(&dir) };
        other.set_history("apply", snapshot()).unwrap();
        fs::rename(other.history_path(), &path).unwrap();
        assert!(s.history().unwrap_err().to_string().contains("belongs to another network namespace"));
        // A namespace that had our inode before (another cookie) left no history of ours.
        let gone = Store { cookie: Some(3), ..store(&dir) };
        gone.set_history("apply", snapshot()).unwrap();
        assert_eq!(s.history().unwrap(), None);
        let _lock = s.lock().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
