//! The loader follows its chunk directories while it trains: chunks `steel pack` added join
//! the unseen remainder of the epoch, and chunks a retraction took out (the manifest's
//! `retracted`) are never served again.
//!
//! Ranks must change their orders identically at the same step, but each reads the manifest
//! itself, and a `steel pack` may land between two ranks' reads. So a change is taken "as of"
//! a pack epoch agreed beforehand (rank 0 reads [`Loader::data_epochs`] and every rank calls
//! [`Loader::follow`] with it): a chunk counts as live when it was packed before that epoch and
//! not retracted before it, whichever list of the manifest it is in now. Lists are sorted by
//! file name, so the change does not depend on when the manifest was read.

use super::order::Event;
use super::{Loader, LoaderError};
use serde::Serialize;
use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use steel_dataflow::pack::manifest::Manifest;

/// The chunks of `manifest` (of directory `dir`) as they stood before pack epoch `limit`:
/// the live ones and the retracted ones, by name. A manifest that has not reached `limit`
/// yet (another rank read a newer one: a directory not shared consistently) is an error.
pub(super) fn as_of(
    manifest: &Manifest,
    dir: &Path,
    limit: u64,
) -> Result<(BTreeSet<String>, BTreeSet<String>), LoaderError> {
    if manifest.next_epoch() < limit {
        return Err(LoaderError::Changed(format!(
            "`{}`: its manifest reaches pack epoch {} here, but rank 0's reached {limit}; every rank must see the same chunk directory",
            dir.display(),
            manifest.next_epoch()
        )));
    }
    let mut live = BTreeSet::new();
    let mut gone = BTreeSet::new();
    for chunk in manifest.chunks.iter().chain(&manifest.retracted) {
        if chunk.epoch >= limit {
            continue;
        }
        match chunk.retracted_in {
            Some(epoch) if epoch < limit => gone.insert(chunk.file.clone()),
            _ => live.insert(chunk.file.clone()),
        };
    }
    Ok((live, gone))
}

/// What [`Loader::follow`] changed in one chunk directory.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DataChange {
    pub dir: String,
    /// Chunks whose blocks joined the unseen remainder.
    pub added: Vec<String>,
    /// Chunks no longer served (they held retracted documents).
    pub excluded: Vec<String>,
}

impl Loader {
    /// Per chunk directory, one past the newest pack epoch its manifest holds now.
    pub fn data_epochs(&mut self) -> Result<Vec<u64>, LoaderError> {
        self.sources
            .iter_mut()
            .map(|source| Ok(source.chunks.reload()?.next_epoch()))
            .collect()
    }

    /// Take in every directory's chunks as they stood before pack epoch `epochs[i]`: add the
    /// live ones not served yet to the unseen remainder, exclude the retracted ones. Returns
    /// the directories that changed.
    pub fn follow(&mut self, epochs: &[u64]) -> Result<Vec<DataChange>, LoaderError> {
        let mut changes = Vec::new();
        for (source, &limit) in self.sources.iter_mut().zip(epochs) {
            // Pack never changes what an epoch before `limit` holds, so a manifest that already
            // reaches it (rank 0's, just read by `data_epochs`) answers as a newer one would.
            if source.chunks.manifest.next_epoch() < limit {
                source.chunks.reload()?;
            }
            let (live, gone) = as_of(&source.chunks.manifest, &source.chunks.dir, limit)?;
            let known: BTreeSet<String> = source.known_chunks().into_iter().collect();
            let already: HashSet<&String> = source.excluded.iter().collect();
            let excluded: Vec<String> = gone
                .into_iter()
                .filter(|f| known.contains(f) && !already.contains(f))
                .collect();
            let added: Vec<String> = live
                .into_iter()
                .filter(|f| !known.contains(f) && !already.contains(f))
                .collect();
            if excluded.is_empty() && added.is_empty() {
                continue;
            }
            let consumed = source.order.state.consumed;
            if !excluded.is_empty() {
                source.excluded.extend(excluded.iter().cloned());
                source.order.state.events.push(Event::Exclude {
                    consumed,
                    chunks: excluded.clone(),
                });
            }
            if !added.is_empty() {
                source.order.state.events.push(Event::Add {
                    consumed,
                    chunks: added.clone(),
                });
            }
            source.rebuild();
            changes.push(DataChange {
                dir: source.recorded_dir.clone(),
                added,
                excluded,
            });
        }
        Ok(changes)
    }
}
