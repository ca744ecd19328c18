//! A chunk directory opened for training: its manifest, and each chunk memory-mapped and
//! checked (xxh3 against the manifest, header against the settings) when first used.

use crate::data::LoaderError;
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use steel_dataflow::pack::litpkds::{HEADER_BYTES, TokenDtype};
use steel_dataflow::pack::manifest::Manifest;

/// The chunks of `dir` (its `manifest`) must fit a model of `vocab_size` tokens: an id beyond
/// the embedding table can be neither trained on nor scored.
pub fn check_vocabulary(
    dir: &Path,
    manifest: &Manifest,
    vocab_size: usize,
) -> Result<(), LoaderError> {
    if manifest.settings.vocab_size > vocab_size {
        return Err(LoaderError::Vocabulary {
            dir: dir.to_path_buf(),
            tokens: manifest.settings.vocab_size,
            model: vocab_size,
        });
    }
    Ok(())
}

/// The chunks of `dir` (its `manifest`) must have been packed with the tokenizer whose xxh3 is
/// `expected`, as `reference` (a checkpoint, or another chunk directory) records it: token ids
/// of another tokenizer mean other text, and a loss over them means nothing.
pub fn check_tokenizer(
    dir: &Path,
    manifest: &Manifest,
    reference: &Path,
    expected: &str,
) -> Result<(), LoaderError> {
    if manifest.settings.tokenizer_xxh3 != expected {
        return Err(LoaderError::Tokenizer {
            dir: dir.to_path_buf(),
            found: manifest.settings.tokenizer_xxh3.clone(),
            reference: reference.to_path_buf(),
            expected: expected.to_string(),
        });
    }
    Ok(())
}

pub struct ChunkDir {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Blocks of `block_size + 1` tokens per chunk.
    pub blocks_per_chunk: u64,
    /// Chunk name → its position in `manifest.chunks` then `manifest.retracted`.
    entries: HashMap<String, usize>,
    open: HashMap<String, Mmap>,
}

/// Every chunk of `manifest` by name: its position in `chunks`, then `retracted`.
fn index(manifest: &Manifest) -> HashMap<String, usize> {
    let all = manifest.chunks.iter().chain(&manifest.retracted);
    all.enumerate().map(|(i, c)| (c.file.clone(), i)).collect()
}

impl ChunkDir {
    /// Open `dir` for blocks of `block_size` (+1) tokens. The chunk size must be a whole
    /// number of blocks.
    pub fn open(dir: &Path, block_size: u64) -> Result<Self, LoaderError> {
        let manifest =
            Manifest::load(dir)?.ok_or_else(|| LoaderError::NotAChunkDir(dir.to_path_buf()))?;
        let chunk_size = manifest.settings.chunk_size();
        let row = block_size + 1;
        if block_size == 0 || chunk_size % row != 0 {
            return Err(LoaderError::BlockSize {
                dir: dir.to_path_buf(),
                block_size,
                chunk_size,
            });
        }
        Ok(ChunkDir {
            dir: dir.to_path_buf(),
            entries: index(&manifest),
            manifest,
            blocks_per_chunk: chunk_size / row,
            open: HashMap::new(),
        })
    }

    /// Reload the manifest (after `steel pack` added an epoch).
    pub fn reload(&mut self) -> Result<&Manifest, LoaderError> {
        let fresh = Manifest::load(&self.dir)?
            .ok_or_else(|| LoaderError::NotAChunkDir(self.dir.clone()))?;
        if fresh.settings != self.manifest.settings {
            return Err(LoaderError::Changed(format!(
                "`{}`: the manifest's settings changed",
                self.dir.display()
            )));
        }
        self.entries = index(&fresh);
        self.manifest = fresh;
        Ok(&self.manifest)
    }

    /// Tokens `[block * (B + 1), (block + 1) * (B + 1))` of chunk `file`.
    pub fn block(
        &mut self,
        file: &str,
        block: u64,
        block_size: u64,
    ) -> Result<Vec<u32>, LoaderError> {
        if !self.open.contains_key(file) {
            let map = self.map_checked(file)?;
            self.open.insert(file.to_string(), map);
        }
        let map = &self.open[file];
        let width = self.manifest.settings.dtype.width();
        let row = (block_size + 1) as usize;
        let start = HEADER_BYTES + block as usize * row * width;
        let bytes = &map[start..start + row * width];
        Ok(match self.manifest.settings.dtype {
            TokenDtype::U16 => bytes
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)
                .collect(),
            TokenDtype::I32 => bytes
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u32)
                .collect(),
        })
    }

    fn map_checked(&self, file: &str) -> Result<Mmap, LoaderError> {
        // A retracted chunk may still be served by a rank following the data as of an
        // earlier pack epoch (see `follow.rs`); its file stays.
        let (live, retracted) = (&self.manifest.chunks, &self.manifest.retracted);
        let entry = self
            .entries
            .get(file)
            .and_then(|&i| live.get(i).or_else(|| retracted.get(i - live.len())))
            .ok_or_else(|| {
                LoaderError::Changed(format!("chunk `{file}` is not in the manifest"))
            })?;
        let path = self.dir.join(file);
        let handle = std::fs::File::open(&path).map_err(|e| LoaderError::Io {
            path: path.clone(),
            source: e,
        })?;
        // SAFETY: chunk files are written once (temporary file, then rename) and never
        // modified; `check_chunk` below catches a file changed before we mapped it.
        let map = unsafe { Mmap::map(&handle) }.map_err(|e| LoaderError::Io {
            path: path.clone(),
            source: e,
        })?;
        self.manifest.check_chunk(entry, &map, &path)?;
        Ok(map)
    }
}
