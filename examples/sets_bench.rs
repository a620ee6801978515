//! `cargo xtask bench` runs this in a fresh network namespace: where a steady `apply` of a long
//! allow-list spends its time, phase by phase, inside one process (no exec): reading the
//! config file (TOML and each value's check), resolving the policy, planning our table (every
//! element and the digest), reading the kernel's table without elements (what a steady apply
//! reads), dumping every element (what `check` reads), the snapshot every `apply` takes for
//! `rollback` before it knows whether it will write, and the whole steady sync (read, plan,
//! compare; nothing sent). 10,000 and 100,000 single addresses, none adjacent.
//!
//! `sets_bench measure PROGRAM ARGS…` runs PROGRAM once and prints `measured WALL_NS
//! MAX_RSS_KIB` and then PROGRAM's output: the bench's timed runs go through it, because a
//! child's peak memory (getrusage's ru_maxrss) counts the memory its parent had when it was
//! spawned, and this small static process has little.
//!
//! Usage: sets_bench | sets_bench measure PROGRAM ARGS…

use std::process::ExitCode;
use std::time::{Duration, Instant};

use egress_guard::backend::table::{self, TableState, GUARD};
use egress_guard::backend::Target;
use egress_guard::net::Family;
use egress_guard::nft::socket::Netlink;
use egress_guard::transact;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(("measure", command)) = args.split_first().map(|(a, rest)| (a.as_str(), rest)) {
        return measure(command);
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sets_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `command` (program and arguments) once: its wall time from spawn to reaping and its
/// peak memory, then its stdout; its stderr and exit status when it fails.
fn measure(command: &[String]) -> ExitCode {
    use std::io::Write;
    let Some((program, args)) = command.split_first() else {
        eprintln!("sets_bench: measure what?");
        return ExitCode::FAILURE;
    };
    let start = Instant::now();
    let output = std::process::Command::new(program).args(args).stdin(std::process::Stdio::null()).output();
    let wall = start.elapsed();
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sets_bench: cannot run {program}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !output.status.success() {
        eprintln!("sets_bench: {program} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
        return ExitCode::FAILURE;
    }
    // The only child there was: the children's peak is its peak.
    let rss = match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN) {
        Ok(usage) => usage.max_rss(),
        Err(e) => {
            eprintln!("sets_bench: getrusage: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "measured {} {rss}", wall.as_nanos()).and_then(|()| out.write_all(&output.stdout));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// The config a user with `n` allowed addresses writes: one `allow = [...]` line.
fn config(n: u32) -> String {
    let addrs: Vec<String> =
        (1..=n).map(|i| 2 * i).map(|v| format!("\"10.{}.{}.{}\"", v >> 16, (v >> 8) & 0xff, v & 0xff)).collect();
    format!("target = \"table\"\nallow = [{}]\n", addrs.join(", "))
}

/// The median of the timings of `f` after a first untimed run (`runs` in all; one run is
/// timed), and its last result.
fn time<T>(runs: usize, mut f: impl FnMut() -> Result<T, String>) -> Result<(Duration, T), String> {
    let mut samples = Vec::new();
    let start = Instant::now();
    let mut last = f()?;
    if runs == 1 {
        return Ok((start.elapsed(), last));
    }
    for _ in 1..runs {
        let start = Instant::now();
        let result = f()?;
        samples.push(start.elapsed());
        // The previous result is freed outside the timing: 200,000 elements take a while.
        drop(std::mem::replace(&mut last, result));
    }
    samples.sort();
    Ok((samples[samples.len() / 2], last))
}

fn ms(d: Duration) -> String {
    format!("{:>9.2} ms", d.as_secs_f64() * 1e3)
}

fn run() -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    println!("where a steady apply's time goes, in one process (median of up to 21 runs):");
    println!("{:<58} {:>12} {:>12}", "phase", "10,000", "100,000");
    let mut rows: Vec<(&str, Vec<Duration>)> = Vec::new();
    let mut add = |name: &'static str, d: Duration| match rows.iter_mut().find(|(n, _)| *n == name) {
        Some((_, v)) => v.push(d),
        None => rows.push((name, vec![d])),
    };
    for n in [10_000u32, 100_000] {
        // The 100,000 rows run few times: some phases take seconds there.
        let runs = if n == 10_000 { 21 } else { 3 };
        let text = config(n);
        // Once at 100,000: it takes seconds there (the file's line/column bookkeeping).
        let parse_runs = if n == 10_000 { runs } else { 1 };
        let (d, parsed) = time(parse_runs, || egress_guard::config::parse("bench.toml", &text).map_err(|x| e(&x)))?;
        add("read the config file (TOML, each value checked)", d);
        let (d, policy) = time(runs, || parsed.policy.resolve().map_err(|x| e(&x)))?;
        add("resolve the policy", d);
        let (d, plan) = time(runs, || Ok(table::plan(&policy, &Family::ALL, GUARD)))?;
        add("plan the table (elements, digest)", d);
        let mut nl = Netlink::open().map_err(|x| e(&x))?;
        transact::apply(&mut nl, &policy, Target::Table, false, &[]).map_err(|x| e(&x))?;
        let (d, state) = time(runs, || TableState::read(&mut nl, GUARD).map_err(|x| e(&x)))?;
        add("read the table, no elements (a steady apply's read)", d);
        let names: Vec<String> = plan.sets.iter().map(|s| s.set.name.clone()).collect();
        let (d, _) = time(runs, || {
            let mut state = state.clone();
            state.load_elems(&mut nl, &names).map_err(|x| e(&x))
        })?;
        add("dump every element (what check reads)", d);
        let (d, _) = time(runs, || transact::snapshot(&mut nl).map_err(|x| e(&x)))?;
        add("snapshot for rollback (every apply takes one first)", d);
        let (d, outcome) =
            time(runs, || transact::apply(&mut nl, &policy, Target::Table, false, &[]).map_err(|x| e(&x)))?;
        if outcome.committed {
            return Err("the steady sync committed a batch".into());
        }
        add("steady sync (read, plan, compare; nothing sent)", d);
        transact::remove(&mut nl, Some(Target::Table)).map_err(|x| e(&x))?;
    }
    for (name, d) in rows {
        let cells: Vec<String> = d.iter().map(|d| ms(*d)).collect();
        println!("{name:<58} {}", cells.join(" "));
    }
    Ok(())
}
