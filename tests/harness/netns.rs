//! Named network namespaces that a test creates, enters from threads, and always deletes.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::thread::JoinHandle;

use nix::sched::{setns, CloneFlags};

/// Where `ip netns add` bind-mounts named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Every name is `eg-<pid>-<group>-<role>`, so a later run can tell a dead run's leftovers.
const PREFIX: &str = "eg-";

static NEXT_GROUP: AtomicUsize = AtomicUsize::new(1);

/// The first `ip netns add` makes /run/netns a shared mount; two racing ones can stack mounts.
static CREATE_LOCK: Mutex<()> = Mutex::new(());

/// A fresh number for a set of namespaces that belong together (one fixture).
pub fn next_group() -> usize {
    NEXT_GROUP.fetch_add(1, Ordering::Relaxed)
}

/// A named network namespace (`/run/netns/NAME`), deleted on drop.
///
/// Every namespace gets loopback up, IPv6 duplicate-address detection off (addresses work at
/// once), ICMP error rate limits off (a flood of rejects is answered in full) and ping sockets
/// allowed for root (the ICMP probe uses them).
pub struct Netns {
    name: String,
    role: String,
}

impl Netns {
    /// A standalone namespace named `eg-<pid>-<n>-<role>`.
    pub fn new(role: &str) -> Netns {
        Netns::in_group(next_group(), role)
    }

    /// A namespace named `eg-<pid>-<group>-<role>`; fixtures share one group number.
    pub fn in_group(group: usize, role: &str) -> Netns {
        sweep_stale_once();
        let name = format!("{PREFIX}{}-{group}-{role}", std::process::id());
        {
            let _serial = CREATE_LOCK.lock().unwrap_or_else(|poison| poison.into_inner());
            run_checked(Command::new("ip").args(["netns", "add", &name]));
        }
        // From here on, Drop deletes the namespace even if the setup below panics.
        let ns = Netns { name, role: role.to_owned() };
        ns.prepare();
        ns
    }

    /// Names the network namespace of process `pid` (say, a container's init) as
    /// `eg-<pid>-<n>-<role>`, so probes, servers and floods can run in it like in any other.
    /// Drop removes only the name: the namespace lives on as long as its processes do.
    pub fn attach(role: &str, pid: u32) -> Netns {
        sweep_stale_once();
        let name = format!("{PREFIX}{}-{}-{role}", std::process::id(), next_group());
        {
            let _serial = CREATE_LOCK.lock().unwrap_or_else(|poison| poison.into_inner());
            run_checked(Command::new("ip").args(["netns", "attach", &name, &pid.to_string()]));
        }
        let ns = Netns { name, role: role.to_owned() };
        ns.prepare();
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The short role given at creation, e.g. `host` or `c1`.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// `/run/netns/NAME`, what `--netns` also accepts.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// `ip netns exec NAME PROGRAM`, ready for arguments.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs `args` inside the namespace and returns its output, whatever the exit status.
    pub fn try_run(&self, args: &[&str]) -> Output {
        let (program, rest) = args.split_first().expect("a command to run");
        let output = self.command(program).args(rest).stdin(Stdio::null()).output();
        output.unwrap_or_else(|e| panic!("{self}: cannot start {program}: {e}"))
    }

    /// Runs `args` inside the namespace and returns stdout; panics with stderr if it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let output = self.try_run(args);
        if !output.status.success() {
            panic!(
                "{self}: `{}` failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `args` inside the namespace with `input` on its stdin (`ip -batch -`, `nft -f -`,
    /// `iptables-restore`) and returns stdout; panics with stderr and the input if it fails.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> String {
        let (program, rest) = args.split_first().expect("a command to run");
        let mut child = self
            .command(program)
            .args(rest)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{self}: cannot start {program}: {e}"));
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(input.as_bytes()).unwrap_or_else(|e| panic!("{self}: write to {program}: {e}"));
        drop(stdin);
        let output = child.wait_with_output().unwrap_or_else(|e| panic!("{self}: wait for {program}: {e}"));
        if !output.status.success() {
            panic!("{self}: `{}` failed: {}\n{input}", args.join(" "), String::from_utf8_lossy(&output.stderr));
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Feeds `script` to `ip -batch -`: one `ip` process for many link/addr/route lines.
    pub fn ip_batch(&self, script: &str) {
        self.run_with_input(&["ip", "-batch", "-"], script);
    }

    /// Runs `f` on a thread that has entered this namespace, and returns its result. Sockets
    /// created there stay in this namespace even when used from elsewhere afterwards.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                enter_on_this_thread(&path);
                f()
            });
            thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Starts `f` on a new thread inside this namespace (threads it spawns stay inside too).
    pub fn spawn<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
        let path = self.path();
        let name = format!("{}-{}", self.role, std::process::id());
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                enter_on_this_thread(&path);
                f()
            })
            .expect("spawn a thread")
    }

    /// Sets `key` (dotted, as `sysctl` spells it) inside this namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        let file = sysctl_path(key);
        self.enter(|| std::fs::write(&file, value)).unwrap_or_else(|e| panic!("{self}: sysctl {key}={value}: {e}"));
    }

    /// Reads `key` (dotted) inside this namespace.
    pub fn read_sysctl(&self, key: &str) -> String {
        let file = sysctl_path(key);
        let value = self.enter(|| std::fs::read_to_string(&file));
        value.unwrap_or_else(|e| panic!("{self}: read sysctl {key}: {e}")).trim().to_owned()
    }

    /// Settings every namespace of the harness wants before any interface exists.
    fn prepare(&self) {
        // Interfaces copy `default` when they appear here; `all` covers those already present.
        for scope in ["all", "default"] {
            self.sysctl(&format!("net.ipv6.conf.{scope}.accept_dad"), "0");
        }
        // REJECT answers through icmp_send, which is rate limited per destination and globally.
        self.sysctl("net.ipv4.icmp_ratelimit", "0");
        self.sysctl("net.ipv4.icmp_ratemask", "0");
        self.sysctl("net.ipv6.icmp.ratelimit", "0");
        self.sysctl("net.ipv4.icmp_msgs_per_sec", "1000000");
        self.sysctl("net.ipv4.icmp_msgs_burst", "1000000");
        // Lets root use ICMP datagram ("ping") sockets, which match replies to us by id.
        self.sysctl("net.ipv4.ping_group_range", "0 0");
        self.ip_batch("link set lo up\n");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let output = Command::new("ip").args(["netns", "del", &self.name]).output();
        match output {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("{self}: ip netns del: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("{self}: cannot run ip netns del: {e}"),
        }
    }
}

impl fmt::Display for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.role, self.name)
    }
}

impl fmt::Debug for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Moves the calling thread into the namespace at `path`. A thread that failed to move must not
/// go on: it would send test traffic from the root namespace.
fn enter_on_this_thread(path: &Path) {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
}

fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

fn run_checked(command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if !output.status.success() {
        panic!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
}

/// Once per test process: delete `eg-<pid>-…` namespaces whose process is gone (a run that was
/// killed before its Drop guards could run).
fn sweep_stale_once() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(sweep_stale);
}

pub(super) fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    let names = entries.filter_map(|e| e.ok()?.file_name().into_string().ok());
    for name in names.filter(|name| is_stale(name)) {
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
    }
}

/// True for `eg-<pid>-…` when no process `<pid>` exists any more.
fn is_stale(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let Some(Ok(pid)) = rest.split('-').next().map(str::parse::<u32>) else {
        return false;
    };
    !Path::new("/proc").join(pid.to_string()).exists()
}
