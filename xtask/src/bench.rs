//! `cargo xtask bench`: wall time of whole processes (exec included) in fresh network namespaces,
//! egress-guard next to `nft -f` and the four-command iptables recipe. Speed targets live here,
//! never in timed tests, where a busy machine would make them flaky.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::run_quiet;
use crate::netns::Netns;
use crate::TaskResult;

/// Each measurement stops after this many timed runs or this much time, whichever comes first.
const RUNS: usize = 150;
const BUDGET: Duration = Duration::from_secs(10);
/// Untimed runs first: page cache, the kernel's first nf_tables objects in a new namespace.
const WARMUP: usize = 3;

/// The measurements the ratio columns divide by.
const NFT: &str = "nft -f: flush chain + add 2 rules";
const RECIPE: &str = "recipe: 4 iptables processes";

/// What a measurement's steps get.
struct Ctx<'a> {
    binary: &'a Path,
    netns: &'a str,
    nft_file: &'a Path,
}

/// One named measurement, run in its own fresh namespace where DOCKER-USER exists in ip and
/// ip6 and FORWARD jumps to it (what dockerd with iptables-nft leaves).
struct Bench {
    name: &'static str,
    /// Untimed, once: from the fresh namespace to the state the runs start from.
    prepare: fn(&Ctx) -> Result<(), String>,
    /// Untimed, before run `i`.
    before: fn(&Ctx, usize) -> Result<(), String>,
    /// Timed: run `i`.
    run: fn(&Ctx, usize) -> Result<(), String>,
    /// DESIGN's aim for the median, as a fraction of `nft -f`'s median.
    aim: Option<f64>,
}

/// Every measurement, in table order. To add one, add an entry (a table-target row would pass
/// `--target table` to [`Ctx::guard`]).
const BENCHES: &[Bench] = &[
    Bench {
        name: "egress-guard --version (exec floor)",
        prepare: |_| Ok(()),
        before: |_, _| Ok(()),
        run: |ctx, _| run_quiet(Command::new(ctx.binary).arg("--version")).map(drop),
        aim: None,
    },
    Bench {
        name: "apply, steady (in place: no batch)",
        prepare: |ctx| ctx.guard(&["apply"]).map(drop),
        before: |_, _| Ok(()),
        run: |ctx, _| ctx.guard_expect(&["apply"], "already in place"),
        aim: Some(0.1),
    },
    Bench {
        name: "check, steady",
        prepare: |ctx| ctx.guard(&["apply"]).map(drop),
        before: |_, _| Ok(()),
        run: |ctx, _| ctx.guard(&["check"]).map(drop),
        aim: Some(0.1),
    },
    Bench {
        name: NFT,
        prepare: |ctx| fs::write(ctx.nft_file, NFT_FILE).map_err(|e| e.to_string()),
        before: |_, _| Ok(()),
        run: |ctx, _| run_quiet(Command::new("nft").arg("-f").arg(ctx.nft_file)).map(drop),
        aim: None,
    },
    Bench { name: RECIPE, prepare: |_| Ok(()), before: |_, _| Ok(()), run: |_, _| recipe(), aim: None },
    Bench {
        name: "apply, change --reject-with (deletes)",
        prepare: |ctx| ctx.guard(&["apply"]).map(drop),
        before: |_, _| Ok(()),
        // Alternates so that every run replaces all four rules.
        run: |ctx, i| {
            let how = ["admin-prohibited", "port-unreachable"][i % 2];
            ctx.guard_expect(&["apply", "--reject-with", how], "did write")
        },
        // Bounded by the kernel, not by us: after a batch that deleted rules, closing the netlink
        // socket waits until nf_tables has freed them (an RCU grace period, 10-30 ms on the
        // development VM), although the new rules are live about 1 ms after exec.
        aim: None,
    },
    Bench {
        name: "table apply, 10 destinations",
        prepare: |ctx| allow_config(ctx, 10).map(drop),
        before: |ctx, _| ctx.guard(&["remove", "--target", "table"]).map(drop),
        run: |ctx, _| ctx.guard_expect(&["apply", "--config", &allow_config_path(ctx, 10)], "did write"),
        aim: None,
    },
    Bench {
        name: "table apply, 10,000 destinations",
        prepare: |ctx| allow_config(ctx, 10_000).map(drop),
        before: |ctx, _| ctx.guard(&["remove", "--target", "table"]).map(drop),
        // One batch: the table, its chain, the set and 20,000 interval elements.
        run: |ctx, _| ctx.guard_expect(&["apply", "--config", &allow_config_path(ctx, 10_000)], "did write"),
        aim: None,
    },
    Bench {
        name: "table apply, 10,000 destinations, steady",
        prepare: |ctx| ctx.guard(&["apply", "--config", &allow_config(ctx, 10_000)?]).map(drop),
        before: |_, _| Ok(()),
        // Reads the table back, 20,000 set elements included, and sends nothing.
        run: |ctx, _| ctx.guard_expect(&["apply", "--config", &allow_config_path(ctx, 10_000)], "already in place"),
        aim: None,
    },
    Bench {
        name: "apply, heal after iptables -F (adds only)",
        prepare: |ctx| ctx.guard(&["apply"]).map(drop),
        before: |_, _| {
            ipt("iptables", &["-F", "DOCKER-USER"])?;
            ipt("ip6tables", &["-F", "DOCKER-USER"])
        },
        run: |ctx, _| ctx.guard_expect(&["apply"], "did write"),
        aim: Some(0.1),
    },
];

