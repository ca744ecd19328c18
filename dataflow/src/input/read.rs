//! One entry point for reading any input file as batches of raw records.

use crate::input::json_array::read_array;
use crate::input::jsonl::{ReadStats, read_lines};
use crate::input::open::open_stream;
use crate::input::parquet::{column_names, read_rows};
use crate::input::{BatchLimits, Batcher, Container, FileKind, InputError, RawBody, RawRecord};
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Read `path` as `kind`, handing batches to `send` (which returns `false` to stop early).
/// `disk_bytes` grows as the file is read, for progress.
pub fn read_file(
    path: &Path,
    kind: FileKind,
    limits: BatchLimits,
    disk_bytes: Arc<AtomicU64>,
    send: &mut dyn FnMut(Vec<RawRecord>) -> bool,
) -> Result<ReadStats, InputError> {
    let mut batcher = Batcher::new(limits, send);
    match kind.container {
        Container::JsonLines => {
            let stream = open_stream(path, kind.compression, disk_bytes)?;
            Ok(read_lines(stream, &mut batcher))
        }
        Container::Json => {
            let is_array = json_is_array(path, kind)?;
            let stream = open_stream(path, kind.compression, disk_bytes)?;
            Ok(if is_array {
                read_array(stream, &mut batcher)
            } else {
                read_lines(stream, &mut batcher)
            })
        }
        Container::Parquet => {
            let mut on_group = |bytes| {
                disk_bytes.fetch_add(bytes, Ordering::Relaxed);
            };
            read_rows(path, &mut batcher, &mut on_group)
        }
    }
}

/// Whether a `.json` file holds an array (its first non-blank byte is `[`) or JSON lines.
fn json_is_array(path: &Path, kind: FileKind) -> Result<bool, InputError> {
    let mut stream = open_stream(path, kind.compression, Arc::default())?;
    loop {
        let buffer = stream.fill_buf().map_err(|e| InputError::io(path, e))?;
        if buffer.is_empty() {
            return Ok(false);
        }
        let skip = buffer
            .iter()
            .take_while(|b| b.is_ascii_whitespace() || **b >= 0x80)
            .count();
        if skip < buffer.len() {
            return Ok(buffer[skip] == b'[');
        }
        let consumed = buffer.len();
        stream.consume(consumed);
    }
}

/// How many records `first_fields` looks at before giving up.
pub const DETECT_SCAN_RECORDS: usize = 100;

/// The field names of the first readable record of `path` (for parquet, its columns), which
/// `auto` decides the format from.
pub fn first_fields(path: &Path, kind: FileKind) -> Result<Vec<String>, InputError> {
    if kind.container == Container::Parquet {
        return column_names(path);
    }
    let mut fields = None;
    let mut scanned = 0usize;
    let mut look = |batch: Vec<RawRecord>| {
        for record in batch {
            scanned += 1;
            if let RawBody::Json(bytes) = &record.body
                && let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(bytes)
            {
                fields = Some(map.keys().cloned().collect());
                return false;
            }
            if scanned >= DETECT_SCAN_RECORDS {
                return false;
            }
        }
        true
    };
    let limits = BatchLimits {
        bytes: 1 << 20,
        records: 1,
    };
    read_file(path, kind, limits, Arc::default(), &mut look)?;
    fields.ok_or(InputError::NoRecordToDetect {
        path: path.to_path_buf(),
        scanned,
    })
}
