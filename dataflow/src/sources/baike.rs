//! `baike`: Baidu Baike articles, `{"title", "summary", "sections": [{"title", "content"}]}`.

use crate::reject::{RecordError, RejectCode};
use crate::sources::fields::{Record, array_field, object_value, required_text, str_field};
use crate::sources::normalize::normalize;

/// `title：summary` followed by `section title：section content` for every section, all
/// concatenated without separators (Steel-LLM's step 1). `null` fields read as empty.
///
/// The title must not be empty. Steel also dropped every article whose `summary` is empty,
/// which in the real dump is most of them (694 of the 1,000 sample records have
/// `"summary": null` but full sections); we keep those (`title：` then the sections) and
/// reject an article only when summary and section contents are all empty.
pub fn render(record: &Record) -> Result<String, RecordError> {
    let mut text = required_text(record, "title")?;
    text.push('：');
    let summary = normalize(str_field(record, "summary")?);
    let mut has_body = !summary.trim().is_empty();
    text.push_str(&summary);
    for (index, section) in array_field(record, "sections")?.iter().enumerate() {
        let section = object_value(section, &format!("sections[{index}]"))?;
        let content = normalize(str_field(section, "content")?);
        has_body |= !content.trim().is_empty();
        text.push_str(&normalize(str_field(section, "title")?));
        text.push('：');
        text.push_str(&content);
    }
    if !has_body {
        return Err(RecordError::new(
            RejectCode::EmptyField,
            "the article has a title but its summary and every section are empty",
        ));
    }
    Ok(text)
}
