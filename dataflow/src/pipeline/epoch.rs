//! One epoch's writing on worker 0: what the dataflow decided, turned into output shards,
//! tombstones, rejects, a report, and the epoch's index segment (`segment.rs`) — all under `.tmp`
//! names until `finish` renames them for the manifest commit.

use crate::clean::report::{OpReport, ops_table};
use crate::doc::{DocMeta, UnifiedDoc};
use crate::output::jsonl::{JsonlShards, to_line};
use crate::output::{OutputError, ShardInfo};
use crate::pipeline::discover::Skipped;
use crate::pipeline::graph::{
    Captured, DocId, Time, Update, Witness, consolidate, row_of, shard_of,
};
use crate::pipeline::segment::{SegmentWriter, Status};
use crate::pipeline::stages::{Cleaned, Stages};
use crate::pipeline::state::{HashedLines, SourceCounts, StateDir, StateError, io_error, sync_dir};
use crate::reject::RejectRecord;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::clean::run::{REJECTS_FILE, REPORT_JSON, REPORT_TEXT};
pub const TOMBSTONES: &str = "tombstones.jsonl";

/// Where a shard's documents came from.
#[derive(Clone, Debug)]
pub struct ShardSource {
    pub source: String,
    pub path: String,
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

#[derive(Debug, Default, Serialize)]
pub struct EpochReport {
    pub epoch: u64,
    pub kind: String,
    pub files: Vec<IngestedFile>,
    pub skipped: Vec<Skipped>,
    /// Per source, the change this epoch made (retractions count negative).
    pub sources: BTreeMap<String, SourceCounts>,
    /// Per operator, what it did to this epoch's new documents (the same report as
    /// `steel clean`'s).
    pub ops: Vec<OpReport>,
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
    /// The epoch's index segment: its new documents, and the changes it makes to older ones.
    segment: SegmentWriter,
    dups: HashedLines,
    stages: Arc<Stages>,
    /// Shard number -> source name and path, for every shard ever ingested.
    shard_sources: HashMap<u32, ShardSource>,
    /// The ordinal of every candidate decided so far (a witness is always decided before
    /// the documents it drops).
    ordinals: HashMap<DocId, u32>,
    /// Per new shard, the first ordinal of its documents that passed and how many did.
    pub shard_ordinals: BTreeMap<u32, (u32, u32)>,
    /// Indexed documents decided again, not yet written.
    revisits: BTreeMap<DocId, Revisited>,
    /// Members and witnesses of documents not yet written.
    members: HashSet<DocId>,
    witnesses: HashMap<DocId, Witness>,
}

/// An indexed document a retraction decides again.
pub struct Revisited {
    pub ordinal: u32,
    pub status: Status,
    pub text: String,
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

/// Where an epoch's writer puts things and what it starts from.
pub struct EpochPlan<'a> {
    pub state: &'a StateDir,
    pub output: &'a Path,
    pub epoch: u64,
    pub kind: &'a str,
    pub shard_sources: HashMap<u32, ShardSource>,
    pub shard_bytes: u64,
    /// The ordinal of the epoch's first new document.
    pub first_ordinal: u32,
}

impl EpochWriter {
    pub fn create(plan: EpochPlan, stages: Arc<Stages>) -> Result<Self, EpochError> {
        let EpochPlan {
            state,
            output,
            epoch,
            kind,
            shard_sources,
            shard_bytes,
            first_ordinal,
        } = plan;
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
                ops: stages.op_reports(),
                ..EpochReport::default()
            },
            shards: JsonlShards::new(&out_tmp, shard_bytes),
            tombstones: None,
            rejects: None,
            segment: SegmentWriter::create(&state_tmp, first_ordinal, stages.sketch_words())?,
            dups: HashedLines::create(&state_tmp.join("dups.jsonl"))?,
            stages,
            ordinals: HashMap::new(),
            shard_ordinals: BTreeMap::new(),
            revisits: BTreeMap::new(),
            members: HashSet::new(),
            witnesses: HashMap::new(),
            out_dir,
            out_tmp,
            state_tmp,
            state_final,
            shard_sources,
        })
    }

    fn counts(&mut self, doc: DocId) -> &mut SourceCounts {
        let source = self
            .shard_sources
            .get(&shard_of(doc))
            .map_or_else(|| "?".to_string(), |s| s.source.clone());
        self.report.sources.entry(source).or_default()
    }

    /// Count a document's move from one status to another (`None`: not in the index).
    fn count(&mut self, doc: DocId, from: Option<Status>, to: Option<Status>) {
        let counts = self.counts(doc);
        for (status, step) in [(from, -1), (to, 1)] {
            match status {
                Some(Status::ExactDup) => counts.exact_dups += step,
                Some(Status::NearDup) => counts.near_dups += step,
                Some(Status::Kept) => counts.kept += step,
                None => {}
            }
        }
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
        let path = self.out_tmp.join(REJECTS_FILE);
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

    /// A retracted document leaves the index: uncount it, and tombstone it if it was kept.
    pub fn retract(&mut self, doc: DocId, status: Status) -> Result<(), EpochError> {
        self.counts(doc).docs_in -= 1;
        self.count(doc, Some(status), None);
        if status == Status::Kept {
            self.tombstone(doc)?;
        }
        Ok(())
    }

    /// Retracted documents that never reached the index (rejected or filtered).
    pub fn retract_unindexed(&mut self, source: &str, rejected: i64, filtered: i64) {
        let counts = self.report.sources.entry(source.to_string()).or_default();
        counts.docs_in -= rejected + filtered;
        counts.rejected -= rejected;
        counts.filtered -= filtered;
    }

    /// An indexed document the dataflow is given to decide again (at time 0).
    pub fn revisit(&mut self, doc: DocId, revisited: Revisited) {
        self.ordinals.insert(doc, revisited.ordinal);
        self.revisits.insert(doc, revisited);
    }

    fn tombstone(&mut self, doc: DocId) -> Result<(), EpochError> {
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
        Ok(())
    }

    /// What the dataflow decided for `doc`, and the ordinal of its witness if near-dropped.
    fn decision(&mut self, doc: DocId) -> Result<(Status, Option<u32>), EpochError> {
        if !self.members.remove(&doc) {
            return Ok((Status::ExactDup, None));
        }
        let Some(witness) = self.witnesses.remove(&doc) else {
            return Ok((Status::Kept, None));
        };
        let ordinal = match witness {
            Witness::Indexed(ordinal) => ordinal,
            Witness::New(earlier) => *self.ordinals.get(&earlier).ok_or_else(|| {
                EpochError::Other(format!(
                    "document {doc:#x} was dropped by {earlier:#x}, which was never decided"
                ))
            })?,
        };
        Ok((Status::NearDup, Some(ordinal)))
    }

    /// Take every captured change at a time before `frontier` (all final) and write it.
    pub fn absorb(&mut self, captured: &mut Captured, frontier: Time) -> Result<(), EpochError> {
        fn take<D: Ord>(updates: &mut Vec<Update<D>>, frontier: Time) -> Vec<D> {
            let (done, later): (Vec<_>, Vec<_>) =
                updates.drain(..).partition(|(_, t, _)| *t < frontier);
            *updates = later;
            consolidate(done.into_iter().map(|(d, _, diff)| (d, diff)))
                .into_iter()
                .filter(|(_, diff)| *diff > 0)
                .map(|(d, _)| d)
                .collect()
        }
        if let Some(error) = take(&mut captured.errors, frontier).into_iter().next() {
            return Err(EpochError::Other(format!("probing the index: {error}")));
        }
        self.members.extend(take(&mut captured.members, frontier));
        self.witnesses
            .extend(take(&mut captured.witnesses, frontier));
        // Revisited documents are all at time 0, before every new one.
        if frontier > 0 {
            for (doc, revisited) in std::mem::take(&mut self.revisits) {
                self.write_revisited(doc, revisited)?;
            }
        }
        // New documents, in id order (so ordinals follow ids).
        for (doc, outcome) in take(&mut captured.cleaned, frontier) {
            self.write_new(doc, outcome)?;
        }
        Ok(())
    }

    fn write_new(&mut self, doc: DocId, outcome: Cleaned) -> Result<(), EpochError> {
        self.counts(doc).docs_in += 1;
        let (events, passed) = match outcome {
            Cleaned::Passed {
                text,
                entry,
                events,
                key_nanos,
            } => (events, Some((text, entry, key_nanos))),
            Cleaned::Filtered { events } => (events, None),
        };
        // With no room for examples (a limit of 0), `add` never makes one.
        let no_trace = |_, _, _| unreachable!("steel run keeps no traces");
        for (op, event) in self.report.ops.iter_mut().zip(events) {
            op.add(event, 0, no_trace);
        }
        let Some((text, entry, key_nanos)) = passed else {
            self.counts(doc).filtered += 1;
            return Ok(());
        };
        let (status, witness) = self.decision(doc)?;
        let near = self.stages.near();
        let buckets = near.map_or_else(Vec::new, |near| near.buckets(&entry.near));
        let sketch = &entry.near[self.stages.sketch_start().min(entry.near.len())..];
        if sketch.len() != self.stages.sketch_words() || entry.exact.len() != 2 {
            return Err(EpochError::Other(format!(
                "document {doc:#x}: a dedup key of unexpected length"
            )));
        }
        let ordinal = self
            .segment
            .push(doc, &entry.exact, sketch, &buckets, status)?;
        if let Some(witness) = witness {
            self.segment.witness(witness, ordinal)?;
        }
        self.ordinals.insert(doc, ordinal);
        let slot = self
            .shard_ordinals
            .entry(shard_of(doc))
            .or_insert((ordinal, 0));
        slot.1 += 1;
        self.count(doc, None, Some(status));
        self.count_dedups(status, key_nanos);
        if status == Status::Kept {
            let meta = self.meta(doc);
            self.shards.write(&to_line(&UnifiedDoc { text, meta }))?;
        } else {
            // A duplicate, whose text a later retraction may bring back.
            let line = serde_json::json!({"id": doc, "text": text});
            self.dups.line(&line.to_string())?;
        }
        Ok(())
    }

    /// Count a new document's passage through the two deduplicators (the last two reports,
    /// or the last one when the job deduplicates exactly only).
    fn count_dedups(&mut self, status: Status, key_nanos: [u64; 2]) {
        let first = self.stages.ops.len();
        let dedups = &mut self.report.ops[first..];
        let passes = [status != Status::ExactDup, status == Status::Kept];
        let mut reached = true;
        for ((op, passed), nanos) in dedups.iter_mut().zip(passes).zip(key_nanos) {
            op.nanos += nanos;
            if reached {
                op.docs_in += 1;
                op.docs_out += passed as u64;
            }
            reached = passed;
        }
    }

    fn write_revisited(&mut self, doc: DocId, revisited: Revisited) -> Result<(), EpochError> {
        let (status, witness) = self.decision(doc)?;
        let Revisited {
            ordinal,
            status: before,
            text,
        } = revisited;
        if let Some(witness) = witness {
            self.segment.witness(witness, ordinal)?;
        }
        if status == before {
            return Ok(());
        }
        self.segment.change(ordinal, status)?;
        self.count(doc, Some(before), Some(status));
        if status == Status::Kept {
            self.report.readmitted += 1;
            let meta = self.meta(doc);
            self.shards.write(&to_line(&UnifiedDoc { text, meta }))?;
        } else if before == Status::Kept {
            self.tombstone(doc)?;
        }
        Ok(())
    }

    /// Close every file, write the report, sync, and rename both directories into place.
    /// Gives the report, the xxh3 of the epoch's `dups.jsonl` (for the manifest) and the
    /// epoch's index segment: its own documents and its bytes.
    pub fn finish(
        mut self,
        seconds: f64,
        index_docs: u64,
    ) -> Result<(EpochReport, String, (u32, u64)), EpochError> {
        self.report.shards = self.shards.finish()?;
        for op in &mut self.report.ops {
            op.finish();
        }
        for writer in [self.tombstones.take(), self.rejects.take()]
            .into_iter()
            .flatten()
        {
            writer
                .into_inner()
                .map_err(|e| EpochError::Other(format!("cannot flush: {}", e.error())))?;
        }
        let segment = self.segment.finish()?;
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
        Ok((self.report, dups_hash, segment))
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
            out.push('\n');
            out.push_str(&ops_table(&self.ops));
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
