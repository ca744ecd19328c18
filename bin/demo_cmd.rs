//! `steel demo`: every stage that exists, end to end on a generated corpus, each step one
//! library call whose result is printed.

use crate::data_cmd::{print_demo_data_summary, print_pack_outcome};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use steel_dataflow::clean::lm::Unit;
use steel_dataflow::clean::lm::train::train_documents;
use steel_dataflow::clean::recipe::Recipe;
use steel_dataflow::clean::run::{CleanOptions, clean};
use steel_dataflow::convert::{ConvertOptions, convert};
use steel_dataflow::demo_data::{DemoDataOptions, generate};
use steel_dataflow::demo_score::score;
use steel_dataflow::pack::tokenizer::{read_texts, train};
use steel_dataflow::pack::{PackOptions, pack};
use steel_dataflow::pipeline::demo::{DemoEpoch, DemoJob};
use steel_dataflow::pipeline::job::RunOutcome;
use steel_dataflow::sources::FormatChoice;
use steel_trainer::checkpoint::export_hf;
use steel_trainer::settings::TrainSettings;
use steel_trainer::train::{StepMetrics, train as train_model};

#[derive(Args)]
pub struct DemoArgs {
    /// Working directory (default: a new directory under the system temp dir). Must be
    /// empty or absent.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Number of generated documents.
    #[arg(long, default_value_t = 2000)]
    docs: usize,
}

/// The recipe `steel demo` cleans with (shipped in `recipes/`).
const DEMO_RECIPE: &str = include_str!("../recipes/demo_clean.yaml");

pub fn run_demo(args: DemoArgs) -> Result<()> {
    let dir = args
        .dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("steel-demo-{}", std::process::id())));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        anyhow::bail!(
            "demo directory {} is not empty; give an empty or new one",
            dir.display()
        );
    }
    eprintln!("steel demo in {}", dir.display());

    eprintln!("\n== 1. generate a synthetic corpus (steel demo-data)");
    let data_dir = dir.join("data");
    let options = DemoDataOptions {
        docs: args.docs,
        seed: 42,
        files: 4,
        output: data_dir.clone(),
    };
    let generated = generate(&options).context("generating the demo corpus")?;
    print_demo_data_summary(&generated);

    eprintln!("\n== 2. convert to unified documents (steel convert --format auto)");
    let converted_dir = dir.join("converted");
    let inputs = vec![data_dir.join("corpus").display().to_string()];
    let summary = convert(
        &inputs,
        &ConvertOptions::new(FormatChoice::Auto, &converted_dir),
    )
    .context("converting the demo corpus")?;
    eprintln!("{summary}");

    eprintln!("\n== 3. clean with a data-juicer recipe (steel lm train, steel clean)");
    let converted = vec![converted_dir.display().to_string()];
    let model = dir.join("zh-char-3gram.arpa");
    let (arpa, _) = train_documents(&converted, 3, Unit::Char)?;
    std::fs::write(&model, arpa).context("writing the demo language model")?;
    let recipe_path = dir.join("demo_clean.yaml");
    std::fs::write(&recipe_path, DEMO_RECIPE).context("writing the demo recipe")?;
    let recipe = Recipe::parse(DEMO_RECIPE)?;
    let cleaned_dir = dir.join("cleaned");
    let mut clean_options = CleanOptions::new(&recipe_path, &cleaned_dir);
    clean_options.trace = 2;
    clean_options.resources.lm_model = Some(model);
    let report = clean(&converted, &recipe, &clean_options).context("cleaning the demo corpus")?;
    eprintln!("{report}");
    eprintln!(
        "{}",
        score(&data_dir, &cleaned_dir).context("scoring against the demo truth")?
    );

    eprintln!("\n== 4. train a small byte-level BPE (steel tokenizer train) and pack (steel pack)");
    let cleaned = vec![cleaned_dir.display().to_string()];
    let tokenizer = dir.join("tokenizer.json");
    let texts = read_texts(&cleaned).context("reading the cleaned corpus")?;
    train(texts, 2000, &tokenizer).context("training the demo tokenizer")?;
    let mut pack_options = PackOptions::new(&tokenizer, dir.join("chunks"));
    pack_options.block_size = 256;
    pack_options.chunk_blocks = 64;
    let packed = pack(&cleaned, &pack_options).context("packing the demo corpus")?;
    print_pack_outcome(&packed);

    eprintln!(
        "\n== 5. the incremental chain: steel run (clean, dedup and [pack] only what is new) -> steel train following the chunks"
    );
    let job = DemoJob::create(
        &dir.join("pipeline"),
        &data_dir.join("corpus"),
        &tokenizer,
        256,
        16,
    )?;
    let (first, last) = job.files.split_at(job.files.len() - 1);
    print_run("run 1", &job.ingest(first)?);
    let run_dir = dir.join("run");
    let mut settings = TrainSettings {
        preset: Some("tiny-dense".into()),
        data: vec![job.chunks().display().to_string().parse()?],
        seq: Some(256),
        micro_batch: Some(2),
        steps: Some(70),
        lr: Some(3e-3),
        min_lr: Some(3e-4),
        warmup: Some(10),
        out: Some(run_dir.clone()),
        checkpoint_every: Some(20),
        keep: Some(2),
        ..TrainSettings::default()
    };
    eprintln!(
        "training tiny-dense (CPU reference) on {}",
        job.chunks().display()
    );
    let mut appended = Ok(());
    let mut report = |m: &StepMetrics| {
        if m.step == 1 || m.step.is_multiple_of(20) {
            eprintln!("step {:>3}  loss {:.3}", m.step, m.loss);
        }
        if m.step == 25 {
            eprintln!("-- while it trains, the last file arrives:");
            appended = job.ingest(last).map(|outcome| print_run("run 2", &outcome));
        }
    };
    let run = settings.clone().resolve()?;
    train_model(&run.options, run.resume, &mut report)?;
    appended?;
    print_data_changes(&run_dir, 0)?;
    let again = job.ingest(&[])?;
    eprintln!(
        "run 3: nothing new ({} known files), nothing changed: {}",
        again.known_files, again.nothing_new
    );
    eprintln!("-- the second file is taken back (steel retract --file), and training goes on:");
    print_run("retract", &job.retract(&job.files[1])?);
    settings.steps = Some(100);
    settings.resume = Some(None);
    settings.follow_every = Some(5);
    let run = settings.resolve()?;
    train_model(&run.options, run.resume, &mut report_every_20)?;
    print_data_changes(&run_dir, 70)?;
    eprintln!(
        "checkpoints, metrics.jsonl and loss.svg in {}",
        run_dir.display()
    );
    let hf = dir.join("hf");
    export_hf(&run_dir.join("step-00000100"), &hf, Some(&tokenizer))?;
    eprintln!("wrote {}", hf.display());

    eprintln!(
        "\n== done. On a GPU: build with `--features cuda` and train with `steel train --device cuda`."
    );
    eprintln!("everything is in {}", dir.display());
    Ok(())
}

