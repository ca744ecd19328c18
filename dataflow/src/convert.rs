//! `steel convert`: every input file, whatever its source format and container, to unified
//! `{"text", "meta"}` shards, with every unusable record in `_rejects.jsonl`.
//!
//! Files are read one after another, each by a reader thread that hands bounded batches to
//! this thread; a batch's records are converted in parallel (rayon) and written in input order,
//! so the output bytes do not depend on the thread count and memory does not depend on file size.

use crate::doc::{DocMeta, UnifiedDoc};
use crate::input::parquet::column_names;
use crate::input::read::{first_fields, read_file};
use crate::input::{
    BatchLimits, Container, FileKind, InputError, RawBody, RawRecord, expand_inputs,
};
use crate::output::{
    OutputError, OutputFormat, Prepared, ShardInfo, ShardWriter, TMP_SUFFIX, create_empty_dir,
    describe_left, left_in, tmp_path,
};
use crate::progress::Progress;
use crate::reject::{RecordError, RejectCode, RejectRecord};
use crate::sources::fields::Record;
use crate::sources::{Format, FormatChoice};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

/// The name of the side output of rejected records.
pub const REJECTS_FILE: &str = "_rejects.jsonl";
/// The name of the machine-readable summary written next to the shards.
pub const SUMMARY_FILE: &str = "_summary.json";

#[derive(Clone, Debug)]
pub struct ConvertOptions {
    pub format: FormatChoice,
    /// The field the `text` format reads.
    pub text_field: String,
    pub output: PathBuf,
    pub output_format: OutputFormat,
    /// A shard is closed before it would grow past this many bytes.
    pub shard_bytes: u64,
    /// Fail the run once more records than this are rejected.
    pub max_rejects: Option<u64>,
    pub batch: BatchLimits,
    /// Show a progress bar (or log lines when stderr is not a terminal).
    pub progress: bool,
}

impl ConvertOptions {
    pub fn new(format: FormatChoice, output: impl Into<PathBuf>) -> Self {
        ConvertOptions {
            format,
            text_field: "text".into(),
            output: output.into(),
            output_format: OutputFormat::Jsonl,
            shard_bytes: 256 << 20,
            max_rejects: None,
            batch: BatchLimits::default(),
            progress: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("no input files: {0}")]
    NoInputs(String),
    #[error(
        "output directory `{}` is not empty; remove it or choose another (a run never mixes \
         its shards with an earlier run's)",
        .0.display()
    )]
    OutputNotEmpty(PathBuf),
    #[error(
        "stopped: {rejected} records rejected, more than --max-rejects {limit}; see `{}`",
        rejects.display()
    )]
    TooManyRejects {
        limit: u64,
        rejected: u64,
        rejects: PathBuf,
    },
    /// The run stopped after it had begun writing `output`: `error` says why, `left` what is
    /// there. Shards keep their `.tmp` names and there is no `_summary.json`, so nothing in
    /// the directory is taken for finished output.
    #[error(
        "{error}; `{}` is left unfinished: {} (no {SUMMARY_FILE}; shards keep their \
         {TMP_SUFFIX} names, which no later stage reads); remove it before converting again",
        output.display(),
        describe_left(left)
    )]
    Unfinished {
        output: PathBuf,
        left: Vec<String>,
        error: Box<ConvertError>,
    },
}

impl ConvertError {
    /// The error that stopped the run (for [`ConvertError::Unfinished`], the one it wraps).
    pub fn reason(&self) -> &ConvertError {
        match self {
            ConvertError::Unfinished { error, .. } => error.reason(),
            other => other,
        }
    }
}

/// One input file and how it will be read.
#[derive(Clone, Debug)]
pub struct FilePlan {
    pub path: PathBuf,
    /// The path as written to `meta.file` and reports.
    pub display: String,
    pub kind: FileKind,
    pub format: Format,
    /// For `auto`: the fields of the first record, which decided the format.
    pub detected_from: Option<Vec<String>>,
}

/// Per-file counts. `docs_in = docs_out + rejected` always.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FileSummary {
    pub file: String,
    pub format: String,
    /// Present when `auto` chose the format: the first record's fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detected_from: Option<Vec<String>>,
    pub docs_in: u64,
    pub docs_out: u64,
    pub rejected: u64,
    /// Size of the file on disk.
    pub bytes_in: u64,
    /// Bytes of document text written.
    pub bytes_out: u64,
    /// Blank lines of line-oriented files (not records, so not counted in `docs_in`).
    pub blank_lines: u64,
    /// Parquet row groups that could not be read; their rows are rejected as `read_error`.
    #[serde(skip_serializing_if = "is_zero")]
    pub unreadable_row_groups: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Serialize)]
