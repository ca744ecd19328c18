//! Compaction: merging the index's newest segments into one, so that a probe reads a few
//! segments however many epochs there were. After each commit, while the newest segment
//! holds at least half as many documents as the one before it, the two are merged (like a
//! binary counter: segment sizes at least double going back, so there are O(log n) of them
//! and each document is rewritten O(log n) times).
//!
//! A merged segment answers every probe as its parts did: the same documents at the same
//! ordinals, with the statuses the parts' changes gave them, and without the records of
//! retracted documents (which no probe returns anyway). It is written under
//! `index/FIRST-LAST.tmp/`, renamed, and committed in the manifest; the parts' files are
//! removed after the commit (or, after a crash, by the next run: `remove_unlisted`).

use crate::pipeline::index::Index;
use crate::pipeline::run_file::{RunReader, RunWriter, merge};
use crate::pipeline::segment::{
    self, ChangeRecord, DocRecord, ExactRecord, KeyedRecord, Record, Segment, SegmentEntry,
    key_width,
};
use crate::pipeline::state::{Manifest, StateDir, StateError, io_error, sync_dir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Merge the newest segments while the rule above says so; commit after each merge.
pub fn compact_due(
    state: &StateDir,
    manifest: &mut Manifest,
    sketch_words: usize,
) -> Result<(), StateError> {
    while let [.., older, newest] = manifest.segments.as_slice()
        && newest.docs as u64 * 2 >= older.docs as u64
    {
        let parts = manifest.segments.split_off(manifest.segments.len() - 2);
        let merged = merge_segments(state, manifest, &parts, sketch_words)?;
        manifest.segments.push(merged);
        crate::pipeline::fail_point::fail_point("before-compaction-commit");
        state.commit(manifest)?;
        remove_unlisted(state, manifest)?;
    }
    Ok(())
}

/// Merge every segment into one (`steel compact`); false when there was at most one.
pub fn compact_all(
    state: &StateDir,
    manifest: &mut Manifest,
    sketch_words: usize,
) -> Result<bool, StateError> {
    if manifest.segments.len() < 2 {
        return Ok(false);
    }
    let parts = std::mem::take(&mut manifest.segments);
    let merged = merge_segments(state, manifest, &parts, sketch_words)?;
    manifest.segments.push(merged);
    state.commit(manifest)?;
    remove_unlisted(state, manifest)?;
    Ok(true)
}

/// Write `parts` (adjacent, in ordinal order) as one segment; its manifest entry.
fn merge_segments(
    state: &StateDir,
    manifest: &Manifest,
    parts: &[SegmentEntry],
    sketch_words: usize,
) -> Result<SegmentEntry, StateError> {
    let (first, last) = (&parts[0], &parts[parts.len() - 1]);
    let name = format!("index/{:06}-{:06}", first.first_epoch, last.last_epoch);
    let dir = state.dir.join(&name);
    let tmp = dir.with_extension("tmp");
    for stale in [&tmp, &dir] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(io_error(stale))?;
        }
    }
    std::fs::create_dir_all(&tmp).map_err(io_error(&tmp))?;
    // Liveness as of now; the index's own statuses are not needed (changes are applied
    // from the parts themselves, in order).
    let index = Index::open(
        &state.dir,
        parts,
        manifest.retracted_ordinals(&[]),
        0,
        sketch_words,
    )?;
    let segments = index.segments();
    let range = first.base..last.end();
    // Statuses: each part's own, then the parts' changes in order (a later one wins).
    let mut status: Vec<u8> = Vec::with_capacity(range.len());
    for part in segments {
        status.extend((part.entry.base..part.entry.end()).map(|o| part.own_status(o) as u8));
    }
    let mut outside: BTreeMap<u64, u64> = BTreeMap::new();
    for part in segments {
        part.changes.for_each(|bytes| {
            let change = ChangeRecord::decode(bytes);
            match range.contains(&(change.ordinal as u32)) {
                true => {
                    status[(change.ordinal as u32 - range.start) as usize] = change.status as u8
                }
                false => {
                    outside.insert(change.ordinal, change.status);
                }
            }
            Ok(())
        })?;
    }
    let mut bytes = 0;
    for (file, width, magic) in [
        (segment::DOCS, DocRecord::WIDTH, DocRecord::MAGIC),
        (segment::KEYS, key_width(sketch_words), segment::KEYS_MAGIC),
    ] {
        let mut out = RunWriter::create(&tmp.join(file), magic, width, false)?;
        for part in segments {
            let run = if file == segment::DOCS {
                &part.docs
            } else {
                &part.keys
            };
            run.for_each(|record| out.push(record))?;
        }
        bytes += out.finish()?;
    }
    let live = |ordinal: u32| index.live(ordinal);
    bytes += merge_run::<ExactRecord>(
        &tmp,
        segment::EXACT,
        segments,
        |s| &s.exact,
        |r| live(r.ordinal),
    )?;
    bytes += merge_run::<KeyedRecord>(
        &tmp,
        segment::BANDS,
        segments,
        |s| &s.bands,
        |r| live(r.ordinal),
    )?;
    bytes += segment::write_blooms(&tmp)?;
    bytes += merge_run::<KeyedRecord>(
        &tmp,
        segment::WITNESSES,
        segments,
        |s| &s.witnesses,
        |r| live(r.ordinal) && live(r.key as u32),
    )?;
    let mut changes = RunWriter::create(
        &tmp.join(segment::CHANGES),
        ChangeRecord::MAGIC,
        ChangeRecord::WIDTH,
        true,
    )?;
    let mut record = Vec::new();
    for (ordinal, status) in outside {
        record.clear();
        ChangeRecord { ordinal, status }.encode(&mut record);
        changes.push(&record)?;
    }
    bytes += changes.finish()?;
    bytes += segment::write_status(&tmp.join(segment::STATUS), &status)?;
    drop(index);
    std::fs::rename(&tmp, &dir).map_err(io_error(&dir))?;
    sync_dir(dir.parent().expect("index dir has a parent"))?;
    Ok(SegmentEntry {
        dir: name,
        first_epoch: first.first_epoch,
        last_epoch: last.last_epoch,
        base: first.base,
        docs: range.len() as u32,
        bytes,
    })
}

