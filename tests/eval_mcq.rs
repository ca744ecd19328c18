//! `steel eval ceval` / `steel eval cmmlu`: prompts, scoring and accuracies against oracles
//! (hand-counted sets, a model that always answers A, the official prompt strings written out,
//! the Qwen tokenizer's own ids), and the command on the shipped dev sets with a tiny model.

use std::path::{Path, PathBuf};
use std::process::Command;
use steel_trainer::infer::tokenizer::{Codec, Tokenizer};
use steel_trainer::mcq::prompt;
use steel_trainer::mcq::run::{load_tasks, prepare};
use steel_trainer::mcq::score::Targets;
use steel_trainer::mcq::{Benchmark, Evaluation, Letter, McqOptions, Mode, Scorer, evaluate};
use steel_trainer::model::config::ModelConfig;
use steel_trainer::model::params::Layout;
use steel_trainer::model::pass::{logits, logits_from};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

fn ceval_dev() -> PathBuf {
    shared().join("eval/ceval-dev")
}

fn cmmlu_dev() -> PathBuf {
    shared().join("eval/cmmlu-dev")
}

fn qwen_path() -> PathBuf {
    shared().join("tokenizers/qwen1_5/tokenizer.json")
}

/// The Qwen tokenizer as scoring uses it: text to ids, no special tokens.
fn qwen() -> impl Fn(&str) -> Vec<u32> + Sync {
    let tokenizer = Tokenizer::load(&qwen_path()).unwrap();
    move |text: &str| tokenizer.encode(text).unwrap()
}

fn options(benchmark: Benchmark, dev: &Path, shots: usize) -> McqOptions {
    McqOptions {
        benchmark,
        dev: dev.to_path_buf(),
        test: None,
        subjects: None,
        shots,
        mode: Mode::Letter,
        chat: false,
        max_new_tokens: 32,
    }
}

/// A made-up model over `vocab` tokens whose next token is always `token`.
fn always(token: u32, vocab: usize) -> impl Fn(&[u32], usize) -> Vec<f32> + Sync {
    move |ids: &[u32], from: usize| {
        let mut out = vec![0.0; (ids.len() - from) * vocab];
        for row in out.chunks_mut(vocab) {
            row[token as usize] = 10.0;
        }
        out
    }
}

/// Evaluate with a made-up model and any encoder.
fn run(
    options: &McqOptions,
    encode: &(dyn Fn(&str) -> Vec<u32> + Sync),
    vocab: usize,
    max_positions: usize,
    model: &(dyn Fn(&[u32], usize) -> Vec<f32> + Sync),
) -> Evaluation {
    let scorer = Scorer {
        encode,
        max_positions,
        vocab,
        logits: model,
        generate: None,
    };
    evaluate(options, &scorer, &|_, _| {}).unwrap()
}

/// One token per character (ids are the code points, so a vocabulary of 0x10000 covers the
/// hand-made sets' text).
fn chars(text: &str) -> Vec<u32> {
    text.chars().map(u32::from).collect()
}

/// A C-Eval directory of `{subject}_dev.csv` files, each with rows whose answers are given.
fn ceval_set(dir: &Path, subjects: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (subject, answers) in subjects {
        let mut text = String::from("id,question,A,B,C,D,answer,explanation\n");
        for (i, answer) in answers.chars().enumerate() {
            text.push_str(&format!(
                "{i},{subject} 问题 {i}____。,甲,乙,丙,丁,{answer},\n"
            ));
        }
        std::fs::write(dir.join(format!("{subject}_dev.csv")), text).unwrap();
    }
}

