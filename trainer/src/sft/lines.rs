//! JSONL files read line by line, in batches of lines (so each batch can be tokenized in
//! parallel while memory stays bounded by the batch, not the file).

use crate::sft::error::SftError;
use crate::sft::report::{SkipKind, Skipped};
use std::io::BufRead;
use std::path::Path;

/// Lines per batch.
pub const BATCH_LINES: usize = 4096;
/// Bytes per batch (a batch ends at the first line past this).
pub const BATCH_BYTES: usize = 16 << 20;

/// A non-blank line: its number (1 for the first) and its text, or why it has none.
pub struct Line {
    pub number: u64,
    pub text: Result<String, Skipped>,
}

/// What reading a file counted, and the file as read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineCounts {
    pub lines: u64,
    pub blank: u64,
    /// The file's size and xxh3-64 (hex), of the bytes read.
    pub bytes: u64,
    pub xxh3: String,
}

/// Call `each` on the non-blank lines of `path` in batches, in order. Lines end at `\n` (a
/// `\r` before it is dropped); the last line need not end in one.
pub fn read_batches(
    path: &Path,
    each: &mut dyn FnMut(Vec<Line>) -> Result<(), SftError>,
) -> Result<LineCounts, SftError> {
    let file = std::fs::File::open(path).map_err(|e| SftError::io(path, e))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let name = path.display().to_string();
    let mut counts = LineCounts::default();
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        let n = reader
            .read_until(b'\n', &mut bytes)
            .map_err(|e| SftError::io(path, e))?;
        if n == 0 {
            break;
        }
        counts.lines += 1;
        counts.bytes += n as u64;
        hasher.update(&bytes);
        let line = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            counts.blank += 1;
            continue;
        }
        batch_bytes += line.len();
        let text = match std::str::from_utf8(line) {
            Ok(text) => Ok(text.to_string()),
            Err(e) => Err(Skipped {
                file: name.clone(),
                line: counts.lines,
                kind: SkipKind::NotUtf8,
                reason: format!("not UTF-8: {e}"),
            }),
        };
        batch.push(Line {
            number: counts.lines,
            text,
        });
        if batch.len() >= BATCH_LINES || batch_bytes >= BATCH_BYTES {
            each(std::mem::take(&mut batch))?;
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        each(batch)?;
    }
    counts.xxh3 = format!("{:016x}", hasher.digest());
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_blank_ones_counted_and_bad_bytes_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, b"one\r\n\n  \ntwo\n\xff\xfe\nthree").unwrap();
        let mut seen = Vec::new();
        let counts = read_batches(&path, &mut |batch| {
            seen.extend(batch);
            Ok(())
        })
        .unwrap();
        assert_eq!((counts.lines, counts.blank, counts.bytes), (6, 2, 21));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            counts.xxh3,
            steel_dataflow::pack::manifest::xxh3_hex(&bytes)
        );
        let numbers: Vec<u64> = seen.iter().map(|l| l.number).collect();
        assert_eq!(numbers, [1, 4, 5, 6]);
        assert_eq!(seen[0].text.as_deref().unwrap(), "one");
        assert_eq!(seen[3].text.as_deref().unwrap(), "three");
        let bad = seen[2].text.as_ref().unwrap_err();
        assert_eq!((bad.kind, bad.line), (SkipKind::NotUtf8, 5));
        assert!(read_batches(&dir.path().join("missing"), &mut |_| Ok(())).is_err());
    }
}
