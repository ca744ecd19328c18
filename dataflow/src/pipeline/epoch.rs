//! One epoch's writing on worker 0: what the dataflow decided, turned into output shards,
//! tombstones, rejects, a report, and the state changes of `state.rs` — all under `.tmp`
//! names until `finish` renames them for the manifest commit.

use crate::doc::{DocMeta, UnifiedDoc};
use crate::output::jsonl::{JsonlShards, to_line};
use crate::output::{OutputError, ShardInfo};
use crate::pipeline::discover::Skipped;
use crate::pipeline::graph::{Captured, DocId, Time, Update, consolidate, row_of, shard_of};
use crate::pipeline::stages::{Cleaned, Entry};
use crate::pipeline::state::{
    HashedLines, SegmentWriter, SourceCounts, StateDir, StateError, io_error, read_hashed_lines,
    sync_dir,
};
use crate::reject::RejectRecord;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

pub const REPORT_JSON: &str = "report.json";
pub const REPORT_TEXT: &str = "report.txt";
pub const TOMBSTONES: &str = "tombstones.jsonl";
pub const REJECTS: &str = "_rejects.jsonl";

/// Where a shard's documents came from.
#[derive(Clone, Debug)]
pub struct ShardSource {
    pub source: String,
    pub path: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct OpCount {
    pub name: String,
    pub docs_in: u64,
    pub docs_out: u64,
    pub changed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct IngestedFile {
    pub source: String,
    pub path: String,
    pub shard: u32,
    pub bytes: u64,
    pub docs: u64,
    pub rejected: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct EpochReport {
    pub epoch: u64,
    pub kind: String,
    pub files: Vec<IngestedFile>,
    pub skipped: Vec<Skipped>,
    /// Per source, the change this epoch made (retractions count negative).
    pub sources: BTreeMap<String, SourceCounts>,
    pub ops: Vec<OpCount>,
    /// Documents dropped before and kept now (a retraction removed what they duplicated).
    pub readmitted: u64,
    /// Kept documents that left the kept set (listed in `tombstones.jsonl`).
    pub tombstoned: u64,
    pub shards: Vec<ShardInfo>,
    pub index_docs: u64,
    pub bytes_in: u64,
    pub seconds: f64,
    pub docs_per_second: f64,
    pub mb_per_second: f64,
}

pub struct EpochWriter {
    pub report: EpochReport,
    out_dir: PathBuf,
    out_tmp: PathBuf,
    state_tmp: PathBuf,
    state_final: PathBuf,
    shards: JsonlShards,
    tombstones: Option<BufWriter<File>>,
    rejects: Option<BufWriter<File>>,
    index: SegmentWriter,
    pairs: SegmentWriter,
    dups: HashedLines,
    /// Shard number -> source name and path, for every shard ever ingested.
    shard_sources: HashMap<u32, ShardSource>,
    /// Documents of shards below this were ingested by earlier epochs.
    first_new_shard: u32,
    /// Texts of old documents that come back, found in earlier epochs' files.
    texts: TextStore,
    /// The epoch's first time, when retractions enter the dataflow.
    base_time: Time,
    /// Documents retracted from the index, not yet counted.
    retracted: Vec<(DocId, isize)>,
    /// Index entries added minus removed.
    index_added: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("{0}")]
    Other(String),
}

impl EpochWriter {
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        state: &StateDir,
        output: &Path,
        epoch: u64,
        kind: &str,
        op_names: Vec<String>,
        shard_sources: HashMap<u32, ShardSource>,
        first_new_shard: u32,
        shard_bytes: u64,
        committed_epochs: Vec<(u64, String)>,
    ) -> Result<Self, EpochError> {
        let out_dir = output.join(format!("epoch-{epoch:06}"));
        let out_tmp = output.join(format!("epoch-{epoch:06}.tmp"));
        let state_final = state.epoch_dir(epoch);
        let state_tmp = state_final.with_extension("tmp");
        for dir in [&out_tmp, &state_tmp] {
            if dir.exists() {
                std::fs::remove_dir_all(dir).map_err(io_error(dir))?;
            }
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        Ok(EpochWriter {
            report: EpochReport {
                epoch,
                kind: kind.into(),
                ops: op_names
                    .into_iter()
                    .map(|name| OpCount {
                        name,
                        ..OpCount::default()
                    })
                    .collect(),
                ..EpochReport::default()
            },
            shards: JsonlShards::new(&out_tmp, shard_bytes),
            tombstones: None,
            rejects: None,
            index: SegmentWriter::index(&state_tmp.join("index.bin"))?,
            pairs: SegmentWriter::pairs(&state_tmp.join("pairs.bin"))?,
            dups: HashedLines::create(&state_tmp.join("dups.jsonl"))?,
            texts: TextStore {
                state_epochs: committed_epochs
                    .iter()
                    .map(|(e, hash)| (state.epoch_dir(*e).join("dups.jsonl"), hash.clone()))
                    .collect(),
                output_epochs: committed_epochs
                    .iter()
                    .map(|(e, _)| output.join(format!("epoch-{e:06}")))
                    .collect(),
            },
            base_time: crate::pipeline::graph::epoch_time(epoch),
            retracted: Vec::new(),
            index_added: 0,
            out_dir,
            out_tmp,
            state_tmp,
            state_final,
            shard_sources,
            first_new_shard,
        })
    }

    fn counts(&mut self, doc: DocId) -> &mut SourceCounts {
        let source = self
            .shard_sources
            .get(&shard_of(doc))
            .map_or_else(|| "?".to_string(), |s| s.source.clone());
        self.report.sources.entry(source).or_default()
    }

    fn meta(&self, doc: DocId) -> DocMeta {
        let source = self.shard_sources.get(&shard_of(doc));
        DocMeta {
            source: source.map_or_else(String::new, |s| s.source.clone()),
            file: source.map_or_else(String::new, |s| s.path.clone()),
            row: row_of(doc) as u64,
        }
    }

    pub fn reject(&mut self, source: &str, reject: &RejectRecord) -> Result<(), EpochError> {
        let path = self.out_tmp.join(REJECTS);
        if self.rejects.is_none() {
            self.rejects = Some(BufWriter::new(
                File::create(&path).map_err(io_error(&path))?,
            ));
        }
        let mut line = serde_json::to_vec(reject).expect("a reject always serialises");
        line.push(b'\n');
        let out = self.rejects.as_mut().expect("opened");
        out.write_all(&line).map_err(io_error(&path))?;
        let counts = self.report.sources.entry(source.to_string()).or_default();
        counts.rejected += 1;
        counts.docs_in += 1;
        Ok(())
    }

    /// A retracted document leaves the index (its previous status is undone by the
    /// dataflow's changes, which `absorb` counts).
    pub fn retract(&mut self, doc: DocId, entry: &Entry) -> Result<(), EpochError> {
        self.index.entry(doc, entry, -1)?;
        self.retracted.push((doc, -1));
        self.index_added -= 1;
        self.counts(doc).docs_in -= 1;
        Ok(())
    }

    /// Retracted documents that never reached the index (rejected or filtered).
    pub fn retract_unindexed(&mut self, source: &str, rejected: i64, filtered: i64) {
        let counts = self.report.sources.entry(source.to_string()).or_default();
        counts.docs_in -= rejected + filtered;
        counts.rejected -= rejected;
        counts.filtered -= filtered;
    }

    /// Take every captured change at a time before `frontier` (all final) and write it.
    pub fn absorb(&mut self, captured: &mut Captured, frontier: Time) -> Result<(), EpochError> {
        fn take<D>(updates: &mut Vec<Update<D>>, frontier: Time) -> Vec<(D, isize)> {
            let (done, later): (Vec<_>, Vec<_>) =
                updates.drain(..).partition(|(_, t, _)| *t < frontier);
            *updates = later;
            done.into_iter().map(|(d, _, diff)| (d, diff)).collect()
        }
        let cleaned = take(&mut captured.cleaned, frontier);
        let members = consolidate(take(&mut captured.members, frontier));
        let kept = consolidate(take(&mut captured.kept, frontier));
        let pairs = consolidate(take(&mut captured.pairs, frontier));
        for (pair, diff) in pairs {
            self.pairs.pair(pair, diff)?;
        }
        // Per document: (passed, member, kept) changes.
        let mut changes: BTreeMap<DocId, [isize; 3]> = BTreeMap::new();
        let mut texts: HashMap<DocId, String> = HashMap::new();
        let mut cleaned: Vec<(DocId, Cleaned)> = cleaned.into_iter().map(|(d, _)| d).collect();
        cleaned.sort_by_key(|(doc, _)| *doc);
        for (doc, outcome) in cleaned {
            self.counts(doc).docs_in += 1;
            let (changed, removed_by) = match &outcome {
                Cleaned::Passed { changed, .. } => (changed.clone(), None),
                Cleaned::Filtered { by, changed } => (changed.clone(), Some(*by as usize)),
            };
            for c in changed {
                self.report.ops[c as usize].changed += 1;
            }
            let reached = removed_by.map_or(self.report.ops.len(), |by| by + 1);
            for (i, op) in self.report.ops.iter_mut().enumerate().take(reached) {
                op.docs_in += 1;
                if Some(i) != removed_by {
                    op.docs_out += 1;
                }
            }
            match outcome {
                Cleaned::Passed { text, entry, .. } => {
                    self.index.entry(doc, &entry, 1)?;
                    self.index_added += 1;
                    changes.entry(doc).or_default()[0] += 1;
                    texts.insert(doc, text);
                }
                Cleaned::Filtered { .. } => self.counts(doc).filtered += 1,
            }
        }
        for (doc, diff) in members {
            changes.entry(doc).or_default()[1] += diff;
        }
        for (doc, diff) in &kept {
            changes.entry(*doc).or_default()[2] += diff;
        }
        // Retracted documents left the index at the epoch's first time.
        if frontier > self.base_time {
            for (doc, diff) in std::mem::take(&mut self.retracted) {
                changes.entry(doc).or_default()[0] += diff;
            }
        }
        for (doc, [passed, member, keep]) in &changes {
            let (passed, member, keep) = (*passed as i64, *member as i64, *keep as i64);
            let counts = self.counts(*doc);
            counts.exact_dups += passed - member;
            counts.near_dups += member - keep;
            counts.kept += keep;
        }
        // Old documents coming back need their text from earlier epochs.
        let wanted: Vec<DocId> = kept
            .iter()
            .filter(|(doc, diff)| *diff > 0 && !texts.contains_key(doc))
            .map(|(doc, _)| *doc)
            .collect();
        if !wanted.is_empty() {
            let found = self.texts.find(&wanted, &self.shard_sources)?;
            texts.extend(found);
        }
        for (doc, diff) in kept {
            if diff > 0 {
                let text = texts.remove(&doc).ok_or_else(|| {
                    EpochError::Other(format!(
                        "the text of document {doc:#x} to re-admit is in no earlier epoch's files; the state or output directory was changed by hand"
                    ))
                })?;
                if shard_of(doc) < self.first_new_shard {
                    self.report.readmitted += 1;
                }
                let meta = self.meta(doc);
                self.shards.write(&to_line(&UnifiedDoc { text, meta }))?;
            } else {
                self.report.tombstoned += 1;
                let path = self.out_tmp.join(TOMBSTONES);
                if self.tombstones.is_none() {
                    self.tombstones = Some(BufWriter::new(
                        File::create(&path).map_err(io_error(&path))?,
                    ));
                }
                let meta = self.meta(doc);
                let line = serde_json::json!({"meta": meta, "epoch": self.report.epoch});
                let out = self.tombstones.as_mut().expect("opened");
                writeln!(out, "{line}").map_err(io_error(&path))?;
            }
        }
        // New documents that passed and were not kept: duplicates, whose text a later
        // retraction may bring back.
        let mut dropped: Vec<(DocId, String)> = texts.into_iter().collect();
        dropped.sort_by_key(|(doc, _)| *doc);
        for (doc, text) in dropped {
            let line = serde_json::json!({"id": doc, "text": text});
            self.dups.line(&line.to_string())?;
        }
        Ok(())
    }

    pub fn index_added(&self) -> i64 {
        self.index_added
    }

    /// Close every file, write the report, sync, and rename both directories into place.
    /// Gives the report and the xxh3 of the epoch's `dups.jsonl` (for the manifest).
    pub fn finish(
        mut self,
        seconds: f64,
        index_docs: u64,
    ) -> Result<(EpochReport, String), EpochError> {
        self.report.shards = self.shards.finish()?;
        for writer in [self.tombstones.take(), self.rejects.take()]
            .into_iter()
            .flatten()
        {
            writer
                .into_inner()
                .map_err(|e| EpochError::Other(format!("cannot flush: {}", e.error())))?;
        }
        self.index.finish()?;
        self.pairs.finish()?;
        let dups_hash = self.dups.finish()?;
        let report = &mut self.report;
        report.index_docs = index_docs;
        report.seconds = seconds;
        let docs: i64 = report.sources.values().map(|c| c.docs_in.max(0)).sum();
        report.docs_per_second = docs as f64 / seconds.max(1e-9);
        report.mb_per_second = report.bytes_in as f64 / 1e6 / seconds.max(1e-9);
        let json = serde_json::to_vec_pretty(&report).expect("a report always serialises");
        std::fs::write(self.out_tmp.join(REPORT_JSON), json)
            .map_err(io_error(&self.out_tmp.join(REPORT_JSON)))?;
        std::fs::write(self.out_tmp.join(REPORT_TEXT), report.to_text())
            .map_err(io_error(&self.out_tmp.join(REPORT_TEXT)))?;
        for dir in [&self.out_tmp, &self.state_tmp] {
            for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
                let path = entry.map_err(io_error(dir))?.path();
                File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(io_error(&path))?;
            }
        }
        crate::pipeline::fail_point::fail_point("before-epoch-rename");
        std::fs::rename(&self.out_tmp, &self.out_dir).map_err(io_error(&self.out_dir))?;
        std::fs::rename(&self.state_tmp, &self.state_final).map_err(io_error(&self.state_final))?;
        for dir in [&self.out_dir, &self.state_final] {
            sync_dir(dir.parent().expect("epoch dirs have a parent"))?;
        }
        Ok((self.report, dups_hash))
    }
}

impl EpochReport {
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "epoch {} ({}): {} files, {:.1} MB in {:.2} s ({:.0} docs/s, {:.2} MB/s)\n",
            self.epoch,
            self.kind,
            self.files.len(),
            self.bytes_in as f64 / 1e6,
            self.seconds,
            self.docs_per_second,
            self.mb_per_second
        );
        out.push_str(&format!(
            "{:<16} {:>10} {:>9} {:>9} {:>10} {:>10} {:>10}\n",
            "source", "docs in", "rejected", "filtered", "exact dup", "near dup", "kept"
        ));
        for (name, c) in &self.sources {
            out.push_str(&format!(
                "{:<16} {:>10} {:>9} {:>9} {:>10} {:>10} {:>10}\n",
                name, c.docs_in, c.rejected, c.filtered, c.exact_dups, c.near_dups, c.kept
            ));
        }
        if !self.ops.is_empty() {
            out.push_str(&format!(
                "\n{:<40} {:>10} {:>10} {:>10}\n",
                "operator", "docs in", "docs out", "changed"
            ));
            for op in &self.ops {
                out.push_str(&format!(
                    "{:<40} {:>10} {:>10} {:>10}\n",
                    op.name, op.docs_in, op.docs_out, op.changed
                ));
            }
        }
        out.push_str(&format!(
            "\nre-admitted {}, tombstoned {}, index holds {} documents\n",
            self.readmitted, self.tombstoned, self.index_docs
        ));
        for skipped in &self.skipped {
            out.push_str(&format!("skipped {}: {}\n", skipped.path, skipped.reason));
        }
        out
    }
}

