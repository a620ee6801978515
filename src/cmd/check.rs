//! `egress-guard check`: exit 0 when in place and reached first, 1 otherwise, with one line why.

use super::Done;
use crate::backend::Verdict;
use crate::cli::CheckArgs;
use crate::error::Error;
use crate::exit::ExitCode;
use crate::transact;

pub fn run(args: CheckArgs) -> Result<Done, Error> {
    let (policy, target) = super::resolve(&args.policy)?;
    let docker = super::docker_picture(&args.docker, &args.netns, &policy.grants)?;
    let policy = crate::policy::Policy { live: docker.live.clone(), ..policy };
    let mut nl = super::connect(&args.netns)?;
    let mut report = transact::report(&mut nl, &policy, target)?;
    report.docker = Some(docker);
    report.pending = super::confirm::pending_here()?;
    let code = if report.verdict() == Verdict::InPlace { ExitCode::Ok } else { ExitCode::NotInPlace };
    Ok(Done { code: Some(code), stdout: report.summary() + "\n", ..Done::default() })
}
