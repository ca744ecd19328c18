//! The order in which one chunk directory's blocks are served within an epoch.
//!
//! An epoch's order is a seeded shuffle of every block of the directory's chunks. Adding
//! chunks mid-epoch reshuffles only the not-yet-served remainder together with the new
//! blocks; excluding chunks removes their blocks from the remainder. Both are recorded as
//! events, so the whole order is rebuilt exactly from (seed, epoch, chunk list, events): that
//! small record is what a checkpoint stores.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// (chunk file, block index within the chunk)
pub type BlockId = (String, u64);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// At `consumed` blocks into the epoch, these chunks joined.
    Add { consumed: u64, chunks: Vec<String> },
    /// At `consumed` blocks into the epoch, these chunks were excluded (e.g. they hold
    /// retracted documents).
    Exclude { consumed: u64, chunks: Vec<String> },
}

/// Everything needed to rebuild an epoch's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    pub seed: u64,
    pub epoch: u64,
    /// Chunks at the start of the epoch, in manifest order.
    pub chunks: Vec<String>,
    pub events: Vec<Event>,
    /// Blocks served so far this epoch (all ranks together).
    pub consumed: u64,
}

/// The materialised order of an epoch.
pub struct Order {
    pub state: OrderState,
    pub blocks: Vec<BlockId>,
}

impl Order {
    pub fn build(state: OrderState, blocks_per_chunk: u64) -> Order {
        let expand = |chunks: &[String]| -> Vec<BlockId> {
            chunks
                .iter()
                .flat_map(|c| (0..blocks_per_chunk).map(move |b| (c.clone(), b)))
                .collect()
        };
        let mut blocks = expand(&state.chunks);
        shuffle(&mut blocks, state.seed, state.epoch, 0);
        for (generation, event) in state.events.iter().enumerate() {
            match event {
                Event::Add { consumed, chunks } => {
                    let at = (*consumed as usize).min(blocks.len());
                    blocks.extend(expand(chunks));
                    shuffle(
                        &mut blocks[at..],
                        state.seed,
                        state.epoch,
                        generation as u64 + 1,
                    );
                }
                Event::Exclude { consumed, chunks } => {
                    let at = (*consumed as usize).min(blocks.len());
                    let mut rest = blocks.split_off(at);
                    let gone: std::collections::HashSet<&String> = chunks.iter().collect();
                    rest.retain(|(chunk, _)| !gone.contains(chunk));
                    blocks.extend(rest);
                }
            }
        }
        Order { state, blocks }
    }
}

/// A seeded Fisher-Yates shuffle; `generation` separates the reshuffles of one epoch.
fn shuffle(blocks: &mut [BlockId], seed: u64, epoch: u64, generation: u64) {
    let key = [seed, epoch, generation].map(u64::to_le_bytes).concat();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(xxhash_rust::xxh3::xxh3_64(&key));
    for i in (1..blocks.len()).rev() {
        let j = rng.random_range(0..=i);
        blocks.swap(i, j);
    }
}
