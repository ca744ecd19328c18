//! `steel pack`: unified documents to `LITPKDS` chunks.
//!
//! Each document's text plus the end token becomes tokens; tokens run on from one document
//! to the next, filling chunks of `(B + 1) * K` tokens; the last chunk's tail is padding.
//! Documents are tokenised in parallel batches and appended in input order, so the chunks are
//! the same bytes for any thread count. Packing into a directory that already has a manifest
//! adds a new epoch of chunks and never rewrites an existing one.

use crate::convert::{FilePlan, plan_files};
use crate::input::read::read_file;
use crate::input::{BatchLimits, RawRecord};
use crate::pack::PackError;
use crate::pack::litpkds::{TokenDtype, encode_chunk};
use crate::pack::manifest::{ChunkEntry, MANIFEST_FILE, Manifest, PackSettings, xxh3_hex};
use crate::pack::tokenizer::{load, token_id};
use crate::progress::Progress;
use crate::reject::{RecordError, RejectCode, RejectRecord};
use crate::sources::fields::str_field;
use crate::sources::{Format, FormatChoice};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
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
    /// The epoch the new chunks belong to; default: one past the directory's last.
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

#[derive(Clone, Debug, Serialize)]
pub struct PackSummary {
    pub epoch: u64,
    pub docs_in: u64,
    pub docs_packed: u64,
    pub rejected: u64,
    /// Document tokens written (end tokens included, padding not).
    pub tokens: u64,
    pub padding: u64,
    pub chunks: Vec<String>,
    pub bytes_in: u64,
    pub text_bytes: u64,
    pub rejects_file: String,
    pub manifest: String,
    pub seconds: f64,
}

/// Pack the documents of `inputs` (unified JSONL or parquet shards from `steel convert`).
pub fn pack(inputs: &[String], options: &PackOptions) -> Result<PackSummary, PackError> {
    let start = Instant::now();
    let tokenizer = load(&options.tokenizer)?;
    let settings = settings_for(&tokenizer, options)?;
    let (plans, _) = plan_files(inputs, FormatChoice::Fixed(Format::Text))?;
    std::fs::create_dir_all(&options.output).map_err(|e| PackError::io(&options.output, e))?;
    let mut manifest = open_manifest(&options.output, &settings)?;
    let epoch = options.epoch.unwrap_or_else(|| manifest.next_epoch());
    if manifest.chunks.iter().any(|c| c.epoch >= epoch) {
        return Err(PackError::Settings(format!(
            "epoch {epoch} is not after the directory's last epoch {}; chunks are never rewritten",
            manifest.next_epoch().saturating_sub(1)
        )));
    }

    let rejects_path = options.output.join(format!("_rejects-e{epoch:04}.jsonl"));
    let rejects_file =
        std::fs::File::create(&rejects_path).map_err(|e| PackError::io(&rejects_path, e))?;
    let mut chunks = ChunkWriter::new(&options.output, settings.clone(), epoch);
    let mut rejects = std::io::BufWriter::new(rejects_file);
    let mut summary = PackSummary {
        epoch,
        docs_in: 0,
        docs_packed: 0,
        rejected: 0,
        tokens: 0,
        padding: 0,
        chunks: Vec::new(),
        bytes_in: plans
            .iter()
            .map(|p| std::fs::metadata(&p.path).map_or(0, |m| m.len()))
            .sum(),
        text_bytes: 0,
        rejects_file: rejects_path.display().to_string(),
        manifest: options.output.join(MANIFEST_FILE).display().to_string(),
        seconds: 0.0,
    };
    let mut progress = Progress::new("pack", summary.bytes_in, options.progress);
    let mut done_bytes = 0u64;
    for plan in &plans {
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
                    .map(|record| encode_record(record, plan, &tokenizer, settings.eos_id))
                    .collect();
                for outcome in encoded {
                    summary.docs_in += 1;
                    match outcome {
                        Ok((tokens, source, text_bytes)) => {
                            summary.docs_packed += 1;
                            summary.text_bytes += text_bytes;
                            summary.tokens += tokens.len() as u64;
                            chunks.append(&tokens, &source)?;
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
        done_bytes += std::fs::metadata(&plan.path).map_or(0, |m| m.len());
    }
    progress.finish();
    rejects
        .flush()
        .map_err(|e| PackError::io(&rejects_path, e))?;
    let (written, padding) = chunks.finish()?;
    summary.padding = padding;
    summary.chunks = written.iter().map(|c| c.file.clone()).collect();
    manifest.chunks.extend(written);
    manifest.save(&options.output)?;
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

fn settings_for(tokenizer: &Tokenizer, options: &PackOptions) -> Result<PackSettings, PackError> {
    if options.block_size == 0 || options.chunk_blocks == 0 {
        return Err(PackError::Settings(
            "--block-size and --chunk-blocks must be at least 1".into(),
        ));
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
                "the directory was packed with other settings ({:?}); these are {:?}",
                manifest.settings, settings
            ),
        }),
        None => {
            let mut entries = std::fs::read_dir(dir).map_err(|e| PackError::io(dir, e))?;
            if entries.next().is_some() {
                return Err(PackError::Settings(format!(
                    "`{}` has files but no {MANIFEST_FILE}; give an empty directory or a chunk directory",
                    dir.display()
                )));
            }
            Ok(Manifest {
                settings: settings.clone(),
                chunks: Vec::new(),
            })
        }
    }
}

/// A document's tokens (end token included), its source and its text size in bytes.
type EncodedDoc = (Vec<u32>, String, u64);

/// One unified document to its tokens.
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
    let source = match object.get("meta").and_then(|m| m.get("source")) {
        Some(serde_json::Value::String(source)) => source.clone(),
        _ => String::from("unknown"),
    };
    let encoding = tokenizer.encode_fast(text, false).map_err(|e| {
        reject(
            RecordError::new(RejectCode::ReadError, format!("tokenizer: {e}")),
            &head(),
        )
    })?;
    let mut ids = encoding.get_ids().to_vec();
    ids.push(eos_id);
    Ok((ids, source, text.len() as u64))
}

