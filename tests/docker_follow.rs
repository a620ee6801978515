//! The Docker follower against a real dockerd (20.10 from Debian), private to the test inside
//! a network namespace of its own: the address book names the container that held an address
//! at each moment, across a handover of one address and a dockerd restart. Ignored by default
//! (needs root, dockerd and busybox-static; the e2e suite carries the permanent version):
//! `cargo test --test tests docker_follow -- --ignored --nocapture` prints what it measured.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use egress_guard::docker::{Client, DockerState, Endpoint, Event, FollowOptions, Follower};

use crate::harness::{self, Netns};

/// A dockerd of the test's own: its namespace, config, data, exec root and socket under a
/// temp dir; stopped, emptied and deleted on drop (also when the test fails).
struct PrivateDockerd {
    dir: PathBuf,
    /// `setsid` execs dockerd (it is no group leader), so this is dockerd itself: waited for,
    /// or it would linger as a zombie.
    daemon: Mutex<Option<std::process::Child>>,
    // Dropped after the daemon is stopped.
    ns: Netns,
}

impl PrivateDockerd {
    fn start(daemon_json: &str) -> PrivateDockerd {
        let ns = Netns::new("dockerd");
        let dir = std::env::temp_dir().join(ns.name());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("daemon.json"), daemon_json).unwrap();
        let dockerd = PrivateDockerd { dir, daemon: Mutex::new(None), ns };
        dockerd.start_daemon();
        dockerd.import_image();
        dockerd
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    fn client(&self) -> Client {
        Client::new(&Endpoint { socket: self.socket() }).with_timeout(Duration::from_secs(20))
    }

