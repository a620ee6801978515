//! Keeps an [`AddressBook`] in step with dockerd on a thread of its own: subscribe to events,
//! then take the snapshot (so nothing between the two is missed), then apply events as they
//! come; when dockerd goes away, say why, retry with backoff, and rebuild from a fresh snapshot.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::book::{AddressBook, Fetch, Identity, Snapshot};
use super::client::{Client, Stopper};
use super::model::{Container, Event};
use super::DockerError;

#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// How long the book remembers an address's former holders.
    pub retention: Duration,
    /// How often the follower wakes without events (to prune and look at its stop flag).
    pub tick: Duration,
    /// First and longest wait between attempts to reach dockerd. Trying is one connect() to
    /// a unix socket, so the longest wait is short: a restarted dockerd is seen again soon.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for FollowOptions {
    fn default() -> FollowOptions {
        FollowOptions {
            retention: Duration::from_secs(15 * 60),
            tick: Duration::from_secs(1),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// Whether the book is being kept up to date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerState {
    /// Not reached dockerd yet.
    Connecting,
    /// Snapshot loaded, events applied as they come.
    Following,
    /// Lost (or never reached) dockerd; retrying. The text says why.
    Unavailable(String),
}

impl fmt::Display for DockerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerState::Connecting => f.write_str("connecting to Docker"),
            DockerState::Following => f.write_str("following Docker"),
            DockerState::Unavailable(why) => write!(f, "Docker unavailable: {why}"),
        }
    }
}

struct Shared {
    book: AddressBook,
    state: DockerState,
    /// Wakes the current event stream's reader when stopping.
    stopper: Option<Stopper>,
}

struct Inner {
    shared: Mutex<Shared>,
    /// Signalled on every change of book or state, and on stop.
    changed: Condvar,
    stop: AtomicBool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves a book that is still consistent per call.
        self.shared.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Shared)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// A thread following dockerd; stopped (and joined) on drop.
pub struct Follower {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Starts following the daemon `client` talks to.
    pub fn spawn(client: Client, options: FollowOptions) -> std::io::Result<Follower> {
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared {
                book: AddressBook::new(options.retention),
                state: DockerState::Connecting,
                stopper: None,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new().name("docker-follow".into()).spawn(move || run(&client, &options, &inner))?
        };
        Ok(Follower { inner, thread: Some(thread) })
    }

    pub fn state(&self) -> DockerState {
        self.inner.lock().state.clone()
    }

    /// Who held `addr` at `at` (see [`AddressBook::who`]).
    pub fn who(&self, addr: IpAddr, at: SystemTime) -> Option<Identity> {
        self.inner.lock().book.who(addr, at).cloned()
    }

    /// Reads the book (briefly: the follower waits for the lock to apply events).
    pub fn with_book<R>(&self, f: impl FnOnce(&AddressBook) -> R) -> R {
        f(&self.inner.lock().book)
    }

