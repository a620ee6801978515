//! The systemd unit that runs `egress-guard watch`: its text, generated from the binary and
//! config paths alone (no I/O here), and the checks that decide whether a file is ours.
//!
//! The unit text carries its own reasons in comments, since an admin reads it with
//! `systemctl cat egress-guard`; docs/operations.md says the same at more length.

use std::path::Path;

/// The unit's file name.
pub const NAME: &str = "egress-guard.service";

/// Where admins' units live; `install-service` writes here.
pub const DIR: &str = "/etc/systemd/system";

/// Where `cargo xtask dist`'s unit expects the binary (README's install step puts it there).
pub const DEFAULT_BINARY: &str = "/usr/local/sbin/egress-guard";

/// Every unit we write starts with this line; `uninstall-service` deletes no file without it.
pub const MARKER: &str = "# egress-guard-unit: written by `egress-guard install-service`";

/// Inputs of the unit text.
#[derive(Debug, Clone, Copy)]
pub struct UnitSpec<'a> {
    /// The absolute path `ExecStart=` runs.
    pub binary: &'a Path,
    /// `--config PATH` for `watch`, absolute; without it watch reads the default config.
    pub config: Option<&'a Path>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    /// systemd runs only absolute paths in `ExecStart=`, and the service's cwd is /.
    #[error("{what} {path:?} is not an absolute path")]
    NotAbsolute { what: &'static str, path: String },
    /// The unit's sandbox hides the directory the file is in.
    #[error(
        "{what} {path:?} is under {dir}, which the service cannot see ({why}); \
         install it elsewhere first, e.g. `install -m 755 BINARY /usr/local/sbin/`"
    )]
    Hidden { what: &'static str, path: String, dir: &'static str, why: &'static str },
    /// A unit file is text: a path that is not UTF-8 or holds a control character cannot be
    /// written into one.
    #[error("{what} {path:?} cannot be written into a unit file (not UTF-8, or a control character in it)")]
    Unwritable { what: &'static str, path: String },
}

/// Directories the sandbox below hides from the service, and the setting that hides them.
const HIDDEN: &[(&str, &str)] = &[
    ("/home", "ProtectHome=yes"),
    ("/root", "ProtectHome=yes"),
    ("/run/user", "ProtectHome=yes"),
    ("/tmp", "PrivateTmp=yes"),
    ("/var/tmp", "PrivateTmp=yes"),
];

/// The unit text for `spec`, or why `spec` cannot work under this unit.
pub fn unit_text(spec: &UnitSpec) -> Result<String, UnitError> {
    let mut exec = vec![exec_word("binary", spec.binary, Word::Program)?, "watch".to_owned()];
    if let Some(config) = spec.config {
        exec.push("--config".to_owned());
        exec.push(exec_word("config", config, Word::Argument)?);
    }
    Ok(TEMPLATE.replace("{MARKER}", MARKER).replace("{EXEC_START}", &exec.join(" ")))
}

/// Whether a unit file's text is one we wrote (so may be replaced or deleted).
pub fn is_ours(text: &str) -> bool {
    text.lines().any(|line| line.starts_with(MARKER))
}

/// The place of a word in `ExecStart=`: systemd expands `$VAR` in the arguments only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    Program,
    Argument,
}

/// One word of `ExecStart=`, checked and quoted as systemd.syntax(7) and systemd.service(5)
/// read it.
fn exec_word(what: &'static str, path: &Path, word: Word) -> Result<String, UnitError> {
    let shown = path.to_string_lossy().into_owned();
    let text = path.to_str().filter(|s| !s.chars().any(char::is_control));
    let Some(text) = text else {
        return Err(UnitError::Unwritable { what, path: shown });
    };
    if !path.is_absolute() {
        return Err(UnitError::NotAbsolute { what, path: shown });
    }
    check_visible(what, path)?;
    Ok(quote(text, word))
}

/// Whether the service's sandbox lets it see `path`. The unit is checked with the paths as
/// written; the caller checks their real locations (symlinks resolved) as well, since a link
/// into /root would be followed into a directory the service cannot see.
pub fn check_visible(what: &'static str, path: &Path) -> Result<(), UnitError> {
    match HIDDEN.iter().find(|(dir, _)| path.starts_with(dir)) {
        Some((dir, why)) => Err(UnitError::Hidden { what, path: path.display().to_string(), dir, why }),
        None => Ok(()),
    }
}

/// `%` (specifiers) is doubled everywhere, `$` (variables) in arguments; a word with anything
/// but plain path characters is double-quoted, with `\` and `"` escaped inside.
fn quote(text: &str, word: Word) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._+,:=@-".contains(c);
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '%' => out.push_str("%%"),
            '$' if word == Word::Argument => out.push_str("$$"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    if text.chars().all(plain) {
        out
    } else {
        format!("\"{out}\"")
    }
}

