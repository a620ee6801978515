//! `log --output FILE`: JSON lines appended to a file only root reads (0600), rotated by size
//! (FILE → FILE.1 → … → FILE.5, the oldest dropped). Each line goes out in one `write` on an
//! `O_APPEND` descriptor, and rotation happens between lines: the old file is synced, renamed
//! whole, and the next line starts the new one, so no line is lost or cut. If the new file
//! cannot be made, lines keep going to the old one.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Rotated files kept: FILE.1 (newest) to FILE.5.
pub const KEEP: usize = 5;
/// `--max-size` when not given.
pub const DEFAULT_MAX_SIZE: u64 = 10 << 20;
/// Below this a file would rotate every few lines.
pub const MIN_MAX_SIZE: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("cannot open {}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write to {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The line was written (to the old file); the rotation failed.
    #[error("cannot rotate {} (lines go on to it)", .path.display())]
    Rotate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

impl RotatingFile {
    /// Opens (or creates, 0600) `path` for appending, tightening its mode to 0600 if it was
    /// wider: the lines name containers and addresses.
    pub fn open(path: &Path, max: u64) -> Result<RotatingFile, RotateError> {
        let open = |source| RotateError::Open { path: path.to_path_buf(), source };
        let file = create(path).map_err(open)?;
        let meta = file.metadata().map_err(open)?;
        if !meta.is_file() {
            return Err(open(std::io::Error::new(ErrorKind::InvalidInput, "not a regular file")));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(fs::Permissions::from_mode(0o600)).map_err(open)?;
        }
        Ok(RotatingFile { path: path.to_path_buf(), file, size: meta.len(), max: max.max(MIN_MAX_SIZE) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `line` and a newline; rotates first when it would pass the size. A failed
    /// rotation is reported after the line is written to the old file.
    pub fn write_line(&mut self, line: &str) -> Result<(), RotateError> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let rotated = if self.size > 0 && self.size + bytes.len() as u64 > self.max { self.rotate() } else { Ok(()) };
        if rotated.is_err() {
            // Tried again after another `max` bytes, not at every line.
            self.size = 0;
        }
        self.file.write_all(&bytes).map_err(|source| RotateError::Write { path: self.path.clone(), source })?;
        self.size += bytes.len() as u64;
        rotated.map_err(|source| RotateError::Rotate { path: self.path.clone(), source })
    }

    /// FILE.4 → FILE.5, …, FILE → FILE.1, then a new FILE. Until the new one is open, the
    /// descriptor still points at the renamed file: a failure loses nothing.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.sync_data()?;
        for n in (1..KEEP).rev() {
            match fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = create(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn create(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// `FILE.n`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The file and its rotations that exist, oldest first: what `log --summary` reads.
pub fn generations(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..=KEEP).rev().map(|n| rotated(path, n)).filter(|p| p.is_file()).collect();
    out.push(path.to_path_buf());
    out
}

/// `--max-size`: bytes, or a number with K, M or G (powers of 1024), at least 4K.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a size: give bytes, or a number with K, M or G (e.g. 10M), at least 4K");
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(bad()),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let size = n.checked_mul(1 << shift).ok_or_else(bad)?;
    if size < MIN_MAX_SIZE {
        return Err(bad());
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir = std::env::temp_dir().join(format!("eg-rotate-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn rotation_keeps_every_line_whole_and_drops_only_the_oldest_files() {
        let dir = Dir::new("lines");
        let path = dir.0.join("attempts.jsonl");
        let mut f = RotatingFile::open(&path, 4096).unwrap();
        let lines: Vec<String> =
            (0..2000).map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 50))).collect();
        for line in &lines {
            f.write_line(line).unwrap();
        }
        let files = generations(&path);
        assert_eq!(files.len(), KEEP + 1, "{files:?}");
        let mut kept = Vec::new();
        for file in &files {
            let text = fs::read_to_string(file).unwrap();
            assert!(text.len() <= 4096, "{}: {} bytes", file.display(), text.len());
            assert!(text.ends_with('\n'));
            kept.extend(text.lines().map(String::from));
            let mode = fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
        // What is kept is the newest lines, in order, none missing or cut.
        assert_eq!(kept, lines[lines.len() - kept.len()..]);
        assert!(kept.len() > 5 * 4096 / 100);
    }

    #[test]
    fn an_existing_file_is_appended_to_and_its_mode_tightened() {
        let dir = Dir::new("mode");
        let path = dir.0.join("a.jsonl");
        fs::write(&path, "old\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut f = RotatingFile::open(&path, DEFAULT_MAX_SIZE).unwrap();
        f.write_line("new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "old\nnew\n");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(RotatingFile::open(&dir.0, DEFAULT_MAX_SIZE).is_err(), "a directory");
    }

    #[test]
    fn a_failed_rotation_loses_no_line() {
        let dir = Dir::new("fail");
        let path = dir.0.join("a.jsonl");
        let mut f = RotatingFile::open(&path, 4096).unwrap();
        f.write_line(&"x".repeat(4000)).unwrap();
        // FILE.4 and FILE.5 are non-empty directories: the first rename of the rotation fails.
        for n in [4, 5] {
            fs::create_dir_all(rotated(&path, n).join("in-the-way")).unwrap();
        }
        let kept = format!("kept {}", "y".repeat(200));
        let err = f.write_line(&kept).unwrap_err();
        assert!(matches!(err, RotateError::Rotate { .. }), "{err}");
        assert!(fs::read_to_string(&path).unwrap().ends_with(&format!("\n{kept}\n")));
        // Not tried again at the next line, but after another 4 KiB.
        f.write_line("next").unwrap();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("8192"), Ok(8192));
        for bad in ["", "10X", "-1M", "1.5M", "100", "M", "99999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
