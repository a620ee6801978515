//! The fixture: a private dockerd in a network namespace of its own (never the machine's Docker,
//! never the root namespace's firewall), an "internet" namespace beyond its uplink with echo
//! servers, containers from the busybox image, and everything removed on drop, also on panic.
//!
//! The recipe is /work/shared/reference/real-dockerd-in-a-netns.md: `nsenter --net` (not `ip
//! netns exec`, whose private /sys hides the cgroup mounts dockerd needs) and a daemon config
//! file of our own (the machine's /etc/docker/daemon.json would clash with our flags).
//! Nothing here reads dockerd's rules: the scenarios judge by traffic, so a newer dockerd, or
//! Docker 29's nftables backend (`Options::firewall_backend`), needs no change here.

use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::harness::netns::next_group;
use crate::harness::{tool, EchoServers, Netns, Outcome, Probe};
use crate::harness::{Closed, DNS_PORT, HOST_V4, HOST_V6, INTERNET_V4, INTERNET_V6, SERVICE_PORT};
use crate::image;
use crate::leftovers;

/// How long dockerd may take to answer after a start (a first start on a loaded 2-core machine
/// takes a few seconds; more means it is not coming).
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long dockerd may take to exit after SIGTERM before it gets SIGKILL.
const STOP_LIMIT: Duration = Duration::from_secs(20);
/// Any one docker CLI call.
const CLI_LIMIT: &str = "60";

/// docker0's subnets; `fixed-cidr-v6` gives containers fd00:17::/64 addresses.
const BIP: &str = "172.17.0.1/16";
const FIXED_CIDR_V6: &str = "fd00:17::/64";

/// How the private dockerd is configured. `Options::default()`: IPv6 on, no live-restore, the
/// iptables backend.
#[derive(Clone, Debug)]
pub struct Options {
    /// `"live-restore": true`: containers keep running while dockerd restarts.
    pub live_restore: bool,
    /// IPv6 on docker0 and ip6tables rules (Docker 20.10 needs `experimental` for them).
    pub ipv6: bool,
    /// `"firewall-backend"`, e.g. `Some("nftables")` for Docker 29's nftables backend; None
    /// leaves the key out (Docker 20.10 refuses keys it does not know).
    pub firewall_backend: Option<String>,
    /// More daemon.json keys, merged last (they override the above).
    pub extra: serde_json::Map<String, Value>,
}

impl Default for Options {
    fn default() -> Options {
        Options { live_restore: false, ipv6: true, firewall_backend: None, extra: serde_json::Map::new() }
    }
}

impl Options {
    pub fn live_restore(self) -> Options {
        Options { live_restore: true, ..self }
    }

    pub fn ipv4_only(self) -> Options {
        Options { ipv6: false, ..self }
    }

    pub fn firewall_backend(self, backend: &str) -> Options {
        Options { firewall_backend: Some(backend.to_owned()), ..self }
    }

