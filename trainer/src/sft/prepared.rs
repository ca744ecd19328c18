//! SFT rows prepared once, on disk, so a run (and its resumption) reads exactly the same rows.
//!
//! A prepared directory holds:
//!
//! - `rows.bin`: the rows, row after row, `row_len` little-endian `u32` words each (the
//!   layout of [`crate::sft::rows`]: id in bits 0–29, bit 30 a document start, bit 31 a
//!   prediction of weight 1; the target is the next id in the document, else the pad id):
//!   `rows × row_len × 4` bytes, a quarter of `ids`, `targets`, `weights` and `doc_start` at
//!   4 bytes each;
//! - `skipped.jsonl`: every input line that gave no example, with its file, line, kind and
//!   reason;
//! - `manifest.json`: the format and its version, the sources (size and xxh3-64), the
//!   tokenizer's xxh3-64, the options, the pad id, the row length and count, the size and
//!   xxh3-64 of `rows.bin`, and the [`Report`].
//!
//! Each file is written under a temporary name, synced and renamed, the manifest last: a
//! directory with a manifest is complete, one without is rebuilt. Rows are in plan order
//! (input order unpacked, packing order packed): a trainer draws them in its own seeded order.
//! Preparing uses memory for a few numbers per example (its length and place, the plan), not
//! for its tokens: they go to a temporary file `examples.tmp` in the directory until the rows
//! are written. Reading maps `rows.bin`; a row is decoded when it is asked for.

use crate::batch::Batch;
use crate::infer::tokenizer::Tokenizer;
use crate::sft::SftOptions;
use crate::sft::error::SftError;
use crate::sft::example::{Outcome, Template, check_options, read_file};
use crate::sft::report::{ReadReport, Report, RowReport, Skipped, skipped_summary};
use crate::sft::rows::{Plan, RowLayout, token_words};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const ROWS_FILE: &str = "rows.bin";
pub const SKIPPED_FILE: &str = "skipped.jsonl";
const EXAMPLES_FILE: &str = "examples.tmp";
/// What `manifest.json`'s `format` says.
pub const FORMAT: &str = "steel-sft-rows";
/// The version of the layout and manifest this build writes and reads.
pub const VERSION: u32 = 1;

/// An input file as prepared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// As given (a source is matched by its content, not its path).
    pub path: String,
    pub bytes: u64,
    /// xxh3-64 of its bytes, hex.
    pub xxh3: String,
}

/// `manifest.json` of a prepared directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub sources: Vec<SourceFile>,
    /// xxh3-64 of the tokenizer file, hex.
    pub tokenizer_xxh3: String,
    pub options: SftOptions,
    /// The padding id (`<|endoftext|>`), the target where nothing is predicted.
    pub pad_id: u32,
    /// Positions per row (the cutoff).
    pub row_len: u64,
    pub rows: u64,
    /// Size and xxh3-64 (hex) of `rows.bin`.
    pub rows_bytes: u64,
    pub rows_xxh3: String,
    pub report: Report,
}

impl Manifest {
    /// What differs between this preparation and one asked of `sources`, a tokenizer of
    /// `tokenizer_xxh3` and `options`, in words; empty when they match.
    pub fn differences(
        &self,
        sources: &[SourceFile],
        tokenizer_xxh3: &str,
        options: &SftOptions,
    ) -> Vec<String> {
        let mut out = Vec::new();
        if self.sources.len() != sources.len() {
            out.push(format!(
                "sources: asked {} files, prepared from {}",
                sources.len(),
                self.sources.len()
            ));
        } else {
            for (i, (asked, had)) in sources.iter().zip(&self.sources).enumerate() {
                if (asked.bytes, &asked.xxh3) != (had.bytes, &had.xxh3) {
                    out.push(format!(
                        "source {}: asked `{}` ({} bytes, xxh3 {}), prepared from `{}` ({} \
                         bytes, xxh3 {})",
                        i + 1,
                        asked.path,
                        asked.bytes,
                        asked.xxh3,
                        had.path,
                        had.bytes,
                        had.xxh3
                    ));
                }
            }
        }
        if self.tokenizer_xxh3 != tokenizer_xxh3 {
            out.push(format!(
                "tokenizer: asked xxh3 {tokenizer_xxh3}, prepared with xxh3 {}",
                self.tokenizer_xxh3
            ));
        }
        let (asked, had) = (options, &self.options);
        let mut option = |name: &str, asked: String, had: String| {
            if asked != had {
                out.push(format!("{name}: asked {asked}, prepared with {had}"));
            }
        };
        option("cutoff", asked.cutoff.to_string(), had.cutoff.to_string());
        option(
            "packing",
            asked.packing.to_string(),
            had.packing.to_string(),
        );
        option(
            "train on prompt",
            asked.train_on_prompt.to_string(),
            had.train_on_prompt.to_string(),
        );
        option(
            "last turn only",
            asked.last_turn_only.to_string(),
            had.last_turn_only.to_string(),
        );
        out
    }
}

