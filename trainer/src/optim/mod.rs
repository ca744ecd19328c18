//! Optimisation: AdamW over the contiguous parameter buffer, learning-rate schedules, and
//! clipping by global norm.

pub mod adamw;
pub mod schedule;