pub struct ConvertSummary {
    pub docs_in: u64,
    pub docs_out: u64,
    pub rejected: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Rejected records by reason code.
    pub reject_reasons: BTreeMap<RejectCode, u64>,
    pub files: Vec<FileSummary>,
    /// Files inside input directories or globs that are not of a type we read.
    pub skipped_files: Vec<String>,
    /// Files with nothing to convert, skipped (see [`SkippedFiles::empty`]).
    pub empty_files: Vec<String>,
    pub output: String,
    pub output_format: OutputFormat,
    pub shards: Vec<ShardInfo>,
    pub rejects_file: String,
    pub threads: usize,
    pub seconds: f64,
}

/// Files a run passes over instead of reading.
#[derive(Clone, Debug, Default)]
pub struct SkippedFiles {
    /// Found inside directories or globs, of a type we do not read.
    pub unsupported: Vec<PathBuf>,
    /// Nothing to convert: a zero-byte file with `auto` or of parquet (a zero-byte JSON or
    /// JSONL file with a fixed format reads as zero documents), or with `auto` a file with
    /// no record at all (only blank lines, an empty JSON array, an empty compressed stream).
    pub empty: Vec<PathBuf>,
}

/// Expand `inputs` and decide how to read each file. Every file-level problem (missing,
/// unsupported type, undecidable format) is found here, before anything is written; files
/// with nothing in them are not problems, they are skipped (see [`SkippedFiles`]).
pub fn plan_files(
    inputs: &[String],
    choice: FormatChoice,
) -> Result<(Vec<FilePlan>, SkippedFiles), ConvertError> {
    let expanded = expand_inputs(inputs)?;
    if expanded.files.is_empty() {
        return Err(ConvertError::NoInputs(if inputs.is_empty() {
            "no INPUT given".into()
        } else {
            format!("nothing readable in {}", inputs.join(" "))
        }));
    }
    let mut skipped = SkippedFiles {
        unsupported: expanded.skipped,
        empty: Vec::new(),
    };
    let mut plans = Vec::with_capacity(expanded.files.len());
    for path in expanded.files {
        let kind = FileKind::of(&path).ok_or_else(|| InputError::UnsupportedType(path.clone()))?;
        // A zero-byte file holds nothing to lose; with `auto` it (or a file of only blank
        // lines) has no record to decide a format from. Skipped, never an error. A zero-byte
        // JSON or JSONL file with a fixed format reads as zero documents, as it always has.
        let zero_bytes = std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == 0);
        if zero_bytes && (choice == FormatChoice::Auto || kind.container == Container::Parquet) {
            skipped.empty.push(path);
            continue;
        }
        let (format, detected_from) = match choice {
            FormatChoice::Fixed(format) => {
                check_readable(&path, kind)?;
                (format, None)
            }
            FormatChoice::Auto => {
                let fields = match first_fields(&path, kind) {
                    Err(InputError::NoRecordToDetect { scanned: 0, .. }) => {
                        skipped.empty.push(path);
                        continue;
                    }
                    other => other?,
                };
                let format =
                    Format::detect(|k| fields.iter().any(|f| f == k)).ok_or_else(|| {
                        InputError::UnknownFormat {
                            path: path.clone(),
                            fields: fields.join(", "),
                            expected: Format::ALL
                                .iter()
                                .map(|f| format!("{}: {}", f.name(), f.signature()))
                                .collect::<Vec<_>>()
                                .join("; "),
                        }
                    })?;
                (format, Some(fields))
            }
        };
        let display = path.display().to_string();
        plans.push(FilePlan {
            path,
            display,
            kind,
            format,
            detected_from,
        });
    }
    Ok((plans, skipped))
}

/// Convert `inputs` into shards under `options.output`.
///
/// Shards are written under `.tmp` names and renamed only once every file is converted and
/// the summary is written, so a run that fails part-way (an I/O error, `--max-rejects`) or is
/// killed leaves no file named like a finished shard; its error says what it left.
pub fn convert(
    inputs: &[String],
    options: &ConvertOptions,
) -> Result<ConvertSummary, ConvertError> {
    let start = Instant::now();
    let (plans, skipped) = plan_files(inputs, options.format)?;
    prepare_output_dir(&options.output)?;
    convert_planned(&plans, &skipped, options, start).map_err(|error| ConvertError::Unfinished {
        output: options.output.clone(),
        left: left_in(&options.output),
        error: Box::new(error),
    })
}

