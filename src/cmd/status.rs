//! `egress-guard status`: the report, as text or JSON.

use crate::cli::StatusArgs;
use crate::error::Error;

pub fn run(args: StatusArgs) -> Result<i32, Error> {
    let policy = args.policy.to_policy();
    policy.validate()?;
    let mut nl = super::connect(&args.netns)?;
    let report = super::check::read_report(&mut nl, &policy)?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.human());
    }
    Ok(0)
}
