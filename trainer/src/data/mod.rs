//! The training data loader: blocks of `B + 1` tokens from memory-mapped `LITPKDS` chunks.
//!
//! - Each chunk directory's blocks are served in a seeded shuffled order per epoch
//!   ([`order`]); data-parallel rank `r` of `W` takes positions `r, r + W, r + 2W, ...` of
//!   it, so ranks see disjoint blocks that together cover the epoch (the last `< W` blocks of
//!   an epoch are dropped so that ranks stay in step).
//! - Several directories mix by weight (Steel's `CombinedDataset`): step `t` draws its
//!   directory from a hash of (seed, t), the same draw on every rank.
//! - [`Loader::state`] is a small serialisable record (seed, step, per directory: epoch,
//!   chunk list, add/exclude events, blocks consumed); [`Loader::resume`] rebuilds exactly
//!   the same future batches from it.
//! - [`Loader::follow`] ([`follow`]) picks up chunks `steel pack` added to a directory and
//!   shuffles their blocks into the unseen remainder of the epoch only, and drops chunks a
//!   retraction took out; [`Loader::exclude_chunks`] drops chunks by name.
//! - Every chunk's xxh3 is checked against the manifest when it is first opened.

pub mod chunks;
pub mod follow;
pub mod order;
pub mod rows;

use chunks::ChunkDir;
use order::{Event, Order, OrderState};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use steel_dataflow::pack::PackError;

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("`{}` is not a chunk directory (no manifest.json); make one with `steel pack`", .0.display())]
    NotAChunkDir(PathBuf),
    #[error(
        "`{}`: block size {block_size} does not fit its chunks: a chunk of {chunk_size} tokens \
         must be a whole number of blocks of block size + 1 tokens",
        dir.display()
    )]
    BlockSize {
        dir: PathBuf,
        block_size: u64,
        chunk_size: u64,
    },
    #[error("`{}` has fewer blocks than data-parallel ranks ({world})", dir.display())]
    TooFewBlocks { dir: PathBuf, world: usize },
    #[error("data changed under the loader: {0}")]
    Changed(String),
    #[error("cannot resume: {0}")]
    StateMismatch(String),
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error("bad data source {0}")]
    Source(String),
    #[error(
        "`{}`: the chunks' tokenizer has {tokens} tokens but the model only {model}; give the \
         model the tokenizer's vocabulary (--tokenizer or --vocab-size)",
        dir.display()
    )]
    Vocabulary {
        dir: PathBuf,
        tokens: usize,
        model: usize,
    },
    #[error(
        "tokenizer mismatch: `{}` was packed with tokenizer xxh3 {found}, but `{}` used \
         tokenizer xxh3 {expected}; pass --allow-tokenizer-mismatch to go on anyway",
        dir.display(),
        reference.display()
    )]
    Tokenizer {
        /// The chunk directory checked.
        dir: PathBuf,
        found: String,
        /// The checkpoint (or the first chunk directory) it is checked against.
        reference: PathBuf,
        expected: String,
    },
}

/// A chunk directory and its share of the mixture.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSource {
    pub dir: PathBuf,
    pub weight: f64,
}

impl std::str::FromStr for DataSource {
    type Err = LoaderError;

    /// `DIR` (weight 1) or `DIR:WEIGHT`. A path that itself contains `:` stays whole: the
    /// text after the last `:` is a weight only if it reads as a number and the whole text
    /// is not an existing path.
    fn from_str(spec: &str) -> Result<Self, LoaderError> {
        let whole = DataSource {
            dir: spec.into(),
            weight: 1.0,
        };
        let Some((dir, weight)) = spec.rsplit_once(':') else {
            return Ok(whole);
        };
        match weight.parse::<f64>() {
            Ok(_) if Path::new(spec).exists() => Ok(whole),
            Ok(weight) if weight.is_finite() && weight > 0.0 && !dir.is_empty() => Ok(DataSource {
                dir: dir.into(),
                weight,
            }),
            Ok(_) => Err(LoaderError::Source(format!(
                "`{spec}`: a mixture weight must be a positive number after DIR:"
            ))),
            Err(_) => Ok(whole),
        }
    }
}

/// In a TOML file a source is the same `DIR` or `DIR:WEIGHT` string as on the command line.
impl<'de> Deserialize<'de> for DataSource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spec = String::deserialize(deserializer)?;
        spec.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoaderState {
    pub seed: u64,
    pub block_size: u64,
    pub world: usize,
    /// Blocks served per rank so far.
    pub step: u64,
    pub sources: Vec<SourceState>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    /// The chunk directory, absolute and canonical (symbolic links resolved), so that the
    /// state names the same directory from any working directory (`steel train --resume`
    /// without `--data` reads it).
    pub dir: String,
    pub weight: f64,
    /// Chunks never to serve again.
    pub excluded: Vec<String>,
    pub order: OrderState,
}

