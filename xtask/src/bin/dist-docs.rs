//! The files `cargo xtask dist` ships beside the binary, made from egress-guard's own
//! definitions so they cannot drift from it: man pages (clap_mangen) and shell completions
//! (clap_complete) from the clap command, the systemd unit from the generator install-service
//! uses, and a sample config from docs/configuration.md, checked to parse.
//!
//! `dist-docs OUT_DIR` writes them and prints each path, relative to OUT_DIR, one per line.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use egress_guard::cli::Cli;
use egress_guard::config::{self, Config};
use egress_guard::systemd::unit::{self, UnitSpec};

/// Section 8: system administration commands (egress-guard is installed in sbin).
const MAN_SECTION: &str = "8";

const SAMPLE: &str = "config.toml.sample";

fn main() -> ExitCode {
    let Some(out) = env::args_os().nth(1) else {
        eprintln!("usage: dist-docs OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(Path::new(&out)) {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dist-docs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes everything under `out`; the paths returned are relative to it.
fn generate(out: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = man_pages(out, Path::new("man"))?;
    files.extend(completions(out, Path::new("completions"))?);

    let spec = UnitSpec { binary: Path::new(unit::DEFAULT_BINARY), config: None };
    let text = unit::unit_text(&spec).map_err(|e| e.to_string())?;
    files.push(write(out, Path::new(unit::NAME), text.as_bytes())?);

    let doc_path = workspace_root().join("docs/configuration.md");
    let doc = fs::read_to_string(&doc_path).map_err(|e| format!("read {}: {e}", doc_path.display()))?;
    files.push(write(out, Path::new(SAMPLE), sample_config(&doc)?.as_bytes())?);
    Ok(files)
}

/// `egress-guard.8` and one page per subcommand (`egress-guard-apply.8`, …).
fn man_pages(out: &Path, dir: &Path) -> Result<Vec<PathBuf>, String> {
    fresh_dir(&out.join(dir))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let source = format!("egress-guard {}", cmd.get_version().unwrap_or_default());
    let mut pages = vec![cmd.clone()];
    pages.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    let mut files = Vec::new();
    for page in pages {
        let man = Man::new(page).section(MAN_SECTION).source(source.clone()).manual("System Administration");
        let mut roff = Vec::new();
        man.render(&mut roff).map_err(|e| format!("render man page: {e}"))?;
        files.push(write(out, &dir.join(man.get_filename()), &roff)?);
    }
    Ok(files)
}

/// bash (`egress-guard.bash`), zsh (`_egress-guard`) and fish (`egress-guard.fish`).
fn completions(out: &Path, dir: &Path) -> Result<Vec<PathBuf>, String> {
    fresh_dir(&out.join(dir))?;
    let mut cmd = Cli::command();
    let mut files = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut cmd, "egress-guard", out.join(dir))
            .map_err(|e| format!("write {shell} completions: {e}"))?;
        let name = path.file_name().ok_or_else(|| format!("{shell} completions: no file name"))?;
        files.push(dir.join(name));
    }
    Ok(files)
}

/// The first ```toml block of docs/configuration.md with every setting commented out, so that
/// the copied file changes nothing until its reader uncomments a line. Both the block and the
/// sample must parse: docs that no longer match the parser fail the build here.
fn sample_config(doc: &str) -> Result<String, String> {
    let block = toml_block(doc).ok_or("docs/configuration.md has no ```toml block")?;
    let file = config::parse("docs/configuration.md (its toml block)", &block).map_err(|e| e.to_string())?;
    file.policy.resolve().map_err(|e| format!("docs/configuration.md's toml block: {e}"))?;

    let mut sample = String::from(
        "# egress-guard's configuration: copy to /etc/egress-guard/config.toml and uncomment what you need.\n\
         # Every key is also a flag (`egress-guard apply --help`); flags override the file key by key.\n\
         # From docs/configuration.md, which says how the keys combine. `egress-guard apply --dry-run`\n\
         # shows what a change would write.\n\
         #\n",
    );
    // The block's first line names the file, which the header above already does.
    for line in block.lines().skip_while(|l| l.starts_with("# /etc/")) {
        let commented = if line.is_empty() || line.starts_with('#') { line.to_owned() } else { format!("# {line}") };
        sample.push_str(&commented);
        sample.push('\n');
    }
    let parsed = config::parse(SAMPLE, &sample).map_err(|e| e.to_string())?;
    if parsed != Config::default() {
        return Err(format!("{SAMPLE} sets something, but every line of it should be commented"));
    }
    Ok(sample)
}

/// The lines between the first "```toml" fence and the next "```".
fn toml_block(doc: &str) -> Option<String> {
    let mut lines = doc.lines().skip_while(|l| l.trim() != "```toml");
    lines.next()?;
    let mut block = String::new();
    for line in lines {
        if line.trim() == "```" {
            return Some(block);
        }
        block.push_str(line);
        block.push('\n');
    }
    None
}

/// Writes `out/path` and returns `path`.
fn write(out: &Path, path: &Path, bytes: &[u8]) -> Result<PathBuf, String> {
    let full = out.join(path);
    fs::write(&full, bytes).map_err(|e| format!("write {}: {e}", full.display()))?;
    Ok(path.to_path_buf())
}

/// An empty directory: no page of a subcommand that no longer exists survives a rebuild.
fn fresh_dir(dir: &Path) -> Result<(), String> {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("remove {}: {e}", dir.display())),
    }
    fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))
}

fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_the_documented_block_commented_out() {
        let doc = "intro\n\n```toml\n# /etc/egress-guard/config.toml\niface = [\"docker0\"]   # bridges\n\
                   allow = [\n  \"198.51.100.53:53/udp\",\n]\n# block_host = true\n```\nmore\n";
        let sample = sample_config(doc).unwrap();
        let body = "#\n\
                    # iface = [\"docker0\"]   # bridges\n\
                    # allow = [\n\
                    #   \"198.51.100.53:53/udp\",\n\
                    # ]\n\
                    # block_host = true\n";
        assert!(sample.starts_with("# egress-guard's configuration: copy to /etc/egress-guard/config.toml"));
        assert!(sample.ends_with(body), "{sample}");
        assert!(!sample.contains("# /etc/egress-guard/config.toml\n"), "{sample}");
    }

    #[test]
    fn the_real_docs_give_a_sample_that_parses() {
        let doc = fs::read_to_string(workspace_root().join("docs/configuration.md")).unwrap();
        let sample = sample_config(&doc).unwrap();
        assert!(sample.contains("# reject_with = \"port-unreachable\""), "{sample}");
    }

    #[test]
    fn a_documented_key_the_parser_refuses_fails_the_build() {
        let doc = "```toml\nifac = [\"docker0\"]\n```\n";
        assert!(sample_config(doc).unwrap_err().contains("unknown field `ifac`"));
        assert!(sample_config("no block here").is_err());
    }
}
