//! The I/O shell to dockerd: one unix-socket connection per request, with timeouts, and the
//! long-lived `/events` stream, read one event at a time with a short read timeout so the
//! caller's loop can look at its stop flag (or be woken at once through a [`Stopper`]).

use std::io::Write;
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::socket::{connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::sys::time::TimeVal;
use serde::de::DeserializeOwned;

use super::endpoint::Endpoint;
use super::http::{self, Conn, Lines};
use super::model::{ContainerInspect, ContainerSummary, Event, Network, Version};
use super::DockerError;

/// Requests are answered at once; this only guards against a hung daemon.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// A container list of a few thousand entries stays well below this.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// An event is a few hundred bytes (more with many labels).
const MAX_EVENT: usize = 1024 * 1024;
/// `filters={"type":{"container":true,"network":true}}`, the map form both 20.10 and 29 read.
const EVENTS_FILTER: &str = "filters=%7B%22type%22%3A%7B%22container%22%3Atrue%2C%22network%22%3Atrue%7D%7D";

/// A blocking Docker Engine API client on a unix socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    pub fn new(endpoint: &Endpoint) -> Client {
        Client { socket: endpoint.socket.clone(), timeout: DEFAULT_TIMEOUT }
    }

    /// Sets the connect, write and per-read timeout of requests.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Connects, with the timeout bounding connect() too: a unix connect waits for room in the
    /// listener's backlog for up to the socket's send timeout.
    fn connect(&self, what: &str) -> Result<UnixStream, DockerError> {
        let io = |op| {
            let path = self.socket.clone();
            move |errno: Errno| DockerError::Io { op, path, source: errno.into() }
        };
        let addr = UnixAddr::new(&self.socket).map_err(io("connect"))?;
        let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(io("socket"))?;
        let timeval = TimeVal::new(self.timeout.as_secs() as i64, self.timeout.subsec_micros() as i64);
        setsockopt(&fd, sockopt::SendTimeout, &timeval).map_err(io("setsockopt"))?;
        setsockopt(&fd, sockopt::ReceiveTimeout, &timeval).map_err(io("setsockopt"))?;
        match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => Ok(UnixStream::from(fd)),
            Err(Errno::ENOENT) => Err(DockerError::SocketMissing(self.socket.clone())),
            Err(Errno::EACCES | Errno::EPERM) => Err(DockerError::PermissionDenied(self.socket.clone())),
            Err(Errno::ECONNREFUSED) => Err(DockerError::Refused(self.socket.clone())),
            Err(Errno::EAGAIN | Errno::ETIMEDOUT | Errno::EINPROGRESS) => Err(DockerError::Timeout(what.to_string())),
            Err(errno) => Err(io("connect")(errno)),
        }
    }

    /// Opens a connection and sends a GET for `path`.
    fn send(&self, path: &str, close: bool, what: &str) -> Result<UnixStream, DockerError> {
        let mut stream = self.connect(what)?;
        match stream.write_all(&http::get(path, close)) {
            Ok(()) => Ok(stream),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                Err(DockerError::Timeout(what.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(DockerError::Closed(what.to_string())),
            Err(source) => Err(DockerError::Io { op: "write", path: self.socket.clone(), source }),
        }
    }

    /// `GET path`, its JSON body decoded; an error status is [`DockerError::Daemon`].
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, DockerError> {
        let what = format!("GET {path}");
        let stream = self.send(path, true, &what)?;
        let response = Conn::new(stream, self.socket.clone()).response(&what, MAX_BODY)?;
        if !(200..300).contains(&response.status) {
            return Err(daemon_error(what, response.status, &response.body));
        }
        serde_json::from_slice(&response.body).map_err(|source| DockerError::Json { what, source })
    }

    pub fn version(&self) -> Result<Version, DockerError> {
        self.get("/version")
    }

    /// The running containers.
    pub fn containers(&self) -> Result<Vec<ContainerSummary>, DockerError> {
        self.get("/containers/json")
    }

    /// One container by id or name; a 404 (it is gone) answers true to `is_not_found`.
    pub fn inspect_container(&self, id: &str) -> Result<ContainerInspect, DockerError> {
        self.get(&format!("/containers/{}/json", segment(id)?))
    }

    /// One container as the list shows it, running or not; `None` if there is no such
    /// container. Unlike an inspect, which waits while dockerd is starting the container (it
    /// holds the container's lock from before its network connect until after its process
    /// runs), the list answers at once, from dockerd's in-memory view: the labels are there,
    /// the addresses not yet.
    pub fn container_summary(&self, id: &str) -> Result<Option<ContainerSummary>, DockerError> {
        // filters={"id":["ID"]}; dockerd matches it as an unanchored pattern, hence the pick.
        let id = segment(id)?;
        let list: Vec<ContainerSummary> =
            self.get(&format!("/containers/json?all=1&filters=%7B%22id%22%3A%5B%22{id}%22%5D%7D"))?;
        Ok(list.into_iter().find(|c| c.id == id))
    }

    pub fn networks(&self) -> Result<Vec<Network>, DockerError> {
        self.get("/networks")
    }

    /// One network, with its endpoints ([`Network::containers`]): a container's addresses are
    /// there as soon as its `network connect` event is out, while its inspect still waits.
    pub fn network(&self, id: &str) -> Result<Network, DockerError> {
        self.get(&format!("/networks/{}", segment(id)?))
    }

    /// Subscribes to container and network events. With `since`, dockerd first replays the
    /// events it still remembers from that moment on (it keeps the last 256 or so): a caller
    /// that passes the time just before subscribing misses nothing that happens while dockerd
    /// sets the subscription up (it flushes the response head before it subscribes).
    /// Each `next` waits at most `tick` for an event.
    pub fn events(&self, since: Option<SystemTime>, tick: Duration) -> Result<EventStream, DockerError> {
        let mut path = format!("/events?{EVENTS_FILTER}");
        if let Some(since) = since {
            let t = since.duration_since(UNIX_EPOCH).unwrap_or_default();
            path.push_str(&format!("&since={}.{:09}", t.as_secs(), t.subsec_nanos()));
        }
        let what = format!("GET {path}");
        let stream = self.send(&path, false, &what)?;
        let stopper = Stopper(stream.try_clone().map_err(|source| DockerError::Io {
            op: "dup",
            path: self.socket.clone(),
            source,
        })?);
        let mut conn = Conn::new(stream, self.socket.clone());
        let head = conn.poll_head(&what)?.ok_or_else(|| DockerError::Timeout(what.clone()))?;
        if head.status != 200 {
            let body = conn.body(&head, &what, MAX_EVENT).map(|r| r.body).unwrap_or_default();
            return Err(daemon_error(what, head.status, &body));
        }
        stopper.0.set_read_timeout(Some(tick.max(Duration::from_millis(1)))).map_err(|source| DockerError::Io {
            op: "setsockopt",
            path: self.socket.clone(),
            source,
        })?;
        Ok(EventStream { lines: Lines::new(conn, &head, "GET /events", MAX_EVENT), stopper })
    }
}

/// A name or id that is safe in a request path (docker names are `[a-zA-Z0-9][a-zA-Z0-9_.-]*`,
/// ids hex).
fn segment(name: &str) -> Result<&str, DockerError> {
    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(name)
    } else {
        Err(DockerError::BadName(name.to_string()))
    }
}

