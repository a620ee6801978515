//! `cargo xtask dist`: the static release binary in `target/dist`, proven to need nothing but a
//! kernel: no ELF interpreter or shared library, and (as root) it works from an empty chroot.
//! Beside it go the man pages, shell completions, systemd unit and sample config (the
//! `dist-docs` binary makes them from egress-guard's own definitions), and a tarball of it all.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::child::run_quiet;
use crate::netns::Netns;
use crate::{cargo, run, TaskResult};

/// ELF program header types and dynamic tags (elf.h).
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

/// The binary must stay small enough to drop onto any host (DESIGN.md).
const MAX_BINARY: u64 = 4 * 1024 * 1024;

/// Builds, copies to `target/dist/egress-guard`, checks the copy, adds the generated files and
/// packs the tarball.
pub fn dist() -> TaskResult {
    crate::prereq::check_build("dist").map_err(Some)?;
    let binary = build()?;
    check_static(&binary).map_err(|e| Some(format!("{}: {e}", binary.display())))?;
    println!("dist: {} is static (no ELF interpreter, no needed libraries)", binary.display());
    let size = fs::metadata(&binary).map_err(|e| Some(format!("{}: {e}", binary.display())))?.len();
    if size > MAX_BINARY {
        return Err(Some(format!("{} is {}, over the 4 MiB limit", binary.display(), human(size))));
    }
    let dist = binary.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut files = vec![PathBuf::from("egress-guard")];
    files.extend(docs(&dist)?);
    let tarball = tarball(&dist, &files).map_err(|e| Some(format!("tarball: {e}")))?;
    for file in files.iter().chain([&tarball]) {
        let size = fs::metadata(dist.join(file)).map(|m| m.len()).unwrap_or(0);
        println!("dist: {:>9}  {}", human(size), dist.join(file).display());
    }
    if !crate::prereq::is_root() {
        println!("dist: not root, so the empty-chroot check is skipped");
        return Ok(());
    }
    chroot_check(&binary).map_err(|e| Some(format!("empty-chroot check: {e}")))?;
    println!("dist: from an empty chroot, `status` and `apply --netns` work");
    Ok(())
}

/// Runs `dist-docs` (xtask's binary with the `docs` feature, which links egress-guard's library
/// for its clap definitions) and returns the files it wrote, relative to `dist`.
fn docs(dist: &Path) -> Result<Vec<PathBuf>, Option<String>> {
    let mut command =
        cargo(&["run", "--quiet", "--package", "xtask", "--features", "docs", "--bin", "dist-docs", "--"]);
    // Not run_quiet: the first run compiles egress-guard's library, which outlasts its limit.
    command.arg(dist).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let output = command.output().map_err(|e| Some(format!("cannot run {command:?}: {e}")))?;
    if !output.status.success() {
        return Err(Some(format!("dist-docs failed ({})", output.status)));
    }
    Ok(String::from_utf8_lossy(&output.stdout).lines().map(PathBuf::from).collect())
}

/// `egress-guard-<version>-<arch>.tar.gz` in `dist`, holding `files` under a directory of the
/// same name, owned by root; its listing is checked against `files`.
fn tarball(dist: &Path, files: &[PathBuf]) -> Result<PathBuf, String> {
    let version = run_quiet(Command::new(dist.join("egress-guard")).arg("--version"))?;
    let version = version.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    let triple = host_triple()?;
    let arch = triple.split('-').next().unwrap_or("unknown");
    let name = format!("egress-guard-{version}-{arch}");
    let tarball = PathBuf::from(format!("{name}.tar.gz"));
    let mut command = Command::new("tar");
    command
        .args(["--create", "--file"])
        .arg(dist.join(&tarball))
        .args(["--use-compress-program", "gzip -9n", "--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
        .arg(format!("--transform=s,^,{name}/,"))
        .arg("--directory")
        .arg(dist)
        .args(files);
    run_quiet(&mut command)?;
    let listing = run_quiet(Command::new("tar").arg("--list").arg("--file").arg(dist.join(&tarball)))?;
    let mut listed: Vec<&str> = listing.lines().collect();
    let mut expected: Vec<String> = files.iter().map(|f| format!("{name}/{}", f.display())).collect();
    listed.sort();
    expected.sort();
    if listed != expected {
        return Err(format!("it holds {listed:?}, not {expected:?}"));
    }
    Ok(tarball)
}

/// `3.1 MiB`, `5.2 KiB`, `812 B`.
fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1024 * 1024 => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        b if b >= 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The release build with the C library linked in, copied to `target/dist/egress-guard`.
///
/// `--target` is explicit so that `+crt-static` reaches only the target's artifacts: build
/// scripts and proc macros stay dynamic (rustables runs bindgen, which dlopens libclang).
pub fn build() -> Result<PathBuf, Option<String>> {
    let built = static_release(&[])?.join("egress-guard");
    let dist = target_dir().join("dist");
    fs::create_dir_all(&dist).map_err(|e| Some(format!("create {}: {e}", dist.display())))?;
    let copy = dist.join("egress-guard");
    fs::copy(&built, &copy).map_err(|e| Some(format!("copy {} to {}: {e}", built.display(), copy.display())))?;
    Ok(copy)
}

/// An example built like the dist binary (so it reuses that build), e.g. the bench's
/// `nflog_bench`; its path.
pub fn build_example(name: &str) -> Result<PathBuf, Option<String>> {
    Ok(static_release(&["--example", name])?.join("examples").join(name))
}

/// `cargo build --release` of egress-guard with `args`, static; the directory it wrote.
fn static_release(args: &[&str]) -> Result<PathBuf, Option<String>> {
    let triple = host_triple().map_err(Some)?;
    let mut rustflags = env::var("RUSTFLAGS").unwrap_or_default();
    rustflags.push_str(" -C target-feature=+crt-static");
    let mut command = cargo(&["build", "--release", "--package", "egress-guard"]);
    command.args(args).args(["--target", &triple]).env("RUSTFLAGS", rustflags.trim());
    run(command)?;
    Ok(target_dir().join(&triple).join("release"))
}

/// `host:` from `rustc -vV`, e.g. `x86_64-unknown-linux-gnu`.
fn host_triple() -> Result<String, String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = run_quiet(Command::new(rustc).arg("-vV"))?;
    output
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| "`rustc -vV` printed no `host:` line".to_owned())
}