    /// Sets one more daemon.json key.
    pub fn with(mut self, key: &str, value: Value) -> Options {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// daemon.json for a run whose containers go under `cgroup_parent`.
    fn daemon_json(&self, cgroup_parent: &str) -> Value {
        let mut config = json!({
            // vfs works on any filesystem (overlay on overlay does not); it copies layers, and
            // the image is one small binary.
            "storage-driver": "vfs",
            // cgroupfs: a plain cgroup path works as the parent whatever the host's init is.
            "exec-opts": ["native.cgroupdriver=cgroupfs"],
            "cgroup-parent": cgroup_parent,
            "bip": BIP,
            // Networks created without --subnet stay inside the address plan the probes accept.
            "default-address-pools": [{"base": "172.18.0.0/16", "size": 24}],
            // busybox as pid 1 ignores SIGTERM: don't wait the default 10 s for it at stop.
            "shutdown-timeout": 1,
            "live-restore": self.live_restore,
        });
        let map = config.as_object_mut().expect("an object");
        if self.ipv6 {
            map.insert("experimental".into(), json!(true));
            map.insert("ipv6".into(), json!(true));
            map.insert("ip6tables".into(), json!(true));
            map.insert("fixed-cidr-v6".into(), json!(FIXED_CIDR_V6));
        }
        if let Some(backend) = &self.firewall_backend {
            map.insert("firewall-backend".into(), json!(backend));
        }
        map.extend(self.extra.clone());
        config
    }
}

/// The docker CLI aimed at one private dockerd's socket, with a client config directory of its
/// own (the user's ~/.docker is neither read nor written).
#[derive(Clone, Debug)]
pub struct DockerCli {
    socket: PathBuf,
    config: PathBuf,
}

impl DockerCli {
    /// `docker -H unix://SOCKET ARGS…` under a time limit.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("timeout");
        command
            .args(["--kill-after=5", CLI_LIMIT, "docker", "-H"])
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .env("DOCKER_CONFIG", &self.config)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null());
        command
    }

    /// Runs `docker ARGS…` and returns its output, whatever the exit status.
    pub fn try_run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap_or_else(|e| panic!("cannot run docker (apt-get install -y docker.io): {e}"))
    }

    /// Runs `docker ARGS…` and returns its stdout, trimmed; panics with stderr if it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.try_run(args);
        assert!(
            out.status.success(),
            "docker {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// A private dockerd and its world. Dropping it removes the containers, stops dockerd (and its
/// containerd and shims), ends every process left in its namespaces, deletes the namespaces
/// and the run directory.
pub struct Dockerd {
    /// dockerd's namespace: pass `--netns` [`Dockerd::netns`] to egress-guard.
    pub host: Netns,
    /// Beyond the uplink: 198.51.100.2 and 2001:db8::2, TCP and UDP echo on ports 80 and 53.
    pub internet: Netns,
    pub options: Options,
    dir: PathBuf,
    cli: DockerCli,
    daemon: Mutex<Option<Child>>,
    next_network: AtomicU16,
    _servers: EchoServers,
}

/// How long one [`Dockerd::restart`] took.
#[derive(Clone, Copy, Debug)]
pub struct Restart {
    /// From SIGTERM until dockerd had exited.
    pub stopped: Duration,
    /// From the new start until dockerd answered.
    pub ready: Duration,
}

impl Dockerd {
    /// Starts a dockerd configured by `options`, with the image imported; panics (with the end
    /// of dockerd's log) if it cannot.
    pub fn start(options: Options) -> Dockerd {
        let group = next_group();
        let dir = leftovers::run_dir(group);
        let host = Netns::in_group(group, "dk");
        let internet = Netns::in_group(group, "inet");
        leftovers::note_netns(&dir, &host.path());
        leftovers::note_netns(&dir, &internet.path());
        let cli = DockerCli { socket: dir.join("docker.sock"), config: dir.join("client") };
        let mut dockerd = Dockerd {
            host,
            internet,
            options,
            dir,
            cli,
            daemon: Mutex::new(None),
            next_network: AtomicU16::new(0),
            _servers: EchoServers::new(),
        };
        dockerd.wire();
        let config = dockerd.options.daemon_json(&leftovers::cgroup_parent(&dockerd.dir));
        fs::write(dockerd.dir.join("daemon.json"), config.to_string()).expect("write daemon.json");
        dockerd.start_daemon();
        let tarball = image::write_tarball(&dockerd.dir);
        dockerd.docker(&["import", &tarball.to_string_lossy(), image::IMAGE]);
        dockerd
    }

    /// The uplink to the internet namespace, its addresses and routes, forwarding on, and the
    /// internet's echo servers.
    fn wire(&mut self) {
        let inet = self.internet.name();
        self.host.ip_batch(&format!(
            "link add uplink type veth peer name eth0 netns {inet}\n\
             addr add {HOST_V4}/24 dev uplink\n\
             addr add {HOST_V6}/64 dev uplink nodad\n\
             link set uplink up\n\
             route add default via {INTERNET_V4}\n\
             route add ::/0 via {INTERNET_V6}\n"
        ));
        self.internet.ip_batch(&format!(
            "addr add {INTERNET_V4}/24 dev eth0\n\
             addr add {INTERNET_V6}/64 dev eth0 nodad\n\
             link set eth0 up\n\
             route add 172.16.0.0/12 via {HOST_V4}\n\
             route add fd00::/8 via {HOST_V6}\n"
        ));
        self.host.sysctl("net.ipv4.ip_forward", "1");
        self.host.sysctl("net.ipv6.conf.all.forwarding", "1");
        let mut servers = EchoServers::new();
        for port in [SERVICE_PORT, DNS_PORT] {
            servers.tcp_and_udp(&self.internet, &[(INTERNET_V4, port).into(), (INTERNET_V6, port).into()]);
        }
        self._servers = servers;
    }

    /// dockerd's API socket, for `egress-guard --docker-host`.
    pub fn socket(&self) -> String {
        self.dir.join("docker.sock").to_string_lossy().into_owned()
    }

    /// What to pass as `egress-guard --netns`.
    pub fn netns(&self) -> &str {
        self.host.name()
    }

    /// The run directory (dockerd's log is `dockerd.log` in it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn cli(&self) -> &DockerCli {
        &self.cli
    }

    /// `docker ARGS…` against this dockerd; its stdout, trimmed. Panics if it fails.
    pub fn docker(&self, args: &[&str]) -> String {
        self.cli.run(args)
    }

    /// `docker ARGS…`, output unchecked.
    pub fn try_docker(&self, args: &[&str]) -> Output {
        self.cli.try_run(args)
    }

    /// `egress-guard ARGS… --netns <dockerd's namespace>`, output unchecked.
    pub fn egress_guard(&self, args: &[&str]) -> Output {
        tool::egress_guard(&self.host, args)
    }

    /// Like [`Dockerd::egress_guard`], but it must succeed; returns its stdout.
    pub fn egress_guard_ok(&self, args: &[&str]) -> String {
        tool::egress_guard_ok(&self.host, args)
    }

    /// `nft list ruleset` in dockerd's namespace.
    pub fn ruleset(&self) -> String {
        self.host.run(&["nft", "list", "ruleset"])
    }

    /// The server's version, as `docker version` reports it.
    pub fn version(&self) -> String {
        self.docker(&["version", "--format", "{{.Server.Version}}"])
    }

    /// A container to configure and [`ContainerSpec::run`].
    pub fn container<'a>(&'a self, name: &str) -> ContainerSpec<'a> {
        ContainerSpec {
            dockerd: self,
            name: name.to_owned(),
            network: None,
            publish: Vec::new(),
            command: None,
            labels: Vec::new(),
        }
    }

    /// `docker network create` with the next subnets of the address plan: 172.18.N.0/24 and,
    /// with IPv6, fd00:18::N:0:0:0/80 (inside the fd00:18::/64 the probes accept).
    pub fn network(&self, name: &str) -> Network {
        self.network_labelled(name, &[])
    }

    /// [`Dockerd::network`] with `--label KEY=VALUE` for each pair.
    pub fn network_labelled(&self, name: &str, labels: &[(&str, &str)]) -> Network {
        let n = self.next_network.fetch_add(1, Ordering::Relaxed);
        assert!(n < 256, "out of 172.18.N.0/24 subnets");
        let v4 = format!("172.18.{n}.0/24");
        let v6 = self.options.ipv6.then(|| format!("{}/80", Ipv6Addr::new(0xfd00, 0x18, 0, 0, n, 0, 0, 0)));
        let mut args = vec!["network", "create", "--driver", "bridge", "--subnet", &v4];
        if let Some(v6) = &v6 {
            args.extend(["--ipv6", "--subnet", v6]);
        }
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for l in &labels {
            args.extend(["--label", l]);
        }
        args.push(name);
        let id = self.docker(&args);
        // The bridge driver names the bridge after the first 12 characters of the id.
        let bridge = format!("br-{}", &id[..12]);
        Network { name: name.to_owned(), id, bridge, v4_subnet: v4, v6_subnet: v6 }
    }

    /// Stops dockerd and starts it again with the same configuration. With live-restore the
    /// containers keep running throughout.
    pub fn restart(&self) -> Restart {
        let started = Instant::now();
        self.stop_daemon();
        let stopped = started.elapsed();
        let again = Instant::now();
        self.start_daemon();
        Restart { stopped, ready: again.elapsed() }
    }

    /// dockerd's pid, if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.daemon().as_ref().map(Child::id)
    }

    /// Starts dockerd inside its namespace and waits until it answers.
    pub fn start_daemon(&self) {
        let mut daemon = self.daemon();
        assert!(daemon.is_none(), "dockerd is already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .expect("open dockerd.log");
        let path = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.host.path().display()))
            .args(["dockerd", "--config-file", &path("daemon.json"), "--data-root", &path("data")])
            .args(["--exec-root", &path("exec"), "--pidfile", &path("dockerd.pid")])
            .arg("-H")
            .arg(format!("unix://{}", self.cli.socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            // Its own process group: a Ctrl-C meant for the test run does not reach it (the
            // next run sweeps what a killed run leaves).
            .process_group(0);
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start dockerd via nsenter: {e}"));
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("dockerd exited at start ({status}); the end of its log:\n{}", self.log_tail());
            }
            if self.try_docker(&["version", "--format", "{{.Server.Version}}"]).status.success() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("dockerd did not answer within {START_LIMIT:?}; the end of its log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        *daemon = Some(child);
    }

    /// SIGTERM, then SIGKILL after [`STOP_LIMIT`]; waits for the exit and removes the pid file
    /// (a stale one makes the next start fail).
    pub fn stop_daemon(&self) {
        let Some(mut child) = self.daemon().take() else { return };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_LIMIT;
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                eprintln!("dockerd {} ignored SIGTERM for {STOP_LIMIT:?}: killing it", child.id());
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_file(self.dir.join("dockerd.pid"));
    }

    fn daemon(&self) -> MutexGuard<'_, Option<Child>> {
        self.daemon.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// The last 40 lines of dockerd's log.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.pid().is_some() {
            let ids = self.try_docker(&["ps", "-aq"]);
            let ids = String::from_utf8_lossy(&ids.stdout).into_owned();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(&ids);
                let _ = self.try_docker(&args);
            }
        }
        self.stop_daemon();
        let live: Vec<u64> =
            [&self.host, &self.internet].iter().filter_map(|ns| leftovers::netns_inode(&ns.path())).collect();
        leftovers::clean(&self.dir, &live);
    }
}