/// The change `nft -f` makes in its row: flush DOCKER-USER and re-add the two default rules (in
/// native syntax: it is the tool people reach for instead).
const NFT_FILE: &str = r#"flush chain ip filter DOCKER-USER
add rule ip filter DOCKER-USER iifname "docker0" oifname != "docker0" ct state & (related | established) == 0 counter reject with icmp type port-unreachable
add rule ip filter DOCKER-USER iifname "br-*" oifname != "br-*" ct state & (related | established) == 0 counter reject with icmp type port-unreachable
"#;

impl Ctx<'_> {
    /// `egress-guard ARGS… --netns NS`, which must succeed; its stdout.
    fn guard(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new(self.binary);
        command.args(args).args(["--netns", self.netns]);
        run_quiet(&mut command)
    }

    /// [`Ctx::guard`], and its stdout must say `expected`: proves the run took the path the
    /// row is named after (no batch, or a real one).
    fn guard_expect(&self, args: &[&str], expected: &str) -> Result<(), String> {
        let stdout = self.guard(args)?;
        if stdout.contains(expected) {
            return Ok(());
        }
        Err(format!("`egress-guard {}` did not print {expected:?}:\n{stdout}", args.join(" ")))
    }
}

/// Where the table-target rows keep a config allowing `n` destinations.
fn allow_config_path(ctx: &Ctx, n: usize) -> String {
    ctx.nft_file.with_file_name(format!("allow-{n}.toml")).to_string_lossy().into_owned()
}

/// Writes a config for the table target allowing `n` single addresses in 10.0.0.0/8, none
/// adjacent (so the set holds `n` intervals); returns its path.
fn allow_config(ctx: &Ctx, n: usize) -> Result<String, String> {
    let addrs: Vec<String> =
        (1..=n as u32).map(|i| 2 * i).map(|v| format!("\"10.{}.{}.{}\"", v >> 16, (v >> 8) & 0xff, v & 0xff)).collect();
    let path = allow_config_path(ctx, n);
    let text = format!("target = \"table\"\nallow = [{}]\n", addrs.join(", "));
    fs::write(&path, text).map_err(|e| format!("{path}: {e}"))?;
    Ok(path)
}

/// The classic recipe from DESIGN, as four processes.
fn recipe() -> Result<(), String> {
    ipt("iptables", &["-F", "DOCKER-USER"])?;
    ipt("iptables", &["-A", "DOCKER-USER", "-m", "state", "--state", "RELATED,ESTABLISHED", "-j", "RETURN"])?;
    ipt("iptables", &["-A", "DOCKER-USER", "-s", "172.16.0.0/12", "-j", "REJECT"])?;
    ipt("iptables", &["-A", "DOCKER-USER", "-j", "RETURN"])
}

/// Runs `iptables`/`ip6tables` in the namespace of the calling thread (see [`Netns::run_inside`]).
fn ipt(tool: &str, args: &[&str]) -> Result<(), String> {
    run_quiet(Command::new(tool).args(args)).map(drop)
}