/// A prepared directory, open for reading rows.
pub struct Prepared {
    dir: PathBuf,
    manifest: Manifest,
    rows: Option<Mmap>,
    layout: RowLayout,
}

impl Prepared {
    /// The rows of the conversations in `sources` (JSONL files, in order) tokenized with
    /// `tokenizer`, in `dir`: prepared there now, or — when `dir` already holds a preparation
    /// of the same sources (by content), tokenizer and options — that one, checked. A
    /// preparation of anything else is an error saying what differs.
    pub fn prepare(
        sources: &[PathBuf],
        tokenizer: &Path,
        options: &SftOptions,
        dir: &Path,
    ) -> Result<Prepared, SftError> {
        check_options(options)?;
        if sources.is_empty() {
            return Err(SftError::Setup("no sources to prepare".into()));
        }
        let tokenizer = Tokenizer::load(tokenizer)?;
        if dir.join(MANIFEST_FILE).exists() {
            let manifest = read_manifest(dir)?;
            let asked: Vec<SourceFile> = sources
                .iter()
                .map(|path| fingerprint(path))
                .collect::<Result<_, _>>()?;
            let differences = manifest.differences(&asked, &tokenizer.xxh3, options);
            if !differences.is_empty() {
                return Err(SftError::Mismatch {
                    dir: dir.to_path_buf(),
                    differences,
                });
            }
            return Prepared::open(dir);
        }
        build(sources, &tokenizer, options, dir)
    }

    /// The preparation in `dir`, its manifest read and `rows.bin` checked against it (size
    /// and xxh3-64: the whole file is read once).
    pub fn open(dir: &Path) -> Result<Prepared, SftError> {
        let manifest = read_manifest(dir)?;
        let path = dir.join(ROWS_FILE);
        let expected = manifest
            .rows
            .checked_mul(manifest.row_len)
            .and_then(|n| n.checked_mul(4));
        let Some(expected) = expected.filter(|&n| n == manifest.rows_bytes) else {
            return Err(SftError::Corrupt {
                path: dir.join(MANIFEST_FILE),
                reason: format!(
                    "records {} rows of {} positions but {} bytes of rows",
                    manifest.rows, manifest.row_len, manifest.rows_bytes
                ),
            });
        };
        let file = std::fs::File::open(&path).map_err(|e| SftError::io(&path, e))?;
        let size = file.metadata().map_err(|e| SftError::io(&path, e))?.len();
        if size != expected {
            return Err(SftError::Corrupt {
                path,
                reason: format!("is {size} bytes; the manifest records {expected}"),
            });
        }
        let rows = if size == 0 {
            None
        } else {
            // SAFETY: rows.bin is written once (temporary file, then rename) and never
            // modified; the hash check below catches a file changed before it was mapped.
            Some(unsafe { Mmap::map(&file) }.map_err(|e| SftError::io(&path, e))?)
        };
        let hash = format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(rows.as_deref().unwrap_or(&[]))
        );
        if hash != manifest.rows_xxh3 {
            return Err(SftError::Corrupt {
                path,
                reason: format!(
                    "has xxh3 {hash}; the manifest records {}: the rows changed after they \
                     were prepared",
                    manifest.rows_xxh3
                ),
            });
        }
        let layout = RowLayout {
            row_len: manifest.row_len as usize,
            pad: manifest.pad_id,
        };
        Ok(Prepared {
            dir: dir.to_path_buf(),
            manifest,
            rows,
            layout,
        })
    }

    pub fn rows(&self) -> usize {
        self.manifest.rows as usize
    }

    /// Positions per row (the cutoff).
    pub fn row_len(&self) -> usize {
        self.layout.row_len
    }

    pub fn pad_id(&self) -> u32 {
        self.layout.pad
    }

    pub fn report(&self) -> &Report {
        &self.manifest.report
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `skipped.jsonl`: the lines that gave no example.
    pub fn skipped_path(&self) -> PathBuf {
        self.dir.join(SKIPPED_FILE)
    }

    /// The words of row `index` (see [`crate::sft::rows`]).
    pub fn row_words(&self, index: usize) -> Result<Vec<u32>, SftError> {
        if index >= self.rows() {
            return Err(SftError::Setup(format!(
                "row {index} asked of `{}`, which has {} rows",
                self.dir.display(),
                self.rows()
            )));
        }
        let bytes = self.rows.as_deref().unwrap_or(&[]);
        let width = self.row_len() * 4;
        let row = &bytes[index * width..(index + 1) * width];
        Ok(row
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// Append row `index` to `batch`, whose rows must be of [`Prepared::row_len`] positions.
    pub fn push_row(&self, index: usize, batch: &mut Batch) -> Result<(), SftError> {
        if batch.t != self.row_len() {
            return Err(SftError::Setup(format!(
                "rows of `{}` have {} positions; the batch has rows of {}",
                self.dir.display(),
                self.row_len(),
                batch.t
            )));
        }
        let words = self.row_words(index)?;
        self.layout.push(&words, batch);
        Ok(())
    }
}

/// The manifest of the preparation in `dir` alone, `rows.bin` not read (what a check of its
/// tokenizer or options needs; [`Prepared::open`] verifies the rows too).
pub fn read_manifest(dir: &Path) -> Result<Manifest, SftError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|e| SftError::io(&path, e))?;
    #[derive(Deserialize)]
    struct Header {
        format: Option<String>,
        version: Option<u32>,
    }
    let not_ours = |reason: String| SftError::Corrupt {
        path: path.clone(),
        reason: format!("not a prepared SFT manifest: {reason}"),
    };
    let header: Header = serde_json::from_slice(&bytes).map_err(|e| not_ours(e.to_string()))?;
    if header.format.as_deref() != Some(FORMAT) {
        return Err(not_ours(format!("its format is {:?}", header.format)));
    }
    if header.version != Some(VERSION) {
        return Err(SftError::Mismatch {
            dir: dir.to_path_buf(),
            differences: vec![format!(
                "format version: this build reads {VERSION}, the directory has {:?}",
                header.version
            )],
        });
    }
    let mut manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| not_ours(e.to_string()))?;
    // The utilisation again from the counts: a float read back from JSON may differ from
    // the one written in its last bit.
    let rows = &manifest.report.rows;
    manifest.report.rows = RowReport::new(
        rows.rows,
        rows.row_len,
        rows.positions.saturating_sub(rows.padding),
    );
    Ok(manifest)
}

