//! Helper programs run with captured output and a time limit, so no task can hang forever.

use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, Once};
use std::thread;
use std::time::{Duration, Instant};

/// Longer than any single `ip`, `iptables`, `nft` or egress-guard run should ever take.
const LIMIT: Duration = Duration::from_secs(30);

/// Children being waited for, with their start: one watchdog thread for all of them keeps the
/// cost per run to a lock, which matters when the run is what `bench` times.
static RUNNING: Mutex<Vec<(u32, Instant)>> = Mutex::new(Vec::new());

/// Runs `command` with captured output: its stdout on success, else an error with its stderr.
/// A child still running after [`LIMIT`] is killed.
pub fn run_quiet(command: &mut Command) -> Result<String, String> {
    start_watchdog();
    let start = Instant::now();
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let pid = child.id();
    running().push((pid, start));
    let output = child.wait_with_output();
    running().retain(|(running, _)| *running != pid);
    let output = output.map_err(|e| format!("waiting for {command:?}: {e}"))?;
    if !output.status.success() {
        let killed = if start.elapsed() >= LIMIT { ", killed after the time limit" } else { "" };
        return Err(format!(
            "{command:?} failed ({}{killed}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn running() -> MutexGuard<'static, Vec<(u32, Instant)>> {
    RUNNING.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn start_watchdog() {
    static START: Once = Once::new();
    START.call_once(|| {
        thread::spawn(watchdog);
    });
}

/// Kills every child past its limit. A listed pid is reaped only an instant before its waiter
/// unlists it, so the signal cannot reach another process that got the pid later.
fn watchdog() {
    loop {
        thread::sleep(Duration::from_millis(250));
        for (pid, start) in running().iter() {
            if start.elapsed() > LIMIT {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
            }
        }
    }
}
