//! `steel run` and `steel retract`: open the state, find the work, run it as epochs of the
//! dataflow on timely workers, and commit after each epoch.
//!
//! Worker 0 of process 0 reads and converts new files and feeds their documents in batches,
//! writes what the dataflow decides as soon as a batch's time has passed (`EpochWriter`),
//! commits, and compacts the index when it is due (`compact.rs`). Every worker, in this
//! process or others (`-n/-p/-h`), cleans its share of the documents and probes its share of
//! the on-disk index (`index.rs`); nothing of the index is loaded into the dataflow.

use crate::convert::{convert_record, plan_files};
use crate::input::BatchLimits;
use crate::input::read::read_file;
use crate::pack::{PackError, PackOutcome, pack};
use crate::pipeline::compact;
use crate::pipeline::config::PipelineConfig;
use crate::pipeline::control::{Command, Control, IndexCache};
use crate::pipeline::discover::{Discovery, NewFile, Skipped, discover, hash_file};
use crate::pipeline::epoch::{
    EpochError, EpochPlan, EpochReport, EpochWriter, IngestedFile, ShardSource,
};
use crate::pipeline::graph::{self, Graph, doc_id};
use crate::pipeline::output_mark::{OutputMark, check_output};
use crate::pipeline::segment::SegmentEntry;
use crate::pipeline::spill::{Spill, SpillWriter};
use crate::pipeline::stages::Stages;
use crate::pipeline::state::{
    EpochSummary, FileEntry, Manifest, PipelineIdentity, StateDir, StateError, remove_epochs_after,
};
use crate::pipeline::texts::TextStore;
use crate::progress::Progress;
use crate::reject::RejectRecord;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::worker::Worker;

/// Batches in flight before worker 0 waits for the dataflow to catch up.
const IN_FLIGHT: u64 = 16;

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
    let cache = Arc::new(IndexCache::new(
        config.state.clone(),
        stages.sketch_start(),
        stages.sketch_words(),
    ));
    if options.cluster.as_ref().is_some_and(|c| c.process != 0) {
        // Another process drives; this one only computes.
        execute(timely_config, stages, cache, None)?;
        outcome
            .notes
            .push("this process computed for process 0, which wrote the results".into());
        return Ok(outcome);
    }
    let (state, manifest) = open_state(config, &stages)?;
    if let Some(holder) = state.stale_lock() {
        outcome.notes.push(format!(
            "took over the state's lock left by a run that did not finish ({holder})"
        ));
    }
    let last = manifest.last_epoch();
    check_output(&config.output, &manifest.id, last)?;
    let mut removed = state.remove_uncommitted(last)?;
    removed.extend(remove_epochs_after(&config.output, last)?);
    removed.extend(compact::remove_unlisted(&state, &manifest)?);
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
        stages: stages.clone(),
        cache: cache.clone(),
    };
    let driven = execute(timely_config, stages, cache, Some(driver))?.expect("process 0 drives");
    outcome.nothing_new = driven.epochs.is_empty();
    outcome.epochs = driven.epochs;
    outcome.skipped.extend(driven.skipped);
    outcome.packs = driven.packs;
    Ok(outcome)
}

/// Open the job's state to write (refusing another job's or other settings').
fn open_state(config: &PipelineConfig, stages: &Stages) -> Result<(StateDir, Manifest), RunError> {
    let settings = stages.settings_id(config).map_err(RunError::Config)?;
    let pipeline = PipelineIdentity {
        state: config.manifest_name(&config.state),
        output: config.manifest_name(&config.output),
    };
    let source_names: Vec<String> = config.sources.iter().map(|s| s.name.clone()).collect();
    Ok(StateDir::open(
        &config.state,
        &settings,
        &pipeline,
        &source_names,
    )?)
}

/// What `steel compact` did.
#[derive(Debug, Serialize)]
pub struct CompactOutcome {
    pub segments_before: usize,
    pub segments_after: usize,
    pub index_docs: u64,
    pub index_bytes: u64,
}

