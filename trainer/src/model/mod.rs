//! The Steel model family: configuration (`config`), parameter layout (`params`) and its typed
//! views (`tensors`), the feed-forward kinds (`ffn`), and the forward/backward pass (`pass`).

pub mod config;
pub mod ffn;
pub mod params;
pub mod pass;
pub mod tensors;
