//! The exit codes DESIGN.md promises, in one place.

/// How a command ends, as the number the shell sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Done, or in place.
    Ok = 0,
    /// `check`: the guard is not in place or not effective.
    NotInPlace = 1,
    /// Bad usage or config; nothing was changed.
    Usage = 2,
    /// The kernel refused (permission, no nf_tables, a chain missing, a table not ours).
    Kernel = 3,
    /// Gave up after other programs kept changing the ruleset.
    GaveUp = 4,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}
