//! `steel clean`: stream documents through a recipe's operators and write what survives.
//!
//! Files are read in order on a reader thread and handed over in bounded batches. In a batch,
//! each run of mappers and filters is applied to all documents in parallel (rayon); a
//! deduplicator computes keys in parallel and then decides in input order. Per-document
//! outcomes are folded into the report in input order, so shards, report and traces are the
//! same whatever the number of threads. Records that are not documents (bad JSON, no text
//! field) go to `_rejects.jsonl` with a reason and are counted.

use crate::clean::chain::{self, Event};
use crate::clean::dedup::SeenIndex;
use crate::clean::filters::Resources;
use crate::clean::op::Op;
use crate::clean::recipe::{BuiltOp, Recipe};
use crate::clean::report::{CleanReport, OpReport, TraceExample};
use crate::convert::{ConvertError, plan_files};
use crate::input::read::read_file;
use crate::input::{BatchLimits, FileKind, InputError, RawRecord};
use crate::output::jsonl::JsonlShards;
use crate::output::{OutputError, TMP_SUFFIX, create_empty_dir, describe_left, left_in};
use crate::progress::Progress;
use crate::reject::{RecordError, RejectRecord};
use crate::sources::fields::{Record, str_field};
use crate::sources::{Format, FormatChoice};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

/// Directory inputs skip these (`input::expand::REPORT_FILES`), so a cleaned directory can be
/// the next stage's input as it is.
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_TEXT: &str = "report.txt";
pub const REJECTS_FILE: &str = "_rejects.jsonl";

#[derive(Clone, Debug)]
pub struct CleanOptions {
    pub recipe: PathBuf,
    pub output: PathBuf,
    /// Examples per operator in the report.
    pub trace: usize,
    pub resources: Resources,
    pub batch: BatchLimits,
    pub shard_bytes: u64,
    pub progress: bool,
}

impl CleanOptions {
    pub fn new(recipe: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        CleanOptions {
            recipe: recipe.into(),
            output: output.into(),
            trace: 0,
            resources: Resources::default(),
            batch: BatchLimits::default(),
            shard_bytes: 256 << 20,
            progress: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error("{0}")]
    Recipe(String),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Plan(#[from] ConvertError),
    #[error("output directory `{}` is not empty; choose a new one", .0.display())]
    OutputNotEmpty(PathBuf),
    /// The run stopped after it had begun writing `output`: `error` says why, `left` what is
    /// there. Shards keep their `.tmp` names and there is no report, so nothing in the
    /// directory is taken for finished output.
    #[error(
        "{error}; `{}` is left unfinished: {} (no {REPORT_JSON}; shards keep their \
         {TMP_SUFFIX} names, which no later stage reads); remove it before cleaning again",
        output.display(),
        describe_left(left)
    )]
    Unfinished {
        output: PathBuf,
        left: Vec<String>,
        error: Box<CleanError>,
    },
}

/// One document on its way through the operators.
struct Doc {
    record: Record,
    text: String,
    file: Arc<str>,
    row: u64,
}

/// Clean `inputs` into `options.output`.
///
/// Shards are written under `.tmp` names and renamed only once every file is cleaned and the
/// report is written, so a run that fails part-way or is killed leaves no file named like a
/// finished shard; its error says what it left.
pub fn clean(
    inputs: &[String],
    recipe: &Recipe,
    options: &CleanOptions,
) -> Result<CleanReport, CleanError> {
    let start = Instant::now();
    let ops = recipe
        .build_ops(&options.resources)
        .map_err(CleanError::Recipe)?;
    let files = plan(inputs)?;
    prepare_output_dir(&options.output)?;
    clean_planned(&files, &ops, recipe, options, start).map_err(|error| CleanError::Unfinished {
        output: options.output.clone(),
        left: left_in(&options.output),
        error: Box::new(error),
    })
}