/// `convert` once the files are planned and the (empty) output directory exists.
fn convert_planned(
    plans: &[FilePlan],
    skipped: &SkippedFiles,
    options: &ConvertOptions,
    start: Instant,
) -> Result<ConvertSummary, ConvertError> {
    let rejects_path = options.output.join(REJECTS_FILE);
    let rejects_file =
        File::create(&rejects_path).map_err(|e| OutputError::io(&rejects_path, e))?;
    let mut run = Run {
        options,
        writer: ShardWriter::new(options.output_format, &options.output, options.shard_bytes),
        rejects: BufWriter::new(rejects_file),
        rejects_path: rejects_path.clone(),
        reasons: BTreeMap::new(),
        rejected: 0,
        docs_out: 0,
    };
    let sizes: Vec<u64> = plans.iter().map(|p| file_size(&p.path)).collect();
    let mut progress = Progress::new("convert", sizes.iter().sum(), options.progress);
    let mut files = Vec::with_capacity(plans.len());
    let mut done_bytes = 0u64;
    for (plan, size) in plans.iter().zip(&sizes) {
        let mut summary = run.convert_file(plan, &mut progress, done_bytes)?;
        summary.bytes_in = *size;
        done_bytes += size;
        files.push(summary);
    }
    progress.finish();

    run.rejects
        .flush()
        .map_err(|e| OutputError::io(&rejects_path, e))?;
    let reject_reasons = std::mem::take(&mut run.reasons);
    let closed = run.writer.close()?;
    let names = |paths: &[PathBuf]| paths.iter().map(|p| p.display().to_string()).collect();
    let summary = ConvertSummary {
        docs_in: files.iter().map(|f| f.docs_in).sum(),
        docs_out: files.iter().map(|f| f.docs_out).sum(),
        rejected: files.iter().map(|f| f.rejected).sum(),
        bytes_in: files.iter().map(|f| f.bytes_in).sum(),
        bytes_out: files.iter().map(|f| f.bytes_out).sum(),
        reject_reasons,
        files,
        skipped_files: names(&skipped.unsupported),
        empty_files: names(&skipped.empty),
        output: options.output.display().to_string(),
        output_format: options.output_format,
        shards: closed.shards().to_vec(),
        rejects_file: rejects_path.display().to_string(),
        threads: rayon::current_num_threads(),
        seconds: start.elapsed().as_secs_f64(),
    };
    // The summary is written first under a temporary name: if that fails (a full disk), no
    // shard has its final name yet. Then the shards are renamed, then the summary.
    let summary_path = options.output.join(SUMMARY_FILE);
    let summary_tmp = tmp_path(&summary_path);
    let json = serde_json::to_vec_pretty(&summary).expect("a summary always serialises");
    std::fs::write(&summary_tmp, json).map_err(|e| OutputError::io(&summary_tmp, e))?;
    closed.commit()?;
    std::fs::rename(&summary_tmp, &summary_path).map_err(|e| OutputError::io(&summary_path, e))?;
    Ok(summary)
}

/// Fail early on a file that cannot be opened, or a parquet file whose footer is unreadable.
fn check_readable(path: &Path, kind: FileKind) -> Result<(), InputError> {
    if kind.container == Container::Parquet {
        column_names(path)?;
    } else {
        File::open(path).map_err(|e| InputError::io(path, e))?;
    }
    Ok(())
}

fn prepare_output_dir(dir: &Path) -> Result<(), ConvertError> {
    if !create_empty_dir(dir)? {
        return Err(ConvertError::OutputNotEmpty(dir.to_path_buf()));
    }
    Ok(())
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The state of one conversion run across files.
struct Run<'a> {
    options: &'a ConvertOptions,
    writer: ShardWriter,
    rejects: BufWriter<File>,
    rejects_path: PathBuf,
    reasons: BTreeMap<RejectCode, u64>,
    rejected: u64,
    docs_out: u64,
}