/// An error status with dockerd's `{"message": …}` (or the body's text if it is not that).
fn daemon_error(what: String, status: u16, body: &[u8]) -> DockerError {
    #[derive(serde::Deserialize)]
    struct Message {
        message: String,
    }
    let message = match serde_json::from_slice::<Message>(body) {
        Ok(m) => m.message,
        Err(_) => String::from_utf8_lossy(body).trim().chars().take(200).collect(),
    };
    DockerError::Daemon { what, status, message }
}

/// The `/events` stream: container and network events as dockerd announces them.
pub struct EventStream {
    lines: Lines<UnixStream>,
    stopper: Stopper,
}

impl EventStream {
    /// The next event; `Ok(None)` when none came within the tick. The stream ending (dockerd
    /// stopped, or a [`Stopper`] stopped it) is [`DockerError::Closed`].
    pub fn next_event(&mut self) -> Result<Option<Event>, DockerError> {
        let Some(line) = self.lines.next_line()? else { return Ok(None) };
        serde_json::from_slice(&line)
            .map(Some)
            .map_err(|source| DockerError::Json { what: "GET /events".into(), source })
    }

    /// A handle that ends the stream from another thread: a `next_event` blocked in read
    /// returns at once.
    pub fn stopper(&self) -> Result<Stopper, DockerError> {
        let stream = self.stopper.0.try_clone().map_err(|source| DockerError::Io {
            op: "dup",
            path: PathBuf::from("/events"),
            source,
        })?;
        Ok(Stopper(stream))
    }
}

impl AsFd for EventStream {
    /// For poll(): readable when an event (or the end) is on its way.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stopper.0.as_fd()
    }
}

/// Ends an [`EventStream`] from elsewhere (shutdown of the shared socket).
#[derive(Debug)]
pub struct Stopper(UnixStream);

