//! The training commands: `train`, `import hf`, `eval`, `export hf`, `blocks`.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use steel_trainer::checkpoint::export_hf;
use steel_trainer::data::{DataSource, Loader, LoaderState};
use steel_trainer::eval::evaluate_checkpoint;
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

#[derive(Args)]
pub struct EvalArgs {
    /// A checkpoint (step-NNNNNNNN/) or any directory with config.json and model.safetensors.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The chunk directory to score.
    #[arg(long)]
    data: PathBuf,
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
    let TrainRun { options, resume } = resolve(args)?;
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
    let result = evaluate_checkpoint(
        &args.checkpoint,
        &args.data,
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
