//! `cargo xtask bench`, the allow-list rows (issue 13): the release binary in fresh network
//! namespaces holding DOCKER-USER, both backends, allow-lists of 10,000 and 100,000 single
//! addresses (none adjacent, so the sets hold that many intervals): the first apply, a steady
//! one, a one-entry change, each with its peak memory, next to `nft -f` loading the same set.
//! Then where a steady apply's time goes: `apply --dry-run` (which takes no snapshot for
//! rollback), `check` (which reads every element), and the phases inside one process
//! (examples/sets_bench.rs). The aims: a steady apply of 10,000 in 2 ms; 100,000 in well
//! under a second, in less than 64 MiB.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::child::run_quiet;
use crate::netns::Netns;

/// Each row stops after this many timed runs or this much time, but has at least [`MIN_RUNS`].
const RUNS: usize = 50;
const BUDGET: Duration = Duration::from_secs(15);
const MIN_RUNS: usize = 3;
/// One untimed run first (page cache, the namespace's first objects).
const WARMUP: usize = 1;
const SIZES: [usize; 2] = [10_000, 100_000];
const BACKENDS: [&str; 2] = ["docker-user", "table"];
/// The aims.
const STEADY_AIM: Duration = Duration::from_millis(2);
const FIRST_AIM: Duration = Duration::from_secs(1);
const RSS_AIM_KIB: u64 = 64 * 1024;

/// What a row's runs get.
struct Ctx<'a> {
    binary: &'a Path,
    /// examples/sets_bench.rs, which runs each timed command (see [`measured`]).
    launcher: &'a Path,
    netns: &'a str,
}

/// One timed run, as examples/sets_bench.rs saw it.
struct Measured {
    stdout: String,
    wall: Duration,
    max_rss_kib: u64,
}

impl Ctx<'_> {
    /// `PROGRAM ARGS…` run once by the launcher: it spawns it, so the child's peak memory is
    /// its own plus the little the launcher had, not plus ours (a child's ru_maxrss counts its
    /// parent's memory at the spawn), and it times it from spawn to reaping.
    fn measured(&self, program: &Path, args: &[&str]) -> Result<Measured, String> {
        let out = run_quiet(Command::new(self.launcher).arg("measure").arg(program).args(args))?;
        let (head, stdout) = out.split_once('\n').unwrap_or((&out, ""));
        let mut fields = head.strip_prefix("measured ").unwrap_or_default().split(' ').map(str::parse::<u64>);
        match (fields.next(), fields.next()) {
            (Some(Ok(ns)), Some(Ok(rss))) => {
                Ok(Measured { stdout: stdout.to_string(), wall: Duration::from_nanos(ns), max_rss_kib: rss })
            }
            _ => Err(format!("sets_bench measure said {head:?}")),
        }
    }

    /// `egress-guard ARGS… --netns NS`, timed, and its stdout must say `expected`.
    fn guard(&self, args: &[&str], expected: &str) -> Result<Measured, String> {
        let measured = self.measured(self.binary, &[args, &["--netns", self.netns]].concat())?;
        if !measured.stdout.contains(expected) {
            return Err(format!("`egress-guard {}` did not print {expected:?}:\n{}", args.join(" "), measured.stdout));
        }
        Ok(measured)
    }

    /// Untimed, must succeed.
    fn untimed(&self, args: &[&str]) -> Result<(), String> {
        run_quiet(Command::new(self.binary).args(args).args(["--netns", self.netns])).map(drop)
    }

    /// Another program's commit in the namespace (an empty table made and deleted), as dockerd
    /// or a firewall script makes them all the time: the next apply cannot take its shortcut.
    fn foreign_commit(&self) -> Result<(), String> {
        let netns = format!("/run/netns/{}", self.netns);
        let nft = |cmd: &str| run_quiet(Command::new("nsenter").arg(format!("--net={netns}")).args(["nft", cmd]));
        nft("add table ip eg_bench_other")?;
        nft("delete table ip eg_bench_other").map(drop)
    }
}

