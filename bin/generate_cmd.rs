//! `steel generate` and `steel chat`: text from a checkpoint on the CPU or a GPU, through the
//! key/value-cached forward pass (`steel_trainer::infer`).

use anyhow::{Context, Result};
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use steel_trainer::checkpoint::open_model;
use steel_trainer::device::Device;
use steel_trainer::infer::chat::{Chat, Command, DEFAULT_SYSTEM, template};
use steel_trainer::infer::decoder::Loaded;
use steel_trainer::infer::generate::{
    GenerateOptions, Generation, generate_in_batches, read_prompts,
};
use steel_trainer::infer::sampling::SamplingParams;
use steel_trainer::infer::tokenizer::{Codec, Tokenizer, stop_tokens};

/// The model and tokenizer flags `generate`, `chat` and `serve` take.
#[derive(Args)]
pub struct ModelArgs {
    /// A checkpoint (step-NNNNNNNN/) or any directory with config.json and model.safetensors.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The tokenizer.json (default: the one in the checkpoint directory).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Use a tokenizer other than the one the checkpoint records it was trained with.
    #[arg(long)]
    allow_tokenizer_mismatch: bool,
    /// `cpu`, or `cuda` (GPU 0: bf16 weights and a key/value cache on the device; needs a
    /// binary built with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: Device,
}

/// Sampling flags; unset ones take the command's defaults.
#[derive(Args)]
pub struct SamplingArgs {
    /// 0: greedy [generate: 0, chat: 0.7].
    #[arg(long)]
    temperature: Option<f32>,
    /// Keep the K most likely tokens; 0: off [generate: 0, chat: 20].
    #[arg(long)]
    top_k: Option<usize>,
    /// Keep the most likely tokens up to this probability mass; 1: off [generate: 1, chat: 0.8].
    #[arg(long)]
    top_p: Option<f32>,
    /// Drop tokens less likely than this times the most likely one; 0: off [0].
    #[arg(long)]
    min_p: Option<f32>,
    /// Penalise tokens already in the sequence (prompt included); 1: off [generate: 1,
    /// chat: 1.05].
    #[arg(long)]
    repetition_penalty: Option<f32>,
    /// Seed of the sampler (prompt i of a batch, or reply i of a chat, uses seed + i).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// End the text before this string (repeatable); <|im_end|> and <|endoftext|> always stop.
    #[arg(long)]
    stop: Vec<String>,
}

impl SamplingArgs {
    fn params(&self, defaults: SamplingParams) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_k: self.top_k.unwrap_or(defaults.top_k),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            min_p: self.min_p.unwrap_or(defaults.min_p),
            repetition_penalty: self
                .repetition_penalty
                .unwrap_or(defaults.repetition_penalty),
        }
    }
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt.
    #[arg(long, conflicts_with = "prompts", required_unless_present = "prompts")]
    prompt: Option<String>,
    /// A batch of prompts: a JSONL file, one {"prompt": "..."} per line.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Prompts generated together (one batched pass per step), the file's in groups of this.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Wrap each prompt in the Qwen chat template, as a user message.
    #[arg(long)]
    chat: bool,
    /// The system prompt of --chat.
    #[arg(long, default_value = DEFAULT_SYSTEM, requires = "chat")]
    system: String,
    /// Tokens to generate at most per prompt.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Print one {"tokens", "text", "stop_reason", "tokens_per_second"} per prompt instead of
    /// streaming the text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The system prompt.
    #[arg(long, default_value = DEFAULT_SYSTEM)]
    system: String,
    /// Tokens per reply at most.
    #[arg(long, default_value_t = 512)]
    max_new_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Print each reply as one JSON line {"tokens", "text", "stop_reason",
    /// "tokens_per_second", "prompt_tokens", "dropped_turns"} instead of streaming it.
    #[arg(long)]
    json: bool,
}

/// The model on its device and its tokenizer, the tokenizer checked against the model; a
/// device that cannot run here is refused before the model is read.
pub fn load(args: &ModelArgs) -> Result<(Loaded, Tokenizer)> {
    args.device.check_available()?;
    let model = open_model(&args.checkpoint)?;
    let tokenizer = Tokenizer::for_model(
        args.tokenizer.as_deref(),
        &args.checkpoint,
        &model,
        args.allow_tokenizer_mismatch,
    )?;
    Ok((Loaded::new(model, args.device)?, tokenizer))
}

