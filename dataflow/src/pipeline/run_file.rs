//! Run files: the on-disk format of an immutable, compact dedup index. A run is a sequence of
//! fixed-width records, either sorted by key (for lookups) or in arbitrary order (an array,
//! read by position). It is read with positioned reads (`FileExt::read_at`), never mapped,
//! so that its pages do not count against resident memory: a reader holds only its fences.
//!
//! A record is `width` bytes, 8 ≤ `width` ≤ 4088; its *key* is its first 8 bytes as a
//! little-endian u64.
//!
//! Layout (all integers little-endian):
//! - `blocks` blocks of [`BLOCK`] = 4096 bytes each. A block holds
//!   `per_block = (4096 - 8) / width` records (`per_block * width` bytes), then zero padding
//!   up to byte 4088, then the xxh3-64 of its first 4088 bytes (8 bytes). Every block is full
//!   except perhaps the last, whose unused record slots are zero.
//!   `blocks = ceil(records / per_block)`; an empty run has no blocks.
//! - The footer, `8 * blocks + 40` bytes:
//!   - `fences`: one u64 per block, the key of the block's first record (for both sorted runs
//!     and arrays; only sorted runs use them, to find the block a key lies in);
//!   - `records: u64`, `width: u64`, `blocks: u64`;
//!   - `magic: [u8; 8]`, naming what the run holds;
//!   - the xxh3-64 of the footer's bytes before it (fences through magic).
//!
//! The file is therefore exactly `4096 * blocks + 8 * blocks + 40` bytes. [`RunReader::open`]
//! refuses any file whose size, magic, width, counts or footer checksum disagree, and every
//! block read checks the block's checksum; any such fault is a
//! [`StateError::Invalid`] naming the file, with a reason starting `corrupt index segment:`.

use crate::pipeline::state::{StateError, io_error};
use std::cmp::Ordering;
use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_64;

/// Bytes per block.
pub const BLOCK: usize = 4096;
/// Bytes of a block before its checksum: records and padding.
const BLOCK_BODY: usize = BLOCK - 8;
/// Bytes of the footer after the fences: records, width, blocks, magic and checksum.
const FOOTER_TAIL: usize = 5 * 8;
/// Bytes per block in the file: the block and its fence.
const BLOCK_AND_FENCE: u64 = BLOCK as u64 + 8;

/// Writes a run file one record at a time; [`RunWriter::finish`] completes it.
pub struct RunWriter {
    file: File,
    path: PathBuf,
    magic: [u8; 8],
    width: usize,
    per_block: usize,
    sorted: bool,
    /// The block being filled; zero beyond its records.
    block: Vec<u8>,
    /// Records in `block`.
    in_block: usize,
    fences: Vec<u64>,
    records: u64,
    /// The key of the last record pushed.
    last_key: Option<u64>,
}

impl RunWriter {
    /// Creates (or truncates) the run file at `path` for records of `width` bytes
    /// (8 ≤ `width` ≤ 4088). `sorted`: keys must be non-decreasing (push refuses a smaller
    /// key with an Invalid error naming the path).
    pub fn create(
        path: &Path,
        magic: [u8; 8],
        width: usize,
        sorted: bool,
    ) -> Result<RunWriter, StateError> {
        check_width(path, width)?;
        let file = File::create(path).map_err(io_error(path))?;
        Ok(RunWriter {
            file,
            path: path.to_path_buf(),
            magic,
            width,
            per_block: BLOCK_BODY / width,
            sorted,
            block: vec![0; BLOCK],
            in_block: 0,
            fences: Vec::new(),
            records: 0,
            last_key: None,
        })
    }

    /// Appends `record`, which must be `width` bytes (and, in a sorted run, have a key no
    /// smaller than the last one's); either fault is an Invalid error naming the path.
    pub fn push(&mut self, record: &[u8]) -> Result<(), StateError> {
        if record.len() != self.width {
            return Err(misuse(
                &self.path,
                format!(
                    "a record of {} bytes pushed to a run of {}-byte records",
                    record.len(),
                    self.width
                ),
            ));
        }
        let key = key(record);
        if let Some(last) = self.last_key.filter(|&last| self.sorted && key < last) {
            return Err(misuse(
                &self.path,
                format!("key {key} pushed after key {last} in a sorted run"),
            ));
        }
        if self.in_block == 0 {
            self.fences.push(key);
        }
        let at = self.in_block * self.width;
        self.block[at..at + self.width].copy_from_slice(record);
        self.in_block += 1;
        self.records += 1;
        self.last_key = Some(key);
        if self.in_block == self.per_block {
            self.write_block()?;
        }
        Ok(())
    }