/// A user-defined network.
#[derive(Clone, Debug)]
pub struct Network {
    pub name: String,
    pub id: String,
    /// The Linux bridge, `br-<id prefix>`.
    pub bridge: String,
    pub v4_subnet: String,
    pub v6_subnet: Option<String>,
}

/// What [`Dockerd::container`] runs: busybox's `nc` as a TCP echo on port 80 unless told
/// otherwise, on docker0 unless given a network.
pub struct ContainerSpec<'a> {
    dockerd: &'a Dockerd,
    name: String,
    network: Option<String>,
    publish: Vec<String>,
    command: Option<Vec<String>>,
    labels: Vec<String>,
}

impl ContainerSpec<'_> {
    /// `--label KEY=VALUE`.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push(format!("{key}={value}"));
        self
    }

    pub fn network(mut self, network: &Network) -> Self {
        self.network = Some(network.name.clone());
        self
    }

    /// `-p SPEC`, e.g. "8080:80".
    pub fn publish(mut self, spec: &str) -> Self {
        self.publish.push(spec.to_owned());
        self
    }

    pub fn command(mut self, command: &[&str]) -> Self {
        self.command = Some(command.iter().map(|s| s.to_string()).collect());
        self
    }

    /// `docker run -d`, then finds its pid and addresses and names its network namespace.
    pub fn run(self) -> Container {
        let mut args = vec!["run", "-d", "--name", &self.name];
        if let Some(network) = &self.network {
            args.extend(["--network", network]);
        }
        for spec in &self.publish {
            args.extend(["-p", spec]);
        }
        for l in &self.labels {
            args.extend(["--label", l]);
        }
        args.push(image::IMAGE);
        let echo = ["nc", "-ll", "-p", "80", "-e", "cat"].map(String::from).to_vec();
        let command = self.command.unwrap_or(echo);
        args.extend(command.iter().map(String::as_str));
        let id = self.dockerd.docker(&args);
        Container::inspect(self.dockerd.cli.clone(), &id)
    }
}

