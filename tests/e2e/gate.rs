//! Whether the suite runs here: it skips only where no `dockerd` binary exists at all, in one
//! line; anywhere else it runs, and a dockerd that cannot start fails the test.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Once;

/// Returns early from a test when there is no dockerd binary (after one line for the whole run
/// saying so).
macro_rules! require_dockerd {
    () => {
        if $crate::gate::dockerd_binary().is_none() {
            $crate::gate::say_skipped();
            return;
        }
    };
}
pub(crate) use require_dockerd;

/// `dockerd` on PATH.
pub fn dockerd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("dockerd")).find(|candidate| candidate.is_file())
}

pub fn say_skipped() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Straight to stderr: libtest captures `eprintln!`, and a skip must be visible.
        let _ =
            std::io::stderr().write_all(b"e2e: skipped, no `dockerd` binary on PATH (apt-get install -y docker.io)\n");
    });
}
