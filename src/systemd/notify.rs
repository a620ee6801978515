//! sd_notify(3), the service manager's readiness protocol: newline-separated `KEY=VALUE` lines
//! in one datagram to the unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the
//! abstract namespace). Outside systemd the variable is unset and every call does nothing.
//!
//! Written here rather than taken from a crate: the protocol is one `sendto()` on a socket std
//! already offers, and a dependency would bring more code than it saves.

use std::ffi::OsString;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// One state change or piece of information for the service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State<'a> {
    /// Startup is done (`Type=notify` units are "active" only now, and units ordered after
    /// this one start only now).
    Ready,
    /// Re-reading the configuration; send `Ready` again when done.
    Reloading,
    /// Shutting down.
    Stopping,
    /// Still alive: resets the `WatchdogSec=` timer.
    Watchdog,
    /// One line for `systemctl status` (a newline inside is sent as a space).
    Status(&'a str),
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` is set but names no unix socket we can address.
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor an @abstract name")]
    BadSocket(String),
    /// The datagram could not be sent (the manager went away, or the socket is not there).
    #[error("cannot notify the service manager at {socket}")]
    Send {
        socket: String,
        #[source]
        source: io::Error,
    },
}

/// Where notifications go, read once from the environment systemd gave us.
#[derive(Debug)]
pub struct Notifier {
    socket: Socket,
    watchdog: Option<Duration>,
}

#[derive(Debug)]
enum Socket {
    /// Not started by a service manager (or one that wants no notifications).
    None,
    /// The address, and how `$NOTIFY_SOCKET` spelled it (for messages).
    Unix(SocketAddr, String),
    /// Set to something we cannot use; said at the first send, where it is reported.
    Unusable(String),
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`.
    pub fn from_env() -> Notifier {
        let var = |name| std::env::var_os(name);
        Notifier::from_vars(var("NOTIFY_SOCKET"), var("WATCHDOG_USEC"), var("WATCHDOG_PID"), std::process::id())
    }

    /// A notifier that sends nothing, as outside systemd.
    pub fn disabled() -> Notifier {
        Notifier { socket: Socket::None, watchdog: None }
    }

    /// The same as [`Notifier::from_env`] from given values; `pid` is this process's id.
    pub fn from_vars(
        notify_socket: Option<OsString>,
        watchdog_usec: Option<OsString>,
        watchdog_pid: Option<OsString>,
        pid: u32,
    ) -> Notifier {
        let socket = match notify_socket {
            None => Socket::None,
            Some(s) if s.is_empty() => Socket::None,
            Some(s) => address(s.as_bytes()).map_or_else(
                || Socket::Unusable(s.to_string_lossy().into_owned()),
                |addr| Socket::Unix(addr, s.to_string_lossy().into_owned()),
            ),
        };
        // WATCHDOG_PID, when set, names the process the watchdog is meant for: a child that
        // inherited the variables must not think the parent's watchdog is its own.
        let for_us = watchdog_pid.is_none_or(|p| p.to_str().and_then(|p| p.parse::<u32>().ok()) == Some(pid));
        let usec = watchdog_usec.and_then(|u| u.to_str().and_then(|u| u.parse::<u64>().ok())).filter(|&u| u > 0);
        let watchdog = usec.filter(|_| for_us).map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// Whether a service manager listens (`$NOTIFY_SOCKET` was set).
    pub fn is_enabled(&self) -> bool {
        !matches!(self.socket, Socket::None)
    }

    /// `WatchdogSec=` of our unit, when the manager expects `WATCHDOG=1` from this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// How often to send `WATCHDOG=1`: half the watchdog interval, as sd_watchdog_enabled(3)
    /// advises, so a late wake-up does not get us killed.
    pub fn ping_every(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Sends `states` in one datagram (nothing when not under a service manager).
    pub fn notify(&self, states: &[State]) -> Result<(), NotifyError> {
        let (addr, shown) = match &self.socket {
            Socket::None => return Ok(()),
            Socket::Unusable(s) => return Err(NotifyError::BadSocket(s.clone())),
            Socket::Unix(addr, shown) => (addr, shown),
        };
        let send_error = |source| NotifyError::Send { socket: shown.clone(), source };
        let socket = UnixDatagram::unbound().map_err(send_error)?;
        socket.send_to_addr(message(states).as_bytes(), addr).map_err(send_error)?;
        Ok(())
    }

    /// `READY=1` with a status line: the first apply is done.
    pub fn ready(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&[State::Ready, State::Status(status)])
    }

    /// A status line alone.
    pub fn status(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&[State::Status(status)])
    }

    /// `WATCHDOG=1`, when the manager asked for it (else nothing is sent).
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        if self.watchdog.is_none() {
            return Ok(());
        }
        self.notify(&[State::Watchdog])
    }

    /// `RELOADING=1` with a status line; send [`Notifier::ready`] when the reload is done.
    pub fn reloading(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&[State::Reloading, State::Status(status)])
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&[State::Stopping, State::Status(status)])
    }
}

