//! `egress-guard watch` with its journal kept: both pipes read line by line on threads (a full
//! pipe would stop watch), echoed to the test's stderr, and searchable while watch runs.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::tool::Watch;

/// A running watch and what it has said so far; stopped (and its readers joined) on drop.
pub struct Journaled {
    watch: Option<Watch>,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Journaled {
    /// `egress-guard watch ARGS… --netns NS`.
    pub fn start(ns: &Netns, args: &[&str]) -> Journaled {
        let mut watch = Watch::start_piped(ns, args);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let child = watch.child();
        let stdout = child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
        let readers = [stdout, stderr]
            .into_iter()
            .flatten()
            .map(|pipe| {
                let lines = Arc::clone(&lines);
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                        eprintln!("watch: {line}");
                        lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                    }
                })
            })
            .collect();
        Journaled { watch: Some(watch), lines, readers }
    }

    /// Every line so far, stdout's and stderr's.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits up to `timeout` for a line holding every one of `parts`.
    pub fn line_within(&self, timeout: Duration, parts: &[&str]) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.lines().into_iter().find(|l| parts.iter().all(|p| l.contains(p)));
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Journaled {
    fn drop(&mut self) {
        drop(self.watch.take());
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}
