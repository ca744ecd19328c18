//! `steel demo`'s pipeline job: the demo corpus' files dropped into a job's raw directory a
//! few at a time, each drop a `steel run` that cleans, deduplicates and (`[pack]`) packs
//! only what is new, and a retraction of one file.

use crate::pipeline::config::{PipelineConfig, PipelineConfigError};
use crate::pipeline::epoch::EpochReport;
use crate::pipeline::job::{RunError, RunOptions, RunOutcome, Work, run};
use std::path::{Path, PathBuf};

/// The recipe the demo job cleans with (shipped in `recipes/`).
const DEMO_RUN_RECIPE: &str = include_str!("../../../recipes/demo_run.yaml");

/// One epoch of the demo job, in numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoEpoch {
    pub new_files: usize,
    /// Documents that went through the operators (only the new files').
    pub touched: u64,
    /// Change in kept documents.
    pub kept: i64,
    pub tombstoned: u64,
    pub index_docs: u64,
    pub seconds: f64,
}

impl DemoEpoch {
    pub fn of(report: &EpochReport) -> DemoEpoch {
        DemoEpoch {
            new_files: report.files.len(),
            touched: report.ops.first().map_or(0, |op| op.docs_in),
            kept: report.sources.values().map(|c| c.kept).sum(),
            tombstoned: report.tombstoned,
            index_docs: report.index_docs,
            seconds: report.seconds,
        }
    }
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

/// A pipeline job over the demo corpus, packing into `JOB/chunks`.
pub struct DemoJob {
    config: PipelineConfig,
    raw: PathBuf,
    /// The corpus' `.jsonl` files, in name order.
    pub files: Vec<PathBuf>,
}

impl DemoJob {
    /// Make the job in `job` over the `.jsonl` files of `corpus` (none copied yet), packing
    /// with `tokenizer` into blocks of `block_size`, `chunk_blocks` per chunk.
    pub fn create(
        job: &Path,
        corpus: &Path,
        tokenizer: &Path,
        block_size: u64,
        chunk_blocks: u64,
    ) -> Result<DemoJob, DemoError> {
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
        let tokenizer = std::path::absolute(tokenizer).map_err(io(tokenizer))?;
        let pipeline = format!(
            "state = \"state\"\noutput = \"out\"\nworkers = 2\n\n[[source]]\nname = \"demo\"\nformat = \"auto\"\npath = \"raw/*.jsonl\"\n\n[clean]\nrecipe = \"recipe.yaml\"\n\n[pack]\ntokenizer = {:?}\noutput = \"chunks\"\nblock_size = {block_size}\nchunk_blocks = {chunk_blocks}\n",
            tokenizer.display().to_string()
        );
        std::fs::write(job.join("pipeline.toml"), pipeline).map_err(io(job))?;
        let config = PipelineConfig::load(&job.join("pipeline.toml"))?;
        Ok(DemoJob { config, raw, files })
    }

    /// Where the job packs its chunks.
    pub fn chunks(&self) -> PathBuf {
        self.config
            .pack
            .as_ref()
            .expect("the demo job packs")
            .output
            .clone()
    }

    /// Copy `files` into the job's raw directory and run the job.
    pub fn ingest(&self, files: &[PathBuf]) -> Result<RunOutcome, DemoError> {
        for file in files {
            let name = file.file_name().expect("a listed file has a name");
            let target = self.raw.join(name);
            std::fs::copy(file, &target).map_err(|source| DemoError::Io {
                path: target.clone(),
                source,
            })?;
        }
        Ok(run(&self.config, &Self::options(), Work::Ingest)?)
    }

    /// Take corpus file `file` back out (`steel retract --file`).
    pub fn retract(&self, file: &Path) -> Result<RunOutcome, DemoError> {
        let name = file.file_name().expect("a listed file has a name");
        let work = Work::Retract {
            source: "demo".into(),
            file: Some(self.config.manifest_name(&self.raw.join(name))),
        };
        Ok(run(&self.config, &Self::options(), work)?)
    }

    fn options() -> RunOptions {
        RunOptions {
            workers: 2,
            ..RunOptions::default()
        }
    }
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
        let job = dir.path().join("job");
        let err = DemoJob::create(&job, &corpus, Path::new("t.json"), 8, 2)
            .err()
            .unwrap();
        assert!(
            matches!(&err, DemoError::EmptyCorpus(path) if *path == corpus),
            "{err}"
        );
        assert!(!job.exists(), "nothing is written for a refused corpus");
    }
}
