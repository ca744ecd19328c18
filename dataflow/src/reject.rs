//! Why a record could not be used, and the `_rejects.jsonl` line that says so.
//!
//! Every rejected record carries a stable reason code (the snake_case name of
//! [`RejectCode`]), is counted in the run's summary and is written to the side output with
//! enough context (file, line or row, the first bytes of the record) to find it again.

use serde::Serialize;
use std::fmt;

/// Stable reason codes. Scripts match on these names; never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The record is not valid JSON.
    MalformedJson,
    /// The record is valid JSON but not an object.
    NotAnObject,
    /// A field the format needs is absent.
    MissingField,
    /// A field has the wrong JSON type (a number where a string was expected, ...).
    WrongType,
    /// A field the format needs is present but empty (or only whitespace) after normalisation.
    EmptyField,
    /// The document text is empty (or only whitespace).
    EmptyText,
    /// A conversation whose turns do not pair up as user, assistant, user, assistant, ...
    BadConversation,
    /// The record's bytes are not valid UTF-8.
    InvalidUtf8,
    /// A compressed stream ends in the middle (the rest of the file is lost).
    TruncatedStream,
    /// Reading the file failed part-way (corrupt compressed data, an I/O error).
    ReadError,
}

impl RejectCode {
    /// The stable name written to reports.
    pub fn name(self) -> &'static str {
        match self {
            RejectCode::MalformedJson => "malformed_json",
            RejectCode::NotAnObject => "not_an_object",
            RejectCode::MissingField => "missing_field",
            RejectCode::WrongType => "wrong_type",
            RejectCode::EmptyField => "empty_field",
            RejectCode::EmptyText => "empty_text",
            RejectCode::BadConversation => "bad_conversation",
            RejectCode::InvalidUtf8 => "invalid_utf8",
            RejectCode::TruncatedStream => "truncated_stream",
            RejectCode::ReadError => "read_error",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why one record was rejected: a code for machines and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    pub code: RejectCode,
    pub detail: String,
}

impl RecordError {
    pub fn new(code: RejectCode, detail: impl Into<String>) -> Self {
        RecordError {
            code,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// How many bytes of a rejected record are kept in `_rejects.jsonl`.
pub const REJECT_HEAD_BYTES: usize = 200;

/// One line of `_rejects.jsonl`.
#[derive(Clone, Debug, Serialize)]
pub struct RejectRecord {
    pub file: String,
    /// 1-based line number, for line-oriented inputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 0-based index of the record in its file (for JSONL, the line number minus one).
    pub row: u64,
    pub reason: RejectCode,
    pub detail: String,
    /// The first [`REJECT_HEAD_BYTES`] bytes of the record, invalid UTF-8 replaced by U+FFFD.
    pub head: String,
}

impl RejectRecord {
    /// The record at `line`/`row` of `file`, whose bytes are `bytes`, rejected for `error`.
    pub fn new(file: &str, line: Option<u64>, row: u64, error: RecordError, bytes: &[u8]) -> Self {
        RejectRecord {
            file: file.to_string(),
            line,
            row,
            reason: error.code,
            detail: error.detail,
            head: head_of(bytes),
        }
    }
}

/// The first `REJECT_HEAD_BYTES` bytes of `bytes` as text.
pub fn head_of(bytes: &[u8]) -> String {
    let end = bytes.len().min(REJECT_HEAD_BYTES);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}
