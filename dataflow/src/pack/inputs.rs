//! What a `steel pack` has to do: its inputs as units of work, each packed as one epoch of
//! chunks, with the inputs already packed left out.
//!
//! Plain inputs (files, globs, directories of `steel convert` shards) form one unit. A `steel
//! run` output directory (one holding `epoch-NNNNNN/` directories) gives one unit per
//! committed run epoch, in order: its tombstones, then its shards. An input is known by its
//! absolute path; it is packed again only if it is new. One whose content changed since it
//! was packed is reported and not packed (and for a run directory, neither is anything after
//! it: epochs apply in order).

use crate::convert::{FilePlan, plan_files};
use crate::pack::PackError;
use crate::pack::manifest::{Manifest, PackedInput};
use crate::pipeline::discover::hash_file;
use crate::pipeline::output_mark::{OUTPUT_MARK, OutputMark};
use crate::sources::{Format, FormatChoice};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// An input to pack, with what the manifest will record of it.
pub struct InputFile {
    pub path: PathBuf,
    pub record: PackedInput,
}

/// One epoch's work.
pub struct Unit {
    /// For reports: `inputs` or `DIR/epoch-NNNNNN`.
    pub name: String,
    pub tombstones: Option<InputFile>,
    /// The documents to pack, in order.
    pub shards: Vec<(FilePlan, InputFile)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChangedInput {
    pub path: String,
    pub reason: String,
}

#[derive(Default)]
pub struct Plan {
    pub units: Vec<Unit>,
    /// Inputs packed before and unchanged.
    pub known: usize,
    pub changed: Vec<ChangedInput>,
}

/// What a `steel run` output directory's committed epochs are: `epoch-NNNNNN` directories
/// holding a `report.json` (written last before the rename) and no later than the output's
/// `_committed.json` says (all of them in an output written before Steel kept that mark), in
/// order.
fn run_epochs(dir: &Path) -> Result<Vec<(u64, PathBuf)>, PackError> {
    // Only what the run's state committed (an epoch is renamed into place just before).
    let committed = OutputMark::read(dir)
        .map_err(|e| PackError::Manifest {
            path: dir.join(OUTPUT_MARK),
            reason: e.to_string(),
        })?
        .map_or(u64::MAX, |mark| mark.committed);
    let mut epochs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| PackError::io(dir, e))? {
        let path = entry.map_err(|e| PackError::io(dir, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let number = name.as_deref().and_then(|n| n.strip_prefix("epoch-"));
        if let Some(epoch) = number.and_then(|n| n.parse::<u64>().ok())
            && path.join("report.json").is_file()
            && epoch <= committed
        {
            epochs.push((epoch, path));
        }
    }
    epochs.sort();
    Ok(epochs)
}

/// The real path of `path` (links resolved), for telling inputs named twice apart.
fn real(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Whether `path` is a `steel run` output directory: one holding `epoch-NNNNNN` (or, while
/// its first epoch is being written, `epoch-NNNNNN.tmp`) directories. Such a directory is
/// never walked as plain files, so a half-written epoch is never taken.
fn is_run_dir(path: &Path) -> Result<bool, PackError> {
    if !path.is_dir() {
        return Ok(false);
    }
    for entry in std::fs::read_dir(path).map_err(|e| PackError::io(path, e))? {
        let name = entry.map_err(|e| PackError::io(path, e))?.file_name();
        let name = name.to_string_lossy();
        let number = name
            .strip_prefix("epoch-")
            .map(|n| n.trim_end_matches(".tmp"));
        if number.is_some_and(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit())) {
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn plan(inputs: &[String], manifest: &Manifest) -> Result<Plan, PackError> {
    let known: HashMap<&str, &PackedInput> = manifest
        .inputs
        .iter()
        .map(|i| (i.path.as_str(), i))
        .collect();
    let mut plan = Plan::default();
    let mut plain = Vec::new();
    // An input named twice (`out out/`, or a run directory and a shard inside it) is
    // planned once.
    let mut run_dirs = std::collections::HashSet::new();
    for input in inputs {
        let path = Path::new(input);
        if is_run_dir(path)? {
            if run_dirs.insert(real(path)) {
                plan_run_dir(path, &run_epochs(path)?, &known, &mut plan)?;
            }
        } else {
            plain.push(input.clone());
        }
    }
    let inside_a_run_dir = |path: &Path| run_dirs.iter().any(|d| real(path).starts_with(d));
    let mut seen = std::collections::HashSet::new();
    if !plain.is_empty() {
        let (plans, _) = plan_files(&plain, FormatChoice::Fixed(Format::Text))?;
        let mut shards = Vec::new();
        for file_plan in plans {
            if inside_a_run_dir(&file_plan.path) || !seen.insert(real(&file_plan.path)) {
                continue;
            }
            match check(&file_plan.path, &known)? {
                Status::Known => plan.known += 1,
                Status::Changed(reason) => plan.changed.push(ChangedInput {
                    path: file_plan.path.display().to_string(),
                    reason,
                }),
                Status::New(file) => shards.push((file_plan, file)),
            }
        }
        if !shards.is_empty() {
            plan.units.push(Unit {
                name: "inputs".into(),
                tombstones: None,
                shards,
            });
        }
    }
    Ok(plan)
}

/// The unpacked epochs of run output `dir`, in order, up to the first changed one.
fn plan_run_dir(
    dir: &Path,
    epochs: &[(u64, PathBuf)],
    known: &HashMap<&str, &PackedInput>,
    plan: &mut Plan,
) -> Result<(), PackError> {
    for (_, epoch_dir) in epochs {
        let mut parts: Vec<PathBuf> = std::fs::read_dir(epoch_dir)
            .map_err(|e| PackError::io(epoch_dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                name.is_some_and(|n| n.starts_with("part-") && n.ends_with(".jsonl"))
            })
            .collect();
        parts.sort();
        let tombstones = epoch_dir.join("tombstones.jsonl");
        let mut files = parts.clone();
        if tombstones.is_file() {
            files.insert(0, tombstones.clone());
        }
        let mut new = Vec::new();
        let mut seen = 0;
        for file in &files {
            match check(file, known)? {
                Status::Known => seen += 1,
                Status::New(input) => new.push(input),
                Status::Changed(reason) => {
                    plan.changed.push(ChangedInput {
                        path: file.display().to_string(),
                        reason: format!(
                            "{reason}; later epochs of {} are not packed",
                            dir.display()
                        ),
                    });
                    return Ok(());
                }
            }
        }
        plan.known += seen;
        if new.is_empty() {
            continue;
        }
        if seen > 0 {
            plan.changed.push(ChangedInput {
                path: epoch_dir.display().to_string(),
                reason: format!(
                    "partly packed before ({seen} of its files): its files changed; later epochs of {} are not packed",
                    dir.display()
                ),
            });
            return Ok(());
        }
        let mut new = new.into_iter();
        let tombstones = if tombstones.is_file() {
            new.next()
        } else {
            None
        };
        let part_names: Vec<String> = parts.iter().map(|p| p.display().to_string()).collect();
        let mut by_path: HashMap<PathBuf, InputFile> =
            new.map(|input| (input.path.clone(), input)).collect();
        let shards = if part_names.is_empty() {
            Vec::new()
        } else {
            plan_files(&part_names, FormatChoice::Fixed(Format::Text))?
                .0
                .into_iter()
                .filter_map(|file_plan| {
                    let input = by_path.remove(&file_plan.path)?;
                    Some((file_plan, input))
                })
                .collect()
        };
        plan.units.push(Unit {
            name: epoch_dir.display().to_string(),
            tombstones,
            shards,
        });
    }
    Ok(())
}

enum Status {
    Known,
    Changed(String),
    New(InputFile),
}

fn check(path: &Path, known: &HashMap<&str, &PackedInput>) -> Result<Status, PackError> {
    let absolute = std::path::absolute(path).map_err(|e| PackError::io(path, e))?;
    let key = absolute.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| PackError::io(path, e))?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    if let Some(before) = known.get(key.as_str())
        && before.bytes == meta.len()
        && before.modified_ns == modified_ns
        && modified_ns != 0
    {
        return Ok(Status::Known);
    }
    let (xxh3, _) = hash_file(path).map_err(|e| PackError::io(path, e))?;
    Ok(match known.get(key.as_str()) {
        Some(before) if before.xxh3 == xxh3 => Status::Known,
        Some(before) => Status::Changed(format!(
            "changed since it was packed in epoch {} (xxh3 {} then, {xxh3} now); not packed again",
            before.epoch, before.xxh3
        )),
        None => Status::New(InputFile {
            path: path.to_path_buf(),
            record: PackedInput {
                path: key,
                bytes: meta.len(),
                modified_ns,
                xxh3,
                epoch: 0,
            },
        }),
    })
}
