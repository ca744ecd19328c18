//! Loader throughput: every block of a chunk directory served once, timed.

use crate::data::{DataSource, Loader, LoaderError};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct LoaderBenchLine {
    pub bench: &'static str,
    pub blocks: u64,
    pub block_size: u64,
    pub seconds: f64,
    pub blocks_per_s: f64,
    pub tokens_per_s: f64,
}

/// Serve one epoch of `dir` (opening and hash-checking every chunk on the way).
pub fn bench_loader(dir: &Path, block_size: u64) -> Result<LoaderBenchLine, LoaderError> {
    let sources = [DataSource {
        dir: dir.to_path_buf(),
        weight: 1.0,
    }];
    let start = Instant::now();
    let mut loader = Loader::open(&sources, block_size, 0, 0, 1)?;
    let blocks = loader.blocks_in_epoch() as u64;
    let mut checksum = 0u64;
    for _ in 0..blocks {
        checksum = checksum.wrapping_add(loader.next_block()?[0] as u64);
    }
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(checksum);
    Ok(LoaderBenchLine {
        bench: "loader",
        blocks,
        block_size,
        seconds,
        blocks_per_s: blocks as f64 / seconds,
        tokens_per_s: (blocks * (block_size + 1)) as f64 / seconds,
    })
}
