//! The training commands: `train`, `import hf`, `eval` (and `eval ceval`, `eval cmmlu`),
//! `export hf`, `blocks`.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use steel_trainer::checkpoint::export_hf;
use steel_trainer::data::{DataSource, Loader, LoaderState};
use steel_trainer::device::Device;
use steel_trainer::eval::evaluate_checkpoint;
use steel_trainer::mcq::{
    Benchmark, McqOptions, Mode, evaluate_checkpoint as evaluate_mcq, write_outputs,
};
use steel_trainer::settings::{TrainRun, TrainSettings};
use steel_trainer::train::{StepMetrics, train};

#[derive(Args)]
pub struct TrainArgs {
    /// A TOML file with any of the settings below (same names, snake_case); flags given on
    /// the command line win. Paths in it are relative to the file.
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: TrainSettings,
}

/// `steel eval --checkpoint C --data D`: the mean loss over chunks; `steel eval ceval|cmmlu`:
/// a multiple-choice benchmark.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    benchmark: Option<EvalCommand>,
    /// A checkpoint (step-NNNNNNNN/) or any directory with config.json and model.safetensors.
    #[arg(long, required = true)]
    checkpoint: Option<PathBuf>,
    /// The chunk directory to score.
    #[arg(long, required = true)]
    data: Option<PathBuf>,
    /// Score only the first N blocks (chunk files in lexicographic order).
    #[arg(long)]
    max_blocks: Option<u64>,
    /// Print {"loss", "tokens", "blocks"} as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Score chunks packed with another tokenizer than the one the checkpoint records.
    #[arg(long)]
    allow_tokenizer_mismatch: bool,
}

#[derive(Subcommand)]
pub enum EvalCommand {
    /// C-Eval: {subject}_dev.csv (shots) and {subject}_val.csv / _test.csv (questions), scored
    /// by the letters' logits after the official prompt.
    Ceval(McqArgs),
    /// CMMLU: dev/{subject}.csv (shots) and test/{subject}.csv (questions), scored by the
    /// letters' logits after the official prompt.
    Cmmlu(McqArgs),
    /// The SFT loss over chat data: the mean cross-entropy of the assistant's replies.
    Chat(crate::sft_cmd::ChatEvalArgs),
}

#[derive(Args)]
pub struct McqArgs {
    /// A checkpoint (step-NNNNNNNN/) or any directory with config.json and model.safetensors
    /// (dense, softmax-MoE or top-k MoE).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The tokenizer.json (default: the one in --checkpoint).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// The dev CSVs: the shots, and the questions unless --test is given.
    #[arg(long)]
    dev: PathBuf,
    /// The questions' CSVs (default: the dev set itself, each question left out of its own
    /// shots).
    #[arg(long)]
    test: Option<PathBuf>,
    /// Comma-separated subjects (default: every subject with a file among the questions).
    #[arg(long, value_delimiter = ',')]
    subjects: Option<Vec<String>>,
    /// Worked examples before each question: the first K dev rows.
    #[arg(long, default_value_t = 5)]
    shots: usize,
    /// letter: argmax of the logits of A, B, C, D after the prompt (the official scripts);
    /// loglik: the most likely continuation of " A" … " D" (lm-evaluation-harness); gen: the
    /// first option letter in the model's greedy answer (as Steel-LLM scored its chat models).
    #[arg(long, default_value = "letter")]
    mode: Mode,
    /// With --mode gen: ask through the chat template (the prompt as the user's message).
    #[arg(long)]
    chat: bool,
    /// With --mode gen: the longest answer, in tokens.
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Write predictions.jsonl (one line per question) and results.json here.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Print the accuracies (per subject, per category, macro and micro) as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// cpu, or cuda (GPU 0; a binary built with --features cuda).
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// Score with a tokenizer other than the one the checkpoint records.
    #[arg(long)]
    allow_tokenizer_mismatch: bool,
}

