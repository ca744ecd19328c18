//! Typed access to the fields of a JSON record, with rejections that name the field.

use crate::reject::{RecordError, RejectCode};
use crate::sources::normalize::normalize;
use serde_json::{Map, Value};

/// A JSON object: one source record.
pub type Record = Map<String, Value>;

/// The JSON type of a value, as a word for error messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A string field that must be present. `null` reads as the empty string, as Steel-LLM's
/// step 1 did (its `zh_process` turned `None` into `""`).
pub fn str_field<'a>(record: &'a Record, name: &str) -> Result<&'a str, RecordError> {
    match record.get(name) {
        None => Err(RecordError::new(
            RejectCode::MissingField,
            format!("field `{name}` is missing"),
        )),
        Some(value) => str_value(value, name),
    }
}

/// A string field that may be absent; absent and `null` both read as `""`.
pub fn optional_str_field<'a>(record: &'a Record, name: &str) -> Result<&'a str, RecordError> {
    match record.get(name) {
        None => Ok(""),
        Some(value) => str_value(value, name),
    }
}

/// `value` as a string; `null` is `""`; anything else is a [`RejectCode::WrongType`].
pub fn str_value<'a>(value: &'a Value, what: &str) -> Result<&'a str, RecordError> {
    match value {
        Value::String(s) => Ok(s),
        Value::Null => Ok(""),
        other => Err(RecordError::new(
            RejectCode::WrongType,
            format!("`{what}` is {}, expected a string", kind_of(other)),
        )),
    }
}

/// An array field that must be present.
pub fn array_field<'a>(record: &'a Record, name: &str) -> Result<&'a [Value], RecordError> {
    match record.get(name) {
        None => Err(RecordError::new(
            RejectCode::MissingField,
            format!("field `{name}` is missing"),
        )),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(RecordError::new(
            RejectCode::WrongType,
            format!("field `{name}` is {}, expected an array", kind_of(other)),
        )),
    }
}

/// `value` as an object, or a [`RejectCode::WrongType`] naming `what`.
pub fn object_value<'a>(value: &'a Value, what: &str) -> Result<&'a Record, RecordError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(RecordError::new(
            RejectCode::WrongType,
            format!("{what} is {}, expected an object", kind_of(other)),
        )),
    }
}

/// A normalised text part that must not be empty: the field is required, normalised
/// (NFKC, no `\r`), and rejected as [`RejectCode::EmptyField`] when nothing but whitespace is left.
pub fn required_text(record: &Record, name: &str) -> Result<String, RecordError> {
    let text = normalize(str_field(record, name)?);
    non_empty(text, &format!("field `{name}`"))
}

/// `text` itself, or a [`RejectCode::EmptyField`] naming `what` when it is only whitespace.
pub fn non_empty(text: String, what: &str) -> Result<String, RecordError> {
    if text.trim().is_empty() {
        Err(RecordError::new(
            RejectCode::EmptyField,
            format!("{what} is empty"),
        ))
    } else {
        Ok(text)
    }
}
