//! One segment of the on-disk dedup index: what a range of epochs added to it and changed in
//! it, as immutable files in one directory. Documents are numbered by *ordinal*: every
//! document that passed the filters gets the next number (u32) in id order, so ordinal
//! order is ingest order, and a segment's own documents are the ordinals
//! `base..base + docs`.
//!
//! | file             | records (fixed width, `run_file` blocks)           | bytes per record |
//! |------------------|----------------------------------------------------|------------------|
//! | `docs.run`       | ordinal − base → document id                        | 8                |
//! | `keys.run`       | ordinal − base → exact digest, near key's sketch    | 16 + 8 × words   |
//! | `exact.run`      | sorted (digest, ordinal): every document            | 20               |
//! | `bands.run`      | sorted (bucket, ordinal): every document's buckets  | 12               |
//! | `witnesses.run`  | sorted (witness, dropped): who near-dropped whom    | 12               |
//! | `changes.run`    | sorted (ordinal, status): earlier segments' changes | 16               |
//! | `status.bin`     | one status byte per own document, then its xxh3     | 1                |
//! | `bands.bloom`    | a Bloom filter of `bands.run`'s buckets (`bloom.rs`) | 10 bits a bucket |
//! | `exact.bloom`    | a Bloom filter of `exact.run`'s digests             | 10 bits a digest |
//!
//! Only `status.bin`, the Bloom filters and the runs' fence pointers are held in memory;
//! everything else is read a block at a time when a probe needs it.

use crate::pipeline::bloom::Bloom;
use crate::pipeline::graph::DocId;
use crate::pipeline::run_file::{RunReader, RunWriter};
use crate::pipeline::state::{StateError, io_error, write_synced};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where a document that passed the filters stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Status {
    /// An earlier document has the same exact digest.
    ExactDup = 0,
    /// It reached the near-duplicate stage, and an earlier document there matches it.
    NearDup = 1,
    Kept = 2,
}

impl Status {
    fn from_byte(byte: u8) -> Option<Status> {
        [Status::ExactDup, Status::NearDup, Status::Kept]
            .get(byte as usize)
            .copied()
    }

    /// It reached the near-duplicate stage (exact dedup kept it).
    pub fn is_member(self) -> bool {
        self != Status::ExactDup
    }
}

/// A segment as the manifest lists it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// Relative to the state directory.
    pub dir: String,
    pub first_epoch: u64,
    pub last_epoch: u64,
    /// The first ordinal of its own documents.
    pub base: u32,
    pub docs: u32,
    /// Bytes of its files.
    pub bytes: u64,
}

impl SegmentEntry {
    pub fn end(&self) -> u32 {
        self.base + self.docs
    }
}

pub const DOCS: &str = "docs.run";
pub const KEYS: &str = "keys.run";
pub const EXACT: &str = "exact.run";
pub const BANDS: &str = "bands.run";
pub const WITNESSES: &str = "witnesses.run";
pub const CHANGES: &str = "changes.run";
pub const STATUS: &str = "status.bin";
pub const BLOOM: &str = "bands.bloom";
pub const EXACT_BLOOM: &str = "exact.bloom";
pub const FILES: [&str; 9] = [
    DOCS,
    KEYS,
    EXACT,
    BANDS,
    WITNESSES,
    CHANGES,
    STATUS,
    BLOOM,
    EXACT_BLOOM,
];

const STATUS_MAGIC: &[u8; 8] = b"STLSTAT1";

/// A fixed-width record of a run file; runs are sorted by `Ord`, whose first field is the
/// run's key (the first 8 bytes, little-endian).
pub trait Record: Ord + Copy {
    const WIDTH: usize;
    const MAGIC: [u8; 8];
    fn encode(&self, out: &mut Vec<u8>);
    /// From exactly `WIDTH` bytes (the run reader guarantees the width).
    fn decode(bytes: &[u8]) -> Self;
}

fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("record width"))
}

fn half(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("record width"))
}

/// A document's id, at its ordinal's place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DocRecord(pub DocId);

impl Record for DocRecord {
    const WIDTH: usize = 8;
    const MAGIC: [u8; 8] = *b"STLDOCS1";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend(self.0.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        DocRecord(word(bytes, 0))
    }
}

/// An exact digest (its two words) and the document that has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExactRecord {
    pub high: u64,
    pub low: u64,
    pub ordinal: u32,
}

