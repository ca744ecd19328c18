//! `steel run`, `steel retract`, `steel status`: the incremental pipeline's commands.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use steel_dataflow::pipeline::bench::{IncrementalBenchOptions, bench_incremental};
use steel_dataflow::pipeline::config::PipelineConfig;
use steel_dataflow::pipeline::job::{Cluster, RunOptions, RunOutcome, Watch, Work, run};
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
pub struct StatusArgs {
    /// The job's state directory.
    #[arg(long)]
    state: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run_run(args: RunArgs) -> Result<()> {
    let config = PipelineConfig::load(&args.pipeline).map_err(anyhow::Error::msg)?;
    let cluster = if args.processes > 1 {
        let hosts = match &args.hostfile {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading hostfile {}", file.display()))?;
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .take(args.processes)
                    .map(String::from)
                    .collect()
            }
            None => (0..args.processes)
                .map(|i| format!("localhost:{}", 2101 + i))
                .collect::<Vec<_>>(),
        };
        anyhow::ensure!(
            hosts.len() == args.processes,
            "the hostfile lists {} addresses for {} processes",
            hosts.len(),
            args.processes
        );
        anyhow::ensure!(args.process < args.processes, "-p must be below -n");
        Some(Cluster {
            processes: args.processes,
            process: args.process,
            hosts,
        })
    } else {
        None
    };
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
    let config = PipelineConfig::load(&args.pipeline).map_err(anyhow::Error::msg)?;
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
    Ok(())
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
}

pub fn run_bench_incremental(args: BenchIncrementalArgs) -> Result<()> {
    let options = IncrementalBenchOptions {
        exe: std::env::current_exe().context("finding the steel binary")?,
        samples: args.samples,
        recipe: args.recipe,
        work: args.work,
        megabytes: args.mb,
        files: args.files.max(1),
        workers: args.workers,
    };
    let mut emit = |line: &_| match serde_json::to_string(line) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("cannot print a bench line: {e}"),
    };
    bench_incremental(&options, &mut emit)
        .map_err(anyhow::Error::msg)
        .context("steel bench incremental failed")
}

/// `steel demo`'s pipeline step: run on the first three corpus files, append the fourth and
/// run again, showing that the second run cleaned only the new file's documents.
pub fn demo_pipeline(job: &std::path::Path, corpus: &std::path::Path) -> Result<()> {
    let raw = job.join("raw");
    std::fs::create_dir_all(&raw).context("creating the demo job")?;
    std::fs::write(
        job.join("recipe.yaml"),
        include_str!("../recipes/demo_run.yaml"),
    )?;
    std::fs::write(
        job.join("pipeline.toml"),
        "state = \"state\"\noutput = \"out\"\nworkers = 2\n\n[[source]]\nname = \"demo\"\nformat = \"auto\"\npath = \"raw/*.jsonl\"\n\n[clean]\nrecipe = \"recipe.yaml\"\n",
    )?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.sort();
    let config = PipelineConfig::load(&job.join("pipeline.toml")).map_err(anyhow::Error::msg)?;
    let options = RunOptions {
        workers: 2,
        ..RunOptions::default()
    };
    for (step, batch) in [&files[..files.len() - 1], &files[files.len() - 1..]]
        .iter()
        .enumerate()
    {
        for file in batch.iter() {
            std::fs::copy(file, raw.join(file.file_name().expect("named")))?;
        }
        let outcome = run(&config, &options, Work::Ingest).context("steel run failed")?;
        for report in &outcome.epochs {
            let touched = report.ops.first().map_or(0, |op| op.docs_in);
            eprintln!(
                "run {}: {} new files, {touched} documents through the operators, kept {:+}, index {} documents, {:.2} s",
                step + 1,
                report.files.len(),
                report.sources.values().map(|c| c.kept).sum::<i64>(),
                report.index_docs,
                report.seconds
            );
        }
    }
    let again = run(&config, &options, Work::Ingest).context("steel run failed")?;
    eprintln!(
        "run 3: nothing new ({} known files), nothing changed: {}",
        again.known_files, again.nothing_new
    );
    Ok(())
}