/// The unit. `{MARKER}` and `{EXEC_START}` are filled in; every other line is fixed, so a test
/// can read the whole of it and `systemd-analyze verify` checks what admins get.
const TEMPLATE: &str = r#"{MARKER}
# (`egress-guard uninstall-service` removes this file only while that line is in it.)
# Change settings with a drop-in, `systemctl edit egress-guard`: install-service rewrites this file.

[Unit]
Description=egress-guard: keep Docker containers from dialing out
Documentation=man:egress-guard(8)
# A firewall: in place before any network is configured (systemd.special(7): network-pre.target
# is for firewalls), and so before dockerd and containerd start a single container. Type=notify
# below makes "started" mean "the first apply is done", so these orderings wait for the guard.
Wants=network-pre.target
Before=network-pre.target docker.service containerd.service
# After the units that load a saved ruleset (and may flush it first): the guard goes in on top.
After=nftables.service firewalld.service netfilter-persistent.service
# Towards Docker only ordering, and the Wants= from docker.service in [Install]: never Requires=,
# BindsTo= or PartOf=, which carry a stop or restart of this unit over to dockerd (and so to
# every container). The guard lives in the kernel, not in this process: a crash, restart or
# upgrade of egress-guard leaves it in place, and dockerd never notices.
# A guard that gave up protects nothing: keep restarting, however often it fails.
StartLimitIntervalSec=0

[Service]
Type=notify
NotifyAccess=main
ExecStart={EXEC_START}
# Reload = SIGHUP: watch re-reads the config and applies it. The shell's own kill, since /bin/kill
# (procps) is missing on minimal systems; systemd passes $MAINPID to reload commands.
ExecReload=/bin/sh -c 'kill -HUP "$MAINPID"'
Restart=always
RestartSec=5s
# Exit status 2 is bad usage or config: restarting cannot cure it (the journal says what is wrong).
RestartPreventExitStatus=2
# watch sends WATCHDOG=1 at least every WatchdogSec/2; a hung watch is restarted.
WatchdogSec=30s
# Network configuration waits for this unit (network-pre.target): do not hold it up for long.
TimeoutStartSec=30s
# SIGTERM stops watching at once and leaves the guard in place.
TimeoutStopSec=10s

# Privileges: nf_tables over netlink needs CAP_NET_ADMIN and nothing else (CAP_SYS_ADMIN would be
# needed only to enter another namespace with --netns, which this service does not do). The user
# stays root so that root's files, the config and Docker's API socket (root:docker 0660), are
# read as their owner, without CAP_DAC_OVERRIDE.
CapabilityBoundingSet=CAP_NET_ADMIN
NoNewPrivileges=yes

# Files: everything read-only, except /run/egress-guard and /var/lib/egress-guard (both 0700).
# connect() to a unix socket on a read-only mount works, so /var/run/docker.sock stays usable.
ProtectSystem=strict
RuntimeDirectory=egress-guard
RuntimeDirectoryMode=0700
StateDirectory=egress-guard
StateDirectoryMode=0700
UMask=0077
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateMounts=yes

# Kernel and processes: netlink reaches nf_tables without /proc/sys, module loading (the kernel
# loads nf_tables' modules itself when a rule needs them), cgroups or other processes' /proc.
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM

# Sockets: AF_NETLINK for nf_tables, AF_UNIX for sd_notify and the Docker API socket.
# >>> DNS forwarder (not built yet): it serves the containers' lookups and asks upstream
# >>> resolvers, so it will need AF_INET AF_INET6 added to this line.
RestrictAddressFamilies=AF_NETLINK AF_UNIX