    /// Records pushed so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Writes the last block and the footer, fsyncs; returns the file's total size in bytes.
    pub fn finish(mut self) -> Result<u64, StateError> {
        if self.in_block > 0 {
            self.write_block()?;
        }
        let blocks = self.fences.len() as u64;
        let mut footer = Vec::with_capacity(self.fences.len() * 8 + FOOTER_TAIL);
        for fence in &self.fences {
            footer.extend_from_slice(&fence.to_le_bytes());
        }
        footer.extend_from_slice(&self.records.to_le_bytes());
        footer.extend_from_slice(&(self.width as u64).to_le_bytes());
        footer.extend_from_slice(&blocks.to_le_bytes());
        footer.extend_from_slice(&self.magic);
        footer.extend_from_slice(&xxh3_64(&footer).to_le_bytes());
        self.file.write_all(&footer).map_err(io_error(&self.path))?;
        self.file.sync_all().map_err(io_error(&self.path))?;
        Ok(blocks * BLOCK as u64 + footer.len() as u64)
    }

    /// Seals the current block with its checksum, writes it and starts an empty one.
    fn write_block(&mut self) -> Result<(), StateError> {
        let sum = xxh3_64(&self.block[..BLOCK_BODY]);
        self.block[BLOCK_BODY..].copy_from_slice(&sum.to_le_bytes());
        self.file
            .write_all(&self.block)
            .map_err(io_error(&self.path))?;
        self.block.fill(0);
        self.in_block = 0;
        Ok(())
    }
}

/// Reads a run file written by [`RunWriter`]. It holds the open file and the fences; every
/// read is a positioned read, so one reader serves many threads.
pub struct RunReader {
    file: File,
    path: PathBuf,
    width: usize,
    per_block: usize,
    records: u64,
    /// The key of each block's first record.
    fences: Vec<u64>,
}

impl RunReader {
    /// Opens the run file at `path`, checking that it holds `width`-byte records under
    /// `magic`, that its size agrees with its footer and that the footer's checksum holds.
    pub fn open(path: &Path, magic: [u8; 8], width: usize) -> Result<RunReader, StateError> {
        check_width(path, width)?;
        let file = File::open(path).map_err(io_error(path))?;
        let size = file.metadata().map_err(io_error(path))?.len();
        if size < FOOTER_TAIL as u64 {
            return Err(corrupt(
                path,
                format!("it is {size} bytes, smaller than a footer ({FOOTER_TAIL} bytes)"),
            ));
        }
        // The fixed part of the footer sits at the very end; it says how many blocks (and so
        // fences) precede it.
        let mut tail = [0u8; FOOTER_TAIL];
        read_at(&file, path, &mut tail, size - FOOTER_TAIL as u64)?;
        let found_magic = &tail[24..32];
        if found_magic != magic {
            return Err(corrupt(
                path,
                format!("magic is {found_magic:?}, expected {magic:?}"),
            ));
        }
        let blocks = u64_at(&tail, 16);
        let expected = blocks
            .checked_mul(BLOCK_AND_FENCE)
            .and_then(|n| n.checked_add(FOOTER_TAIL as u64));
        if expected != Some(size) {
            return Err(corrupt(
                path,
                format!(
                    "it is {size} bytes but its footer says {blocks} blocks; truncated or damaged"
                ),
            ));
        }
        // The size check bounds `blocks` by the file's size, so this allocation is sound.
        let mut footer = vec![0u8; size as usize - blocks as usize * BLOCK];
        read_at(&file, path, &mut footer, blocks * BLOCK as u64)?;
        let (summed, sum) = footer.split_at(footer.len() - 8);
        if xxh3_64(summed) != u64_at(sum, 0) {
            return Err(corrupt(path, "the footer fails its checksum".into()));
        }
        let found_width = u64_at(&tail, 8);
        if found_width != width as u64 {
            return Err(corrupt(
                path,
                format!("records are {found_width} bytes, expected {width}"),
            ));
        }
        let per_block = BLOCK_BODY / width;
        let records = u64_at(&tail, 0);
        if records.div_ceil(per_block as u64) != blocks {
            return Err(corrupt(
                path,
                format!("{records} records cannot fill {blocks} blocks of {per_block}"),
            ));
        }
        let fences = (0..blocks as usize)
            .map(|b| u64_at(&footer, b * 8))
            .collect();
        Ok(RunReader {
            file,
            path: path.to_path_buf(),
            width,
            per_block,
            records,
            fences,
        })
    }

