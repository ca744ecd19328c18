//! The Steel model family: configuration (`config`), parameter layout (`params`), the
//! feed-forward kinds (`ffn`), evaluation forward (`forward`) and training pass (`dense`).

pub mod config;
pub mod dense;
pub mod ffn;
pub mod forward;
pub mod params;