impl Record for ExactRecord {
    const WIDTH: usize = 20;
    const MAGIC: [u8; 8] = *b"STLEXAC1";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend(self.high.to_le_bytes());
        out.extend(self.low.to_le_bytes());
        out.extend(self.ordinal.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        ExactRecord {
            high: word(bytes, 0),
            low: word(bytes, 8),
            ordinal: half(bytes, 16),
        }
    }
}

/// A key and an ordinal: a bucket and a document filed under it, or a witness and a
/// document it near-dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyedRecord {
    pub key: u64,
    pub ordinal: u32,
}

impl Record for KeyedRecord {
    const WIDTH: usize = 12;
    const MAGIC: [u8; 8] = *b"STLKEYD1";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend(self.key.to_le_bytes());
        out.extend(self.ordinal.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        KeyedRecord {
            key: word(bytes, 0),
            ordinal: half(bytes, 8),
        }
    }
}

/// A document of an earlier segment and its new status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChangeRecord {
    pub ordinal: u64,
    pub status: u64,
}

impl Record for ChangeRecord {
    const WIDTH: usize = 16;
    const MAGIC: [u8; 8] = *b"STLCHNG1";
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend(self.ordinal.to_le_bytes());
        out.extend(self.status.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        ChangeRecord {
            ordinal: word(bytes, 0),
            status: word(bytes, 8),
        }
    }
}

/// Records to write as one sorted run, sorted in memory a chunk at a time: a full chunk is
/// sorted and spilled to a run of its own, and `finish` merges the chunks, so memory holds
/// one chunk however many records there are.
pub struct RunSorter<R: Record> {
    path: PathBuf,
    chunk: Vec<R>,
    spilled: Vec<PathBuf>,
}

/// Records sorted in memory before a chunk is spilled (about 32 MB of them).
const CHUNK_BYTES: usize = 32 << 20;

impl<R: Record> RunSorter<R> {
    pub fn new(path: &Path) -> Self {
        RunSorter {
            path: path.to_path_buf(),
            chunk: Vec::new(),
            spilled: Vec::new(),
        }
    }

    pub fn push(&mut self, record: R) -> Result<(), StateError> {
        self.chunk.push(record);
        if self.chunk.len() * std::mem::size_of::<R>() >= CHUNK_BYTES {
            let path = self
                .path
                .with_extension(format!("chunk{}", self.spilled.len()));
            write_sorted(&path, &mut self.chunk)?;
            self.chunk.clear();
            self.spilled.push(path);
        }
        Ok(())
    }

    /// Write the run; its size in bytes.
    pub fn finish(mut self) -> Result<u64, StateError> {
        if self.spilled.is_empty() {
            return write_sorted(&self.path, &mut self.chunk);
        }
        if !self.chunk.is_empty() {
            let path = self
                .path
                .with_extension(format!("chunk{}", self.spilled.len()));
            write_sorted(&path, &mut self.chunk)?;
            self.spilled.push(path);
        }
        let chunks = self
            .spilled
            .iter()
            .map(|path| RunReader::open(path, R::MAGIC, R::WIDTH))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = RunWriter::create(&self.path, R::MAGIC, R::WIDTH, true)?;
        let inputs: Vec<&RunReader> = chunks.iter().collect();
        crate::pipeline::run_file::merge(
            &inputs,
            |a, b| R::decode(a).cmp(&R::decode(b)),
            |_| true,
            &mut out,
        )?;
        let bytes = out.finish()?;
        for path in &self.spilled {
            std::fs::remove_file(path).map_err(io_error(path))?;
        }
        Ok(bytes)
    }
}

/// Sort `records` and write them as a run; the file's size.
fn write_sorted<R: Record>(path: &Path, records: &mut [R]) -> Result<u64, StateError> {
    records.sort_unstable();
    let mut out = RunWriter::create(path, R::MAGIC, R::WIDTH, true)?;
    let mut bytes = Vec::with_capacity(R::WIDTH);
    for record in records.iter() {
        bytes.clear();
        record.encode(&mut bytes);
        out.push(&bytes)?;
    }
    out.finish()
}

/// Writes a new segment's files into `dir` (a `.tmp` directory the caller renames).
pub struct SegmentWriter {
    dir: PathBuf,
    base: u32,
    docs: RunWriter,
    keys: RunWriter,
    exact: RunSorter<ExactRecord>,
    bands: RunSorter<KeyedRecord>,
    witnesses: RunSorter<KeyedRecord>,
    changes: RunSorter<ChangeRecord>,
    status: Vec<u8>,
    record: Vec<u8>,
}

