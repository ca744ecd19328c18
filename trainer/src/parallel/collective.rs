//! `Collective`: the sum-all-reduce data parallelism needs. `InProcess` joins ranks that are
//! threads of one process (the CPU path, and the reference the NCCL path is tested against):
//! every rank deposits its buffer, then every rank sums all of them in rank order, so every
//! rank gets bit-identical results, the same on every run.

use crate::error::TrainError;
use std::sync::{Arc, Condvar, Mutex};

pub trait Collective: Send + Sync {
    fn rank(&self) -> usize;
    fn world(&self) -> usize;
    /// Replace `data` on every rank by the element-wise sum over ranks.
    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), TrainError>;
    /// Tell the other ranks this one failed, so they stop waiting for it.
    fn abort(&self, why: &str);
}

/// What the ranks of one group share.
struct Shared {
    /// One deposited buffer per rank.
    slots: Vec<Option<Vec<f32>>>,
    /// Ranks arrived at the current barrier, and how many barriers have completed.
    arrived: usize,
    generation: u64,
    aborted: Option<String>,
}

pub struct InProcess {
    rank: usize,
    world: usize,
    shared: Arc<(Mutex<Shared>, Condvar)>,
}

impl InProcess {
    /// One handle per rank, `0..world`.
    pub fn group(world: usize) -> Vec<InProcess> {
        let shared = Arc::new((
            Mutex::new(Shared {
                slots: vec![None; world],
                arrived: 0,
                generation: 0,
                aborted: None,
            }),
            Condvar::new(),
        ));
        (0..world)
            .map(|rank| InProcess {
                rank,
                world,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Wait until every rank has arrived (or one aborted).
    fn barrier(&self) -> Result<(), TrainError> {
        let (lock, wake) = &*self.shared;
        let mut shared = lock
            .lock()
            .map_err(|_| TrainError::Parallel("a rank panicked".to_string()))?;
        if let Some(why) = &shared.aborted {
            return Err(TrainError::Parallel(format!("rank stopped: {why}")));
        }
        let generation = shared.generation;
        shared.arrived += 1;
        if shared.arrived == self.world {
            shared.arrived = 0;
            shared.generation += 1;
            wake.notify_all();
            return Ok(());
        }
        while shared.generation == generation {
            if let Some(why) = &shared.aborted {
                return Err(TrainError::Parallel(format!("rank stopped: {why}")));
            }
            shared = wake
                .wait(shared)
                .map_err(|_| TrainError::Parallel("a rank panicked".to_string()))?;
        }
        Ok(())
    }
}

impl Collective for InProcess {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), TrainError> {
        if self.world == 1 {
            return Ok(());
        }
        {
            let mut shared = self
                .shared
                .0
                .lock()
                .map_err(|_| TrainError::Parallel("a rank panicked".to_string()))?;
            shared.slots[self.rank] = Some(data.to_vec());
        }
        self.barrier()?;
        {
            let shared = self
                .shared
                .0
                .lock()
                .map_err(|_| TrainError::Parallel("a rank panicked".to_string()))?;
            data.fill(0.0);
            for (rank, slot) in shared.slots.iter().enumerate() {
                let slot = slot
                    .as_ref()
                    .ok_or(TrainError::Parallel(format!("rank {rank} left no buffer")))?;
                if slot.len() != data.len() {
                    return Err(TrainError::Parallel(format!(
                        "rank {rank} reduces {} values, rank {} {}",
                        slot.len(),
                        self.rank,
                        data.len()
                    )));
                }
                data.iter_mut().zip(slot).for_each(|(d, s)| *d += s);
            }
        }
        // Nobody deposits the next buffer before everyone has read this one.
        self.barrier()
    }

    fn abort(&self, why: &str) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut shared) = lock.lock() {
            shared.aborted.get_or_insert_with(|| why.to_string());
            wake.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rank_gets_the_same_sum_in_rank_order() {
        let world = 4;
        let results: Vec<Vec<f32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = InProcess::group(world)
                .into_iter()
                .map(|c| {
                    scope.spawn(move || {
                        // Values whose float sum depends on the order: 1e8 + 1 − 1e8 …
                        let mut data = vec![[1e8f32, 1.0, -1e8, 0.5][c.rank()], c.rank() as f32];
                        for _ in 0..3 {
                            c.all_reduce_sum(&mut data).unwrap();
                        }
                        data
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // Rank order: ((1e8 + 1) − 1e8) + 0.5 = 0.5 in f32; then ×4 per round.
        let first = (((1e8f32 + 1.0) + -1e8) + 0.5) * 4.0 * 4.0;
        let second = 6.0 * 16.0;
        for r in &results {
            assert_eq!(r, &vec![first, second]);
        }
    }

    #[test]
    fn an_aborting_rank_releases_the_others() {
        let errors: Vec<String> = std::thread::scope(|scope| {
            let group = InProcess::group(3);
            let handles: Vec<_> = group
                .into_iter()
                .map(|c| {
                    scope.spawn(move || {
                        if c.rank() == 2 {
                            c.abort("rank 2 failed to read its data");
                            return String::new();
                        }
                        c.all_reduce_sum(&mut [1.0]).unwrap_err().to_string()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(errors[0].contains("rank 2 failed"), "{errors:?}");
        assert!(errors[1].contains("rank 2 failed"), "{errors:?}");
    }
}
