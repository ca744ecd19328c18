//! A job's state directory: `manifest.json` (the ingested files, each with its shard number,
//! content hash and the ordinals of its indexed documents; one summary per epoch; the index
//! segments) and per epoch `epochs/NNNNNN/` holding the cleaned text of documents dropped as
//! duplicates (`dups.jsonl`, to re-admit them after a retraction without reading sources
//! again) and the epoch's index segment (`segment.rs`), until compaction (`compact.rs`)
//! merges segments into `index/NNNNNN-MMMMMM/`.
//!
//! Every file is checked when read: the segments' blocks carry their own xxh3, `dups.jsonl`'s
//! is in the manifest's epoch summary, and the manifest carries the xxh3 of its own bytes.
//! `lock.rs` keeps a second writer out.
//!
//! Commit protocol: an epoch's files are written under `NNNNNN.tmp/` and renamed, then the
//! manifest is written to `manifest.json.tmp`, synced and renamed over the old one. The
//! manifest is the commit point: an epoch directory it does not list is a leftover of a
//! killed run and is removed by the next one, which redoes that work.

use crate::pipeline::lock::{LOCK, StateLock};
use crate::pipeline::segment::SegmentEntry;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "manifest.json";

const FORMAT: &str = "steel-run-state";
/// 3: the index is on disk in segments and probed (2 loaded it whole into memory).
const VERSION: u32 = 4;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// xxh3-64 (hex) of the manifest file's bytes with these 16 digits written as zeros. It
    /// must stay the first field: `manifest_bytes` and `check_manifest_bytes` find it there.
    /// (`default` here and below: so an older manifest reads far enough to be named as one.)
    #[serde(default)]
    pub checksum: String,
    pub format: String,
    pub version: u32,
    /// `Stages::settings_id` of the recipe and dedup settings the state was built with.
    pub settings: String,
    #[serde(default)]
    pub pipeline: PipelineIdentity,
    /// A name for this state (xxh3 of its settings and pipeline identity), which its output's
    /// `_committed.json` carries (`output_mark.rs`).
    #[serde(default)]
    pub id: String,
    pub files: Vec<FileEntry>,
    pub epochs: Vec<EpochSummary>,
    /// The index, in ordinal order.
    #[serde(default)]
    pub segments: Vec<SegmentEntry>,
}

/// Which pipeline a state belongs to: its state and output directories as the manifest names
/// paths (relative to the pipeline file's directory when under it). A second pipeline file
/// pointing at this state from elsewhere, or with another output, differs in one of them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PipelineIdentity {
    pub state: String,
    pub output: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    pub shard: u32,
    pub source: String,
    /// Relative to the pipeline file's directory when under it, else absolute.
    pub path: String,
    pub size: u64,
    /// xxh3-64 of the file's bytes, hex.
    pub hash: String,
    /// Its modification time when it was discovered (seconds and nanoseconds since the Unix
    /// epoch): a later run that finds the same size and time does not read it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<(u64, u32)>,
    pub epoch: u64,
    pub docs: u64,
    pub rejected: u64,
    /// The epoch that retracted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retracted_in: Option<u64>,
    /// Its documents that passed the filters are the index's ordinals
    /// `first_ordinal..first_ordinal + passed`.
    #[serde(default)]
    pub first_ordinal: u32,
    #[serde(default)]
    pub passed: u32,
}

impl FileEntry {
    pub fn ordinals(&self) -> Range<u32> {
        self.first_ordinal..self.first_ordinal + self.passed
    }
}