/// Builds the static release binary, runs every measurement and prints the table; with `sets`,
/// only the allow-list rows (`bench_sets`).
pub fn bench(args: &[String]) -> TaskResult {
    crate::prereq::check_for("bench").map_err(Some)?;
    let binary = crate::dist::build()?;
    let nft_file = crate::dist::target_dir().join("bench/flush-readd.nft");
    fs::create_dir_all(nft_file.parent().unwrap_or(Path::new("."))).map_err(|e| Some(e.to_string()))?;
    match args {
        [] => {}
        [only] if only == "sets" => {
            return crate::bench_sets::sets(&binary, nft_file.parent().unwrap_or(Path::new("."))).map_err(Some);
        }
        _ => return Err(Some(format!("bench takes no arguments but `sets`, not {args:?}"))),
    }
    print_context();
    let mut rows = Vec::new();
    for bench in BENCHES {
        eprint!("bench: {} …", bench.name);
        let result = measure_fresh(bench, &binary, &nft_file);
        eprintln!(" {}", result.as_ref().map_or("failed", |_| "done"));
        rows.push((bench, result));
    }
    print_table(&rows);
    print_aims(&rows);
    let audit = nflog();
    if let Err(e) = &audit {
        println!("\nnflog reader: failed: {e}");
    }
    let dns = dns();
    if let Err(e) = &dns {
        println!("\ndns forwarder: failed: {e}");
    }
    let dns_watch = dns_watch(&binary);
    if let Err(e) = &dns_watch {
        println!("\ndns through watch: failed: {e}");
    }
    let heal = heal(&binary);
    if let Err(e) = &heal {
        println!("\nwatch's heal: failed: {e}");
    }
    let log = crate::bench_log::log_floods(&binary, nft_file.parent().unwrap_or(Path::new(".")));
    if let Err(e) = &log {
        println!("\nlog flood: failed: {e}");
    }
    let sets = crate::bench_sets::sets(&binary, nft_file.parent().unwrap_or(Path::new(".")));
    if let Err(e) = &sets {
        println!("\nallow-lists in sets: failed: {e}");
    }
    let failed = [audit.is_err(), dns.is_err(), dns_watch.is_err(), heal.is_err(), log.is_err(), sets.is_err()];
    if rows.iter().any(|(_, result)| result.is_err()) || failed.contains(&true) {
        return Err(Some("some measurements failed (see above)".to_owned()));
    }
    Ok(())
}

/// The audit trail's NFLOG reader, in a namespace of its own: time to decode a message, and
/// the loopback flood it keeps up with (examples/nflog_bench.rs prints its own lines).
fn nflog() -> Result<(), String> {
    let example = crate::dist::build_example("nflog_bench").map_err(|e| e.unwrap_or_else(|| "build failed".into()))?;
    let netns = Netns::create("eg-bench-nflog")?;
    print!("\n{}", netns.exec(&[&example.to_string_lossy()])?);
    Ok(())
}

/// The DNS forwarder, in a namespace of its own with dnsmasq as its upstream: the latency it
/// adds to a lookup and its lookups per second on one core (examples/dns_bench.rs).
fn dns() -> Result<(), String> {
    let example = crate::dist::build_example("dns_bench").map_err(|e| e.unwrap_or_else(|| "build failed".into()))?;
    let netns = Netns::create("eg-bench-dns")?;
    print!("\n{}", netns.exec(&[&example.to_string_lossy()])?);
    Ok(())
}

/// A container's lookup through `watch --allow-domain` (the redirect, watch's forwarder, the
/// grant) next to the same lookup straight to dnsmasq, and watch's lookups per second on one
/// core (examples/dns_watch_bench.rs; it makes the container's and dnsmasq's namespaces).
fn dns_watch(binary: &Path) -> Result<(), String> {
    let example =
        crate::dist::build_example("dns_watch_bench").map_err(|e| e.unwrap_or_else(|| "build failed".into()))?;
    let netns = Netns::create("eg-bench-dnsw")?;
    print!("\n{}", netns.exec(&[&example.to_string_lossy(), &binary.to_string_lossy()])?);
    Ok(())
}