/// `$CARGO_TARGET_DIR`, else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| crate::workspace_root().join("target"))
}

/// Reads the program headers: a static binary has no PT_INTERP, and its PT_DYNAMIC (a
/// static-pie keeps one to relocate itself) names no DT_NEEDED library.
pub fn check_static(path: &Path) -> Result<(), String> {
    let elf = fs::read(path).map_err(|e| e.to_string())?;
    // Only 64-bit little-endian ELF (x86_64, aarch64) is read; anything else is said, not guessed.
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err("not a 64-bit little-endian ELF file".to_owned());
    }
    let short = || "program headers run past the end of the file".to_owned();
    let phoff = u64_at(&elf, 0x20).ok_or_else(short)? as usize;
    let entsize = usize::from(u16_at(&elf, 0x36).ok_or_else(short)?);
    let count = usize::from(u16_at(&elf, 0x38).ok_or_else(short)?);
    for header in (0..count).map(|i| phoff + i * entsize) {
        match u32_at(&elf, header).ok_or_else(short)? {
            PT_INTERP => return Err("it has an ELF interpreter (PT_INTERP): dynamically linked".to_owned()),
            PT_DYNAMIC => {
                let offset = u64_at(&elf, header + 8).ok_or_else(short)? as usize;
                let size = u64_at(&elf, header + 32).ok_or_else(short)? as usize;
                check_no_needed(&elf, offset, size)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The dynamic section is (tag, value) pairs of 8 bytes each, ended by DT_NULL.
fn check_no_needed(elf: &[u8], offset: usize, size: usize) -> Result<(), String> {
    for entry in (offset..offset + size).step_by(16) {
        match u64_at(elf, entry) {
            Some(DT_NULL) => return Ok(()),
            Some(DT_NEEDED) => return Err("its dynamic section needs a shared library (DT_NEEDED)".to_owned()),
            Some(_) => {}
            None => return Err("the dynamic section runs past the end of the file".to_owned()),
        }
    }
    Ok(())
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Runs the binary where nothing else exists: a directory holding only it and a file `ns` onto
/// which a throw-away namespace with a DOCKER-USER chain is bind-mounted. No libc, NSS, /proc or
/// /etc to lean on, as on a minimal host or in a scratch image.
fn chroot_check(binary: &Path) -> Result<(), String> {
    let root = ChrootDir::create(binary)?;
    let netns = Netns::create("eg-dist")?;
    netns.docker_user(&["iptables"])?;
    let status = root.run(&netns, &["status", "--netns", "/ns"])?;
    if !status.contains("ip filter DOCKER-USER") {
        return Err(format!("`status --netns /ns` did not name ip filter DOCKER-USER:\n{status}"));
    }
    root.run(&netns, &["apply", "--netns", "/ns"])?;
    let rules = netns.exec(&["iptables", "-S", "DOCKER-USER"])?;
    if !rules.contains("--comment egress-guard") {
        return Err(format!("after `apply --netns /ns`, DOCKER-USER holds no rule of ours:\n{rules}"));
    }
    Ok(())
}

/// `target/dist/chroot-<pid>/` with `egress-guard` and an empty `ns`; removed on drop. It lives
/// under `target/` rather than /tmp because a noexec /tmp would fail the check for no good reason.
struct ChrootDir {
    path: PathBuf,
}

impl ChrootDir {
    fn create(binary: &Path) -> Result<ChrootDir, String> {
        let path = target_dir().join(format!("dist/chroot-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let root = ChrootDir { path };
        fs::copy(binary, root.path.join("egress-guard")).map_err(|e| e.to_string())?;
        fs::write(root.path.join("ns"), b"").map_err(|e| e.to_string())?;
        Ok(root)
    }

    /// `/egress-guard ARGS…` chrooted here, with `netns` bind-mounted on `/ns` in a private
    /// mount namespace (the mount vanishes with the process; the host never sees it).
    fn run(&self, netns: &Netns, args: &[&str]) -> Result<String, String> {
        let script = r#"mount --bind "$1" "$2/ns" && root=$2 && shift 2 && exec chroot "$root" /egress-guard "$@""#;
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(netns.path())
            .arg(&self.path)
            .args(args);
        run_quiet(&mut command)
    }
}

impl Drop for ChrootDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("xtask: could not remove {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test binary itself is linked dynamically: the check must say so.
    #[test]
    fn dynamic_binary_is_refused() {
        let me = env::current_exe().unwrap();
        let err = check_static(&me).unwrap_err();
        assert!(err.contains("PT_INTERP"), "{err}");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(812), "812 B");
        assert_eq!(human(5325), "5.2 KiB");
        assert_eq!(human(3 * 1024 * 1024 + 150 * 1024), "3.1 MiB");
    }

    #[test]
    fn non_elf_is_refused() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        assert!(check_static(&manifest).unwrap_err().contains("not a 64-bit"));
    }
}