    /// Waits up to `timeout` until `ready` holds for book and state, re-checking after every
    /// change; returns whether it did.
    pub fn wait_until(&self, timeout: Duration, mut ready: impl FnMut(&AddressBook, &DockerState) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut shared = self.inner.lock();
        loop {
            if ready(&shared.book, &shared.state) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            shared = self.inner.changed.wait_timeout(shared, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Waits until the book's [`AddressBook::policy_revision`] is no longer `seen` (at once if
    /// it already is not), then runs `f` on book and state under the same lock, and returns the
    /// revision `f` saw with its result; `None` after `timeout`, or when the follower stops.
    ///
    /// What is guaranteed: the follower changes the book and wakes this wait in one critical
    /// section, so a starting container's addresses and labels reach `f` one `GET /networks/ID`
    /// after its `network connect` event was read (two requests if the follower missed its
    /// create), and a container that died is out of [`AddressBook::containers`] (one that left
    /// a network has lost that network's addresses) as soon as that event is read, with no
    /// request. The follower waits for the lock while `f` runs: keep `f` short (compute, then
    /// write elsewhere).
    pub fn next_change<R>(
        &self,
        seen: u64,
        timeout: Duration,
        f: impl FnOnce(&AddressBook, &DockerState) -> R,
    ) -> Option<(u64, R)> {
        let deadline = Instant::now() + timeout;
        let mut shared = self.inner.lock();
        loop {
            if self.inner.stopping() {
                return None;
            }
            let revision = shared.book.policy_revision();
            if revision != seen {
                return Some((revision, f(&shared.book, &shared.state)));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            shared = self.inner.changed.wait_timeout(shared, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.update(|shared| {
            if let Some(stopper) = &shared.stopper {
                stopper.stop();
            }
        });
        if let Some(thread) = self.thread.take() {
            // A panic in the follower has already been reported by the panic hook.
            let _ = thread.join();
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.halt();
    }
}

fn run(client: &Client, options: &FollowOptions, inner: &Inner) {
    let mut backoff = options.backoff_min;
    while !inner.stopping() {
        let error = match session(client, options, inner, &mut backoff) {
            Ok(()) => break,
            Err(e) => e,
        };
        if inner.stopping() {
            break;
        }
        inner.update(|shared| {
            shared.stopper = None;
            shared.book.lost(SystemTime::now());
            shared.state = DockerState::Unavailable(error_chain(&error));
        });
        // Sleeps the backoff, but wakes at once when stopped.
        let deadline = Instant::now() + backoff;
        let mut shared = inner.lock();
        while !inner.stopping() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            shared = inner.changed.wait_timeout(shared, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        drop(shared);
        backoff = (backoff * 2).min(options.backoff_max);
    }
}

/// The error with its causes, as one line.
fn error_chain(error: &DockerError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One connection's life: subscribe, snapshot, follow until the stream breaks (`Err`) or we
/// are stopped (`Ok`).
fn session(client: &Client, options: &FollowOptions, inner: &Inner, backoff: &mut Duration) -> Result<(), DockerError> {
    // dockerd replays events from `since` on, so those between this moment and the moment it
    // actually subscribes us are not lost; those already in the snapshot apply as no-ops.
    let since = SystemTime::now();
    let mut events = client.events(Some(since), options.tick)?;
    let stopper = events.stopper()?;
    inner.lock().stopper = Some(stopper);
    if inner.stopping() {
        return Ok(());
    }
    let networks = client.networks()?;
    let containers = client.containers()?;
    let at = SystemTime::now();
    let containers = containers.iter().map(Container::from).collect();
    inner.update(|shared| {
        shared.book.load(Snapshot { containers, networks }, at);
        shared.state = DockerState::Following;
    });
    *backoff = options.backoff_min;
    loop {
        if inner.stopping() {
            return Ok(());
        }
        match events.next_event() {
            Ok(Some(event)) => apply(client, inner, &event)?,
            Ok(None) => {}
            Err(_) if inner.stopping() => return Ok(()),
            Err(e) => return Err(e),
        }
        inner.lock().book.prune(SystemTime::now());
    }
}

/// Applies one event, fetching what the book asks for (outside the lock), in order.
fn apply(client: &Client, inner: &Inner, event: &Event) -> Result<(), DockerError> {
    let mut fetches = VecDeque::new();
    inner.update(|shared| fetches.extend(shared.book.on_event(event)));
    while let Some(fetch) = fetches.pop_front() {
        match fetch {
            Fetch::Network { id } => match client.network(&id) {
                Ok(network) => inner.update(|shared| shared.book.learn_network(network)),
                // Removed again already; its destroy event follows.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            },
            Fetch::Summary { id, at } => match client.container_summary(&id)? {
                Some(summary) => inner.update(|shared| shared.book.learn_container(Container::from(&summary), at)),
                None => inner.update(|shared| shared.book.forget(&id, at)),
            },
            Fetch::Endpoint { network, container, at } => match client.network(&network) {
                Ok(network) => {
                    inner.update(|shared| fetches.extend(shared.book.learn_endpoint(network, &container, at)))
                }
                Err(e) if e.is_not_found() => fetches.push_back(Fetch::Container { id: container, at }),
                Err(e) => return Err(e),
            },
            Fetch::Container { id, at } => match client.inspect_container(&id) {
                Ok(container) => inner.update(|shared| shared.book.learn_container(Container::from(&container), at)),
                Err(e) if e.is_not_found() => inner.update(|shared| shared.book.container_gone(&id, at)),
                Err(e) => return Err(e),
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::endpoint::Endpoint;

    #[test]
    fn a_missing_daemon_is_reported_and_stop_is_prompt() {
        let socket = std::env::temp_dir().join(format!("eg-{}-no-docker/docker.sock", std::process::id()));
        let client = Client::new(&Endpoint { socket: socket.clone() });
        let options = FollowOptions { backoff_min: Duration::from_secs(30), ..Default::default() };
        let follower = Follower::spawn(client, options).unwrap();
        let unavailable = |_: &AddressBook, s: &DockerState| matches!(s, DockerState::Unavailable(_));
        assert!(follower.wait_until(Duration::from_secs(5), unavailable));
        let state = follower.state().to_string();
        assert_eq!(
            state,
            format!(
                "Docker unavailable: docker socket {} does not exist: is dockerd running? (set --docker-host or DOCKER_HOST)",
                socket.display()
            )
        );
        assert_eq!(follower.who("172.17.0.2".parse().unwrap(), SystemTime::now()), None);
        // In the middle of a 30 s backoff.
        let started = Instant::now();
        follower.stop();
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn next_change_returns_at_once_when_behind_and_waits_otherwise() {
        let socket = std::env::temp_dir().join(format!("eg-{}-no-docker-next/docker.sock", std::process::id()));
        let client = Client::new(&Endpoint { socket });
        let follower = Arc::new(Follower::spawn(client, FollowOptions::default()).unwrap());
        // Nothing was ever loaded: the revision is 0, so a caller that saw another is behind.
        let now = follower.next_change(7, Duration::from_secs(5), |book, _| book.containers().count());
        assert_eq!(now, Some((0, 0)));
        let started = Instant::now();
        assert_eq!(follower.next_change(0, Duration::from_millis(100), |_, _| ()), None);
        assert!(started.elapsed() >= Duration::from_millis(100));
        // A waiter is released when the follower stops.
        let waiter = {
            let follower = Arc::clone(&follower);
            std::thread::spawn(move || {
                let started = Instant::now();
                (follower.next_change(0, Duration::from_secs(30), |_, _| ()), started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        follower.inner.stop.store(true, Ordering::SeqCst);
        follower.inner.update(|_| {});
        let (result, waited) = waiter.join().unwrap();
        assert_eq!(result, None);
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }
}