    /// `nsenter --net`, not `ip netns exec`: the latter remounts /sys and hides the cgroups.
    fn start_daemon(&self) {
        let d = &self.dir;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(d.join("dockerd.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns.path().display()))
            .args(["setsid", "dockerd", "--config-file"])
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        *self.daemon.lock().unwrap() = Some(child);
        let started = Instant::now();
        while self.client().version().is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "dockerd did not come up: see {}", d.display());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, and waits: dockerd stops its containers first (10 s for one ignoring SIGTERM).
    fn stop_daemon(&self) {
        let Some(mut child) = self.daemon.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let started = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(self.dir.join("dockerd.pid"));
    }

    /// The docker CLI, aimed at this daemon only.
    fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .stdin(Stdio::null())
            .output()
            .expect("run docker");
        assert!(out.status.success(), "docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `egprobe`: Debian's static busybox as the only file of an image (no registry here).
    fn import_image(&self) {
        let root = self.dir.join("image");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
        for applet in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        let mut tar =
            Command::new("tar").arg("-C").arg(&root).args(["-c", "."]).stdout(Stdio::piped()).spawn().unwrap();
        let status = Command::new("docker")
            .args(["import", "-", "egprobe:latest"])
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .stdin(tar.stdout.take().unwrap())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(tar.wait().unwrap().success(), "tar");
        assert!(status.success(), "docker import");
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        if self.client().version().is_ok() {
            let ids = Command::new("docker")
                .args(["ps", "-aq"])
                .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
                .output();
            if let Ok(ids) = ids {
                for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                    let _ = Command::new("docker")
                        .args(["rm", "-f", id])
                        .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
                        .output();
                }
            }
        }
        self.stop_daemon();
        // Whatever dockerd left running in its namespace (containerd, shims).
        if let Ok(out) = Command::new("ip").args(["netns", "pids", self.ns.name()]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("umount").arg("-R").arg(self.dir.join("exec")).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An event, when it arrived, and what an inspect right after a connect showed.
type Seen = (SystemTime, Event, Option<String>);

/// Everything a second subscriber sees, with when it arrived.
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    /// Subscribes; on each network connect it inspects the container at once, as the
    /// follower does, and records what the address looks like at that moment.
    fn start(client: Client) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut events = client.events(None, Duration::from_millis(100)).unwrap();
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let event = match events.next_event() {
                        Ok(Some(event)) => event,
                        Ok(None) => continue,
                        Err(_) => break,
                    };
                    let received = SystemTime::now();
                    let inspect = (event.action == "connect").then(|| {
                        let id = event.attribute("container").unwrap_or_default();
                        let asked = Instant::now();
                        match client.inspect_container(id) {
                            Ok(c) => {
                                let ip: Vec<_> =
                                    c.network_settings.networks.values().map(|n| n.ip_address.clone()).collect();
                                format!(
                                    "state {} addresses {ip:?} (answered in {})",
                                    c.state.status,
                                    millis(asked.elapsed())
                                )
                            }
                            Err(e) => e.to_string(),
                        }
                    });
                    seen.lock().unwrap().push((received, event, inspect));
                }
            })
        };
        Recorder { seen, stop, thread: Some(thread) }
    }

    fn events(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn first(&self, name: &str, action: &str) -> Event {
        let events = self.events();
        let found = events
            .iter()
            .find(|(_, e, _)| e.kind == "container" && e.action == action && e.attribute("name") == Some(name));
        found.map(|(_, e, _)| e.clone()).unwrap_or_else(|| panic!("no {action} of {name}"))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[test]
#[ignore = "needs root, dockerd and busybox-static: run with --ignored"]
fn follower_names_the_holder_of_a_reused_address_and_survives_a_dockerd_restart() {
    harness::require_kernel!();
    let daemon_json =
        r#"{"storage-driver":"vfs","experimental":true,"ipv6":true,"ip6tables":true,"fixed-cidr-v6":"fd00:17::/64"}"#;
    let dockerd = PrivateDockerd::start(daemon_json);
    dockerd.docker(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "172.30.0.0/24",
        "--subnet",
        "fd00:30::/64",
        "--label",
        "egress-guard.allow=203.0.113.7",
        "egnet",
    ]);
    let options = FollowOptions { tick: Duration::from_millis(200), ..Default::default() };
    let follower = Follower::spawn(dockerd.client(), options).unwrap();
    assert!(follower.wait_until(Duration::from_secs(10), |_, s| *s == DockerState::Following), "{}", follower.state());
    let recorder = Recorder::start(dockerd.client());
    let (v4, v6) = (ip("172.30.0.10"), ip("fd00:30::10"));
    let held_by = |name: &'static str| {
        move |book: &egress_guard::docker::AddressBook, _: &DockerState| {
            book.holder(v4).is_some_and(|w| w.name == name) && book.holder(v6).is_some_and(|w| w.name == name)
        }
    };

    // The same two addresses, first for one container, then for another.
    let run = ["run", "-d", "--network", "egnet", "--ip", "172.30.0.10", "--ip6", "fd00:30::10"];
    dockerd.docker(&[&run[..], &["--name", "first", "egprobe", "sleep", "600"]].concat());
    let returned = Instant::now();
    assert!(follower.wait_until(Duration::from_secs(10), held_by("first")));
    let first_known = returned.elapsed();
    dockerd.docker(&["rm", "-f", "first"]);
    assert!(follower.wait_until(Duration::from_secs(10), |b, _| b.holder(v4).is_none()));
    let compose = ["--label", "com.docker.compose.project=proj", "--label", "com.docker.compose.service=api"];
    dockerd.docker(&[&run[..], &compose[..], &["--name", "second", "egprobe", "sleep", "600"]].concat());
    assert!(follower.wait_until(Duration::from_secs(10), held_by("second")));

    let (start1, die1, start2) = (
        recorder.first("first", "start").at(),
        recorder.first("first", "die").at(),
        recorder.first("second", "start").at(),
    );
    let between = |a: SystemTime, b: SystemTime| a + b.duration_since(a).unwrap() / 2;
    let ms = Duration::from_millis(1);
    for addr in [v4, v6] {
        let who = |at| follower.who(addr, at).map(|w| w.name);
        assert_eq!(who(between(start1, die1)).as_deref(), Some("first"), "{addr}");
        assert_eq!(who(die1 - ms).as_deref(), Some("first"), "{addr}");
        // Released at the die; the second container takes it at its network connect, which
        // comes before its start (and after `rm -f first` returned).
        assert_eq!(who(die1 + ms), None, "{addr}");
        assert_eq!(who(start2).as_deref(), Some("second"), "{addr}");
    }
    let second = follower.who(v4, SystemTime::now()).unwrap();
    assert_eq!(second.compose.as_ref().map(|c| (c.project.as_str(), c.service.as_str())), Some(("proj", "api")));
    assert_eq!(second.network, "egnet");
    let egnet_id = dockerd.docker(&["network", "inspect", "-f", "{{.Id}}", "egnet"]);
    assert_eq!(second.bridge, Some(format!("br-{}", &egnet_id[..12])));

    // Joining a second network while running.
    dockerd.docker(&["network", "connect", "bridge", "second"]);
    let on_bridge = |b: &egress_guard::docker::AddressBook, _: &DockerState| {
        b.containers().any(|c| c.name == "second" && c.networks.contains_key("bridge"))
    };
    assert!(follower.wait_until(Duration::from_secs(10), on_bridge));
    let bridge_v4 = follower.with_book(|b| {
        let c = b.containers().find(|c| c.name == "second").unwrap();
        c.networks["bridge"].ipv4.unwrap()
    });
    let on_docker0 = follower.who(IpAddr::V4(bridge_v4), SystemTime::now()).unwrap();
    assert_eq!((on_docker0.network.as_str(), on_docker0.bridge.as_deref()), ("bridge", Some("docker0")));

    // dockerd goes away (its containers with it: no live-restore) and comes back.
    let events_before_restart = follower.with_book(|b| b.revision());
    let stopping = SystemTime::now();
    dockerd.stop_daemon();
    let stopped = SystemTime::now();
    assert!(follower.wait_until(Duration::from_secs(10), |_, s| matches!(s, DockerState::Unavailable(_))));
    let unavailable = follower.state().to_string();
    let second_until = follower.with_book(|b| b.history(v4).last().and_then(|h| h.until));
    let during_shutdown: Vec<String> = recorder
        .events()
        .iter()
        .filter(|(_, e, _)| e.at() >= stopping)
        .map(|(_, e, _)| {
            let after = e.at().duration_since(stopping).unwrap_or_default();
            format!("+{} {} {} {}", millis(after), e.kind, e.action, e.attribute("name").unwrap_or_default())
        })
        .collect();
    drop(recorder);
    dockerd.start_daemon();
    let restarted = Instant::now();
    assert!(follower.wait_until(Duration::from_secs(30), |b, s| *s == DockerState::Following && b.is_current()));
    let resumed = restarted.elapsed();
    assert!(follower.with_book(|b| b.revision()) > events_before_restart);
    assert_eq!(follower.who(v4, SystemTime::now()), None, "second did not survive the restart");
    assert_eq!(follower.who(v4, start2 + Duration::from_millis(1)).map(|w| w.name).as_deref(), Some("second"));
    // Events flow again after the rebuild.
    dockerd.docker(&[&run[..], &["--name", "third", "egprobe", "sleep", "600"]].concat());
    assert!(follower.wait_until(Duration::from_secs(10), held_by("third")));

    // What was seen, for the report.
    println!("book knew `first` {} after `docker run` returned", millis(first_known));
    println!(
        "stopping dockerd took {}; events during it: {during_shutdown:#?}",
        millis(stopped.duration_since(stopping).unwrap())
    );
    let closed = second_until
        .map(|t| t.duration_since(stopping).map(millis).unwrap_or_else(|e| format!("-{}", millis(e.duration()))));
    println!("second's interval closed at +{closed:?}; then: {unavailable}");
    println!("following again {} after dockerd was answering again", millis(resumed));
    follower.stop();
}