/// Per source, what one epoch changed. Summed over epochs it is the job's current state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SourceCounts {
    pub docs_in: i64,
    pub rejected: i64,
    pub filtered: i64,
    pub exact_dups: i64,
    pub near_dups: i64,
    pub kept: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EpochSummary {
    pub epoch: u64,
    /// `run`, `watch` or `retract`.
    pub kind: String,
    /// Seconds since the Unix epoch when it committed.
    pub committed_at: u64,
    pub seconds: f64,
    pub files: usize,
    pub bytes_in: u64,
    pub readmitted: u64,
    pub tombstoned: u64,
    /// xxh3-64 (hex) of the epoch's `dups.jsonl`, checked whenever it is read.
    #[serde(default)]
    pub dups_hash: String,
    pub sources: BTreeMap<String, SourceCounts>,
    /// Documents in the index after this epoch.
    pub index_docs: u64,
    /// Peak resident memory of the run, bytes (0 where unknown).
    pub peak_rss: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory `{}`: {reason}", .dir.display())]
    Invalid { dir: PathBuf, reason: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Manifest {
    pub fn next_shard(&self) -> u32 {
        self.files.iter().map(|f| f.shard + 1).max().unwrap_or(1)
    }

    pub fn last_epoch(&self) -> u64 {
        self.epochs.last().map_or(0, |e| e.epoch)
    }

    /// The ordinal the next indexed document gets.
    pub fn next_ordinal(&self) -> u32 {
        self.segments.last().map_or(0, |s| s.end())
    }

    /// The ordinals of retracted files and of the files of `shards` (being retracted).
    pub fn retracted_ordinals(&self, shards: &[u32]) -> Vec<Range<u32>> {
        self.files
            .iter()
            .filter(|f| f.retracted_in.is_some() || shards.contains(&f.shard))
            .map(FileEntry::ordinals)
            .filter(|r| !r.is_empty())
            .collect()
    }

    /// Indexed documents that are live.
    pub fn index_docs(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.retracted_in.is_none())
            .map(|f| f.passed as u64)
            .sum()
    }

    /// Refuse a pipeline other than the one the state was built by: another state or output
    /// location, or sources missing that have files in the state (new sources are welcome).
    fn check_pipeline(
        &self,
        pipeline: &PipelineIdentity,
        sources: &[String],
    ) -> Result<(), String> {
        let missing: BTreeSet<&str> = self
            .files
            .iter()
            .filter(|f| f.retracted_in.is_none() && !sources.contains(&f.source))
            .map(|f| f.source.as_str())
            .collect();
        if self.pipeline == *pipeline && missing.is_empty() {
            return Ok(());
        }
        let names: BTreeSet<&str> = self.files.iter().map(|f| f.source.as_str()).collect();
        Err(format!(
            "it belongs to another pipeline (state `{}`, output `{}`, sources {}); this one has state `{}`, output `{}`, sources {}{}; use a new state directory (or `steel retract` a source before removing it)",
            self.pipeline.state,
            self.pipeline.output,
            names.into_iter().collect::<Vec<_>>().join(", "),
            pipeline.state,
            pipeline.output,
            sources.join(", "),
            if missing.is_empty() {
                String::new()
            } else {
                format!(
                    " (missing {})",
                    missing.into_iter().collect::<Vec<_>>().join(", ")
                )
            }
        ))
    }
}

/// The manifest as written: pretty JSON whose first field is the checksum of these bytes.
fn manifest_bytes(manifest: &Manifest) -> Vec<u8> {
    let mut unsummed = manifest.clone();
    unsummed.checksum = NO_CHECKSUM.into();
    let mut bytes = serde_json::to_vec_pretty(&unsummed).expect("a manifest always serialises");
    assert!(bytes.starts_with(CHECKSUM_PREFIX.as_bytes()));
    let sum = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
    bytes[CHECKSUM_PREFIX.len()..CHECKSUM_PREFIX.len() + 16].copy_from_slice(sum.as_bytes());
    bytes
}

/// Check the checksum `manifest_bytes` wrote; `Err` says what is wrong.
fn check_manifest_bytes(bytes: &[u8]) -> Result<(), String> {
    let at = CHECKSUM_PREFIX.len();
    if !bytes.starts_with(CHECKSUM_PREFIX.as_bytes()) || bytes.len() < at + 16 {
        return Err("it does not start with its checksum".into());
    }
    let claimed = String::from_utf8_lossy(&bytes[at..at + 16]).into_owned();
    let mut unsummed = bytes.to_vec();
    unsummed[at..at + 16].copy_from_slice(NO_CHECKSUM.as_bytes());
    let actual = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&unsummed));
    if claimed != actual {
        return Err(format!(
            "checksum mismatch (the file says {claimed}, its bytes hash to {actual})"
        ));
    }
    Ok(())
}

