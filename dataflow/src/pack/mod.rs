//! Step 3: documents to tokens packed into fixed-size chunk files.
//!
//! Chunks use TinyLlama/lit-gpt's `PackedDataset` layout (see [`litpkds`]), so Steel-LLM's
//! own training code reads them; a [`manifest`] records every chunk's token count, xxh3 hash,
//! source mix, the epoch it was added in and the documents it holds ([`docs`]), and every
//! input packed, so packing again packs only what is new ([`inputs`]) and a `steel run`
//! retraction reaches the chunks ([`retract`]).

pub mod chunk_writer;
pub mod docs;
pub mod inputs;
pub mod litpkds;
pub mod manifest;
pub mod packer;
pub mod retract;
pub mod tokenizer;

pub use packer::{PackOptions, PackOutcome, PackSummary, pack};

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("cannot load tokenizer `{}`: {reason}", path.display())]
    Tokenizer {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("token `{token}` is not in tokenizer `{}`", path.display())]
    UnknownToken {
        token: String,
        path: std::path::PathBuf,
    },
    #[error("tokenizing failed: {0}")]
    Encode(String),
    #[error("`{}`: {reason}", path.display())]
    Chunk {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("`{}`: {reason}", path.display())]
    Manifest {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("bad settings: {0}")]
    Settings(String),
    #[error(transparent)]
    Input(#[from] crate::input::InputError),
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// `plan_files` only fails on inputs; anything else it reports is a settings problem.
impl From<crate::convert::ConvertError> for PackError {
    fn from(error: crate::convert::ConvertError) -> Self {
        match error {
            crate::convert::ConvertError::Input(e) => PackError::Input(e),
            other => PackError::Settings(other.to_string()),
        }
    }
}

impl PackError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        PackError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
