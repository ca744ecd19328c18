//! The cleaned texts of indexed documents, which a retraction needs for the documents it
//! decides again: duplicates' texts are in the state's `dups.jsonl` files, kept documents'
//! in the output shards. Read only by retractions.

use crate::pipeline::epoch::{EpochError, ShardSource};
use crate::pipeline::graph::DocId;
use crate::pipeline::state::{StateError, io_error, read_hashed_lines};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Finds texts of earlier epochs' documents: duplicates in the state's `dups.jsonl`, kept
/// ones in the output shards.
pub struct TextStore {
    /// Each earlier epoch's `dups.jsonl` and its hash in the manifest.
    pub state_epochs: Vec<(PathBuf, String)>,
    pub output_epochs: Vec<PathBuf>,
}

impl TextStore {
    pub fn find(
        &self,
        wanted: &[DocId],
        shard_sources: &HashMap<u32, ShardSource>,
    ) -> Result<HashMap<DocId, String>, EpochError> {
        let mut found = HashMap::new();
        let mut missing: std::collections::HashSet<DocId> = wanted.iter().copied().collect();
        for (path, hash) in &self.state_epochs {
            read_hashed_lines(path, hash, |line| {
                let value: serde_json::Value =
                    serde_json::from_slice(line).map_err(|e| StateError::Invalid {
                        dir: path.clone(),
                        reason: format!("corrupt line: {e}"),
                    })?;
                if let (Some(id), Some(text)) = (value["id"].as_u64(), value["text"].as_str())
                    && missing.remove(&id)
                {
                    found.insert(id, text.to_string());
                }
                Ok(())
            })?;
        }
        if !missing.is_empty() {
            let shard_of_path: HashMap<&str, u32> = shard_sources
                .iter()
                .map(|(shard, s)| (s.path.as_str(), *shard))
                .collect();
            for dir in &self.output_epochs {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                let mut shards: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
                    })
                    .collect();
                shards.sort();
                for shard in shards {
                    for_lines(&shard, |value| {
                        let meta = &value["meta"];
                        let shard = meta["file"].as_str().and_then(|f| shard_of_path.get(f));
                        if let (Some(shard), Some(row), Some(text)) =
                            (shard, meta["row"].as_u64(), value["text"].as_str())
                        {
                            let id = crate::pipeline::graph::doc_id(*shard, row as u32);
                            if missing.remove(&id) {
                                found.insert(id, text.to_string());
                            }
                        }
                    })?;
                }
            }
        }
        Ok(found)
    }
}

fn for_lines(path: &Path, mut each: impl FnMut(serde_json::Value)) -> Result<(), EpochError> {
    let file = File::open(path).map_err(io_error(path))?;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(io_error(path))?;
        let value = serde_json::from_str(&line)
            .map_err(|e| EpochError::Other(format!("{}: corrupt line: {e}", path.display())))?;
        each(value);
    }
    Ok(())
}
