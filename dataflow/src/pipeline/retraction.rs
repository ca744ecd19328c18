//! What a retraction does before its dataflow runs. The retracted files' documents leave
//! the index (they are uncounted, and tombstoned where they were kept), and the documents
//! whose status may change are found in the index, to be decided again by the dataflow
//! against what is still live:
//!
//! - for each retracted member, the earliest live document with its exact digest: it was an
//!   exact duplicate of the retracted one and may now pass exact dedup (*promoted*);
//! - the near duplicates a retracted member witnessed: they may have no witness left;
//! - the kept documents a promoted one matches: it may now drop them.
//!
//! Nothing else can change: a document's status depends only on earlier live documents, and
//! a dropped document still counts as earlier for the ones after it, so nothing cascades.

use crate::pipeline::epoch::{EpochError, EpochWriter, Revisited, ShardSource};
use crate::pipeline::graph::DocId;
use crate::pipeline::index::Index;
use crate::pipeline::segment::Status;
use crate::pipeline::stages::Stages;
use crate::pipeline::texts::TextStore;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;

/// Uncount the documents of `retracting` (ordinal ranges) in `writer`, and give the
/// documents to decide again with their cleaned texts, in id order.
pub fn retract(
    index: &Index,
    stages: &Stages,
    retracting: &[Range<u32>],
    texts: &TextStore,
    shard_sources: &HashMap<u32, ShardSource>,
    writer: &mut EpochWriter,
) -> Result<Vec<(DocId, Revisited)>, EpochError> {
    let mut promoted = BTreeSet::new();
    let mut orphaned = BTreeSet::new();
    for range in retracting {
        for ordinal in range.clone() {
            let status = index.status(ordinal);
            writer.retract(index.doc_id(ordinal)?, status)?;
            if !status.is_member() {
                continue;
            }
            let key = index.key(ordinal)?;
            if let Some(next) = index.earliest_exact(&key.exact)?
                && next > ordinal
                && index.status(next) == Status::ExactDup
            {
                promoted.insert(next);
            }
        }
        for dropped in index.witnessed_by(range)? {
            if index.live(dropped) && index.status(dropped) == Status::NearDup {
                orphaned.insert(dropped);
            }
        }
    }
    let mut wanted: BTreeMap<u32, DocId> = BTreeMap::new();
    for &ordinal in promoted.iter().chain(&orphaned) {
        wanted.insert(ordinal, index.doc_id(ordinal)?);
    }
    let mut found = texts.find(&wanted.values().copied().collect::<Vec<_>>(), shard_sources)?;
    // The kept documents a promoted one may now drop.
    let mut shadowed = BTreeMap::new();
    if let Some(near) = stages.near() {
        for &ordinal in &promoted {
            let Some(text) = found.get(&wanted[&ordinal]) else {
                continue;
            };
            let key = stages.entry(text).near;
            for bucket in near.buckets(&key) {
                for later in index.in_bucket(bucket)? {
                    if later > ordinal
                        && !wanted.contains_key(&later)
                        && index.live(later)
                        && index.status(later) == Status::Kept
                        && near.matches(&key, &index.key(later)?.near)
                    {
                        shadowed.insert(later, index.doc_id(later)?);
                    }
                }
            }
        }
    }
    found.extend(texts.find(
        &shadowed.values().copied().collect::<Vec<_>>(),
        shard_sources,
    )?);
    wanted.extend(shadowed);
    let mut revisits = Vec::with_capacity(wanted.len());
    for (ordinal, doc) in wanted {
        let text = found.remove(&doc).ok_or_else(|| {
            EpochError::Other(format!(
                "the text of document {doc:#x} to decide again is in no earlier epoch's files; the state or output directory was changed by hand"
            ))
        })?;
        revisits.push((
            doc,
            Revisited {
                ordinal,
                status: index.status(ordinal),
                text,
            },
        ));
    }
    revisits.sort_by_key(|(doc, _)| *doc);
    Ok(revisits)
}
