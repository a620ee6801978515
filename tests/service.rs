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

use egress_guard::systemd::unit::{check_visible, unit_text, UnitSpec, MARKER, NAME};

use crate::harness::{kernel_tests_enabled, require_kernel};

const BIN: &str = env!("CARGO_BIN_EXE_egress-guard");

/// A directory of the test's own, removed on drop, and a binary the unit may run. Both must lie
/// where the unit's sandbox can see (not under /home, /root or /tmp): cargo's target/tmp when the
/// checkout is such a place, else /run (root only), with a copy of the binary.
struct TestDir {
    path: PathBuf,
    bin: PathBuf,
}

impl TestDir {
    /// `None` (the test skips, saying why) where only root could make such a directory and we are not.
    fn new(name: &str) -> Option<TestDir> {
        let target_tmp = fs::canonicalize(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let visible = check_visible("dir", &target_tmp).is_ok();
        if !visible && !kernel_tests_enabled() {
            return None;
        }
        let parent = if visible { target_tmp } else { PathBuf::from("/run") };
        let path = parent.join(format!("eg-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        let mut dir = TestDir { bin: PathBuf::from(BIN), path };
        if check_visible("binary", &fs::canonicalize(BIN).unwrap()).is_err() {
            dir.bin = dir.path.join("egress-guard");
            fs::copy(BIN, &dir.bin).unwrap();
        }
        Some(dir)
    }

    fn unit(&self) -> PathBuf {
        self.path.join(NAME)
    }

    fn bin(&self) -> &str {
        self.bin.to_str().unwrap()
    }

    /// Runs `egress-guard ARGS` with the unit directory redirected here.
    fn run(&self, args: &[&str]) -> Output {
        egress_guard(args, Some(&self.path))
    }

    /// The unit install-service should write for our binary.
    fn expected_unit(&self, config: Option<&Path>) -> String {
        unit_text(&UnitSpec { binary: &self.bin, config }).unwrap()
    }

    /// The files in the directory, but the binary's copy.
    fn count(&self) -> usize {
        fs::read_dir(&self.path).unwrap().filter(|e| e.as_ref().unwrap().path() != self.bin).count()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// `command.output()` for a command that execs a binary this test process copied. Exec of a
/// freshly written file fails with ETXTBSY while a child forked meanwhile by another test thread
/// still holds the writing descriptor (until that child's own exec closes it): try again then.
fn output_of_copy(command: &mut Command) -> Output {
    for _ in 0..20 {
        let out = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        if !stderr(&out).contains("Text file busy") {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{command:?}: Text file busy, 20 times");
}

/// A file removed on drop.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A [`TestDir`], or return from the test (it said why it skips).
macro_rules! test_dir {
    ($name:expr) => {
        match TestDir::new($name) {
            Some(dir) => dir,
            None => return,
        }
    };
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

#[test]
fn install_writes_the_generated_unit_mode_0644_and_reinstall_updates_it() {
    let dir = test_dir!("install");
    let out = dir.run(&["install-service", "--binary", dir.bin()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("wrote"), "{}", stdout(&out));
    assert!(stdout(&out).contains("systemctl is not run"), "{}", stdout(&out));
    assert_eq!(fs::read_to_string(dir.unit()).unwrap(), dir.expected_unit(None));
    assert_eq!(fs::metadata(dir.unit()).unwrap().permissions().mode() & 0o7777, 0o644);

    // The same again changes nothing; with a config the unit passes it on.
    let out = dir.run(&["install-service", "--binary", dir.bin()]);
    assert!(stdout(&out).contains("unchanged"), "{}", stdout(&out));
    let config = dir.path.join("site.toml");
    fs::write(&config, "allow = [\"198.51.100.53:53/udp\"]\n").unwrap();
    let out = dir.run(&["install-service", "--binary", dir.bin(), "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("updated"), "{}", stdout(&out));
    let text = fs::read_to_string(dir.unit()).unwrap();
    assert_eq!(text, dir.expected_unit(Some(&config)));
    assert!(text.contains(&format!("ExecStart={} watch --config {}\n", dir.bin(), config.display())), "{text}");
    // No temp file is left beside it.
    assert_eq!(dir.count(), 2);
}

#[test]
fn uninstall_removes_our_unit_and_its_enable_links_and_nothing_else() {
    let dir = test_dir!("uninstall");
    assert!(dir.run(&["install-service", "--binary", dir.bin()]).status.success());
    // As an offline `systemctl enable` would have left them, and one link of someone else's.
    let wants = dir.path.join("multi-user.target.wants");
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
    let dir = test_dir!("foreign");
    let theirs = "[Unit]\nDescription=someone's own egress-guard unit\n\n[Service]\nExecStart=/bin/true\n";
    fs::write(dir.unit(), theirs).unwrap();
    assert_fails(&dir.run(&["install-service", "--binary", dir.bin()]), 2, "not written by egress-guard");
    assert_fails(&dir.run(&["uninstall-service"]), 2, "not written by egress-guard");
    assert_eq!(fs::read_to_string(dir.unit()).unwrap(), theirs);
    // The marker is what makes a file ours, not the name.
    assert!(!theirs.contains(MARKER));
}

#[test]
fn bad_usage_exits_2_with_one_line_and_writes_nothing() {
    let dir = test_dir!("usage");
    let bad_config = dir.path.join("bad.toml");
    fs::write(&bad_config, "ifac = [\"docker0\"]\n").unwrap();
    let bad_policy = dir.path.join("bad-policy.toml");
    fs::write(&bad_policy, "subnet = [\"172.17.0.0/12\"]\n").unwrap();
    let not_executable = dir.path.join("not-executable");
    fs::write(&not_executable, "").unwrap();
    // A link to a binary in /tmp: systemd would follow it into the private /tmp, and find nothing.
    let in_tmp = RemoveOnDrop(std::env::temp_dir().join(format!("eg-{}-service-bin", std::process::id())));
    fs::copy(BIN, &in_tmp.0).unwrap();
    let link = dir.path.join("link-to-tmp");
    std::os::unix::fs::symlink(&in_tmp.0, &link).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--binary", "/root/egress-guard/target/release/egress-guard"], "ProtectHome=yes"),
        (&["--binary", "/tmp/egress-guard"], "PrivateTmp=yes"),
        (&["--binary", "/nonexistent/egress-guard"], "not an executable file"),
        (&["--binary", not_executable.to_str().unwrap()], "not an executable file"),
        (&["--binary", link.to_str().unwrap()], "PrivateTmp=yes"),
        (
            &["--binary", dir.bin(), "--config", "/nonexistent/config.toml"],
            "cannot read config /nonexistent/config.toml",
        ),
        (&["--binary", dir.bin(), "--config", bad_config.to_str().unwrap()], "unknown field `ifac`"),
        (&["--binary", dir.bin(), "--config", bad_policy.to_str().unwrap()], "172.16.0.0/12"),
        (&["--binary", dir.bin(), "--frobnicate"], "--frobnicate"),
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
    let dir = test_dir!("perm");
    let as_nobody = |args: &[&str]| {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", dir.bin()]).args(args);
        output_of_copy(command.env("EG_TEST_UNIT_DIR", &dir.path))
    };
    assert_fails(&as_nobody(&["install-service", "--binary", dir.bin()]), 3, "run as root");
    assert!(!dir.unit().exists());
    assert!(dir.run(&["install-service", "--binary", dir.bin()]).status.success());
    assert_fails(&as_nobody(&["uninstall-service"]), 3, "run as root");
    assert!(dir.unit().exists());
}

/// The default place, /etc/systemd/system, here a tmpfs in a mount namespace of the test's own
/// (so the host's units are untouched), with no systemd running: the unit is written and the
/// commands to enable it later are printed.
#[test]
fn without_systemd_the_unit_is_written_and_enabling_explained() {
    require_kernel!();
    let dir = test_dir!("no-systemd");
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
    let mut command = Command::new("unshare");
    command.args(["--mount", "--propagation", "private", "sh", "-c", script, dir.bin()]);
    let out = output_of_copy(command.env_remove("EG_TEST_UNIT_DIR"));
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
    let dir = test_dir!("verify");
    let odd = dir.path.join("my tools 100% $HOME");
    fs::create_dir_all(&odd).unwrap();
    let binary = odd.join("egress-guard");
    // A copy, not a link: install-service checks where links lead, and BIN may be under /root.
    fs::copy(BIN, &binary).unwrap();
    let units = dir.path.join("units");
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
    let broken_dir = dir.path.join("broken");
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
    let dir = test_dir!("security");
    fs::write(dir.unit(), dir.expected_unit(None)).unwrap();
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
