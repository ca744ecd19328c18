//! How a cleaned demo corpus compares with the generator's truth (`steel demo`): of each kind
//! of planted document, how many the cleaning removed.

use crate::demo_data::{DocKind, Truth, read_truth};
use crate::doc::UnifiedDoc;
use std::collections::HashSet;
use std::path::Path;

/// `removed` of `total` documents of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Removed {
    pub removed: usize,
    pub total: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoScore {
    pub exact_dups: Removed,
    pub near_dups: Removed,
    /// Originals made junk (too short, too long, HTML, ...).
    pub junk: Removed,
    /// Originals with nothing wrong: ideally none removed.
    pub clean: Removed,
}

impl std::fmt::Display for DemoScore {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let r = |r: Removed| format!("{}/{}", r.removed, r.total);
        write!(
            f,
            "against the truth: removed {} exact duplicates, {} near-duplicates, {} junk documents (too short or too long; the mappers cleaned the others), {} clean originals",
            r(self.exact_dups),
            r(self.near_dups),
            r(self.junk),
            r(self.clean)
        )
    }
}

/// A file's name without its directories: the truth names corpus files relative to the demo
/// data directory, converted documents as they were found.
fn file_name(path: &str) -> Option<String> {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// Score the `part-*` shards of `cleaned_dir` against the truth of the demo corpus in
/// `data_dir`. A document is kept if a shard holds its (file, row).
pub fn score(data_dir: &Path, cleaned_dir: &Path) -> std::io::Result<DemoScore> {
    let truth = read_truth(data_dir)?;
    let mut kept = HashSet::new();
    for entry in std::fs::read_dir(cleaned_dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        {
            for line in std::fs::read_to_string(&path)?.lines() {
                let doc: UnifiedDoc = serde_json::from_str(line)?;
                kept.insert((file_name(&doc.meta.file), doc.meta.row));
            }
        }
    }
    let removed = |pick: &dyn Fn(&Truth) -> bool| {
        let docs: Vec<&Truth> = truth.iter().filter(|t| pick(t)).collect();
        Removed {
            removed: docs
                .iter()
                .filter(|t| !kept.contains(&(file_name(&t.file), t.row)))
                .count(),
            total: docs.len(),
        }
    };
    Ok(DemoScore {
        exact_dups: removed(&|t| t.kind == DocKind::ExactDup),
        near_dups: removed(&|t| t.kind == DocKind::NearDup),
        junk: removed(&|t| t.kind == DocKind::Original && !t.junk.is_empty()),
        clean: removed(&|t| t.kind == DocKind::Original && t.junk.is_empty()),
    })
}
