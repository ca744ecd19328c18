//! A whole evaluation: the subjects' files read, each question's prompt built from its
//! subject's dev rows and fitted to the context, every prompt scored (in parallel, rayon), and
//! the accuracies reported.
//!
//! Shots are the first K dev rows, as both official scripts take them; when the questions are
//! the dev rows themselves (no `--test`), a question is left out of its own shots (as
//! lm-evaluation-harness does when it draws shots from the split it evaluates), so each dev
//! question gets the first K of the other dev rows.

use crate::checkpoint::open_model;
use crate::device::Device;
use crate::error::TrainError;
use crate::infer;
use crate::infer::chat::{self, DEFAULT_SYSTEM};
use crate::infer::decoder::{Decoder, Loaded};
use crate::infer::forward::Logits;
use crate::infer::generate::GenerateOptions;
use crate::infer::sampling::SamplingParams;
use crate::infer::tokenizer::{Codec, stop_tokens};
use crate::mcq::error::McqError;
use crate::mcq::files::{Role, subject_files};
use crate::mcq::prompt::{self, Prompt};
use crate::mcq::questions::{Question, read_questions};
use crate::mcq::report::{self, Prediction, Report};
use crate::mcq::score::{LogitsFn, Mode, Targets, extract_answer, score};
use crate::mcq::subjects::{Benchmark, Subject};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Debug)]
pub struct McqOptions {
    pub benchmark: Benchmark,
    /// The shots' directory (C-Eval `{subject}_dev.csv`, CMMLU `dev/{subject}.csv`).
    pub dev: PathBuf,
    /// The questions' directory; `None`: the dev rows themselves.
    pub test: Option<PathBuf>,
    /// `None`: every subject with a file among the questions.
    pub subjects: Option<Vec<String>>,
    pub shots: usize,
    pub mode: Mode,
    /// `gen`: wrap each prompt in the chat template (as a user message) before it is answered.
    pub chat: bool,
    /// `gen`: the longest answer generated, in tokens.
    pub max_new_tokens: usize,
}

/// A subject's shots and questions.
#[derive(Clone, Debug)]
pub struct Task {
    pub subject: &'static Subject,
    /// The dev rows (the shots come from these), read from `dev_file`.
    pub dev: Vec<Question>,
    pub dev_file: PathBuf,
    pub questions: Vec<Question>,
}

/// The subjects `options` asks for, each with its dev rows and questions read.
pub fn load_tasks(options: &McqOptions) -> Result<Vec<Task>, McqError> {
    let benchmark = options.benchmark;
    let dev_files = subject_files(benchmark, Role::Shots, &options.dev)?;
    let (test_dir, test_files) = match &options.test {
        Some(dir) => (dir, subject_files(benchmark, Role::Questions, dir)?),
        None => (&options.dev, dev_files.clone()),
    };
    let mut names: Vec<String> = match &options.subjects {
        Some(names) => names.iter().map(|n| n.trim().to_string()).collect(),
        None => test_files.keys().cloned().collect(),
    };
    // A subject named twice is evaluated once.
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    if names.is_empty() {
        return Err(McqError::File {
            path: test_dir.clone(),
            reason: format!("no {} subject files here", benchmark.name()),
        });
    }
    let mut tasks = Vec::with_capacity(names.len());
    for name in names {
        let subject = benchmark.subject(&name).ok_or_else(|| {
            McqError::Setup(format!(
                "`{name}` is not a {} subject (the subjects are the file names' stems)",
                benchmark.name()
            ))
        })?;
        let missing = |dir: &Path| McqError::File {
            path: dir.to_path_buf(),
            reason: format!("no file for subject {name}"),
        };
        let questions = read_questions(
            benchmark,
            test_files.get(&name).ok_or_else(|| missing(test_dir))?,
        )?;
        let (dev, dev_file) = match dev_files.get(&name) {
            Some(file) => (read_questions(benchmark, file)?, file.clone()),
            None if options.shots == 0 => (Vec::new(), PathBuf::new()),
            None => return Err(missing(&options.dev)),
        };
        tasks.push(Task {
            subject,
            dev,
            dev_file,
            questions,
        });
    }
    Ok(tasks)
}

/// The shots of `question`: the first `k` dev rows other than the question itself.
fn shots_for(
    benchmark: Benchmark,
    task: &Task,
    question: &Question,
    k: usize,
) -> Result<Vec<String>, McqError> {
    task.dev
        .iter()
        .filter(|d| !(d.question == question.question && d.choices == question.choices))
        .take(k)
        .map(|d| {
            prompt::shot(benchmark, d).ok_or_else(|| McqError::Csv {
                path: task.dev_file.clone(),
                line: d.line,
                reason: "a dev row used as a shot has no answer".into(),
            })
        })
        .collect()
}

/// One question ready to score.
#[derive(Clone, Debug)]
pub struct Item {
    pub task: usize,
    pub question: usize,
    pub prompt: Prompt,
}

