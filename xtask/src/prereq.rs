//! Prerequisites of the build and the test suite. Run as root on a system with apt-get, a task
//! installs the missing packages itself (one line each says which and why); elsewhere it names
//! the exact command that installs each.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Capability bits (linux/capability.h): links, addresses and rules need CAP_NET_ADMIN;
/// `ip netns add` mounts and `setns` needs CAP_SYS_ADMIN.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Programs the tests run, the Debian package that brings each, and what needs it.
const TOOLS: &[(&str, &str, &str)] = &[
    ("ip", "iproute2", "the test namespaces and their links"),
    ("iptables", "iptables", "dockerd's rules in the emulated Docker host"),
    ("ip6tables", "iptables", "dockerd's rules in the emulated Docker host"),
    ("nft", "nftables", "the table-target and Docker nftables-backend tests"),
    ("systemd-analyze", "systemd", "the test that verifies the generated unit"),
    ("dnsmasq", "dnsmasq-base", "the DNS forwarder's upstream in its tests and bench"),
];

/// What the e2e suite runs besides dockerd itself (whose absence skips the suite instead):
/// the docker CLI, nsenter to start dockerd in its namespace, tar and timeout.
const E2E_TOOLS: &[(&str, &str, &str)] = &[
    ("docker", "docker.io", "the e2e suite's docker CLI"),
    ("nsenter", "util-linux", "starting the e2e suite's dockerd in its namespace"),
    ("tar", "tar", "building the e2e suite's image"),
    ("timeout", "coreutils", "bounding the e2e suite's probes"),
];

/// The image of the e2e suite is this one binary, so it must need no libc.
const BUSYBOX: &str = "/bin/busybox";

/// The kernel headers rustables' bindgen reads.
const NF_TABLES_HEADER: &str = "/usr/include/linux/netfilter/nf_tables.h";

/// A missing piece: what is wrong, and the Debian package that cures it (if one does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    why: String,
    package: Option<&'static str>,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.package {
            Some(package) => write!(f, "{}: apt-get install -y {package}", self.why),
            None => f.write_str(&self.why),
        }
    }
}

/// Checks everything `cargo xtask test` needs (`bench` and `ci` need the same), installs the
/// missing packages where it can, and lists every piece still missing with its fix; `task` is
/// the task name the messages use.
pub fn check_for(task: &str) -> Result<(), String> {
    ensure(task, || {
        let mut missing = Vec::new();
        missing.extend(capabilities(task));
        let e2e = if task == "e2e" { E2E_TOOLS } else { &[] };
        for (tool, package, needed_by) in TOOLS.iter().chain(e2e) {
            if find_on_path(tool).is_none() {
                missing.push(Missing { why: format!("`{tool}` not found ({needed_by})"), package: Some(package) });
            }
        }
        if task == "e2e" {
            missing.extend(static_busybox());
        }
        missing.extend(iptables_backend());
        missing.extend(build_prerequisites());
        missing
    })
}

/// What building egress-guard needs (`dist` builds it without running any test).
pub fn check_build(task: &str) -> Result<(), String> {
    ensure(task, build_prerequisites)
}

/// Runs `find`, installs what it found missing (as root, with apt-get), then runs it again.
fn ensure(task: &str, find: impl Fn() -> Vec<Missing>) -> Result<(), String> {
    let mut missing = find();
    let plan = install_plan(&missing);
    if !plan.is_empty() && is_root() && find_on_path("apt-get").is_some() {
        for (package, why) in &plan {
            println!("xtask: installing {package}: {why}");
        }
        apt_get_install(plan.iter().map(|(package, _)| *package))?;
        missing = find();
    }
    if missing.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = missing.iter().map(Missing::to_string).collect();
    Err(format!("cannot run `cargo xtask {task}` yet:\n  - {}", lines.join("\n  - ")))
}

/// Each package to install once, with the reasons for it (several tools may share one).
fn install_plan(missing: &[Missing]) -> Vec<(&'static str, String)> {
    let mut plan: Vec<(&'static str, String)> = Vec::new();
    for m in missing {
        let Some(package) = m.package else { continue };
        match plan.iter_mut().find(|(p, _)| *p == package) {
            Some((_, why)) => {
                why.push_str("; ");
                why.push_str(&m.why);
            }
            None => plan.push((package, m.why.clone())),
        }
    }
    plan
}

/// `apt-get install`, quietly; on a machine whose package lists are missing or stale (a fresh
/// container has none) it fails, and then `apt-get update` and a second try follow.
fn apt_get_install<'a>(packages: impl Iterator<Item = &'a str> + Clone) -> Result<(), String> {
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages.clone())
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
    };
    let first = install().map_err(|e| format!("cannot run apt-get: {e}"))?;
    if first.status.success() {
        return Ok(());
    }
    println!("xtask: apt-get install failed; running apt-get update and trying again");
    let update = Command::new("apt-get").args(["update", "-qq"]).output();
    let output = match update {
        Ok(u) if u.status.success() => install().map_err(|e| format!("cannot run apt-get: {e}"))?,
        Ok(u) => u,
        Err(e) => return Err(format!("cannot run apt-get update: {e}")),
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!("apt-get failed ({}):\n{}", output.status, stderr.trim()))
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

