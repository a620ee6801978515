//! Prerequisites of the test suite, each with the exact command that installs it when missing.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Capability bits (linux/capability.h): links, addresses and rules need CAP_NET_ADMIN;
/// `ip netns add` mounts and `setns` needs CAP_SYS_ADMIN.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Programs the kernel tests run, and the Debian package that brings each.
const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("iptables", "iptables"),
    ("ip6tables", "iptables"),
    ("nft", "nftables"),
    // The DNS forwarder's upstream in tests/dns_forwarder.rs and examples/dns_bench.rs.
    ("dnsmasq", "dnsmasq-base"),
];

/// What the e2e suite runs besides dockerd itself (whose absence skips the suite instead):
/// the docker CLI, nsenter to start dockerd in its namespace, tar and timeout.
const E2E_TOOLS: &[(&str, &str)] =
    &[("docker", "docker.io"), ("nsenter", "util-linux"), ("tar", "tar"), ("timeout", "coreutils")];

/// The image of the e2e suite is this one binary, so it must need no libc.
const BUSYBOX: &str = "/bin/busybox";

/// Checks everything `cargo xtask test` needs (`bench` needs the same; `e2e` a little more) and
/// lists every missing piece with its fix; `task` is the task name the messages use.
pub fn check_for(task: &str) -> Result<(), String> {
    let mut missing = Vec::new();
    missing.extend(capabilities(task));
    let e2e = if task == "e2e" { E2E_TOOLS } else { &[] };
    for (tool, package) in TOOLS.iter().chain(e2e) {
        if find_on_path(tool).is_none() {
            missing.push(format!("`{tool}` not found: apt-get install -y {package}"));
        }
    }
    missing.extend(iptables_backend());
    missing.extend(libclang());
    if task == "e2e" {
        missing.extend(static_busybox());
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!("cannot run `cargo xtask {task}` yet:\n  - {}", missing.join("\n  - ")))
}

/// Whether `cargo SUBCOMMAND --version` works (rustfmt and clippy are optional components).
pub fn cargo_has(subcommand: &str) -> bool {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .args([subcommand, "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether we hold what network namespaces need (CAP_NET_ADMIN and CAP_SYS_ADMIN).
pub fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let needed = (1u64 << CAP_NET_ADMIN) | (1u64 << CAP_SYS_ADMIN);
    effective & needed == needed
}

fn capabilities(task: &str) -> Option<String> {
    (!is_root()).then(|| {
        format!(
            "not root (CAP_NET_ADMIN and CAP_SYS_ADMIN needed for network namespaces): \
             run `sudo -E env PATH=\"$PATH\" cargo xtask {task}`"
        )
    })
}

/// The tests write dockerd's rules with `iptables`; they must land in nf_tables, where the
/// tool reads and writes, not in the legacy xtables.
fn iptables_backend() -> Option<String> {
    find_on_path("iptables")?;
    let output = Command::new("iptables").arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&output.stdout);
    (!version.contains("nf_tables")).then(|| {
        format!(
            "`iptables` is not the nf_tables variant ({}): \
             update-alternatives --set iptables /usr/sbin/iptables-nft && \
             update-alternatives --set ip6tables /usr/sbin/ip6tables-nft",
            version.trim()
        )
    })
}

/// bindgen (a build dependency of rustables) loads libclang at build time.
fn libclang() -> Option<String> {
    if let Some(dir) = env::var_os("LIBCLANG_PATH") {
        let dir = PathBuf::from(dir);
        return (!has_libclang(&dir))
            .then(|| format!("LIBCLANG_PATH={} holds no libclang*.so*: fix it or unset it", dir.display()));
    }
    let mut dirs = llvm_lib_dirs();
    dirs.extend(["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"].map(PathBuf::from));
    if dirs.iter().any(|dir| has_libclang(dir)) {
        return None;
    }
    Some("libclang not found: apt-get install -y libclang-dev (or set LIBCLANG_PATH)".to_owned())
}

/// `/usr/lib/llvm-*/lib`.
fn llvm_lib_dirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/usr/lib") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("llvm-"))
        .map(|entry| entry.path().join("lib"))
        .collect()
}

/// A `libclang.so*` or `libclang-<version>.so*` in `dir` (not libclang-cpp, which bindgen
/// cannot use).
fn has_libclang(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(|entry| entry.ok()).any(|entry| {
        let name = entry.file_name().to_string_lossy().into_owned();
        let versioned =
            name.strip_prefix("libclang-").is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        (name.starts_with("libclang.so") || versioned) && name.contains(".so")
    })
}

/// `dockerd` on PATH: without it the e2e suite skips (it is the one thing it may lack).
pub fn dockerd() -> Option<PathBuf> {
    find_on_path("dockerd")
}

/// Debian's busybox-static puts a static /bin/busybox; the plain busybox package a dynamic one.
fn static_busybox() -> Option<String> {
    let fix = "apt-get install -y busybox-static";
    if !Path::new(BUSYBOX).is_file() {
        return Some(format!("{BUSYBOX} not found: {fix}"));
    }
    crate::dist::check_static(Path::new(BUSYBOX)).err().map(|why| format!("{BUSYBOX}: {why}: {fix}"))
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}
