//! `steel run` and `steel retract`: open the state, find the work, run it as epochs of the
//! dataflow on timely workers, and commit after each epoch.
//!
//! Worker 0 of process 0 does all the I/O: it loads the persisted index and pairs into the
//! dataflow at time 0, reads and converts new files and feeds their documents in batches,
//! writes what the dataflow decides as soon as a batch's time has passed (`EpochWriter`),
//! and commits. The other workers, in this process or others (`-n/-p/-h`), clean and
//! deduplicate their share of the documents.

use crate::convert::{convert_record, plan_files};
use crate::input::BatchLimits;
use crate::input::read::read_file;
use crate::pack::{PackError, PackOutcome, pack};
use crate::pipeline::config::PipelineConfig;
use crate::pipeline::discover::{Discovery, NewFile, Skipped, discover, hash_file};
use crate::pipeline::epoch::{EpochError, EpochReport, EpochWriter, IngestedFile, ShardSource};
use crate::pipeline::graph::{self, DocId, Graph, doc_id, epoch_time, shard_of};
use crate::pipeline::output_mark::{OutputMark, check_output};
use crate::pipeline::spill::{Spill, SpillWriter};
use crate::pipeline::stages::{Entry, Stages};
use crate::pipeline::state::{
    EpochSummary, FileEntry, Manifest, PipelineIdentity, StateDir, StateError, remove_epochs_after,
};
use crate::progress::Progress;
use crate::reject::RejectRecord;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::worker::Worker;

/// Batches in flight before worker 0 waits for the dataflow to catch up.
const IN_FLIGHT: u64 = 4;

pub use crate::pipeline::cluster::Cluster;

#[derive(Clone, Debug)]
pub struct Watch {
    /// How often to look for new files.
    pub interval: Duration,
    /// Stop after this long with nothing new (`None`: run until killed).
    pub idle_exit: Option<Duration>,
}

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Timely worker threads per process.
    pub workers: usize,
    pub cluster: Option<Cluster>,
    pub watch: Option<Watch>,
    pub progress: bool,
}

#[derive(Clone, Debug)]
pub enum Work {
    Ingest,
    Retract {
        source: String,
        file: Option<String>,
    },
}

