//! `text`: a JSONL field holding the document (web crawl, or any `{"text": ...}` file).

use crate::reject::RecordError;
use crate::sources::fields::{Record, required_text};

pub fn render(record: &Record, field: &str) -> Result<String, RecordError> {
    required_text(record, field)
}