fn capabilities(task: &str) -> Option<Missing> {
    (!is_root()).then(|| Missing {
        why: format!(
            "not root (CAP_NET_ADMIN and CAP_SYS_ADMIN needed for network namespaces): \
             run `sudo -E env PATH=\"$PATH\" cargo xtask {task}`"
        ),
        package: None,
    })
}

/// The tests write dockerd's rules with `iptables`; they must land in nf_tables, where the
/// tool reads and writes, not in the legacy xtables.
fn iptables_backend() -> Option<Missing> {
    find_on_path("iptables")?;
    let output = Command::new("iptables").arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&output.stdout);
    // Not switched for you: the alternative decides which firewall every program on the host uses.
    (!version.contains("nf_tables")).then(|| Missing {
        why: format!(
            "`iptables` is not the nf_tables variant ({}): \
             update-alternatives --set iptables /usr/sbin/iptables-nft && \
             update-alternatives --set ip6tables /usr/sbin/ip6tables-nft",
            version.trim()
        ),
        package: None,
    })
}

/// rustables' build script runs bindgen, which loads libclang and reads the kernel's
/// nf_tables headers.
fn build_prerequisites() -> Vec<Missing> {
    let mut missing: Vec<Missing> = libclang().into_iter().collect();
    if !Path::new(NF_TABLES_HEADER).is_file() {
        let why = format!("{NF_TABLES_HEADER} not found (bindgen reads it to build rustables)");
        missing.push(Missing { why, package: Some("linux-libc-dev") });
    }
    missing
}

fn libclang() -> Option<Missing> {
    if let Some(dir) = env::var_os("LIBCLANG_PATH") {
        let dir = PathBuf::from(dir);
        return (!has_libclang(&dir)).then(|| Missing {
            why: format!("LIBCLANG_PATH={} holds no libclang*.so*: fix it or unset it", dir.display()),
            package: None,
        });
    }
    let mut dirs = llvm_lib_dirs();
    dirs.extend(
        ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"].map(PathBuf::from),
    );
    if dirs.iter().any(|dir| has_libclang(dir)) {
        return None;
    }
    let why = "libclang not found (bindgen loads it to build rustables; or set LIBCLANG_PATH)".to_owned();
    Some(Missing { why, package: Some("libclang-dev") })
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

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

/// `dockerd` on PATH: without it the e2e suite skips (it is the one thing it may lack).
pub fn dockerd() -> Option<PathBuf> {
    find_on_path("dockerd")
}

/// Debian's busybox-static puts a static /bin/busybox; the plain busybox package a dynamic one.
fn static_busybox() -> Option<Missing> {
    let package = Some("busybox-static");
    if !Path::new(BUSYBOX).is_file() {
        return Some(Missing { why: format!("{BUSYBOX} not found (the e2e suite's image)"), package });
    }
    crate::dist::check_static(Path::new(BUSYBOX)).err().map(|why| Missing { why: format!("{BUSYBOX}: {why}"), package })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(why: &str, package: Option<&'static str>) -> Missing {
        Missing { why: why.to_owned(), package }
    }

    #[test]
    fn each_package_is_installed_once_with_every_reason() {
        let plan = install_plan(&[
            missing("`iptables` not found", Some("iptables")),
            missing("not root", None),
            missing("`ip6tables` not found", Some("iptables")),
            missing("libclang not found", Some("libclang-dev")),
        ]);
        assert_eq!(
            plan,
            [
                ("iptables", "`iptables` not found; `ip6tables` not found".to_owned()),
                ("libclang-dev", "libclang not found".to_owned()),
            ]
        );
    }

    #[test]
    fn a_missing_piece_names_its_install_command() {
        assert_eq!(
            missing("`nft` not found", Some("nftables")).to_string(),
            "`nft` not found: apt-get install -y nftables"
        );
        assert_eq!(missing("not root: run sudo", None).to_string(), "not root: run sudo");
    }
}
