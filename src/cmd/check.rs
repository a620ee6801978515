//! `egress-guard check`: exit 0 when in place and reached, 1 otherwise, with one line why.

use crate::cli::CheckArgs;
use crate::error::Error;
use crate::ipt::Family;
use crate::nft::socket::Netlink;
use crate::policy::Policy;
use crate::status::{Report, Verdict};
use crate::target::detect;
use crate::target::docker_user::ChainState;
use crate::target::table::{self, TableState};
use crate::target::Target;

pub fn run(args: CheckArgs) -> Result<i32, Error> {
    let (policy, target) = super::resolve(&args.policy)?;
    let mut nl = super::connect(&args.netns)?;
    let report = read_report(&mut nl, &policy, target)?;
    println!("{}", report.summary());
    Ok(if report.verdict() == Verdict::InPlace { 0 } else { 1 })
}

/// Reads every place of ours and judges it against `policy`; the places the chosen target
/// uses are required, the others are reported when they exist.
pub fn read_report(nl: &mut Netlink, policy: &Policy, target: Target) -> Result<Report, Error> {
    crate::apply::read_consistent(nl, |nl| read_once(nl, policy, target))
}

fn read_once(nl: &mut Netlink, policy: &Policy, target: Target) -> Result<Report, Error> {
    let choice = detect::choose(nl, target)?;
    let mut states = Family::ALL.into_iter().map(|f| ChainState::read(nl, f)).collect::<Result<Vec<_>, _>>()?;
    if !choice.target.uses_docker_user() {
        // Places of a target not chosen count where they exist, and cost no plan where they
        // don't (a 10,000-entry allow-list is 40,000 DOCKER-USER rules to plan).
        states.retain(ChainState::exists);
    }
    let (mut required, mut optional) = Report::docker_user_places(&states, policy);
    if !choice.target.uses_docker_user() {
        optional.append(&mut required);
    }
    let table = table::judge(&TableState::read(nl)?, policy);
    if choice.target.uses_table() {
        required.push(table);
    } else if table.exists {
        optional.push(table);
    }
    Ok(Report { choice, required, optional })
}
