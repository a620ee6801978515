//! The audit trail's I/O shell, as `egress-guard log` and `watch` run it: an NFLOG group bound
//! in the calling thread's network namespace, a [`Follower`] keeping Docker's address book,
//! and each step reading what the kernel sent, passing it through the [`Pipeline`] and writing
//! the records (text or JSON lines out, JSON lines to the `--output` file).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::events::Event;
use super::packet::Attempt;
use super::pipeline::{Pipeline, Read, Settings, Totals};
use super::reader::{interface_name, NflogReader, ReaderError};
use super::record::{Record, Who};
use super::rotate::{RotateError, RotatingFile};
use super::tag::Action;
use crate::docker::{Client, DockerState, Endpoint, FollowOptions, Follower};

/// How records are written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Where each line goes (stdout, or `watch`'s journal); an error ends the trail.
pub type LineOut = Box<dyn FnMut(&str) -> std::io::Result<()> + Send>;

#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    #[error(transparent)]
    Reader(#[from] ReaderError),
    #[error("cannot start the thread that follows Docker")]
    Thread(#[source] std::io::Error),
    #[error("writing the log failed")]
    Output(#[source] std::io::Error),
    #[error(transparent)]
    File(#[from] RotateError),
}

impl TrailError {
    /// A rotation that failed left the line written: the trail goes on.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, TrailError::File(RotateError::Rotate { .. }))
    }

    /// stdout was closed (`log | head`): the end, not a failure.
    pub fn is_closed_output(&self) -> bool {
        matches!(self, TrailError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Why names are unknown when Docker is not consulted.
pub const NOT_CONSULTED: &str =
    "Docker not consulted: in another namespace (--netns) only --docker-host or DOCKER_HOST says which dockerd";

pub struct Trail {
    reader: NflogReader,
    /// `None` when Docker is not to be consulted (see `cmd::docker_endpoint`).
    follower: Option<Follower>,
    pipeline: Pipeline,
    /// Interface names by index: a bridge keeps its index for its whole life.
    names: HashMap<u32, String>,
    format: Format,
    out: LineOut,
    file: Option<RotatingFile>,
}

impl Trail {
    /// Binds `group` in the calling thread's network namespace and starts following the
    /// dockerd at `docker`, if any.
    pub fn open(
        group: u16,
        docker: Option<&Endpoint>,
        format: Format,
        file: Option<RotatingFile>,
        out: LineOut,
    ) -> Result<Trail, TrailError> {
        let reader = NflogReader::open(group)?;
        let follower = match docker {
            Some(d) => Some(Follower::spawn(Client::new(d), FollowOptions::default()).map_err(TrailError::Thread)?),
            None => None,
        };
        let pipeline = Pipeline::new(Settings::default());
        Ok(Trail { reader, follower, pipeline, names: HashMap::new(), format, out, file })
    }

    pub fn group(&self) -> u16 {
        self.reader.group()
    }

    pub fn docker_state(&self) -> DockerState {
        match &self.follower {
            Some(f) => f.state(),
            None => DockerState::Unavailable(NOT_CONSULTED.into()),
        }
    }

    /// Waits up to `timeout` for logged packets, takes them in, and writes what is due.
    pub fn step(&mut self, timeout: Duration) -> Result<(), TrailError> {
        let now = self.take(timeout)?;
        let state = self.docker_state();
        let settled = state != DockerState::Connecting;
        let follower = self.follower.as_ref();
        let records = self.pipeline.drain(now, settled, &mut |addr, at| who(follower, &state, addr, at));
        self.write(&records)
    }

    /// Reads what the kernel has already sent, then writes everything still waiting or open,
    /// and says what was counted.
    pub fn finish(mut self) -> Result<Totals, TrailError> {
        for _ in 0..64 {
            let before = self.pipeline.totals();
            self.take(Duration::ZERO)?;
            if self.pipeline.totals() == before {
                break;
            }
        }
        let state = self.docker_state();
        let follower = self.follower.as_ref();
        let records = self.pipeline.flush(SystemTime::now(), &mut |addr, at| who(follower, &state, addr, at));
        self.write(&records)?;
        Ok(self.pipeline.totals())
    }

    /// One receive into the pipeline; returns when it was read.
    fn take(&mut self, timeout: Duration) -> Result<SystemTime, TrailError> {
        let events = self.reader.recv(Some(timeout))?;
        let now = SystemTime::now();
        for event in events {
            match event {
                Event::Packet(p) => match Attempt::of(&p) {
                    Ok(attempt) => {
                        let bridge = p.indev.and_then(|i| self.interface(i));
                        let at = p.timestamp.and_then(|t| t.to_system_time()).unwrap_or(now);
                        let action = Action::of(p.prefix.as_deref(), attempt.proto);
                        self.pipeline.push(Read { received: now, at, attempt, bridge, action });
                    }
                    Err(e) => self.pipeline.unreadable(e.to_string()),
                },
                Event::Lost(n) => self.pipeline.lost(n),
                Event::Overrun => self.pipeline.overrun(),
                Event::Malformed(e) => self.pipeline.unreadable(e.to_string()),
            }
        }
        Ok(now)
    }

    fn interface(&mut self, index: u32) -> Option<String> {
        if let Some(name) = self.names.get(&index) {
            return Some(name.clone());
        }
        let name = interface_name(index)?;
        self.names.insert(index, name.clone());
        Some(name)
    }

    fn write(&mut self, records: &[Record]) -> Result<(), TrailError> {
        let mut rotation = Ok(());
        for r in records {
            let json = r.json();
            let line = match self.format {
                Format::Text => r.text(),
                Format::Json => json.clone(),
            };
            (self.out)(&line).map_err(TrailError::Output)?;
            if let Some(file) = &mut self.file {
                match file.write_line(&json) {
                    Err(e @ RotateError::Rotate { .. }) => rotation = Err(e.into()),
                    other => other?,
                }
            }
        }
        rotation
    }
}

/// Who held `addr` at `at`, or why that is not known.
fn who(follower: Option<&Follower>, state: &DockerState, addr: std::net::IpAddr, at: SystemTime) -> Who {
    match follower.and_then(|f| f.who(addr, at)) {
        Some(identity) => Who::Container(identity),
        None if *state == DockerState::Following => {
            Who::Unnamed("no Docker container held this address at the time".to_string())
        }
        None => Who::Unnamed(state.to_string()),
    }
}