fn report_every_20(m: &StepMetrics) {
    if m.step.is_multiple_of(20) {
        eprintln!("step {:>3}  loss {:.3}", m.step, m.loss);
    }
}

/// One line per epoch of a demo job run, and what its `[pack]` did.
fn print_run(name: &str, outcome: &RunOutcome) {
    for report in &outcome.epochs {
        let epoch = DemoEpoch::of(report);
        eprintln!(
            "{name}: {} new files, {} documents through the operators, kept {:+}, tombstoned {}, index {} documents, {:.2} s",
            epoch.new_files,
            epoch.touched,
            epoch.kept,
            epoch.tombstoned,
            epoch.index_docs,
            epoch.seconds
        );
    }
    for pack in outcome.packs.iter().flat_map(|p| &p.epochs) {
        let retraction = &pack.retraction;
        eprintln!(
            "  packed epoch {}: {} documents into {} chunks; {} chunks taken out for {} retracted documents, {} tokens of their other documents packed again",
            pack.epoch,
            pack.docs_packed,
            pack.chunks.len(),
            retraction.chunks.len(),
            retraction.docs_removed,
            retraction.tokens_repacked
        );
    }
}

/// The data changes `steel train` logged in `metrics.jsonl` after step `after`.
fn print_data_changes(run: &std::path::Path, after: u64) -> Result<()> {
    let path = run.join("metrics.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line)?;
        let (Some(step), Some(data)) = (value["step"].as_u64(), value.get("data")) else {
            continue;
        };
        if step > after {
            let count = |key: &str| data[key].as_array().map_or(0, Vec::len);
            let mut what = Vec::new();
            if count("added") > 0 {
                what.push(format!("took in {} new chunks", count("added")));
            }
            if count("excluded") > 0 {
                what.push(format!(
                    "stopped serving {} chunks holding retracted documents",
                    count("excluded")
                ));
            }
            eprintln!(
                "step {step} (metrics.jsonl): the trainer {}; only the unserved rest of the epoch changed",
                what.join(" and ")
            );
        }
    }
    Ok(())
}
