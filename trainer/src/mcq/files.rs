//! Finding each subject's CSV in a directory laid out as upstream ships it: C-Eval
//! `{subject}_dev.csv`, `{subject}_val.csv`, `{subject}_test.csv` (one directory per split),
//! CMMLU `{subject}.csv` (`dev/`, `test/`).

use crate::mcq::error::McqError;
use crate::mcq::subjects::Benchmark;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which C-Eval splits a directory may hold: the shots come from `_dev` files only; the
/// questions from any one split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Shots,
    Questions,
}

/// The subject a file name is for, if it is named as `benchmark` names its files.
fn subject_of(benchmark: Benchmark, role: Role, file: &str) -> Option<&str> {
    let stem = file.strip_suffix(".csv")?;
    match (benchmark, role) {
        (Benchmark::Cmmlu, _) => Some(stem),
        (Benchmark::Ceval, Role::Shots) => stem.strip_suffix("_dev"),
        (Benchmark::Ceval, Role::Questions) => ["_dev", "_val", "_test"]
            .iter()
            .find_map(|split| stem.strip_suffix(split)),
    }
}

/// Every subject's CSV in `dir`, by subject name. Files not ending in `.csv` are ignored; a
/// CSV that is not named for a subject of `benchmark`, or a second CSV of the same subject
/// (two C-Eval splits in one directory), is an error naming it.
pub fn subject_files(
    benchmark: Benchmark,
    role: Role,
    dir: &Path,
) -> Result<BTreeMap<String, PathBuf>, McqError> {
    let unreadable = |e: std::io::Error| McqError::File {
        path: dir.to_path_buf(),
        reason: format!("cannot read the directory: {e}"),
    };
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.ends_with(".csv") {
            continue;
        }
        let expected = match (benchmark, role) {
            (Benchmark::Cmmlu, _) => "{subject}.csv",
            (Benchmark::Ceval, Role::Shots) => "{subject}_dev.csv",
            (Benchmark::Ceval, Role::Questions) => "{subject}_dev.csv, _val.csv or _test.csv",
        };
        let subject = subject_of(benchmark, role, &name)
            .filter(|s| benchmark.subject(s).is_some())
            .ok_or_else(|| McqError::File {
                path: path.clone(),
                reason: format!(
                    "not a {} file: expected {expected} for one of its subjects",
                    benchmark.name()
                ),
            })?;
        if let Some(earlier) = files.insert(subject.to_string(), path.clone()) {
            return Err(McqError::File {
                path,
                reason: format!(
                    "a second file of subject {subject} next to `{}`: give a directory of \
                     one split",
                    earlier.display()
                ),
            });
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            std::fs::write(dir.path().join(file), "").unwrap();
        }
        dir
    }

    #[test]
    fn files_are_found_by_each_benchmarks_names() {
        let dir = dir_with(&["logic_val.csv", "law_val.csv", "README.md"]);
        let found = subject_files(Benchmark::Ceval, Role::Questions, dir.path()).unwrap();
        assert_eq!(found.keys().collect::<Vec<_>>(), ["law", "logic"]);
        let dir = dir_with(&["agronomy.csv"]);
        let found = subject_files(Benchmark::Cmmlu, Role::Shots, dir.path()).unwrap();
        assert_eq!(found["agronomy"], dir.path().join("agronomy.csv"));
    }

    #[test]
    fn a_file_of_no_subject_or_a_second_split_is_refused_by_name() {
        let dir = dir_with(&["logic_val.csv"]);
        let error = subject_files(Benchmark::Ceval, Role::Shots, dir.path()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("logic_val.csv: not a C-Eval file")
        );
        let dir = dir_with(&["logic_val.csv", "logic_test.csv"]);
        let error = subject_files(Benchmark::Ceval, Role::Questions, dir.path()).unwrap_err();
        assert!(error.to_string().contains("a second file of subject logic"));
        let dir = dir_with(&["cooking.csv"]);
        let error = subject_files(Benchmark::Cmmlu, Role::Questions, dir.path()).unwrap_err();
        assert!(error.to_string().contains("cooking.csv: not a CMMLU file"));
    }
}