/// Every question's prompt, tokenized and fitted into `budget` tokens.
pub fn prepare(
    benchmark: Benchmark,
    tasks: &[Task],
    shots: usize,
    encode: &(dyn Fn(&str) -> Vec<u32> + Sync),
    budget: usize,
) -> Result<Vec<Item>, McqError> {
    let slots: Vec<(usize, usize)> = tasks
        .iter()
        .enumerate()
        .flat_map(|(t, task)| (0..task.questions.len()).map(move |q| (t, q)))
        .collect();
    slots
        .into_par_iter()
        .map(|(t, q)| {
            let task = &tasks[t];
            let question = &task.questions[q];
            let header = prompt::header(benchmark, &task.subject.zh);
            let shots = shots_for(benchmark, task, question, shots)?;
            let text = prompt::question(benchmark, question);
            Ok(Item {
                task: t,
                question: q,
                prompt: prompt::fit(&header, &shots, &text, encode, budget),
            })
        })
        .collect()
}

/// What an evaluation produced.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub report: Report,
    /// One per question, in subject then file order.
    pub predictions: Vec<Prediction>,
}

/// Greedy answers to a batch of prompts (token ids), at most `max_new_tokens` each.
pub type GenerateFn<'a> = dyn Fn(&[Vec<u32>], usize) -> Result<Vec<String>, McqError> + Sync + 'a;

/// A model as an evaluation needs it.
pub struct Scorer<'a> {
    pub encode: &'a (dyn Fn(&str) -> Vec<u32> + Sync),
    /// The model's context (`max_position_embeddings`).
    pub max_positions: usize,
    pub vocab: usize,
    pub logits: &'a LogitsFn<'a>,
    /// For `gen`.
    pub generate: Option<&'a GenerateFn<'a>>,
}

/// Prompts answered together in `gen`.
const GEN_BATCH: usize = 8;

