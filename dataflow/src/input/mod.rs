//! Input files: which files a run reads, what container each is, and streaming readers that
//! turn each container into batches of raw records.
//!
//! Readers run on their own thread and hand over bounded batches, so memory stays bounded
//! whatever the file size; a record that cannot even be read (invalid UTF-8, a truncated
//! compressed stream) travels on as a broken record, to be rejected and counted like any other.

pub mod batch;
pub mod counting;
pub mod expand;
pub mod json_array;
pub mod jsonl;
pub mod kind;
pub mod open;
pub mod parquet;
pub mod read;

use crate::reject::{RecordError, RejectCode};
use crate::sources::fields::{Record, kind_of};
use std::path::PathBuf;

pub use batch::{BatchLimits, Batcher};
pub use expand::{Expanded, expand_inputs};
pub use kind::{Compression, Container, FileKind};

/// One record as read from its file, before any format logic.
#[derive(Debug)]
pub struct RawRecord {
    /// 1-based line number, for line-oriented inputs.
    pub line: Option<u64>,
    /// 0-based index of the record in its file (for JSONL, the line number minus one).
    pub row: u64,
    pub body: RawBody,
}

#[derive(Debug)]
pub enum RawBody {
    /// The bytes of one JSON value (a JSONL line or an element of a JSON array).
    Json(Vec<u8>),
    /// A row of a parquet file.
    Row(parquet::ParquetRow),
    /// Reading stopped here; the bytes read so far of the record, if any.
    Broken(RecordError, Vec<u8>),
}

impl RawBody {
    /// The record as a JSON object, or why it is not one.
    pub fn object(&self) -> Result<Record, RecordError> {
        match self {
            RawBody::Json(bytes) => parse_object(bytes),
            RawBody::Row(row) => row
                .to_record()
                .map_err(|e| RecordError::new(RejectCode::ReadError, format!("parquet row: {e}"))),
            RawBody::Broken(error, _) => Err(error.clone()),
        }
    }

    /// The record's raw bytes (none for a parquet row).
    pub fn bytes(&self) -> &[u8] {
        match self {
            RawBody::Json(bytes) | RawBody::Broken(_, bytes) => bytes,
            RawBody::Row(_) => &[],
        }
    }
}

/// The bytes of one JSON record as an object.
fn parse_object(bytes: &[u8]) -> Result<Record, RecordError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        RecordError::new(
            RejectCode::InvalidUtf8,
            format!("invalid UTF-8 at byte {} of the record", e.valid_up_to()),
        )
    })?;
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(object)) => Ok(object),
        Ok(other) => Err(RecordError::new(
            RejectCode::NotAnObject,
            format!("the record is {}, expected an object", kind_of(&other)),
        )),
        Err(error) => Err(RecordError::new(
            RejectCode::MalformedJson,
            error.to_string(),
        )),
    }
}

/// Errors that concern a whole input file (as opposed to one record in it).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("input `{0}` does not exist")]
    NotFound(PathBuf),
    #[error("pattern `{pattern}` is not a valid glob: {reason}")]
    BadGlob { pattern: String, reason: String },
    #[error("pattern `{0}` matches no files")]
    NoMatch(String),
    #[error(
        "`{}`: unsupported file type; expected .jsonl, .ndjson or .json (optionally \
         compressed: .gz, .zst) or .parquet",
        .0.display()
    )]
    UnsupportedType(PathBuf),
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read parquet file `{}`: {reason}", path.display())]
    Parquet { path: PathBuf, reason: String },
    #[error(
        "`{}`: cannot decide its format: its first record has fields [{fields}], which match \
         none of the known formats ({expected}); pass --format explicitly",
        path.display()
    )]
    UnknownFormat {
        path: PathBuf,
        fields: String,
        expected: String,
    },
    #[error("`{}`: cannot decide its format: no readable record in its first {scanned} records", path.display())]
    NoRecordToDetect { path: PathBuf, scanned: usize },
}

impl InputError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        InputError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
