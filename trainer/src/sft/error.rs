//! What can stop reading chat data or preparing its rows, each error naming where. (A bad
//! line does not: it is set aside as a [`crate::sft::Skipped`].)

use crate::error::TrainError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SftError {
    /// A file or directory that cannot be read or written.
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// Inputs with not one usable line: `reason` says how many lines were set aside and the
    /// first of them with its file and line.
    #[error("nothing to train on: {reason}")]
    NothingUsable { reason: String },
    /// A directory already prepared from other sources, another tokenizer or other options:
    /// each difference as `what: asked … , prepared …`.
    #[error(
        "`{}` was prepared differently ({}); prepare into another directory or remove it",
        dir.display(),
        differences.join("; ")
    )]
    Mismatch {
        dir: PathBuf,
        differences: Vec<String>,
    },
    /// A prepared directory whose files are not the ones its manifest records.
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// Options, a tokenizer or a request that do not fit together (a cutoff under 2, a
    /// tokenizer without the template's tokens, a row index past the end).
    #[error("{0}")]
    Setup(String),
    /// The tokenizer file.
    #[error(transparent)]
    Tokenizer(#[from] TrainError),
}

impl SftError {
    pub(crate) fn io(path: &std::path::Path, error: std::io::Error) -> SftError {
        SftError::File {
            path: path.to_path_buf(),
            reason: error.to_string(),
        }
    }
}

impl From<SftError> for TrainError {
    fn from(error: SftError) -> TrainError {
        match error {
            SftError::Tokenizer(inner) => inner,
            other => TrainError::Data(other.to_string()),
        }
    }
}
