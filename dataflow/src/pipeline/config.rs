//! `PIPELINE.toml`: the sources, the recipe, the dedup settings, the output and state
//! directories, the worker count of a scheduled job and, optionally, how to pack its output
//! into training chunks. Paths are relative to the file.

use crate::pack::PackOptions;
use crate::sources::FormatChoice;
use serde::Deserialize;
use std::path::{Component, Path, PathBuf};

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The file it was read from (for messages).
    pub file: PathBuf,
    pub state: PathBuf,
    pub output: PathBuf,
    pub workers: usize,
    pub sources: Vec<SourceConfig>,
    pub recipe: PathBuf,
    pub lm_model: Option<PathBuf>,
    pub hf_tokenizer: Option<PathBuf>,
    pub dedup: Option<DedupOverride>,
    /// Output shards are closed before they grow past this many bytes.
    pub shard_bytes: u64,
    /// Documents fed to the dataflow per batch (one timestamp each).
    pub batch_docs: usize,
    /// `[pack]`: also pack each new epoch of the output into training chunks.
    pub pack: Option<PackOptions>,
    /// `compact = false`: never merge the index's segments after a commit (default: merge
    /// when due, `compact.rs`).
    pub compact: bool,
}

#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub name: String,
    pub format: FormatChoice,
    /// The glob, made absolute against the config file's directory.
    pub pattern: String,
    /// The field the `text` format reads.
    pub text_field: String,
}

/// `[dedup]`: the near-duplicate method, replacing the recipe's, with data-juicer parameters.
#[derive(Clone, Debug)]
pub struct DedupOverride {
    pub method: Method,
    pub params: Vec<(String, toml::Value)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Exact,
    Simhash,
    Minhash,
}

impl Method {
    /// The data-juicer operator of the method (`None` for exact: it always runs).
    pub fn operator(self) -> Option<&'static str> {
        match self {
            Method::Exact => None,
            Method::Simhash => Some("document_simhash_deduplicator"),
            Method::Minhash => Some("document_minhash_deduplicator"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    state: PathBuf,
    output: PathBuf,
    workers: Option<usize>,
    #[serde(default)]
    source: Vec<SourceFile>,
    clean: CleanFile,
    dedup: Option<DedupFile>,
    shard_mb: Option<u64>,
    batch_docs: Option<usize>,
    pack: Option<PackFile>,
    compact: Option<bool>,
}

/// `[pack]`: `steel pack`'s settings, with its defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    tokenizer: PathBuf,
    output: PathBuf,
    block_size: Option<u64>,
    chunk_blocks: Option<u64>,
    eos: Option<String>,
    pad: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    name: String,
    format: String,
    path: String,
    text_field: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CleanFile {
    recipe: PathBuf,
    lm_model: Option<PathBuf>,
    hf_tokenizer: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DedupFile {
    method: Method,
    #[serde(default)]
    params: toml::Table,
}

/// A pipeline config that cannot be read or makes no sense; the message says where and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PipelineConfigError(pub String);

impl PipelineConfig {
    pub fn load(path: &Path) -> Result<PipelineConfig, PipelineConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            PipelineConfigError(format!(
                "cannot read pipeline config `{}`: {e}",
                path.display()
            ))
        })?;
        // Absolute, so the manifest's paths do not depend on where a run was started.
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Self::parse(&text, &absolute)
            .map_err(|e| PipelineConfigError(format!("pipeline config `{}`: {e}", path.display())))
    }

