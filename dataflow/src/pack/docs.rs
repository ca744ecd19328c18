//! Which documents a chunk holds: `CHUNK.docs` beside each chunk file, the list of its
//! segments. A segment is the part of one document that lies in the chunk (a document's
//! tokens run on across chunk boundaries, so its first and last segments may be partial).
//!
//! Layout, little-endian: the magic `STLDOCS1`, then 16 bytes per segment — `file: u32` (an
//! index into the manifest's `doc_files`), `start: u32` (the segment's first token in the
//! chunk), `row: u64` (the document's row in that file). A segment ends where the next one
//! starts, the last one at the chunk's document tokens. The manifest keeps the file's xxh3.

use crate::pack::PackError;
use std::path::Path;

const MAGIC: &[u8; 8] = b"STLDOCS1";
const SEGMENT_BYTES: usize = 16;

/// The identity of a document: the `doc_files` index of its file, and its row there.
pub type DocKey = (u32, u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub file: u32,
    pub start: u32,
    pub row: u64,
}

impl Segment {
    pub fn key(&self) -> DocKey {
        (self.file, self.row)
    }
}

pub fn encode(segments: &[Segment]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(MAGIC.len() + segments.len() * SEGMENT_BYTES);
    bytes.extend_from_slice(MAGIC);
    for s in segments {
        bytes.extend_from_slice(&s.file.to_le_bytes());
        bytes.extend_from_slice(&s.start.to_le_bytes());
        bytes.extend_from_slice(&s.row.to_le_bytes());
    }
    bytes
}

pub fn decode(bytes: &[u8], path: &Path) -> Result<Vec<Segment>, PackError> {
    let body = bytes
        .strip_prefix(MAGIC)
        .filter(|body| body.len() % SEGMENT_BYTES == 0)
        .ok_or_else(|| PackError::Chunk {
            path: path.to_path_buf(),
            reason: "not a document list (bad magic or length)".into(),
        })?;
    Ok(body
        .chunks_exact(SEGMENT_BYTES)
        .map(|b| Segment {
            file: u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
            start: u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
            row: u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
        })
        .collect())
}

/// Each segment's token range `[start, end)` in a chunk holding `tokens` document tokens.
/// Starts that go back, or past `tokens`, are a damaged list: an error naming `path`.
pub fn ranges(
    segments: &[Segment],
    tokens: u64,
    path: &Path,
) -> Result<Vec<(Segment, std::ops::Range<usize>)>, PackError> {
    let mut out = Vec::with_capacity(segments.len());
    for (i, s) in segments.iter().enumerate() {
        let end = segments.get(i + 1).map_or(tokens, |n| n.start as u64);
        if s.start as u64 > end {
            return Err(PackError::Chunk {
                path: path.to_path_buf(),
                reason: format!(
                    "segment {i} starts at token {}, after its end {end} (the chunk holds {tokens})",
                    s.start
                ),
            });
        }
        out.push((*s, s.start as usize..end as usize));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_round_trip_and_give_segment_ranges() {
        let segments = vec![
            Segment {
                file: 0,
                start: 0,
                row: 7,
            },
            Segment {
                file: 2,
                start: 5,
                row: u64::MAX,
            },
            Segment {
                file: 2,
                start: 9,
                row: 0,
            },
        ];
        let bytes = encode(&segments);
        assert_eq!(bytes.len(), 8 + 3 * 16);
        assert_eq!(decode(&bytes, Path::new("x")).unwrap(), segments);
        let ranges: Vec<_> = ranges(&segments, 12, Path::new("x"))
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(ranges, vec![0..5, 5..9, 9..12]);
        assert!(
            super::ranges(&segments, 8, Path::new("x")).is_err(),
            "9 is past 8"
        );
        assert!(decode(&bytes[..bytes.len() - 1], Path::new("x")).is_err());
        assert!(decode(b"STLDOCS2", Path::new("x")).is_err());
    }
}
