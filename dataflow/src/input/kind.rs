//! What a file is, from its name: container and compression.

use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// One JSON object per line (`.jsonl`, `.ndjson`).
    JsonLines,
    /// `.json`: a JSON array of objects, or JSON lines; the first non-blank byte decides.
    Json,
    /// Apache parquet, one record per row.
    Parquet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileKind {
    pub container: Container,
    pub compression: Compression,
}

impl FileKind {
    /// The kind of `path` from its extension, or `None` if we do not read such files.
    ///
    /// ```
    /// use steel_dataflow::input::{Compression, Container, FileKind};
    /// let kind = FileKind::of("a/web.JSONL.gz".as_ref()).unwrap();
    /// assert_eq!((kind.container, kind.compression), (Container::JsonLines, Compression::Gzip));
    /// assert!(FileKind::of("a.parquet.gz".as_ref()).is_none());
    /// assert!(FileKind::of("notes.txt".as_ref()).is_none());
    /// ```
    pub fn of(path: &Path) -> Option<FileKind> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let (stem, compression) = if let Some(stem) = name.strip_suffix(".gz") {
            (stem, Compression::Gzip)
        } else if let Some(stem) = name.strip_suffix(".zst").or(name.strip_suffix(".zstd")) {
            (stem, Compression::Zstd)
        } else {
            (name.as_str(), Compression::None)
        };
        let container = if stem.ends_with(".jsonl") || stem.ends_with(".ndjson") {
            Container::JsonLines
        } else if stem.ends_with(".json") {
            Container::Json
        } else if stem.ends_with(".parquet") && compression == Compression::None {
            Container::Parquet
        } else {
            return None;
        };
        Some(FileKind {
            container,
            compression,
        })
    }
}
