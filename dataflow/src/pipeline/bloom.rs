//! A blocked Bloom filter over a segment's bucket keys, held in memory so that a probe for a
//! bucket no indexed document has (nearly every probe: new documents rarely share a band
//! with an old one) skips its block read. Ten bits per key, eight bits set per key in one
//! 64-byte block: about 1% false positives, and one cache line touched per probe.
//!
//! Keys are already 64-bit hashes (`bucket_hash`), so their bits are used directly: the high
//! half (mixed) picks the block, the two halves give the eight bit positions by double hashing.
//! On disk: magic, the block count (u64), the blocks, then the xxh3 of everything before.

use crate::pipeline::state::{StateError, io_error};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"STLBLOM1";
const BITS_PER_KEY: u64 = 10;
const BLOCK_WORDS: usize = 8;
const HASHES: u64 = 8;

pub struct Bloom {
    /// `BLOCK_WORDS` words per block.
    words: Vec<u64>,
}

impl Bloom {
    /// An empty filter sized for `keys` keys.
    pub fn with_capacity(keys: u64) -> Bloom {
        let blocks = (keys * BITS_PER_KEY)
            .div_ceil(64 * BLOCK_WORDS as u64)
            .max(1);
        Bloom {
            words: vec![0; blocks as usize * BLOCK_WORDS],
        }
    }

    /// The block a key lands in, and its eight bit positions (0..512) there.
    fn positions(&self, key: u64) -> (usize, [usize; HASHES as usize]) {
        let blocks = (self.words.len() / BLOCK_WORDS) as u128;
        let mixed = key.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(32);
        let block = ((mixed as u128 * blocks) >> 64) as usize;
        let (h1, h2) = (key & 0xffff_ffff, (key >> 32) | 1);
        let bits =
            std::array::from_fn(|i| (h1.wrapping_add((i as u64).wrapping_mul(h2)) % 512) as usize);
        (block * BLOCK_WORDS, bits)
    }

    pub fn insert(&mut self, key: u64) {
        let (base, bits) = self.positions(key);
        for bit in bits {
            self.words[base + bit / 64] |= 1 << (bit % 64);
        }
    }

    /// False only if `key` was never inserted.
    pub fn may_contain(&self, key: u64) -> bool {
        let (base, bits) = self.positions(key);
        bits.into_iter()
            .all(|bit| self.words[base + bit / 64] & (1 << (bit % 64)) != 0)
    }

    pub fn memory_bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// Write the filter to `path` (streamed, synced); its size in bytes.
    pub fn write(&self, path: &Path) -> Result<u64, StateError> {
        let file = File::create(path).map_err(io_error(path))?;
        let mut out = BufWriter::new(file);
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let blocks = (self.words.len() / BLOCK_WORDS) as u64;
        let mut put = |bytes: &[u8]| {
            hasher.update(bytes);
            out.write_all(bytes).map_err(io_error(path))
        };
        put(MAGIC)?;
        put(&blocks.to_le_bytes())?;
        for word in &self.words {
            put(&word.to_le_bytes())?;
        }
        out.write_all(&hasher.digest().to_le_bytes())
            .map_err(io_error(path))?;
        let file = out.into_inner().map_err(|e| StateError::Io {
            path: path.to_path_buf(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_error(path))?;
        Ok(24 + self.words.len() as u64 * 8)
    }

    /// Read a filter written by `write`, a chunk at a time (memory holds the filter once).
    pub fn read(path: &Path) -> Result<Bloom, StateError> {
        let corrupt = |why: &str| StateError::Invalid {
            dir: path.to_path_buf(),
            reason: format!("corrupt index segment: {why}"),
        };
        let mut file = File::open(path).map_err(io_error(path))?;
        let len = file.metadata().map_err(io_error(path))?.len();
        let mut header = [0u8; 16];
        if len < 24 || (len - 24) % 8 != 0 {
            return Err(corrupt("bad header or length"));
        }
        file.read_exact(&mut header).map_err(io_error(path))?;
        let blocks = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
        let words = (len - 24) / 8;
        if &header[..8] != MAGIC || blocks == 0 || words != blocks * BLOCK_WORDS as u64 {
            return Err(corrupt("bad header or length"));
        }
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(&header);
        let mut bloom = Bloom {
            words: Vec::with_capacity(words as usize),
        };
        let mut chunk = vec![0u8; 1 << 20];
        let mut left = words * 8;
        while left > 0 {
            let take = left.min(chunk.len() as u64) as usize;
            file.read_exact(&mut chunk[..take])
                .map_err(io_error(path))?;
            hasher.update(&chunk[..take]);
            bloom.words.extend(
                chunk[..take]
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))),
            );
            left -= take as u64;
        }
        let mut sum = [0u8; 8];
        file.read_exact(&mut sum).map_err(io_error(path))?;
        if hasher.digest().to_le_bytes() != sum {
            return Err(corrupt("checksum mismatch"));
        }
        Ok(bloom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_few_false_positives_and_a_round_trip() {
        let key = |i: u64| xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes());
        let mut bloom = Bloom::with_capacity(10_000);
        for i in 0..10_000 {
            bloom.insert(key(i));
        }
        assert!((0..10_000).all(|i| bloom.may_contain(key(i))));
        let false_positives = (10_000..110_000)
            .filter(|&i| bloom.may_contain(key(i)))
            .count();
        // About 1% expected at 10 bits per key; 3% would mean the bits are badly spread.
        assert!(false_positives < 3_000, "{false_positives} of 100000");
        assert!(
            false_positives > 0,
            "a filter that says no to everything is not a filter"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bands.bloom");
        bloom.write(&path).unwrap();
        let read = Bloom::read(&path).unwrap();
        assert_eq!(read.words, bloom.words);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 4;
        std::fs::write(&path, &bytes).unwrap();
        let Err(err) = Bloom::read(&path) else {
            panic!("a corrupt filter was read");
        };
        let err = err.to_string();
        assert!(
            err.contains("checksum mismatch") && err.contains("bands.bloom"),
            "{err}"
        );
    }
}
