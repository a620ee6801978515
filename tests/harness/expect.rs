//! Tables of expected outcomes: run many probes at once and report every mismatch together.

use super::netns::Netns;
use super::probe::{Outcome, Probe};

/// What a path should look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Open,
    /// Closed in any way.
    Closed,
    /// Exactly this outcome, e.g. `Outcome::Closed(Closed::Refused)`.
    Exactly(Outcome),
}

impl Want {
    fn accepts(self, outcome: Outcome) -> bool {
        match self {
            Want::Open => outcome.is_open(),
            Want::Closed => !outcome.is_open(),
            Want::Exactly(wanted) => outcome == wanted,
        }
    }
}

/// One line of a table: from this namespace, this probe should turn out so.
pub struct Expect<'a> {
    pub from: &'a Netns,
    pub probe: Probe,
    pub want: Want,
}

impl<'a> Expect<'a> {
    pub fn open(from: &'a Netns, probe: Probe) -> Expect<'a> {
        Expect { from, probe, want: Want::Open }
    }

    pub fn closed(from: &'a Netns, probe: Probe) -> Expect<'a> {
        Expect { from, probe, want: Want::Closed }
    }

    pub fn exactly(from: &'a Netns, probe: Probe, outcome: Outcome) -> Expect<'a> {
        Expect { from, probe, want: Want::Exactly(outcome) }
    }
}

/// Runs every probe concurrently (so a table of closed paths costs one timeout, not one each)
/// and panics listing all the lines that did not turn out as expected.
pub fn expect_all(table: &[Expect<'_>]) {
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let running: Vec<_> = table.iter().map(|line| scope.spawn(move || line.probe.run_in(line.from))).collect();
        running.into_iter().map(|probe| probe.join().expect("probe thread")).collect()
    });
    let failures: Vec<String> = table
        .iter()
        .zip(outcomes)
        .filter(|(line, outcome)| !line.want.accepts(*outcome))
        .map(|(line, outcome)| format!("  {}: {} — want {:?}, got {outcome}", line.from.role(), line.probe, line.want))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} paths not as expected:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}
