//! Tombstones reach the chunks: every live chunk holding a segment of a tombstoned document
//! leaves the served set (it moves to `Manifest::retracted`), and the segments of its other
//! documents are appended again, token for token, to the epoch's new chunks. Nothing is
//! tokenized again, so a surviving document's tokens are exactly what was served before, and
//! a document split across chunks stays split the same way: each token is served once.

use crate::pack::PackError;
use crate::pack::chunk_writer::ChunkWriter;
use crate::pack::docs::{self, DocKey};
use crate::pack::manifest::{Manifest, xxh3_hex};
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Retraction {
    /// Chunks taken out of the served set.
    pub chunks: Vec<String>,
    /// Tombstoned documents found in them.
    pub docs_removed: u64,
    /// Tokens of other documents packed again.
    pub tokens_repacked: u64,
}

/// Take the documents `gone` out of `manifest`'s live chunks in `dir`, at pack `epoch`.
pub fn retract(
    dir: &Path,
    manifest: &mut Manifest,
    gone: &HashSet<DocKey>,
    epoch: u64,
    writer: &mut ChunkWriter,
) -> Result<Retraction, PackError> {
    let mut result = Retraction::default();
    if gone.is_empty() {
        return Ok(result);
    }
    let files: HashSet<u32> = gone.iter().map(|(file, _)| *file).collect();
    let mut kept = Vec::with_capacity(manifest.chunks.len());
    let mut found = HashSet::new();
    for mut entry in std::mem::take(&mut manifest.chunks) {
        if !entry.doc_files.iter().any(|f| files.contains(f)) {
            kept.push(entry);
            continue;
        }
        let list_path = dir.join(format!("{}.docs", entry.file));
        let bytes = std::fs::read(&list_path).map_err(|e| PackError::io(&list_path, e))?;
        if xxh3_hex(&bytes) != entry.docs_xxh3 {
            return Err(PackError::Chunk {
                path: list_path,
                reason: format!(
                    "xxh3 {} differs from the manifest's {}: the document list changed",
                    xxh3_hex(&bytes),
                    entry.docs_xxh3
                ),
            });
        }
        let segments = docs::decode(&bytes, &list_path)?;
        if !segments.iter().any(|s| gone.contains(&s.key())) {
            kept.push(entry);
            continue;
        }
        let tokens = manifest.read_chunk(dir, &entry)?;
        for (segment, range) in docs::ranges(&segments, entry.tokens, &list_path)? {
            if gone.contains(&segment.key()) {
                found.insert(segment.key());
                continue;
            }
            let Some(file) = manifest.doc_files.get(segment.file as usize) else {
                return Err(PackError::Chunk {
                    path: list_path,
                    reason: format!(
                        "a segment names document file {}, which the manifest does not list",
                        segment.file
                    ),
                });
            };
            result.tokens_repacked += range.len() as u64;
            writer.append(&tokens[range], &file.source, segment.key())?;
        }
        result.chunks.push(entry.file.clone());
        entry.retracted_in = Some(epoch);
        manifest.retracted.push(entry);
    }
    manifest.chunks = kept;
    result.docs_removed = found.len() as u64;
    Ok(result)
}
