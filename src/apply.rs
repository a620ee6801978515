//! Read → diff → one batch, under the ruleset generation: if anyone commits between our read
//! and our batch, the kernel refuses the batch whole (ERESTART) and we read again.

use crate::error::Error;
use crate::ipt::Family;
use crate::nft::msg::{Batch, BatchBuilder};
use crate::nft::socket::Netlink;
use crate::nft::NlError;
use crate::plan;
use crate::policy::Policy;
use crate::target::docker_user::{self, ChainState};

/// Attempts before exit 4. Each failed attempt means someone else committed in the few
/// hundred microseconds between our read and our write; ten in a row means a busy writer.
pub const MAX_ATTEMPTS: u32 = 10;

/// What happened to one family's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Already as planned: nothing sent.
    Unchanged,
    /// Our rules were (re)written: this many added and removed.
    Written { added: usize, removed: usize },
    /// The family has no DOCKER-USER (e.g. dockerd without ip6tables).
    NoChain,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyResult {
    pub family: Family,
    pub change: Change,
    pub forward_jumps: bool,
}

/// Runs `step` (read the kernel, decide, maybe build a batch) until its batch commits against
/// the generation it read, or there is nothing to send.
pub fn transact<T>(
    nl: &mut Netlink,
    mut step: impl FnMut(&mut Netlink, &mut BatchBuilder) -> Result<T, Error>,
) -> Result<T, Error> {
    for _ in 0..MAX_ATTEMPTS {
        let genid = nl.generation()?;
        let mut batch = BatchBuilder::new(nl.next_seq(), genid);
        let outcome = match step(nl, &mut batch) {
            Err(Error::Kernel(NlError::Concurrent)) => continue,
            other => other?,
        };
        if batch.is_empty() {
            return Ok(outcome);
        }
        let batch: Batch = batch.finish();
        match nl.commit(&batch) {
            Ok(()) => return Ok(outcome),
            Err(NlError::Concurrent) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::GaveUp(MAX_ATTEMPTS))
}

/// Puts `policy` in place in both families' DOCKER-USER.
pub fn apply(nl: &mut Netlink, policy: &Policy) -> Result<Vec<FamilyResult>, Error> {
    transact(nl, |nl, batch| {
        let mut results = Vec::new();
        for family in Family::ALL {
            let state = ChainState::read(nl, family)?;
            let planned = docker_user::encode(family, &plan::docker_user_rules(policy, family));
            let change = if !state.exists() {
                Change::NoChain
            } else if state.matches(&planned) {
                Change::Unchanged
            } else {
                docker_user::replace(batch, &state, &planned);
                Change::Written { added: planned.len(), removed: state.ours().len() }
            };
            results.push(FamilyResult { family, change, forward_jumps: state.forward_jumps });
        }
        // The IPv4 chain is the one Docker always has; without it there is no Docker to guard.
        if results[0].change == Change::NoChain {
            return Err(Error::NoDockerUser { family: Family::V4 });
        }
        Ok(results)
    })
}

/// Deletes our rules (only ours) from both families.
pub fn remove(nl: &mut Netlink) -> Result<Vec<FamilyResult>, Error> {
    transact(nl, |nl, batch| {
        let mut results = Vec::new();
        for family in Family::ALL {
            let state = ChainState::read(nl, family)?;
            let removed = state.ours().len();
            docker_user::remove(batch, &state);
            let change = match (state.exists(), removed) {
                (false, _) => Change::NoChain,
                (true, 0) => Change::Unchanged,
                (true, n) => Change::Written { added: 0, removed: n },
            };
            results.push(FamilyResult { family, change, forward_jumps: state.forward_jumps });
        }
        Ok(results)
    })
}