/// Merge one sorted run of every part, keeping the records `keep` says.
fn merge_run<R: Record>(
    dir: &Path,
    file: &str,
    parts: &[Segment],
    run: impl Fn(&Segment) -> &RunReader,
    keep: impl Fn(&R) -> bool,
) -> Result<u64, StateError> {
    let inputs: Vec<&RunReader> = parts.iter().map(run).collect();
    let mut out = RunWriter::create(&dir.join(file), R::MAGIC, R::WIDTH, true)?;
    merge(
        &inputs,
        |a, b| R::decode(a).cmp(&R::decode(b)),
        |bytes| keep(&R::decode(bytes)),
        &mut out,
    )?;
    out.finish()
}

/// Remove index files the manifest does not list: the segment files of epochs merged away,
/// and merged segments of a compaction that never committed.
pub fn remove_unlisted(state: &StateDir, manifest: &Manifest) -> Result<Vec<PathBuf>, StateError> {
    let listed: Vec<PathBuf> = manifest
        .segments
        .iter()
        .map(|s| state.dir.join(&s.dir))
        .collect();
    let mut removed = Vec::new();
    for parent in ["epochs", "index"] {
        let Ok(entries) = std::fs::read_dir(state.dir.join(parent)) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        dirs.sort();
        for dir in dirs.into_iter().filter(|d| !listed.contains(d)) {
            if parent == "index" {
                std::fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
                removed.push(dir);
                continue;
            }
            // An epoch directory keeps its `dups.jsonl`.
            for name in segment::FILES {
                let path = dir.join(name);
                if path.exists() {
                    std::fs::remove_file(&path).map_err(io_error(&path))?;
                    removed.push(path);
                }
            }
        }
    }
    Ok(removed)
}
