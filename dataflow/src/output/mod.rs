//! Output shards: documents written in order, a new shard whenever one reaches its size bound.
//! Shard names are deterministic: `part-00000.jsonl`, `part-00001.jsonl`, ...
//!
//! Shards are written under temporary names (`part-00000.jsonl.tmp`) and get their final
//! names only when the whole run's output is closed and committed: a run that fails or is
//! killed part-way leaves no file named like a finished shard for a later stage to take.

pub mod jsonl;
pub mod parquet;

use crate::doc::UnifiedDoc;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Jsonl,
    Parquet,
}

impl std::fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::Parquet => "parquet",
        })
    }
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "jsonl" => Ok(OutputFormat::Jsonl),
            "parquet" => Ok(OutputFormat::Parquet),
            other => Err(format!(
                "unknown output format `{other}`; expected jsonl or parquet"
            )),
        }
    }
}

/// A finished shard.
#[derive(Clone, Debug, Serialize)]
pub struct ShardInfo {
    pub file: String,
    pub docs: u64,
    /// Size of the shard file on disk.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write parquet shard `{}`: {reason}", path.display())]
    Parquet { path: PathBuf, reason: String },
}

/// What a shard is called until its run commits: `part-00000.jsonl.tmp`.
pub const TMP_SUFFIX: &str = ".tmp";

/// Shards that are written and closed under their temporary names, not yet renamed.
#[must_use = "closed shards keep their temporary names until committed"]
pub struct Closed {
    dir: PathBuf,
    shards: Vec<ShardInfo>,
}

impl Closed {
    fn new(dir: &Path, shards: Vec<ShardInfo>) -> Self {
        Closed {
            dir: dir.to_path_buf(),
            shards,
        }
    }

    /// The shards, with the names they will have once committed.
    pub fn shards(&self) -> &[ShardInfo] {
        &self.shards
    }

    /// Rename every shard to its final name, in order.
    pub fn commit(self) -> Result<Vec<ShardInfo>, OutputError> {
        for shard in &self.shards {
            let done = self.dir.join(&shard.file);
            let tmp = tmp_path(&done);
            std::fs::rename(&tmp, &done).map_err(|e| OutputError::io(&done, e))?;
        }
        Ok(self.shards)
    }
}

/// `part-00000.jsonl` -> `part-00000.jsonl.tmp`
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

/// What a run that stopped part-way left in `dir`, by name, in sorted order (for its error).
pub fn left_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `left` as a short list for an error message: the first few names, then how many more.
pub fn describe_left(left: &[String]) -> String {
    const SHOWN: usize = 6;
    if left.is_empty() {
        return "nothing".into();
    }
    let mut text = left
        .iter()
        .take(SHOWN)
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if left.len() > SHOWN {
        text.push_str(&format!(" and {} more", left.len() - SHOWN));
    }
    text
}

/// Create `dir` if needed; whether it is empty (a run writes only into an empty directory).
pub fn create_empty_dir(dir: &Path) -> Result<bool, OutputError> {
    std::fs::create_dir_all(dir).map_err(|e| OutputError::io(dir, e))?;
    let mut entries = std::fs::read_dir(dir).map_err(|e| OutputError::io(dir, e))?;
    Ok(entries.next().is_none())
}

impl OutputError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        OutputError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A document made ready for writing; the costly part (serialisation) happens in parallel.
pub enum Prepared {
    /// A JSONL line, newline included.
    Line(Vec<u8>),
    Doc(UnifiedDoc),
}

pub enum ShardWriter {
    Jsonl(jsonl::JsonlShards),
    Parquet(parquet::ParquetShards),
}

impl ShardWriter {
    pub fn new(format: OutputFormat, dir: &Path, max_bytes: u64) -> Self {
        match format {
            OutputFormat::Jsonl => ShardWriter::Jsonl(jsonl::JsonlShards::new(dir, max_bytes)),
            OutputFormat::Parquet => {
                ShardWriter::Parquet(parquet::ParquetShards::new(dir, max_bytes))
            }
        }
    }

    /// Turn `doc` into what `write` takes. Safe to call from many threads at once.
    pub fn prepare(format: OutputFormat, doc: UnifiedDoc) -> Prepared {
        match format {
            OutputFormat::Jsonl => Prepared::Line(jsonl::to_line(&doc)),
            OutputFormat::Parquet => Prepared::Doc(doc),
        }
    }

    pub fn write(&mut self, doc: Prepared) -> Result<(), OutputError> {
        match (self, doc) {
            (ShardWriter::Jsonl(w), Prepared::Line(line)) => w.write(&line),
            (ShardWriter::Parquet(w), Prepared::Doc(doc)) => w.write(doc),
            _ => unreachable!("documents are prepared for the writer's own format"),
        }
    }

    /// Close the last shard; every shard keeps its temporary name until `commit`.
    pub fn close(self) -> Result<Closed, OutputError> {
        match self {
            ShardWriter::Jsonl(w) => w.close(),
            ShardWriter::Parquet(w) => w.close(),
        }
    }

    /// Close the last shard, give every shard its final name and list them all.
    pub fn finish(self) -> Result<Vec<ShardInfo>, OutputError> {
        self.close()?.commit()
    }
}

impl ShardInfo {
    pub fn new(path: &Path, docs: u64, bytes: u64) -> Self {
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        ShardInfo { file, docs, bytes }
    }
}

/// `part-00042.<extension>`
pub fn shard_name(index: usize, extension: &str) -> String {
    format!("part-{index:05}.{extension}")
}
