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
use steel_dataflow::pipeline::demo::demo_pipeline;
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

    eprintln!("\n== 3b. the incremental pipeline (steel run): 3 files, then 1 appended");
    let pipeline = demo_pipeline(&dir.join("pipeline"), &data_dir.join("corpus"))?;
    for (run, epoch) in pipeline.epochs.iter().enumerate() {
        eprintln!(
            "run {}: {} new files, {} documents through the operators, kept {:+}, index {} documents, {:.2} s",
            run + 1,
            epoch.new_files,
            epoch.touched,
            epoch.kept,
            epoch.index_docs,
            epoch.seconds
        );
    }
    eprintln!(
        "run 3: nothing new ({} known files), nothing changed: {}",
        pipeline.known_files, pipeline.nothing_new
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

    eprintln!("\n== 5. train tiny-dense on the chunks for 100 steps (steel train, CPU reference)");
    let run_dir = dir.join("run");
    let run = TrainSettings {
        preset: Some("tiny-dense".into()),
        data: vec![dir.join("chunks").display().to_string().parse()?],
        seq: Some(256),
        micro_batch: Some(2),
        steps: Some(100),
        lr: Some(3e-3),
        min_lr: Some(3e-4),
        warmup: Some(10),
        out: Some(run_dir.clone()),
        checkpoint_every: Some(50),
        keep: Some(2),
        ..TrainSettings::default()
    }
    .resolve()?;
    let mut report = |m: &StepMetrics| {
        if m.step == 1 || m.step.is_multiple_of(20) {
            eprintln!("step {:>3}  loss {:.3}", m.step, m.loss);
        }
    };
    train_model(&run.options, run.resume, &mut report)?;
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