/// `/path` → a path address; `@name` → the abstract name `\0name` (systemd's spelling).
fn address(spec: &[u8]) -> Option<SocketAddr> {
    match spec.first()? {
        b'/' => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(spec)).ok(),
        b'@' => SocketAddr::from_abstract_name(&spec[1..]).ok(),
        _ => None,
    }
}

/// The datagram: one `KEY=VALUE` line per state.
pub fn message(states: &[State]) -> String {
    let mut text = String::new();
    for state in states {
        match state {
            State::Ready => text.push_str("READY=1"),
            State::Reloading => text.push_str("RELOADING=1"),
            State::Stopping => text.push_str("STOPPING=1"),
            State::Watchdog => text.push_str("WATCHDOG=1"),
            State::Status(s) => {
                text.push_str("STATUS=");
                text.extend(s.chars().map(|c| if c == '\n' { ' ' } else { c }));
            }
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::path::PathBuf;
    use std::process::Command;

    /// A directory of our own under the temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("eg-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The manager's side: a bound datagram socket, and what arrives on it.
    fn listen(socket: &UnixDatagram) -> String {
        socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("no notification arrived");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn vars(socket: Option<&str>, usec: Option<&str>, pid: Option<&str>) -> Notifier {
        Notifier::from_vars(socket.map(Into::into), usec.map(Into::into), pid.map(Into::into), 42)
    }

    #[test]
    fn states_become_one_line_each() {
        let text = message(&[State::Ready, State::Status("guarding\nip filter DOCKER-USER")]);
        assert_eq!(text, "READY=1\nSTATUS=guarding ip filter DOCKER-USER\n");
        assert_eq!(message(&[State::Watchdog]), "WATCHDOG=1\n");
        assert_eq!(message(&[State::Reloading, State::Stopping]), "RELOADING=1\nSTOPPING=1\n");
    }

    #[test]
    fn without_notify_socket_nothing_is_sent_and_nothing_fails() {
        let n = vars(None, Some("30000000"), None);
        assert!(!n.is_enabled());
        n.ready("x").unwrap();
        n.watchdog().unwrap();
        assert!(!vars(Some(""), None, None).is_enabled());
    }

    #[test]
    fn watchdog_interval_is_ours_only_when_the_pid_matches() {
        assert_eq!(vars(None, Some("30000000"), None).watchdog_interval(), Some(Duration::from_secs(30)));
        assert_eq!(vars(None, Some("30000000"), Some("42")).ping_every(), Some(Duration::from_secs(15)));
        assert_eq!(vars(None, Some("30000000"), Some("43")).watchdog_interval(), None);
        assert_eq!(vars(None, Some("0"), None).watchdog_interval(), None);
        assert_eq!(vars(None, Some("soon"), None).watchdog_interval(), None);
        assert_eq!(vars(None, None, Some("42")).watchdog_interval(), None);
    }

    #[test]
    fn a_socket_we_cannot_address_is_reported_when_sending() {
        let n = vars(Some("vsock:2:1234"), None, None);
        assert!(n.is_enabled());
        let err = n.ready("x").unwrap_err();
        assert!(err.to_string().contains("vsock:2:1234"), "{err}");
    }

    #[test]
    fn datagrams_reach_a_socket_named_by_path() {
        let dir = TempDir::new("notify-path");
        let path = dir.0.join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        let n = vars(Some(path.to_str().unwrap()), Some("2000000"), None);
        n.ready("guarding ip filter DOCKER-USER").unwrap();
        assert_eq!(listen(&manager), "READY=1\nSTATUS=guarding ip filter DOCKER-USER\n");
        n.watchdog().unwrap();
        assert_eq!(listen(&manager), "WATCHDOG=1\n");
        n.reloading("reloading").unwrap();
        assert_eq!(listen(&manager), "RELOADING=1\nSTATUS=reloading\n");
        n.stopping("stopping; the guard stays in place").unwrap();
        assert_eq!(listen(&manager), "STOPPING=1\nSTATUS=stopping; the guard stays in place\n");
    }

    #[test]
    fn datagrams_reach_an_abstract_socket() {
        let name = format!("eg-{}-notify-test", std::process::id());
        let manager = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        let n = vars(Some(&format!("@{name}")), None, None);
        n.status("healed after: the ruleset changed").unwrap();
        assert_eq!(listen(&manager), "STATUS=healed after: the ruleset changed\n");
        // No watchdog was asked for: WATCHDOG=1 is not sent (the next datagram is the status).
        n.watchdog().unwrap();
        n.status("second").unwrap();
        assert_eq!(listen(&manager), "STATUS=second\n");
    }

    #[test]
    fn a_gone_manager_is_an_error_naming_the_socket() {
        let dir = TempDir::new("notify-gone");
        let path = dir.0.join("notify");
        let err = vars(Some(path.to_str().unwrap()), None, None).ready("x").unwrap_err();
        assert!(matches!(err, NotifyError::Send { .. }), "{err}");
        assert!(err.to_string().contains("notify"), "{err}");
    }

    /// The environment as systemd sets it, in a process of its own: this test binary runs the
    /// test below in a child with NOTIFY_SOCKET and WATCHDOG_* set, and reads what it sends.
    #[test]
    fn from_env_reads_what_systemd_sets_for_a_child() {
        let dir = TempDir::new("notify-env");
        let path = dir.0.join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        let child = |watchdog_pid: Option<&str>| {
            let mut command = Command::new(std::env::current_exe().unwrap());
            command
                .args(["--exact", "systemd::notify::tests::child_notifies_from_its_environment"])
                .args(["--ignored", "--quiet", "--test-threads=1"])
                .env("NOTIFY_SOCKET", &path)
                .env("WATCHDOG_USEC", "4000000")
                .env("EG_NOTIFY_CHILD", "1");
            match watchdog_pid {
                Some(pid) => command.env("WATCHDOG_PID", pid),
                None => command.env_remove("WATCHDOG_PID"),
            };
            let out = command.output().unwrap();
            assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stdout));
        };
        child(None);
        assert_eq!(listen(&manager), "READY=1\nSTATUS=ping every Some(2s)\n");
        // PID 1 is not the child: the watchdog is someone else's.
        child(Some("1"));
        assert_eq!(listen(&manager), "READY=1\nSTATUS=ping every None\n");
    }

    #[test]
    #[ignore = "run by from_env_reads_what_systemd_sets_for_a_child, in a child process"]
    fn child_notifies_from_its_environment() {
        assert_eq!(std::env::var("EG_NOTIFY_CHILD").as_deref(), Ok("1"), "run by its parent test only");
        let n = Notifier::from_env();
        n.ready(&format!("ping every {:?}", n.ping_every())).unwrap();
    }
}
