//! `egress-guard status`: the report, as text or JSON.

use crate::cli::StatusArgs;
use crate::error::Error;

pub fn run(args: StatusArgs) -> Result<i32, Error> {
    let (policy, target) = super::resolve(&args.policy)?;
    let mut nl = super::connect(&args.netns)?;
    let report = super::check::read_report(&mut nl, &policy, target)?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.human());
    }
    Ok(0)
}
