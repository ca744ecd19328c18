//! Turning command-line inputs (files, directories, globs) into an ordered file list.

use crate::input::{FileKind, InputError};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The files to read, in order, and the files that directory expansion passed over.
#[derive(Debug, Default)]
pub struct Expanded {
    pub files: Vec<PathBuf>,
    /// Files found inside directories whose type we do not read (listed, never silently lost).
    pub skipped: Vec<PathBuf>,
}

/// Expand `inputs` in the order given. A directory expands to the readable files below it,
/// recursively, in sorted path order, passing over side files (names starting with `_` or
/// `.`, such as a run's `_summary.json` and `_rejects.jsonl`); a glob (`*`, `?`, `[`) to its matches in sorted order;
/// a plain path must exist. A file named twice, or reached twice through symbolic links, is
/// read once, at its first place.
pub fn expand_inputs(inputs: &[String]) -> Result<Expanded, InputError> {
    let mut out = Expanded::default();
    let mut seen = HashSet::new();
    for input in inputs {
        let path = Path::new(input);
        let mut found = Vec::new();
        if path.is_dir() {
            walk(path, &mut found, &mut HashSet::new()).map_err(|e| InputError::io(path, e))?;
        } else if input.contains(['*', '?', '[']) && !path.exists() {
            let matches = glob::glob(input).map_err(|e| InputError::BadGlob {
                pattern: input.clone(),
                reason: e.to_string(),
            })?;
            for entry in matches {
                let entry = entry.map_err(|e| {
                    let path = e.path().to_path_buf();
                    InputError::Io {
                        path,
                        source: e.into(),
                    }
                })?;
                if entry.is_dir() {
                    walk(&entry, &mut found, &mut HashSet::new())
                        .map_err(|e| InputError::io(&entry, e))?;
                } else {
                    found.push(entry);
                }
            }
            if found.is_empty() {
                return Err(InputError::NoMatch(input.clone()));
            }
            found.sort();
        } else if path.is_file() {
            if FileKind::of(path).is_none() {
                return Err(InputError::UnsupportedType(path.to_path_buf()));
            }
            found.push(path.to_path_buf());
        } else {
            return Err(InputError::NotFound(path.to_path_buf()));
        }
        for file in found {
            if FileKind::of(&file).is_none() || is_side_file(&file) {
                out.skipped.push(file);
            } else if seen.insert(std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone())) {
                out.files.push(file);
            }
        }
    }
    Ok(out)
}

/// Reports a run writes next to its data under these fixed names (`steel clean`'s).
pub const REPORT_FILES: &[&str] = &["report.json", "report.txt"];

/// `_summary.json`, `.hidden.jsonl`, `report.json`: metadata next to data, never data itself.
fn is_side_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('_') || n.starts_with('.') || REPORT_FILES.contains(&n))
}

/// Every file below `dir`, sorted by path. A directory whose real path was walked already (a
/// symbolic link to a parent, or a second link to one directory) is not walked again, so a
/// link loop ends.
fn walk(
    dir: &Path,
    found: &mut Vec<PathBuf>,
    walked: &mut HashSet<PathBuf>,
) -> std::io::Result<()> {
    if !walked.insert(std::fs::canonicalize(dir)?) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            walk(&entry, found, walked)?;
        } else {
            found.push(entry);
        }
    }
    Ok(())
}
