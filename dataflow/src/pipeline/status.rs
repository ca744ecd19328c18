//! `steel status`: what a job's state directory holds, from its manifest alone.

use crate::pipeline::state::{SourceCounts, StateDir, StateError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct Status {
    pub state: String,
    pub epochs: u64,
    pub files: usize,
    pub retracted_files: usize,
    /// Shard numbers given so far (one per file).
    pub shards: usize,
    /// Per source, the current totals (every epoch's changes summed).
    pub sources: BTreeMap<String, SourceCounts>,
    pub index_docs: u64,
    pub index_bytes_on_disk: u64,
    pub index_segments: usize,
    /// Peak resident memory of the last run.
    pub last_run_peak_rss: u64,
    pub last_runs: Vec<LastRun>,
}

#[derive(Debug, Serialize)]
pub struct LastRun {
    pub epoch: u64,
    pub kind: String,
    pub committed_at: u64,
    pub seconds: f64,
    pub files: usize,
    pub bytes_in: u64,
    pub kept_change: i64,
}

pub fn status(dir: &Path) -> Result<Status, StateError> {
    if !dir.join(crate::pipeline::state::MANIFEST).is_file() {
        return Err(StateError::Invalid {
            dir: dir.to_path_buf(),
            reason: "no manifest.json: not a steel run state (has `steel run` run with it?)".into(),
        });
    }
    let state = StateDir::reader(dir);
    let manifest = state.read_manifest()?;
    let mut sources: BTreeMap<String, SourceCounts> = BTreeMap::new();
    for epoch in &manifest.epochs {
        for (name, c) in &epoch.sources {
            let total = sources.entry(name.clone()).or_default();
            total.docs_in += c.docs_in;
            total.rejected += c.rejected;
            total.filtered += c.filtered;
            total.exact_dups += c.exact_dups;
            total.near_dups += c.near_dups;
            total.kept += c.kept;
        }
    }
    let index_bytes_on_disk = manifest.segments.iter().map(|s| s.bytes).sum();
    let last = manifest.epochs.last();
    Ok(Status {
        state: dir.display().to_string(),
        epochs: manifest.last_epoch(),
        files: manifest.files.len(),
        retracted_files: manifest
            .files
            .iter()
            .filter(|f| f.retracted_in.is_some())
            .count(),
        shards: manifest.files.len(),
        sources,
        index_docs: last.map_or(0, |e| e.index_docs),
        index_bytes_on_disk,
        index_segments: manifest.segments.len(),
        last_run_peak_rss: last.map_or(0, |e| e.peak_rss),
        last_runs: manifest
            .epochs
            .iter()
            .rev()
            .take(5)
            .map(|e| LastRun {
                epoch: e.epoch,
                kind: e.kind.clone(),
                committed_at: e.committed_at,
                seconds: e.seconds,
                files: e.files,
                bytes_in: e.bytes_in,
                kept_change: e.sources.values().map(|c| c.kept).sum(),
            })
            .collect(),
    })
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "state {}: {} epochs, {} files ({} retracted), index {} documents, {:.1} MB on disk, last run peak memory {:.0} MB",
            self.state,
            self.epochs,
            self.files,
            self.retracted_files,
            self.index_docs,
            self.index_bytes_on_disk as f64 / 1e6,
            self.last_run_peak_rss as f64 / 1e6
        )?;
        writeln!(
            f,
            "{:<16} {:>10} {:>9} {:>9} {:>10} {:>10} {:>10}",
            "source", "docs in", "rejected", "filtered", "exact dup", "near dup", "kept"
        )?;
        for (name, c) in &self.sources {
            writeln!(
                f,
                "{:<16} {:>10} {:>9} {:>9} {:>10} {:>10} {:>10}",
                name, c.docs_in, c.rejected, c.filtered, c.exact_dups, c.near_dups, c.kept
            )?;
        }
        writeln!(f, "last runs:")?;
        for run in &self.last_runs {
            writeln!(
                f,
                "  epoch {} ({}): {} files, {:.1} MB, {:.2} s, kept {:+}",
                run.epoch,
                run.kind,
                run.files,
                run.bytes_in as f64 / 1e6,
                run.seconds,
                run.kept_change
            )?;
        }
        Ok(())
    }
}
