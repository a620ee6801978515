//! What a fixture leaves on the machine, found from its run directory alone, so that the same
//! code cleans up after a test (also on panic) and after a run that was killed half-way.
//!
//! A run directory `$TMPDIR/eg-e2e-<pid>-<group>/` holds dockerd's data and exec roots, socket,
//! pid file and log, plus two notes written before dockerd starts: `netns` (the inode of each of
//! the fixture's network namespaces, which outlive their names: a killed run's names are swept
//! by the next harness run) and `cgroup` (the cgroup parent of its containers).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const PREFIX: &str = "eg-e2e-";
const NETNS_NOTE: &str = "netns";
const CGROUP_NOTE: &str = "cgroup";

/// `$TMPDIR/eg-e2e-<our pid>-<group>`, created empty.
pub fn run_dir(group: usize) -> PathBuf {
    sweep_stale_once();
    let dir = std::env::temp_dir().join(format!("{PREFIX}{}-{group}", std::process::id()));
    if dir.exists() {
        clean(&dir, &[]);
    }
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// The cgroup parent for this run's containers: `/eg-e2e-<pid>-<group>`, under the root of
/// each hierarchy, away from the machine's own Docker's `/docker`.
pub fn cgroup_parent(dir: &Path) -> String {
    let name = dir.file_name().and_then(|n| n.to_str()).expect("a run directory name");
    format!("/{name}")
}

/// Notes the namespace at `path` (and the cgroup parent) in the run directory.
pub fn note_netns(dir: &Path, path: &Path) {
    let inode = fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).ino();
    append(&dir.join(NETNS_NOTE), &format!("{inode}\n"));
    fs::write(dir.join(CGROUP_NOTE), cgroup_parent(dir)).expect("note the cgroup parent");
}

fn append(file: &Path, line: &str) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().create(true).append(true).open(file).expect("open a note");
    f.write_all(line.as_bytes()).expect("write a note");
}

/// Ends every process left in the run's namespaces and cgroups (dockerd, containerd, shims,
/// docker-proxy, containers), unmounts what is mounted under the directory (shm, netns bind
/// mounts), deletes it and the run's cgroups. Never fails: it reports what it could not do.
///
/// `live` are namespaces known to be the run's right now (named, held by the caller). A noted
/// inode alone is not proof: once a namespace is gone its number is reused for new ones, so
/// a noted namespace counts only while a process of this run (one whose command line names
/// the run directory: dockerd, containerd, a shim) is still in it.
pub fn clean(dir: &Path, live: &[u64]) {
    let noted: Vec<u64> = fs::read_to_string(dir.join(NETNS_NOTE))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let mut inodes = live.to_vec();
    inodes.extend(noted.into_iter().filter(|&inode| {
        processes_in_netns(&[inode]).iter().any(|&pid| names_dir(pid, dir)) && !live.contains(&inode)
    }));
    let cgroup = fs::read_to_string(dir.join(CGROUP_NOTE)).ok();
    let cgroups = cgroup.as_deref().map(cgroup_dirs).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut pids = processes_in_netns(&inodes);
        pids.extend(cgroups.iter().flat_map(|dir| processes_in_cgroup(dir)));
        pids.retain(|&pid| pid != std::process::id());
        if pids.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("e2e cleanup of {}: processes {pids:?} would not die", dir.display());
            break;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    unmount_under(dir);
    if let Err(e) = fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("e2e cleanup: remove {}: {e}", dir.display());
        }
    }
    for cgroup in cgroups {
        remove_cgroup_tree(&cgroup);
    }
}

/// Once per test process: clean the run directories of processes that no longer exist. A live
/// dockerd of such a run is first asked to remove its containers, the way that unmounts and
/// deletes cleanly; whatever is left is killed by [`clean`].
pub fn sweep_stale_once() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else { return };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()?.parse::<u32>().ok())
            else {
                continue;
            };
            if Path::new("/proc").join(pid.to_string()).exists() {
                continue;
            }
            let dir = entry.path();
            eprintln!("e2e: sweeping {} left by a run that was killed", dir.display());
            remove_containers_of_stale_dockerd(&dir);
            clean(&dir, &[]);
        }
    });
}

fn remove_containers_of_stale_dockerd(dir: &Path) {
    let Some(pid) = fs::read_to_string(dir.join("dockerd.pid")).ok().and_then(|p| p.trim().parse::<u32>().ok()) else {
        return;
    };
    // Only if that pid is still this run's dockerd, not a stranger that got the number later.
    if !names_dir(pid, dir) {
        return;
    }
    let host = format!("unix://{}", dir.join("docker.sock").display());
    let script = "ids=$(docker -H \"$1\" ps -aq) && [ -n \"$ids\" ] && docker -H \"$1\" rm -f $ids";
    let _ = Command::new("timeout")
        .args(["30", "sh", "-c", script, "sh", &host])
        .env("DOCKER_CONFIG", dir.join("client"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether process `pid`'s command line mentions `dir`.
fn names_dir(pid: u32, dir: &Path) -> bool {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy())
}

/// The inode of the namespace file at `path` (`/run/netns/NAME`), what [`clean`] takes as live.
pub fn netns_inode(path: &Path) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.ino())
}

/// Pids whose network namespace is one of `inodes` (what `ip netns pids` does, by inode, so it
/// works after the name is gone).
fn processes_in_netns(inodes: &[u64]) -> Vec<u32> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| inodes.contains(&m.ino())))
        .collect()
}

/// `/sys/fs/cgroup/<controller>/<parent>` for cgroup v1, `/sys/fs/cgroup/<parent>` for v2.
fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    let parent = parent.trim().trim_start_matches('/');
    if parent.is_empty() || parent.contains('/') || !parent.starts_with(PREFIX) {
        return Vec::new();
    }
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(parent)];
    if let Ok(entries) = fs::read_dir(root) {
        dirs.extend(entries.filter_map(|e| e.ok()).map(|e| e.path().join(parent)));
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

fn processes_in_cgroup(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Ok(entries) = fs::read_dir(dir) {
        for child in entries.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
            pids.extend(processes_in_cgroup(&child.path()));
        }
    }
    pids
}

/// Child cgroups first: a cgroup with children cannot be removed.
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for child in entries.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
            remove_cgroup_tree(&child.path());
        }
    }
    if let Err(e) = fs::remove_dir(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("e2e cleanup: rmdir {}: {e}", dir.display());
        }
    }
}

/// Lazily unmounts everything mounted at or below `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape(point)))
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for point in points {
        let _ = Command::new("umount").arg("-l").arg(&point).stderr(Stdio::null()).status();
    }
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = (0..3).filter_map(|_| chars.next()).collect();
            match u8::from_str_radix(&digits, 8) {
                Ok(byte) => out.push(byte as char),
                Err(_) => {
                    out.push('\\');
                    out.push_str(&digits);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