impl Stopper {
    pub fn stop(&self) {
        // Fails only if the socket is already shut down, which is what we want anyway.
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    use super::super::testdata;
    use super::*;

    /// A daemon stand-in on a real socket that answers one connection with captured bytes.
    fn serve_once(name: &'static str) -> (tempdir::Dir, std::thread::JoinHandle<Vec<u8>>) {
        let dir = tempdir::Dir::new();
        let listener = UnixListener::bind(dir.sock()).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = vec![0; 4096];
            let n = conn.read(&mut request).unwrap();
            request.truncate(n);
            conn.write_all(&testdata(name)).unwrap();
            request
        });
        (dir, server)
    }

    mod tempdir {
        use std::path::PathBuf;

        /// A private directory under /tmp for a socket, removed on drop.
        pub struct Dir(PathBuf);

        impl Dir {
            pub fn new() -> Dir {
                static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path = std::env::temp_dir().join(format!("eg-{}-docker-client-{n}", std::process::id()));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
            pub fn sock(&self) -> PathBuf {
                self.0.join("docker.sock")
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn client(dir: &tempdir::Dir) -> Client {
        Client::new(&Endpoint { socket: dir.sock() }).with_timeout(Duration::from_secs(5))
    }

    #[test]
    fn connect_errors_are_typed() {
        let dir = tempdir::Dir::new();
        let err = client(&dir).containers().unwrap_err();
        assert!(matches!(err, DockerError::SocketMissing(_)), "{err:?}");
        // A socket file nobody listens on: what dockerd leaves behind when it is killed.
        drop(UnixListener::bind(dir.sock()).unwrap());
        let err = client(&dir).containers().unwrap_err();
        assert!(matches!(err, DockerError::Refused(_)), "{err:?}");
        assert!(DockerError::PermissionDenied(dir.sock()).to_string().contains("add the user to the docker group"));
    }

    #[test]
    fn list_and_request_line() {
        let (dir, server) = serve_once("containers-v4.http");
        let list = client(&dir).containers().unwrap();
        assert_eq!(list.len(), 2);
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(request.starts_with("GET /containers/json HTTP/1.1\r\nHost: docker\r\n"), "{request}");
    }

    #[test]
    fn one_container_from_the_list_by_id() {
        let (dir, server) = serve_once("start/connect-1-summary.http");
        let id = "36bee288496d76f859b0ef0c43e1c131382041f4231f8b9d3fcbeb5488dd6a01";
        let summary = client(&dir).container_summary(id).unwrap().unwrap();
        assert_eq!((summary.id.as_str(), summary.state.as_str()), (id, "created"));
        assert_eq!(summary.labels["egress-guard.allow"], "198.51.100.53/32:53/udp");
        // Listed at the connect: the network is there, its address not yet.
        assert_eq!(summary.network_settings.networks["bridge"].ip_address, "");
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        let path = format!("/containers/json?all=1&filters=%7B%22id%22%3A%5B%22{id}%22%5D%7D");
        assert!(request.starts_with(&format!("GET {path} HTTP/1.1\r\n")), "{request}");
        // Another id that the pattern happens to match is not it.
        let (dir, server) = serve_once("start/connect-1-summary.http");
        assert_eq!(client(&dir).container_summary("36bee288496d").unwrap(), None);
        server.join().unwrap();
    }

    #[test]
    fn daemon_error_keeps_its_message() {
        let (dir, server) = serve_once("error-404.http");
        let err = client(&dir).inspect_container("nosuch").unwrap_err();
        server.join().unwrap();
        assert!(err.is_not_found(), "{err:?}");
        assert_eq!(
            err.to_string(),
            "dockerd refused GET /containers/nosuch/json: No such container: nosuch (HTTP 404)"
        );
    }

    #[test]
    fn names_that_would_break_the_request_are_refused() {
        let dir = tempdir::Dir::new();
        for bad in ["", "a b", "x/../../version", "a\r\nHost: evil"] {
            assert!(matches!(client(&dir).inspect_container(bad), Err(DockerError::BadName(_))), "{bad:?}");
        }
    }

    #[test]
    fn event_stream_yields_events_then_reports_the_close() {
        let (dir, server) = serve_once("events-v4.http");
        let since = UNIX_EPOCH + Duration::new(1796153630, 5);
        let mut events = client(&dir).events(Some(since), Duration::from_millis(50)).unwrap();
        let mut got = Vec::new();
        let end = loop {
            match events.next_event() {
                Ok(Some(e)) => got.push(e),
                Ok(None) => {}
                Err(e) => break e,
            }
        };
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(request.starts_with(&format!("GET /events?{EVENTS_FILTER}&since=1796153630.000000005 ")), "{request}");
        assert_eq!(got.len(), 23);
        assert_eq!((got[0].kind.as_str(), got[0].action.as_str()), ("network", "create"));
        assert!(matches!(end, DockerError::Closed(_)), "{end:?}");
    }

    #[test]
    fn an_event_subscription_refused_is_a_daemon_error() {
        let (dir, server) = serve_once("error-404.http");
        let err = client(&dir).events(None, Duration::from_millis(50)).err().expect("refused");
        server.join().unwrap();
        assert!(err.is_not_found(), "{err:?}");
        assert!(err.to_string().contains("No such container: nosuch"), "{err}");
    }

    #[test]
    fn a_stopper_wakes_a_blocked_reader() {
        let dir = tempdir::Dir::new();
        let listener = UnixListener::bind(dir.sock()).unwrap();
        // Sends only the head, then stays silent with the connection open.
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let bytes = testdata("events-v4.http");
            let head = http::parse_head(&bytes).unwrap().unwrap();
            conn.write_all(&bytes[..head.len]).unwrap();
            let mut sink = Vec::new();
            let _ = conn.read_to_end(&mut sink);
        });
        let mut events = client(&dir).events(None, Duration::from_secs(60)).unwrap();
        let stopper = events.stopper().unwrap();
        let started = std::time::Instant::now();
        let stop = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            stopper.stop();
        });
        let err = events.next_event().unwrap_err();
        assert!(matches!(err, DockerError::Closed(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        stop.join().unwrap();
        drop(events);
        server.join().unwrap();
    }
}
