//! `steel run`: the incremental pipeline. A job's sources are converted, cleaned and
//! deduplicated as a timely/differential dataflow whose state (a manifest of ingested files
//! and an index of dedup keys) persists between runs, so a run costs in proportion to what is
//! new and gives exactly what one run over everything would.

pub mod bloom;
pub mod bucket_pairs;
pub mod cluster;
pub mod compact;
pub mod config;
pub mod control;
pub mod demo;
pub mod discover;
pub mod epoch;
mod fail_point;
pub mod graph;
pub mod index;
pub mod job;
pub mod lock;
pub mod output_mark;
pub mod retraction;
pub mod run_file;
pub mod segment;
pub mod spill;
pub mod stages;
pub mod state;
pub mod status;
pub mod texts;