/// `path`'s size and xxh3-64, read through once.
fn fingerprint(path: &Path) -> Result<SourceFile, SftError> {
    let mut file = std::fs::File::open(path).map_err(|e| SftError::io(path, e))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0;
    loop {
        let n = file.read(&mut buffer).map_err(|e| SftError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok(SourceFile {
        path: path.display().to_string(),
        bytes,
        xxh3: format!("{:016x}", hasher.digest()),
    })
}

/// A file written under `name.tmp` in `dir`, synced and renamed to `name` by `finish`.
struct Staged {
    temporary: PathBuf,
    path: PathBuf,
    writer: std::io::BufWriter<std::fs::File>,
}

impl Staged {
    fn create(dir: &Path, name: &str) -> Result<Staged, SftError> {
        let temporary = dir.join(format!("{name}.tmp"));
        let file = std::fs::File::create(&temporary).map_err(|e| SftError::io(&temporary, e))?;
        Ok(Staged {
            path: dir.join(name),
            writer: std::io::BufWriter::with_capacity(1 << 20, file),
            temporary,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), SftError> {
        self.writer
            .write_all(bytes)
            .map_err(|e| SftError::io(&self.temporary, e))
    }

    fn finish(self) -> Result<(), SftError> {
        let file = self
            .writer
            .into_inner()
            .map_err(|e| SftError::io(&self.temporary, e.into_error()))?;
        file.sync_all()
            .map_err(|e| SftError::io(&self.temporary, e))?;
        std::fs::rename(&self.temporary, &self.path).map_err(|e| SftError::io(&self.path, e))
    }
}

/// Prepare `dir` from scratch.
fn build(
    sources: &[PathBuf],
    tokenizer: &Tokenizer,
    options: &SftOptions,
    dir: &Path,
) -> Result<Prepared, SftError> {
    let template = Template::new(tokenizer)?;
    std::fs::create_dir_all(dir).map_err(|e| SftError::io(dir, e))?;
    let spill_path = dir.join(EXAMPLES_FILE);
    let result = build_rows_file(sources, tokenizer, &template, options, dir, &spill_path);
    // The examples' tokens are in rows.bin now, or the preparation failed: then nothing it
    // began is left behind either.
    let _ = std::fs::remove_file(&spill_path);
    if result.is_err() {
        for name in [ROWS_FILE, SKIPPED_FILE] {
            let _ = std::fs::remove_file(dir.join(format!("{name}.tmp")));
        }
    }
    let manifest = result?;
    let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest always serialises");
    let mut staged = Staged::create(dir, MANIFEST_FILE)?;
    staged.write(&bytes)?;
    staged.finish()?;
    // The renames durable before the directory is trusted.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SftError::io(dir, e))?;
    Prepared::open(dir)
}

/// Read the sources into the spill file and `skipped.jsonl`, lay the rows out into
/// `rows.bin`; the manifest that records them.
fn build_rows_file(
    sources: &[PathBuf],
    tokenizer: &Tokenizer,
    template: &Template,
    options: &SftOptions,
    dir: &Path,
    spill_path: &Path,
) -> Result<Manifest, SftError> {
    let spill_file = std::fs::File::create(spill_path).map_err(|e| SftError::io(spill_path, e))?;
    let mut spill = std::io::BufWriter::with_capacity(1 << 20, spill_file);
    let mut skipped_file = Staged::create(dir, SKIPPED_FILE)?;
    let mut read = ReadReport::default();
    // Tokens of each kept example, in order; the first line set aside (for an error).
    let mut lengths: Vec<u32> = Vec::new();
    let mut first_skipped: Option<Skipped> = None;
    let mut files = Vec::with_capacity(sources.len());
    for source in sources {
        let counts = read_file(source, template, options, &mut read, &mut |outcome| {
            match outcome {
                Outcome::Kept(example, _) => {
                    let words: Vec<u8> = token_words(&example)
                        .iter()
                        .flat_map(|w| w.to_le_bytes())
                        .collect();
                    spill
                        .write_all(&words)
                        .map_err(|e| SftError::io(spill_path, e))?;
                    lengths.push(example.len() as u32);
                }
                Outcome::Skipped(skipped) => {
                    let mut line = serde_json::to_vec(&skipped).expect("serialises");
                    line.push(b'\n');
                    skipped_file.write(&line)?;
                    first_skipped.get_or_insert(skipped);
                }
            }
            Ok(())
        })?;
        files.push(SourceFile {
            path: source.display().to_string(),
            bytes: counts.bytes,
            xxh3: counts.xxh3,
        });
    }
    if lengths.is_empty() {
        return Err(SftError::NothingUsable {
            reason: skipped_summary(&read, first_skipped.as_ref()),
        });
    }
    let spill_file = spill
        .into_inner()
        .map_err(|e| SftError::io(spill_path, e.into_error()))?;
    drop(spill_file);
    let spill_file = std::fs::File::open(spill_path).map_err(|e| SftError::io(spill_path, e))?;
    // SAFETY: the spill file is ours, written above and removed after the rows are written.
    let spill = unsafe { Mmap::map(&spill_file) }.map_err(|e| SftError::io(spill_path, e))?;
    // Each example's first token in the spill file.
    let mut starts = Vec::with_capacity(lengths.len());
    let mut total = 0u64;
    for &n in &lengths {
        starts.push(total);
        total += n as u64;
    }
    let example_words = |e: u32| -> Vec<u32> {
        let (start, n) = (starts[e as usize] as usize, lengths[e as usize] as usize);
        spill[start * 4..(start + n) * 4]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };

    let plan = Plan::new(&lengths, options.cutoff, options.packing);
    let layout = RowLayout {
        row_len: options.cutoff,
        pad: template.pad,
    };
    let mut rows_file = Staged::create(dir, ROWS_FILE)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut row = vec![0u32; layout.row_len];
    let mut bytes = Vec::with_capacity(layout.row_len * 4);
    for r in 0..plan.rows() {
        let members: Vec<Vec<u32>> = plan.row(r).iter().map(|&e| example_words(e)).collect();
        let slices: Vec<&[u32]> = members.iter().map(Vec::as_slice).collect();
        layout.fill(&mut row, &slices);
        bytes.clear();
        bytes.extend(row.iter().flat_map(|w| w.to_le_bytes()));
        hasher.update(&bytes);
        rows_file.write(&bytes)?;
    }
    rows_file.finish()?;
    skipped_file.finish()?;
    let rows = plan.rows() as u64;
    let row_len = layout.row_len as u64;
    Ok(Manifest {
        format: FORMAT.into(),
        version: VERSION,
        sources: files,
        tokenizer_xxh3: tokenizer.xxh3.clone(),
        options: *options,
        pad_id: template.pad,
        row_len,
        rows,
        rows_bytes: rows * row_len * 4,
        rows_xxh3: format!("{:016x}", hasher.digest()),
        report: Report {
            rows: RowReport::new(rows, row_len, read.tokens),
            read,
        },
    })
}