#[test]
fn a_model_that_always_answers_a_scores_exactly_the_share_of_a_answers() {
    // Hand-made: 3 of 7 answers are A.
    let dir = tempfile::tempdir().unwrap();
    ceval_set(dir.path(), &[("logic", "ABACD"), ("law", "AB")]);
    let a = u32::from('A');
    let evaluation = run(
        &options(Benchmark::Ceval, dir.path(), 5),
        &chars,
        0x10000,
        4096,
        &always(a, 0x10000),
    );
    assert_eq!(evaluation.report.overall.questions, 7);
    assert_eq!(evaluation.report.overall.correct, 3);
    assert!(
        evaluation
            .predictions
            .iter()
            .all(|p| p.prediction == Some(Letter::A))
    );

    // The shipped dev sets through the Qwen tokenizer: A is the answer of 51 of C-Eval's 260
    // dev rows and 93 of CMMLU's 335 (counted with Python's csv module over every file).
    let qwen = qwen();
    let a = qwen("A")[0];
    for (benchmark, dev, correct, questions) in [
        (Benchmark::Ceval, ceval_dev(), 51, 260),
        (Benchmark::Cmmlu, cmmlu_dev(), 93, 335),
    ] {
        let model = always(a, 151_646);
        let evaluation = run(&options(benchmark, &dev, 5), &qwen, 151_646, 32768, &model);
        let overall = &evaluation.report.overall;
        assert_eq!((overall.correct, overall.questions), (correct, questions));
        assert_eq!(
            overall.micro_accuracy,
            Some(correct as f64 / questions as f64)
        );
        assert_eq!(evaluation.report.dropped_shots, 0);
    }
}

#[test]
fn macro_and_micro_averages_match_a_hand_count() {
    // Always A. computer_network and operating_system are STEM, logic is Humanities.
    // computer_network: 2 of 3 right; operating_system: 0 of 1; logic: 1 of 4.
    let dir = tempfile::tempdir().unwrap();
    ceval_set(
        dir.path(),
        &[
            ("computer_network", "AAB"),
            ("operating_system", "C"),
            ("logic", "ABCD"),
        ],
    );
    let a = u32::from('A');
    let evaluation = run(
        &options(Benchmark::Ceval, dir.path(), 5),
        &chars,
        0x10000,
        4096,
        &always(a, 0x10000),
    );
    let report = &evaluation.report;
    let close = |x: Option<f64>, y: f64| (x.unwrap() - y).abs() < 1e-12;
    assert!(close(
        report.subjects["computer_network"].accuracy,
        2.0 / 3.0
    ));
    assert!(close(report.subjects["operating_system"].accuracy, 0.0));
    assert!(close(report.subjects["logic"].accuracy, 0.25));
    // Macro: the mean of the subjects; micro: over the 8 questions.
    assert!(close(
        report.overall.macro_accuracy,
        (2.0 / 3.0 + 0.0 + 0.25) / 3.0
    ));
    assert!(close(report.overall.micro_accuracy, 3.0 / 8.0));
    let stem = &report.categories["STEM"];
    assert_eq!((stem.subjects, stem.questions, stem.correct), (2, 4, 2));
    assert!(close(stem.macro_accuracy, (2.0 / 3.0 + 0.0) / 2.0));
    assert!(close(stem.micro_accuracy, 0.5));
    let humanities = &report.categories["Humanities"];
    assert!(close(humanities.macro_accuracy, 0.25));
    assert_eq!(report.categories.len(), 2);
}

