//! `wiki`: Chinese Wikipedia dumps, objects with `completion` (a JSON array or JSONL).

use crate::reject::RecordError;
use crate::sources::fields::{Record, required_text};

pub fn render(record: &Record) -> Result<String, RecordError> {
    required_text(record, "completion")
}
