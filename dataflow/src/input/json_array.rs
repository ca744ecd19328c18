//! A JSON array of records, streamed element by element (the file is never loaded whole).

use crate::input::jsonl::{ReadStats, UTF8_BOM};
use crate::input::{Batcher, RawBody, RawRecord};
use crate::reject::{RecordError, RejectCode};
use serde::de::{self, Deserializer as _, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;
use std::io::BufRead;

/// Stream the elements of the top-level array in `stream` into `batcher`. A syntax error
/// part-way cannot be skipped over (the rest of the array has no known boundaries), so it
/// becomes one broken record and reading stops.
pub fn read_array(mut stream: impl BufRead, batcher: &mut Batcher<'_>) -> ReadStats {
    // A UTF-8 byte order mark before the `[` is not JSON; editors on Windows write one.
    if stream
        .fill_buf()
        .is_ok_and(|head| head.starts_with(UTF8_BOM))
    {
        stream.consume(UTF8_BOM.len());
    }
    let mut deserializer = serde_json::Deserializer::from_reader(stream);
    let mut next_row = 0u64;
    let visitor = ElementVisitor {
        batcher: &mut *batcher,
        next_row: &mut next_row,
    };
    let outcome = deserializer
        .deserialize_seq(visitor)
        .and_then(|()| deserializer.end());
    if let Err(error) = outcome
        && !error.to_string().contains(CONSUMER_STOPPED)
    {
        let code = if error.is_io() {
            RejectCode::ReadError
        } else {
            RejectCode::MalformedJson
        };
        let detail = format!(
            "the JSON array breaks after element {next_row}: {error}; the rest of the file is lost"
        );
        let record = RawRecord {
            line: Some(error.line() as u64),
            row: next_row,
            body: RawBody::Broken(RecordError::new(code, detail), Vec::new()),
        };
        batcher.push(record, 0);
    }
    batcher.flush();
    ReadStats::default()
}

const CONSUMER_STOPPED: &str = "steel: consumer stopped";

struct ElementVisitor<'b, 'a> {
    batcher: &'b mut Batcher<'a>,
    next_row: &'b mut u64,
}

impl<'de> Visitor<'de> for ElementVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(element) = seq.next_element::<Box<RawValue>>()? {
            let bytes = element.get().as_bytes().to_vec();
            let size = bytes.len();
            let record = RawRecord {
                line: None,
                row: *self.next_row,
                body: RawBody::Json(bytes),
            };
            *self.next_row += 1;
            if !self.batcher.push(record, size) {
                return Err(de::Error::custom(CONSUMER_STOPPED));
            }
        }
        Ok(())
    }
}
