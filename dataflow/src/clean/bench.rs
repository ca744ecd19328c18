//! `steel bench clean`: throughput of a recipe over the text samples scaled up by
//! concatenation, at each thread count, and of each operator alone (so slow ones show).
//!
//! Setup, done once in the work directory and reused: the text samples are converted to one
//! unified JSONL file, a 3-gram character model is trained on it for `perplexity_filter`, and
//! the file is concatenated `copies` times. Operators alone run on one thread over the first
//! `op_copies` copies.

use crate::clean::filters::Resources;
use crate::clean::lm::Unit;
use crate::clean::lm::train::train_documents;
use crate::clean::recipe::Recipe;
use crate::clean::run::{CleanError, CleanOptions, clean};
use crate::convert::{ConvertError, ConvertOptions, convert};
use crate::sources::FormatChoice;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The sample files that hold text (StarCoder's code has its own recipe).
pub const TEXT_SAMPLES: &[&str] = &[
    "sky_web.jsonl",
    "wiki_cn.json",
    "baidu_baike.jsonl",
    "belle_instruction.jsonl",
    "firefly.jsonl",
    "zhihu_qa.parquet",
];

#[derive(Clone, Debug)]
pub struct CleanBenchOptions {
    pub samples: PathBuf,
    pub recipe: PathBuf,
    pub work: PathBuf,
    pub copies: usize,
    pub op_copies: usize,
    pub threads: Vec<usize>,
    /// Measure each operator alone too.
    pub per_op: bool,
    /// Operators left out of the recipe.
    pub without: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CleanBenchLine {
    pub bench: &'static str,
    /// `recipe` for the whole recipe, else the operator's name (and position).
    pub case: String,
    pub threads: usize,
    pub docs_in: u64,
    pub docs_out: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub docs_per_s: f64,
    pub mb_per_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum CleanBenchError {
    #[error(transparent)]
    Clean(#[from] CleanError),
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error("{0}")]
    Setup(String),
}

fn setup_error(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> CleanBenchError {
    let message = format!("{what} `{}`", path.display());
    move |e| CleanBenchError::Setup(format!("{message}: {e}"))
}

/// The text samples converted to one unified JSONL file under `work/converted` (made once,
/// then reused); its path.
pub fn converted_text_samples(samples: &Path, work: &Path) -> Result<PathBuf, ConvertError> {
    let converted = work.join("converted");
    let unified = converted.join("part-00000.jsonl");
    if !unified.exists() {
        let inputs: Vec<String> = TEXT_SAMPLES
            .iter()
            .map(|f| samples.join(f).display().to_string())
            .collect();
        convert(
            &inputs,
            &ConvertOptions::new(FormatChoice::Auto, &converted),
        )?;
    }
    Ok(unified)
}

/// Convert the text samples, train the LM and write the replicated inputs; returns the paths
/// of the full input and of the per-operator input, and the model.
pub fn prepare(
    options: &CleanBenchOptions,
) -> Result<(PathBuf, PathBuf, PathBuf), CleanBenchError> {
    let unified = converted_text_samples(&options.samples, &options.work)?;
    let converted = unified.parent().expect("in a directory").to_path_buf();
    let model = options.work.join("zh-char-3gram.arpa");
    if !model.exists() {
        let (arpa, _) = train_documents(&[converted.display().to_string()], 3, Unit::Char)
            .map_err(CleanBenchError::Setup)?;
        std::fs::write(&model, arpa).map_err(setup_error("writing", &model))?;
    }
    let one = std::fs::read(&unified).map_err(setup_error("reading", &unified))?;
    let full = options
        .work
        .join(format!("input-x{}.jsonl", options.copies));
    let per_op = options
        .work
        .join(format!("input-x{}.jsonl", options.op_copies));
    for (path, copies) in [(&full, options.copies), (&per_op, options.op_copies)] {
        if !path.exists() {
            std::fs::write(path, one.repeat(copies)).map_err(setup_error("writing", path))?;
        }
    }
    Ok((full, per_op, model))
}

fn run_once(
    recipe: &Recipe,
    recipe_path: &Path,
    input: &Path,
    out: &Path,
    resources: &Resources,
    threads: usize,
    case: String,
) -> Result<CleanBenchLine, CleanBenchError> {
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(setup_error("clearing", out))?;
    }
    let mut options = CleanOptions::new(recipe_path, out);
    options.resources = resources.clone();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| CleanBenchError::Setup(format!("a {threads}-thread pool: {e}")))?;
    let report = pool.install(|| clean(&[input.display().to_string()], recipe, &options))?;
    let bytes = report.bytes_in;
    let line = CleanBenchLine {
        bench: "clean",
        case,
        threads,
        docs_in: report.docs_in,
        docs_out: report.docs_out,
        bytes,
        seconds: report.seconds,
        docs_per_s: report.docs_in as f64 / report.seconds,
        mb_per_s: bytes as f64 / 1e6 / report.seconds,
    };
    std::fs::remove_dir_all(out).map_err(setup_error("clearing", out))?;
    Ok(line)
}

/// Run the benchmark, calling `emit` with each line as it is measured.
pub fn bench_clean(
    options: &CleanBenchOptions,
    emit: &mut dyn FnMut(&CleanBenchLine),
) -> Result<(), CleanBenchError> {
    std::fs::create_dir_all(&options.work).map_err(setup_error("creating", &options.work))?;
    let (full, per_op, model) = prepare(options)?;
    let mut recipe = Recipe::load(&options.recipe).map_err(CleanBenchError::Setup)?;
    recipe.ops.retain(|op| !options.without.contains(&op.name));
    let resources = Resources {
        lm_model: Some(model),
        hf_tokenizer: None,
    };
    let out = options.work.join("out");
    for &threads in &options.threads {
        let line = run_once(
            &recipe,
            &options.recipe,
            &full,
            &out,
            &resources,
            threads,
            "recipe".into(),
        )?;
        emit(&line);
    }
    if options.per_op {
        for (index, spec) in recipe.ops.iter().enumerate() {
            let single = Recipe {
                ops: vec![spec.clone()],
                ..recipe.clone()
            };
            let case = format!("{:02} {}", index + 1, spec.name);
            emit(&run_once(
                &single,
                &options.recipe,
                &per_op,
                &out,
                &resources,
                1,
                case,
            )?);
        }
    }
    Ok(())
}
