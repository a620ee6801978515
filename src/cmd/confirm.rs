//! `egress-guard confirm` keeps a change made with `--confirm`; `egress-guard rollback` puts
//! back, now, the state before the latest apply/remove (confirmed or not); the hidden
//! `rollback-timer` is the detached process that does it at the deadline unless confirmed.

use std::time::Duration;

use super::trial::{self, stop_timer};
use super::{say, Done};
use crate::backend::{Change, Step};
use crate::cli::{ConfirmArgs, RollbackArgs, TimerArgs};
use crate::error::Error;
use crate::nft::socket::Netlink;
use crate::report::PendingStatus;
use crate::state::{self, Pending, Store};
use crate::syslog::{self, Severity};
use crate::transact;

pub fn confirm(args: ConfirmArgs) -> Result<Done, Error> {
    let _nl = super::connect(&args.netns)?;
    let store = Store::here()?;
    let _lock = store.lock()?;
    let Some(p) = store.pending()? else {
        return Err(Error::Refused("nothing awaits confirmation here (see `egress-guard status`)".into()));
    };
    stop_timer(&p);
    store.clear_pending()?;
    Ok(Done { stdout: format!("confirmed: the {} stays\n", p.command), ..Done::default() })
}

pub fn rollback(args: RollbackArgs) -> Result<Done, Error> {
    let mut nl = super::connect(&args.netns)?;
    let store = Store::here()?;
    let _lock = store.lock()?;
    let (before, what) = match store.pending()? {
        Some(p) => {
            stop_timer(&p);
            (p.before.clone(), format!("the {} awaiting confirmation", p.command))
        }
        None => match store.history()? {
            Some(h) => (h.before, format!("the latest {}", h.command)),
            None => return Err(Error::Refused("nothing to roll back: no apply or remove recorded here".into())),
        },
    };
    let now = transact::snapshot(&mut nl)?;
    let (steps, committed) = transact::restore(&mut nl, &before)?;
    store.clear_pending()?;
    if committed {
        // One level of history: rolling back again puts back what this undid.
        store.set_history("rollback", now)?;
    }
    let mut out = format!("rolled back {what}\n");
    out += &describe(&steps);
    let warnings = steps.iter().flat_map(|s| s.warnings.iter().map(|w| format!("warning: {w}"))).collect();
    Ok(Done { stdout: out, warnings, committed, ..Done::default() })
}

/// What a restore changed, one line per place.
fn describe(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        match s.change {
            Change::Written => {
                out += &format!("{}: wrote {} rule(s), deleted {}\n", s.place, s.added.len(), s.removed.len())
            }
            Change::Unchanged => out += &format!("{}: already as it was\n", s.place),
            Change::Missing => {}
        }
    }
    out
}

/// Waits for the deadline of the confirmation with `token`, then rolls it back, unless it was
/// confirmed (its file gone) or replaced (another token) meanwhile.
pub fn timer(args: TimerArgs) -> Result<Done, Error> {
    let store = Store::here()?;
    loop {
        let Some(p) = store.pending()?.filter(|p| p.token == args.token) else { return Ok(Done::default()) };
        let left = p.deadline.saturating_sub(state::now());
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250).min(Duration::from_secs(left)));
    }
    // Concurrent writers may make a restore give up; the deadline has passed, so keep trying.
    for attempt in 0..30 {
        match roll_back_at_deadline(&store, args.token) {
            Ok(()) => return Ok(Done::default()),
            Err(e @ (Error::GaveUp(_) | Error::Kernel(_))) if attempt < 29 => {
                syslog::log(Severity::Warning, &format!("rollback at the deadline: {e}; trying again"));
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => {
                syslog::log(
                    Severity::Warning,
                    &format!("rollback at the deadline failed: {e}; run `egress-guard rollback`"),
                );
                return Err(e);
            }
        }
    }
    Ok(Done::default())
}

fn roll_back_at_deadline(store: &Store, token: u64) -> Result<(), Error> {
    let _lock = store.lock()?;
    let Some(p) = store.pending()?.filter(|p| p.token == token) else { return Ok(()) };
    let mut nl = Netlink::open()?;
    let now = transact::snapshot(&mut nl)?;
    let (_, committed) = transact::restore(&mut nl, &p.before)?;
    if committed {
        store.set_history("rollback (not confirmed in time)", now)?;
    }
    store.clear_pending()?;
    let message = format!(
        "rolled back the {} of {} s ago: it was not confirmed within {} s",
        p.command,
        state::now().saturating_sub(p.created),
        p.deadline - p.created
    );
    syslog::log(Severity::Notice, &message);
    say(&format!("egress-guard: {message}"));
    Ok(())
}

/// The pending confirmation of this namespace, as `status` shows it.
pub fn pending_here() -> Result<Option<PendingStatus>, Error> {
    // Where no state can be kept (a bare chroot), nothing can be pending either.
    let Ok(store) = Store::here() else { return Ok(None) };
    Ok(store.pending()?.as_ref().map(pending_status))
}

/// What `status` says about a pending confirmation.
pub fn pending_status(p: &Pending) -> PendingStatus {
    PendingStatus {
        command: p.command.clone(),
        deadline: p.deadline,
        seconds_left: p.deadline.saturating_sub(state::now()),
        timer_pid: p.timer_pid,
        timer_running: trial::timer_alive(p),
    }
}