const CHECKSUM_PREFIX: &str = "{\n  \"checksum\": \"";
const NO_CHECKSUM: &str = "0000000000000000";

pub struct StateDir {
    pub dir: PathBuf,
    /// Held by a writer for as long as it lives; `None` for a reader (`steel status`).
    lock: Option<StateLock>,
}

impl StateDir {
    /// Open `dir` to write, creating it when missing or empty, and take its lock. A directory
    /// with other files and no manifest, with a manifest we cannot read or check, built with
    /// other settings or by another pipeline, or locked by another run, is refused and left
    /// untouched.
    pub fn open(
        dir: &Path,
        settings: &str,
        pipeline: &PipelineIdentity,
        sources: &[String],
    ) -> Result<(StateDir, Manifest), StateError> {
        let invalid = |reason: String| StateError::Invalid {
            dir: dir.to_path_buf(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let state = StateDir {
            dir: dir.to_path_buf(),
            lock: Some(StateLock::take(dir)?),
        };
        let path = dir.join(MANIFEST);
        if !path.exists() {
            let foreign: Vec<String> = std::fs::read_dir(dir)
                .map_err(io_error(dir))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !["epochs", "manifest.json.tmp", LOCK].contains(&name.as_str()))
                .collect();
            if !foreign.is_empty() {
                return Err(invalid(format!(
                    "it holds {} but no {MANIFEST}; it is not a steel run state (nothing was changed)",
                    foreign.join(", ")
                )));
            }
            // From what the state is (so the same job writes the same bytes everywhere), not
            // from when it was made.
            let seed = format!("{settings}\n{}\n{}", pipeline.state, pipeline.output);
            let manifest = Manifest {
                format: FORMAT.into(),
                version: VERSION,
                settings: settings.into(),
                pipeline: pipeline.clone(),
                id: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes())),
                ..Manifest::default()
            };
            return Ok((state, manifest));
        }
        let manifest = state.read_manifest()?;
        if manifest.settings != settings {
            return Err(invalid(format!(
                "it was built with other recipe or dedup settings ({} here, {} now); use a new state directory",
                manifest.settings, settings
            )));
        }
        manifest
            .check_pipeline(pipeline, sources)
            .map_err(invalid)?;
        Ok((state, manifest))
    }

    /// Open `dir` to read only (no lock): `steel status`.
    pub fn reader(dir: &Path) -> StateDir {
        StateDir {
            dir: dir.to_path_buf(),
            lock: None,
        }
    }

    /// The holder of a stale lock this run took over (a killed earlier run), for its report.
    pub fn stale_lock(&self) -> Option<&str> {
        self.lock.as_ref().and_then(|l| l.stale.as_deref())
    }

    /// Read and check the manifest and that every committed epoch's files are there.
    pub fn read_manifest(&self) -> Result<Manifest, StateError> {
        let path = self.dir.join(MANIFEST);
        let invalid = |reason: String| StateError::Invalid {
            dir: self.dir.clone(),
            reason,
        };
        let bytes = std::fs::read(&path).map_err(io_error(&path))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("{MANIFEST} is corrupt: {e}")))?;
        if manifest.format != FORMAT || manifest.version != VERSION {
            return Err(invalid(format!(
                "{MANIFEST} is `{}` version {}, not {FORMAT} version {VERSION}{}",
                manifest.format,
                manifest.version,
                if manifest.format == FORMAT && manifest.version < VERSION {
                    " (made by an older steel, whose index this one cannot read: rebuild it by running the job again with a new, empty state directory and a new output directory; the sources are read again)"
                } else {
                    ""
                }
            )));
        }
        check_manifest_bytes(&bytes).map_err(|e| invalid(format!("{MANIFEST} is corrupt: {e}")))?;
        for epoch in &manifest.epochs {
            if !self.epoch_dir(epoch.epoch).join("dups.jsonl").is_file() {
                return Err(invalid(format!(
                    "committed epoch {} has no dups.jsonl",
                    epoch.epoch
                )));
            }
        }
        for segment in &manifest.segments {
            for name in crate::pipeline::segment::FILES {
                if !self.dir.join(&segment.dir).join(name).is_file() {
                    return Err(invalid(format!(
                        "index segment {} has no {name}",
                        segment.dir
                    )));
                }
            }
        }
        Ok(manifest)
    }

    pub fn epoch_dir(&self, epoch: u64) -> PathBuf {
        self.dir.join("epochs").join(format!("{epoch:06}"))
    }

    /// Remove what a killed run left after the last committed epoch.
    pub fn remove_uncommitted(&self, last_epoch: u64) -> Result<Vec<PathBuf>, StateError> {
        remove_epochs_after(&self.dir.join("epochs"), last_epoch)
    }

    /// Write the manifest atomically: temp file, fsync, rename, fsync the directory.
    pub fn commit(&self, manifest: &Manifest) -> Result<(), StateError> {
        let path = self.dir.join(MANIFEST);
        let tmp = self.dir.join("manifest.json.tmp");
        write_synced(&tmp, &manifest_bytes(manifest))?;
        crate::pipeline::fail_point::fail_point("before-manifest-rename");
        std::fs::rename(&tmp, &path).map_err(io_error(&path))?;
        sync_dir(&self.dir)
    }
}