/// Words of a key file record: the exact digest's two, then `sketch` words.
pub fn key_width(sketch: usize) -> usize {
    8 * (2 + sketch)
}

pub const KEYS_MAGIC: [u8; 8] = *b"STLKEYS1";

impl SegmentWriter {
    /// A segment whose first own ordinal is `base`, for near keys of `sketch` words.
    pub fn create(dir: &Path, base: u32, sketch: usize) -> Result<SegmentWriter, StateError> {
        Ok(SegmentWriter {
            dir: dir.to_path_buf(),
            base,
            docs: RunWriter::create(&dir.join(DOCS), DocRecord::MAGIC, DocRecord::WIDTH, false)?,
            keys: RunWriter::create(&dir.join(KEYS), KEYS_MAGIC, key_width(sketch), false)?,
            exact: RunSorter::new(&dir.join(EXACT)),
            bands: RunSorter::new(&dir.join(BANDS)),
            witnesses: RunSorter::new(&dir.join(WITNESSES)),
            changes: RunSorter::new(&dir.join(CHANGES)),
            status: Vec::new(),
            record: Vec::new(),
        })
    }

    /// The ordinal the next own document gets.
    pub fn next_ordinal(&self) -> u32 {
        self.base + self.status.len() as u32
    }

    /// Add a document that passed the filters; its ordinal. `exact` is its digest (two
    /// words), `sketch` the words of its near key that `matches` reads, `buckets` its buckets.
    pub fn push(
        &mut self,
        doc: DocId,
        exact: &[u64],
        sketch: &[u64],
        buckets: &[u64],
        status: Status,
    ) -> Result<u32, StateError> {
        let ordinal = self.next_ordinal();
        if ordinal == u32::MAX {
            return Err(StateError::Invalid {
                dir: self.dir.clone(),
                reason: "the index holds 2^32 − 1 documents, the most an ordinal numbers".into(),
            });
        }
        self.record.clear();
        DocRecord(doc).encode(&mut self.record);
        self.docs.push(&self.record)?;
        self.record.clear();
        for w in exact.iter().chain(sketch) {
            self.record.extend(w.to_le_bytes());
        }
        self.keys.push(&self.record)?;
        self.exact.push(ExactRecord {
            high: exact[0],
            low: exact[1],
            ordinal,
        })?;
        for &bucket in buckets {
            self.bands.push(KeyedRecord {
                key: bucket,
                ordinal,
            })?;
        }
        self.status.push(status as u8);
        Ok(ordinal)
    }

    /// Record that `witness` near-dropped `doc`.
    pub fn witness(&mut self, witness: u32, doc: u32) -> Result<(), StateError> {
        self.witnesses.push(KeyedRecord {
            key: witness as u64,
            ordinal: doc,
        })
    }

    /// Record the new status of an earlier segment's document.
    pub fn change(&mut self, ordinal: u32, status: Status) -> Result<(), StateError> {
        self.changes.push(ChangeRecord {
            ordinal: ordinal as u64,
            status: status as u64,
        })
    }

    /// Write every file; the segment's own document count and its bytes on disk.
    pub fn finish(self) -> Result<(u32, u64), StateError> {
        let mut bytes = self.docs.finish()? + self.keys.finish()?;
        bytes += self.exact.finish()?;
        bytes += self.bands.finish()?;
        bytes += write_blooms(&self.dir)?;
        bytes += self.witnesses.finish()?;
        bytes += self.changes.finish()?;
        bytes += write_status(&self.dir.join(STATUS), &self.status)?;
        Ok((self.status.len() as u32, bytes))
    }
}

/// Write the Bloom filters of the buckets in `dir`'s `bands.run` and of the digests in its
/// `exact.run`; their size.
pub fn write_blooms(dir: &Path) -> Result<u64, StateError> {
    let bands = write_bloom::<KeyedRecord>(dir, BANDS, BLOOM, |r| r.key)?;
    Ok(bands + write_bloom::<ExactRecord>(dir, EXACT, EXACT_BLOOM, |r| r.high)?)
}

/// Write `bloom`, the Bloom filter of `key` of every record in `dir`'s `run`; its size.
fn write_bloom<R: Record>(
    dir: &Path,
    run: &str,
    bloom: &str,
    key: impl Fn(R) -> u64,
) -> Result<u64, StateError> {
    let records = RunReader::open(&dir.join(run), R::MAGIC, R::WIDTH)?;
    let mut filter = Bloom::with_capacity(records.len());
    records.for_each(|bytes| {
        filter.insert(key(R::decode(bytes)));
        Ok(())
    })?;
    filter.write(&dir.join(bloom))
}

