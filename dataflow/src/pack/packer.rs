//! `steel pack`: unified documents to `LITPKDS` chunks.
//!
//! Each document's text plus the end token becomes tokens; tokens run on from one document
//! to the next, filling chunks of `(B + 1) * K` tokens; the last chunk's tail is padding.
//! Documents are tokenised in parallel batches and appended in input order, so the chunks are
//! the same bytes for any thread count. Packing is incremental: each unit of new input
//! (`inputs.rs`) becomes one new epoch of chunks, inputs packed before are left out, a `steel
//! run` output directory's tombstones take their documents out of the chunks (`retract.rs`),
//! and an existing chunk is never rewritten.

use crate::convert::FilePlan;
use crate::input::read::read_file;
use crate::input::{BatchLimits, RawRecord};
use crate::pack::PackError;
use crate::pack::chunk_writer::ChunkWriter;
use crate::pack::docs::DocKey;
use crate::pack::inputs::{ChangedInput, InputFile, Unit, plan};
use crate::pack::litpkds::TokenDtype;
use crate::pack::manifest::{DocFile, MANIFEST_FILE, Manifest, PackSettings, xxh3_hex};
use crate::pack::retract::{Retraction, retract};
use crate::pack::tokenizer::{load, token_id};
use crate::pipeline::lock::{LOCK, StateLock};
use crate::progress::Progress;
use crate::reject::{RecordError, RejectCode, RejectRecord};
use crate::sources::fields::str_field;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;
use tokenizers::Tokenizer;

#[derive(Clone, Debug)]
pub struct PackOptions {
    pub tokenizer: PathBuf,
    pub output: PathBuf,
    pub block_size: u64,
    pub chunk_blocks: u64,
    /// Appended to every document (Steel used `<|im_end|>`).
    pub eos: String,
    /// Fills the tail of the last chunk.
    pub pad: String,
    /// The epoch the first new chunks belong to; default: one past the directory's last.
    pub epoch: Option<u64>,
    pub batch: BatchLimits,
    pub progress: bool,
}

impl PackOptions {
    pub fn new(tokenizer: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        PackOptions {
            tokenizer: tokenizer.into(),
            output: output.into(),
            block_size: 2048,
            chunk_blocks: 1024,
            eos: "<|im_end|>".into(),
            pad: "<|endoftext|>".into(),
            epoch: None,
            batch: BatchLimits::default(),
            progress: false,
        }
    }
}

/// Pack epochs are below this: `steel train`'s ranks agree on them as exact f32 values.
pub const MAX_EPOCH: u64 = 1 << 24;

/// What one `steel pack` did.
#[derive(Clone, Debug, Serialize)]
pub struct PackOutcome {
    /// One per unit of new input, in order.
    pub epochs: Vec<PackSummary>,
    /// Inputs packed before and unchanged (left out).
    pub known_inputs: usize,
    /// Inputs packed before whose content changed (reported, not packed).
    pub changed: Vec<ChangedInput>,
    pub nothing_new: bool,
    pub manifest: String,
}

/// One epoch of chunks.
#[derive(Clone, Debug, Serialize)]
pub struct PackSummary {
    pub epoch: u64,
    /// The unit packed: `inputs` or a `steel run` output's epoch directory.
    pub unit: String,
    pub files: usize,
    pub docs_in: u64,
    pub docs_packed: u64,
    pub rejected: u64,
    /// Document tokens written (end tokens included, padding not).
    pub tokens: u64,
    pub padding: u64,
    pub chunks: Vec<String>,
    pub bytes_in: u64,
    pub text_bytes: u64,
    /// Tombstones read, and those of documents no chunk here holds (never packed here).
    pub tombstones: u64,
    pub tombstones_unmatched: u64,
    pub retraction: Retraction,
    pub rejects_file: String,
    pub seconds: f64,
}