impl Run<'_> {
    fn convert_file(
        &mut self,
        plan: &FilePlan,
        progress: &mut Progress,
        done_bytes: u64,
    ) -> Result<FileSummary, ConvertError> {
        let mut summary = FileSummary {
            file: plan.display.clone(),
            format: plan.format.name().into(),
            detected_from: plan.detected_from.clone(),
            ..FileSummary::default()
        };
        let disk_bytes = Arc::new(AtomicU64::new(0));
        std::thread::scope(|scope| {
            // Two batches in flight: the reader fills one while this thread converts another.
            let (sender, batches) = sync_channel::<Vec<RawRecord>>(2);
            let reader_disk_bytes = disk_bytes.clone();
            let limits = self.options.batch;
            let reader = scope.spawn(move || {
                let mut send = |batch| sender.send(batch).is_ok();
                read_file(&plan.path, plan.kind, limits, reader_disk_bytes, &mut send)
            });
            for batch in batches {
                self.convert_batch(plan, batch, &mut summary)?;
                if let Some(limit) = self.options.max_rejects
                    && self.rejected > limit
                {
                    self.rejects
                        .flush()
                        .map_err(|e| OutputError::io(&self.rejects_path, e))?;
                    return Err(ConvertError::TooManyRejects {
                        limit,
                        rejected: self.rejected,
                        rejects: self.rejects_path.clone(),
                    });
                }
                let docs_out = self.docs_out;
                let rejected = self.rejected;
                progress.update(done_bytes + disk_bytes.load(Ordering::Relaxed), || {
                    format!("{docs_out} docs, {rejected} rejected")
                });
            }
            let stats = match reader.join() {
                Ok(result) => result?,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            summary.blank_lines = stats.blank_lines;
            summary.unreadable_row_groups = stats.unreadable_row_groups;
            Ok(summary)
        })
    }

    fn convert_batch(
        &mut self,
        plan: &FilePlan,
        batch: Vec<RawRecord>,
        summary: &mut FileSummary,
    ) -> Result<(), ConvertError> {
        let text_field = self.options.text_field.as_str();
        let output_format = self.options.output_format;
        let outcomes: Vec<Result<(Prepared, u64), RejectRecord>> = batch
            .into_par_iter()
            .map(|record| {
                let doc = convert_record(record, plan, text_field)?;
                let text_bytes = doc.text.len() as u64;
                Ok((ShardWriter::prepare(output_format, doc), text_bytes))
            })
            .collect();
        for outcome in outcomes {
            summary.docs_in += 1;
            match outcome {
                Ok((prepared, text_bytes)) => {
                    self.writer.write(prepared)?;
                    summary.docs_out += 1;
                    summary.bytes_out += text_bytes;
                    self.docs_out += 1;
                }
                Err(reject) => {
                    let mut line = serde_json::to_vec(&reject).expect("a reject always serialises");
                    line.push(b'\n');
                    self.rejects
                        .write_all(&line)
                        .map_err(|e| OutputError::io(&self.rejects_path, e))?;
                    *self.reasons.entry(reject.reason).or_default() += 1;
                    summary.rejected += 1;
                    self.rejected += 1;
                }
            }
        }
        Ok(())
    }
}

/// One raw record to a document, or the reason it cannot be one.
pub fn convert_record(
    record: RawRecord,
    plan: &FilePlan,
    text_field: &str,
) -> Result<UnifiedDoc, RejectRecord> {
    let reject = |error: RecordError, bytes: &[u8]| {
        RejectRecord::new(&plan.display, record.line, record.row, error, bytes)
    };
    let object = record
        .body
        .object()
        .map_err(|e| reject(e, record.body.bytes()))?;
    // The record's bytes for the reject head; a parquet row is serialised only when rejected.
    let head_bytes = |object: &Record| match &record.body {
        RawBody::Row(_) => serde_json::to_vec(object).expect("a record always serialises"),
        body => body.bytes().to_vec(),
    };
    let text = match plan.format.render(&object, text_field) {
        Ok(text) if text.trim().is_empty() => {
            let error = RecordError::new(RejectCode::EmptyText, "the document text is empty");
            return Err(reject(error, &head_bytes(&object)));
        }
        Ok(text) => text,
        Err(error) => return Err(reject(error, &head_bytes(&object))),
    };
    Ok(UnifiedDoc {
        text,
        meta: DocMeta {
            source: plan.format.name().into(),
            file: plan.display.clone(),
            row: record.row,
        },
    })
}