/// `clean` once the operators are built, the files planned and the output directory made.
fn clean_planned(
    files: &[(PathBuf, FileKind)],
    ops: &[BuiltOp],
    recipe: &Recipe,
    options: &CleanOptions,
    start: Instant,
) -> Result<CleanReport, CleanError> {
    // One index per operator (only deduplicators use theirs).
    let mut seen: Vec<SeenIndex> = ops.iter().map(|_| SeenIndex::default()).collect();
    let mut reports: Vec<OpReport> = ops.iter().map(OpReport::for_op).collect();
    let rejects_path = options.output.join(REJECTS_FILE);
    let mut rejects =
        BufWriter::new(File::create(&rejects_path).map_err(|e| OutputError::io(&rejects_path, e))?);
    let mut shards = JsonlShards::new(&options.output, options.shard_bytes);
    let mut totals = Totals::default();
    let sizes: Vec<u64> = files
        .iter()
        .map(|(p, _)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .collect();
    let mut progress = Progress::new("clean", sizes.iter().sum(), options.progress);
    let mut done_bytes = 0;
    for ((path, kind), size) in files.iter().zip(&sizes) {
        let file: Arc<str> = path.display().to_string().into();
        let disk_bytes = Arc::new(AtomicU64::new(0));
        std::thread::scope(|scope| -> Result<(), CleanError> {
            let (sender, batches) = sync_channel::<Vec<RawRecord>>(2);
            let reader_bytes = disk_bytes.clone();
            let limits = options.batch;
            let reader = scope.spawn(move || {
                let mut send = |batch| sender.send(batch).is_ok();
                read_file(path, *kind, limits, reader_bytes, &mut send)
            });
            for batch in batches {
                let docs = parse_batch(
                    batch,
                    &file,
                    &recipe.text_key,
                    &mut rejects,
                    &rejects_path,
                    &mut totals,
                )?;
                let kept = run_ops(docs, ops, &mut seen, &mut reports, options.trace);
                for doc in kept {
                    shards.write(&to_line(doc, &recipe.text_key))?;
                    totals.docs_out += 1;
                }
                let (docs_out, docs_in) = (totals.docs_out, totals.docs_in);
                progress.update(done_bytes + disk_bytes.load(Ordering::Relaxed), || {
                    format!("{docs_in} docs in, {docs_out} out")
                });
            }
            match reader.join() {
                Ok(result) => result.map(|_| ()).map_err(CleanError::from),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })?;
        done_bytes += size;
    }
    progress.finish();
    rejects
        .flush()
        .map_err(|e| OutputError::io(&rejects_path, e))?;
    for report in &mut reports {
        report.finish();
    }
    let closed = shards.close()?;
    let report = CleanReport {
        recipe: options.recipe.display().to_string(),
        text_key: recipe.text_key.clone(),
        files: files.iter().map(|(p, _)| p.display().to_string()).collect(),
        docs_in: totals.docs_in,
        docs_out: totals.docs_out,
        rejected: totals.rejected,
        reject_reasons: totals.reasons,
        bytes_in: sizes.iter().sum(),
        ops: reports,
        ignored_keys: recipe.ignored_keys.clone(),
        notes: recipe.notes.clone(),
        output: options.output.display().to_string(),
        shards: closed.shards().to_vec(),
        threads: rayon::current_num_threads(),
        seconds: start.elapsed().as_secs_f64(),
    };
    // Reports first: until the shards are renamed nothing here is taken for finished output
    // (directory inputs pass over report files).
    write_report(&report, &options.output)?;
    closed.commit()?;
    Ok(report)
}

#[derive(Default)]
struct Totals {
    docs_in: u64,
    docs_out: u64,
    rejected: u64,
    reasons: BTreeMap<String, u64>,
}

/// The files to read: expanded, typed and checked readable as `steel convert` plans them.
fn plan(inputs: &[String]) -> Result<Vec<(PathBuf, FileKind)>, CleanError> {
    let (plans, _) = plan_files(inputs, FormatChoice::Fixed(Format::Text))?;
    Ok(plans
        .into_iter()
        .map(|plan| (plan.path, plan.kind))
        .collect())
}

fn prepare_output_dir(dir: &Path) -> Result<(), CleanError> {
    if !create_empty_dir(dir)? {
        return Err(CleanError::OutputNotEmpty(dir.to_path_buf()));
    }
    Ok(())
}

/// Raw records to documents (in parallel); unreadable ones go to the rejects file, in order.
fn parse_batch(
    batch: Vec<RawRecord>,
    file: &Arc<str>,
    text_key: &str,
    rejects: &mut BufWriter<File>,
    rejects_path: &Path,
    totals: &mut Totals,
) -> Result<Vec<Doc>, CleanError> {
    let parsed: Vec<Result<Doc, RejectRecord>> = batch
        .into_par_iter()
        .map(|raw| {
            let doc = raw.body.object().and_then(|record| {
                let text = str_field(&record, text_key)?.to_string();
                Ok::<_, RecordError>(Doc {
                    record,
                    text,
                    file: file.clone(),
                    row: raw.row,
                })
            });
            doc.map_err(|error| RejectRecord::new(file, raw.line, raw.row, error, raw.body.bytes()))
        })
        .collect();
    let mut docs = Vec::with_capacity(parsed.len());
    for outcome in parsed {
        match outcome {
            Ok(doc) => {
                totals.docs_in += 1;
                docs.push(doc);
            }
            Err(reject) => {
                let mut line = serde_json::to_vec(&reject).expect("a reject always serialises");
                line.push(b'\n');
                rejects
                    .write_all(&line)
                    .map_err(|e| OutputError::io(rejects_path, e))?;
                *totals
                    .reasons
                    .entry(reject.reason.name().to_string())
                    .or_default() += 1;
                totals.rejected += 1;
            }
        }
    }
    Ok(docs)
}

/// Apply every operator to a batch; returns the surviving documents in input order.
fn run_ops(
    mut docs: Vec<Doc>,
    ops: &[BuiltOp],
    seen: &mut [SeenIndex],
    reports: &mut [OpReport],
    trace: usize,
) -> Vec<Doc> {
    let mut start = 0;
    while start < ops.len() {
        if let Op::Dedup(_) = ops[start].op {
            docs = run_dedup(
                docs,
                &ops[start],
                &mut seen[start],
                &mut reports[start],
                trace,
            );
            start += 1;
            continue;
        }
        let end = (start..ops.len())
            .find(|&i| matches!(ops[i].op, Op::Dedup(_)))
            .unwrap_or(ops.len());
        docs = run_segment(docs, &ops[start..end], &mut reports[start..end], trace);
        start = end;
    }
    docs
}

/// Mappers and filters `ops` over all documents in parallel, then the report in order.
fn run_segment(
    docs: Vec<Doc>,
    ops: &[BuiltOp],
    reports: &mut [OpReport],
    trace: usize,
) -> Vec<Doc> {
    let want_trace: Vec<bool> = reports.iter().map(|r| r.trace.len() < trace).collect();
    // Texts are kept in the events only while an operator's trace still wants examples.
    let outcomes: Vec<(Doc, Vec<Event>)> = docs
        .into_par_iter()
        .map(|mut doc| {
            let (text, events) = chain::apply(ops, std::mem::take(&mut doc.text), &want_trace);
            doc.text = text.unwrap_or_default();
            (doc, events)
        })
        .collect();
    let mut kept = Vec::with_capacity(outcomes.len());
    for (doc, events) in outcomes {
        let mut alive = true;
        for (report, event) in reports.iter_mut().zip(events) {
            let example = |before: String, after: Option<String>, stat: Option<f64>| TraceExample {
                file: doc.file.to_string(),
                row: doc.row,
                before,
                after,
                stat,
            };
            alive = report.add(event, trace, example);
        }
        if alive {
            kept.push(doc);
        }
    }
    kept
}

/// A deduplicator: keys in parallel, decisions in input order.
fn run_dedup(
    docs: Vec<Doc>,
    op: &BuiltOp,
    seen: &mut SeenIndex,
    report: &mut OpReport,
    trace: usize,
) -> Vec<Doc> {
    let Op::Dedup(dedup) = &op.op else {
        unreachable!("run_dedup is given deduplicators only")
    };
    // Keys with the time each took, then the decisions (timed as a whole).
    let keys: Vec<(Vec<u64>, u64)> = {
        let dedup = &**dedup;
        docs.par_iter()
            .map(|doc| {
                let start = Instant::now();
                let key = dedup.key(&doc.text);
                (key, start.elapsed().as_nanos() as u64)
            })
            .collect()
    };
    let deciding = Instant::now();
    let mut kept = Vec::with_capacity(docs.len());
    for (doc, (key, nanos)) in docs.into_iter().zip(keys) {
        report.docs_in += 1;
        report.nanos += nanos;
        if seen.check_and_insert(&**dedup, key) {
            if report.trace.len() < trace {
                report.trace.push(TraceExample {
                    file: doc.file.to_string(),
                    row: doc.row,
                    before: doc.text,
                    after: None,
                    stat: None,
                });
            }
        } else {
            report.docs_out += 1;
            kept.push(doc);
        }
    }
    report.nanos += deciding.elapsed().as_nanos() as u64;
    kept
}

/// The output line: the input record with its text field replaced.
fn to_line(mut doc: Doc, text_key: &str) -> Vec<u8> {
    doc.record
        .insert(text_key.to_string(), serde_json::Value::String(doc.text));
    let mut line = serde_json::to_vec(&doc.record).expect("a record always serialises");
    line.push(b'\n');
    line
}

fn write_report(report: &CleanReport, dir: &Path) -> Result<(), CleanError> {
    let json_path = dir.join(REPORT_JSON);
    let json = serde_json::to_vec_pretty(report).expect("a report always serialises");
    std::fs::write(&json_path, json).map_err(|e| OutputError::io(&json_path, e))?;
    let text_path = dir.join(REPORT_TEXT);
    std::fs::write(&text_path, report.to_string()).map_err(|e| OutputError::io(&text_path, e))?;
    Ok(())
}