#[test]
fn a_dev_question_is_left_out_of_its_own_shots() {
    let dir = tempfile::tempdir().unwrap();
    ceval_set(dir.path(), &[("logic", "ABCDA")]);
    let tasks = load_tasks(&options(Benchmark::Ceval, dir.path(), 5)).unwrap();
    let items = prepare(Benchmark::Ceval, &tasks, 5, &chars, 4096).unwrap();
    let task = &tasks[0];
    let header = prompt::header(Benchmark::Ceval, "逻辑学");
    for item in &items {
        assert_eq!(item.prompt.shots, 4, "the other four dev rows");
        let others: String = (0..5)
            .filter(|&i| i != item.question)
            .map(|i| prompt::shot(Benchmark::Ceval, &task.dev[i]).unwrap())
            .collect();
        let own = prompt::question(Benchmark::Ceval, &task.questions[item.question]);
        assert_eq!(item.prompt.ids, chars(&format!("{header}{others}{own}")));
    }
    // With --shots 2, the first two others: question 0 gets rows 1 and 2, question 3 rows 0, 1.
    let items = prepare(Benchmark::Ceval, &tasks, 2, &chars, 4096).unwrap();
    let shot = |i: usize| prompt::shot(Benchmark::Ceval, &task.dev[i]).unwrap();
    let own = |i: usize| prompt::question(Benchmark::Ceval, &task.questions[i]);
    let text =
        |shots: [usize; 2], q| format!("{header}{}{}{}", shot(shots[0]), shot(shots[1]), own(q));
    assert_eq!(items[0].prompt.ids, chars(&text([1, 2], 0)));
    assert_eq!(items[3].prompt.ids, chars(&text([0, 1], 3)));
}

#[test]
fn prompts_are_the_official_formats_exactly() {
    let qwen = qwen();
    // C-Eval, computer_network, one shot: the question with id 1 after the row with id 0.
    let tasks = load_tasks(&McqOptions {
        subjects: Some(vec!["computer_network".into()]),
        ..options(Benchmark::Ceval, &ceval_dev(), 1)
    })
    .unwrap();
    let expected = "以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n\n\
                    下列设备属于资源子网的是____。\nA. 计算机软件\nB. 网桥\nC. 交换机\nD. 路由器\n答案：A\n\n\
                    滑动窗口的作用是____。\nA. 流量控制\nB. 拥塞控制\nC. 路由控制\nD. 差错控制\n答案：";
    let task = &tasks[0];
    let text = prompt::header(Benchmark::Ceval, &task.subject.zh)
        + &prompt::shot(Benchmark::Ceval, &task.dev[0]).unwrap()
        + &prompt::question(Benchmark::Ceval, &task.questions[1]);
    assert_eq!(text, expected);
    let items = prepare(Benchmark::Ceval, &tasks, 1, &qwen, 32768).unwrap();
    assert_eq!(
        items[1].prompt.ids,
        qwen(expected),
        "tokenized whole, nothing added"
    );

    // CMMLU, agronomy, one shot.
    let tasks = load_tasks(&McqOptions {
        subjects: Some(vec!["agronomy".into()]),
        ..options(Benchmark::Cmmlu, &cmmlu_dev(), 1)
    })
    .unwrap();
    let expected = "以下是关于农学的单项选择题，请直接给出正确答案的选项。\n\n\
                    题目：肉牛屠宰后，胴体的哪个部位肉质较好\nA. 胸\nB. 腹\nC. 大腿\nD. 小腿\n答案是：C\n\n\
                    题目：下列鸭品种中，产蛋量最高的品种是\nA. 高邮鸭\nB. 北京鸭\nC. 樱桃谷鸭\nD. 绍鸭\n答案是：";
    let task = &tasks[0];
    let text = prompt::header(Benchmark::Cmmlu, &task.subject.zh)
        + &prompt::shot(Benchmark::Cmmlu, &task.dev[0]).unwrap()
        + &prompt::question(Benchmark::Cmmlu, &task.questions[1]);
    assert_eq!(text, expected);
    let items = prepare(Benchmark::Cmmlu, &tasks, 1, &qwen, 32768).unwrap();
    assert_eq!(items[1].prompt.ids, qwen(expected));
}

