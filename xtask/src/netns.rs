//! Throw-away network namespaces for `dist` and `bench`: named after our pid, always deleted.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use nix::sched::{setns, CloneFlags};

use crate::child::run_quiet;

/// Where `ip netns add` bind-mounts named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// A named network namespace `/run/netns/<prefix>-<pid>`, deleted on drop (also on error and
/// panic), so a failed task leaves nothing behind.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `<prefix>-<pid>` after deleting `<prefix>-<pid>` namespaces of dead processes
    /// (a run killed before its guard could drop).
    pub fn create(prefix: &str) -> Result<Netns, String> {
        sweep_stale(prefix);
        let name = format!("{prefix}-{}", std::process::id());
        run_quiet(Command::new("ip").args(["netns", "add", &name]))?;
        Ok(Netns { name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`, the file `--netns` opens and the chroot check bind-mounts.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// Runs `ip netns exec NAME ARGS…` and returns its stdout; a failure carries its stderr.
    pub fn exec(&self, args: &[&str]) -> Result<String, String> {
        self.exec_env(args, &[])
    }

    /// Like [`Netns::exec`], with these variables set for the program.
    pub fn exec_env(&self, args: &[&str], env: &[(&str, &std::path::Path)]) -> Result<String, String> {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        run_quiet(&mut command)
    }

    /// What dockerd with iptables-nft leaves: a DOCKER-USER chain that FORWARD jumps to, for
    /// each of `tools` (`iptables`, `ip6tables`).
    pub fn docker_user(&self, tools: &[&str]) -> Result<(), String> {
        for tool in tools {
            self.exec(&[tool, "-N", "DOCKER-USER"])?;
            self.exec(&[tool, "-A", "FORWARD", "-j", "DOCKER-USER"])?;
        }
        Ok(())
    }

    /// Runs `work` on a thread that has entered this namespace, so every process it starts is
    /// born inside without the cost of `ip netns exec` in its timing. The thread proves it is
    /// inside before `work` starts: a command meant for the namespace must never reach the root
    /// namespace's firewall.
    pub fn run_inside<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T, String> {
        let file = File::open(self.path()).map_err(|e| format!("open {}: {e}", self.name))?;
        thread::scope(|scope| {
            let thread = scope.spawn(|| {
                enter(&file)?;
                Ok(work())
            });
            thread.join().map_err(|_| format!("work inside {} panicked", self.name))?
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run_quiet(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("xtask: could not delete network namespace {}: {e}", self.name);
        }
    }
}

/// Moves the calling thread into the namespace `file` and checks that it arrived.
fn enter(file: &File) -> Result<(), String> {
    // CLONE_NEWNET makes the kernel check that the file is a network namespace.
    setns(file, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))?;
    let wanted = file.metadata().map_err(|e| e.to_string())?.ino();
    let here = fs::metadata("/proc/thread-self/ns/net").map_err(|e| e.to_string())?.ino();
    if here != wanted {
        return Err(format!("setns left this thread in net:[{here}], not net:[{wanted}]"));
    }
    Ok(())
}

/// Deletes `<prefix>-<pid>` namespaces whose process no longer exists.
fn sweep_stale(prefix: &str) {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return;
    };
    for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        let Some(Ok(pid)) = name.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('-')).map(str::parse::<u32>)
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}