/// The order and delay of events around `docker run`, `network connect` and `rm -f`.
#[test]
#[ignore = "needs root, dockerd and busybox-static: run with --ignored"]
fn event_order_and_delay_of_a_real_dockerd() {
    harness::require_kernel!();
    let dockerd = PrivateDockerd::start(r#"{"storage-driver":"vfs"}"#);
    dockerd.docker(&["network", "create", "egnet"]);
    let recorder = Recorder::start(dockerd.client());
    dockerd.docker(&["run", "-d", "--name", "web", "egprobe", "sleep", "600"]);
    dockerd.docker(&["network", "connect", "egnet", "web"]);
    dockerd.docker(&["rm", "-f", "web"]);
    std::thread::sleep(Duration::from_millis(500));
    let events = recorder.events();
    let order: Vec<String> = events.iter().map(|(_, e, _)| format!("{} {}", e.kind, e.action)).collect();
    assert_eq!(
        order,
        [
            "container create",
            "network connect",
            "container start",
            "network connect",
            "container kill",
            "container die",
            "network disconnect",
            "network disconnect",
            "container destroy"
        ]
    );
    let t0 = events[0].1.at();
    for (received, event, inspect) in &events {
        let delay = received.duration_since(event.at()).unwrap_or_default();
        let name = event.attribute("name").unwrap_or_default();
        let since = event.at().duration_since(t0).unwrap_or_default();
        println!(
            "+{:>9} {} {} {name}: received {} later{}",
            millis(since),
            event.kind,
            event.action,
            millis(delay),
            inspect.as_ref().map(|i| format!("; inspect at once: {i}")).unwrap_or_default()
        );
    }
    // The first connect comes before start. An inspect sent at once has the address, but only
    // because it waits until the start is done (see docs/docker-events.md): it prints when.
    let first_connect = events[1].2.as_deref().unwrap_or_default();
    assert!(first_connect.contains("172.17.0.2"), "{first_connect}");
}