type Step<'a> = Box<dyn Fn(&Ctx, usize) -> Result<(), String> + Sync + 'a>;
type Run<'a> = Box<dyn Fn(&Ctx, usize) -> Result<Measured, String> + Sync + 'a>;

/// One measurement: untimed preparation once, an untimed step before each run, the timed run.
struct Bench<'a> {
    name: String,
    /// The `nft -f` row of the same size, for the ratio column.
    size: Option<usize>,
    prepare: Step<'a>,
    before: Step<'a>,
    run: Run<'a>,
}

struct Row {
    name: String,
    size: Option<usize>,
    result: Result<Stats, String>,
}

struct Stats {
    runs: usize,
    median: Duration,
    p99: Duration,
    max_rss_kib: u64,
}

/// The rows, the table, the aims and the phases; an error when any measurement failed.
pub fn sets(binary: &Path, dir: &Path) -> Result<(), String> {
    let launcher = crate::dist::build_example("sets_bench").map_err(|e| e.unwrap_or_else(|| "build failed".into()))?;
    let files = &Files::write(dir)?;
    let mut benches: Vec<Bench> = vec![Bench {
        name: "egress-guard --version (exec floor)".into(),
        size: None,
        prepare: Box::new(|_, _| Ok(())),
        before: Box::new(|_, _| Ok(())),
        run: Box::new(|ctx, _| ctx.measured(ctx.binary, &["--version"])),
    }];
    for n in SIZES {
        benches.push(Bench {
            name: format!("nft -f: flush set + add {} elements", thousands(n)),
            size: Some(n),
            prepare: Box::new(move |_, _| run_quiet(Command::new("nft").arg("-f").arg(&files.nft_table)).map(drop)),
            before: Box::new(|_, _| Ok(())),
            run: Box::new(move |ctx, _| ctx.measured(Path::new("nft"), &["-f", &files.nft_load(n)])),
        });
        for backend in BACKENDS {
            benches.extend(backend_rows(files, backend, n));
        }
    }
    println!("\nallow-lists in sets (issue 13): {}", context());
    let mut rows = Vec::new();
    for bench in &benches {
        eprint!("bench: {} …", bench.name);
        let result = measure_fresh(bench, binary, &launcher);
        eprintln!(" {}", result.as_ref().map_or("failed", |_| "done"));
        rows.push(Row { name: bench.name.clone(), size: bench.size, result });
    }
    print_table(&rows);
    print_aims(&rows);
    let phases = phases(&launcher);
    if let Err(e) = &phases {
        println!("\nsets_bench: failed: {e}");
    }
    if rows.iter().any(|r| r.result.is_err()) || phases.is_err() {
        return Err("some allow-list measurements failed (see above)".into());
    }
    Ok(())
}

