//! The `table` target: our own `table inet egress_guard` with a base chain on hook forward at
//! priority filter - 1, native expressions and interval sets. (Being built: issue #5.)

use crate::nft::msg::BatchBuilder;
use crate::nft::socket::Netlink;
use crate::nft::sys::NFPROTO_INET;
use crate::nft::NlError;
use crate::policy::Policy;
use crate::status::{PlaceStatus, Verdict};
use crate::target::{Change, Step};

pub const TABLE: &str = "egress_guard";

/// What our table looks like in the kernel now.
#[derive(Debug, Clone, Default)]
pub struct TableState {
    pub exists: bool,
}

impl TableState {
    pub fn read(nl: &mut Netlink) -> Result<TableState, NlError> {
        Ok(TableState { exists: nl.table_exists(NFPROTO_INET, TABLE)? })
    }
}

fn place() -> String {
    format!("inet {TABLE}")
}

/// Adds to `batch` what makes our table hold `policy`.
pub fn sync(_batch: &mut BatchBuilder, _state: &TableState, _policy: &Policy) -> Step {
    Step {
        place: place(),
        change: Change::Missing,
        added: Vec::new(),
        removed: Vec::new(),
        warning: Some("the table target is not built yet".into()),
    }
}

/// Adds to `batch` the deletion of our table, if it exists.
pub fn remove(_batch: &mut BatchBuilder, _state: &TableState) -> Step {
    Step { place: place(), change: Change::Unchanged, added: Vec::new(), removed: Vec::new(), warning: None }
}

/// Compares our table with `policy`.
pub fn judge(state: &TableState, _policy: &Policy) -> PlaceStatus {
    PlaceStatus {
        place: place(),
        exists: state.exists,
        reached: state.exists,
        ours: Vec::new(),
        foreign: 0,
        verdict: Verdict::Absent,
        reason: Some("the table target is not built yet".into()),
    }
}