[Install]
# Started at boot, and whenever dockerd is started: Wants= pulls egress-guard in (ordered
# first) but carries no stop or restart back to dockerd.
WantedBy=multi-user.target docker.service
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(binary: &'a str, config: Option<&'a str>) -> UnitSpec<'a> {
        UnitSpec { binary: Path::new(binary), config: config.map(Path::new) }
    }

    /// The value of every `KEY=` line in `section`.
    fn values<'a>(text: &'a str, section: &str, key: &str) -> Vec<&'a str> {
        let header = format!("[{section}]");
        text.lines()
            .skip_while(|l| *l != header)
            .skip(1)
            .take_while(|l| !l.starts_with('['))
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect()
    }

    #[test]
    fn exec_start_runs_watch_with_the_config() {
        let text = unit_text(&spec("/usr/local/sbin/egress-guard", None)).unwrap();
        assert_eq!(values(&text, "Service", "ExecStart"), ["/usr/local/sbin/egress-guard watch"]);
        let text = unit_text(&spec("/opt/eg/egress-guard", Some("/etc/eg/site.toml"))).unwrap();
        assert_eq!(values(&text, "Service", "ExecStart"), ["/opt/eg/egress-guard watch --config /etc/eg/site.toml"]);
        assert!(text.starts_with(MARKER));
        assert!(is_ours(&text));
        assert!(!is_ours("[Unit]\nDescription=someone else's\n"));
    }

    #[test]
    fn odd_paths_are_quoted_as_systemd_reads_them() {
        use Word::*;
        assert_eq!(quote("/usr/sbin/egress-guard", Program), "/usr/sbin/egress-guard");
        assert_eq!(quote("/opt/my tools/eg", Program), "\"/opt/my tools/eg\"");
        // The program path is found with `%%` undone and `$` as it stands (systemd-analyze
        // verify resolves it so in tests/service.rs); arguments get `$VAR` expanded.
        assert_eq!(quote("/opt/100%/$HOME", Program), "\"/opt/100%%/$HOME\"");
        assert_eq!(quote("/opt/100%/$HOME", Argument), "\"/opt/100%%/$$HOME\"");
        assert_eq!(quote(r#"/opt/a"b\c"#, Argument), r#""/opt/a\"b\\c""#);
    }

    #[test]
    fn paths_the_service_cannot_run_are_refused() {
        let err = |b, c| unit_text(&spec(b, c)).unwrap_err();
        assert!(matches!(err("egress-guard", None), UnitError::NotAbsolute { what: "binary", .. }));
        assert!(matches!(err("/usr/sbin/eg", Some("eg.toml")), UnitError::NotAbsolute { what: "config", .. }));
        let hidden = err("/root/egress-guard/target/release/egress-guard", None);
        assert!(hidden.to_string().contains("ProtectHome=yes"), "{hidden}");
        assert!(hidden.to_string().contains("install -m 755"), "{hidden}");
        assert!(matches!(err("/tmp/eg", None), UnitError::Hidden { why: "PrivateTmp=yes", .. }));
        assert!(matches!(err("/usr/sbin/eg", Some("/home/me/eg.toml")), UnitError::Hidden { what: "config", .. }));
        assert!(matches!(err("/usr/sbin/e\ng", None), UnitError::Unwritable { .. }));
        // A prefix of a name is not the directory: /homer is not /home.
        assert!(unit_text(&spec("/homer/egress-guard", None)).is_ok());
    }

    /// The orderings that keep containers from starting unguarded, and the absence of every
    /// dependency that would carry a restart of egress-guard over to dockerd.
    #[test]
    fn ordered_before_docker_without_restart_propagation() {
        let text = unit_text(&spec("/usr/local/sbin/egress-guard", None)).unwrap();
        assert_eq!(values(&text, "Unit", "Before"), ["network-pre.target docker.service containerd.service"]);
        assert_eq!(values(&text, "Unit", "Wants"), ["network-pre.target"]);
        assert_eq!(values(&text, "Install", "WantedBy"), ["multi-user.target docker.service"]);
        for key in ["Requires", "Requisite", "BindsTo", "PartOf", "Upholds", "RequiredBy"] {
            for section in ["Unit", "Install"] {
                assert!(values(&text, section, key).is_empty(), "{key}= in [{section}]");
            }
        }
        assert_eq!(values(&text, "Service", "Type"), ["notify"]);
        assert_eq!(values(&text, "Service", "Restart"), ["always"]);
        assert_eq!(values(&text, "Service", "ExecReload"), [r#"/bin/sh -c 'kill -HUP "$MAINPID"'"#]);
    }

    #[test]
    fn sandbox_allows_netlink_and_unix_sockets_and_net_admin_only() {
        let text = unit_text(&spec("/usr/local/sbin/egress-guard", None)).unwrap();
        assert_eq!(values(&text, "Service", "CapabilityBoundingSet"), ["CAP_NET_ADMIN"]);
        assert_eq!(values(&text, "Service", "RestrictAddressFamilies"), ["AF_NETLINK AF_UNIX"]);
        assert_eq!(values(&text, "Service", "ProtectSystem"), ["strict"]);
        assert_eq!(values(&text, "Service", "RuntimeDirectory"), ["egress-guard"]);
        assert_eq!(values(&text, "Service", "StateDirectory"), ["egress-guard"]);
        assert_eq!(values(&text, "Service", "RuntimeDirectoryMode"), ["0700"]);
        assert_eq!(values(&text, "Service", "StateDirectoryMode"), ["0700"]);
        // A private network namespace or user namespace would put the rules out of the host's reach.
        assert!(values(&text, "Service", "PrivateNetwork").is_empty());
        assert!(values(&text, "Service", "PrivateUsers").is_empty());
        assert!(text.contains(">>> DNS forwarder"));
    }
}