    /// Records in the run.
    pub fn len(&self) -> u64 {
        self.records
    }

    /// Whether the run has no records.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The run file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of memory this reader holds (fences etc.), for memory accounting.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.fences.capacity() * std::mem::size_of::<u64>()
            + self.path.as_os_str().len()
    }

    /// Record `i` (array access), copied into `out` (cleared, then width bytes). Reads one
    /// block and checks its checksum. An `i` past the end is an Invalid error.
    pub fn get(&self, i: u64, out: &mut Vec<u8>) -> Result<(), StateError> {
        if i >= self.records {
            return Err(misuse(
                &self.path,
                format!("record {i} asked of a run of {} records", self.records),
            ));
        }
        let per_block = self.per_block as u64;
        // `i < records`, and `open` checked `records` against the number of blocks.
        let block = (i / per_block) as usize;
        let at = (i % per_block) as usize * self.width;
        let mut buf = vec![0; BLOCK];
        self.read_block(block, &mut buf)?;
        out.clear();
        out.extend_from_slice(&buf[at..at + self.width]);
        Ok(())
    }

    /// Sorted runs: call `each` on every record whose key == `key`, in file order (may span
    /// blocks). Uses the fences (binary search) so it normally reads one block; stops early if
    /// `each` returns Ok(false).
    pub fn find(
        &self,
        key: u64,
        mut each: impl FnMut(&[u8]) -> Result<bool, StateError>,
    ) -> Result<(), StateError> {
        // Blocks from the first whose fence exceeds `key` on start above it.
        let end = self.fences.partition_point(|&fence| fence <= key);
        let blocks = self.first_block_for(key)..end;
        self.walk(blocks, |record| match self::key(record).cmp(&key) {
            Ordering::Less => Ok(true),
            Ordering::Equal => each(record),
            Ordering::Greater => Ok(false),
        })
    }

    /// Sorted runs: records with key >= `from`, in order, until `each` returns Ok(false) or
    /// the run ends.
    pub fn scan_from(
        &self,
        from: u64,
        mut each: impl FnMut(&[u8]) -> Result<bool, StateError>,
    ) -> Result<(), StateError> {
        let blocks = self.first_block_for(from)..self.fences.len();
        self.walk(blocks, |record| {
            if key(record) < from {
                Ok(true)
            } else {
                each(record)
            }
        })
    }

    /// Every record in order (sequential reads, one block buffer), for merging.
    pub fn for_each(
        &self,
        mut each: impl FnMut(&[u8]) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        self.walk(0..self.fences.len(), |record| {
            each(record)?;
            Ok(true)
        })
    }

    /// In a sorted run, the first block that can hold a record with key `key`: the block
    /// before the first whose fence is >= `key`. That earlier block starts below `key` but may
    /// end with records of `key` that continue into the next block, whose fence is `key`.
    fn first_block_for(&self, key: u64) -> usize {
        self.fences
            .partition_point(|&fence| fence < key)
            .saturating_sub(1)
    }

    /// Calls `each` on the records of `blocks`, in order, until it returns Ok(false).
    fn walk(
        &self,
        blocks: Range<usize>,
        mut each: impl FnMut(&[u8]) -> Result<bool, StateError>,
    ) -> Result<(), StateError> {
        let mut cursor = Cursor::new(self, blocks)?;
        while let Some(record) = cursor.head() {
            if !each(record)? {
                break;
            }
            cursor.advance()?;
        }
        Ok(())
    }

    /// Records in block `block`: `per_block`, except in a partly filled last block.
    fn block_records(&self, block: usize) -> usize {
        let before = block as u64 * self.per_block as u64;
        (self.records - before).min(self.per_block as u64) as usize
    }

    /// Reads block `block` into `buf` (BLOCK bytes) and checks its checksum.
    fn read_block(&self, block: usize, buf: &mut [u8]) -> Result<(), StateError> {
        read_at(&self.file, &self.path, buf, block as u64 * BLOCK as u64)?;
        let (body, sum) = buf.split_at(BLOCK_BODY);
        if xxh3_64(body) != u64_at(sum, 0) {
            return Err(corrupt(
                &self.path,
                format!("block {block} fails its checksum"),
            ));
        }
        Ok(())
    }
}

