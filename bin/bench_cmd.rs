//! `steel bench ...`: each parses its settings, runs its driver from `steel_bench` and prints
//! the result lines as JSON.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use steel_bench::BenchLine;
use steel_bench::clean::{CleanBenchOptions, bench_clean};
use steel_bench::convert::{ConvertBenchOptions, bench_convert};
use steel_bench::generate::{GenerateBenchOptions, bench_generate};
use steel_bench::incremental::{IncrementalBenchOptions, bench_incremental};
use steel_bench::index_scale::{IndexScaleOptions, bench_index_scale};
use steel_bench::pack::{PackBenchOptions, bench_loader, bench_pack};
use steel_bench::train::{BenchTrainOptions, bench_train};
use steel_trainer::device::Device;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Conversion throughput over replicated real samples, next to a parse-and-write floor.
    Convert(BenchConvertArgs),
    /// Tokenisation and packing throughput with the Qwen tokenizer at each thread count.
    Pack(BenchPackArgs),
    /// Cleaning throughput of a recipe over the text samples scaled up, and per operator.
    Clean(BenchCleanArgs),
    /// `steel run`: a full run against appending 1% to a state of the other 99%.
    Incremental(BenchIncrementalArgs),
    /// `steel run`: appending the same shard to synthetic indexes of growing size.
    Index(BenchIndexArgs),
    /// Training throughput of a preset on random tokens: tokens/s, MFU, peak GPU memory.
    Train(BenchTrainArgs),
    /// CPU generation throughput of a preset on random prompts: prefill and decode tokens/s
    /// at each batch size.
    Generate(BenchGenerateArgs),
}

#[derive(Args)]
pub struct BenchGenerateArgs {
    /// Model preset (see `steel train --preset`), seeded random weights.
    #[arg(long, default_value = "tiny-dense")]
    preset: String,
    /// Batch sizes to measure, comma separated.
    #[arg(long, default_value = "1,8", value_delimiter = ',')]
    batches: Vec<usize>,
    /// Prompt tokens per sequence.
    #[arg(long, default_value_t = 32)]
    prompt_tokens: usize,
    /// Tokens generated per sequence (greedy, no stop token).
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
}

#[derive(Args)]
pub struct BenchTrainArgs {
    /// Model preset (see `steel train --preset`).
    #[arg(long, default_value = "tiny-dense")]
    preset: String,
    /// cpu, cuda (flash attention) or cuda:cublas.
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// Sequences per step.
    #[arg(long, default_value_t = 4)]
    micro_batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 2048)]
    seq: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Also time SFT-shaped batches (two documents per row, a quarter of each untrained) on
    /// the same model and report their speed as a ratio to the pretraining batches'.
    #[arg(long)]
    sft: bool,
}

#[derive(Args)]
pub struct BenchCleanArgs {
    /// Directory of sample files.
    #[arg(long, default_value = "../shared/data/steel-samples")]
    samples: PathBuf,
    /// The recipe to measure.
    #[arg(long, default_value = "../shared/data/recipes/steel_text.yaml")]
    recipe: PathBuf,
    /// Scratch directory (inputs are made once and reused).
    #[arg(long, default_value = "target/bench-clean")]
    work: PathBuf,
    /// Copies of the converted text samples (9.5 MB each) in the input.
    #[arg(long, default_value_t = 22)]
    copies: usize,
    /// Copies in the input of the per-operator runs.
    #[arg(long, default_value_t = 2)]
    op_copies: usize,
    /// Thread counts to measure the whole recipe at, comma separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    threads_list: Vec<usize>,
    /// Skip the per-operator runs.
    #[arg(long)]
    no_per_op: bool,
    /// Leave these operators out of the recipe (comma separated), e.g. perplexity_filter to
    /// compare with a data-juicer that cannot download its model.
    #[arg(long, value_delimiter = ',')]
    without: Vec<String>,
}

#[derive(Args)]
pub struct BenchPackArgs {
    /// Directory of sample files.
    #[arg(long, default_value = "../shared/data/steel-samples")]
    samples: PathBuf,
    /// The tokenizer to pack with.
    #[arg(
        long,
        default_value = "../shared/data/tokenizers/qwen1_5/tokenizer.json"
    )]
    tokenizer: PathBuf,
    /// Scratch directory.
    #[arg(long, default_value = "target/bench-pack")]
    work: PathBuf,
    /// Copies of the converted samples in the input.
    #[arg(long, default_value_t = 4)]
    copies: usize,
    /// Thread counts to measure, comma separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    threads_list: Vec<usize>,
}

#[derive(Args)]
pub struct BenchConvertArgs {
    /// Directory of sample files.
    #[arg(long, default_value = "../shared/data/steel-samples")]
    samples: PathBuf,
    /// Scratch directory for replicated inputs and outputs.
    #[arg(long, default_value = "target/bench-convert")]
    work: PathBuf,
    /// Copies of each sample file in the input.
    #[arg(long, default_value_t = 10)]
    copies: usize,
    /// Thread counts to measure, comma separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    threads_list: Vec<usize>,
}