struct Source {
    chunks: ChunkDir,
    /// `chunks.dir` as the state records it (see [`SourceState::dir`]).
    recorded_dir: String,
    weight: f64,
    excluded: Vec<String>,
    order: Order,
}

pub struct Loader {
    seed: u64,
    block_size: u64,
    rank: usize,
    world: usize,
    step: u64,
    sources: Vec<Source>,
}

impl Loader {
    /// A loader at the start of epoch 0 for `rank` of `world` ranks, over the chunks the
    /// directories hold now.
    pub fn open(
        sources: &[DataSource],
        block_size: u64,
        seed: u64,
        rank: usize,
        world: usize,
    ) -> Result<Loader, LoaderError> {
        let epochs = sources
            .iter()
            .map(|s| Ok(ChunkDir::open(&s.dir, block_size)?.manifest.next_epoch()))
            .collect::<Result<Vec<u64>, LoaderError>>()?;
        Loader::open_as_of(sources, block_size, seed, rank, world, &epochs)
    }

    /// [`Loader::open`] over the chunks each directory held before pack epoch `epochs[i]`
    /// (see `follow.rs`): ranks that agreed on `epochs` start from the same chunk lists even
    /// if a `steel pack` lands between their reads.
    pub fn open_as_of(
        sources: &[DataSource],
        block_size: u64,
        seed: u64,
        rank: usize,
        world: usize,
        epochs: &[u64],
    ) -> Result<Loader, LoaderError> {
        let state = LoaderState {
            seed,
            block_size,
            world,
            step: 0,
            sources: sources
                .iter()
                .enumerate()
                .map(|(index, source)| -> Result<SourceState, LoaderError> {
                    let dir = ChunkDir::open(&source.dir, block_size)?;
                    let (live, _) = follow::as_of(&dir.manifest, &source.dir, epochs[index])?;
                    Ok(SourceState {
                        dir: recorded_dir(&source.dir)?,
                        weight: source.weight,
                        excluded: Vec::new(),
                        order: OrderState {
                            seed: source_seed(seed, index),
                            epoch: 0,
                            chunks: live.into_iter().collect(),
                            events: Vec::new(),
                            consumed: 0,
                        },
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        Loader::resume(sources, &state, rank)
    }

    /// Continue exactly where `state` was taken, as `rank` of `state.world`.
    pub fn resume(
        sources: &[DataSource],
        state: &LoaderState,
        rank: usize,
    ) -> Result<Loader, LoaderError> {
        if sources.len() != state.sources.len() {
            return Err(LoaderError::StateMismatch(format!(
                "the state has {} data sources, the configuration {}",
                state.sources.len(),
                sources.len()
            )));
        }
        if rank >= state.world {
            return Err(LoaderError::StateMismatch(format!(
                "rank {rank} of {} ranks",
                state.world
            )));
        }
        let mut opened = Vec::with_capacity(sources.len());
        for (index, (source, saved)) in sources.iter().zip(&state.sources).enumerate() {
            // Chunk names repeat across directories, so another directory (or the same ones
            // in another order) would silently serve other data at the saved positions.
            let dir = recorded_dir(&source.dir)?;
            if dir != saved.dir {
                return Err(LoaderError::StateMismatch(format!(
                    "data source {} is `{dir}`, but the state was saved reading `{}`; give the directories in the order the run started with",
                    index + 1,
                    saved.dir
                )));
            }
            let chunks = ChunkDir::open(&source.dir, state.block_size)?;
            let order = Order::build(saved.order.clone(), chunks.blocks_per_chunk);
            if order.blocks.len() < state.world {
                return Err(LoaderError::TooFewBlocks {
                    dir: source.dir.clone(),
                    world: state.world,
                });
            }
            opened.push(Source {
                recorded_dir: dir,
                chunks,
                weight: source.weight,
                excluded: saved.excluded.clone(),
                order,
            });
        }
        Ok(Loader {
            seed: state.seed,
            block_size: state.block_size,
            rank,
            world: state.world,
            step: state.step,
            sources: opened,
        })
    }

    pub fn state(&self) -> LoaderState {
        LoaderState {
            seed: self.seed,
            block_size: self.block_size,
            world: self.world,
            step: self.step,
            sources: self
                .sources
                .iter()
                .map(|s| SourceState {
                    dir: s.recorded_dir.clone(),
                    weight: s.weight,
                    excluded: s.excluded.clone(),
                    order: s.order.state.clone(),
                })
                .collect(),
        }
    }

    /// Blocks in the current epoch's order of the first source (all ranks together).
    pub fn blocks_in_epoch(&self) -> usize {
        self.sources[0].order.blocks.len()
    }

    /// This rank's next block of `block_size + 1` tokens.
    pub fn next_block(&mut self) -> Result<Vec<u32>, LoaderError> {
        let index = self.pick_source();
        let (world, rank) = (self.world, self.rank);
        let source = &mut self.sources[index];
        if source.order.state.consumed as usize + world > source.order.blocks.len() {
            source.start_next_epoch(world)?;
        }
        let position = source.order.state.consumed as usize + rank;
        let (file, block) = source.order.blocks[position].clone();
        source.order.state.consumed += world as u64;
        self.step += 1;
        source.chunks.block(&file, block, self.block_size)
    }

    /// Which source step `self.step` draws from: a weighted choice from a hash of
    /// (seed, step), identical on every rank.
    fn pick_source(&self) -> usize {
        if self.sources.len() == 1 {
            return 0;
        }
        let key = [self.seed, self.step].map(u64::to_le_bytes).concat();
        let unit = (xxhash_rust::xxh3::xxh3_64(&key) >> 11) as f64 / (1u64 << 53) as f64;
        let total: f64 = self.sources.iter().map(|s| s.weight).sum();
        let mut threshold = unit * total;
        for (index, source) in self.sources.iter().enumerate() {
            if threshold < source.weight {
                return index;
            }
            threshold -= source.weight;
        }
        self.sources.len() - 1
    }

    /// Never serve these chunks of source `index` again (from now on; blocks already served
    /// stay served).
    pub fn exclude_chunks(&mut self, index: usize, files: &[String]) {
        let source = &mut self.sources[index];
        source.excluded.extend(files.iter().cloned());
        let consumed = source.order.state.consumed;
        source.order.state.events.push(Event::Exclude {
            consumed,
            chunks: files.to_vec(),
        });
        source.rebuild();
    }
}

impl Source {
    fn known_chunks(&self) -> Vec<String> {
        let mut known = self.order.state.chunks.clone();
        for event in &self.order.state.events {
            if let Event::Add { chunks, .. } = event {
                known.extend(chunks.iter().cloned());
            }
        }
        known
    }

    fn rebuild(&mut self) {
        let state = self.order.state.clone();
        self.order = Order::build(state, self.chunks.blocks_per_chunk);
    }

    fn start_next_epoch(&mut self, world: usize) -> Result<(), LoaderError> {
        // From the state alone (not the manifest, which ranks may read at different times).
        let excluded: std::collections::HashSet<&String> = self.excluded.iter().collect();
        let chunks: Vec<String> = self
            .known_chunks()
            .into_iter()
            .filter(|f| !excluded.contains(f))
            .collect();
        let state = OrderState {
            seed: self.order.state.seed,
            epoch: self.order.state.epoch + 1,
            chunks,
            events: Vec::new(),
            consumed: 0,
        };
        self.order = Order::build(state, self.chunks.blocks_per_chunk);
        if self.order.blocks.len() < world {
            return Err(LoaderError::TooFewBlocks {
                dir: self.chunks.dir.clone(),
                world,
            });
        }
        Ok(())
    }
}

/// A chunk directory as loader states record it: absolute and canonical.
fn recorded_dir(dir: &Path) -> Result<String, LoaderError> {
    std::fs::canonicalize(dir)
        .map(|path| path.display().to_string())
        .map_err(|e| LoaderError::Io {
            path: dir.to_path_buf(),
            source: e,
        })
}

fn source_seed(seed: u64, index: usize) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&[seed.to_le_bytes(), (index as u64).to_le_bytes()].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(spec: &str) -> Result<(PathBuf, f64), String> {
        spec.parse::<DataSource>()
            .map(|s| (s.dir, s.weight))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_source_is_a_directory_with_an_optional_weight() {
        assert_eq!(source("chunks"), Ok(("chunks".into(), 1.0)));
        assert_eq!(source("/data/web:0.25"), Ok(("/data/web".into(), 0.25)));
        // The text after the last `:` is a weight only if it is a number.
        assert_eq!(
            source("/runs/2026:12/chunks"),
            Ok(("/runs/2026:12/chunks".into(), 1.0))
        );
        assert_eq!(source("a:b:2"), Ok(("a:b".into(), 2.0)));
        for bad in ["web:0", "web:-1", "web:inf", ":3"] {
            let error = source(bad).unwrap_err();
            assert!(error.contains("positive number"), "{bad}: {error}");
        }
    }

    #[test]
    fn an_existing_directory_named_like_a_weight_stays_whole() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("chunks:3");
        std::fs::create_dir(&odd).unwrap();
        let spec = odd.display().to_string();
        assert_eq!(source(&spec), Ok((odd, 1.0)));
    }
}