#[test]
fn a_prompt_over_the_context_drops_its_longest_shot_and_counts_it() {
    let qwen = qwen();
    // The questions: one hand-made computer_network question; the shots: the real dev rows.
    let test = tempfile::tempdir().unwrap();
    std::fs::write(
        test.path().join("computer_network_val.csv"),
        "id,question,A,B,C,D,answer\n9,哪一层负责路由？,物理层,数据链路层,网络层,传输层,C\n",
    )
    .unwrap();
    let base = McqOptions {
        test: Some(test.path().to_path_buf()),
        ..options(Benchmark::Ceval, &ceval_dev(), 5)
    };
    let tasks = load_tasks(&base).unwrap();
    let task = &tasks[0];
    let shots: Vec<String> = task
        .dev
        .iter()
        .map(|d| prompt::shot(Benchmark::Ceval, d).unwrap())
        .collect();
    let header = prompt::header(Benchmark::Ceval, "计算机网络");
    let question = prompt::question(Benchmark::Ceval, &task.questions[0]);
    let whole = qwen(&format!("{header}{}{question}", shots.concat()));
    let longest = (0..5).max_by_key(|&i| qwen(&shots[i]).len()).unwrap();
    let without: String = (0..5)
        .filter(|&i| i != longest)
        .map(|i| shots[i].as_str())
        .collect();
    let expected = qwen(&format!("{header}{without}{question}"));

    // A context one token short of the whole prompt: the longest shot goes, the rest stay.
    let items = prepare(Benchmark::Ceval, &tasks, 5, &qwen, whole.len() - 1).unwrap();
    assert_eq!(items[0].prompt.ids, expected);
    assert_eq!((items[0].prompt.shots, items[0].prompt.dropped), (4, 1));
    let a = qwen("A")[0];
    let model = always(a, 151_646);
    let evaluation = run(&base, &qwen, 151_646, whole.len() - 1, &model);
    assert_eq!(evaluation.report.dropped_shots, 1);
    assert_eq!(evaluation.predictions[0].shots, 4);
    // With room for the whole prompt nothing is dropped.
    let evaluation = run(&base, &qwen, 151_646, whole.len(), &model);
    assert_eq!(evaluation.report.dropped_shots, 0);
}

#[test]
fn letter_ids_are_the_qwen_tokenizers_ids_of_a_to_d() {
    let qwen = qwen();
    let tokenizer = steel_dataflow::pack::tokenizer::load(&qwen_path()).unwrap();
    let vocab_ids = ["A", "B", "C", "D"].map(|l| tokenizer.token_to_id(l).unwrap());
    // Qwen's byte-level vocabulary starts at `!` (id 0), so ASCII `A`..`D` are 32..35.
    assert_eq!(vocab_ids, [32, 33, 34, 35]);
    assert_eq!(
        Targets::new(Mode::Letter, &qwen).unwrap(),
        Targets::Letters(vocab_ids)
    );
    // Log-likelihood continuations: ` A`..` D` are one token each, and appending one to a
    // prompt appends exactly its tokens (lm-evaluation-harness splits the whole encoding).
    let Targets::Continuations(continuations) = Targets::new(Mode::Loglik, &qwen).unwrap() else {
        panic!("continuations");
    };
    let spaced =
        [" A", " B", " C", " D"].map(|l| tokenizer.token_to_id(&l.replace(' ', "Ġ")).unwrap());
    assert_eq!(continuations, spaced.map(|id| vec![id]));
    let prompt =
        "以下是中国关于计算机网络考试的单项选择题。\n\n滑动窗口的作用是____。\nA. 流量控制\n答案：";
    for (letter, continuation) in ["A", "B", "C", "D"].iter().zip(&continuations) {
        let mut ids = qwen(prompt);
        ids.extend_from_slice(continuation);
        assert_eq!(qwen(&format!("{prompt} {letter}")), ids);
    }
}

#[test]
fn csv_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("logic_dev.csv"),
        "id,question,A,B,C,D,answer,explanation\n0,\"两行\n的问题\",a,b,c,d,A,\n1,q,a,b,c,d,F,\n",
    )
    .unwrap();
    let error = load_tasks(&options(Benchmark::Ceval, dir.path(), 5)).unwrap_err();
    let file = dir.path().join("logic_dev.csv");
    assert_eq!(
        error.to_string(),
        format!(
            "{}: line 4: the answer is `F`, not one of A, B, C, D",
            file.display()
        )
    );
}

