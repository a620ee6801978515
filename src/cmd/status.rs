//! `egress-guard status`: the report, as text or JSON.

use super::Done;
use crate::cli::StatusArgs;
use crate::error::Error;
use crate::transact;

pub fn run(args: StatusArgs) -> Result<Done, Error> {
    let (policy, target) = super::resolve(&args.policy)?;
    let docker = super::docker_picture(&args.docker, &args.netns, &policy.grants)?;
    let policy = crate::policy::Policy { live: docker.live.clone(), ..policy };
    let mut nl = super::connect(&args.netns)?;
    let mut report = transact::report(&mut nl, &policy, target)?;
    report.docker = Some(docker);
    report.pending = super::confirm::pending_here()?;
    let stdout = if args.json { report.json() + "\n" } else { report.human() };
    Ok(Done { stdout, ..Done::default() })
}
