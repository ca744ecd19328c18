//! steel_bench: the drivers behind `steel bench ...`. Each measures Steel against a baseline
//! in the same run and returns [`BenchLine`]s, which the binary prints as JSON lines.

pub mod clean;
pub mod convert;
pub mod edits;
pub mod generate;
pub mod incremental;
pub mod index_scale;
pub mod line;
pub mod pack;
pub mod samples;
pub mod train;

pub use line::BenchLine;

/// A rayon pool of `threads` threads, for measuring at a given thread count.
pub fn pool(threads: usize) -> anyhow::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build a {threads}-thread pool: {e}"))
}