#[test]
fn logits_from_are_the_last_rows_of_the_full_logits_for_every_model_kind() {
    for preset in ["tiny-dense", "tiny-softmax-moe", "tiny-topk-moe"] {
        let config = ModelConfig::preset(preset).unwrap();
        let layout = Layout::new(&config);
        let params = steel_trainer::train::init_params(&layout, 5);
        let ids: Vec<u32> = (0..23).map(|i| (i * 37 % 2000) as u32).collect();
        let all = logits(&config, &layout, &params, &ids);
        for from in [0, 10, 22] {
            let tail = logits_from(&config, &layout, &params, &ids, from);
            assert_eq!(
                tail,
                all[from * config.vocab_size..],
                "{preset} from {from}"
            );
        }
    }
}

/// A tiny dense model whose vocabulary covers the Qwen tokenizer, written as a HuggingFace
/// directory (config.json + model.safetensors) by the export code.
fn tiny_qwen_model(dir: &Path) -> PathBuf {
    let tokenizer = steel_dataflow::pack::tokenizer::load(&qwen_path()).unwrap();
    let mut config = ModelConfig::preset("tiny-dense").unwrap();
    config.vocab_size = tokenizer.get_vocab_size(true);
    let layout = Layout::new(&config);
    let params = steel_trainer::train::init_params(&layout, 7);
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    steel_trainer::checkpoint::write_model(&model, &config, &layout, &params).unwrap();
    model
}

