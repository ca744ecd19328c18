//! What can go wrong in a multiple-choice evaluation, each error naming where.

use crate::error::TrainError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum McqError {
    /// A CSV file that cannot be read as its benchmark ships it: a bad header, a row of the
    /// wrong width, an answer that is not A–D. `line` is where the row starts (1: the header).
    #[error("{}: line {line}: {reason}", path.display())]
    Csv {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    /// A directory or file that cannot be read, or a file that is not a subject's.
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// Subjects, flags or a tokenizer that do not fit together.
    #[error("{0}")]
    Setup(String),
    /// The model (its checkpoint or HuggingFace directory).
    #[error(transparent)]
    Model(#[from] TrainError),
}
