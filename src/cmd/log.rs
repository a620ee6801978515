//! `egress-guard log`: blocked attempts as they happen, each naming the container that made it
//! (see `audit`), until SIGINT or SIGTERM; `--summary` reads back what `--output` kept. Also
//! [`Hook`], the same trail on a thread of `watch`'s, so one service writes one journal.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::{say, warn, Done};
use crate::audit::rotate::{self, RotatingFile, DEFAULT_MAX_SIZE};
use crate::audit::summary::Tally;
use crate::audit::trail::{Format, Trail, TrailError};
use crate::cli::LogArgs;
use crate::config;
use crate::docker::Endpoint;
use crate::error::Error;
use crate::nft::NlError;
use crate::policy::{LogSink, LogTo, Policy, DEFAULT_NFLOG_GROUP};

/// How long one step waits for the kernel: how soon a stop, or a due line, is seen.
const STEP: Duration = Duration::from_millis(200);

pub fn run(args: LogArgs) -> Result<Done, Error> {
    if args.summary {
        return summary(&args);
    }
    if args.max_size.is_some() && args.output.is_none() {
        return Err(Error::Usage("--max-size is for --output FILE: add --output, or drop --max-size"));
    }
    let file = config::load(args.config.as_deref())?;
    let group = args.nflog_group.or(file.policy.nflog_group).unwrap_or(DEFAULT_NFLOG_GROUP);
    let mut warnings = Vec::new();
    if file.policy.log_to == Some(LogTo::Kernel) && args.nflog_group.is_none() {
        warnings.push(format!(
            "the config file sets log_to = \"kernel\": the guard logs to the kernel log, not to nflog group {group}"
        ));
    }
    let endpoint = super::docker_endpoint(&args.docker, &args.netns)?;
    let output = match &args.output {
        Some(path) => {
            Some(RotatingFile::open(path, args.max_size.unwrap_or(DEFAULT_MAX_SIZE)).map_err(TrailError::from)?)
        }
        None => None,
    };
    // Blocked before the follower's thread starts, so it inherits the mask and SIGTERM waits
    // in the signalfd instead of ending the process mid-line.
    let signals = block_signals()?;
    if let Some(ns) = &args.netns.netns {
        crate::netns::enter(ns)?;
    }
    let format = if args.json { Format::Json } else { Format::Text };
    let mut trail = Trail::open(group, endpoint.as_ref(), format, output, Box::new(stdout_line))?;
    for w in warnings.drain(..) {
        warn(&format!("warning: {w}"));
    }
    let to_file = args.output.as_ref().map(|p| format!(", JSON lines to {}", p.display())).unwrap_or_default();
    warn(&format!("reading nflog group {group}, names from {}{to_file}", names_from(endpoint.as_ref())));
    loop {
        match trail.step(STEP) {
            Ok(()) => {}
            Err(e) if e.is_closed_output() => return Ok(Done::default()),
            Err(e) if !e.is_fatal() => warn(&chain(&e)),
            Err(e) => return Err(e.into()),
        }
        if matches!(signals.read_signal(), Ok(Some(_))) {
            break;
        }
    }
    match trail.finish() {
        Ok(t) => warn(&format!(
            "stopped: {} attempt(s) read, {} printed one by one, {} lost by the kernel",
            t.attempts, t.printed, t.lost
        )),
        Err(e) if e.is_closed_output() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Done::default())
}

fn names_from(endpoint: Option<&Endpoint>) -> String {
    match endpoint {
        Some(e) => e.socket.display().to_string(),
        None => "nowhere (Docker not consulted in another namespace without --docker-host)".into(),
    }
}

/// One line on stdout, flushed at once (a reader behind a pipe sees each attempt as it comes).
fn stdout_line(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

fn block_signals() -> Result<SignalFd, Error> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    let io = |errno| Error::Kernel(NlError::Io { op: "signalfd", errno });
    mask.thread_block().map_err(io)?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(io)
}

/// `--summary`: the `--output` file and its rotations, or `--from FILE`.
fn summary(args: &LogArgs) -> Result<Done, Error> {
    let files = match (&args.from, &args.output) {
        (Some(from), _) => vec![from.clone()],
        (None, Some(output)) => rotate::generations(output),
        (None, None) => {
            return Err(Error::Usage("--summary reads a file: give --output FILE (what log wrote) or --from FILE"))
        }
    };
    let mut tally = Tally::new();
    for path in &files {
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.display().to_string(), source })?;
        for line in text.lines() {
            tally.line(line);
        }
    }
    let stdout = if args.json { tally.json() + "\n" } else { tally.text(files.len()) };
    Ok(Done { stdout, ..Done::default() })
}

/// The error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text += &format!(": {c}");
        cause = c.source();
    }
    text
}

/// `watch`'s audit trail: while the policy logs to NFLOG, a thread reads the group and writes
/// each attempt to watch's stdout (the journal, under systemd). It shares nothing with the
/// heal loop but stdout, so a heal never waits for it; [`Hook::follow`] is called after an
/// apply, and dropping the hook stops the thread.
#[derive(Default)]
pub struct Hook {
    running: Option<Running>,
}

struct Running {
    group: u16,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Hook {
    /// Starts, restarts (another group) or stops the trail to match `policy`. A trail that
    /// cannot start is said on stderr; watching goes on.
    pub fn follow(&mut self, policy: &Policy, docker: Option<&Endpoint>) {
        let group = match policy.log.as_ref().map(|l| &l.sink) {
            Some(LogSink::Nflog { group, .. }) => Some(*group),
            _ => None,
        };
        if self.running.as_ref().map(|r| r.group) == group {
            return;
        }
        self.stop();
        let Some(group) = group else { return };
        match start(group, docker) {
            Ok(running) => self.running = Some(running),
            Err(e) => warn(&format!("log: {}; blocked attempts are counted but not logged", chain(&*e))),
        }
    }

    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop.store(true, Ordering::SeqCst);
            // A panic in the trail has been reported by the panic hook already.
            let _ = r.thread.join();
        }
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds the group here (in watch's namespace, before the thread starts, so a taken group is
/// said at once), then reads it on a thread of its own.
fn start(group: u16, endpoint: Option<&Endpoint>) -> Result<Running, Box<dyn std::error::Error>> {
    let mut trail = Trail::open(
        group,
        endpoint,
        Format::Text,
        None,
        Box::new(|line| {
            say(line);
            Ok(())
        }),
    )?;
    say(&format!(
        "egress-guard: logging blocked attempts from nflog group {group}, names from {}",
        names_from(endpoint)
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let thread = std::thread::Builder::new().name("audit-log".into()).spawn(move || {
        while !stopping.load(Ordering::SeqCst) {
            if let Err(e) = trail.step(STEP) {
                warn(&format!("log: {}", chain(&e)));
                if e.is_fatal() {
                    return;
                }
            }
        }
        if let Err(e) = trail.finish() {
            warn(&format!("log: {}", chain(&e)));
        }
    })?;
    Ok(Running { group, stop, thread })
}
