//! A bounded flood of new TCP connections from one namespace, to measure how many get through
//! while something (say, a guard being re-applied) happens at the same time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::addrs::is_test_destination;
use super::netns::Netns;
use super::probe::{Closed, Outcome, Probe, DEFAULT_TIMEOUT};

/// Upper bounds: a flood is a measurement, never a load test.
pub const MAX_RATE: u32 = 1000;
pub const MAX_DURATION: Duration = Duration::from_secs(10);

/// `rate` new TCP connections per second for `duration`, each one a full line exchange that
/// gives up after `attempt_timeout` (default: a probe's, long enough to tell an ICMP-rejected
/// SYN from a dropped one). At most rate × attempt_timeout attempts are in flight.
#[derive(Clone, Copy, Debug)]
pub struct Flood {
    pub rate: u32,
    pub duration: Duration,
    pub attempt_timeout: Duration,
}

/// What a flood saw. `through` counts attempts that completed the exchange; `through_at` says
/// when each of them started (from the flood's start), to tell which moment of a change leaked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FloodReport {
    pub attempts: u32,
    pub through: u32,
    pub refused: u32,
    pub unreachable: u32,
    pub timeout: u32,
    pub other: u32,
    pub elapsed: Duration,
    pub through_at: Vec<Duration>,
}

/// A flood in progress; [`FloodRun::wait`] returns its report.
pub struct FloodRun {
    driver: JoinHandle<FloodReport>,
}

impl Flood {
    /// Panics unless `1 ≤ rate ≤ 1000` and `duration ≤ 10 s`.
    pub fn new(rate: u32, duration: Duration) -> Flood {
        assert!((1..=MAX_RATE).contains(&rate), "flood rate {rate}/s is outside 1..={MAX_RATE}");
        assert!(duration <= MAX_DURATION, "flood of {duration:?} is longer than {MAX_DURATION:?}");
        Flood { rate, duration, attempt_timeout: DEFAULT_TIMEOUT }
    }

    /// Starts flooding `to` from inside `from` and returns at once.
    pub fn start(self, from: &Netns, to: SocketAddr) -> FloodRun {
        assert!(is_test_destination(to.ip()), "flood to {to}: not an address of the test network");
        FloodRun { driver: from.spawn(move || self.drive(to)) }
    }

    /// Floods and waits for the report.
    pub fn run(self, from: &Netns, to: SocketAddr) -> FloodReport {
        self.start(from, to).wait()
    }

    /// Paces attempts on a fixed schedule (so a slow attempt never delays the next), one small
    /// thread each; threads spawned here inherit this thread's namespace.
    fn drive(self, to: SocketAddr) -> FloodReport {
        let report = Arc::new(Mutex::new(FloodReport::default()));
        let total = (u128::from(self.rate) * self.duration.as_millis() / 1000) as u32;
        let interval = Duration::from_secs(1) / self.rate;
        let probe = Probe::tcp(to).timeout(self.attempt_timeout);
        let start = Instant::now();
        let mut attempts = Vec::with_capacity(total as usize);
        for i in 0..total {
            sleep_until(start + interval * i);
            let report = Arc::clone(&report);
            let attempt = std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || tally(&report, start.elapsed(), probe.run_here()));
            attempts.push(attempt.expect("spawn a flood attempt"));
        }
        for attempt in attempts {
            let _ = attempt.join();
        }
        let mut report = report.lock().expect("flood report").clone();
        report.elapsed = start.elapsed();
        report.through_at.sort();
        report
    }
}

impl FloodRun {
    pub fn wait(self) -> FloodReport {
        self.driver.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

fn tally(report: &Mutex<FloodReport>, began: Duration, outcome: Outcome) {
    let mut report = report.lock().expect("flood report");
    report.attempts += 1;
    match outcome {
        Outcome::Open => {
            report.through += 1;
            report.through_at.push(began);
        }
        Outcome::Closed(Closed::Refused) => report.refused += 1,
        Outcome::Closed(Closed::Unreachable) => report.unreachable += 1,
        Outcome::Closed(Closed::Timeout) => report.timeout += 1,
        Outcome::Closed(_) => report.other += 1,
    }
}

fn sleep_until(deadline: Instant) {
    if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}
