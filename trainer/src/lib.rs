//! steel-trainer: the Steel model family, forward/backward, optimizer, data loader and
//! checkpoints.
//!
//! Empty for now: it arrives with the trainer-core issue.
