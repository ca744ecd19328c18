//! The Steel model family: its configuration (`config`); layers, forward and backward follow.

pub mod config;
pub mod dense;
pub mod forward;
pub mod params;