/// Remove `NNNNNN` and `NNNNNN.tmp` entries of `dir` numbered above `last_epoch`.
pub fn remove_epochs_after(dir: &Path, last_epoch: u64) -> Result<Vec<PathBuf>, StateError> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(removed);
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let number = name.strip_prefix("epoch-").unwrap_or(&name);
        let number = number.strip_suffix(".tmp").unwrap_or(number);
        if let Ok(epoch) = number.parse::<u64>()
            && (epoch > last_epoch || name.ends_with(".tmp"))
        {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(io_error(&path))?;
            removed.push(path);
        }
    }
    removed.sort();
    Ok(removed)
}

pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let mut file = File::create(path).map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

pub fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// A line-oriented state file (`dups.jsonl`) whose xxh3-64 is computed as it is written; the
/// manifest keeps the hash and `read_hashed_lines` checks it.
pub struct HashedLines {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: xxhash_rust::xxh3::Xxh3,
}

impl HashedLines {
    pub fn create(path: &Path) -> Result<Self, StateError> {
        let file = File::create(path).map_err(io_error(path))?;
        Ok(HashedLines {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            hasher: xxhash_rust::xxh3::Xxh3::new(),
        })
    }

    /// Write `line` and a newline.
    pub fn line(&mut self, line: &str) -> Result<(), StateError> {
        for bytes in [line.as_bytes(), b"\n"] {
            self.hasher.update(bytes);
            self.out.write_all(bytes).map_err(io_error(&self.path))?;
        }
        Ok(())
    }

    /// Flush and sync; the file's xxh3-64, hex.
    pub fn finish(self) -> Result<String, StateError> {
        let file = self.out.into_inner().map_err(|e| StateError::Io {
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_error(&self.path))?;
        Ok(format!("{:016x}", self.hasher.digest()))
    }
}

/// Call `each` on every line of `path`; fail if the whole file's xxh3-64 is not `hash` (the
/// lines seen so far must then be thrown away: nothing is committed after an error).
pub fn read_hashed_lines(
    path: &Path,
    hash: &str,
    mut each: impl FnMut(&[u8]) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let mut reader = BufReader::new(File::open(path).map_err(io_error(path))?);
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(io_error(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&line);
        each(line.strip_suffix(b"\n").unwrap_or(&line))?;
    }
    let actual = format!("{:016x}", hasher.digest());
    if actual != hash {
        return Err(StateError::Invalid {
            dir: path.to_path_buf(),
            reason: format!(
                "corrupt state file: its xxh3 is {actual}, the manifest says {hash}; documents it holds cannot be re-admitted"
            ),
        });
    }
    Ok(())
}
