//! steel-trainer: the Steel model family, forward/backward, optimizer, data loader and
//! checkpoints. Today: the data loader ([`data`]); the model and training loop arrive with
//! the trainer-core issue.

pub mod data;
pub mod model;
pub mod optim;