/// The rows of one backend and size.
fn backend_rows<'a>(files: &'a Files, backend: &'static str, n: usize) -> Vec<Bench<'a>> {
    let label = |what: &str| format!("{backend}, {}: {what}", thousands(n));
    let base = move |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["apply".to_string(), "--target".into(), backend.into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let config = files.config(n, false);
    let plus_one = files.config(n, true);
    let apply = move |ctx: &Ctx, config: &str, expected: &str| {
        let args = base(&["--config", config]);
        ctx.guard(&args.iter().map(String::as_str).collect::<Vec<_>>(), expected)
    };
    let prepared = {
        let config = config.clone();
        move |ctx: &Ctx, _| apply(ctx, &config, "").map(drop)
    };
    let mut rows = vec![
        Bench {
            name: label("first apply"),
            size: Some(n),
            prepare: Box::new(|_, _| Ok(())),
            // The table and our rules gone: each run writes everything.
            before: Box::new(|ctx, _| ctx.untimed(&["remove"])),
            run: Box::new({
                let config = config.clone();
                move |ctx, _| apply(ctx, &config, "did write")
            }),
        },
        Bench {
            name: label("steady apply"),
            size: Some(n),
            prepare: Box::new(prepared.clone()),
            before: Box::new(|_, _| Ok(())),
            run: Box::new({
                let config = config.clone();
                move |ctx, _| steady(apply(ctx, &config, "already in place")?)
            }),
        },
        Bench {
            name: label("steady apply after another program's commit"),
            size: Some(n),
            prepare: Box::new(prepared.clone()),
            before: Box::new(|ctx, _| ctx.foreign_commit()),
            run: Box::new({
                let config = config.clone();
                move |ctx, _| steady(apply(ctx, &config, ": already in place")?)
            }),
        },
        Bench {
            name: label("one-entry change"),
            size: Some(n),
            prepare: Box::new(prepared.clone()),
            before: Box::new(|_, _| Ok(())),
            // Alternately one element added and deleted: each run is one small batch.
            run: Box::new({
                let (config, plus_one) = (config.clone(), plus_one.clone());
                move |ctx, i| apply(ctx, if i % 2 == 0 { &plus_one } else { &config }, "did write")
            }),
        },
    ];
    if n == SIZES[0] {
        rows.push(Bench {
            name: label("apply --dry-run, steady (no snapshot)"),
            size: Some(n),
            prepare: Box::new(prepared.clone()),
            before: Box::new(|_, _| Ok(())),
            run: Box::new({
                let args: Vec<String> = base(&["--dry-run", "--config"]).into_iter().chain([config.clone()]).collect();
                move |ctx, _| steady(ctx.guard(&args.iter().map(String::as_str).collect::<Vec<_>>(), "already")?)
            }),
        });
        rows.push(Bench {
            name: label("check, steady (every element)"),
            size: Some(n),
            prepare: Box::new(prepared),
            before: Box::new(|_, _| Ok(())),
            run: Box::new({
                let config = config.clone();
                move |ctx, _| ctx.guard(&["check", "--target", backend, "--config", &config], "in place")
            }),
        });
    }
    rows
}

/// A steady run wrote nothing anywhere.
fn steady(measured: Measured) -> Result<Measured, String> {
    if measured.stdout.contains("did write") || measured.stdout.contains("would write") {
        return Err(format!("not steady:\n{}", measured.stdout));
    }
    Ok(measured)
}

/// The files the rows read, written once.
struct Files {
    dir: PathBuf,
    /// `nft -f` input making the set its rows load.
    nft_table: PathBuf,
}

impl Files {
    fn write(dir: &Path) -> Result<Files, String> {
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
        };
        for n in SIZES {
            let addrs = addresses(n);
            let quoted: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
            write(&format!("sets-{n}.toml"), format!("allow = [{}]\n", quoted.join(", ")))?;
            // One more, far from the others: a one-element change.
            write(&format!("sets-{n}-plus-one.toml"), format!("allow = [{}, \"10.255.0.1\"]\n", quoted.join(", ")))?;
            write(
                &format!("sets-{n}.nft"),
                format!(
                    "flush set inet eg_bench allow4\nadd element inet eg_bench allow4 {{ {} }}\n",
                    addrs.join(", ")
                ),
            )?;
        }
        write("sets-table.nft", "table inet eg_bench { set allow4 { type ipv4_addr; flags interval; }; }\n".into())?;
        Ok(Files { dir: dir.to_path_buf(), nft_table: dir.join("sets-table.nft") })
    }

    fn config(&self, n: usize, plus_one: bool) -> String {
        let name = if plus_one { format!("sets-{n}-plus-one.toml") } else { format!("sets-{n}.toml") };
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn nft_load(&self, n: usize) -> String {
        self.dir.join(format!("sets-{n}.nft")).to_string_lossy().into_owned()
    }
}

/// `n` single addresses in 10.0.0.0/8, none adjacent to another.
fn addresses(n: usize) -> Vec<String> {
    (1..=n as u32).map(|i| 2 * i).map(|v| format!("10.{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff)).collect()
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One row in a namespace of its own, so no row inherits another's state.
fn measure_fresh(bench: &Bench, binary: &Path, launcher: &Path) -> Result<Stats, String> {
    let netns = Netns::create("eg-bench-sets")?;
    netns.docker_user(&["iptables", "ip6tables"])?;
    let ctx = Ctx { binary, launcher, netns: netns.name() };
    netns.run_inside(|| measure(bench, &ctx))?
}

fn measure(bench: &Bench, ctx: &Ctx) -> Result<Stats, String> {
    (bench.prepare)(ctx, 0)?;
    let (mut walls, mut rss) = (Vec::new(), 0);
    let start = Instant::now();
    for i in 0.. {
        let enough = walls.len() >= MIN_RUNS && start.elapsed() > BUDGET;
        if walls.len() == RUNS || enough {
            break;
        }
        (bench.before)(ctx, i)?;
        let measured = (bench.run)(ctx, i)?;
        if i >= WARMUP {
            walls.push(measured.wall);
            rss = rss.max(measured.max_rss_kib);
        }
    }
    walls.sort();
    let at = |q: f64| walls[((walls.len() as f64 * q).ceil() as usize).clamp(1, walls.len()) - 1];
    Ok(Stats { runs: walls.len(), median: at(0.5), p99: at(0.99), max_rss_kib: rss })
}

fn context() -> String {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let nft = run_quiet(Command::new("nft").arg("--version")).unwrap_or_default();
    format!(
        "kernel {}, {cpus} CPUs, {}; whole processes, at most {RUNS} runs or {} s per row (at least {MIN_RUNS})",
        kernel.trim(),
        nft.trim(),
        BUDGET.as_secs()
    )
}

/// The median of the `nft -f` row of size `n`.
fn nft_median(rows: &[Row], n: usize) -> Option<Duration> {
    let row = rows.iter().find(|r| r.size == Some(n) && r.name.starts_with("nft -f"))?;
    row.result.as_ref().ok().map(|s| s.median)
}

fn print_table(rows: &[Row]) {
    println!("{:<52} {:>5} {:>11} {:>11} {:>9} {:>8}", "measurement", "runs", "median", "p99", "peak RSS", "/ nft -f");
    for row in rows {
        match &row.result {
            Ok(s) => {
                let ratio = row
                    .size
                    .and_then(|n| nft_median(rows, n))
                    .map_or("-".into(), |nft| format!("{:.3}", s.median.as_secs_f64() / nft.as_secs_f64()));
                println!(
                    "{:<52} {:>5} {:>11} {:>11} {:>9} {:>8}",
                    row.name,
                    s.runs,
                    ms(s.median),
                    ms(s.p99),
                    mib(s.max_rss_kib),
                    ratio
                );
            }
            Err(e) => println!("{:<52} failed: {e}", row.name),
        }
    }
}

/// The aims, each with its verdict; they inform and do not fail the task (a loaded
/// machine is not a regression).
fn print_aims(rows: &[Row]) {
    println!();
    let verdict = |met: bool| if met { "met" } else { "missed" };
    for row in rows {
        let Ok(s) = &row.result else { continue };
        if row.name.ends_with(": steady apply") && row.size == Some(SIZES[0]) {
            let met = s.median <= STEADY_AIM;
            println!("aim: {} <= {}: {} -> {}", row.name, ms(STEADY_AIM), ms(s.median), verdict(met));
        }
        if row.name.ends_with(": first apply") && row.size == Some(SIZES[1]) {
            let met = s.median < FIRST_AIM;
            println!("aim: {} < {}: {} -> {}", row.name, ms(FIRST_AIM), ms(s.median), verdict(met));
        }
        if row.size == Some(SIZES[1]) && !row.name.starts_with("nft") {
            let met = s.max_rss_kib < RSS_AIM_KIB;
            println!("aim: {} peak RSS < {}: {} -> {}", row.name, mib(RSS_AIM_KIB), mib(s.max_rss_kib), verdict(met));
        }
    }
}

/// examples/sets_bench.rs in a namespace of its own: the phases of a steady apply.
fn phases(launcher: &Path) -> Result<(), String> {
    let netns = Netns::create("eg-bench-phases")?;
    print!("\n{}", netns.exec(&[&launcher.to_string_lossy()])?);
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