#[derive(Subcommand)]
pub enum ExportCommand {
    /// config.json + model.safetensors (+ tokenizer.json) that `transformers` loads:
    /// Qwen2ForCausalLM (dense), Qwen2MoeForCausalLM (top-k), or Steel's softmax-MoE through
    /// the modeling_steel.py written next to them (trust_remote_code=True).
    Hf(ExportHfArgs),
}

#[derive(Subcommand)]
pub enum ImportCommand {
    /// `steel import hf DIR [train flags]`: `steel train --init-from DIR`. Reads config.json in
    /// either style (`rope_theta` / `torch_dtype` or `rope_parameters` / `dtype`).
    Hf(Box<ImportHfArgs>),
}

#[derive(Args)]
pub struct ImportHfArgs {
    /// config.json + model.safetensors, from transformers or `steel export hf`.
    dir: PathBuf,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Args)]
pub struct ExportHfArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    /// The directory to write; must be empty or absent.
    #[arg(long)]
    output: PathBuf,
    /// A tokenizer.json to ship with the model.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

#[derive(Args)]
pub struct BlocksArgs {
    /// A chunk directory, optionally with a mixture weight: DIR or DIR:WEIGHT. Repeatable.
    #[arg(long, required = true)]
    data: Vec<DataSource>,
    /// Tokens per block (each block is block size + 1 tokens).
    #[arg(long)]
    block_size: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// This data-parallel rank.
    #[arg(long, default_value_t = 0)]
    rank: usize,
    /// Number of data-parallel ranks.
    #[arg(long, default_value_t = 1)]
    world: usize,
    /// Continue from a state file written by --save.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Follow the directories: chunks added since the state was saved join the unseen
    /// remainder, chunks retracted since are no longer served.
    #[arg(long)]
    follow: bool,
    /// How many blocks to serve.
    #[arg(long)]
    take: u64,
    /// Write the loader state here afterwards.
    #[arg(long)]
    save: Option<PathBuf>,
}

/// The settings of the TOML file (if any) under the flags, resolved into a run.
fn resolve(args: TrainArgs) -> Result<TrainRun> {
    let file = match &args.config {
        Some(path) => TrainSettings::load(path)?,
        None => TrainSettings::default(),
    };
    Ok(args.settings.or(file).resolve()?)
}

pub fn run_train(args: TrainArgs) -> Result<()> {
    run_resolved(resolve(args)?)
}