/// Pack what is new in `inputs` (unified JSONL or parquet shards from `steel convert`, or
/// `steel run` output directories) into `options.output`.
pub fn pack(inputs: &[String], options: &PackOptions) -> Result<PackOutcome, PackError> {
    let tokenizer = load(&options.tokenizer)?;
    let settings = settings_for(&tokenizer, options)?;
    std::fs::create_dir_all(&options.output).map_err(|e| PackError::io(&options.output, e))?;
    // One pack at a time per chunk directory (a `steel run --watch` with `[pack]` and a pack
    // by hand would write the same chunk names).
    let _lock = StateLock::take(&options.output).map_err(|e| PackError::Manifest {
        path: options.output.join(LOCK),
        reason: e.to_string(),
    })?;
    let mut manifest = open_manifest(&options.output, &settings)?;
    let plan = plan(inputs, &manifest)?;
    let epoch = options.epoch.unwrap_or_else(|| manifest.next_epoch());
    if epoch < manifest.next_epoch() {
        return Err(PackError::Settings(format!(
            "epoch {epoch} is not after the directory's last epoch {}; chunks are never rewritten",
            manifest.next_epoch() - 1
        )));
    }
    if epoch + plan.units.len() as u64 > MAX_EPOCH {
        return Err(PackError::Settings(format!(
            "epochs are numbered below {MAX_EPOCH} (training ranks agree on them exactly); epoch {epoch} and {} more do not fit",
            plan.units.len()
        )));
    }
    let mut outcome = PackOutcome {
        epochs: Vec::new(),
        known_inputs: plan.known,
        changed: plan.changed,
        nothing_new: plan.units.is_empty(),
        manifest: options.output.join(MANIFEST_FILE).display().to_string(),
    };
    let mut doc_files: HashMap<DocFile, u32> = manifest
        .doc_files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.clone(), i as u32))
        .collect();
    for (unit, epoch) in plan.units.iter().zip(epoch..) {
        let mut packing = Packing {
            options,
            tokenizer: &tokenizer,
            manifest: &mut manifest,
            doc_files: &mut doc_files,
            epoch,
        };
        outcome.epochs.push(packing.unit(unit)?);
        manifest.save(&options.output)?;
    }
    Ok(outcome)
}

/// One unit being packed as epoch `epoch`.
struct Packing<'a> {
    options: &'a PackOptions,
    tokenizer: &'a Tokenizer,
    manifest: &'a mut Manifest,
    doc_files: &'a mut HashMap<DocFile, u32>,
    epoch: u64,
}

