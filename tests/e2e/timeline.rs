//! One clock for everything a scenario wants to line up afterwards: the test's own steps, each
//! ruleset change (`nft monitor`, which names the process behind every generation), what
//! `watch` printed, and when leaked connections started.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::harness::Netns;

/// Lines with the moment they were seen, from any number of threads.
pub struct Timeline {
    start: Instant,
    events: Arc<Mutex<Vec<(Instant, String, String)>>>,
    readers: Vec<JoinHandle<()>>,
    children: Vec<Child>,
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline { start: Instant::now(), events: Arc::default(), readers: Vec::new(), children: Vec::new() }
    }

    /// Notes `what` happening now, from `source` (e.g. "test").
    pub fn mark(&self, source: &str, what: impl Into<String>) {
        self.mark_at(Instant::now(), source, what);
    }

    pub fn mark_at(&self, at: Instant, source: &str, what: impl Into<String>) {
        lock(&self.events).push((at, source.to_owned(), what.into()));
    }

    /// Records every line `reader` yields until it ends, as coming from `source`.
    pub fn follow(&mut self, source: &str, reader: impl Read + Send + 'static) {
        let events = Arc::clone(&self.events);
        let source = source.to_owned();
        self.readers.push(std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                lock(&events).push((Instant::now(), source.clone(), line));
            }
        }));
    }

    /// Records every line `child` prints on its (piped) stdout, and ends it when dropped.
    pub fn follow_child(&mut self, source: &str, mut child: Child) {
        let stdout = child.stdout.take().expect("a child with piped stdout");
        self.children.push(child);
        self.follow(source, stdout);
    }

    /// Records every ruleset change in `ns` from now on (`nft monitor`), until dropped. Returns
    /// once the monitor is listening, so no change after this call goes unseen.
    pub fn monitor_ruleset(&mut self, ns: &Netns) {
        let mut child = ns
            .command("nft")
            .arg("monitor")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nft monitor");
        let stdout = child.stdout.take().expect("piped stdout");
        self.children.push(child);
        self.follow("nft", stdout);
        // `nft monitor` prints nothing when it is subscribed: give it a moment, then prove it
        // listens by a change of our own, a table created and deleted (two generations).
        std::thread::sleep(Duration::from_millis(200));
        ns.run(&["nft", "add table ip eg_e2e_probe; delete table ip eg_e2e_probe"]);
        let seen = || lock(&self.events).iter().any(|(_, _, line)| line.contains("eg_e2e_probe"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !seen() {
            assert!(Instant::now() < deadline, "nft monitor in {ns} did not report a change");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every line so far, in time order: `+  1234.5 ms [source] line`.
    pub fn render(&self) -> String {
        self.render_between(self.start, Instant::now() + Duration::from_secs(3600))
    }

    /// The lines seen from `from` until `to`, as [`Timeline::render`] shows them.
    pub fn render_between(&self, from: Instant, to: Instant) -> String {
        let mut events = lock(&self.events).clone();
        events.retain(|(at, _, _)| (from..=to).contains(at));
        events.sort_by_key(|(at, _, _)| *at);
        let mut out = String::new();
        for (at, source, line) in events {
            let ms = at.saturating_duration_since(self.start).as_secs_f64() * 1000.0;
            let _ = writeln!(out, "+{ms:9.1} ms [{source}] {line}");
        }
        out
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Readers are not joined: one may follow a pipe of a process the caller still holds (a
        // watch dropped after us); it ends by itself at that pipe's end.
        self.readers.clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}
