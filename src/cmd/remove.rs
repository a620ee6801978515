//! `egress-guard remove`: delete our rules, and nothing else, in one batch.

use crate::apply::{self, Change};
use crate::cli::NetnsArg;
use crate::error::Error;

pub fn run(args: NetnsArg) -> Result<i32, Error> {
    let mut nl = super::connect(&args)?;
    for r in apply::remove(&mut nl)? {
        let name = r.family.nft_name();
        match r.change {
            Change::Written { removed, .. } => println!("{name}: removed {removed} rule(s)"),
            Change::Unchanged => println!("{name}: nothing of ours to remove"),
            Change::NoChain => println!("{name}: no DOCKER-USER chain"),
        }
    }
    Ok(0)
}