/// `watch`'s heal after `iptables -F DOCKER-USER`, 200 times, from the kernel's event stream
/// (examples/heal_bench.rs). Its floor is the kernel's: a new xt match or target waits for the
/// destruction of the ones the flush deleted (nft_compat_wait_for_destructors, an RCU grace
/// period); native rules (the shield) are not held up, and guard meanwhile.
fn heal(binary: &Path) -> Result<(), String> {
    let example = crate::dist::build_example("heal_bench").map_err(|e| e.unwrap_or_else(|| "build failed".into()))?;
    let netns = Netns::create("eg-bench-heal")?;
    netns.docker_user(&["iptables", "ip6tables"])?;
    let state = crate::dist::target_dir().join("bench/state");
    let out = netns.exec_env(
        &[&example.to_string_lossy(), &binary.to_string_lossy()],
        &[("EG_RUN_DIR", &state), ("EG_STATE_DIR", &state)],
    )?;
    print!("\n{out}");
    Ok(())
}

/// One measurement in a namespace of its own, so no row inherits another's state.
fn measure_fresh(bench: &Bench, binary: &Path, nft_file: &Path) -> Result<Stats, String> {
    let netns = Netns::create("eg-bench")?;
    netns.docker_user(&["iptables", "ip6tables"])?;
    let ctx = Ctx { binary, netns: netns.name(), nft_file };
    netns.run_inside(|| measure(bench, &ctx))?
}

/// The timed runs, after the warm-up, bounded by [`RUNS`] and [`BUDGET`].
fn measure(bench: &Bench, ctx: &Ctx) -> Result<Stats, String> {
    (bench.prepare)(ctx)?;
    let mut samples = Vec::with_capacity(RUNS);
    let start = Instant::now();
    for i in 0.. {
        if samples.len() == RUNS || (i > WARMUP && start.elapsed() > BUDGET) {
            break;
        }
        (bench.before)(ctx, i)?;
        let run_start = Instant::now();
        (bench.run)(ctx, i)?;
        if i >= WARMUP {
            samples.push(run_start.elapsed());
        }
    }
    Ok(Stats::of(samples))
}

struct Stats {
    runs: usize,
    median: Duration,
    p90: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Stats {
        samples.sort();
        let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
        Stats { runs: samples.len(), median: at(0.5), p90: at(0.9) }
    }
}

/// What the numbers depend on, so a table can be compared with another machine's.
fn print_context() {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let version = |tool: &str| {
        let output = Command::new(tool).arg("--version").stderr(Stdio::null()).output();
        output.map_or(String::new(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    println!(
        "\nkernel {}, {cpus} CPUs, {}, {}; wall time of whole processes, at most {RUNS} runs or {}s each\n",
        kernel.trim(),
        version("nft"),
        version("iptables"),
        BUDGET.as_secs()
    );
}

/// A measurement with its outcome.
type Row = (&'static Bench, Result<Stats, String>);

/// The median of the measurement named `name`, when it succeeded.
fn median_of(rows: &[Row], name: &str) -> Option<Duration> {
    rows.iter()
        .find(|(bench, _)| bench.name == name)
        .and_then(|(_, result)| result.as_ref().ok())
        .map(|stats| stats.median)
}

fn print_table(rows: &[Row]) {
    let (nft, recipe) = (median_of(rows, NFT), median_of(rows, RECIPE));
    println!("{:<42} {:>5} {:>9} {:>9} {:>9} {:>9}", "measurement", "runs", "median", "p90", "/ nft -f", "/ recipe");
    for (bench, result) in rows {
        let name = bench.name;
        match result {
            Ok(stats) => println!(
                "{name:<42} {:>5} {:>9} {:>9} {:>9} {:>9}",
                stats.runs,
                ms(stats.median),
                ms(stats.p90),
                ratio(stats.median, nft),
                ratio(stats.median, recipe)
            ),
            Err(e) => println!("{name:<42} failed: {e}"),
        }
    }
}

/// DESIGN's aims, each with its verdict. They inform and do not fail the task: a loaded
/// machine is not a regression.
fn print_aims(rows: &[Row]) {
    let Some(nft) = median_of(rows, NFT) else {
        return;
    };
    println!();
    for (bench, result) in rows {
        let (Some(aim), Ok(stats)) = (bench.aim, result) else {
            continue;
        };
        let met = stats.median.as_secs_f64() <= aim * nft.as_secs_f64();
        println!(
            "aim: {} <= {aim} x nft -f ({}): {} -> {}",
            bench.name,
            ms(nft),
            ms(stats.median),
            if met { "met" } else { "missed" }
        );
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

fn ratio(median: Duration, base: Option<Duration>) -> String {
    base.map_or("-".to_owned(), |base| format!("{:.3}", median.as_secs_f64() / base.as_secs_f64()))
}