/// Finds texts of earlier epochs' documents: duplicates in the state's `dups.jsonl`, kept
/// ones in the output shards.
struct TextStore {
    /// Each earlier epoch's `dups.jsonl` and its hash in the manifest.
    state_epochs: Vec<(PathBuf, String)>,
    output_epochs: Vec<PathBuf>,
}

impl TextStore {
    fn find(
        &self,
        wanted: &[DocId],
        shard_sources: &HashMap<u32, ShardSource>,
    ) -> Result<HashMap<DocId, String>, EpochError> {
        let mut found = HashMap::new();
        let mut missing: std::collections::HashSet<DocId> = wanted.iter().copied().collect();
        for (path, hash) in &self.state_epochs {
            read_hashed_lines(path, hash, |line| {
                let value: serde_json::Value =
                    serde_json::from_slice(line).map_err(|e| StateError::Invalid {
                        dir: path.clone(),
                        reason: format!("corrupt line: {e}"),
                    })?;
                if let (Some(id), Some(text)) = (value["id"].as_u64(), value["text"].as_str())
                    && missing.remove(&id)
                {
                    found.insert(id, text.to_string());
                }
                Ok(())
            })?;
        }
        if !missing.is_empty() {
            let shard_of_path: HashMap<&str, u32> = shard_sources
                .iter()
                .map(|(shard, s)| (s.path.as_str(), *shard))
                .collect();
            for dir in &self.output_epochs {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                let mut shards: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
                    })
                    .collect();
                shards.sort();
                for shard in shards {
                    for_lines(&shard, |value| {
                        let meta = &value["meta"];
                        let shard = meta["file"].as_str().and_then(|f| shard_of_path.get(f));
                        if let (Some(shard), Some(row), Some(text)) =
                            (shard, meta["row"].as_u64(), value["text"].as_str())
                        {
                            let id = crate::pipeline::graph::doc_id(*shard, row as u32);
                            if missing.remove(&id) {
                                found.insert(id, text.to_string());
                            }
                        }
                    })?;
                }
            }
        }
        Ok(found)
    }
}

fn for_lines(path: &Path, mut each: impl FnMut(serde_json::Value)) -> Result<(), EpochError> {
    let file = File::open(path).map_err(io_error(path))?;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(io_error(path))?;
        let value = serde_json::from_str(&line)
            .map_err(|e| EpochError::Other(format!("{}: corrupt line: {e}", path.display())))?;
        each(value);
    }
    Ok(())
}
