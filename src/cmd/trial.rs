//! Changes that can be taken back: the state before every `apply`/`remove` is kept (one level
//! of history, for `rollback`), and with `--confirm SECS` a detached timer puts it back unless
//! `egress-guard confirm` comes first. The timer is armed before the change is committed, so
//! no crash of ours between the two leaves a change without its way back.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::backend::table::{TableState, SHIELD};
use crate::error::Error;
use crate::nft::socket::Netlink;
use crate::snapshot::Snapshot;
use crate::state::{self, Lock, Pending, Store};
use crate::transact;

/// The hidden subcommand the timer runs as, and how `confirm` recognises it.
pub const TIMER: &str = "rollback-timer";

/// A change being made: the lock, the state before, and the pending confirmation if asked.
pub struct Trial {
    /// `None` when no state can be kept here (no /proc, a read-only /run): then a plain change
    /// goes ahead without history, and one with `--confirm` is refused.
    kept: Option<(Store, Lock)>,
    command: &'static str,
    before: Snapshot,
    pending: Option<Pending>,
    /// Why no history is kept, to say once.
    unkept: Option<String>,
}

/// Before a change: takes the lock, takes the snapshot, and with `confirm` writes the pending
/// confirmation and starts its timer. Another change with `--confirm` while one awaits
/// confirmation is refused; a plain one replaces it (its timer stops: the new change is what
/// the admin asked for, and it is recorded as usual).
pub fn begin(nl: &mut Netlink, command: &'static str, confirm: Option<u64>) -> Result<Trial, Error> {
    // Without CAP_NET_ADMIN, say that first (exit 3), not that the state directory is root's.
    nl.generation()?;
    let kept = Store::here().and_then(|store| store.lock().map(|lock| (store, lock)));
    let (store, lock) = match (kept, confirm) {
        (Ok(kept), _) => kept,
        (Err(e), Some(_)) => return Err(e.into()),
        (Err(e), None) => {
            let before = transact::snapshot(nl)?;
            let unkept = Some(format!("warning: no history kept for `egress-guard rollback`: {e}"));
            return Ok(Trial { kept: None, command, before, pending: None, unkept });
        }
    };
    let mut replaced = None;
    if let Some(p) = store.pending()? {
        if confirm.is_some() {
            let left = p.deadline.saturating_sub(state::now());
            return Err(Error::Refused(format!(
                "a change ({}) already awaits confirmation, {left} s left: `egress-guard confirm` keeps it, \
                 `egress-guard rollback` takes it back; then run this again",
                p.command
            )));
        }
        replaced = Some(p);
    }
    let before = transact::snapshot(nl)?;
    if let Some(p) = replaced {
        stop_timer(&p);
        store.clear_pending()?;
    }
    let mut trial = Trial { kept: Some((store, lock)), command, before, pending: None, unkept: None };
    if let (Some(secs), Some((store, _))) = (confirm, &trial.kept) {
        let now = state::now();
        let mut pending = Pending {
            version: state::VERSION,
            namespace: store.namespace.clone(),
            cookie: store.cookie,
            token: token(),
            command: command.into(),
            created: now,
            deadline: now + secs,
            timer_pid: None,
            before: trial.before.clone(),
        };
        store.set_pending(&pending)?;
        match spawn_timer(pending.token) {
            Ok(pid) => pending.timer_pid = Some(pid),
            Err(e) => {
                let _ = store.clear_pending();
                return Err(Error::Refused(format!("cannot start the rollback timer: {e}; nothing changed")));
            }
        }
        store.set_pending(&pending)?;
        trial.pending = Some(pending);
    }
    Ok(trial)
}

impl Trial {
    /// After the change: keeps the state before as history when something was committed; a
    /// confirmation for a change that changed nothing is dropped. Returns what to tell.
    pub fn finish(self, committed: bool) -> Result<Vec<String>, Error> {
        let mut said: Vec<String> = self.unkept.iter().cloned().collect();
        let Some((store, _)) = &self.kept else { return Ok(said) };
        if committed {
            store.set_history(self.command, self.before.clone())?;
        }
        match (&self.pending, committed) {
            (Some(p), true) => said.push(format!(
                "awaiting confirmation: run `egress-guard confirm` within {} s, or this {} is rolled back",
                p.deadline - p.created,
                p.command
            )),
            (Some(p), false) => {
                stop_timer(p);
                store.clear_pending()?;
                said.push("nothing changed, so there is nothing to confirm".into());
            }
            (None, _) => {}
        }
        Ok(said)
    }

    /// The change failed: its confirmation goes too.
    pub fn abandon(self) {
        if let (Some(p), Some((store, _))) = (&self.pending, &self.kept) {
            stop_timer(p);
            let _ = store.clear_pending();
        }
    }
}

/// A number that tells one confirmation from the next.
fn token() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    t ^ u64::from(std::process::id()) << 40
}

/// Starts the timer: this binary again, in a session of its own (no controlling terminal, so a
/// closed SSH session or a killed shell does not end it), stdio on /dev/null, in our network
/// namespace (a child inherits it).
fn spawn_timer(token: u64) -> std::io::Result<u32> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command
        .args([TIMER, "--token", &token.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    Ok(command.spawn()?.id())
}

/// Whether the pending change's timer still runs (its pid is alive and is our timer for it).
pub fn timer_alive(p: &Pending) -> bool {
    let Some(pid) = p.timer_pid else { return false };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.contains(&TIMER.as_bytes()) && args.contains(&p.token.to_string().as_bytes())
}

/// Ends the pending change's timer, if it still runs.
pub fn stop_timer(p: &Pending) {
    if let (true, Some(pid)) = (timer_alive(p), p.timer_pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
    }
}

/// Whether a change made with `--confirm` awaits confirmation here (unreadable state counts
/// as yes: then the careful path is taken).
pub fn pending_here() -> bool {
    Store::here().and_then(|s| s.pending()).map_or(true, |p| p.is_some())
}

/// Whether a `watch` runs in this namespace (its shield is there, owned by its socket).
pub fn watch_runs(nl: &mut Netlink) -> bool {
    TableState::read(nl, SHIELD).is_ok_and(|s| s.exists && s.owner.is_some())
}
