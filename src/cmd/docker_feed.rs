//! `watch`'s view of Docker, for the per-container and per-network allowances: a follower that
//! keeps the address book (containers, networks, their labels and addresses) and a socket that
//! wakes watch's loop the moment the book or Docker's state changes, so a starting container's
//! allowances go into the kernel in the next batch.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::docker::{Client, DockerState, Endpoint, FollowOptions, Follower};
use crate::grants::{self, Grants, Live};

/// How long the waker sleeps between looks at its stop flag when nothing changes.
const IDLE: Duration = Duration::from_millis(500);

pub struct Feed {
    follower: Arc<Follower>,
    /// Readable when something changed since the last `drain`.
    wake: UnixStream,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Feed {
    /// Starts following the dockerd at `endpoint` (retrying while it is away).
    pub fn start(endpoint: &Endpoint) -> std::io::Result<Feed> {
        let follower = Arc::new(Follower::spawn(Client::new(endpoint), FollowOptions::default())?);
        let (wake, mut poke) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        poke.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (follower, stop) = (Arc::clone(&follower), Arc::clone(&stop));
            std::thread::Builder::new().name("docker-feed".into()).spawn(move || {
                // What a policy reads (containers, labels, addresses, networks: not a state or
                // an image name), and whether the book is a current picture.
                let mut seen: Option<(u64, bool)> = None;
                while !stop.load(Ordering::SeqCst) {
                    let mut now = None;
                    follower.wait_until(IDLE, |book, _| {
                        now = Some((book.policy_revision(), book.is_current()));
                        now != seen
                    });
                    if now != seen {
                        seen = now;
                        // A full socket already says "changed": nothing is lost by a failed write.
                        let _ = poke.write(&[1]);
                    }
                }
            })?
        };
        Ok(Feed { follower, wake, stop, thread: Some(thread) })
    }

    /// The follower, for those who name containers (the DNS forwarder's journal).
    pub fn follower(&self) -> Arc<Follower> {
        Arc::clone(&self.follower)
    }

    /// The descriptor watch's loop polls.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Takes the wake-up: the loop then looks at `live`.
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        let mut wake = &self.wake;
        loop {
            match wake.read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Ok(_) => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    /// Waits up to `timeout` for a first complete picture (or for Docker to be found away).
    pub fn wait_current(&self, timeout: Duration) {
        self.follower
            .wait_until(timeout, |book, state| book.is_current() || matches!(state, DockerState::Unavailable(_)));
    }

    /// What the running containers and their networks are granted, while the book is current;
    /// `None` while Docker is out of sight (the kernel's sets are then left as they are).
    pub fn live(&self, config: &Grants) -> Option<Live> {
        self.follower
            .with_book(|book| book.is_current().then(|| grants::resolve(book.containers(), book.networks(), config)))
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            // Wakes within IDLE; a panic there has been reported by the panic hook.
            let _ = t.join();
        }
    }
}

/// What changed between two pictures, one line per container, for watch's journal.
pub fn changes(before: Option<&Live>, after: &Live) -> Vec<String> {
    let old = before.map(|l| l.containers.as_slice()).unwrap_or_default();
    let mut lines = Vec::new();
    for c in &after.containers {
        let was = old.iter().find(|o| o.id == c.id);
        if was.map(|w| (&w.egress, &w.addresses)) != Some((&c.egress, &c.addresses)) && c.egress != "closed" {
            let addrs: Vec<String> = c.addresses.iter().map(ToString::to_string).collect();
            lines.push(format!(
                "{} ({}) at {}: may reach {} ({})",
                c.name,
                c.id,
                addrs.join(", "),
                c.egress,
                c.from.join(", ")
            ));
        }
    }
    for o in old.iter().filter(|o| o.egress != "closed") {
        if !after.containers.iter().any(|c| c.id == o.id) {
            lines.push(format!("{} ({}) is gone: its allowances are taken away", o.name, o.id));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::ContainerView;

    fn view(name: &str, egress: &str) -> ContainerView {
        ContainerView {
            name: name.into(),
            id: format!("{name}-id"),
            addresses: vec!["172.18.0.2".parse().unwrap()],
            egress: egress.into(),
            from: vec!["label".into()],
            domains: Vec::new(),
        }
    }

    #[test]
    fn the_journal_hears_of_allowances_that_come_and_go_not_of_closed_containers() {
        let first =
            Live { containers: vec![view("web", "203.0.113.7/32:443/tcp"), view("db", "closed")], ..Live::default() };
        assert_eq!(changes(None, &first), ["web (web-id) at 172.18.0.2: may reach 203.0.113.7/32:443/tcp (label)"]);
        assert!(changes(Some(&first), &first).is_empty());
        let gone = Live::default();
        assert_eq!(changes(Some(&first), &gone), ["web (web-id) is gone: its allowances are taken away"]);
    }
}
