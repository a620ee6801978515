//! The one image the suite runs, `egprobe:latest`: Debian's static busybox and its applet links,
//! made with `docker import` (no registry, no base image; vfs storage copies it per container,
//! so it stays one 2 MB binary).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

pub const IMAGE: &str = "egprobe:latest";

/// Where Debian's busybox-static puts it.
const BUSYBOX: &str = "/bin/busybox";

/// Applets the scenarios and the probes use, as `/bin/NAME` links to busybox.
const APPLETS: &[&str] = &[
    "sh", "nc", "ping", "ping6", "sleep", "echo", "cat", "ip", "wget", "httpd", "timeout", "seq", "true", "nslookup",
    "ls", "ps",
];

/// Writes `DIR/rootfs.tar` holding the image's files; panics naming the package if busybox is
/// missing. It must be the static one (`cargo xtask e2e` checks): a dynamic busybox finds no
/// libc in the image, and `docker run` fails with "exec /bin/nc: no such file or directory".
pub fn write_tarball(dir: &Path) -> std::path::PathBuf {
    let binary = fs::read(BUSYBOX).unwrap_or_else(|e| panic!("{BUSYBOX}: {e} (apt-get install -y busybox-static)"));
    let root = dir.join("rootfs");
    let bin = root.join("bin");
    fs::create_dir_all(&bin).expect("create the image's /bin");
    fs::write(bin.join("busybox"), &binary).expect("copy busybox");
    fs::set_permissions(bin.join("busybox"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    for applet in APPLETS {
        symlink("busybox", bin.join(applet)).expect("link an applet");
    }
    for empty in ["tmp", "etc", "proc", "sys", "dev", "www"] {
        fs::create_dir_all(root.join(empty)).expect("create a directory of the image");
    }
    let tarball = dir.join("rootfs.tar");
    let status = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tarball).arg(".").status().expect("run tar");
    assert!(status.success(), "tar of the image's rootfs failed");
    tarball
}
