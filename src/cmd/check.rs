//! `egress-guard check`: exit 0 when in place and reached, 1 otherwise, with one line why.

use crate::cli::CheckArgs;
use crate::error::Error;
use crate::ipt::Family;
use crate::nft::socket::Netlink;
use crate::policy::Policy;
use crate::status::{Report, Verdict};
use crate::target::docker_user::ChainState;

pub fn run(args: CheckArgs) -> Result<i32, Error> {
    let policy = args.policy.to_policy();
    policy.validate()?;
    let mut nl = super::connect(&args.netns)?;
    let report = read_report(&mut nl, &policy)?;
    println!("{}", report.summary());
    Ok(if report.verdict() == Verdict::InPlace { 0 } else { 1 })
}

/// Reads both families' chains and judges them against `policy`.
pub fn read_report(nl: &mut Netlink, policy: &Policy) -> Result<Report, Error> {
    let states = Family::ALL.into_iter().map(|f| ChainState::read(nl, f)).collect::<Result<Vec<_>, _>>()?;
    Ok(Report::new(&states, policy))
}