/// A position in a run, over a range of its blocks, holding one block in memory.
struct Cursor<'a> {
    run: &'a RunReader,
    /// The block in `buf`, then the blocks still to read up to `blocks.end`.
    blocks: Range<usize>,
    buf: Vec<u8>,
    /// Records in `buf`; 0 once the range is exhausted.
    in_block: usize,
    /// The current record's index in `buf`.
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor on the first record of `blocks` (none if the range is empty).
    fn new(run: &'a RunReader, blocks: Range<usize>) -> Result<Cursor<'a>, StateError> {
        let mut cursor = Cursor {
            run,
            blocks,
            buf: vec![0; BLOCK],
            in_block: 0,
            pos: 0,
        };
        cursor.load()?;
        Ok(cursor)
    }

    /// The current record, or None past the end of the range.
    fn head(&self) -> Option<&[u8]> {
        let width = self.run.width;
        let at = self.pos * width;
        (self.pos < self.in_block).then(|| &self.buf[at..at + width])
    }

    /// Moves to the next record, reading the next block when this one is done.
    fn advance(&mut self) -> Result<(), StateError> {
        self.pos += 1;
        if self.pos >= self.in_block {
            self.blocks.start += 1;
            self.load()?;
        }
        Ok(())
    }

    /// Reads the block at the start of the range, if any, and points at its first record.
    fn load(&mut self) -> Result<(), StateError> {
        self.pos = 0;
        self.in_block = 0;
        if !self.blocks.is_empty() {
            let block = self.blocks.start;
            self.run.read_block(block, &mut self.buf)?;
            self.in_block = self.run.block_records(block);
        }
        Ok(())
    }
}

/// K-way merge of sorted runs of the same width into `out`, ordered by `order` (a total order
/// on whole records that must agree with key order), writing only records for which `keep` is
/// true. Streams: memory is one block per input. Records that `order` ranks equal come out in
/// the order of `inputs`. Each step picks the least head by a linear scan of the inputs, which
/// suits the few runs an index merges at a time.
pub fn merge(
    inputs: &[&RunReader],
    order: impl Fn(&[u8], &[u8]) -> Ordering,
    mut keep: impl FnMut(&[u8]) -> bool,
    out: &mut RunWriter,
) -> Result<(), StateError> {
    if let Some(other) = inputs.iter().find(|run| run.width != out.width) {
        return Err(misuse(
            &out.path,
            format!(
                "cannot merge `{}` ({}-byte records) into a run of {}-byte records",
                other.path.display(),
                other.width,
                out.width
            ),
        ));
    }
    let mut cursors = inputs
        .iter()
        .map(|run| Cursor::new(run, 0..run.fences.len()))
        .collect::<Result<Vec<_>, _>>()?;
    // A binary min-heap of the cursors that have a head, by head (then input order, so
    // that equal records come out in input order): each record costs O(log inputs).
    let less = |cursors: &[Cursor], a: usize, b: usize| {
        let (x, y) = (cursors[a].head(), cursors[b].head());
        let (Some(x), Some(y)) = (x, y) else {
            return false;
        };
        order(x, y).then(a.cmp(&b)) == Ordering::Less
    };
    let mut heap: Vec<usize> = (0..cursors.len())
        .filter(|&i| cursors[i].head().is_some())
        .collect();
    for at in (0..heap.len() / 2).rev() {
        sift_down(&mut heap, at, |a, b| less(&cursors, a, b));
    }
    while let Some(&least) = heap.first() {
        let cursor = &mut cursors[least];
        if let Some(record) = cursor.head().filter(|record| keep(record)) {
            out.push(record)?;
        }
        cursor.advance()?;
        if cursor.head().is_none() {
            heap.swap_remove(0);
        }
        sift_down(&mut heap, 0, |a, b| less(&cursors, a, b));
    }
    Ok(())
}

