//! Which files a run ingests: every file matching a source's glob, compared with the
//! manifest by path and content hash.

use crate::pipeline::config::PipelineConfig;
use crate::pipeline::state::Manifest;
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};

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
            let (hash, size) = match hash_file(&path) {
                Ok(found) => found,
                Err(e) => {
                    found.skipped.push(Skipped {
                        path: display,
                        reason: format!("unreadable: {e}"),
                    });
                    continue;
                }
            };
            let known = manifest.files.iter().find(|f| f.path == display);
            match known {
                Some(entry) if entry.retracted_in.is_some() => found.skipped.push(Skipped {
                    path: display,
                    reason: format!(
                        "retracted in epoch {}",
                        entry.retracted_in.unwrap_or_default()
                    ),
                }),
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
                }),
            }
        }
    }
    Ok(found)
}
