//! JSON lines: one record per line; blank lines are counted and passed over.

use crate::input::{Batcher, RawBody, RawRecord};
use crate::reject::{RecordError, RejectCode};
use std::io::{self, BufRead};

/// What a reader saw besides records.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadStats {
    pub blank_lines: u64,
    /// Parquet row groups that could not be read (their rows went on as broken records).
    pub unreadable_row_groups: u64,
}

/// Read `stream` line by line into `batcher`. A read error (a truncated or corrupt compressed
/// stream) becomes one broken record at the line where it happened, and reading stops.
pub fn read_lines(mut stream: impl BufRead, batcher: &mut Batcher<'_>) -> ReadStats {
    let mut stats = ReadStats::default();
    let mut line_no = 0u64;
    loop {
        let mut bytes = Vec::new();
        let result = stream.read_until(b'\n', &mut bytes);
        line_no += 1;
        let body = match result {
            Ok(0) => break,
            Ok(_) => {
                trim_line_end(&mut bytes);
                if line_no == 1 && bytes.starts_with(UTF8_BOM) {
                    bytes.drain(..UTF8_BOM.len());
                }
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    stats.blank_lines += 1;
                    continue;
                }
                RawBody::Json(bytes)
            }
            Err(error) => RawBody::Broken(stream_error(&error, line_no), bytes),
        };
        let stop = matches!(body, RawBody::Broken(..));
        let size = match &body {
            RawBody::Json(b) | RawBody::Broken(_, b) => b.len(),
            RawBody::Row(_) => 0,
        };
        let record = RawRecord {
            line: Some(line_no),
            row: line_no - 1,
            body,
        };
        if !batcher.push(record, size) || stop {
            break;
        }
    }
    batcher.flush();
    stats
}

/// The UTF-8 byte order mark some editors put at the start of a file.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

fn trim_line_end(bytes: &mut Vec<u8>) {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
}

/// Classify an error met while reading at `line_no`.
pub fn stream_error(error: &io::Error, line_no: u64) -> RecordError {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        RecordError::new(
            RejectCode::TruncatedStream,
            format!(
                "the compressed stream ends early, in line {line_no}; the rest of the file is lost"
            ),
        )
    } else {
        RecordError::new(
            RejectCode::ReadError,
            format!("reading stopped in line {line_no}: {error}; the rest of the file is lost"),
        )
    }
}
