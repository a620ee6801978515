//! `egress-guard watch`: apply, then heal whenever someone else changes the ruleset (an
//! `iptables -F`, a firewalld reload, `systemctl reload nftables`), and check again every
//! `--interval` seconds in case a notification was lost. Runs until killed.

use std::time::Duration;

use super::{say, warn, Done};
use crate::backend::table::OwnTable;
use crate::backend::{Backend, BackendError, Change, Target};
use crate::cli::WatchArgs;
use crate::error::Error;
use crate::nft::monitor::{Monitor, Wake};
use crate::nft::socket::Netlink;
use crate::policy::Policy;
use crate::transact;

pub fn run(args: WatchArgs) -> Result<Done, Error> {
    let (policy, target) = super::resolve(&args.policy)?;
    let mut nl = super::connect(&args.netns)?;
    // Subscribe before the first apply, so no change between the two goes unseen.
    let mut monitor = Monitor::open(Duration::from_secs(args.interval))?;
    say(&format!("egress-guard: watching (every change, and every {} s)", args.interval));
    heal(&mut nl, &policy, target, "start")?;
    loop {
        let why = match monitor.wait()? {
            Wake::OwnChange => continue,
            Wake::Changed => "the ruleset changed",
            Wake::Quiet => "periodic check",
            Wake::Overrun => "notifications were lost",
        };
        heal(&mut nl, &policy, target, why)?;
    }
}

/// One apply, with watch's shield (see `backend::table::SHIELD`); says what it had to write.
/// Errors that a later change can cure (the chain is gone while dockerd restarts, a writer kept
/// winning) are reported and watching goes on; permission and usage errors, and another watch
/// holding the shield, end the watch.
fn heal(nl: &mut Netlink, policy: &Policy, target: Target, why: &str) -> Result<(), Error> {
    let shield: [Box<dyn Backend>; 1] = [Box::new(OwnTable::shield())];
    match transact::apply(nl, policy, target, false, &shield) {
        Ok(outcome) => {
            for step in outcome.steps.iter().filter(|s| s.change == Change::Written) {
                let (added, removed) = (step.added.len(), step.removed.len());
                say(&format!("egress-guard: {why}: {}: wrote {added} rule(s), deleted {removed}", step.place));
            }
            Ok(())
        }
        Err(e @ Error::Backend(BackendError::HeldByOther { .. })) => Err(e),
        Err(e @ (Error::Backend(_) | Error::GaveUp(_) | Error::Kernel(_))) => {
            warn(&format!("{why}: {e}; waiting for the next change"));
            Ok(())
        }
        Err(e) => Err(e),
    }
}