fn steel(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_steel"))
        .args(args)
        .output()
        .unwrap()
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn steel_eval_ceval_writes_a_prediction_per_question_and_the_accuracies() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_qwen_model(dir.path());
    let output = dir.path().join("out");
    let (dev, qwen_file) = (ceval_dev(), qwen_path());
    let args = |mode: &str, output: &Path| {
        [
            "eval",
            "ceval",
            "--checkpoint",
            model.to_str().unwrap(),
            "--tokenizer",
            qwen_file.to_str().unwrap(),
            "--dev",
            dev.to_str().unwrap(),
            "--subjects",
            "computer_network,logic",
            "--mode",
            mode,
            "--output",
            output.to_str().unwrap(),
            "--json",
        ]
        .map(String::from)
    };
    let out = steel(&args("letter", &output).each_ref().map(String::as_str));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("computer_network") && stderr.contains("overall"),
        "{stderr}"
    );

    // One line per question, in file order, with the CSV's id and answer.
    let predictions = lines(&output.join("predictions.jsonl"));
    assert_eq!(predictions.len(), 10);
    let ids: Vec<(&str, &str)> = predictions
        .iter()
        .map(|p| (p["subject"].as_str().unwrap(), p["id"].as_str().unwrap()))
        .collect();
    let expected_ids: Vec<(&str, String)> = ["computer_network", "logic"]
        .iter()
        .flat_map(|s| (0..5).map(move |i| (*s, i.to_string())))
        .collect();
    assert_eq!(
        ids,
        expected_ids
            .iter()
            .map(|(s, i)| (*s, i.as_str()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        predictions[0]["answer"], "A",
        "computer_network_dev.csv row 0"
    );
    assert_eq!(predictions[1]["answer"], "A");
    for p in &predictions {
        let scores: Vec<f64> = p["letter_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(scores.len(), 4);
        let best = (0..4).fold(0, |b, i| if scores[i] > scores[b] { i } else { b });
        assert_eq!(p["prediction"], ["A", "B", "C", "D"][best]);
        assert_eq!(
            p["shots"], 4,
            "each dev question has the other four as shots"
        );
    }

    // The letter logits are the model's own logits of A..D after the prompt, recomputed here
    // with the full forward pass over the prompt built by hand.
    let tokenizer = steel_dataflow::pack::tokenizer::load(&qwen_path()).unwrap();
    let encode = |text: &str| tokenizer.encode(text, false).unwrap().get_ids().to_vec();
    let tasks = load_tasks(&McqOptions {
        subjects: Some(vec!["computer_network".into()]),
        ..options(Benchmark::Ceval, &ceval_dev(), 5)
    })
    .unwrap();
    let task = &tasks[0];
    let shots: String = (1..5)
        .map(|i| prompt::shot(Benchmark::Ceval, &task.dev[i]).unwrap())
        .collect();
    let text = prompt::header(Benchmark::Ceval, "计算机网络")
        + &shots
        + &prompt::question(Benchmark::Ceval, &task.questions[0]);
    let ids = encode(&text);
    let config = ModelConfig::from_hf_file(&model.join("config.json")).unwrap();
    let layout = Layout::new(&config);
    let (_, _, params) = steel_trainer::checkpoint::load_model(&model).unwrap();
    let all = logits(&config, &layout, &params, &ids);
    let last = &all[(ids.len() - 1) * config.vocab_size..];
    let expected: Vec<f32> = [32, 33, 34, 35].iter().map(|&t| last[t]).collect();
    let got: Vec<f32> = predictions[0]["letter_logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got, expected);

    // --json: the accuracies, agreeing with the predictions.
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["benchmark"], "ceval");
    assert_eq!(report["mode"], "letter");
    assert_eq!(report["shots"], 5);
    assert_eq!(report["dropped_shots"], 0);
    assert_eq!(report["questions"], 10);
    let correct = predictions
        .iter()
        .filter(|p| p["answer"] == p["prediction"])
        .count();
    assert_eq!(report["correct"], correct);
    assert_eq!(report["micro"].as_f64().unwrap(), correct as f64 / 10.0);
    let subject = |s: &str| report["subjects"][s]["accuracy"].as_f64().unwrap();
    let macro_ = (subject("computer_network") + subject("logic")) / 2.0;
    assert!((report["macro"].as_f64().unwrap() - macro_).abs() < 1e-12);
    assert_eq!(report["subjects"]["logic"]["categories"][0], "Humanities");
    assert!(report["categories"]["STEM"]["macro"].is_number());
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("results.json")).unwrap())
            .unwrap();
    assert_eq!(written, report);

    // --mode loglik: log-likelihoods (at most 0), the same questions.
    let output = dir.path().join("loglik");
    let out = steel(&args("loglik", &output).each_ref().map(String::as_str));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mode"], "loglik");
    let predictions = lines(&output.join("predictions.jsonl"));
    assert_eq!(predictions.len(), 10);
    for p in &predictions {
        for score in p["letter_logits"].as_array().unwrap() {
            assert!(score.as_f64().unwrap() <= 0.0);
        }
    }
}

