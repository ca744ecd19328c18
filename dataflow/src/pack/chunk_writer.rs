//! Fills chunks of `(B + 1) * K` tokens from documents appended in order, and writes each
//! when full: the chunk file, its document list (`docs.rs`), then (for the caller to add to
//! the manifest) its entry. Every file goes under a `.tmp` name first and is renamed.

use crate::pack::PackError;
use crate::pack::docs::{self, DocKey, Segment};
use crate::pack::litpkds::encode_chunk;
use crate::pack::manifest::{ChunkEntry, PackSettings, xxh3_hex};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub struct ChunkWriter {
    dir: PathBuf,
    settings: PackSettings,
    epoch: u64,
    tokens: Vec<u32>,
    sources: BTreeMap<String, u64>,
    segments: Vec<Segment>,
    pub written: Vec<ChunkEntry>,
}

impl ChunkWriter {
    pub fn new(dir: &Path, settings: PackSettings, epoch: u64) -> Self {
        let capacity = settings.chunk_size() as usize;
        ChunkWriter {
            dir: dir.to_path_buf(),
            settings,
            epoch,
            tokens: Vec::with_capacity(capacity),
            sources: BTreeMap::new(),
            segments: Vec::new(),
            written: Vec::new(),
        }
    }

    /// Append `tokens` of document `doc` (from `source`), running on into the next chunks.
    pub fn append(
        &mut self,
        mut tokens: &[u32],
        source: &str,
        doc: DocKey,
    ) -> Result<(), PackError> {
        let chunk_size = self.settings.chunk_size() as usize;
        while !tokens.is_empty() {
            if self.segments.last().is_none_or(|s| s.key() != doc) {
                self.segments.push(Segment {
                    file: doc.0,
                    start: self.tokens.len() as u32,
                    row: doc.1,
                });
            }
            let room = chunk_size - self.tokens.len();
            let take = room.min(tokens.len());
            self.tokens.extend_from_slice(&tokens[..take]);
            *self.sources.entry(source.to_string()).or_default() += take as u64;
            tokens = &tokens[take..];
            if self.tokens.len() == chunk_size {
                self.write_chunk(0)?;
            }
        }
        Ok(())
    }

    /// Write the current chunk, `padding` pad tokens at its end included.
    fn write_chunk(&mut self, padding: usize) -> Result<(), PackError> {
        let real = self.tokens.len() - padding;
        let name = format!("chunk_e{:04}_{:010}.bin", self.epoch, self.written.len());
        let bytes = encode_chunk(&self.tokens, self.settings.dtype);
        let doc_list = docs::encode(&self.segments);
        write_renamed(&self.dir, &format!("{name}.docs"), &doc_list)?;
        write_renamed(&self.dir, &name, &bytes)?;
        let files: BTreeSet<u32> = self.segments.iter().map(|s| s.file).collect();
        self.written.push(ChunkEntry {
            file: name,
            tokens: real as u64,
            padding: padding as u64,
            xxh3: xxh3_hex(&bytes),
            epoch: self.epoch,
            sources: std::mem::take(&mut self.sources),
            docs_xxh3: xxh3_hex(&doc_list),
            doc_files: files.into_iter().collect(),
            retracted_in: None,
        });
        self.tokens.clear();
        self.segments.clear();
        Ok(())
    }

    /// Pad and write the last, partial chunk; the chunks written and the padding used.
    pub fn finish(mut self) -> Result<(Vec<ChunkEntry>, u64), PackError> {
        let mut padding = 0;
        if !self.tokens.is_empty() {
            padding = self.settings.chunk_size() as usize - self.tokens.len();
            self.tokens
                .resize(self.settings.chunk_size() as usize, self.settings.pad_id);
            self.write_chunk(padding)?;
        }
        Ok((self.written, padding as u64))
    }
}

/// Write `bytes` to `dir/name` through a synced temporary file, so that the manifest listing
/// it (saved later, also synced) never names a file a power cut left short.
fn write_renamed(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), PackError> {
    let path = dir.join(name);
    let temporary = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        std::io::Write::write_all(&mut file, bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)
    };
    write().map_err(|e| PackError::io(&path, e))
}
