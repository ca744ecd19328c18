//! `steel run`, `steel retract`, `steel compact`, `steel status`: the incremental pipeline's
//! commands.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use steel_dataflow::pipeline::config::PipelineConfig;
use steel_dataflow::pipeline::job::{Cluster, RunOptions, RunOutcome, Watch, Work, compact, run};
use steel_dataflow::pipeline::status::status;

#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// The job: sources, recipe, dedup, output and state directories, workers.
    pipeline: PathBuf,
    /// Print the outcome as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Timely worker threads per process (default: the config's `workers`).
    #[arg(long, short = 'w')]
    workers: Option<usize>,
    /// Processes in a timely cluster (each runs this command with its own -p).
    #[arg(long, short = 'n', default_value_t = 1)]
    processes: usize,
    /// This process's index in the cluster; process 0 reads and writes everything.
    #[arg(long, short = 'p', default_value_t = 0)]
    process: usize,
    /// A file of `host:port` lines, one per process (default: localhost:2101, 2102, ...).
    #[arg(long, short = 'h')]
    hostfile: Option<PathBuf>,
    /// Stay up and ingest new files as they appear, one epoch per batch of files.
    #[arg(long)]
    watch: bool,
    /// With --watch: seconds between looks for new files.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// With --watch: stop after this many seconds with nothing new.
    #[arg(long)]
    idle_exit: Option<f64>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

#[derive(Args)]
pub struct RetractArgs {
    /// The job whose state to change.
    #[arg(default_value = "pipeline.toml")]
    pipeline: PathBuf,
    /// The source whose documents to retract.
    #[arg(long)]
    source: String,
    /// Only this file of the source (its path as `steel status` / the manifest shows it).
    #[arg(long)]
    file: Option<String>,
    #[arg(long, short = 'w')]
    workers: Option<usize>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct CompactArgs {
    /// The job whose index to compact.
    #[arg(default_value = "pipeline.toml")]
    pipeline: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct StatusArgs {
    /// The job's state directory.
    #[arg(long)]
    state: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run_run(args: RunArgs) -> Result<()> {
    let config = PipelineConfig::load(&args.pipeline)?;
    let cluster = Cluster::new(args.processes, args.process, args.hostfile.as_deref())?;
    let options = RunOptions {
        workers: args.workers.unwrap_or(config.workers),
        cluster,
        watch: args.watch.then(|| Watch {
            interval: Duration::from_secs_f64(args.interval.max(0.01)),
            idle_exit: args.idle_exit.map(Duration::from_secs_f64),
        }),
        progress: !args.json,
    };
    let outcome = run(&config, &options, Work::Ingest).context("steel run failed")?;
    print_outcome(&outcome, args.json)
}

pub fn run_retract(args: RetractArgs) -> Result<()> {
    let config = PipelineConfig::load(&args.pipeline)?;
    let options = RunOptions {
        workers: args.workers.unwrap_or(config.workers),
        progress: !args.json,
        ..RunOptions::default()
    };
    let work = Work::Retract {
        source: args.source,
        file: args.file,
    };
    let outcome = run(&config, &options, work).context("steel retract failed")?;
    print_outcome(&outcome, args.json)
}

pub fn run_compact(args: CompactArgs) -> Result<()> {
    let config = PipelineConfig::load(&args.pipeline)?;
    let outcome = compact(&config).context("steel compact failed")?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        eprintln!(
            "index: {} segments -> {}, {} documents, {:.1} MB on disk",
            outcome.segments_before,
            outcome.segments_after,
            outcome.index_docs,
            outcome.index_bytes as f64 / 1e6
        );
    }
    Ok(())
}

pub fn run_status(args: StatusArgs) -> Result<()> {
    let status = status(&args.state).context("steel status failed")?;
    if args.json {
        println!("{}", serde_json::to_string(&status)?);
    } else {
        print!("{status}");
    }
    Ok(())
}

fn print_outcome(outcome: &RunOutcome, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(outcome)?);
        return Ok(());
    }
    for note in &outcome.notes {
        eprintln!("note: {note}");
    }
    for path in &outcome.removed_leftovers {
        eprintln!("removed {path}, left by an interrupted run; its work is redone");
    }
    for skipped in &outcome.skipped {
        eprintln!("skipped {}: {}", skipped.path, skipped.reason);
    }
    if outcome.nothing_new {
        eprintln!(
            "nothing new: {} known files unchanged; nothing was changed",
            outcome.known_files
        );
    }
    for report in &outcome.epochs {
        eprint!("{}", report.to_text());
    }
    for pack in &outcome.packs {
        eprintln!("[pack]");
        crate::data_cmd::print_pack_outcome(pack);
    }
    Ok(())
}
