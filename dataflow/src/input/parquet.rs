//! Parquet files, read one row group at a time (polars), each row becoming a JSON object.
//!
//! A row group that cannot be decoded (a corrupt page, a decompression error) does not stop
//! the file: each of its rows goes on as a broken record with reason `read_error`, naming the
//! row group and its rows, and reading continues with the next row group.

use crate::input::jsonl::ReadStats;
use crate::input::{Batcher, InputError, RawBody, RawRecord};
use crate::reject::{RecordError, RejectCode};
use crate::sources::fields::Record;
use polars::prelude::*;
use serde_json::Value;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// The column names of a parquet file, read from its footer.
pub fn column_names(path: &Path) -> Result<Vec<String>, InputError> {
    let mut reader = ParquetReader::new(open(path)?);
    let schema = reader.schema().map_err(|e| parquet_error(path, e))?;
    Ok(schema.iter_names().map(|name| name.to_string()).collect())
}

/// One row of a decoded row group; it becomes a JSON object in the parallel stage.
#[derive(Clone)]
pub struct ParquetRow {
    frame: Arc<DataFrame>,
    index: usize,
}

impl std::fmt::Debug for ParquetRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ParquetRow({} of {})", self.index, self.frame.height())
    }
}

impl ParquetRow {
    /// The row as a JSON object, nested columns (lists, structs) included, so that
    /// conversations stored as a list of structs read like their JSON counterparts.
    pub fn to_record(&self) -> PolarsResult<Record> {
        let mut record = Record::new();
        for column in self.frame.columns() {
            let value = if column.dtype() == &DataType::String {
                // The common case, without building an AnyValue.
                column
                    .str()?
                    .get(self.index)
                    .map_or(Value::Null, |s| Value::String(s.to_owned()))
            } else {
                any_to_json(column.get(self.index)?)
            };
            record.insert(column.name().to_string(), value);
        }
        Ok(record)
    }
}

/// Stream every row of `path` into `batcher`. Memory holds about one row group at a time
/// (the batches in flight share it). A row group that cannot be read becomes one broken
/// record per row (see the module comment) and is counted in the stats.
pub fn read_rows(
    path: &Path,
    batcher: &mut Batcher<'_>,
    on_row_group: &mut dyn FnMut(u64),
) -> Result<ReadStats, InputError> {
    let mut reader = ParquetReader::new(open(path)?);
    let metadata = reader
        .get_metadata()
        .map_err(|e| parquet_error(path, e))?
        .clone();
    let mut stats = ReadStats::default();
    let groups = metadata.row_groups.len();
    let mut offset = 0usize;
    for (group_index, group) in metadata.row_groups.iter().enumerate() {
        let rows = group.num_rows();
        let read = read_row_group(path, &metadata, offset, rows);
        let more = match read {
            Ok(frame) => push_rows(frame, offset, batcher),
            Err(reason) => {
                stats.unreadable_row_groups += 1;
                let error = RecordError::new(
                    RejectCode::ReadError,
                    format!(
                        "row group {group_index} of {groups} (rows {offset} to {}) cannot be \
                         read: {reason}",
                        (offset + rows).saturating_sub(1)
                    ),
                );
                push_lost_rows(&error, offset, rows, batcher)
            }
        };
        if !more {
            return Ok(stats);
        }
        offset += rows;
        on_row_group(group.compressed_size() as u64);
    }
    batcher.flush();
    Ok(stats)
}

/// The `rows` rows from `offset` (one row group) as one frame, or why they cannot be read.
/// A decoder that panics on corrupt data counts as an error too.
fn read_row_group(
    path: &Path,
    metadata: &FileMetadataRef,
    offset: usize,
    rows: usize,
) -> Result<DataFrame, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut reader = ParquetReader::new(file);
        reader.set_metadata(metadata.clone());
        reader.with_slice(Some((offset, rows))).finish()
    }));
    match read {
        Ok(Ok(frame)) => Ok(frame),
        Ok(Err(error)) => Err(error.to_string()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the parquet decoder failed".into())),
    }
}

/// Hand the rows of one decoded row group to `batcher`; `false` if the consumer stopped.
fn push_rows(mut frame: DataFrame, offset: usize, batcher: &mut Batcher<'_>) -> bool {
    // One chunk per column makes each row lookup a direct index.
    frame.rechunk_mut();
    let row_bytes = frame.estimated_size() / frame.height().max(1);
    let frame = Arc::new(frame);
    for index in 0..frame.height() {
        let row = ParquetRow {
            frame: frame.clone(),
            index,
        };
        let raw = RawRecord {
            line: None,
            row: (offset + index) as u64,
            body: RawBody::Row(row),
        };
        if !batcher.push(raw, row_bytes) {
            return false;
        }
    }
    true
}

/// One broken record for each of the `rows` rows from `offset` of an unreadable row group.
fn push_lost_rows(
    error: &RecordError,
    offset: usize,
    rows: usize,
    batcher: &mut Batcher<'_>,
) -> bool {
    for row in offset..offset + rows {
        let raw = RawRecord {
            line: None,
            row: row as u64,
            body: RawBody::Broken(error.clone(), Vec::new()),
        };
        if !batcher.push(raw, error.detail.len()) {
            return false;
        }
    }
    true
}

fn open(path: &Path) -> Result<File, InputError> {
    File::open(path).map_err(|e| InputError::io(path, e))
}

fn parquet_error(path: &Path, error: PolarsError) -> InputError {
    InputError::Parquet {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

/// One parquet cell as JSON. Binary that is valid UTF-8 reads as a string (many writers store
/// text that way); types JSON has no word for (dates, decimals, ...) read as their text form.
fn any_to_json(value: AnyValue) -> Value {
    match value {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(b),
        AnyValue::String(s) => Value::String(s.to_owned()),
        AnyValue::StringOwned(s) => Value::String(s.to_string()),
        AnyValue::UInt8(v) => Value::from(v),
        AnyValue::UInt16(v) => Value::from(v),
        AnyValue::UInt32(v) => Value::from(v),
        AnyValue::UInt64(v) => Value::from(v),
        AnyValue::Int8(v) => Value::from(v),
        AnyValue::Int16(v) => Value::from(v),
        AnyValue::Int32(v) => Value::from(v),
        AnyValue::Int64(v) => Value::from(v),
        AnyValue::Float32(v) => Value::from(f64::from(v)),
        AnyValue::Float64(v) => Value::from(v),
        AnyValue::Binary(bytes) => binary_to_json(bytes),
        AnyValue::BinaryOwned(bytes) => binary_to_json(&bytes),
        AnyValue::List(items) => Value::Array(items.iter().map(any_to_json).collect()),
        AnyValue::Struct(_, _, fields) => struct_to_json(fields, value._iter_struct_av()),
        AnyValue::StructOwned(parts) => {
            let (values, fields) = *parts;
            struct_to_json(&fields, values.into_iter())
        }
        other => Value::String(other.to_string()),
    }
}

fn struct_to_json<'a>(fields: &[Field], values: impl Iterator<Item = AnyValue<'a>>) -> Value {
    let pairs = fields.iter().zip(values);
    Value::Object(
        pairs
            .map(|(f, v)| (f.name().to_string(), any_to_json(v)))
            .collect(),
    )
}

fn binary_to_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => Value::Array(bytes.iter().map(|b| Value::from(*b)).collect()),
    }
}
