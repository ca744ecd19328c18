//! Prepared SFT rows (`sft::Prepared`) served to the ranks of a run: epoch after epoch, each
//! epoch a seeded shuffle of every row. The rows served so far are counted over all ranks
//! (`served`), so a run resumes exactly, with any number of ranks: the `k`-th row this step
//! gives rank `r` of `world` is global row `served + k · world + r`.

use crate::batch::Batch;
use crate::error::TrainError;
use crate::sft::Prepared;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the SFT rows of a run stand, as a checkpoint records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowsState {
    /// The prepared directory, absolute.
    pub dir: String,
    /// xxh3 of its rows file: a resumed run must read the same rows.
    pub rows_xxh3: String,
    pub seed: u64,
    /// Rows served so far, all ranks together.
    pub served: u64,
}

pub struct RowFeed {
    prepared: Prepared,
    dir: PathBuf,
    seed: u64,
    rank: usize,
    world: usize,
    served: u64,
    /// The epoch whose order is `order`.
    epoch: u64,
    order: Vec<u32>,
}

impl RowFeed {
    /// A feed at the first row of epoch 0.
    pub fn open(dir: &Path, seed: u64, rank: usize, world: usize) -> Result<RowFeed, TrainError> {
        let prepared = Prepared::open(dir)?;
        let state = RowsState {
            dir: absolute(dir)?,
            rows_xxh3: prepared.manifest().rows_xxh3.as_str().to_string(),
            seed,
            served: 0,
        };
        RowFeed::from_state(prepared, &state, rank, world)
    }

    /// Continue where `state` was taken, as `rank` of `world` ranks: refused if `dir` no
    /// longer holds the rows the state was saved reading.
    pub fn resume(
        dir: &Path,
        state: &RowsState,
        rank: usize,
        world: usize,
    ) -> Result<RowFeed, TrainError> {
        let prepared = Prepared::open(dir)?;
        if prepared.manifest().rows_xxh3.as_str() != state.rows_xxh3 {
            return Err(TrainError::Data(format!(
                "`{}` holds other SFT rows (xxh3 {}) than the run was trained on ({}); \
                 resume with the data it started with, or start a new run",
                dir.display(),
                prepared.manifest().rows_xxh3.as_str(),
                state.rows_xxh3
            )));
        }
        RowFeed::from_state(prepared, state, rank, world)
    }

    fn from_state(
        prepared: Prepared,
        state: &RowsState,
        rank: usize,
        world: usize,
    ) -> Result<RowFeed, TrainError> {
        if prepared.rows() < world {
            return Err(TrainError::Data(format!(
                "`{}` has {} SFT rows, fewer than the {world} ranks",
                state.dir,
                prepared.rows()
            )));
        }
        let order = shuffled(prepared.rows(), state.seed, 0);
        Ok(RowFeed {
            prepared,
            dir: PathBuf::from(&state.dir),
            seed: state.seed,
            rank,
            world,
            served: state.served,
            epoch: 0,
            order,
        })
    }

    /// Positions per row.
    pub fn row_len(&self) -> usize {
        self.prepared.row_len()
    }

    pub fn state(&self) -> RowsState {
        RowsState {
            dir: self.dir.display().to_string(),
            rows_xxh3: self.prepared.manifest().rows_xxh3.as_str().to_string(),
            seed: self.seed,
            served: self.served,
        }
    }

    /// Appends this rank's next `n` rows to `batch`; every rank asks for the same `n`.
    pub fn next_rows(&mut self, n: usize, batch: &mut Batch) -> Result<(), TrainError> {
        let rows = self.prepared.rows() as u64;
        for k in 0..n as u64 {
            let global = self.served + k * self.world as u64 + self.rank as u64;
            let epoch = global / rows;
            if epoch != self.epoch {
                self.order = shuffled(rows as usize, self.seed, epoch);
                self.epoch = epoch;
            }
            let index = self.order[(global % rows) as usize];
            self.prepared.push_row(index as usize, batch)?;
        }
        self.served += (n * self.world) as u64;
        Ok(())
    }
}

/// Rows `0..rows` in epoch `epoch`'s order: a Fisher-Yates shuffle seeded by (seed, epoch).
fn shuffled(rows: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let key = [seed, epoch].map(u64::to_le_bytes).concat();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(xxhash_rust::xxh3::xxh3_64(&key));
    let mut order: Vec<u32> = (0..rows as u32).collect();
    order.shuffle(&mut rng);
    order
}

fn absolute(dir: &Path) -> Result<String, TrainError> {
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| TrainError::Data(format!("`{}`: {e}", dir.display())))?;
    Ok(dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_epoch_is_a_permutation_and_epochs_differ() {
        let (a, b) = (shuffled(100, 7, 0), shuffled(100, 7, 1));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<u32>>());
        assert_ne!(a, b);
        assert_eq!(a, shuffled(100, 7, 0), "seeded");
    }
}