/// `steel compact`: merge every segment of the job's index into one (answers unchanged).
pub fn compact(config: &PipelineConfig) -> Result<CompactOutcome, RunError> {
    let stages = Stages::build(config).map_err(RunError::Config)?;
    let (state, mut manifest) = open_state(config, &stages)?;
    state.remove_uncommitted(manifest.last_epoch())?;
    compact::remove_unlisted(&state, &manifest)?;
    let segments_before = manifest.segments.len();
    compact::compact_all(&state, &mut manifest, stages.sketch_words())?;
    Ok(CompactOutcome {
        segments_before,
        segments_after: manifest.segments.len(),
        index_docs: manifest.index_docs(),
        index_bytes: manifest.segments.iter().map(|s| s.bytes).sum(),
    })
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

/// Run the dataflows on every worker of this process; worker 0 runs `driver` if given, the
/// others follow its commands.
fn execute(
    config: timely::Config,
    stages: Arc<Stages>,
    cache: Arc<IndexCache>,
    driver: Option<Driver>,
) -> Result<Option<Driven>, RunError> {
    let slot = Arc::new(Mutex::new(driver));
    let guards = timely::execute(config, move |worker| {
        let control = Control::build(worker);
        let driver = match worker.index() {
            0 => slot.lock().expect("driver slot").take(),
            _ => None,
        };
        match driver {
            Some(driver) => Some(driver.drive(worker, control)),
            // A worker that does no I/O computes each epoch until the end.
            None => {
                control.follow(worker, |worker, epoch, retracting| {
                    graph::build(worker, stages.clone(), cache.get(epoch, retracting))
                        .finish(worker)
                });
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
    stages: Arc<Stages>,
    cache: Arc<IndexCache>,
}

impl Driver {
    fn drive(mut self, worker: &mut Worker, mut control: Control) -> Result<Driven, RunError> {
        let result = self.drive_epochs(worker, &mut control);
        control.send(Command::Stop);
        control.close(worker);
        result
    }

    fn drive_epochs(
        &mut self,
        worker: &mut Worker,
        control: &mut Control,
    ) -> Result<Driven, RunError> {
        let mut driven = Driven::default();
        let mut work = self.first.take().expect("first work");
        loop {
            if !work.new.is_empty() || !work.retract.is_empty() {
                let epoch = self.manifest.last_epoch() + 1;
                control.send(Command::Epoch {
                    epoch,
                    retracting: work.retract.clone(),
                });
                let (report, skip) = self.run_epoch(worker, epoch, &work)?;
                driven.skipped.extend(skip);
                driven.epochs.push(report);
                driven
                    .packs
                    .extend(pack_output(&self.config, &self.options)?);
            }
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

    /// Run one epoch's dataflow to the end (also when the epoch fails, so that the other
    /// workers finish it too), then commit what it decided.
    fn run_epoch(
        &mut self,
        worker: &mut Worker,
        epoch: u64,
        work: &EpochWork,
    ) -> Result<(EpochReport, Vec<Skipped>), RunError> {
        let start = Instant::now();
        let index = self.cache.get(epoch, &work.retract);
        let mut graph = graph::build(worker, self.stages.clone(), index.clone());
        let fed = self.feed_epoch(worker, &mut graph, epoch, work, &index);
        graph.finish(worker);
        let (writer, skipped) = fed?;
        let shard_ordinals = writer.shard_ordinals.clone();
        let first_ordinal = self.manifest.next_ordinal();
        for file in self.manifest.files.iter_mut().filter(|f| f.epoch == epoch) {
            let (first, passed) = shard_ordinals
                .get(&file.shard)
                .copied()
                .unwrap_or((first_ordinal, 0));
            file.first_ordinal = first;
            file.passed = passed;
        }
        let index_docs = self.manifest.index_docs();
        let (report, dups_hash, (docs, bytes)) =
            writer.finish(start.elapsed().as_secs_f64(), index_docs)?;
        self.manifest.segments.push(SegmentEntry {
            dir: format!("epochs/{epoch:06}"),
            first_epoch: epoch,
            last_epoch: epoch,
            base: first_ordinal,
            docs,
            bytes,
        });
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
            index_docs,
            peak_rss: peak_rss(),
        });
        self.state.commit(&self.manifest)?;
        mark_output(&self.config, &self.manifest)?;
        if self.config.compact {
            compact::compact_due(&self.state, &mut self.manifest, self.stages.sketch_words())?;
        }
        Ok((report, skipped))
    }

    /// Feed the epoch's documents (revisited ones first, for a retraction) and write what
    /// the dataflow decides as it goes.
    fn feed_epoch(
        &mut self,
        worker: &mut Worker,
        graph: &mut Graph,
        epoch: u64,
        work: &EpochWork,
        index: &Result<crate::pipeline::index::Index, String>,
    ) -> Result<(EpochWriter, Vec<Skipped>), RunError> {
        let first_new_shard = self.manifest.next_shard();
        let numbered: Vec<(u32, &NewFile)> = work
            .new
            .iter()
            .enumerate()
            .map(|(i, f)| (first_new_shard + i as u32, f))
            .collect();
        let shard_sources = self.shard_sources(&numbered);
        let mut writer = EpochWriter::create(
            EpochPlan {
                state: &self.state,
                output: &self.config.output,
                epoch,
                kind: work.kind,
                shard_sources: shard_sources.clone(),
                shard_bytes: self.config.shard_bytes,
                first_ordinal: self.manifest.next_ordinal(),
            },
            self.stages.clone(),
        )?;
        if !work.retract.is_empty() {
            let index = index
                .as_ref()
                .map_err(|e| RunError::Config(format!("opening the index: {e}")))?;
            self.retract(index, &work.retract, &shard_sources, &mut writer, graph)?;
        }
        // Time 0 held the revisited documents; batches of new ones follow.
        graph.close_revisits();
        let mut batch: u64 = 1;
        let total: u64 = work.new.iter().map(|f| f.size).sum();
        let mut progress = Progress::new("run", total, self.options.progress);
        let mut done_bytes = 0;
        let mut skipped = Vec::new();
        // A reader thread reads and converts the next file while this one is fed, so that
        // reading never leaves the other workers idle. Two spill files take turns.
        let sources = self.config.sources.clone();
        let state_dir = self.state.dir.clone();
        let files: Vec<(usize, NewFile)> = numbered
            .iter()
            .enumerate()
            .map(|(k, (_, file))| (k, (*file).clone()))
            .collect();
        std::thread::scope(|scope| -> Result<(), RunError> {
            let (send, read) = std::sync::mpsc::sync_channel(0);
            scope.spawn(move || {
                for (k, file) in files {
                    let source = &sources[file.source];
                    let spill = state_dir.join(format!("spill-{}.tmp", k % 2));
                    let docs = read_documents(&file, source.format, &source.text_field, &spill);
                    if send.send(docs).is_err() {
                        // The epoch failed: nothing wants the rest.
                        return;
                    }
                }
            });
            for ((shard, file), read) in numbered.iter().zip(read) {
                let fed =
                    self.feed_file(worker, graph, &mut writer, &mut batch, (*shard, file), read);
                skipped.extend(fed?);
                done_bytes += file.size;
                progress.update(done_bytes, || format!("epoch {epoch}: {batch} batches"));
            }
            Ok(())
        })?;
        graph.advance_to(batch);
        worker.step_or_park_while(None, || graph.probe.less_than(&batch));
        writer.absorb(&mut graph.captured.borrow_mut(), batch)?;
        progress.finish();
        writer.report.skipped = skipped.clone();
        Ok((writer, skipped))
    }

    /// Feed one file's documents, as the reader thread read them, in batches from `*batch`,
    /// and write whatever the dataflow has made final. A file that could not be read is
    /// given back as skipped.
    fn feed_file(
        &mut self,
        worker: &mut Worker,
        graph: &mut Graph,
        writer: &mut EpochWriter,
        batch: &mut u64,
        (shard, file): (u32, &NewFile),
        read: Result<(Spill, Vec<RejectRecord>), String>,
    ) -> Result<Option<Skipped>, RunError> {
        let source = &self.config.sources[file.source];
        let display = file.name.clone();
        let (docs, rejects) = match read {
            Ok(read) => read,
            Err(reason) => {
                return Ok(Some(Skipped {
                    path: display,
                    reason,
                }));
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
            graph.raw.advance_to(*batch);
            for (row, text) in chunk {
                graph.raw.insert((doc_id(shard, row as u32), text));
            }
            graph.raw.flush();
            *batch += 1;
            // Keep a few batches in flight; write whatever is final.
            let wait_for = batch.saturating_sub(IN_FLIGHT);
            worker.step_or_park_while(None, || graph.probe.less_than(&wait_for));
            let frontier = graph
                .probe
                .with_frontier(|f| f.first().copied())
                .unwrap_or(Time::MAX);
            writer.absorb(&mut graph.captured.borrow_mut(), frontier)?;
            Ok::<(), RunError>(())
        })?;
        crate::pipeline::fail_point::fail_point("after-first-file");
        writer.report.bytes_in += file.size;
        writer.report.files.push(IngestedFile {
            source: source.name.clone(),
            path: display.clone(),
            shard,
            bytes: file.size,
            docs: records,
            rejected: rejects.len() as u64,
        });
        self.manifest.files.push(FileEntry {
            shard,
            source: source.name.clone(),
            path: display,
            size: file.size,
            hash: file.hash.clone(),
            modified: file.modified,
            epoch: writer.report.epoch,
            docs: records,
            rejected: rejects.len() as u64,
            retracted_in: None,
            first_ordinal: 0,
            passed: 0,
        });
        Ok(None)
    }

    /// Take the files of `shards` out of the index and give the dataflow the documents whose
    /// status that may change (`retraction.rs`), at time 0.
    fn retract(
        &mut self,
        index: &crate::pipeline::index::Index,
        shards: &[u32],
        shard_sources: &HashMap<u32, ShardSource>,
        writer: &mut EpochWriter,
        graph: &mut Graph,
    ) -> Result<(), RunError> {
        let epoch = self.manifest.last_epoch() + 1;
        let retracting: Vec<_> = self
            .manifest
            .files
            .iter()
            .filter(|f| shards.contains(&f.shard))
            .map(FileEntry::ordinals)
            .collect();
        let texts = TextStore {
            state_epochs: self
                .manifest
                .epochs
                .iter()
                .map(|e| {
                    (
                        self.state.epoch_dir(e.epoch).join("dups.jsonl"),
                        e.dups_hash.clone(),
                    )
                })
                .collect(),
            output_epochs: self
                .manifest
                .epochs
                .iter()
                .map(|e| self.config.output.join(format!("epoch-{:06}", e.epoch)))
                .collect(),
        };
        let revisits = crate::pipeline::retraction::retract(
            index,
            &self.stages,
            &retracting,
            &texts,
            shard_sources,
            writer,
        )?;
        let revisit = graph.revisit.as_mut().expect("revisits are given first");
        for (doc, revisited) in revisits {
            revisit.insert((doc, (revisited.ordinal, revisited.text.clone())));
            writer.revisit(doc, revisited);
        }
        for file in self
            .manifest
            .files
            .iter_mut()
            .filter(|f| shards.contains(&f.shard))
        {
            file.retracted_in = Some(epoch);
            let rejected = file.rejected as i64;
            writer.retract_unindexed(
                &file.source,
                rejected,
                file.docs as i64 - rejected - file.passed as i64,
            );
        }
        Ok(())
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