#[derive(Debug, Default, Serialize)]
pub struct RunOutcome {
    pub epochs: Vec<EpochReport>,
    /// Nothing new was found: nothing was changed.
    pub nothing_new: bool,
    pub known_files: usize,
    pub skipped: Vec<Skipped>,
    /// Leftovers of a killed run, removed before starting.
    pub removed_leftovers: Vec<String>,
    /// With `[pack]`: what packing the output did after each epoch (or, with nothing new to
    /// clean, packing what an earlier run committed but did not pack).
    pub packs: Vec<PackOutcome>,
    pub notes: Vec<String>,
    pub workers: usize,
    pub processes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Epoch(#[from] EpochError),
    #[error("dataflow: {0}")]
    Timely(String),
    #[error("packing the output: {0}")]
    Pack(#[from] PackError),
    #[error("spilling a file's documents to the state directory: {0}")]
    Spill(#[from] std::io::Error),
}

pub fn run(
    config: &PipelineConfig,
    options: &RunOptions,
    work: Work,
) -> Result<RunOutcome, RunError> {
    let stages = Arc::new(Stages::build(config).map_err(RunError::Config)?);
    let workers = options.workers.max(1);
    let communication = match &options.cluster {
        Some(cluster) if cluster.processes > 1 => timely::CommunicationConfig::Cluster {
            threads: workers,
            process: cluster.process,
            addresses: cluster.hosts.clone(),
            report: false,
            zerocopy: false,
        },
        _ if workers > 1 => timely::CommunicationConfig::Process(workers),
        _ => timely::CommunicationConfig::Thread,
    };
    let timely_config = timely::Config {
        communication,
        worker: timely::WorkerConfig::default(),
    };
    let processes = options.cluster.as_ref().map_or(1, |c| c.processes);
    let mut outcome = RunOutcome {
        notes: stages.notes.clone(),
        workers,
        processes,
        ..RunOutcome::default()
    };
    if options.cluster.as_ref().is_some_and(|c| c.process != 0) {
        // Another process drives; this one only computes.
        execute(timely_config, stages, None)?;
        outcome
            .notes
            .push("this process computed for process 0, which wrote the results".into());
        return Ok(outcome);
    }
    let settings = stages.settings_id(config).map_err(RunError::Config)?;
    let pipeline = PipelineIdentity {
        state: config.manifest_name(&config.state),
        output: config.manifest_name(&config.output),
    };
    let source_names: Vec<String> = config.sources.iter().map(|s| s.name.clone()).collect();
    let (state, manifest) = StateDir::open(&config.state, &settings, &pipeline, &source_names)?;
    if let Some(holder) = state.stale_lock() {
        outcome.notes.push(format!(
            "took over the state's lock left by a run that did not finish ({holder})"
        ));
    }
    let last = manifest.last_epoch();
    check_output(&config.output, &manifest.id, last)?;
    let mut removed = state.remove_uncommitted(last)?;
    removed.extend(remove_epochs_after(&config.output, last)?);
    outcome.removed_leftovers = removed.iter().map(|p| p.display().to_string()).collect();
    // Also after a run killed between its commit and the mark: the mark catches up.
    mark_output(config, &manifest)?;
    let first = match &work {
        Work::Ingest => {
            let found = discover(config, &manifest).map_err(RunError::Config)?;
            outcome.known_files = found.known;
            outcome.skipped = found.skipped.clone();
            EpochWork {
                kind: if options.watch.is_some() {
                    "watch"
                } else {
                    "run"
                },
                new: found.new,
                retract: Vec::new(),
            }
        }
        Work::Retract { source, file } => {
            // The file as the manifest names it, or as a path from here.
            let names = file.as_ref().map(|p| {
                let here = std::path::absolute(p).unwrap_or_else(|_| p.into());
                [p.clone(), config.manifest_name(&here)]
            });
            let shards: Vec<u32> = manifest
                .files
                .iter()
                .filter(|f| f.retracted_in.is_none() && &f.source == source)
                .filter(|f| names.as_ref().is_none_or(|n| n.contains(&f.path)))
                .map(|f| f.shard)
                .collect();
            if shards.is_empty() {
                return Err(RunError::Config(format!(
                    "nothing to retract: no ingested, unretracted file of source `{source}`{}",
                    file.as_ref()
                        .map_or(String::new(), |p| format!(" at `{p}`"))
                )));
            }
            EpochWork {
                kind: "retract",
                new: Vec::new(),
                retract: shards,
            }
        }
    };
    if first.new.is_empty() && first.retract.is_empty() && options.watch.is_none() && processes == 1
    {
        outcome.nothing_new = true;
        outcome.packs.extend(pack_output(config, options)?);
        return Ok(outcome);
    }
    let driver = Driver {
        config: config.clone(),
        options: options.clone(),
        state,
        manifest,
        first: Some(first),
        ops: stages.ops.iter().map(|op| op.spec.name.clone()).collect(),
    };
    let driven = execute(timely_config, stages, Some(driver))?.expect("process 0 drives");
    outcome.nothing_new = driven.epochs.is_empty();
    outcome.epochs = driven.epochs;
    outcome.skipped.extend(driven.skipped);
    outcome.packs = driven.packs;
    Ok(outcome)
}

/// Write the output's `_committed.json`: this state's id and its last committed epoch.
fn mark_output(config: &PipelineConfig, manifest: &Manifest) -> Result<(), StateError> {
    let mark = OutputMark {
        state: manifest.id.clone(),
        committed: manifest.last_epoch(),
    };
    if OutputMark::read(&config.output)?.as_ref() == Some(&mark) {
        return Ok(());
    }
    mark.write(&config.output)
}

/// With `[pack]`, pack what is new in the output (`None` without it).
fn pack_output(
    config: &PipelineConfig,
    options: &RunOptions,
) -> Result<Option<PackOutcome>, PackError> {
    let Some(pack_options) = &config.pack else {
        return Ok(None);
    };
    if !config.output.is_dir() {
        // Nothing was ever written to pack.
        return Ok(None);
    }
    let mut pack_options = pack_options.clone();
    pack_options.progress = options.progress;
    pack(&[config.output.display().to_string()], &pack_options).map(Some)
}

/// What worker 0 did: the epochs committed, the files skipped, and the packs after them.
#[derive(Default)]
struct Driven {
    epochs: Vec<EpochReport>,
    skipped: Vec<Skipped>,
    packs: Vec<PackOutcome>,
}

/// Run the dataflow on every worker of this process; worker 0 runs `driver` if given.
fn execute(
    config: timely::Config,
    stages: Arc<Stages>,
    driver: Option<Driver>,
) -> Result<Option<Driven>, RunError> {
    let slot = Arc::new(Mutex::new(driver));
    let guards = timely::execute(config, move |worker| {
        let graph = graph::build(worker, stages.clone());
        let driver = match worker.index() {
            0 => slot.lock().expect("driver slot").take(),
            _ => None,
        };
        match driver {
            Some(driver) => Some(driver.drive(worker, graph)),
            // A worker that does no I/O computes until the end.
            None => {
                graph.finish(worker);
                None
            }
        }
    })
    .map_err(RunError::Timely)?;
    let mut result = None;
    for joined in guards.join() {
        match joined {
            Ok(Some(driven)) => result = Some(driven?),
            Ok(None) => {}
            Err(panic) => return Err(RunError::Timely(format!("a worker failed: {panic}"))),
        }
    }
    Ok(result)
}

struct EpochWork {
    kind: &'static str,
    new: Vec<NewFile>,
    retract: Vec<u32>,
}

struct Driver {
    config: PipelineConfig,
    options: RunOptions,
    state: StateDir,
    manifest: Manifest,
    first: Option<EpochWork>,
    ops: Vec<String>,
}

impl Driver {
    fn drive(mut self, worker: &mut Worker, mut graph: Graph) -> Result<Driven, RunError> {
        let result = self.drive_epochs(worker, &mut graph);
        graph.finish(worker);
        result
    }

    fn drive_epochs(&mut self, worker: &mut Worker, graph: &mut Graph) -> Result<Driven, RunError> {
        // Time 0: the state as of the last commit. No old text is read.
        let index = self.state.load_index(&self.manifest)?;
        let mut index_docs = index.len() as u64;
        for (doc, entry) in &index {
            graph.index.insert((*doc, entry.clone()));
        }
        for (pair, diff) in self.state.load_pairs(&self.manifest)? {
            graph.pairs.update(pair, diff);
        }
        let mut index = Some(index);
        let mut driven = Driven::default();
        let mut work = self.first.take().expect("first work");
        loop {
            if !work.new.is_empty() || !work.retract.is_empty() {
                let epoch = self.manifest.last_epoch() + 1;
                if epoch + 1 >= 1 << (64 - graph::BATCH_BITS) {
                    return Err(RunError::Config(format!(
                        "the state has {} epochs, the most a dataflow time can number",
                        epoch - 1
                    )));
                }
                let retracting = index.take().filter(|_| !work.retract.is_empty());
                let (report, skip) = self.run_epoch(
                    worker,
                    graph,
                    epoch,
                    &work,
                    retracting.as_deref(),
                    &mut index_docs,
                )?;
                driven.skipped.extend(skip);
                driven.epochs.push(report);
                driven
                    .packs
                    .extend(pack_output(&self.config, &self.options)?);
            }
            index = None;
            let Some(watch) = self.options.watch.clone() else {
                break;
            };
            let idle_since = Instant::now();
            work = loop {
                std::thread::sleep(watch.interval);
                let found: Discovery =
                    discover(&self.config, &self.manifest).map_err(RunError::Config)?;
                let fresh: Vec<NewFile> = found.new;
                if !fresh.is_empty() {
                    break EpochWork {
                        kind: "watch",
                        new: fresh,
                        retract: Vec::new(),
                    };
                }
                if watch
                    .idle_exit
                    .is_some_and(|idle| idle_since.elapsed() >= idle)
                {
                    return Ok(driven);
                }
            };
        }
        Ok(driven)
    }

    fn shard_sources(&self, new: &[(u32, &NewFile)]) -> HashMap<u32, ShardSource> {
        let mut map: HashMap<u32, ShardSource> = self
            .manifest
            .files
            .iter()
            .map(|f| {
                (
                    f.shard,
                    ShardSource {
                        source: f.source.clone(),
                        path: f.path.clone(),
                    },
                )
            })
            .collect();
        for (shard, file) in new {
            map.insert(
                *shard,
                ShardSource {
                    source: self.config.sources[file.source].name.clone(),
                    path: file.name.clone(),
                },
            );
        }
        map
    }

    fn run_epoch(
        &mut self,
        worker: &mut Worker,
        graph: &mut Graph,
        epoch: u64,
        work: &EpochWork,
        index: Option<&[(DocId, Entry)]>,
        index_docs: &mut u64,
    ) -> Result<(EpochReport, Vec<Skipped>), RunError> {
        let start = Instant::now();
        let base = epoch_time(epoch);
        let first_new_shard = self.manifest.next_shard();
        let numbered: Vec<(u32, &NewFile)> = work
            .new
            .iter()
            .enumerate()
            .map(|(i, f)| (first_new_shard + i as u32, f))
            .collect();
        let mut writer = EpochWriter::create(
            &self.state,
            &self.config.output,
            epoch,
            work.kind,
            self.ops.clone(),
            self.shard_sources(&numbered),
            first_new_shard,
            self.config.shard_bytes,
            self.manifest
                .epochs
                .iter()
                .map(|e| (e.epoch, e.dups_hash.clone()))
                .collect(),
        )?;
        graph.advance_all(base);
        // Retractions: negative changes to the index, at the epoch's first time.
        if let Some(index) = index {
            let shards: HashSet<u32> = work.retract.iter().copied().collect();
            let mut indexed: HashMap<u32, i64> = HashMap::new();
            for (doc, entry) in index
                .iter()
                .filter(|(doc, _)| shards.contains(&shard_of(*doc)))
            {
                graph.index.remove((*doc, entry.clone()));
                writer.retract(*doc, entry)?;
                *indexed.entry(shard_of(*doc)).or_default() += 1;
            }
            for file in self
                .manifest
                .files
                .iter_mut()
                .filter(|f| shards.contains(&f.shard))
            {
                file.retracted_in = Some(epoch);
                let passed = indexed.get(&file.shard).copied().unwrap_or(0);
                let rejected = file.rejected as i64;
                writer.retract_unindexed(
                    &file.source,
                    rejected,
                    file.docs as i64 - rejected - passed,
                );
            }
        }
        // The index and pairs take nothing more this epoch; raw's batches set the pace.
        graph.index.advance_to(epoch_time(epoch + 1));
        graph.pairs.advance_to(epoch_time(epoch + 1));
        graph.index.flush();
        graph.pairs.flush();
        let total: u64 = work.new.iter().map(|f| f.size).sum();
        let mut progress = Progress::new("run", total, self.options.progress);
        let mut done_bytes = 0;
        let mut batch: u64 = 0;
        let mut skipped = Vec::new();
        for (shard, file) in &numbered {
            let source = &self.config.sources[file.source];
            let display = file.name.clone();
            let spill = self.state.dir.join("spill.tmp");
            let read = read_documents(file, source.format, &source.text_field, &spill);
            let (docs, rejects) = match read {
                Ok(read) => read,
                Err(reason) => {
                    skipped.push(Skipped {
                        path: display,
                        reason,
                    });
                    continue;
                }
            };
            if docs.docs > u32::MAX as u64 {
                return Err(RunError::Config(format!(
                    "{display}: more than 2^32 records"
                )));
            }
            for reject in &rejects {
                // Named as the manifest and `meta.file` name it, so a moved job's rejects
                // still point at the file.
                let reject = RejectRecord {
                    file: display.clone(),
                    ..reject.clone()
                };
                writer.reject(&source.name, &reject)?;
            }
            let records = docs.docs + rejects.len() as u64;
            docs.for_batches(self.config.batch_docs, |chunk| {
                if batch >= 1 << graph::BATCH_BITS {
                    return Err(RunError::Config(format!(
                        "epoch {epoch} has more than 2^{} batches of documents; raise `batch_docs` or ingest the files in several runs",
                        graph::BATCH_BITS
                    )));
                }
                graph.raw.advance_to(base + batch);
                for (row, text) in chunk {
                    graph.raw.insert((doc_id(*shard, row as u32), text));
                }
                graph.raw.flush();
                batch += 1;
                // Keep a few batches in flight; write whatever is final.
                let wait_for = base + batch.saturating_sub(IN_FLIGHT);
                worker.step_while(|| graph.probe.less_than(&wait_for));
                let frontier = graph
                    .probe
                    .with_frontier(|f| f.first().copied())
                    .unwrap_or(Time::MAX);
                writer.absorb(&mut graph.captured.borrow_mut(), frontier)?;
                Ok(())
            })?;
            crate::pipeline::fail_point::fail_point("after-first-file");
            done_bytes += file.size;
            progress.update(done_bytes, || format!("epoch {epoch}: {batch} batches"));
            writer.report.bytes_in += file.size;
            writer.report.files.push(IngestedFile {
                source: source.name.clone(),
                path: display.clone(),
                shard: *shard,
                bytes: file.size,
                docs: records,
                rejected: rejects.len() as u64,
            });
            self.manifest.files.push(FileEntry {
                shard: *shard,
                source: source.name.clone(),
                path: display,
                size: file.size,
                hash: file.hash.clone(),
                epoch,
                docs: records,
                rejected: rejects.len() as u64,
                retracted_in: None,
            });
        }
        let next = epoch_time(epoch + 1);
        graph.advance_all(next);
        worker.step_while(|| graph.probe.less_than(&next));
        writer.absorb(&mut graph.captured.borrow_mut(), next)?;
        progress.finish();
        *index_docs = (*index_docs as i64 + writer.index_added()) as u64;
        writer.report.skipped = skipped.clone();
        let (report, dups_hash) = writer.finish(start.elapsed().as_secs_f64(), *index_docs)?;
        crate::pipeline::fail_point::fail_point("before-commit");
        self.manifest.epochs.push(EpochSummary {
            epoch,
            kind: work.kind.into(),
            committed_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            seconds: report.seconds,
            files: report.files.len(),
            bytes_in: report.bytes_in,
            readmitted: report.readmitted,
            tombstoned: report.tombstoned,
            dups_hash,
            sources: report.sources.clone(),
            index_docs: *index_docs,
            peak_rss: peak_rss(),
        });
        self.state.commit(&self.manifest)?;
        mark_output(&self.config, &self.manifest)?;
        Ok((report, skipped))
    }
}

type Time = graph::Time;

/// Read and convert one file: its documents `(row, text)`, spilled to `spill` as they are
/// read (memory holds one reader batch, not the file), and its rejected records. The file is
/// hashed again afterwards; one that changed or vanished meanwhile is skipped (the next run
/// picks it up), before any of it reaches the dataflow.
fn read_documents(
    file: &NewFile,
    format: crate::sources::FormatChoice,
    text_field: &str,
    spill: &Path,
) -> Result<(Spill, Vec<RejectRecord>), String> {
    let pattern = file.path.display().to_string();
    let (plans, skipped) = plan_files(std::slice::from_ref(&pattern), format)
        .map_err(|e| format!("vanished or unreadable before it was read: {e}"))?;
    let Some(plan) = plans.first() else {
        // A file with no record at all (`plan_files` skips it) is ingested as no documents,
        // so it is known from now on, unless it changed meanwhile.
        return match skipped.empty.is_empty() {
            true => Err("vanished before it was read".into()),
            false => {
                let empty = SpillWriter::create(spill).and_then(SpillWriter::finish);
                let empty =
                    empty.map_err(|e| format!("cannot spill to `{}`: {e}", spill.display()))?;
                unchanged(file).map(|()| (empty, Vec::new()))
            }
        };
    };
    let spill_error = |e: std::io::Error| format!("cannot spill to `{}`: {e}", spill.display());
    let mut docs = SpillWriter::create(spill).map_err(spill_error)?;
    let mut rejects = Vec::new();
    let mut failed = None;
    let mut send = |batch: Vec<crate::input::RawRecord>| {
        for record in batch {
            let row = record.row;
            match convert_record(record, plan, text_field) {
                Ok(doc) => {
                    if let Err(e) = docs.push(row, &doc.text) {
                        failed = Some(e);
                        return false;
                    }
                }
                Err(reject) => rejects.push(reject),
            }
        }
        true
    };
    read_file(
        &plan.path,
        plan.kind,
        BatchLimits::default(),
        Arc::default(),
        &mut send,
    )
    .map_err(|e| format!("unreadable: {e}"))?;
    if let Some(e) = failed {
        return Err(spill_error(e));
    }
    let docs = docs.finish().map_err(spill_error)?;
    unchanged(file).map(|()| (docs, rejects))
}

/// `Err` when `file` changed or vanished since it was discovered.
fn unchanged(file: &NewFile) -> Result<(), String> {
    match hash_file(&file.path) {
        Ok((hash, size)) if hash == file.hash && size == file.size => Ok(()),
        Ok(_) => {
            Err("changed while it was being read; not ingested (the next run will take it)".into())
        }
        Err(e) => Err(format!("vanished while it was being read: {e}")),
    }
}

/// Peak resident memory of this process in bytes (Linux; 0 elsewhere).
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
