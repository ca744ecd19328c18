//! `starcoder`: StarCoder code parquet, `content` kept byte for byte (no NFKC, no `\r` removal).

use crate::reject::{RecordError, RejectCode};
use crate::sources::fields::{Record, str_field};

pub fn render(record: &Record) -> Result<String, RecordError> {
    let content = str_field(record, "content")?;
    if content.trim().is_empty() {
        return Err(RecordError::new(
            RejectCode::EmptyText,
            "field `content` is empty",
        ));
    }
    Ok(content.to_owned())
}
