//! A running `egress-guard log ARGS… --netns NS`: its stdout and stderr gathered line by line
//! as they come, its JSON lines parsed, stopped by SIGTERM (so it flushes what it holds) or
//! killed when dropped (also when the test fails).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

type Lines = Arc<Mutex<Vec<String>>>;

pub struct LogRun {
    child: Child,
    stdout: Lines,
    stderr: Lines,
    readers: Vec<JoinHandle<()>>,
}

/// What a stopped `log` left.
pub struct Stopped {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
    /// Its user and system CPU time until it was stopped.
    pub cpu: Duration,
}

impl Stopped {
    /// Every stdout line as JSON; panics on one that is not.
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.stdout.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
    }
}

impl LogRun {
    /// Starts `egress-guard log ARGS… --netns NETNS` and waits (up to 10 s) until it has bound
    /// its group, which it says on stderr.
    pub fn start(netns: &str, args: &[&str]) -> LogRun {
        let mut child = Command::new(env!("CARGO_BIN_EXE_egress-guard"))
            .arg("log")
            .args(args)
            .args(["--netns", netns])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start egress-guard log");
        let (stdout, stderr) = (Lines::default(), Lines::default());
        let readers = vec![
            gather(child.stdout.take().expect("piped stdout"), Arc::clone(&stdout)),
            gather(child.stderr.take().expect("piped stderr"), Arc::clone(&stderr)),
        ];
        let mut run = LogRun { child, stdout, stderr, readers };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !run.stderr().iter().any(|l| l.contains("reading nflog group")) {
            if let Ok(Some(status)) = run.child.try_wait() {
                panic!("egress-guard log exited at start ({status}): {:?}", run.stderr());
            }
            assert!(Instant::now() < deadline, "egress-guard log did not start: {:?}", run.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
        run
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout lines").clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().expect("stderr lines").clone()
    }

    /// Polls stdout's JSON lines every 20 ms until `done` holds, for up to `timeout`; returns
    /// whether it did.
    pub fn wait_for(&self, timeout: Duration, mut done: impl FnMut(&[serde_json::Value]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let json: Vec<serde_json::Value> =
                self.stdout().iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
            if done(&json) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its CPU time so far (utime + stime in /proc/PID/stat, in clock ticks of 1/100 s).
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
        // utime and stime are fields 14 and 15 of the line; `rest` starts at field 3.
        let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
        Duration::from_millis(ticks * 10)
    }

    /// SIGTERM, then waits (up to 10 s) for it to flush and exit.
    pub fn stop(mut self) -> Stopped {
        let cpu = self.cpu();
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("egress-guard log ignored SIGTERM for 10 s: {:?}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Stopped { status, stdout: self.stdout(), stderr: self.stderr(), cpu }
    }
}

impl Drop for LogRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gather(pipe: impl std::io::Read + Send + 'static, into: Lines) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            into.lock().expect("lines").push(line);
        }
    })
}
