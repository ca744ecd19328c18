//! steel-dataflow: raw source files to unified documents (step 1 of Steel-LLM's pipeline).
//! Cleaning, incremental dedup and token packing grow here as the project does.

pub mod clean;
pub mod convert;
pub mod demo_data;
pub mod demo_score;
pub mod doc;
pub mod input;
pub mod output;
pub mod pack;
pub mod pipeline;
pub mod progress;
pub mod reject;
pub mod sources;
pub mod summary_table;
