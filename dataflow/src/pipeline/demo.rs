//! `steel demo`'s pipeline step: a job over the first files of the demo corpus, then the last
//! file appended, then a run with nothing new — showing that the second run puts only the new
//! file's documents through the operators and the third changes nothing.

use crate::pipeline::config::{PipelineConfig, PipelineConfigError};
use crate::pipeline::job::{RunError, RunOptions, Work, run};
use std::path::{Path, PathBuf};

/// The recipe the demo job cleans with (shipped in `recipes/`).
const DEMO_RUN_RECIPE: &str = include_str!("../../../recipes/demo_run.yaml");

const DEMO_PIPELINE: &str = "state = \"state\"\noutput = \"out\"\nworkers = 2\n\n[[source]]\nname = \"demo\"\nformat = \"auto\"\npath = \"raw/*.jsonl\"\n\n[clean]\nrecipe = \"recipe.yaml\"\n";

/// One epoch of the demo job.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoEpoch {
    pub new_files: usize,
    /// Documents that went through the operators (only the new files').
    pub touched: u64,
    /// Change in kept documents.
    pub kept: i64,
    pub index_docs: u64,
    pub seconds: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PipelineDemo {
    /// The epochs of the first run (all files but the last) and of the append.
    pub epochs: Vec<DemoEpoch>,
    /// The third run: files it knew, and whether it found nothing new.
    pub known_files: usize,
    pub nothing_new: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the demo job in {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the demo corpus {} holds no .jsonl files", .0.display())]
    EmptyCorpus(PathBuf),
    #[error(transparent)]
    Config(#[from] PipelineConfigError),
    #[error("steel run failed: {0}")]
    Run(#[from] RunError),
}

/// Make the job in `job` over the `.jsonl` files of `corpus` and run it three times.
pub fn demo_pipeline(job: &Path, corpus: &Path) -> Result<PipelineDemo, DemoError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoError::Io { path, source }
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus)
        .map_err(io(corpus))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io(corpus))?
        .into_iter()
        .filter(|path| path.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(DemoError::EmptyCorpus(corpus.to_path_buf()));
    }
    let raw = job.join("raw");
    std::fs::create_dir_all(&raw).map_err(io(&raw))?;
    std::fs::write(job.join("recipe.yaml"), DEMO_RUN_RECIPE).map_err(io(job))?;
    std::fs::write(job.join("pipeline.toml"), DEMO_PIPELINE).map_err(io(job))?;
    let config = PipelineConfig::load(&job.join("pipeline.toml"))?;
    let options = RunOptions {
        workers: 2,
        ..RunOptions::default()
    };
    let mut epochs = Vec::new();
    let split = files.len().saturating_sub(1);
    for batch in [&files[..split], &files[split..]] {
        for file in batch {
            let name = file.file_name().expect("a listed file has a name");
            std::fs::copy(file, raw.join(name)).map_err(io(file))?;
        }
        let outcome = run(&config, &options, Work::Ingest)?;
        epochs.extend(outcome.epochs.iter().map(|report| DemoEpoch {
            new_files: report.files.len(),
            touched: report.ops.first().map_or(0, |op| op.docs_in),
            kept: report.sources.values().map(|c| c.kept).sum(),
            index_docs: report.index_docs,
            seconds: report.seconds,
        }));
    }
    let again = run(&config, &options, Work::Ingest)?;
    Ok(PipelineDemo {
        epochs,
        known_files: again.known_files,
        nothing_new: again.nothing_new,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_corpus_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        std::fs::create_dir(&corpus).unwrap();
        std::fs::write(corpus.join("notes.txt"), "not a corpus file").unwrap();
        let err = demo_pipeline(&dir.path().join("job"), &corpus).unwrap_err();
        assert!(
            matches!(&err, DemoError::EmptyCorpus(path) if *path == corpus),
            "{err}"
        );
        assert!(
            !dir.path().join("job").exists(),
            "nothing is written for a refused corpus"
        );
    }
}
