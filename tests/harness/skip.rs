//! Whether kernel tests can run here: skip them politely, or fail loudly under `EG_KERNEL_TESTS=1`.

use std::io::Write;
use std::sync::OnceLock;

/// Set by `cargo xtask test`: a kernel test that cannot run is then a failure, not a skip.
const FORCE_VAR: &str = "EG_KERNEL_TESTS";

/// Capability bits (linux/capability.h) that namespace tests need: `ip netns add` mounts
/// (CAP_SYS_ADMIN), `setns` needs CAP_SYS_ADMIN, links and rules need CAP_NET_ADMIN.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Programs the fixture runs inside its namespaces.
const TOOLS: [&str; 3] = ["ip", "iptables", "ip6tables"];

/// Returns early from a kernel test that cannot run here (and says why), or panics if
/// `EG_KERNEL_TESTS=1` demands that it runs.
macro_rules! require_kernel {
    () => {
        if !$crate::harness::kernel_tests_enabled() {
            return;
        }
    };
}
pub(crate) use require_kernel;

/// True when this process may create namespaces and firewall them. Otherwise prints a skip line
/// naming the test and the reason, and returns false, unless `EG_KERNEL_TESTS=1`: then it panics.
pub fn kernel_tests_enabled() -> bool {
    static MISSING: OnceLock<Option<String>> = OnceLock::new();
    let Some(why) = MISSING.get_or_init(missing_prerequisite) else {
        return true;
    };
    let test = std::thread::current().name().unwrap_or("a kernel test").to_owned();
    if std::env::var(FORCE_VAR).as_deref() == Ok("1") {
        panic!("{test}: {FORCE_VAR}=1 but {why}");
    }
    // Straight to the stderr handle: libtest captures `eprintln!`, and a skip must be visible.
    // One write, so parallel tests don't interleave mid-line.
    let line = format!("skipped {test}: {why} (run `cargo xtask test` as root to run it)\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    false
}

/// The first reason kernel tests cannot run in this process, if any.
fn missing_prerequisite() -> Option<String> {
    let caps = effective_capabilities();
    for (bit, name) in [(CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_SYS_ADMIN, "CAP_SYS_ADMIN")] {
        if caps & (1 << bit) == 0 {
            return Some(format!("needs root ({name} is missing)"));
        }
    }
    TOOLS.iter().find(|tool| !on_path(tool)).map(|tool| format!("`{tool}` is not on PATH"))
}

/// The `CapEff` mask of this process, 0 if it cannot be read.
fn effective_capabilities() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}