/// Evaluate `options` with `scorer`; `progress(done, total)` is called once before the first
/// question is scored and after each one.
pub fn evaluate(
    options: &McqOptions,
    scorer: &Scorer,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Evaluation, McqError> {
    let tasks = load_tasks(options)?;
    let targets = Targets::new(options.mode, scorer.encode)?;
    let answer_room = match options.mode {
        Mode::Gen => options.max_new_tokens,
        _ => 0,
    };
    let budget = scorer
        .max_positions
        .checked_sub(targets.extra_positions() + answer_room)
        .filter(|&b| b > 0)
        .ok_or_else(|| McqError::Setup("the model's context holds no prompt".into()))?;
    // Through the chat template, the prompt is the user's message (and is fitted as such).
    let chat_encode = |text: &str| (scorer.encode)(&chat::template(DEFAULT_SYSTEM, &[], text));
    let encode: &(dyn Fn(&str) -> Vec<u32> + Sync) = match options.mode == Mode::Gen && options.chat
    {
        true => &chat_encode,
        false => scorer.encode,
    };
    let items = prepare(options.benchmark, &tasks, options.shots, encode, budget)?;
    let total = items.len() as u64;
    progress(0, total);
    let done = AtomicU64::new(0);
    let scored: Vec<_> = items
        .par_iter()
        .with_max_len(1)
        .map(|item| {
            let scored = score(&item.prompt.ids, &targets, scorer.vocab, scorer.logits);
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            scored
        })
        .collect();
    let generated = match options.mode {
        Mode::Gen => Some(answer_all(&items, options.max_new_tokens, scorer)?),
        _ => None,
    };
    let predictions: Vec<Prediction> = items
        .iter()
        .zip(&scored)
        .enumerate()
        .map(|(i, (item, scored))| {
            let task = &tasks[item.task];
            let question = &task.questions[item.question];
            let generated = generated.as_ref().map(|texts| texts[i].clone());
            Prediction {
                subject: task.subject.name.clone(),
                id: question.id.clone(),
                answer: question.answer,
                prediction: match &generated {
                    Some(text) => extract_answer(text),
                    None => Some(scored.prediction),
                },
                letter_logits: scored.scores,
                shots: item.prompt.shots,
                generated,
            }
        })
        .collect();
    let subjects: Vec<&Subject> = tasks.iter().map(|t| t.subject).collect();
    let (overall, subjects, categories) = report::scores(&subjects, &predictions);
    let report = Report {
        benchmark: options.benchmark,
        mode: options.mode,
        shots: options.shots,
        dropped_shots: items.iter().map(|i| i.prompt.dropped as u64).sum(),
        truncated: items.iter().filter(|i| i.prompt.truncated).count() as u64,
        unanswered: predictions.iter().filter(|p| p.answer.is_none()).count() as u64,
        prompt_tokens: items.iter().map(|i| i.prompt.ids.len() as u64).sum(),
        overall,
        subjects,
        categories,
    };
    Ok(Evaluation {
        report,
        predictions,
    })
}

/// Every item's generated answer, in item order (batches of [`GEN_BATCH`] prompts).
fn answer_all(
    items: &[Item],
    max_new_tokens: usize,
    scorer: &Scorer,
) -> Result<Vec<String>, McqError> {
    let generate = scorer
        .generate
        .ok_or_else(|| McqError::Setup("--mode gen needs a model that generates".into()))?;
    let mut texts = Vec::with_capacity(items.len());
    for batch in items.chunks(GEN_BATCH) {
        let prompts: Vec<Vec<u32>> = batch.iter().map(|i| i.prompt.ids.clone()).collect();
        texts.extend(generate(&prompts, max_new_tokens)?);
    }
    Ok(texts)
}

/// The logits `[ids.len() - from, vocab]` of positions `from..` of `ids`, through a fresh
/// cache: positions `..from` are fed first (their logits not computed but for the last), then
/// the rest with every row's logits.
fn logits_from<D: Decoder>(decoder: &D, ids: &[u32], from: usize) -> Result<Vec<f32>, TrainError> {
    let mut cache = decoder.new_cache();
    if from > 0 {
        decoder.forward(&mut [&mut cache], &[&ids[..from]], Logits::Last)?;
    }
    let mut rows = decoder.forward(&mut [&mut cache], &[&ids[from..]], Logits::All)?;
    Ok(rows.pop().expect("one sequence"))
}

/// Evaluate the model of `checkpoint` (a Steel checkpoint or a HuggingFace directory) on
/// `device`, tokenizing with `tokenizer` (default: the `tokenizer.json` in `checkpoint`). A
/// checkpoint records the tokenizer it was trained with: another one is refused unless
/// `allow_tokenizer_mismatch`. A device that cannot run here is refused before the model is
/// read.
pub fn evaluate_checkpoint(
    options: &McqOptions,
    checkpoint: &Path,
    tokenizer: Option<&Path>,
    allow_tokenizer_mismatch: bool,
    device: Device,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Evaluation, McqError> {
    device.check_available()?;
    let model = open_model(checkpoint)?;
    // The checks `steel generate` makes: the recorded tokenizer, one not bigger than the
    // vocabulary.
    let codec = infer::tokenizer::Tokenizer::for_model(
        tokenizer,
        checkpoint,
        &model,
        allow_tokenizer_mismatch,
    )?;
    let vocab = model.config.vocab_size;
    let max_positions = model.config.max_positions;
    let model = Loaded::new(model, device)?;
    let encoder = |text: &str| codec.encode(text).expect("a string always tokenizes");
    // Prompts are fitted to the context and tokenized in the vocabulary, so only the device
    // can fail a pass: the first failure is kept (and returned), and every row after it is
    // NaN without more device work.
    let failed: Mutex<Option<TrainError>> = Mutex::new(None);
    let logits = |ids: &[u32], from: usize| {
        let nan = || vec![f32::NAN; (ids.len() - from) * vocab];
        if failed.lock().expect("the failure lock").is_some() {
            return nan();
        }
        logits_from(&model, ids, from).unwrap_or_else(|e| {
            failed.lock().expect("the failure lock").get_or_insert(e);
            nan()
        })
    };
    let generate = |prompts: &[Vec<u32>], max_new_tokens: usize| {
        let generate_options = GenerateOptions {
            max_new_tokens,
            sampling: SamplingParams::GREEDY,
            seed: 0,
            stop_tokens: stop_tokens(&codec),
            stop_strings: Vec::new(),
        };
        let (generations, _) =
            infer::generate::generate(&model, &codec, prompts, &generate_options, &mut |_, _| {})?;
        Ok(generations.into_iter().map(|g| g.text).collect())
    };
    let scorer = Scorer {
        encode: &encoder,
        max_positions,
        vocab,
        logits: &logits,
        generate: Some(&generate),
    };
    let evaluation = evaluate(options, &scorer, progress);
    match failed.into_inner().expect("the failure lock") {
        Some(error) => Err(error.into()),
        None => evaluation,
    }
}

/// `dir/predictions.jsonl` (one line per question) and `dir/results.json` (the report), each
/// written whole under a temporary name and renamed.
pub fn write_outputs(dir: &Path, evaluation: &Evaluation) -> Result<(), McqError> {
    let fail = |path: &Path, e: std::io::Error| McqError::File {
        path: path.to_path_buf(),
        reason: format!("cannot write: {e}"),
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    let mut lines = String::new();
    for prediction in &evaluation.predictions {
        lines.push_str(&serde_json::to_string(prediction).expect("a prediction serialises"));
        lines.push('\n');
    }
    let report =
        serde_json::to_string_pretty(&evaluation.report).expect("a report serialises") + "\n";
    for (name, text) in [("predictions.jsonl", lines), ("results.json", report)] {
        let path = dir.join(name);
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| fail(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| fail(&path, e))?;
    }
    Ok(())
}
