//! `steel bench clean`: throughput of a recipe over the text samples scaled up by
//! concatenation, at each thread count, and of each operator alone (so slow ones show).
//!
//! Setup, done once in the work directory and reused: the text samples are converted to one
//! unified JSONL file, a 3-gram character model is trained on it for `perplexity_filter`, and
//! the file is concatenated `copies` times. Operators alone run on one thread over the first
//! `op_copies` copies.

use crate::line::BenchLine;
use crate::pool;
use crate::samples::converted_text_samples;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use steel_dataflow::clean::filters::Resources;
use steel_dataflow::clean::lm::Unit;
use steel_dataflow::clean::lm::train::train_documents;
use steel_dataflow::clean::recipe::Recipe;
use steel_dataflow::clean::run::{CleanOptions, clean};

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

/// The inputs of a run: the full input, the per-operator input and the language model.
struct Inputs {
    full: PathBuf,
    per_op: PathBuf,
    model: PathBuf,
}

/// Convert the text samples, train the LM and write the replicated inputs (each made once).
fn prepare(options: &CleanBenchOptions) -> Result<Inputs> {
    let unified = converted_text_samples(&options.samples, &options.work)?;
    let converted = unified.parent().expect("in a directory").to_path_buf();
    let model = options.work.join("zh-char-3gram.arpa");
    if !model.exists() {
        let (arpa, _) = train_documents(&[converted.display().to_string()], 3, Unit::Char)?;
        std::fs::write(&model, arpa).with_context(|| format!("writing {}", model.display()))?;
    }
    let one = std::fs::read(&unified).with_context(|| format!("reading {}", unified.display()))?;
    let input = |copies: usize| options.work.join(format!("input-x{copies}.jsonl"));
    let (full, per_op) = (input(options.copies), input(options.op_copies));
    for (path, copies) in [(&full, options.copies), (&per_op, options.op_copies)] {
        if !path.exists() {
            std::fs::write(path, one.repeat(copies))
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(Inputs {
        full,
        per_op,
        model,
    })
}

/// Clean `input` with `recipe` on `threads` threads into a scratch `out`; one line.
fn run_once(
    recipe: &Recipe,
    options: &CleanOptions,
    input: &Path,
    threads: usize,
    case: String,
) -> Result<BenchLine> {
    let out = &options.output;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let report =
        pool(threads)?.install(|| clean(&[input.display().to_string()], recipe, options))?;
    std::fs::remove_dir_all(out).with_context(|| format!("clearing {}", out.display()))?;
    let seconds = report.seconds;
    Ok(BenchLine::new("clean", case, seconds)
        .with("threads", threads)
        .with("docs_in", report.docs_in)
        .with("docs_out", report.docs_out)
        .with("bytes", report.bytes_in)
        .with("docs_per_s", report.docs_in as f64 / seconds)
        .with("mb_per_s", report.bytes_in as f64 / 1e6 / seconds))
}

/// Run the benchmark, calling `emit` with each line as it is measured.
pub fn bench_clean(options: &CleanBenchOptions, emit: &mut dyn FnMut(&BenchLine)) -> Result<()> {
    std::fs::create_dir_all(&options.work)
        .with_context(|| format!("creating {}", options.work.display()))?;
    let inputs = prepare(options)?;
    let mut recipe = Recipe::load(&options.recipe)?;
    recipe.ops.retain(|op| !options.without.contains(&op.name));
    let mut clean_options = CleanOptions::new(&options.recipe, options.work.join("out"));
    clean_options.resources = Resources {
        lm_model: Some(inputs.model.clone()),
        hf_tokenizer: None,
    };
    for &threads in &options.threads {
        emit(&run_once(
            &recipe,
            &clean_options,
            &inputs.full,
            threads,
            "recipe".into(),
        )?);
    }
    if options.per_op {
        for (index, spec) in recipe.ops.iter().enumerate() {
            let single = Recipe {
                ops: vec![spec.clone()],
                ..recipe.clone()
            };
            let case = format!("{:02} {}", index + 1, spec.name);
            emit(&run_once(&single, &clean_options, &inputs.per_op, 1, case)?);
        }
    }
    Ok(())
}
