//! `manifest.json` of a chunk directory: the packing settings; every chunk with its token
//! count, xxh3 hash, source mix, the epoch it was added in and which documents it holds
//! (`docs.rs`); the chunks a later retraction took out; and every input packed, so packing
//! again packs only what is new. Written atomically.

use crate::pack::PackError;
use crate::pack::litpkds::{TokenDtype, decode_chunk, parse_header};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

pub const MANIFEST_FILE: &str = "manifest.json";

/// What every chunk of a directory shares. A later `steel pack` into the same directory must
/// use the same settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackSettings {
    /// Tokens per training block, plus one (the shifted target) makes a row: `B`.
    pub block_size: u64,
    /// Blocks per chunk: `K`. A chunk holds `(B + 1) * K` tokens.
    pub chunk_blocks: u64,
    pub dtype: TokenDtype,
    pub vocab_size: usize,
    /// xxh3-64 of the tokenizer file's bytes, hex.
    pub tokenizer_xxh3: String,
    /// Appended after every document.
    pub eos_id: u32,
    /// Fills the tail of the last chunk.
    pub pad_id: u32,
}

impl PackSettings {
    pub fn chunk_size(&self) -> u64 {
        (self.block_size + 1) * self.chunk_blocks
    }

    /// The settings in which `self` differs from `other`, as `name value`.
    pub fn differences(&self, other: &PackSettings) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |name: &str, mine: String, theirs: String| {
            if mine != theirs {
                out.push(format!("{name} {mine}"));
            }
        };
        check(
            "block size",
            self.block_size.to_string(),
            other.block_size.to_string(),
        );
        check(
            "chunk blocks",
            self.chunk_blocks.to_string(),
            other.chunk_blocks.to_string(),
        );
        check(
            "dtype",
            format!("{:?}", self.dtype).to_lowercase(),
            format!("{:?}", other.dtype).to_lowercase(),
        );
        check(
            "vocabulary",
            self.vocab_size.to_string(),
            other.vocab_size.to_string(),
        );
        check(
            "tokenizer xxh3",
            self.tokenizer_xxh3.clone(),
            other.tokenizer_xxh3.clone(),
        );
        check(
            "end token id",
            self.eos_id.to_string(),
            other.eos_id.to_string(),
        );
        check(
            "pad token id",
            self.pad_id.to_string(),
            other.pad_id.to_string(),
        );
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    /// File name inside the chunk directory.
    pub file: String,
    /// Document tokens (end tokens included) in the chunk; the rest is padding.
    pub tokens: u64,
    pub padding: u64,
    /// xxh3-64 of the whole file, hex.
    pub xxh3: String,
    pub epoch: u64,
    /// Tokens per source (`meta.source` of the documents).
    pub sources: BTreeMap<String, u64>,
    /// xxh3-64 (hex) of the chunk's document list, `FILE.docs` (empty for a chunk packed
    /// before Steel recorded documents: a retraction cannot find documents in it).
    #[serde(default)]
    pub docs_xxh3: String,
    /// The `Manifest::doc_files` indices of the files its documents come from, ascending: a
    /// retraction reads the document lists of only the chunks that can hold its documents.
    #[serde(default)]
    pub doc_files: Vec<u32>,
    /// The pack epoch whose tombstones took this chunk out (only in `Manifest::retracted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retracted_in: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub settings: PackSettings,
    /// The live chunks, the ones a loader serves.
    pub chunks: Vec<ChunkEntry>,
    /// Chunks that held a document a later tombstone took back; their other documents were
    /// packed again into later chunks. Kept (with their files) so a running trainer's state
    /// stays explicable.
    #[serde(default)]
    pub retracted: Vec<ChunkEntry>,
    /// Files the packed documents came from (`meta.file` and `meta.source`), indexed by the
    /// document lists.
    #[serde(default)]
    pub doc_files: Vec<DocFile>,
    /// Every input file packed (or whose tombstones were applied), in order.
    #[serde(default)]
    pub inputs: Vec<PackedInput>,
}

/// A file documents came from, as their `meta` names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DocFile {
    pub file: String,
    pub source: String,
}

/// An input already packed. A later pack skips it when its size and modification time (or,
/// failing those, its content hash) are unchanged, and reports it when its content changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedInput {
    /// Absolute path.
    pub path: String,
    pub bytes: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 where unknown).
    pub modified_ns: u64,
    pub xxh3: String,
    /// The pack epoch that packed it.
    pub epoch: u64,
}

impl Manifest {
    /// The manifest of `dir`, or `None` when there is none yet.
    pub fn load(dir: &Path) -> Result<Option<Manifest>, PackError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(PackError::io(&path, e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| PackError::Manifest {
                path: path.clone(),
                reason: format!("not a Steel chunk manifest: {e}"),
            })
    }

    /// Write to a temporary file, fsync, rename: a crash leaves the old manifest or the new.
    pub fn save(&self, dir: &Path) -> Result<(), PackError> {
        let path = dir.join(MANIFEST_FILE);
        let temporary = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).expect("a manifest always serialises");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            // The renames of the chunks it lists and its own, durable before it is trusted.
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| PackError::io(&path, e))
    }

    /// Read chunk `entry` of `dir`, check it (see [`Manifest::check_chunk`]) and return its
    /// tokens.
    pub fn read_chunk(&self, dir: &Path, entry: &ChunkEntry) -> Result<Vec<u32>, PackError> {
        let path = dir.join(&entry.file);
        let bytes = std::fs::read(&path).map_err(|e| PackError::io(&path, e))?;
        self.check_chunk(entry, &bytes, &path)?;
        Ok(decode_chunk(&bytes, &path)?.1)
    }

    /// Check a chunk file's `bytes`: its hash against the manifest entry and its header against
    /// the settings. Changed or damaged data is an error naming the file.
    pub fn check_chunk(
        &self,
        entry: &ChunkEntry,
        bytes: &[u8],
        path: &Path,
    ) -> Result<(), PackError> {
        let hash = xxh3_hex(bytes);
        if hash != entry.xxh3 {
            return Err(PackError::Chunk {
                path: path.to_path_buf(),
                reason: format!(
                    "xxh3 {hash} differs from the manifest's {}: the chunk changed",
                    entry.xxh3
                ),
            });
        }
        let header = parse_header(bytes, path)?;
        if header.dtype != self.settings.dtype || header.chunk_size != self.settings.chunk_size() {
            return Err(PackError::Chunk {
                path: path.to_path_buf(),
                reason: format!(
                    "header says {:?} × {}, the manifest {:?} × {}",
                    header.dtype,
                    header.chunk_size,
                    self.settings.dtype,
                    self.settings.chunk_size()
                ),
            });
        }
        Ok(())
    }

    /// One past the last epoch of any chunk or input.
    pub fn next_epoch(&self) -> u64 {
        let chunks = self.chunks.iter().chain(&self.retracted).map(|c| c.epoch);
        chunks
            .chain(self.inputs.iter().map(|i| i.epoch))
            .map(|e| e + 1)
            .max()
            .unwrap_or(0)
    }

    /// An empty manifest for `settings`.
    pub fn new(settings: PackSettings) -> Manifest {
        Manifest {
            settings,
            chunks: Vec::new(),
            retracted: Vec::new(),
            doc_files: Vec::new(),
            inputs: Vec::new(),
        }
    }
}

/// xxh3-64 of `bytes` as 16 hex digits.
pub fn xxh3_hex(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}