impl Packing<'_> {
    /// The `doc_files` index of `file`, adding it when new.
    fn doc_file(&mut self, file: DocFile) -> u32 {
        if let Some(&index) = self.doc_files.get(&file) {
            return index;
        }
        let index = self.manifest.doc_files.len() as u32;
        self.manifest.doc_files.push(file.clone());
        self.doc_files.insert(file, index);
        index
    }

    fn unit(&mut self, unit: &Unit) -> Result<PackSummary, PackError> {
        let start = Instant::now();
        let (options, epoch) = (self.options, self.epoch);
        let settings = self.manifest.settings.clone();
        let rejects_path = options.output.join(format!("_rejects-e{epoch:04}.jsonl"));
        let rejects_file =
            std::fs::File::create(&rejects_path).map_err(|e| PackError::io(&rejects_path, e))?;
        let mut rejects = std::io::BufWriter::new(rejects_file);
        let mut chunks = ChunkWriter::new(&options.output, settings.clone(), epoch);
        let mut summary = PackSummary {
            epoch,
            unit: unit.name.clone(),
            files: unit.shards.len(),
            docs_in: 0,
            docs_packed: 0,
            rejected: 0,
            tokens: 0,
            padding: 0,
            chunks: Vec::new(),
            bytes_in: unit.shards.iter().map(|(_, f)| f.record.bytes).sum(),
            text_bytes: 0,
            tombstones: 0,
            tombstones_unmatched: 0,
            retraction: Retraction::default(),
            rejects_file: rejects_path.display().to_string(),
            seconds: 0.0,
        };
        if let Some(tombstones) = &unit.tombstones {
            let gone = self.read_tombstones(tombstones, &mut summary)?;
            summary.retraction =
                retract(&options.output, self.manifest, &gone, epoch, &mut chunks)?;
            summary.tombstones_unmatched = summary.tombstones - summary.retraction.docs_removed;
        }
        let mut progress = Progress::new("pack", summary.bytes_in, options.progress);
        let mut done_bytes = 0u64;
        for (plan, input) in &unit.shards {
            std::thread::scope(|scope| -> Result<(), PackError> {
                let (sender, batches) = sync_channel::<Vec<RawRecord>>(2);
                let limits = options.batch;
                let reader = scope.spawn(move || {
                    let mut send = |batch| sender.send(batch).is_ok();
                    read_file(&plan.path, plan.kind, limits, Default::default(), &mut send)
                });
                for batch in batches {
                    let encoded: Vec<Result<EncodedDoc, RejectRecord>> = batch
                        .into_par_iter()
                        .map(|record| encode_record(record, plan, self.tokenizer, settings.eos_id))
                        .collect();
                    for outcome in encoded {
                        summary.docs_in += 1;
                        match outcome {
                            Ok(doc) => {
                                summary.docs_packed += 1;
                                summary.text_bytes += doc.text_bytes;
                                summary.tokens += doc.tokens.len() as u64;
                                let key: DocKey = (self.doc_file(doc.file), doc.row);
                                let source = &self.manifest.doc_files[key.0 as usize].source;
                                chunks.append(&doc.tokens, source, key)?;
                            }
                            Err(reject) => {
                                summary.rejected += 1;
                                let mut line = serde_json::to_vec(&reject).expect("serialises");
                                line.push(b'\n');
                                rejects
                                    .write_all(&line)
                                    .map_err(|e| PackError::io(&rejects_path, e))?;
                            }
                        }
                    }
                    let docs = summary.docs_in;
                    progress.update(done_bytes, || {
                        format!("{docs} docs, {} chunks", chunks.written.len())
                    });
                }
                match reader.join() {
                    Ok(result) => result.map(|_| ()).map_err(PackError::from),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            })?;
            done_bytes += input.record.bytes;
        }
        progress.finish();
        rejects
            .flush()
            .map_err(|e| PackError::io(&rejects_path, e))?;
        let (written, padding) = chunks.finish()?;
        summary.padding = padding;
        summary.chunks = written.iter().map(|c| c.file.clone()).collect();
        self.manifest.chunks.extend(written);
        let recorded = unit
            .tombstones
            .iter()
            .chain(unit.shards.iter().map(|(_, f)| f));
        for input in recorded {
            let mut record = input.record.clone();
            record.epoch = epoch;
            self.manifest.inputs.push(record);
        }
        summary.seconds = start.elapsed().as_secs_f64();
        Ok(summary)
    }

    /// The documents a `tombstones.jsonl` takes back, as keys of documents packed here.
    fn read_tombstones(
        &self,
        input: &InputFile,
        summary: &mut PackSummary,
    ) -> Result<HashSet<DocKey>, PackError> {
        let path = &input.path;
        let file = std::fs::File::open(path).map_err(|e| PackError::io(path, e))?;
        let mut gone = HashSet::new();
        for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| PackError::io(path, e))?;
            let bad = |why: &str| PackError::Chunk {
                path: path.clone(),
                reason: format!("line {}: not a tombstone: {why}", number + 1),
            };
            let value: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| bad(&e.to_string()))?;
            let meta = &value["meta"];
            let (Some(file), Some(source), Some(row)) = (
                meta["file"].as_str(),
                meta["source"].as_str(),
                meta["row"].as_u64(),
            ) else {
                return Err(bad("no meta.file, meta.source and meta.row"));
            };
            summary.tombstones += 1;
            let key = DocFile {
                file: file.into(),
                source: source.into(),
            };
            if let Some(&index) = self.doc_files.get(&key) {
                gone.insert((index, row));
            }
        }
        Ok(gone)
    }
}