/// A running container: its addresses on its (first) network, and its network namespace named
/// so that the harness's probes, servers and floods can run in it.
pub struct Container {
    pub name: String,
    pub id: String,
    pub pid: u32,
    pub v4: Ipv4Addr,
    pub v6: Option<Ipv6Addr>,
    pub netns: Netns,
    cli: DockerCli,
}

impl Container {
    fn inspect(cli: DockerCli, id: &str) -> Container {
        let json = cli.run(&["inspect", id]);
        let parsed: Value = serde_json::from_str(&json).expect("docker inspect prints JSON");
        let info = &parsed[0];
        let name = info["Name"].as_str().unwrap_or(id).trim_start_matches('/').to_owned();
        let pid = info["State"]["Pid"].as_u64().filter(|&p| p > 0).expect("a running container has a pid") as u32;
        let networks = info["NetworkSettings"]["Networks"].as_object().expect("networks");
        let (_, network) = networks.iter().next().expect("a container on a network");
        let v4 = network["IPAddress"].as_str().and_then(|a| a.parse().ok()).expect("an IPv4 address");
        let v6 = network["GlobalIPv6Address"].as_str().and_then(|a| a.parse().ok());
        let netns = Netns::attach(&name, pid);
        Container { name, id: id.to_owned(), pid, v4, v6, netns, cli }
    }