/// Write a status file (magic, a byte per document, xxh3); its size.
pub fn write_status(path: &Path, status: &[u8]) -> Result<u64, StateError> {
    let mut bytes = STATUS_MAGIC.to_vec();
    bytes.extend(status);
    let sum = xxhash_rust::xxh3::xxh3_64(&bytes);
    bytes.extend(sum.to_le_bytes());
    write_synced(path, &bytes)?;
    Ok(bytes.len() as u64)
}

/// A segment opened to probe: fence pointers and statuses in memory, the rest on disk.
pub struct Segment {
    pub entry: SegmentEntry,
    pub docs: RunReader,
    pub keys: RunReader,
    pub exact: RunReader,
    pub bands: RunReader,
    pub witnesses: RunReader,
    pub changes: RunReader,
    /// Of the buckets in `bands`: a bucket it rules out needs no block read.
    pub bloom: Bloom,
    /// Of the digests in `exact` (their first word), likewise.
    pub exact_bloom: Bloom,
    status: Vec<u8>,
}

impl Segment {
    pub fn open(state: &Path, entry: &SegmentEntry, sketch: usize) -> Result<Segment, StateError> {
        let dir = state.join(&entry.dir);
        let segment = Segment {
            entry: entry.clone(),
            docs: RunReader::open(&dir.join(DOCS), DocRecord::MAGIC, DocRecord::WIDTH)?,
            keys: RunReader::open(&dir.join(KEYS), KEYS_MAGIC, key_width(sketch))?,
            exact: RunReader::open(&dir.join(EXACT), ExactRecord::MAGIC, ExactRecord::WIDTH)?,
            bands: RunReader::open(&dir.join(BANDS), KeyedRecord::MAGIC, KeyedRecord::WIDTH)?,
            witnesses: RunReader::open(
                &dir.join(WITNESSES),
                KeyedRecord::MAGIC,
                KeyedRecord::WIDTH,
            )?,
            changes: RunReader::open(&dir.join(CHANGES), ChangeRecord::MAGIC, ChangeRecord::WIDTH)?,
            bloom: Bloom::read(&dir.join(BLOOM))?,
            exact_bloom: Bloom::read(&dir.join(EXACT_BLOOM))?,
            status: read_status(&dir.join(STATUS))?,
        };
        let corrupt = |what: String| StateError::Invalid {
            dir: dir.clone(),
            reason: format!("corrupt index segment: {what}"),
        };
        for (name, len) in [
            (DOCS, segment.docs.len()),
            (KEYS, segment.keys.len()),
            (STATUS, segment.status.len() as u64),
        ] {
            if len != entry.docs as u64 {
                return Err(corrupt(format!(
                    "{name} holds {len} documents, the manifest says {}",
                    entry.docs
                )));
            }
        }
        Ok(segment)
    }

    /// The status this segment gave its own document `ordinal`.
    pub fn own_status(&self, ordinal: u32) -> Status {
        let byte = self.status[(ordinal - self.entry.base) as usize];
        Status::from_byte(byte).expect("checked when read")
    }

    /// Memory held: statuses, the Bloom filter and the runs' fences.
    pub fn memory_bytes(&self) -> usize {
        self.status.len()
            + self.bloom.memory_bytes()
            + self.exact_bloom.memory_bytes()
            + [
                &self.docs,
                &self.keys,
                &self.exact,
                &self.bands,
                &self.witnesses,
                &self.changes,
            ]
            .iter()
            .map(|run| run.memory_bytes())
            .sum::<usize>()
    }
}

fn read_status(path: &Path) -> Result<Vec<u8>, StateError> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let corrupt = |why: &str| StateError::Invalid {
        dir: path.to_path_buf(),
        reason: format!("corrupt index segment: {why}"),
    };
    if bytes.len() < 16 || &bytes[..8] != STATUS_MAGIC {
        return Err(corrupt("bad header or length"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != sum {
        return Err(corrupt("checksum mismatch"));
    }
    let status = body[8..].to_vec();
    if status.iter().any(|&b| Status::from_byte(b).is_none()) {
        return Err(corrupt("an unknown status"));
    }
    Ok(status)
}
