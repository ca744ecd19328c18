//! The Steel model family: configuration (`config`), parameter layout (`params`), the
//! feed-forward kinds (`ffn`), and the forward/backward pass (`pass`).

pub mod config;
pub mod ffn;
pub mod params;
pub mod pass;