    /// Its IPv6 address; panics if it has none (IPv6 off).
    pub fn v6(&self) -> Ipv6Addr {
        self.v6.unwrap_or_else(|| panic!("{self} has no IPv6 address"))
    }

    /// Its address in `family_of`'s family, for a peer to reach it.
    pub fn addr_like(&self, family_of: IpAddr) -> IpAddr {
        match family_of {
            IpAddr::V4(_) => self.v4.into(),
            IpAddr::V6(_) => self.v6().into(),
        }
    }

    /// `docker exec NAME ARGS…`, output unchecked.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", self.name.as_str()];
        all.extend(args);
        self.cli.try_run(&all)
    }

    /// busybox `nc` inside the container: sends a line to `to` and wants it echoed. The kind of
    /// closed is read from nc's message (refused, timed out, unreachable).
    pub fn nc(&self, to: SocketAddr) -> Outcome {
        let token = format!("e2e {} {}", self.name, to);
        let script = format!("echo '{token}' | nc -w 3 {} {}", to.ip(), to.port());
        let out = self.exec(&["timeout", "6", "sh", "-c", &script]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        if stdout.lines().any(|l| l == token) {
            Outcome::Open
        } else if stderr.contains("refused") {
            Outcome::Closed(Closed::Refused)
        } else if stderr.contains("unreachable") || stderr.contains("no route") || stderr.contains("prohibited") {
            Outcome::Closed(Closed::Unreachable)
        } else if stderr.contains("timed out") || stdout.is_empty() {
            Outcome::Closed(Closed::Timeout)
        } else {
            Outcome::Closed(Closed::Broken)
        }
    }

    /// busybox `ping` inside the container: open if an echo reply came. Three requests, 200 ms
    /// apart, so that one lost while a neighbour entry is being resolved (a fresh container's
    /// first packet, under load) does not pass for a closed path.
    pub fn ping(&self, to: IpAddr) -> Outcome {
        let out = self.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &to.to_string()]);
        if out.status.success() {
            Outcome::Open
        } else {
            Outcome::Closed(Closed::Timeout)
        }
    }

    /// A harness probe from the container's network namespace: UDP, exact outcomes, and fast
    /// enough for tables and floods.
    pub fn probe(&self, probe: Probe) -> Outcome {
        probe.run_in(&self.netns)
    }
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "container {} ({})", self.name, self.v4)
    }
}
