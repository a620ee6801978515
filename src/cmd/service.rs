//! `install-service` and `uninstall-service`: the unit file and the `systemctl` calls around it.
//! The unit's text and the rules for its paths are in `systemd::unit`; this is the thin I/O.
//!
//! Their errors are `ServiceError`s, which `crate::error` maps to exit codes like the others.
//!
//! Tests set `EG_TEST_UNIT_DIR=DIR`: the unit goes there instead of /etc/systemd/system, and
//! systemctl is never run. (An environment variable rather than a hidden flag, which shell
//! completions would still offer.)

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{access, AccessFlags};

use super::{say, Done};
use crate::cli::{InstallServiceArgs, UninstallServiceArgs};
use crate::error::Error;
use crate::exit::ExitCode;
use crate::systemd::unit::{self, UnitError, UnitSpec};

/// A line of the report, written at once; a closed stdout does not make us panic.
macro_rules! say_fmt {
    ($($arg:tt)*) => { say(&format!($($arg)*)) };
}

/// sd_booted(3): systemd is PID 1 exactly when this directory exists.
const SYSTEMD_RUNNING: &str = "/run/systemd/system";

/// Redirects the unit directory for tests (see the module comment).
const TEST_UNIT_DIR: &str = "EG_TEST_UNIT_DIR";

/// The units whose `.wants/` directories `systemctl enable` links us into ([Install] WantedBy=).
const WANTED_BY: [&str; 2] = ["multi-user.target", "docker.service"];

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The binary or config path cannot work in the unit.
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// `--binary` (or the running binary) is not an executable file.
    #[error("binary {0}: not an executable file (give --binary PATH)")]
    NotExecutable(String),
    /// The running binary's path is unknown.
    #[error("cannot tell where this binary is (give --binary PATH)")]
    NoExe(#[source] std::io::Error),
    /// The config the service would read has a mistake, or is missing.
    #[error("the service's config does not work")]
    Config(#[source] Box<crate::error::Error>),
    /// A file of that name exists and we did not write it.
    #[error(
        "{0} exists and was not written by egress-guard (it lacks the line {marker:?}): \
         nothing changed; move it away, or remove it yourself",
        marker = unit::MARKER
    )]
    Foreign(String),
    /// No write access to the unit directory.
    #[error("cannot {op} {path}: permission denied: run as root")]
    Permission { op: &'static str, path: String },
    /// Another I/O failure on the unit file.
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// systemctl could not be run or failed.
    #[error("`systemctl {args}` failed: {detail}")]
    Systemctl { args: String, detail: String },
}

impl ServiceError {
    /// Usage for what the caller can fix in the command line or files (nothing changed), Kernel
    /// for what the system refused.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ServiceError::Unit(_) | ServiceError::NotExecutable(_) | ServiceError::NoExe(_) => ExitCode::Usage,
            ServiceError::Foreign(_) => ExitCode::Usage,
            ServiceError::Config(e) => e.exit_code(),
            ServiceError::Permission { .. } | ServiceError::Io { .. } | ServiceError::Systemctl { .. } => {
                ExitCode::Kernel
            }
        }
    }

    fn io(op: &'static str, path: &Path, source: std::io::Error) -> ServiceError {
        let path = path.display().to_string();
        match source.kind() {
            ErrorKind::PermissionDenied => ServiceError::Permission { op, path },
            _ => ServiceError::Io { op, path, source },
        }
    }
}

pub fn install(args: InstallServiceArgs) -> Result<Done, Error> {
    run_install(&args)?;
    Ok(Done::default())
}

pub fn uninstall(_args: UninstallServiceArgs) -> Result<Done, Error> {
    run_uninstall(test_unit_dir().as_deref())?;
    Ok(Done::default())
}

fn test_unit_dir() -> Option<PathBuf> {
    std::env::var_os(TEST_UNIT_DIR).filter(|d| !d.is_empty()).map(PathBuf::from)
}

/// Where the unit goes, and whether systemctl may be run (never with the test directory).
fn place(unit_dir: Option<&Path>) -> (PathBuf, bool) {
    let systemd = unit_dir.is_none() && Path::new(SYSTEMD_RUNNING).is_dir();
    (unit_dir.unwrap_or(Path::new(unit::DIR)).join(unit::NAME), systemd)
}

