//! Output shards: documents written in order, a new shard whenever one reaches its size bound.
//! Shard names are deterministic: `part-00000.jsonl`, `part-00001.jsonl`, ...

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

    /// Close the last shard and list them all.
    pub fn finish(self) -> Result<Vec<ShardInfo>, OutputError> {
        match self {
            ShardWriter::Jsonl(w) => w.finish(),
            ShardWriter::Parquet(w) => w.finish(),
        }
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