    /// How the state's manifest names `path`: relative to the pipeline file's directory when
    /// it lies under it (so a job directory moved or mounted elsewhere as a whole keeps its
    /// state), absolute otherwise. `.` and `..` are resolved by name, without the file system.
    pub fn manifest_name(&self, path: &Path) -> String {
        let base = lexical(self.file.parent().unwrap_or(Path::new("/")));
        let path = lexical(&base.join(path));
        match path.strip_prefix(&base) {
            Ok(inside) if inside.as_os_str().is_empty() => ".".into(),
            Ok(inside) => inside.display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }

    /// Parse `text`; relative paths are taken against `path`'s directory.
    pub fn parse(text: &str, path: &Path) -> Result<PipelineConfig, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        if file.source.is_empty() {
            return Err("no `[[source]]` given".into());
        }
        let mut sources = Vec::new();
        for source in file.source {
            if source.name.is_empty()
                || !source
                    .name
                    .chars()
                    .all(|c| c.is_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "source name `{}` must be non-empty letters, digits, `-`, `_` or `.`",
                    source.name
                ));
            }
            if sources.iter().any(|s: &SourceConfig| s.name == source.name) {
                return Err(format!("source `{}` is given twice", source.name));
            }
            let format = source
                .format
                .parse()
                .map_err(|e| format!("source `{}`: {e}", source.name))?;
            let pattern = resolve(Path::new(&source.path)).display().to_string();
            glob::Pattern::new(&pattern)
                .map_err(|e| format!("source `{}`: bad path glob `{pattern}`: {e}", source.name))?;
            sources.push(SourceConfig {
                name: source.name,
                format,
                pattern,
                text_field: source.text_field.unwrap_or_else(|| "text".into()),
            });
        }
        let workers = file.workers.unwrap_or(1);
        if workers == 0 {
            return Err("`workers` must be at least 1".into());
        }
        if file.shard_mb == Some(0) {
            return Err("`shard_mb` must be at least 1".into());
        }
        Ok(PipelineConfig {
            file: path.to_path_buf(),
            state: resolve(&file.state),
            output: resolve(&file.output),
            workers,
            sources,
            recipe: resolve(&file.clean.recipe),
            lm_model: file.clean.lm_model.as_deref().map(resolve),
            hf_tokenizer: file.clean.hf_tokenizer.as_deref().map(resolve),
            dedup: file.dedup.map(|d| DedupOverride {
                method: d.method,
                params: d.params.into_iter().collect(),
            }),
            shard_bytes: file.shard_mb.unwrap_or(256) << 20,
            batch_docs: file.batch_docs.unwrap_or(2048).max(1),
            compact: file.compact.unwrap_or(true),
            pack: file.pack.map(|p| {
                let mut options = PackOptions::new(resolve(&p.tokenizer), resolve(&p.output));
                options.block_size = p.block_size.unwrap_or(options.block_size);
                options.chunk_blocks = p.chunk_blocks.unwrap_or(options.chunk_blocks);
                options.eos = p.eos.unwrap_or(options.eos);
                options.pad = p.pad.unwrap_or(options.pad);
                options
            }),
        })
    }
}

/// `path` with `.` dropped and `..` taking off the name before it.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_example() {
        let text = r#"
state = "state"
output = "out"
workers = 2

[[source]]
name = "web"
format = "text"
path = "raw/web/*.jsonl"

[clean]
recipe = "recipe.yaml"

[dedup]
method = "simhash"

[pack]
tokenizer = "tokenizer.json"
output = "chunks"
block_size = 256
"#;
        let config = PipelineConfig::parse(text, Path::new("/jobs/a/pipeline.toml")).unwrap();
        assert_eq!(config.state, Path::new("/jobs/a/state"));
        assert_eq!(config.output, Path::new("/jobs/a/out"));
        assert_eq!(config.workers, 2);
        assert_eq!(config.sources[0].pattern, "/jobs/a/raw/web/*.jsonl");
        assert_eq!(config.recipe, Path::new("/jobs/a/recipe.yaml"));
        assert_eq!(config.dedup.as_ref().unwrap().method, Method::Simhash);
        let pack = config.pack.as_ref().unwrap();
        assert_eq!(pack.output, Path::new("/jobs/a/chunks"));
        assert_eq!(pack.tokenizer, Path::new("/jobs/a/tokenizer.json"));
        assert_eq!((pack.block_size, pack.chunk_blocks), (256, 1024));
        assert_eq!(config.manifest_name(&config.state), "state");
        assert_eq!(
            config.manifest_name(Path::new("/jobs/a/raw/./x/../web/1.jsonl")),
            "raw/web/1.jsonl"
        );
        assert_eq!(config.manifest_name(Path::new("/jobs/a")), ".");
        assert_eq!(
            config.manifest_name(Path::new("/jobs/b/out")),
            "/jobs/b/out"
        );
        assert_eq!(config.manifest_name(Path::new("../b/out")), "/jobs/b/out");
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        let base = "state = \"s\"\noutput = \"o\"\n[clean]\nrecipe = \"r.yaml\"\n";
        let err = |extra: &str| {
            PipelineConfig::parse(&format!("{base}{extra}"), Path::new("p.toml")).unwrap_err()
        };
        assert!(err("").contains("no `[[source]]`"));
        let source = "[[source]]\nname = \"web\"\nformat = \"text\"\npath = \"*.jsonl\"\n";
        assert!(err(&format!("{source}{source}")).contains("given twice"));
        assert!(err(&source.replace("text", "nope")).contains("unknown format `nope`"));
        assert!(err(&format!("{source}[dedup]\nmethod = \"lsh\"\n")).contains("unknown variant"));
        assert!(err(&format!("colour = 1\n{source}")).contains("unknown field"));
    }
}
