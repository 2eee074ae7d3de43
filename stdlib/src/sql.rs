//! The SQL library: `.fsql` files of reusable features and patterns (`stdlib/sql/`), embedded in the
//! binary so that a pipeline includes them by name, with no path: `INCLUDE 'fsql:velocity/card.fsql'`.
//!
//! Each file reads one relation that the including pipeline defines before the `INCLUDE` (its
//! *input*, `<view>_input`) and defines one view (`<view>`); the columns each needs and adds are
//! listed at the top of the file and in `docs/language.md` (section 1, "The SQL library").

/// The prefix of an `INCLUDE` path that names a library file rather than a file on disk.
pub const INCLUDE_PREFIX: &str = "fsql:";

/// `(name, text)` of each file named, read from `stdlib/sql/<name>` at build time.
macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../sql/", $name)))),*]
    };
}

/// Every library file: its name (its path under `stdlib/sql/`) and its text.
pub const FILES: &[(&str, &str)] = embedded![
    "velocity/card.fsql",
    "velocity/device.fsql",
    "velocity/ip.fsql",
    "velocity/email.fsql",
    "velocity/merchant.fsql",
    "amount_profile/card.fsql",
    "novelty/card.fsql",
    "patterns/card_testing.fsql",
    "patterns/decline_retry.fsql",
    "patterns/device_switching.fsql",
];

/// The text of the library file `name` (without the `fsql:` prefix), if there is one.
pub fn file(name: &str) -> Option<&'static str> {
    FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The `.fsql` files under `dir` (relative to `root`, with `/`), tests excluded.
    fn library_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir)
            .expect("stdlib/sql is readable")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                library_files(root, &path, out);
                continue;
            }
            let name = path.strip_prefix(root).expect("under the root");
            let name = name.to_string_lossy().replace('\\', "/");
            if name.ends_with(".fsql") && !name.ends_with(".test.fsql") {
                out.push(name);
            }
        }
    }

    #[test]
    fn every_file_under_stdlib_sql_is_embedded_and_has_a_test_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
        let mut on_disk = Vec::new();
        library_files(&root, &root, &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "FILES lists exactly the files of stdlib/sql"
        );
        for name in &on_disk {
            let test = root.join(name.replace(".fsql", ".test.fsql"));
            assert!(test.is_file(), "{name} has no test file {}", test.display());
        }
    }

    #[test]
    fn files_are_found_by_name() {
        assert!(file("velocity/card.fsql").is_some_and(|t| t.contains("card_velocity_input")));
        assert_eq!(file("velocity/cards.fsql"), None);
        assert_eq!(file("fsql:velocity/card.fsql"), None);
    }
}