#[derive(Args)]
pub struct BenchIndexArgs {
    /// Directory of sample files (the appended shard's texts).
    #[arg(long, default_value = "../shared/data/steel-samples")]
    samples: PathBuf,
    /// The recipe the pipeline runs (it must have a near-duplicate deduplicator).
    #[arg(long, default_value = "recipes/demo_run.yaml")]
    recipe: PathBuf,
    /// Scratch directory (each index is removed after its append).
    #[arg(long, default_value = "target/bench-index")]
    work: PathBuf,
    /// Index sizes in millions of documents, comma separated (0, the baseline, is added).
    #[arg(long, default_value = "1,10,30", value_delimiter = ',')]
    millions: Vec<f64>,
    /// Documents of the appended shard.
    #[arg(long, default_value_t = 50_000)]
    shard_docs: usize,
    /// Timely workers of each run.
    #[arg(long, short = 'w', default_value_t = 2)]
    workers: usize,
}

#[derive(Args)]
pub struct BenchIncrementalArgs {
    /// Directory of sample files.
    #[arg(long, default_value = "../shared/data/steel-samples")]
    samples: PathBuf,
    /// The recipe the pipeline runs.
    #[arg(long, default_value = "recipes/demo_run.yaml")]
    recipe: PathBuf,
    /// Scratch directory (the corpus is made once and reused).
    #[arg(long, default_value = "target/bench-incremental")]
    work: PathBuf,
    /// Corpus size in MB.
    #[arg(long, default_value_t = 1024)]
    mb: u64,
    /// Corpus files (the append is 1% of them).
    #[arg(long, default_value_t = 100)]
    files: usize,
    /// Timely workers of each run.
    #[arg(long, short = 'w', default_value_t = 2)]
    workers: usize,
    /// Full runs and `steel clean`s, taken in turn; the ratio is of their medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn print(line: &BenchLine) {
    println!("{}", line.to_json());
}

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Convert(args) => {
            let options = ConvertBenchOptions {
                samples: args.samples,
                work: args.work,
                copies: args.copies,
                threads: args.threads_list,
            };
            bench_convert(&options)
                .context("steel bench convert failed")?
                .iter()
                .for_each(print);
        }
        BenchCommand::Pack(args) => {
            let options = PackBenchOptions {
                samples: args.samples,
                tokenizer: args.tokenizer,
                work: args.work,
                copies: args.copies,
                threads: args.threads_list,
            };
            bench_pack(&options)
                .context("steel bench pack failed")?
                .iter()
                .for_each(print);
            let threads = options.threads.first().copied().unwrap_or(1);
            let chunks = options.work.join(format!("chunks-{threads}"));
            print(&bench_loader(&chunks, 2048).context("loader benchmark failed")?);
        }
        BenchCommand::Clean(args) => {
            let options = CleanBenchOptions {
                samples: args.samples,
                recipe: args.recipe,
                work: args.work,
                copies: args.copies,
                op_copies: args.op_copies,
                threads: args.threads_list,
                per_op: !args.no_per_op,
                without: args.without,
            };
            bench_clean(&options, &mut print).context("steel bench clean failed")?;
        }
        BenchCommand::Incremental(args) => {
            let options = IncrementalBenchOptions {
                exe: std::env::current_exe().context("finding the steel binary")?,
                samples: args.samples,
                recipe: args.recipe,
                work: args.work,
                megabytes: args.mb,
                files: args.files.max(1),
                workers: args.workers,
                rounds: args.rounds.max(1),
            };
            bench_incremental(&options, &mut print).context("steel bench incremental failed")?;
        }
        BenchCommand::Index(args) => {
            let options = IndexScaleOptions {
                exe: std::env::current_exe().context("finding the steel binary")?,
                samples: args.samples,
                recipe: args.recipe,
                work: args.work,
                sizes: args.millions.iter().map(|m| (m * 1e6) as u64).collect(),
                shard_docs: args.shard_docs.max(1),
                workers: args.workers,
            };
            bench_index_scale(&options, &mut print).context("steel bench index failed")?;
        }
        BenchCommand::Train(args) => {
            let options = BenchTrainOptions {
                preset: args.preset,
                device: args.device,
                micro_batch: args.micro_batch,
                seq: args.seq,
                steps: args.steps,
                warmup: args.warmup,
                sft: false,
            };
            let plain = bench_train(&options).context("steel bench train failed")?;
            print(&plain);
            if args.sft {
                let sft = BenchTrainOptions {
                    sft: true,
                    ..options
                };
                let shaped = bench_train(&sft).context("steel bench train --sft failed")?;
                print(&shaped);
                let ratio = shaped.seconds / plain.seconds;
                print(
                    &BenchLine::new("train-sft-cost", &sft.preset, shaped.seconds)
                        .with("sft_time_over_pretrain_time", ratio),
                );
            }
        }
        BenchCommand::Generate(args) => {
            let options = GenerateBenchOptions {
                preset: args.preset,
                batches: args.batches,
                prompt_tokens: args.prompt_tokens,
                new_tokens: args.new_tokens,
            };
            bench_generate(&options)
                .context("steel bench generate failed")?
                .iter()
                .for_each(print);
        }
    }
    Ok(())
}
