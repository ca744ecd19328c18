//! The dedup index as of the last commit, opened to probe: its segments (`segment.rs`),
//! the statuses later segments changed, and which documents are live (a retracted file's
//! documents are an ordinal range, so liveness is a short list of ranges). Every probe
//! reads a block or two per segment from disk; nothing is loaded whole.
//!
//! An index is immutable once opened: every worker of a run probes the same snapshot, and
//! the documents of the epoch being run are never in it (the dataflow holds those).

use crate::clean::op::Deduplicator;
use crate::pipeline::graph::DocId;
use crate::pipeline::segment::{
    ChangeRecord, DocRecord, ExactRecord, KeyedRecord, Record, Segment, SegmentEntry, Status,
};
use crate::pipeline::state::StateError;
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

/// An opened index, or why it could not be opened (every probe of the epoch then fails
/// with it, so the epoch fails on worker 0).
pub type Snapshot = std::sync::Arc<Result<Index, String>>;

pub struct Index {
    /// In ordinal order; each holds `base..end` of the ordinals.
    segments: Vec<Segment>,
    /// Statuses changed after the segment that wrote them (the latest change wins).
    changes: HashMap<u32, Status>,
    /// Ordinals of retracted files, sorted.
    retracted: Vec<Range<u32>>,
    /// Words of a near key before its sketch (`Deduplicator::sketch_start`).
    sketch_start: usize,
}

/// A stored document's keys: its exact digest and its near key as `matches` reads it.
pub struct StoredKey {
    pub exact: [u64; 2],
    /// The near key with its first `sketch_start` words zero.
    pub near: Vec<u64>,
}

impl Index {
    /// Open `segments` of the state in `dir`, with the documents of `retracted` not live.
    pub fn open(
        dir: &Path,
        segments: &[SegmentEntry],
        retracted: Vec<Range<u32>>,
        sketch_start: usize,
        sketch: usize,
    ) -> Result<Index, StateError> {
        let segments = segments
            .iter()
            .map(|entry| Segment::open(dir, entry, sketch))
            .collect::<Result<Vec<_>, _>>()?;
        let mut changes = HashMap::new();
        for segment in &segments {
            segment.changes.for_each(|bytes| {
                let change = ChangeRecord::decode(bytes);
                let status = [Status::ExactDup, Status::NearDup, Status::Kept]
                    .get(change.status as usize)
                    .copied()
                    .ok_or_else(|| StateError::Invalid {
                        dir: segment.changes.path().to_path_buf(),
                        reason: "corrupt index segment: an unknown status".into(),
                    })?;
                changes.insert(change.ordinal as u32, status);
                Ok(())
            })?;
        }
        let mut retracted = retracted;
        retracted.sort_by_key(|r| r.start);
        Ok(Index {
            segments,
            changes,
            retracted,
            sketch_start,
        })
    }

    /// Documents the index numbers (live or not).
    pub fn ordinals(&self) -> u32 {
        self.segments.last().map_or(0, |s| s.entry.end())
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn live(&self, ordinal: u32) -> bool {
        let after = self.retracted.partition_point(|r| r.start <= ordinal);
        after == 0 || !self.retracted[after - 1].contains(&ordinal)
    }

    fn segment(&self, ordinal: u32) -> &Segment {
        let at = self.segments.partition_point(|s| s.entry.end() <= ordinal);
        &self.segments[at]
    }

    pub fn status(&self, ordinal: u32) -> Status {
        match self.changes.get(&ordinal) {
            Some(status) => *status,
            None => self.segment(ordinal).own_status(ordinal),
        }
    }

    /// Live and past exact dedup: a document near duplicates are checked against.
    fn member(&self, ordinal: u32) -> bool {
        self.live(ordinal) && self.status(ordinal).is_member()
    }

    pub fn doc_id(&self, ordinal: u32) -> Result<DocId, StateError> {
        let segment = self.segment(ordinal);
        let mut bytes = Vec::new();
        segment
            .docs
            .get((ordinal - segment.entry.base) as u64, &mut bytes)?;
        Ok(DocRecord::decode(&bytes).0)
    }

    pub fn key(&self, ordinal: u32) -> Result<StoredKey, StateError> {
        let segment = self.segment(ordinal);
        let mut bytes = Vec::new();
        segment
            .keys
            .get((ordinal - segment.entry.base) as u64, &mut bytes)?;
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let mut near = vec![0; self.sketch_start];
        near.extend(&words[2..]);
        Ok(StoredKey {
            exact: [words[0], words[1]],
            near,
        })
    }

    /// The earliest live document with this exact digest.
    pub fn earliest_exact(&self, digest: &[u64]) -> Result<Option<u32>, StateError> {
        let mut earliest: Option<u32> = None;
        for segment in self
            .segments
            .iter()
            .filter(|s| s.exact_bloom.may_contain(digest[0]))
        {
            segment.exact.find(digest[0], |bytes| {
                let record = ExactRecord::decode(bytes);
                if record.low == digest[1] && self.live(record.ordinal) {
                    earliest = Some(earliest.map_or(record.ordinal, |e| e.min(record.ordinal)));
                }
                Ok(true)
            })?;
        }
        Ok(earliest)
    }

    /// Documents filed under `bucket`, in ordinal order (live or not, any status).
    pub fn in_bucket(&self, bucket: u64) -> Result<Vec<u32>, StateError> {
        let mut found = Vec::new();
        for segment in self.segments.iter().filter(|s| s.bloom.may_contain(bucket)) {
            segment.bands.find(bucket, |bytes| {
                found.push(KeyedRecord::decode(bytes).ordinal);
                Ok(true)
            })?;
        }
        found.sort_unstable();
        Ok(found)
    }

    /// The earliest live member under `bucket` that is before `before` (`None`: before
    /// everything, a new document) and that `near` matches: a witness that drops it.
    pub fn witness_in_bucket(
        &self,
        dedup: &dyn Deduplicator,
        bucket: u64,
        near: &[u64],
        before: Option<u32>,
    ) -> Result<Option<u32>, StateError> {
        for ordinal in self.in_bucket(bucket)? {
            if before.is_some_and(|b| ordinal >= b) {
                break;
            }
            if self.member(ordinal) && dedup.matches(near, &self.key(ordinal)?.near) {
                return Ok(Some(ordinal));
            }
        }
        Ok(None)
    }

    /// Documents some of whose recorded witnesses are in `witnesses` (which is why they
    /// were near-dropped, then or later).
    pub fn witnessed_by(&self, witnesses: &Range<u32>) -> Result<Vec<u32>, StateError> {
        let mut found = Vec::new();
        for segment in &self.segments {
            segment
                .witnesses
                .scan_from(witnesses.start as u64, |bytes| {
                    let record = KeyedRecord::decode(bytes);
                    if record.key >= witnesses.end as u64 {
                        return Ok(false);
                    }
                    found.push(record.ordinal);
                    Ok(true)
                })?;
        }
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    /// Memory held by the opened index, bytes.
    pub fn memory_bytes(&self) -> usize {
        self.segments
            .iter()
            .map(Segment::memory_bytes)
            .sum::<usize>()
            + self.changes.len() * 16
            + self.retracted.len() * 8
    }
}
