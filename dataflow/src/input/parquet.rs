//! Parquet files, read one row group at a time (polars), each row becoming a JSON object.

use crate::input::jsonl::ReadStats;
use crate::input::{Batcher, InputError, RawBody, RawRecord};
use crate::sources::fields::Record;
use polars::prelude::*;
use serde_json::Value;
use std::fs::File;
use std::path::Path;

/// The column names of a parquet file, read from its footer.
pub fn column_names(path: &Path) -> Result<Vec<String>, InputError> {
    let mut reader = ParquetReader::new(open(path)?);
    let schema = reader.schema().map_err(|e| parquet_error(path, e))?;
    Ok(schema.iter_names().map(|name| name.to_string()).collect())
}

/// Stream every row of `path` into `batcher`. Memory holds one row group at a time.
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
    let mut offset = 0usize;
    for group in &metadata.row_groups {
        let rows = group.num_rows();
        let mut reader = ParquetReader::new(open(path)?);
        reader.set_metadata(metadata.clone());
        let frame = reader
            .with_slice(Some((offset, rows)))
            .finish()
            .map_err(|e| parquet_error(path, e))?;
        for (index, record) in frame_to_records(&frame)
            .map_err(|e| parquet_error(path, e))?
            .into_iter()
            .enumerate()
        {
            let size: usize = record.values().map(value_size).sum();
            let raw = RawRecord {
                line: None,
                row: (offset + index) as u64,
                body: RawBody::Object(record),
            };
            if !batcher.push(raw, size) {
                return Ok(ReadStats::default());
            }
        }
        offset += rows;
        on_row_group(group.compressed_size() as u64);
    }
    batcher.flush();
    Ok(ReadStats::default())
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

fn value_size(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        _ => 8,
    }
}

/// The rows of `frame` as JSON objects. Strings, numbers, booleans and nulls keep their
/// value; nested columns (lists, structs, binary) keep only their JSON kind (an empty array or
/// object), enough for a format to say "expected a string, found an array".
fn frame_to_records(frame: &DataFrame) -> PolarsResult<Vec<Record>> {
    let mut records = vec![Record::new(); frame.height()];
    for column in frame.columns() {
        let values = column_values(column)?;
        for (record, value) in records.iter_mut().zip(values) {
            record.insert(column.name().to_string(), value);
        }
    }
    Ok(records)
}

fn column_values(column: &Column) -> PolarsResult<Vec<Value>> {
    let dtype = column.dtype();
    Ok(if dtype == &DataType::String {
        let strings = column.str()?;
        strings
            .iter()
            .map(|s| s.map_or(Value::Null, |s| Value::String(s.to_owned())))
            .collect()
    } else if dtype == &DataType::Boolean {
        column
            .bool()?
            .iter()
            .map(|b| b.map_or(Value::Null, Value::Bool))
            .collect()
    } else if dtype.is_integer() {
        let ints = column.cast(&DataType::Int64)?;
        ints.i64()?
            .iter()
            .map(|i| i.map_or(Value::Null, Value::from))
            .collect()
    } else if dtype.is_float() {
        let floats = column.cast(&DataType::Float64)?;
        floats
            .f64()?
            .iter()
            .map(|f| f.map_or(Value::Null, Value::from))
            .collect()
    } else if matches!(dtype, DataType::Struct(_)) {
        vec![Value::Object(Record::new()); column.len()]
    } else {
        vec![Value::Array(Vec::new()); column.len()]
    })
}