fn settings_for(tokenizer: &Tokenizer, options: &PackOptions) -> Result<PackSettings, PackError> {
    if options.block_size == 0 || options.chunk_blocks == 0 {
        return Err(PackError::Settings(
            "--block-size and --chunk-blocks must be at least 1".into(),
        ));
    }
    // Document lists address a chunk's tokens with 32 bits.
    let chunk_size = (options.block_size + 1).checked_mul(options.chunk_blocks);
    if chunk_size.is_none_or(|size| size > u32::MAX as u64) {
        return Err(PackError::Settings(format!(
            "a chunk of (--block-size + 1) × --chunk-blocks = ({} + 1) × {} tokens is over 2^32",
            options.block_size, options.chunk_blocks
        )));
    }
    let bytes =
        std::fs::read(&options.tokenizer).map_err(|e| PackError::io(&options.tokenizer, e))?;
    let vocab_size = tokenizer.get_vocab_size(true);
    Ok(PackSettings {
        block_size: options.block_size,
        chunk_blocks: options.chunk_blocks,
        dtype: TokenDtype::for_vocab(vocab_size),
        vocab_size,
        tokenizer_xxh3: xxh3_hex(&bytes),
        eos_id: token_id(tokenizer, &options.eos, &options.tokenizer)?,
        pad_id: token_id(tokenizer, &options.pad, &options.tokenizer)?,
    })
}

/// The directory's manifest (checked against `settings`), or a new empty one. A directory
/// holding files but no manifest is refused: it is not a chunk directory.
fn open_manifest(dir: &Path, settings: &PackSettings) -> Result<Manifest, PackError> {
    match Manifest::load(dir)? {
        Some(manifest) if manifest.settings == *settings => Ok(manifest),
        Some(manifest) => Err(PackError::Manifest {
            path: dir.join(MANIFEST_FILE),
            reason: format!(
                "the directory was packed with other settings ({}); these are {}",
                manifest.settings.differences(settings).join(", "),
                settings.differences(&manifest.settings).join(", ")
            ),
        }),
        None => {
            let foreign = std::fs::read_dir(dir)
                .map_err(|e| PackError::io(dir, e))?
                .filter_map(|e| e.ok())
                .any(|e| e.file_name() != LOCK);
            if foreign {
                return Err(PackError::Settings(format!(
                    "`{}` has files but no {MANIFEST_FILE}; give an empty directory or a chunk directory",
                    dir.display()
                )));
            }
            // Saved before anything else is written, so a pack that fails part-way leaves a
            // chunk directory the next pack takes up, not files it refuses.
            let manifest = Manifest::new(settings.clone());
            manifest.save(dir)?;
            Ok(manifest)
        }
    }
}

/// A document ready to append: its tokens (end token included), where it came from and its
/// text size in bytes.
struct EncodedDoc {
    tokens: Vec<u32>,
    file: DocFile,
    row: u64,
    text_bytes: u64,
}

/// One unified document to its tokens. Its identity is its `meta.file` and `meta.row` (what
/// `steel run`'s tombstones name), or the input file and record row when it has no `meta`.
fn encode_record(
    record: RawRecord,
    plan: &FilePlan,
    tokenizer: &Tokenizer,
    eos_id: u32,
) -> Result<EncodedDoc, RejectRecord> {
    let reject = |error: RecordError, bytes: &[u8]| {
        RejectRecord::new(&plan.display, record.line, record.row, error, bytes)
    };
    let object = record
        .body
        .object()
        .map_err(|e| reject(e, record.body.bytes()))?;
    let head = || serde_json::to_vec(&object).unwrap_or_default();
    let text = str_field(&object, "text").map_err(|e| reject(e, &head()))?;
    if text.is_empty() {
        return Err(reject(
            RecordError::new(RejectCode::EmptyText, "the text is empty"),
            &head(),
        ));
    }
    let meta = object.get("meta");
    let field = |name: &str| meta.and_then(|m| m.get(name));
    let source = match field("source") {
        Some(serde_json::Value::String(source)) => source.clone(),
        _ => String::from("unknown"),
    };
    let (file, row) = match (field("file"), field("row")) {
        (Some(serde_json::Value::String(file)), Some(row)) if row.is_u64() => {
            (file.clone(), row.as_u64().expect("checked"))
        }
        _ => (plan.display.clone(), record.row),
    };
    let encoding = tokenizer.encode_fast(text, false).map_err(|e| {
        reject(
            RecordError::new(RejectCode::ReadError, format!("tokenizer: {e}")),
            &head(),
        )
    })?;
    let mut tokens = encoding.get_ids().to_vec();
    tokens.push(eos_id);
    Ok(EncodedDoc {
        tokens,
        file: DocFile { file, source },
        row,
        text_bytes: text.len() as u64,
    })
}