#[test]
fn steel_eval_cmmlu_reads_its_layout_and_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_qwen_model(dir.path());
    let (dev, qwen_file) = (cmmlu_dev(), qwen_path());
    let base = [
        "eval",
        "cmmlu",
        "--checkpoint",
        model.to_str().unwrap(),
        "--tokenizer",
        qwen_file.to_str().unwrap(),
        "--dev",
        dev.to_str().unwrap(),
        "--subjects",
        "agronomy",
        "--json",
    ];
    let out = steel(&base);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["benchmark"], "cmmlu");
    assert_eq!(report["questions"], 5);
    assert_eq!(report["subjects"]["agronomy"]["zh"], "农学");

    let refused = |extra: &[&str], message: &str| {
        let out = steel(&[&base[..], extra].concat());
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{stderr}");
    };
    // Here there is no GPU (or no `cuda` feature).
    let no_gpu = if cfg!(feature = "cuda") {
        "no CUDA driver found"
    } else {
        "built without the `cuda` feature"
    };
    refused(&["--device", "cuda"], no_gpu);
    refused(
        &["--subjects", "cooking"],
        "`cooking` is not a CMMLU subject",
    );
    refused(&["--mode", "guess"], "unknown mode `guess`");
    // --mode gen: each prediction is the option its greedy answer names (if any).
    let answers = dir.path().join("gen");
    let gen_args = [
        "--mode",
        "gen",
        "--max-new-tokens",
        "4",
        "--output",
        answers.to_str().unwrap(),
    ];
    let out = steel(&[&base[..], &gen_args[..]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mode"], "gen");
    let predictions = lines(&answers.join("predictions.jsonl"));
    assert_eq!(predictions.len(), 5);
    for p in &predictions {
        let generated = p["generated"].as_str().unwrap();
        let named = steel_trainer::mcq::score::extract_answer(generated).map(|l| l.as_str());
        assert_eq!(p["prediction"].as_str(), named, "{p}");
    }
    // A malformed CSV among the questions: its file and line.
    let test = dir.path().join("test");
    std::fs::create_dir_all(&test).unwrap();
    std::fs::write(
        test.join("agronomy.csv"),
        ",Question,A,B,C,D,Answer\n0,q,a,b,c,d,A\n1,q,a,b,c\n",
    )
    .unwrap();
    refused(
        &["--test", test.to_str().unwrap()],
        &format!(
            "{}: line 3: the row has 5 fields, the header 7",
            test.join("agronomy.csv").display()
        ),
    );
}

#[test]
fn a_transformers_directory_with_a_short_context_drops_shots_and_counts_each() {
    // The shared tiny Qwen2 (made by transformers, vocabulary 151,936, 512 positions): C-Eval
    // 5-shot prompts of `law` and `accountant` are longer than 512 tokens.
    let model = shared().join("hf/tiny-qwen2");
    let out = steel(&[
        "eval",
        "ceval",
        "--checkpoint",
        model.to_str().unwrap(),
        "--tokenizer",
        qwen_path().to_str().unwrap(),
        "--dev",
        ceval_dev().to_str().unwrap(),
        "--subjects",
        "law,accountant",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["questions"].as_u64(), report["n_subjects"].as_u64()),
        (Some(10), Some(2))
    );
    let dropped = report["dropped_shots"].as_u64().unwrap();
    assert!(dropped > 0, "some prompts were over 512 tokens");
    // Each dev question has 4 shots to start with (the other dev rows); every one missing was
    // dropped, and no prompt had to be cut.
    let dir = tempfile::tempdir().unwrap();
    let out = steel(&[
        "eval",
        "ceval",
        "--checkpoint",
        model.to_str().unwrap(),
        "--tokenizer",
        qwen_path().to_str().unwrap(),
        "--dev",
        ceval_dev().to_str().unwrap(),
        "--subjects",
        "law,accountant",
        "--output",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let kept: u64 = lines(&dir.path().join("predictions.jsonl"))
        .iter()
        .map(|p| p["shots"].as_u64().unwrap())
        .sum();
    assert_eq!(dropped, 10 * 4 - kept);
    assert_eq!(report["truncated"], 0);
}

#[test]
fn letter_logits_match_transformers_on_the_shared_tiny_qwen2() {
    // tests/data/generate/make_reference.py: transformers' next-token logits of A..D after a
    // 2-shot C-Eval (computer_network) and CMMLU (agronomy) prompt whose question is the third
    // dev row, its shots the first two: what `--shots 2` builds for the dev question with id 2.
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/generate/reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let qwen = qwen();
    let model = shared().join("hf/tiny-qwen2");
    for case in reference["letters"].as_array().unwrap() {
        let (benchmark, name, dev) = match case["benchmark"].as_str().unwrap() {
            "ceval" => (Benchmark::Ceval, "ceval", ceval_dev()),
            _ => (Benchmark::Cmmlu, "cmmlu", cmmlu_dev()),
        };
        let subject = case["subject"].as_str().unwrap();
        let tasks = load_tasks(&McqOptions {
            subjects: Some(vec![subject.into()]),
            ..options(benchmark, &dev, 2)
        })
        .unwrap();
        let items = prepare(benchmark, &tasks, 2, &qwen, 512).unwrap();
        let ids: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(qwen(case["text"].as_str().unwrap()), ids);
        assert_eq!(items[2].prompt.ids, ids, "{name}: the reference's prompt");

        let dir = tempfile::tempdir().unwrap();
        let out = steel(&[
            "eval",
            name,
            "--checkpoint",
            model.to_str().unwrap(),
            "--tokenizer",
            qwen_path().to_str().unwrap(),
            "--dev",
            dev.to_str().unwrap(),
            "--subjects",
            subject,
            "--shots",
            "2",
            "--output",
            dir.path().to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let prediction = lines(&dir.path().join("predictions.jsonl"))
            .into_iter()
            .find(|p| p["id"] == "2")
            .unwrap();
        let ours = prediction["letter_logits"].as_array().unwrap();
        let theirs = case["letter_logits"].as_array().unwrap();
        for (o, t) in ours.iter().zip(theirs) {
            let (o, t) = (o.as_f64().unwrap(), t.as_f64().unwrap());
            assert!((o - t).abs() < 1e-4, "{name}: ours {o}, transformers {t}");
        }
    }
}

/// `gen`: the prediction is read from the generated answer. A model that always answers
/// "答案是：C" scores the share of C answers; one that names no option scores nothing; and
/// through the chat template, the prompt it is asked is the template around the question.
#[test]
fn generated_answers_are_scored_by_the_option_they_name() {
    let dir = tempfile::tempdir().unwrap();
    ceval_set(dir.path(), &[("logic", "ABCCD"), ("law", "CB")]);
    let asked = std::sync::Mutex::new(Vec::new());
    let answer = |text: &'static str| {
        let asked = &asked;
        move |prompts: &[Vec<u32>], max_new_tokens: usize| {
            assert_eq!(max_new_tokens, 8);
            asked.lock().unwrap().extend(prompts.iter().cloned());
            Ok(vec![text.to_string(); prompts.len()])
        }
    };
    let model = always(u32::from('A'), 0x10000);
    let score = |text: &'static str, chat: bool| {
        let generate = answer(text);
        let scorer = Scorer {
            encode: &chars,
            max_positions: 4096,
            vocab: 0x10000,
            logits: &model,
            generate: Some(&generate),
        };
        let options = McqOptions {
            mode: Mode::Gen,
            chat,
            max_new_tokens: 8,
            ..options(Benchmark::Ceval, dir.path(), 5)
        };
        evaluate(&options, &scorer, &|_, _| {}).unwrap()
    };
    let evaluation = score("答案是：C。", false);
    assert_eq!(
        (
            evaluation.report.overall.correct,
            evaluation.report.overall.questions
        ),
        (3, 7)
    );
    assert!(
        evaluation
            .predictions
            .iter()
            .all(|p| p.prediction == Some(Letter::C))
    );
    assert_eq!(
        evaluation.predictions[0].generated.as_deref(),
        Some("答案是：C。")
    );
    // The letter logits are still recorded: the made-up model favours A.
    assert!(
        evaluation.predictions[0].letter_logits[0] > evaluation.predictions[0].letter_logits[2]
    );
    let silent = score("我不知道", false);
    assert_eq!(silent.report.overall.correct, 0);
    assert!(silent.predictions.iter().all(|p| p.prediction.is_none()));
    asked.lock().unwrap().clear();
    score("C", true);
    let first: String = asked.lock().unwrap()[0]
        .iter()
        .map(|&c| char::from_u32(c).unwrap())
        .collect();
    assert!(first.starts_with("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n以下是中国关于"), "{first}");
    assert!(
        first.ends_with("答案：<|im_end|>\n<|im_start|>assistant\n"),
        "{first}"
    );
}
