//! `document_simhash_deduplicator`: 64-bit SimHash of the shingles; a document is a
//! near-duplicate of an earlier one whose fingerprint differs in at most `hamming_distance`
//! bits.
//!
//! Fingerprints are the ones data-juicer's `simhash-pybind` computes: each shingle is hashed
//! to the first 8 bytes (big-endian) of its MD5, and bit `j` of the fingerprint is set when
//! more shingles have bit `j` set than not. Candidates are found exactly as that library's
//! `find_all` does: the 64 bits are cut into `num_blocks` blocks, and two fingerprints within
//! `k` bits agree on at least `num_blocks - k` whole blocks, so one table per choice of
//! `num_blocks - k` blocks finds every pair; each candidate is then checked bit by bit.

use crate::clean::dedup::tokens::Shingler;
use crate::clean::op::Deduplicator;
use crate::clean::params::{ParamResult, Params};
use md5::{Digest, Md5};

/// The hash `simhash.unsigned_hash` gives one shingle.
pub fn shingle_hash(shingle: &[u8]) -> u64 {
    let digest = Md5::digest(shingle);
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// `simhash.compute`: the bitwise majority vote of the hashes (ties give 0).
pub fn fingerprint(hashes: impl Iterator<Item = u64>) -> u64 {
    let mut votes = [0i64; 64];
    for hash in hashes {
        for (bit, vote) in votes.iter_mut().enumerate() {
            *vote += if hash >> bit & 1 == 1 { 1 } else { -1 };
        }
    }
    votes
        .iter()
        .enumerate()
        .filter(|(_, v)| **v > 0)
        .fold(0, |acc, (bit, _)| acc | 1 << bit)
}

pub struct SimhashDedup {
    shingler: Shingler,
    max_distance: u32,
    /// Per table: the mask of the blocks its bucket is made of.
    table_masks: Vec<u64>,
}

impl SimhashDedup {
    pub fn from_params(params: &mut Params) -> ParamResult<Self> {
        let shingler = Shingler::from_params(params, 6)?;
        let num_blocks = params.positive("num_blocks", 6)?;
        let hamming = params.positive("hamming_distance", 4)?;
        Self::new(shingler, num_blocks, hamming)
    }

    pub fn new(
        shingler: Shingler,
        num_blocks: usize,
        hamming_distance: usize,
    ) -> ParamResult<Self> {
        if hamming_distance >= num_blocks || num_blocks > 64 {
            return Err(format!(
                "document_simhash_deduplicator: hamming_distance ({hamming_distance}) must be less than num_blocks ({num_blocks}), which is at most 64"
            ));
        }
        let block_masks: Vec<u64> = (0..num_blocks)
            .map(|b| {
                let start = b * 64 / num_blocks;
                let end = (b + 1) * 64 / num_blocks;
                (start..end).fold(0u64, |m, bit| m | 1 << bit)
            })
            .collect();
        let table_masks = combinations(num_blocks, num_blocks - hamming_distance)
            .into_iter()
            .map(|blocks| blocks.iter().fold(0, |m, &b| m | block_masks[b]))
            .collect();
        Ok(SimhashDedup {
            shingler,
            max_distance: hamming_distance as u32,
            table_masks,
        })
    }
}

/// Every `k`-subset of `0..n`, in lexicographic order.
fn combinations(n: usize, k: usize) -> Vec<Vec<usize>> {
    if k == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for first in 0..n {
        for rest in combinations(n - first - 1, k - 1) {
            let mut subset = vec![first];
            subset.extend(rest.into_iter().map(|r| r + first + 1));
            out.push(subset);
        }
    }
    out
}

impl Deduplicator for SimhashDedup {
    fn key(&self, text: &str) -> Vec<u64> {
        let shingles = self.shingler.shingles(text);
        vec![fingerprint(
            shingles.iter().map(|s| shingle_hash(s.as_bytes())),
        )]
    }

    /// One bucket per table: the table number and the fingerprint's bits in its blocks.
    fn buckets(&self, key: &[u64]) -> Vec<u64> {
        self.table_masks
            .iter()
            .enumerate()
            .map(|(table, mask)| bucket_hash(table as u64, key[0] & mask))
            .collect()
    }

    fn matches(&self, a: &[u64], b: &[u64]) -> bool {
        (a[0] ^ b[0]).count_ones() <= self.max_distance
    }
}

/// A bucket name for `value` in table (or band) `table`: distinct tables never share names
/// except by a 64-bit hash collision, which at worst costs one extra `matches` check.
pub fn bucket_hash(table: u64, value: u64) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&table.to_le_bytes());
    bytes[8..].copy_from_slice(&value.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::dedup::SeenIndex;
    use crate::clean::dedup::tokens::Tokenization;

    #[test]
    fn hashes_match_simhash_pybind() {
        // simhash.unsigned_hash(b'abc') and (b'hello world'), from the Python package.
        assert_eq!(shingle_hash(b"abc"), 10376663631224000432);
        assert_eq!(shingle_hash("中文".as_bytes()), 12086186008262855482);
        // simhash.compute([1, 3, 7]) == 3; compute([0xF0, 0x0F, 0xFF]) == 255
        assert_eq!(fingerprint([1, 3, 7].into_iter()), 3);
        assert_eq!(fingerprint([0xf0, 0x0f, 0xff].into_iter()), 255);
    }

    #[test]
    fn finds_every_pair_within_the_distance() {
        let shingler = Shingler {
            tokenization: Tokenization::Space,
            window_size: 1,
            lowercase: true,
            ignore_pattern: None,
        };
        let dedup = SimhashDedup::new(shingler, 6, 4).unwrap();
        let mut index = SeenIndex::default();
        let base = 0x0123_4567_89ab_cdefu64;
        assert!(!index.check_and_insert(&dedup, vec![base]));
        // Four scattered bits differ: a duplicate; five: not.
        assert!(index.check_and_insert(&dedup, vec![base ^ (1 | 1 << 20 | 1 << 40 | 1 << 63)]));
        assert!(!index.check_and_insert(&dedup, vec![!base]));
        let far = base ^ (1 | 1 << 13 | 1 << 26 | 1 << 39 | 1 << 52);
        assert!(!index.check_and_insert(&dedup, vec![far]));
        assert_eq!(combinations(6, 2).len(), 15);
    }
}