fn options(
    sampling: &SamplingArgs,
    defaults: SamplingParams,
    max_new_tokens: usize,
    codec: &dyn Codec,
) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens,
        sampling: sampling.params(defaults),
        seed: sampling.seed,
        stop_tokens: stop_tokens(codec),
        stop_strings: sampling.stop.clone(),
    }
}

fn print_flush(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (`| head`) ends the output, not the generation.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

pub fn run_generate(args: GenerateArgs) -> Result<()> {
    let (model, tokenizer) = load(&args.model)?;
    let texts = match (&args.prompt, &args.prompts) {
        (Some(prompt), _) => vec![prompt.clone()],
        (None, Some(file)) => read_prompts(file)?,
        (None, None) => unreachable!("clap requires one"),
    };
    let prompts = texts
        .iter()
        .map(|text| {
            let text = if args.chat {
                template(&args.system, &[], text)
            } else {
                text.clone()
            };
            tokenizer.encode(&text)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = options(
        &args.sampling,
        SamplingParams::GREEDY,
        args.max_new_tokens,
        &tokenizer,
    );
    // One prompt streams its text; a batch prints each text once all are done.
    let stream = !args.json && prompts.len() == 1;
    let (generations, stats) = generate_in_batches(
        &model,
        &tokenizer,
        &prompts,
        args.batch,
        &options,
        &mut |_, piece| {
            if stream {
                print_flush(piece)
            }
        },
    )?;
    for (i, generation) in generations.iter().enumerate() {
        if args.json {
            println!("{}", serde_json::to_string(generation)?);
        } else if stream {
            println!();
        } else {
            println!("=== {i} ===\n{}", generation.text);
        }
    }
    eprintln!(
        "{} prompt(s): prefill {} tokens in {:.2}s, decode {} tokens in {:.2}s ({:.1} tokens/s); \
         stopped: {}",
        stats.sequences,
        stats.prefill_tokens,
        stats.prefill_seconds,
        stats.decode_tokens,
        stats.decode_seconds,
        stats.decode_tokens_per_second(),
        stop_reasons(&generations)
    );
    Ok(())
}

fn stop_reasons(generations: &[Generation]) -> String {
    let names: Vec<&str> = generations.iter().map(|g| g.stop_reason.as_str()).collect();
    names.join(", ")
}

pub fn run_chat(args: ChatArgs) -> Result<()> {
    let (model, tokenizer) = load(&args.model)?;
    let options = options(
        &args.sampling,
        SamplingParams::CHAT,
        args.max_new_tokens,
        &tokenizer,
    );
    let mut chat = Chat::new(&model, &tokenizer, options, Some(args.system));
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "{}: /reset forgets the conversation, /system TEXT sets the system prompt, /quit ends",
            args.model.checkpoint.display()
        );
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            print_flush("> ");
        }
        let Some(line) = lines.next() else { break };
        match Command::parse(&line.context("reading stdin")?) {
            Command::Quit => break,
            Command::Nothing => {}
            Command::Reset => {
                chat.reset();
                eprintln!("(conversation cleared)");
            }
            Command::System(system) => {
                chat.set_system(system);
                eprintln!("(system prompt: {})", chat.system());
            }
            Command::Unknown(word) => {
                eprintln!("unknown command {word}: /reset, /system TEXT, /quit")
            }
            Command::Say(message) => {
                let json = args.json;
                match chat.say(&message, &mut |piece| {
                    if !json {
                        print_flush(piece)
                    }
                }) {
                    Ok(reply) if json => {
                        let mut line = serde_json::to_value(&reply.generation)?;
                        line["prompt_tokens"] = reply.prompt_tokens.into();
                        line["dropped_turns"] = reply.dropped_turns.into();
                        println!("{line}");
                    }
                    Ok(reply) => {
                        println!();
                        if reply.dropped_turns > 0 {
                            eprintln!(
                                "({} oldest turn(s) dropped to fit the context)",
                                reply.dropped_turns
                            );
                        }
                    }
                    // A message too long for the context: say so and go on.
                    Err(e) => eprintln!("error: {e}"),
                }
            }
        }
    }
    Ok(())
}
