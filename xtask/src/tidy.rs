//! Checks that are tests too (rust-analyzer's habit): every source file says what it is for,
//! no `unwrap`/`expect` outside test code (kernel and network input must never panic us), and
//! the documents a newcomer and an operator need exist.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn root() -> PathBuf {
        crate::workspace_root()
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    fn files(dirs: &[&str]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in dirs {
            rust_files(&root().join(dir), &mut out);
        }
        assert!(!out.is_empty(), "no sources found under {dirs:?}");
        out
    }

    #[test]
    fn every_file_opens_with_what_it_is_for() {
        let missing: Vec<String> = files(&["src", "tests", "xtask/src", "examples"])
            .into_iter()
            .filter(|f| !std::fs::read_to_string(f).unwrap_or_default().starts_with("//!"))
            .map(|f| f.display().to_string())
            .collect();
        assert!(missing.is_empty(), "files without a `//!` line: {missing:#?}");
    }

    /// The code of the library and binary before its first `#[cfg(test)]` (test modules sit at
    /// the end of a file, or in files named tests.rs or proptests.rs).
    #[test]
    fn no_unwrap_or_expect_outside_tests() {
        let mut found = Vec::new();
        for file in files(&["src"]) {
            if file.file_name().is_some_and(|n| n == "tests.rs" || n == "proptests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for (i, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("#[cfg(test)]") {
                    break;
                }
                if line.contains(".unwrap()") || line.contains(".expect(") {
                    found.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
                }
            }
        }
        assert!(found.is_empty(), "unwrap/expect outside tests: {found:#?}");
    }

    #[test]
    fn the_documents_exist() {
        for doc in [
            "README.md",
            "ARCHITECTURE.md",
            "CHANGELOG.md",
            "docs/operations.md",
            "docs/configuration.md",
            "docs/design.md",
            "docs/faq.md",
        ] {
            let text = std::fs::read_to_string(root().join(doc)).unwrap_or_default();
            assert!(text.len() > 200, "{doc} is missing or nearly empty");
        }
    }
}
