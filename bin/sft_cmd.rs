//! The fine-tuning commands: `sft`, `dpo` and `eval chat`.

use crate::train_cmd::run_resolved;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use steel_trainer::chat_eval::evaluate_chat;
use steel_trainer::checkpoint;
use steel_trainer::device::Device;
use steel_trainer::dpo::loss::{Settings as DpoLossSettings, Variant};
use steel_trainer::dpo::train::{DpoData, DpoMetrics, dpo};
use steel_trainer::infer::tokenizer::Tokenizer;
use steel_trainer::settings::{TrainRun, TrainSettings};
use steel_trainer::sft::{SftOptions, read_pairs};
use steel_trainer::sft_settings::SftSettings;

/// `steel sft`: `steel train`'s flags, with `--data` naming chat files (JSONL of
/// `{"messages": [...]}` or of rendered chat `{"text"}` as `steel convert` writes it).
#[derive(Args)]
#[command(mut_arg("data", |arg| arg.help(
    "Chat data: a JSONL file of {\"messages\": [{\"role\", \"content\"}, ...]} or of rendered chat \
     text {\"text\"} (steel convert's output). Repeatable. With --resume it may be left out"
)))]
pub struct SftArgs {
    /// A TOML file with any of the training settings (same names, snake_case); flags given
    /// on the command line win. Paths in it are relative to the file.
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: TrainSettings,
    #[command(flatten)]
    sft: SftSettings,
}

pub fn run_sft(args: SftArgs) -> Result<()> {
    let file = match &args.config {
        Some(path) => TrainSettings::load(path)?,
        None => TrainSettings::default(),
    };
    run_resolved(args.sft.resolve(args.settings.or(file))?)
}

#[derive(Args)]
pub struct ChatEvalArgs {
    /// A checkpoint (step-NNNNNNNN/) or any directory with config.json and model.safetensors.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The tokenizer.json (default: the one in --checkpoint).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Chat data: JSONL of {"messages": [...]} or of rendered chat text {"text"}.
    #[arg(long)]
    data: PathBuf,
    /// Tokens per conversation; longer ones are cut at the end.
    #[arg(long, default_value_t = SftOptions::default().cutoff)]
    cutoff: usize,
    /// Score every token, the prompt's too.
    #[arg(long)]
    train_on_prompt: bool,
    /// Score only the last assistant reply of each conversation.
    #[arg(long)]
    last_turn_only: bool,
    /// Print {"loss", "tokens", "examples"} as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// cpu, or cuda (a binary built with --features cuda).
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// Score with a tokenizer other than the one the checkpoint records.
    #[arg(long)]
    allow_tokenizer_mismatch: bool,
}

pub fn run_eval_chat(args: ChatEvalArgs) -> Result<()> {
    let options = SftOptions {
        cutoff: args.cutoff,
        packing: false,
        train_on_prompt: args.train_on_prompt,
        last_turn_only: args.last_turn_only,
    };
    let result = evaluate_chat(
        &args.checkpoint,
        args.tokenizer.as_deref(),
        &args.data,
        &options,
        args.device,
        args.allow_tokenizer_mismatch,
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        eprintln!(
            "SFT loss {:.4} over {} trained tokens ({} conversations)",
            result.loss, result.tokens, result.examples
        );
    }
    Ok(())
}

/// `steel dpo`: `steel train`'s flags, with `--data` naming a JSONL file of preference pairs
/// and `--micro-batch` counting pairs.
#[derive(Args)]
#[command(mut_arg("data", |arg| arg.help(
    "Preference pairs: a JSONL file of {\"prompt\", \"chosen\", \"rejected\"}, each a string or \
     a message list (TRL's format). With --resume it may be left out"
)))]
pub struct DpoArgs {
    /// A TOML file with any of the training settings (same names, snake_case); flags given
    /// on the command line win. Paths in it are relative to the file.
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: TrainSettings,
    /// The preference loss, as TRL names it: sigmoid (DPO; cDPO with --label-smoothing),
    /// robust, ipo, hinge, or the reference-free simpo and orpo.
    #[arg(long, default_value = "sigmoid")]
    loss: Variant,
    /// β (ipo: τ; orpo: λ) [default: 0.1; simpo 2.5].
    #[arg(long)]
    beta: Option<f64>,
    /// ε, the share of labels taken as wrong (sigmoid = cDPO, robust, simpo) [default: 0].
    #[arg(long)]
    label_smoothing: Option<f64>,
    /// SimPO's target margin γ [default: 1.375].
    #[arg(long)]
    gamma: Option<f64>,
    /// Tokens per prompt + completion; the prompt is cut from its start, the completion at
    /// its end.
    #[arg(long, default_value_t = SftOptions::default().cutoff)]
    cutoff: usize,
}

pub fn run_dpo(args: DpoArgs) -> Result<()> {
    let file = match &args.config {
        Some(path) => TrainSettings::load(path)?,
        None => TrainSettings::default(),
    };
    let mut settings = args.settings.or(file);
    let mut loss = DpoLossSettings::new(args.loss);
    loss.beta = args.beta.unwrap_or(loss.beta);
    loss.label_smoothing = args.label_smoothing.unwrap_or(loss.label_smoothing);
    loss.gamma = args.gamma.unwrap_or(loss.gamma);
    let source = match settings.data.first() {
        Some(source) => source.dir.clone(),
        None => resumed_pairs(&settings)?,
    };
    let tokenizer = settings
        .tokenizer
        .clone()
        .or_else(|| settings.init_from.as_ref().map(|d| d.join("tokenizer.json")))
        .context("the pairs are tokenized with --tokenizer (or the --init-from directory's tokenizer.json)")?;
    let codec = Tokenizer::load(&tokenizer)?;
    let set = read_pairs(&source, &codec, args.cutoff)?;
    for skipped in &set.skipped {
        eprintln!("skipped {skipped}");
    }
    let pairs = set.pairs;
    settings.seq = Some(args.cutoff as u64);
    // TRL's DPOConfig: learning rate 5e-6 (Steel-LLM's DPO too), no weight decay.
    settings.lr = settings.lr.or(Some(5e-6));
    settings.weight_decay = settings.weight_decay.or(Some(0.0));
    let TrainRun { options, resume } = settings.resolve_without_chunks()?;
    let data = DpoData {
        pairs,
        source: source.display().to_string(),
        loss,
    };
    let steps = options.steps;
    let mut report = |m: &DpoMetrics| {
        if m.step == 1 || m.step.is_multiple_of(10) || m.step == steps {
            eprintln!(
                "step {:>6}/{steps}  loss {:.4}  margin {:.4}  accuracy {:.2}  lr {:.2e}",
                m.step, m.loss, m.margin, m.accuracy, m.lr
            );
        }
    };
    let state = dpo(&options, &data, resume, &mut report)?;
    eprintln!(
        "{} steps; checkpoints and metrics.jsonl in {}",
        state.step,
        options.out.display()
    );
    Ok(())
}

/// The pairs file a resumed DPO run was trained on, as its newest checkpoint records it.
fn resumed_pairs(settings: &TrainSettings) -> Result<PathBuf> {
    let out = settings
        .resume
        .clone()
        .flatten()
        .or(settings.out.clone())
        .context("--data FILE.jsonl is required")?;
    let newest = checkpoint::list(&out)
        .last()
        .cloned()
        .context("--data FILE.jsonl is required")?;
    let state = checkpoint::ModelDir::open(&newest)?
        .state()?
        .and_then(|state| state.rows)
        .with_context(|| format!("`{}` records no pairs; give --data", newest.display()))?;
    Ok(PathBuf::from(state.dir))
}
