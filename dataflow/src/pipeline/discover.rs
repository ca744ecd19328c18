//! Which files a run ingests: every file matching a source's glob, compared with the
//! manifest by path and content hash. A known file whose size and modification time are the
//! ones recorded is not read again (an append costs what is new, not every file ever
//! ingested); any other known file is hashed, and reported if its content changed.

use crate::pipeline::config::PipelineConfig;
use crate::pipeline::state::FileEntry;
use crate::pipeline::state::Manifest;
use serde::Serialize;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// A file to ingest.
#[derive(Clone, Debug)]
pub struct NewFile {
    pub source: usize,
    pub path: PathBuf,
    /// The file's name in the manifest and in the output's `meta.file`
    /// (`PipelineConfig::manifest_name`).
    pub name: String,
    pub size: u64,
    pub hash: String,
    /// Its modification time (`FileEntry::modified`).
    pub modified: Option<(u64, u32)>,
}

/// A file not ingested, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Discovery {
    pub new: Vec<NewFile>,
    /// Already ingested, unchanged.
    pub known: usize,
    /// Known paths whose content changed, retracted files, unreadable files.
    pub skipped: Vec<Skipped>,
}

/// The xxh3-64 of a file's bytes (hex) and its size.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((format!("{:016x}", hasher.digest()), size))
}

/// Match the sources' globs (each source's files in path order, sources in config order)
/// and sort out what is new.
pub fn discover(config: &PipelineConfig, manifest: &Manifest) -> Result<Discovery, String> {
    let mut found = Discovery::default();
    // The first entry of each path, as a scan of the manifest in order would find it.
    let mut by_path: HashMap<&str, &FileEntry> = HashMap::with_capacity(manifest.files.len());
    for entry in &manifest.files {
        by_path.entry(entry.path.as_str()).or_insert(entry);
    }
    for (index, source) in config.sources.iter().enumerate() {
        let mut paths: Vec<PathBuf> = glob::glob(&source.pattern)
            .map_err(|e| format!("source `{}`: bad glob: {e}", source.name))?
            .filter_map(|entry| entry.ok())
            .filter(|path| path.is_file())
            .filter(|path| {
                // Side files of our own outputs are not documents.
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                !name.starts_with('_') && !name.starts_with('.')
            })
            .collect();
        paths.sort();
        for path in paths {
            let display = config.manifest_name(&path);
            let unreadable = |e: std::io::Error| Skipped {
                path: display.clone(),
                reason: format!("unreadable: {e}"),
            };
            let (size, modified) = match std::fs::metadata(&path) {
                Ok(meta) => (meta.len(), modified_time(&meta)),
                Err(e) => {
                    found.skipped.push(unreadable(e));
                    continue;
                }
            };
            let known = by_path.get(display.as_str()).copied();
            if let Some(entry) = known {
                if let Some(epoch) = entry.retracted_in {
                    found.skipped.push(Skipped {
                        path: display,
                        reason: format!("retracted in epoch {epoch}"),
                    });
                    continue;
                }
                if entry.size == size && modified.is_some() && entry.modified == modified {
                    found.known += 1;
                    continue;
                }
            }
            let hash = match hash_file(&path) {
                Ok((hash, _)) => hash,
                Err(e) => {
                    found.skipped.push(unreadable(e));
                    continue;
                }
            };
            match known {
                Some(entry) if entry.hash == hash => found.known += 1,
                Some(entry) => found.skipped.push(Skipped {
                    path: display,
                    reason: format!(
                        "changed since it was ingested in epoch {} (hash {} then, {hash} now); not ingested again — retract it and give the new content a new name",
                        entry.epoch, entry.hash
                    ),
                }),
                None => found.new.push(NewFile {
                    source: index,
                    path,
                    name: display,
                    size,
                    hash,
                    modified,
                }),
            }
        }
    }
    Ok(found)
}

/// A file's modification time as seconds and nanoseconds since the Unix epoch (`None` where
/// the filesystem does not keep one).
fn modified_time(meta: &std::fs::Metadata) -> Option<(u64, u32)> {
    let since = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some((since.as_secs(), since.subsec_nanos()))
}
