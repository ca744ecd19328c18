//! The unified document every source is converted to.

use serde::{Deserialize, Serialize};

/// One line of a converted shard: `{"text": ..., "meta": {"source", "file", "row"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnifiedDoc {
    pub text: String,
    pub meta: DocMeta,
}

/// Where a document came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocMeta {
    /// The format name (`baike`, `zhihu`, ...), or a pipeline's source name.
    pub source: String,
    /// The input file, as it was named on the command line or found by expansion.
    pub file: String,
    /// 0-based index of the record in its file (for JSONL, the line number minus one).
    pub row: u64,
}