/// Fills chunks of `chunk_size` tokens and writes each when full.
struct ChunkWriter {
    dir: PathBuf,
    settings: PackSettings,
    epoch: u64,
    tokens: Vec<u32>,
    sources: BTreeMap<String, u64>,
    written: Vec<ChunkEntry>,
}

impl ChunkWriter {
    fn new(dir: &Path, settings: PackSettings, epoch: u64) -> Self {
        let capacity = settings.chunk_size() as usize;
        ChunkWriter {
            dir: dir.to_path_buf(),
            settings,
            epoch,
            tokens: Vec::with_capacity(capacity),
            sources: BTreeMap::new(),
            written: Vec::new(),
        }
    }

    fn append(&mut self, mut tokens: &[u32], source: &str) -> Result<(), PackError> {
        let chunk_size = self.settings.chunk_size() as usize;
        while !tokens.is_empty() {
            let room = chunk_size - self.tokens.len();
            let take = room.min(tokens.len());
            self.tokens.extend_from_slice(&tokens[..take]);
            *self.sources.entry(source.to_string()).or_default() += take as u64;
            tokens = &tokens[take..];
            if self.tokens.len() == chunk_size {
                self.write_chunk(0)?;
            }
        }
        Ok(())
    }

    /// Write the current chunk, `padding` pad tokens at its end included.
    fn write_chunk(&mut self, padding: usize) -> Result<(), PackError> {
        let real = self.tokens.len() - padding;
        let name = format!("chunk_e{:04}_{:010}.bin", self.epoch, self.written.len());
        let path = self.dir.join(&name);
        let bytes = encode_chunk(&self.tokens, self.settings.dtype);
        let temporary = self.dir.join(format!("{name}.tmp"));
        std::fs::write(&temporary, &bytes)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|e| PackError::io(&path, e))?;
        self.written.push(ChunkEntry {
            file: name,
            tokens: real as u64,
            padding: padding as u64,
            xxh3: xxh3_hex(&bytes),
            epoch: self.epoch,
            sources: std::mem::take(&mut self.sources),
        });
        self.tokens.clear();
        Ok(())
    }

    /// Pad and write the last, partial chunk; the chunks written and the padding used.
    fn finish(mut self) -> Result<(Vec<ChunkEntry>, u64), PackError> {
        let mut padding = 0;
        if !self.tokens.is_empty() {
            padding = self.settings.chunk_size() as usize - self.tokens.len();
            self.tokens
                .resize(self.settings.chunk_size() as usize, self.settings.pad_id);
            self.write_chunk(padding)?;
        }
        Ok((self.written, padding as u64))
    }
}