fn run_install(args: &InstallServiceArgs) -> Result<(), ServiceError> {
    let binary = match &args.binary {
        Some(path) => std::path::absolute(path).map_err(|e| ServiceError::io("resolve", path, e))?,
        None => std::env::current_exe().map_err(ServiceError::NoExe)?,
    };
    let config = match &args.config {
        Some(path) => Some(std::path::absolute(path).map_err(|e| ServiceError::io("resolve", path, e))?),
        None => None,
    };
    let text = unit::unit_text(&UnitSpec { binary: &binary, config: config.as_deref() })?;
    check_executable(&binary)?;
    check_config(config.as_deref())?;
    // Where the links lead: systemd follows them, into the same sandbox.
    for (what, path) in [("binary", Some(&binary)), ("config", config.as_ref())] {
        if let Some(real) = path.and_then(|p| fs::canonicalize(p).ok()) {
            unit::check_visible(what, &real)?;
        }
    }

    let test_dir = test_unit_dir();
    let (path, systemd) = place(test_dir.as_deref());
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(|e| ServiceError::io("create", dir, e))?;
    let wrote = match read_ours(&path)? {
        Some(old) if old == text => "unchanged",
        old => {
            write_unit(&path, &text)?;
            if old.is_some() {
                "updated"
            } else {
                "wrote"
            }
        }
    };
    say_fmt!("install-service: {wrote} {} (runs {} watch)", path.display(), binary.display());

    if !systemd {
        let enable = if args.now { "enable --now" } else { "enable" };
        if test_dir.is_none() {
            say_fmt!(
                "install-service: systemd is not running here ({SYSTEMD_RUNNING} is absent), so nothing is enabled;"
            );
            say_fmt!("  where it runs: systemctl daemon-reload && systemctl {enable} {}", unit::NAME);
        } else {
            say_fmt!("install-service: {TEST_UNIT_DIR} is set, so systemctl is not run");
        }
        return Ok(());
    }
    systemctl(&["daemon-reload"])?;
    if args.now {
        systemctl(&["enable", "--now", unit::NAME])?;
        say_fmt!("install-service: enabled and started; `systemctl status egress-guard` shows it");
    } else {
        systemctl(&["enable", unit::NAME])?;
        say_fmt!("install-service: enabled: it starts at boot, before docker.service;");
        say_fmt!("  start it now with: systemctl start egress-guard");
    }
    if wrote == "updated" {
        say_fmt!("  a running service keeps the old unit until: systemctl restart egress-guard");
    }
    Ok(())
}

fn run_uninstall(unit_dir: Option<&Path>) -> Result<(), ServiceError> {
    let (path, systemd) = place(unit_dir);
    if read_ours(&path)?.is_none() {
        say_fmt!("uninstall-service: nothing to remove: there is no {}", path.display());
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    // Say "run as root" before systemctl asks a password or stops anything.
    if access(dir, AccessFlags::W_OK).is_err() {
        return Err(ServiceError::Permission { op: "remove", path: path.display().to_string() });
    }
    if systemd {
        // Stopping leaves the guard in place (SIGTERM does not remove rules).
        systemctl(&["disable", "--now", unit::NAME])?;
    } else {
        unlink_wants(dir, &path)?;
    }
    fs::remove_file(&path).map_err(|e| ServiceError::io("remove", &path, e))?;
    say_fmt!("uninstall-service: removed {}", path.display());
    if systemd {
        systemctl(&["daemon-reload"])?;
    }
    say_fmt!("uninstall-service: the guard's rules stay in place; `egress-guard remove` deletes them");
    Ok(())
}

/// The text of the unit at `path` when there is one and it is ours; an error when it is not ours.
fn read_ours(path: &Path) -> Result<Option<String>, ServiceError> {
    match fs::read_to_string(path) {
        Ok(text) if unit::is_ours(&text) => Ok(Some(text)),
        Ok(_) => Err(ServiceError::Foreign(path.display().to_string())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        // Not UTF-8: certainly not a file we wrote.
        Err(e) if e.kind() == ErrorKind::InvalidData => Err(ServiceError::Foreign(path.display().to_string())),
        Err(e) => Err(ServiceError::io("read", path, e)),
    }
}

/// Writes the unit beside its place and renames it there, so systemd never reads half a file;
/// mode 0644 whatever the umask.
fn write_unit(path: &Path, text: &str) -> Result<(), ServiceError> {
    let temp = path.with_extension("service.tmp");
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&temp)?;
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&temp);
        ServiceError::io("write", path, e)
    })
}

/// Where systemd is not running, `systemctl enable` may still have been run offline (in an image
/// build, say): its links to our unit would dangle once the unit is gone.
fn unlink_wants(dir: &Path, unit_path: &Path) -> Result<(), ServiceError> {
    for wanted_by in WANTED_BY {
        let link = dir.join(format!("{wanted_by}.wants")).join(unit::NAME);
        let Ok(target) = fs::read_link(&link) else { continue };
        if target == unit_path || target == Path::new(unit::DIR).join(unit::NAME) {
            fs::remove_file(&link).map_err(|e| ServiceError::io("remove", &link, e))?;
            say_fmt!("uninstall-service: removed {}", link.display());
        }
    }
    Ok(())
}

fn check_executable(binary: &Path) -> Result<(), ServiceError> {
    let executable = fs::metadata(binary).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if executable {
        Ok(())
    } else {
        Err(ServiceError::NotExecutable(binary.display().to_string()))
    }
}

/// The config `watch` will read, read and validated as `watch` will: the named one (which must
/// exist), else the default one if present.
fn check_config(config: Option<&Path>) -> Result<(), ServiceError> {
    // unit_text already refused a path that is not UTF-8.
    let config = config.and_then(Path::to_str);
    let check = || -> Result<(), crate::error::Error> {
        crate::config::load(config)?.policy.resolve()?;
        Ok(())
    };
    check().map_err(|e| ServiceError::Config(Box::new(e)))
}

/// `systemctl ARGS` with its messages ("Created symlink …") passed on; a failure is one line.
fn systemctl(args: &[&str]) -> Result<(), ServiceError> {
    let shown = args.join(" ");
    let output =
        Command::new("systemctl").arg("--no-ask-password").args(args).output().map_err(|e| {
            ServiceError::Systemctl { args: shown.clone(), detail: format!("cannot run systemctl: {e}") }
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let detail = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
        return Err(ServiceError::Systemctl { args: shown, detail: format!("{} ({detail})", output.status) });
    }
    for line in String::from_utf8_lossy(&output.stdout).lines().chain(stderr.lines()) {
        say_fmt!("  {line}");
    }
    Ok(())
}