/// Restore the heap order below `at` (`less` compares the cursors two entries name).
fn sift_down(heap: &mut [usize], mut at: usize, less: impl Fn(usize, usize) -> bool) {
    loop {
        let (left, right) = (2 * at + 1, 2 * at + 2);
        let mut least = at;
        if left < heap.len() && less(heap[left], heap[least]) {
            least = left;
        }
        if right < heap.len() && less(heap[right], heap[least]) {
            least = right;
        }
        if least == at {
            return;
        }
        heap.swap(at, least);
        at = least;
    }
}

/// A record's key: its first 8 bytes, little-endian. Records are at least 8 bytes.
fn key(record: &[u8]) -> u64 {
    u64_at(record, 0)
}

/// The little-endian u64 at byte `at` of `bytes`, which must hold 8 bytes there.
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Fills `buf` from `file` at `offset`; a short file is an I/O error naming `path`.
fn read_at(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> Result<(), StateError> {
    file.read_exact_at(buf, offset).map_err(io_error(path))
}

/// Refuses a record width a block cannot hold or a key cannot fit in.
fn check_width(path: &Path, width: usize) -> Result<(), StateError> {
    if (8..=BLOCK_BODY).contains(&width) {
        Ok(())
    } else {
        Err(misuse(
            path,
            format!("record width {width} is outside 8..={BLOCK_BODY}"),
        ))
    }
}

/// The file's contents are damaged or are not a run of the expected kind.
fn corrupt(path: &Path, why: String) -> StateError {
    StateError::Invalid {
        dir: path.to_path_buf(),
        reason: format!("corrupt index segment: {why}"),
    }
}

/// The caller asked for something the run cannot do (a bug in the caller, not the file).
fn misuse(path: &Path, why: String) -> StateError {
    StateError::Invalid {
        dir: path.to_path_buf(),
        reason: format!("index segment: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: [u8; 8] = *b"TESTRUN1";

    fn record12(key: u64, payload: u32) -> Vec<u8> {
        let mut r = key.to_le_bytes().to_vec();
        r.extend_from_slice(&payload.to_le_bytes());
        r
    }

    /// A deterministic pseudo-random sequence (xorshift).
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    fn write(path: &Path, width: usize, sorted: bool, records: &[Vec<u8>]) -> u64 {
        let mut w = RunWriter::create(path, MAGIC, width, sorted).unwrap();
        for r in records {
            w.push(r).unwrap();
        }
        assert_eq!(w.records(), records.len() as u64);
        w.finish().unwrap()
    }

    /// ~3000 sorted 12-byte records with even keys only and runs of equal keys of length
    /// 1..60, plus one run of 800 (which spans at least two block boundaries).
    fn sorted_records() -> Vec<Vec<u8>> {
        let mut next = rng(7);
        let mut out = Vec::new();
        let mut key = 2u64;
        while out.len() < 3000 {
            let copies = if key == 40 { 800 } else { 1 + next() % 60 };
            for _ in 0..copies {
                out.push(record12(key, out.len() as u32));
            }
            key += 2 * (1 + next() % 3);
        }
        out
    }

    fn collect_find(run: &RunReader, key: u64) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        run.find(key, |r| {
            got.push(r.to_vec());
            Ok(true)
        })
        .unwrap();
        got
    }

    fn collect_all(run: &RunReader) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        run.for_each(|r| {
            got.push(r.to_vec());
            Ok(())
        })
        .unwrap();
        got
    }

    fn assert_names(err: StateError, path: &Path, words: &str) {
        let text = err.to_string();
        assert!(
            text.contains(&path.display().to_string()) && text.contains(words),
            "{text}"
        );
    }

    #[test]
    fn reader_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<RunReader>();
    }

    #[test]
    fn sorted_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run");
        let input = sorted_records();
        let size = write(&path, 12, true, &input);
        assert_eq!(size, std::fs::metadata(&path).unwrap().len());
        let run = RunReader::open(&path, MAGIC, 12).unwrap();
        assert_eq!(run.len(), input.len() as u64);
        assert!(!run.is_empty());
        assert_eq!(run.path(), path);
        let per_block = BLOCK_BODY / 12;
        let blocks = input.len().div_ceil(per_block);
        assert_eq!(size, (blocks * (BLOCK + 8) + FOOTER_TAIL) as u64);
        assert!(run.memory_bytes() >= blocks * 8);

        // Equal keys do cross block boundaries, including into a block whose fence is the key.
        let crossing = (1..blocks)
            .filter(|&b| key(&input[b * per_block - 1]) == key(&input[b * per_block]))
            .count();
        assert!(
            crossing >= 2,
            "only {crossing} runs of equal keys cross blocks"
        );

        let max = key(input.last().unwrap());
        for k in 0..=max + 3 {
            let want: Vec<_> = input.iter().filter(|r| key(r) == k).cloned().collect();
            assert_eq!(collect_find(&run, k), want, "find {k}");
            // A scan of the next 5 records from `k`.
            let want: Vec<_> = input
                .iter()
                .filter(|r| key(r) >= k)
                .take(5)
                .cloned()
                .collect();
            let mut got = Vec::new();
            run.scan_from(k, |r| {
                got.push(r.to_vec());
                Ok(got.len() < 5)
            })
            .unwrap();
            assert_eq!(got, want, "scan_from {k}");
        }
        // A whole scan, and a find that stops after the first record.
        let mut got = Vec::new();
        run.scan_from(41, |r| {
            got.push(r.to_vec());
            Ok(true)
        })
        .unwrap();
        let want: Vec<_> = input.iter().filter(|r| key(r) >= 41).cloned().collect();
        assert_eq!(got, want);
        let mut first = Vec::new();
        run.find(40, |r| {
            first.push(r.to_vec());
            Ok(false)
        })
        .unwrap();
        assert_eq!(
            first,
            vec![input.iter().find(|r| key(r) == 40).unwrap().clone()]
        );

        let mut out = Vec::new();
        for (i, want) in input.iter().enumerate() {
            run.get(i as u64, &mut out).unwrap();
            assert_eq!(&out, want, "get {i}");
        }
        assert!(run.get(input.len() as u64, &mut out).is_err());
        assert_eq!(collect_all(&run), input);
    }

    #[test]
    fn array_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("array");
        let mut next = rng(11);
        let input: Vec<Vec<u8>> = (0..1000)
            .map(|_| (0..20).map(|_| next() as u8).collect())
            .collect();
        write(&path, 20, false, &input);
        let run = RunReader::open(&path, MAGIC, 20).unwrap();
        assert_eq!(run.len(), 1000);
        let mut out = vec![1, 2, 3];
        for (i, want) in input.iter().enumerate() {
            run.get(i as u64, &mut out).unwrap();
            assert_eq!(&out, want, "get {i}");
        }
        assert_eq!(collect_all(&run), input);
    }

    #[test]
    fn merge_equals_sorted_concatenation() {
        let dir = tempfile::tempdir().unwrap();
        // Whole-record order: key, then payload.
        let payload = |r: &[u8]| u32::from_le_bytes([r[8], r[9], r[10], r[11]]);
        let order = |a: &[u8], b: &[u8]| (key(a), payload(a)).cmp(&(key(b), payload(b)));
        let mut next = rng(3);
        let mut all = Vec::new();
        let mut runs = Vec::new();
        for (n, count) in [(0, 900), (1, 1500), (2, 40)] {
            let mut records: Vec<Vec<u8>> = (0..count)
                .map(|_| record12(next() % 500, next() as u32))
                .collect();
            records.sort_by(|a, b| order(a, b));
            let path = dir.path().join(format!("in{n}"));
            write(&path, 12, true, &records);
            runs.push(RunReader::open(&path, MAGIC, 12).unwrap());
            all.extend(records);
        }
        let keep = |r: &[u8]| payload(r) % 3 != 0;
        let out_path = dir.path().join("out");
        let mut out = RunWriter::create(&out_path, MAGIC, 12, true).unwrap();
        let inputs: Vec<&RunReader> = runs.iter().collect();
        merge(&inputs, order, keep, &mut out).unwrap();
        out.finish().unwrap();

        all.sort_by(|a, b| order(a, b));
        all.retain(|r| keep(r));
        assert!(all.len() > 1000);
        let merged = RunReader::open(&out_path, MAGIC, 12).unwrap();
        assert_eq!(collect_all(&merged), all);
    }

    #[test]
    fn corrupt_block_fails_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run");
        let input = sorted_records();
        write(&path, 12, true, &input);
        // Flip a byte of block 1's records.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[BLOCK + 100] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let run = RunReader::open(&path, MAGIC, 12).unwrap();
        let per_block = (BLOCK_BODY / 12) as u64;
        let mut out = Vec::new();
        run.get(0, &mut out).unwrap();
        assert_eq!(out, input[0]);
        let err = run.get(per_block + 3, &mut out).unwrap_err();
        assert_names(err, &path, "block 1 fails its checksum");
        let in_block_1 = key(&input[per_block as usize + 1]);
        let err = run.find(in_block_1, |_| Ok(true)).unwrap_err();
        assert_names(err, &path, "checksum");
        assert!(run.for_each(|_| Ok(())).is_err());
    }

    #[test]
    fn open_refuses_truncated_or_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run");
        let input = sorted_records();
        write(&path, 12, true, &input);
        let bytes = std::fs::read(&path).unwrap();

        let err = RunReader::open(&path, *b"OTHERRUN", 12).err().unwrap();
        assert_names(err, &path, "magic");
        let err = RunReader::open(&path, MAGIC, 16).err().unwrap();
        assert_names(err, &path, "records are 12 bytes, expected 16");

        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let err = RunReader::open(&path, MAGIC, 12).err().unwrap();
        assert_names(err, &path, "corrupt index segment");

        // A whole block cut out: the magic is intact but the size disagrees.
        let mut cut = bytes[..BLOCK].to_vec();
        cut.extend_from_slice(&bytes[2 * BLOCK..]);
        std::fs::write(&path, &cut).unwrap();
        let err = RunReader::open(&path, MAGIC, 12).err().unwrap();
        assert_names(err, &path, "its footer says");

        // A fence altered: the footer's checksum catches it.
        let mut fence = bytes.clone();
        let blocks = input.len().div_ceil(BLOCK_BODY / 12);
        fence[blocks * BLOCK] ^= 1;
        std::fs::write(&path, &fence).unwrap();
        let err = RunReader::open(&path, MAGIC, 12).err().unwrap();
        assert_names(err, &path, "footer fails its checksum");

        std::fs::write(&path, b"short").unwrap();
        let err = RunReader::open(&path, MAGIC, 12).err().unwrap();
        assert_names(err, &path, "smaller than a footer");
    }

    #[test]
    fn writer_refuses_bad_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run");
        let mut w = RunWriter::create(&path, MAGIC, 12, true).unwrap();
        w.push(&record12(5, 0)).unwrap();
        w.push(&record12(5, 1)).unwrap();
        let err = w.push(&record12(4, 2)).unwrap_err();
        assert_names(err, &path, "key 4 pushed after key 5");
        let err = w.push(&[0; 8]).unwrap_err();
        assert_names(err, &path, "8 bytes");
        assert_eq!(w.records(), 2);
        assert!(RunWriter::create(&path, MAGIC, 7, true).is_err());
        assert!(RunWriter::create(&path, MAGIC, BLOCK_BODY + 1, true).is_err());
    }

    #[test]
    fn empty_run_opens_and_finds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        let size = write(&path, 12, true, &[]);
        assert_eq!(size, FOOTER_TAIL as u64);
        let run = RunReader::open(&path, MAGIC, 12).unwrap();
        assert!(run.is_empty());
        assert_eq!(run.len(), 0);
        assert!(collect_find(&run, 0).is_empty());
        assert!(collect_all(&run).is_empty());
        run.scan_from(0, |_| panic!("no records")).unwrap();
        assert!(run.get(0, &mut Vec::new()).is_err());
    }

    #[test]
    fn full_last_block_round_trips() {
        // Exactly two full blocks of 4088-byte records (one per block): no partial block.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide");
        let input: Vec<Vec<u8>> = (0..2u64)
            .map(|k| {
                let mut r = vec![k as u8 + 1; BLOCK_BODY];
                r[..8].copy_from_slice(&k.to_le_bytes());
                r
            })
            .collect();
        write(&path, BLOCK_BODY, true, &input);
        let run = RunReader::open(&path, MAGIC, BLOCK_BODY).unwrap();
        assert_eq!(collect_find(&run, 1), vec![input[1].clone()]);
        assert_eq!(collect_all(&run), input);
    }
}