/// Runs a resolved training run (`steel train`, `steel sft`) with its progress on stderr.
pub fn run_resolved(run: TrainRun) -> Result<()> {
    let TrainRun { options, resume } = run;
    let steps = options.steps;
    let start = std::time::Instant::now();
    // Tokens seen before this run (a resumed run starts with some); every step adds the same
    // number of tokens, so that is the first report's count less one step's.
    let mut first_tokens: Option<u64> = None;
    // A bar on a terminal; otherwise (logs) a line every 10 steps.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = indicatif::ProgressBar::new(steps);
    if terminal {
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ETA {eta}")
                .expect("a valid template"),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut report = |m: &StepMetrics| {
        let before = *first_tokens.get_or_insert(m.tokens - m.tokens / m.step.max(1));
        let tokens_per_s = (m.tokens - before) as f64 / start.elapsed().as_secs_f64();
        let message = format!(
            "loss {:.4}  lr {:.2e}  |g| {:.3}  {:.0} tokens/s",
            m.loss, m.lr, m.grad_norm, tokens_per_s
        );
        bar.set_position(m.step);
        bar.set_message(message.clone());
        if !terminal && (m.step == 1 || m.step.is_multiple_of(10) || m.step == steps) {
            eprintln!("step {:>6}/{}  {message}", m.step, steps);
        }
    };
    let state = train(&options, resume, &mut report)?;
    eprintln!(
        "{} steps, {} tokens; checkpoints and metrics.jsonl in {}",
        state.step,
        state.tokens,
        options.out.display()
    );
    Ok(())
}

/// `steel import hf DIR [train flags]` is `steel train --init-from DIR [train flags]`.
pub fn run_import_hf(args: ImportHfArgs) -> Result<()> {
    let ImportHfArgs { dir, mut train } = args;
    train.settings.init_from = Some(dir);
    run_train(train)
}

pub fn run_eval(args: EvalArgs) -> Result<()> {
    match args.benchmark {
        Some(EvalCommand::Ceval(mcq)) => return run_mcq(Benchmark::Ceval, mcq),
        Some(EvalCommand::Cmmlu(mcq)) => return run_mcq(Benchmark::Cmmlu, mcq),
        Some(EvalCommand::Chat(chat)) => return crate::sft_cmd::run_eval_chat(chat),
        None => {}
    }
    let (Some(checkpoint), Some(data)) = (args.checkpoint, args.data) else {
        anyhow::bail!("steel eval needs --checkpoint and --data (or a benchmark: ceval, cmmlu)");
    };
    let result = evaluate_checkpoint(
        &checkpoint,
        &data,
        args.max_blocks,
        args.allow_tokenizer_mismatch,
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        eprintln!(
            "loss {:.4} over {} tokens ({} blocks)",
            result.loss, result.tokens, result.blocks
        );
    }
    Ok(())
}

fn run_mcq(benchmark: Benchmark, args: McqArgs) -> Result<()> {
    let options = McqOptions {
        benchmark,
        dev: args.dev,
        test: args.test,
        subjects: args.subjects,
        shots: args.shots,
        mode: args.mode,
        chat: args.chat,
        max_new_tokens: args.max_new_tokens,
    };
    let bar = indicatif::ProgressBar::hidden();
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} questions {per_sec} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(benchmark.name());
    }
    // Called with 0 before the first question, then once per question (in any order).
    let progress = |done: u64, total: u64| match done {
        0 => bar.set_length(total),
        _ => bar.inc(1),
    };
    let start = std::time::Instant::now();
    let evaluation = evaluate_mcq(
        &options,
        &args.checkpoint,
        args.tokenizer.as_deref(),
        args.allow_tokenizer_mismatch,
        args.device,
        &progress,
    )?;
    bar.finish_and_clear();
    eprint!("{}", evaluation.report);
    eprintln!(
        "{} questions ({} prompt tokens) in {:.1}s, model loading included",
        evaluation.predictions.len(),
        evaluation.report.prompt_tokens,
        start.elapsed().as_secs_f64()
    );
    if let Some(dir) = &args.output {
        write_outputs(dir, &evaluation)?;
        eprintln!("wrote {}", dir.join("predictions.jsonl").display());
    }
    if args.json {
        println!("{}", serde_json::to_string(&evaluation.report)?);
    }
    Ok(())
}

pub fn run_export_hf(args: ExportHfArgs) -> Result<()> {
    export_hf(&args.checkpoint, &args.output, args.tokenizer.as_deref())?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

pub fn run_blocks(args: BlocksArgs) -> Result<()> {
    let mut loader = match &args.resume {
        Some(path) => {
            let state: LoaderState = serde_json::from_slice(
                &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("{} is not a loader state", path.display()))?;
            Loader::resume(&args.data, &state, args.rank)?
        }
        None => Loader::open(
            &args.data,
            args.block_size,
            args.seed,
            args.rank,
            args.world,
        )?,
    };
    if args.follow {
        let epochs = loader.data_epochs()?;
        for change in loader.follow(&epochs)? {
            eprintln!(
                "{}: {} chunks joined, {} excluded",
                change.dir,
                change.added.len(),
                change.excluded.len()
            );
        }
    }
    for _ in 0..args.take {
        let block = loader.next_block()?;
        let bytes: Vec<u8> = block.iter().flat_map(|t| t.to_le_bytes()).collect();
        println!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
    }
    if let Some(path) = &args.save {
        std::fs::write(path, serde_json::to_vec_pretty(&loader.state())?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
