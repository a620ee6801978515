//! Project tasks, run as `cargo xtask <task>`: `cargo xtask` alone lists them.

mod bench;
mod bench_log;
mod bench_sets;
mod child;
mod dist;
mod netns;
mod prereq;
mod tidy;

use std::env;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// Every task with a one-line description, in the order `cargo xtask` lists them.
const TASKS: &[(&str, &str)] = &[
    ("test", "install or name missing prerequisites, then run every test, kernel tests included (root)"),
    ("e2e", "the suite against a real dockerd in a namespace of its own (root; skips only without dockerd)"),
    ("ci", "exactly what CI runs: format and lint checks if installed, build, test, e2e, dist"),
    ("bench", "time apply/check next to `nft -f` and the iptables recipe, in fresh namespaces (root)"),
    ("dist", "target/dist: static binary (checked), man pages, completions, unit, sample config, tarball"),
];

/// What a task reports when it fails: the message, or nothing when cargo already said why.
pub type TaskResult = Result<(), Option<String>>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match task {
        "test" => test(rest),
        "e2e" => e2e(rest),
        "ci" => ci(),
        "bench" => bench::bench(rest),
        "dist" => dist::dist(),
        "help" | "-h" | "--help" => {
            print_tasks();
            Ok(())
        }
        other => Err(Some(format!("unknown task `{other}`; `cargo xtask` lists the tasks"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            if let Some(message) = message {
                eprintln!("xtask: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

fn print_tasks() {
    println!("usage: cargo xtask <task> [args]\n\ntasks:");
    for (name, about) in TASKS {
        println!("  {name:<6} {about}");
    }
    println!(
        "\n`cargo xtask test ARGS` and `cargo xtask e2e ARGS` pass ARGS to `cargo test` (e.g. a test name filter)."
    );
    println!("`cargo xtask bench sets` runs only the allow-list rows.");
}

/// Every test of the workspace with kernel tests forced on: one that cannot run fails instead
/// of skipping, so a green run means the namespace tests really ran.
fn test(args: &[String]) -> TaskResult {
    let totals = run_tests(args)?;
    println!("{totals}");
    Ok(())
}

fn run_tests(args: &[String]) -> Result<Totals, Option<String>> {
    prereq::check_for("test").map_err(Some)?;
    // --all-features: xtask's `docs` feature brings the dist-docs binary and its tests.
    let mut command = cargo(&["test", "--workspace", "--all-features"]);
    command.args(args);
    run_counted(command)
}

/// The end-to-end suite against a real dockerd: everything `test` needs and a little more. It
/// skips (one line) only where there is no dockerd binary at all; anywhere else a dockerd that
/// cannot start fails it.
fn e2e(args: &[String]) -> TaskResult {
    let totals = run_e2e(args)?;
    println!("{totals}");
    Ok(())
}

fn run_e2e(args: &[String]) -> Result<Totals, Option<String>> {
    if prereq::dockerd().is_none() {
        println!("e2e: skipped, no `dockerd` binary on PATH (apt-get install -y docker.io to run it)");
        return Ok(Totals::default());
    }
    prereq::check_for("e2e").map_err(Some)?;
    let mut command = cargo(&["test", "--package", "egress-guard", "--test", "e2e"]);
    command.args(args);
    run_counted(command)
}

/// Runs a `cargo test` command, echoing its output, and adds up its "test result" lines: cargo
/// prints one per test binary, and a reader (or CI) wants one closing line for the whole run.
fn run_counted(mut command: Command) -> Result<Totals, Option<String>> {
    // The binary under test keeps its state files (pending confirmations, history) in the
    // build tree, not in /run and /var/lib of the machine running the tests.
    let state = workspace_root().join("target/tmp/state");
    command.env("EG_RUN_DIR", state.join("run")).env("EG_STATE_DIR", state.join("lib"));
    command.env("EG_KERNEL_TESTS", "1").stdout(Stdio::piped());
    let mut child = command.spawn().map_err(|e| Some(format!("cannot run cargo test: {e}")))?;
    let mut totals = Totals::default();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            totals.add(&line);
        }
    }
    let status = child.wait().map_err(|e| Some(format!("cargo test: {e}")))?;
    if status.success() {
        Ok(totals)
    } else {
        println!("{totals}");
        Err(None)
    }
}

/// Passed and failed tests over every `test result:` line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
}

impl Totals {
    /// Counts `test result: ok. 76 passed; 0 failed; 0 ignored; …`.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else { return };
        let count = |word: &str| {
            rest.split(';')
                .find_map(|part| {
                    part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(word)
                })
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        self.passed += count(" passed");
        self.failed += count(" failed");
    }

    fn add_up(&mut self, other: Totals) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

/// CI: `.ci/run` calls this and nothing else, so a developer can reproduce CI exactly.
fn ci() -> TaskResult {
    // First, as everything below builds egress-guard (and as root installs what is missing).
    prereq::check_for("ci").map_err(Some)?;
    // Style and lints fail CI where the toolchain has them (a bare toolchain may lack both).
    if prereq::cargo_has("fmt") {
        run(cargo(&["fmt", "--all", "--check"]))?;
    }
    if prereq::cargo_has("clippy") {
        run(cargo(&["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"]))?;
        // `--all-targets` leaves out test targets marked `test = false`, as e2e is.
        run(cargo(&["clippy", "--package", "egress-guard", "--test", "e2e", "--", "-D", "warnings"]))?;
    }
    run(cargo(&["build", "--workspace", "--all-targets"]))?;
    let mut totals = run_tests(&[])?;
    // After the other tests: it is the slowest of them, and needs them to pass to mean much.
    totals.add_up(run_e2e(&[])?);
    // Last: the release build is the slowest step and the tests say more when they fail.
    dist::dist()?;
    println!("{totals}");
    Ok(())
}

/// The workspace root: xtask's parent directory.
fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// The cargo that runs us (`$CARGO`), so toolchain overrides carry through.
pub fn cargo(args: &[&str]) -> Command {
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.args(args);
    command
}

/// Runs `command` with our stdio; a failure needs no message of ours, cargo printed it.
pub fn run(mut command: Command) -> TaskResult {
    let status = command.status().map_err(|e| Some(format!("cannot run {command:?}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(None)
    }
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn totals_add_up_cargo_result_lines() {
        let mut t = Totals::default();
        t.add("test result: ok. 76 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.13s");
        t.add("test result: FAILED. 42 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 24.08s");
        t.add("running 3 tests");
        assert_eq!(t.to_string(), "118 passed, 1 failed");
    }
}
