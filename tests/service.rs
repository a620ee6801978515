//! `install-service` / `uninstall-service`: the unit they write is the generator's, mode 0644,
//! accepted by `systemd-analyze verify` without a warning; files that are not ours are never
//! replaced or deleted; bad usage exits 2 and missing permission 3, each with one line.
//!
//! Every test writes into a directory of its own (`EG_TEST_UNIT_DIR`, which also keeps
//! systemctl from being run), or into a tmpfs mounted over /etc/systemd/system in a private
//! mount namespace: the host's units are never touched.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use egress_guard::systemd::unit::{unit_text, UnitSpec, MARKER, NAME};

use crate::harness::require_kernel;

const BIN: &str = env!("CARGO_BIN_EXE_egress-guard");

/// A directory under cargo's target/tmp (not /tmp: the unit's PrivateTmp= refuses paths there),
/// removed on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("eg-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        TestDir(dir)
    }

    fn unit(&self) -> PathBuf {
        self.0.join(NAME)
    }

    /// Runs `egress-guard ARGS` with the unit directory redirected here.
    fn run(&self, args: &[&str]) -> Output {
        egress_guard(args, Some(&self.0))
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary with a restrictive umask, so the unit's 0644 is ours and not inherited, and
/// the unit directory redirected to `unit_dir` when given.
fn egress_guard(args: &[&str], unit_dir: Option<&Path>) -> Output {
    let mut command = Command::new("sh");
    command.args(["-c", r#"umask 077 && exec "$0" "$@""#, BIN]).args(args).env_remove("EG_TEST_UNIT_DIR");
    if let Some(dir) = unit_dir {
        command.env("EG_TEST_UNIT_DIR", dir);
    }
    command.output().unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit code `code` and exactly one stderr line, which mentions `needle`.
fn assert_fails(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}\nstdout: {}", stdout(out));
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
}

fn expected_unit(config: Option<&Path>) -> String {
    unit_text(&UnitSpec { binary: Path::new(BIN), config }).unwrap()
}

#[test]
fn install_writes_the_generated_unit_mode_0644_and_reinstall_updates_it() {
    let dir = TestDir::new("install");
    let out = dir.run(&["install-service", "--binary", BIN]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("wrote"), "{}", stdout(&out));
    assert!(stdout(&out).contains("systemctl is not run"), "{}", stdout(&out));
    assert_eq!(fs::read_to_string(dir.unit()).unwrap(), expected_unit(None));
    assert_eq!(fs::metadata(dir.unit()).unwrap().permissions().mode() & 0o7777, 0o644);

    // The same again changes nothing; with a config the unit passes it on.
    let out = dir.run(&["install-service", "--binary", BIN]);
    assert!(stdout(&out).contains("unchanged"), "{}", stdout(&out));
    let config = dir.0.join("site.toml");
    fs::write(&config, "allow = [\"198.51.100.53:53/udp\"]\n").unwrap();
    let out = dir.run(&["install-service", "--binary", BIN, "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("updated"), "{}", stdout(&out));
    let text = fs::read_to_string(dir.unit()).unwrap();
    assert_eq!(text, expected_unit(Some(&config)));
    assert!(text.contains(&format!("ExecStart={BIN} watch --config {}\n", config.display())), "{text}");
    // No temp file is left beside it.
    assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 2);
}

#[test]
fn uninstall_removes_our_unit_and_its_enable_links_and_nothing_else() {
    let dir = TestDir::new("uninstall");
    assert!(dir.run(&["install-service", "--binary", BIN]).status.success());
    // As an offline `systemctl enable` would have left them, and one link of someone else's.
    let wants = dir.0.join("multi-user.target.wants");
    fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(dir.unit(), wants.join(NAME)).unwrap();
    std::os::unix::fs::symlink("/lib/systemd/system/other.service", wants.join("other.service")).unwrap();

    let out = dir.run(&["uninstall-service"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("stay in place"), "{}", stdout(&out));
    assert!(!dir.unit().exists());
    assert!(fs::symlink_metadata(wants.join(NAME)).is_err());
    assert!(fs::symlink_metadata(wants.join("other.service")).is_ok());

    let out = dir.run(&["uninstall-service"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing to remove"), "{}", stdout(&out));
}

#[test]
fn a_unit_we_did_not_write_is_neither_replaced_nor_deleted() {
    let dir = TestDir::new("foreign");
    let theirs = "[Unit]\nDescription=someone's own egress-guard unit\n\n[Service]\nExecStart=/bin/true\n";
    fs::write(dir.unit(), theirs).unwrap();
    assert_fails(&dir.run(&["install-service", "--binary", BIN]), 2, "not written by egress-guard");
    assert_fails(&dir.run(&["uninstall-service"]), 2, "not written by egress-guard");
    assert_eq!(fs::read_to_string(dir.unit()).unwrap(), theirs);
    // The marker is what makes a file ours, not the name.
    assert!(!theirs.contains(MARKER));
}

#[test]
fn bad_usage_exits_2_with_one_line_and_writes_nothing() {
    let dir = TestDir::new("usage");
    let bad_config = dir.0.join("bad.toml");
    fs::write(&bad_config, "ifac = [\"docker0\"]\n").unwrap();
    let bad_policy = dir.0.join("bad-policy.toml");
    fs::write(&bad_policy, "subnet = [\"172.17.0.0/12\"]\n").unwrap();
    let not_executable = dir.0.join("not-executable");
    fs::write(&not_executable, "").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--binary", "/root/egress-guard/target/release/egress-guard"], "ProtectHome=yes"),
        (&["--binary", "/tmp/egress-guard"], "PrivateTmp=yes"),
        (&["--binary", "/nonexistent/egress-guard"], "not an executable file"),
        (&["--binary", not_executable.to_str().unwrap()], "not an executable file"),
        (&["--binary", BIN, "--config", "/nonexistent/config.toml"], "cannot read config /nonexistent/config.toml"),
        (&["--binary", BIN, "--config", bad_config.to_str().unwrap()], "unknown key \"ifac\""),
        (&["--binary", BIN, "--config", bad_policy.to_str().unwrap()], "172.16.0.0/12"),
        (&["--binary", BIN, "--frobnicate"], "--frobnicate"),
    ];
    for (args, needle) in cases {
        let mut all = vec!["install-service"];
        all.extend_from_slice(args);
        assert_fails(&dir.run(&all), 2, needle);
        assert!(!dir.unit().exists(), "{args:?} wrote the unit");
    }
    assert_fails(&dir.run(&["uninstall-service", "--now"]), 2, "--now");
}

/// Without root the unit directory cannot be written: exit 3, one line saying so, nothing changed.
#[test]
fn without_permission_exit_3_says_run_as_root() {
    require_kernel!();
    let dir = TestDir::new("perm");
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", BIN])
            .args(args)
            .env("EG_TEST_UNIT_DIR", &dir.0)
            .output()
            .unwrap()
    };
    assert_fails(&as_nobody(&["install-service", "--binary", BIN]), 3, "run as root");
    assert!(!dir.unit().exists());
    assert!(dir.run(&["install-service", "--binary", BIN]).status.success());
    assert_fails(&as_nobody(&["uninstall-service"]), 3, "run as root");
    assert!(dir.unit().exists());
}

/// The default place, /etc/systemd/system, here a tmpfs in a mount namespace of the test's own
/// (so the host's units are untouched), with no systemd running: the unit is written and the
/// commands to enable it later are printed.
#[test]
fn without_systemd_the_unit_is_written_and_enabling_explained() {
    require_kernel!();
    // /run/systemd is hidden too, in case this runs where systemd is PID 1: systemctl must not run.
    let script = r#"
        set -e
        mkdir -p /etc/systemd/system
        mount -t tmpfs eg-test /etc/systemd/system
        if [ -d /run/systemd ]; then mount -t tmpfs eg-test /run/systemd; fi
        "$0" install-service --binary "$0"
        echo "mode $(stat -c %a /etc/systemd/system/egress-guard.service)"
        "$0" uninstall-service
        test ! -e /etc/systemd/system/egress-guard.service && echo gone
    "#;
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script, BIN])
        .env_remove("EG_TEST_UNIT_DIR")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert!(text.contains("wrote /etc/systemd/system/egress-guard.service"), "{text}");
    assert!(text.contains("systemd is not running here"), "{text}");
    assert!(text.contains("systemctl daemon-reload && systemctl enable egress-guard.service"), "{text}");
    assert!(text.contains("mode 644"), "{text}");
    assert!(text.contains("removed /etc/systemd/system/egress-guard.service"), "{text}");
    assert!(text.trim_end().ends_with("gone"), "{text}");
}

/// Whether `systemd-analyze` can run here; like the kernel gate, `cargo xtask test` demands it.
fn have_systemd_analyze() -> bool {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert_ne!(
            std::env::var("EG_KERNEL_TESTS").as_deref(),
            Ok("1"),
            "systemd-analyze is missing (apt-get install -y systemd)"
        );
        eprintln!("skipped: systemd-analyze is missing (apt-get install -y systemd)");
    }
    found
}

/// systemd's own checker reads the unit as install-service writes it, with ExecStart at the
/// built binary (reached through a path with a space, `%` and `$`, which the unit must quote),
/// and has nothing to say about it.
#[test]
fn systemd_analyze_verify_accepts_the_unit_without_a_warning() {
    if !have_systemd_analyze() {
        return;
    }
    let dir = TestDir::new("verify");
    let odd = dir.0.join("my tools 100% $HOME");
    fs::create_dir_all(&odd).unwrap();
    let binary = odd.join("egress-guard");
    std::os::unix::fs::symlink(BIN, &binary).unwrap();
    let units = dir.0.join("units");
    let out = egress_guard(&["install-service", "--binary", binary.to_str().unwrap()], Some(&units));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fs::read_to_string(units.join(NAME)).unwrap().contains("\"/"), "the odd path is quoted");

    // --man=no: the man page ships in the tarball and is not installed where tests run.
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(units.join(NAME)).output().unwrap();
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "systemd-analyze verify failed:\n{said}");
    let about_us: Vec<&str> = said.lines().filter(|l| l.contains("egress-guard")).collect();
    assert!(about_us.is_empty(), "systemd-analyze verify warns about our unit:\n{}", about_us.join("\n"));

    // A broken ExecStart path is what verify would report: the check above can fail.
    let broken = fs::read_to_string(units.join(NAME)).unwrap().replace("100%%", "99%%");
    let broken_dir = dir.0.join("broken");
    fs::create_dir_all(&broken_dir).unwrap();
    fs::write(broken_dir.join(NAME), broken).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(broken_dir.join(NAME)).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not executable"), "{}", stderr(&out));
}

/// `systemd-analyze security` scores the sandbox; the unit keeps to "OK" (≤ 2.0 of 10), so a
/// hardening line dropped by mistake shows here.
#[test]
fn systemd_analyze_security_rates_the_sandbox_ok() {
    if !have_systemd_analyze() {
        return;
    }
    let dir = TestDir::new("security");
    fs::write(dir.unit(), expected_unit(None)).unwrap();
    let out = Command::new("systemd-analyze").args(["security", "--offline=yes"]).arg(dir.unit()).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{}{text}", stderr(&out));
    let score = text
        .lines()
        .find_map(|l| l.strip_prefix("→ Overall exposure level for egress-guard.service: "))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no overall exposure line in:\n{text}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}
