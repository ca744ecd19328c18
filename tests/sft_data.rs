//! Chat data to SFT rows and DPO pairs with the real Qwen1.5 tokenizer: which tokens are
//! trained on, token by token; rendered text and messages agreeing; packing; prepared rows on
//! disk (round trip, reuse, mismatch, corruption); bad lines set aside and counted; pairs split
//! exactly; and the packing utilisation on the BELLE and firefly samples.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use steel_dataflow::sources::chat::render_chat;
use steel_trainer::batch::Batch;
use steel_trainer::infer::tokenizer::{Codec, Tokenizer};
use steel_trainer::sft::{
    Example, Prepared, SftError, SftOptions, SkipKind, build_rows, read_examples, read_pairs,
};

const IM_START: u32 = 151644;
const IM_END: u32 = 151645;
const PAD: u32 = 151643;

fn tokenizer_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tokenizers/qwen1_5/tokenizer.json")
}

fn tokenizer() -> Tokenizer {
    Tokenizer::load(&tokenizer_path()).unwrap()
}

fn write_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).unwrap();
    path
}

fn messages(turns: &[(&str, &str)]) -> String {
    let messages: Vec<_> = turns
        .iter()
        .map(|(role, content)| serde_json::json!({"role": role, "content": content}))
        .collect();
    serde_json::json!({ "messages": messages }).to_string()
}

fn options(cutoff: usize, packing: bool) -> SftOptions {
    SftOptions {
        cutoff,
        packing,
        ..SftOptions::default()
    }
}

/// The decoded runs of consecutive tokens that are (`trained`) or are not trained on.
fn runs(codec: &dyn Codec, example: &Example, trained: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut run = Vec::new();
    for (&id, &t) in example.ids.iter().zip(&example.trained) {
        if t == trained {
            run.push(id);
        } else if !run.is_empty() {
            out.push(codec.decode(&std::mem::take(&mut run)));
        }
    }
    if !run.is_empty() {
        out.push(codec.decode(&run));
    }
    out
}

const Q1: &str = "你好，请介绍一下你自己。";
const A1: &str = "你好！我是 Steel，一个中文优先的语言模型。";
const Q2: &str = "What is 1 + 1?";
const A2: &str = "1 + 1 = 2.\n就是二。";

fn two_turns() -> String {
    messages(&[
        ("user", Q1),
        ("assistant", A1),
        ("user", Q2),
        ("assistant", A2),
    ])
}

fn only_example(dir: &Path, lines: &[String], options: &SftOptions) -> Example {
    let path = write_lines(dir, "one.jsonl", lines);
    let mut set = read_examples(&path, &tokenizer(), options).unwrap();
    assert_eq!(set.examples.len(), 1, "{:?}", set.skipped);
    set.examples.pop().unwrap()
}

#[test]
fn a_two_turn_chat_trains_on_the_answers_and_their_ends_token_by_token() {
    let dir = tempfile::tempdir().unwrap();
    let codec = tokenizer();
    let example = only_example(dir.path(), &[two_turns()], &SftOptions::default());
    let text = format!(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{Q1}\
         <|im_end|>\n<|im_start|>assistant\n{A1}<|im_end|>\n<|im_start|>user\n{Q2}<|im_end|>\n\
         <|im_start|>assistant\n{A2}<|im_end|>"
    );
    assert_eq!(example.ids, codec.encode(&text).unwrap());
    assert_eq!(example.trained.len(), example.ids.len());
    // Trained: each answer's own tokens and the <|im_end|> closing it, nothing else.
    let mut answers = codec.encode(A1).unwrap();
    answers.push(IM_END);
    answers.extend(codec.encode(A2).unwrap());
    answers.push(IM_END);
    let trained: Vec<u32> = example
        .ids
        .iter()
        .zip(&example.trained)
        .filter(|(_, t)| **t)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(trained, answers);
    assert_eq!(
        runs(&codec, &example, true),
        [format!("{A1}<|im_end|>"), format!("{A2}<|im_end|>")]
    );
    assert_eq!(
        runs(&codec, &example, false),
        [
            format!(
                "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n\
                 {Q1}<|im_end|>\n<|im_start|>assistant\n"
            ),
            format!("\n<|im_start|>user\n{Q2}<|im_end|>\n<|im_start|>assistant\n"),
        ]
    );
    // Token by token around the first answer: the template's `\n` before it and the `\n`
    // after its <|im_end|> are not trained.
    let first = example.trained.iter().position(|&t| t).unwrap();
    assert_eq!(codec.decode(&example.ids[first - 1..first]), "\n");
    assert_eq!(
        codec.decode(&example.ids[first - 2..first - 1]),
        "assistant"
    );
    let end = first + codec.encode(A1).unwrap().len();
    assert_eq!(example.ids[end], IM_END);
    assert!(example.trained[end]);
    assert_eq!(codec.decode(&example.ids[end + 1..end + 2]), "\n");
    assert!(!example.trained[end + 1]);
    assert_eq!(example.ids[end + 2], IM_START);

    // In a row: position i predicts token i + 1 with weight 1 exactly where it is trained.
    let (batch, report) = build_rows(std::slice::from_ref(&example), &options(512, false), PAD);
    assert_eq!(report.rows, 1);
    let n = example.len();
    assert_eq!(&batch.ids[..n], &example.ids[..]);
    assert_eq!(&batch.targets[..n - 1], &example.ids[1..]);
    for i in 0..n - 1 {
        assert_eq!(
            batch.weights[i] == 1.0,
            example.trained[i + 1],
            "position {i}"
        );
    }
    assert_eq!(batch.weights[n - 1], 0.0);
    let predicted: Vec<u32> = (0..batch.t)
        .filter(|&i| batch.weights[i] == 1.0)
        .map(|i| batch.targets[i])
        .collect();
    assert_eq!(predicted, answers);
    assert!(batch.ids[n..].iter().all(|&id| id == PAD));
    assert!(batch.weights[n..].iter().all(|&w| w == 0.0));
    assert!(batch.doc_start[..n].iter().all(|&s| s == 0));
    assert!(batch.doc_start[n..].iter().all(|&s| s == n as u32));
}

#[test]
fn last_turn_only_and_train_on_prompt_change_only_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let codec = tokenizer();
    let all = only_example(dir.path(), &[two_turns()], &SftOptions::default());
    let last = only_example(
        dir.path(),
        &[two_turns()],
        &SftOptions {
            last_turn_only: true,
            ..SftOptions::default()
        },
    );
    assert_eq!(last.ids, all.ids);
    assert_eq!(runs(&codec, &last, true), [format!("{A2}<|im_end|>")]);
    let everything = only_example(
        dir.path(),
        &[two_turns()],
        &SftOptions {
            train_on_prompt: true,
            ..SftOptions::default()
        },
    );
    assert_eq!(everything.ids, all.ids);
    assert!(everything.trained.iter().all(|&t| t));
    assert_eq!(everything.trained_targets(), all.len() - 1);
}

#[test]
fn a_token_merged_across_the_start_of_an_answer_is_not_trained() {
    // "assistant\n" + "\n\nanswer": the tokenizer reads the three newlines as one token, which
    // is not inside the content.
    let dir = tempfile::tempdir().unwrap();
    let codec = tokenizer();
    let example = only_example(
        dir.path(),
        &[messages(&[("user", "q"), ("assistant", "\n\nanswer")])],
        &SftOptions::default(),
    );
    assert_eq!(runs(&codec, &example, true), ["answer<|im_end|>"]);
    let newlines = example.trained.iter().position(|&t| t).unwrap() - 1;
    assert_eq!(codec.decode(&example.ids[newlines..newlines + 1]), "\n\n\n");
}

#[test]
fn rendered_text_and_messages_give_the_same_ids_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = [
        (Q1.to_string(), A1.to_string()),
        (Q2.to_string(), A2.to_string()),
    ];
    // As `steel convert` writes it: the last <|im_end|> left off.
    let convert = serde_json::json!({"text": render_chat(&pairs), "meta": {"row": 0}}).to_string();
    let closed =
        serde_json::json!({"text": format!("{}<|im_end|>\n", render_chat(&pairs))}).to_string();
    let with_system = messages(&[
        ("system", "You are a helpful assistant."),
        ("user", Q1),
        ("assistant", A1),
        ("user", Q2),
        ("assistant", A2),
    ]);
    let path = write_lines(
        dir.path(),
        "mixed.jsonl",
        &[convert, closed, two_turns(), with_system],
    );
    for options in [
        SftOptions::default(),
        SftOptions {
            last_turn_only: true,
            ..SftOptions::default()
        },
    ] {
        let set = read_examples(&path, &tokenizer(), &options).unwrap();
        assert_eq!(set.examples.len(), 4, "{:?}", set.skipped);
        for example in &set.examples[1..] {
            assert_eq!(example, &set.examples[0]);
        }
    }
}

#[test]
fn examples_are_cut_at_the_cutoff_and_dropped_when_nothing_is_left_to_train() {
    let dir = tempfile::tempdir().unwrap();
    let long_question = "问题".repeat(100);
    let lines = [
        two_turns(),
        messages(&[("user", &long_question), ("assistant", "答")]),
        messages(&[("user", "只有问题")]),
    ];
    let path = write_lines(dir.path(), "cut.jsonl", &lines);
    let set = read_examples(&path, &tokenizer(), &options(40, false)).unwrap();
    assert_eq!(set.examples.len(), 1);
    assert_eq!(set.examples[0].len(), 40);
    assert_eq!(set.report.truncated, 1);
    assert_eq!(
        set.report.dropped,
        BTreeMap::from([
            (SkipKind::NoTrainedToken, 1),
            (SkipKind::TrainedPastCutoff, 1)
        ])
    );
    let kinds: Vec<(u64, SkipKind)> = set.skipped.iter().map(|s| (s.line, s.kind)).collect();
    assert_eq!(
        kinds,
        [
            (2, SkipKind::TrainedPastCutoff),
            (3, SkipKind::NoTrainedToken)
        ]
    );
    assert_eq!(set.report.tokens, 40);
    assert_eq!(set.report.trained, set.examples[0].trained_targets() as u64);
    assert!(set.report.trained > 0);
}

#[test]
fn bad_lines_are_quarantined_with_file_line_and_reason_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let good = two_turns();
    let lines = [
        good.clone(),
        "{not json".to_string(),
        "".to_string(),
        r#"{"meta": 1}"#.to_string(),
        messages(&[("tool", "x"), ("assistant", "y")]),
        messages(&[("user", "q"), ("assistant", " ")]),
        messages(&[("user", "q<|im_start|>"), ("assistant", "a")]),
        serde_json::json!({"text": "将以下句子翻译成法语。\n我爱你。\nJe t'aime."}).to_string(),
        "[1, 2]".to_string(),
        good.clone(),
    ];
    let path = write_lines(dir.path(), "bad.jsonl", &lines);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"\xff\xfe{}\n");
    std::fs::write(&path, bytes).unwrap();
    let set = read_examples(&path, &tokenizer(), &SftOptions::default()).unwrap();
    assert_eq!(set.examples.len(), 2);
    assert_eq!(
        set.report.quarantined,
        BTreeMap::from([
            (SkipKind::NotUtf8, 1),
            (SkipKind::NotJson, 2),
            (SkipKind::BadField, 1),
            (SkipKind::UnknownRole, 1),
            (SkipKind::Empty, 1),
            (SkipKind::SpecialToken, 1),
            (SkipKind::NotChat, 1),
        ])
    );
    let report = &set.report;
    assert_eq!((report.lines, report.blank), (11, 1));
    assert_eq!(
        report.lines,
        report.blank + report.examples + report.quarantined_lines() + report.dropped_lines()
    );
    let lines: Vec<u64> = set.skipped.iter().map(|s| s.line).collect();
    assert_eq!(lines, [2, 4, 5, 6, 7, 8, 9, 11]);
    let role = &set.skipped[2];
    assert_eq!(role.file, path.display().to_string());
    assert!(role.reason.contains("`tool`"), "{}", role.reason);
    assert!(
        role.to_string()
            .starts_with(&format!("{}:5: ", path.display()))
    );

    // Nothing usable at all: an error saying so, with the first reason.
    let hopeless = write_lines(dir.path(), "hopeless.jsonl", &lines_of(&["{", "[]"]));
    let nothing = dir.path().join("nothing");
    assert!(matches!(
        Prepared::prepare(
            std::slice::from_ref(&hopeless),
            &tokenizer_path(),
            &SftOptions::default(),
            &nothing
        ),
        Err(SftError::NothingUsable { .. })
    ));
    assert_eq!(
        std::fs::read_dir(&nothing).unwrap().count(),
        0,
        "a failed preparation leaves nothing behind"
    );
    match read_examples(&hopeless, &tokenizer(), &SftOptions::default()) {
        Err(SftError::NothingUsable { reason }) => {
            assert!(reason.contains("hopeless.jsonl:1: not JSON"), "{reason}")
        }
        other => panic!("expected NothingUsable, got {:?}", other.map(|s| s.report)),
    }
}

fn lines_of(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|l| l.to_string()).collect()
}

/// Every document of `batch` that is an example (not padding) as its ids and weights, each
/// checked to predict the next token inside it and the pad id at its end.
fn documents(batch: &Batch) -> Vec<(Vec<u32>, Vec<u32>)> {
    let mut out = Vec::new();
    for row in batch.iter() {
        let mut start = 0;
        while start < batch.t {
            let end = (start..batch.t)
                .find(|&i| row.doc_start[i] != start as u32)
                .unwrap_or(batch.t);
            assert!(row.doc_start[start..end].iter().all(|&s| s == start as u32));
            let ids = row.ids[start..end].to_vec();
            assert_eq!(&row.targets[start..end - 1], &ids[1..]);
            assert_eq!(row.targets[end - 1], PAD);
            assert_eq!(row.weights[end - 1], 0.0);
            if ids[0] == PAD {
                assert_eq!(end, batch.t, "padding is the row's last document");
                assert!(ids.iter().all(|&id| id == PAD));
                assert!(row.weights[start..end].iter().all(|&w| w == 0.0));
            } else {
                let weights = row.weights[start..end].iter().map(|&w| w as u32).collect();
                out.push((ids, weights));
            }
            start = end;
        }
    }
    out.sort();
    out
}

/// What an example's document must be: its ids, and weight 1 where the next token is trained.
fn expected_documents(examples: &[Example]) -> Vec<(Vec<u32>, Vec<u32>)> {
    let mut out: Vec<(Vec<u32>, Vec<u32>)> = examples
        .iter()
        .map(|e| {
            let mut weights: Vec<u32> = e.trained[1..].iter().map(|&t| t as u32).collect();
            weights.push(0);
            (e.ids.clone(), weights)
        })
        .collect();
    out.sort();
    out
}

/// The firefly sample as `steel convert` renders it: its shards.
fn firefly_shards(dir: &Path) -> Vec<PathBuf> {
    common::run(
        dir,
        "firefly",
        &[common::sample("firefly.jsonl")],
        "firefly",
    );
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir.join("firefly"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    shards.sort();
    shards
}

/// The BELLE sample as rendered chat, as Steel's source readers would render a question and
/// answer (instruction, then the input when there is one; the output), in both forms.
fn belle_files(dir: &Path) -> (PathBuf, PathBuf) {
    use steel_dataflow::sources::normalize::normalize;
    let raw = std::fs::read_to_string(common::samples().join("belle_instruction.jsonl")).unwrap();
    let (mut texts, mut chats) = (Vec::new(), Vec::new());
    for line in raw.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let field = |name: &str| normalize(record[name].as_str().unwrap_or(""));
        let mut question = field("instruction");
        if !field("input").trim().is_empty() {
            question = format!("{question}\n{}", field("input"));
        }
        let answer = field("output");
        texts.push(
            serde_json::json!({"text": render_chat(&[(question.clone(), answer.clone())])})
                .to_string(),
        );
        chats.push(messages(&[("user", &question), ("assistant", &answer)]));
    }
    (
        write_lines(dir, "belle_text.jsonl", &texts),
        write_lines(dir, "belle_messages.jsonl", &chats),
    )
}

#[test]
fn packed_and_unpacked_rows_hold_every_example_once_as_its_own_document() {
    let dir = tempfile::tempdir().unwrap();
    let codec = tokenizer();
    let shards = firefly_shards(dir.path());
    let mut examples = Vec::new();
    let mut past_cutoff = 0;
    for shard in &shards {
        let set = read_examples(shard, &codec, &options(96, false)).unwrap();
        assert_eq!(set.report.quarantined_lines(), 0);
        past_cutoff += set.report.dropped[&SkipKind::TrainedPastCutoff];
        examples.extend(set.examples);
    }
    // Firefly's long inputs (summaries, reading comprehension) leave no answer within 96.
    assert_eq!(examples.len() as u64 + past_cutoff, 1000);
    assert!(examples.len() > 700, "{} examples", examples.len());
    assert!(examples.iter().all(|e| e.len() <= 96));
    assert!(examples.iter().any(|e| e.len() == 96), "some are cut");
    let expected = expected_documents(&examples);
    let (unpacked, unpacked_report) = build_rows(&examples, &options(96, false), PAD);
    let (packed, packed_report) = build_rows(&examples, &options(96, true), PAD);
    assert_eq!(unpacked.rows(), examples.len());
    println!(
        "firefly cutoff 96: {} examples, {} rows packed (utilisation {:.4}), {} unpacked ({:.4})",
        examples.len(),
        packed.rows(),
        packed_report.utilisation,
        unpacked.rows(),
        unpacked_report.utilisation
    );
    assert!(
        packed.rows() < examples.len() * 9 / 10,
        "{} rows",
        packed.rows()
    );
    assert_eq!(packed.t, 96);
    assert_eq!(documents(&unpacked), expected);
    assert_eq!(documents(&packed), expected);
    // Weights and real tokens add up the same either way.
    assert_eq!(packed.trained(), unpacked.trained());
    let tokens: u64 = examples.iter().map(|e| e.len() as u64).sum();
    assert_eq!(packed_report.positions - packed_report.padding, tokens);
    assert_eq!(unpacked_report.positions - unpacked_report.padding, tokens);
    assert!(packed_report.utilisation > unpacked_report.utilisation);
    // Deterministic.
    assert_eq!(build_rows(&examples, &options(96, true), PAD).0, packed);
}

#[test]
fn prepared_rows_round_trip_are_deterministic_and_reused_only_when_everything_matches() {
    let dir = tempfile::tempdir().unwrap();
    let codec = tokenizer();
    let shards = firefly_shards(dir.path());
    let bad = write_lines(
        dir.path(),
        "extra.jsonl",
        &[two_turns(), "oops".to_string()],
    );
    let mut sources = shards.clone();
    sources.push(bad.clone());
    let options = options(256, true);
    let out = dir.path().join("prepared");
    let prepared = Prepared::prepare(&sources, &tokenizer_path(), &options, &out).unwrap();
    assert_eq!(prepared.row_len(), 256);
    let report = prepared.report().clone();
    assert_eq!(
        report.read.examples + report.read.dropped_lines(),
        1001,
        "{report:?}"
    );
    assert!(report.read.examples > 900);
    assert_eq!(
        report.read.quarantined,
        BTreeMap::from([(SkipKind::NotJson, 1)])
    );
    assert_eq!(report.rows.rows as usize, prepared.rows());
    // The skipped line is on disk with where it was.
    // Every line set aside is on disk with where it was.
    let skipped: Vec<serde_json::Value> = std::fs::read_to_string(prepared.skipped_path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        skipped.len() as u64,
        report.read.quarantined_lines() + report.read.dropped_lines()
    );
    let bad_line = skipped.last().unwrap();
    assert_eq!(bad_line["line"], 2);
    assert_eq!(bad_line["kind"], "not_json");
    assert_eq!(bad_line["file"], bad.display().to_string());
    assert!(
        skipped[..skipped.len() - 1]
            .iter()
            .all(|s| s["kind"] == "trained_past_cutoff")
    );

    // The rows on disk are the rows built in memory from the same examples.
    let mut examples = Vec::new();
    for source in &sources {
        examples.extend(read_examples(source, &codec, &options).unwrap().examples);
    }
    let (expected, expected_report) = build_rows(&examples, &options, PAD);
    let opened = Prepared::open(&out).unwrap();
    let mut batch = Batch::new(256);
    for r in 0..opened.rows() {
        opened.push_row(r, &mut batch).unwrap();
    }
    assert_eq!(batch, expected);
    assert_eq!(opened.report().rows, expected_report);
    assert!(opened.push_row(opened.rows(), &mut batch).is_err());
    assert!(opened.push_row(0, &mut Batch::new(8)).is_err());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["version"], 1);
    assert_eq!(manifest["sources"].as_array().unwrap().len(), sources.len());
    assert_eq!(manifest["options"]["cutoff"], 256);
    assert!(!out.join("examples.tmp").exists());
    assert!(!out.join("rows.bin.tmp").exists());

    // Same inputs elsewhere: byte-identical rows. Same directory: reused as it is.
    let again = dir.path().join("again");
    Prepared::prepare(&sources, &tokenizer_path(), &options, &again).unwrap();
    let rows = std::fs::read(out.join("rows.bin")).unwrap();
    assert_eq!(std::fs::read(again.join("rows.bin")).unwrap(), rows);
    let modified = std::fs::metadata(out.join("rows.bin"))
        .unwrap()
        .modified()
        .unwrap();
    let reused = Prepared::prepare(&sources, &tokenizer_path(), &options, &out).unwrap();
    assert_eq!(reused.manifest(), prepared.manifest());
    assert_eq!(
        std::fs::metadata(out.join("rows.bin"))
            .unwrap()
            .modified()
            .unwrap(),
        modified
    );

    // Other options, another source: refused, saying what differs.
    let other = SftOptions {
        cutoff: 128,
        ..options
    };
    match Prepared::prepare(&sources, &tokenizer_path(), &other, &out) {
        Err(SftError::Mismatch { differences, .. }) => {
            assert_eq!(differences, ["cutoff: asked 128, prepared with 256"])
        }
        other => panic!("expected a mismatch, got {:?}", other.err()),
    }
    let changed = write_lines(dir.path(), "extra.jsonl", &[two_turns()]);
    let error = Prepared::prepare(&sources, &tokenizer_path(), &options, &out)
        .err()
        .expect("a changed source is refused");
    let message = error.to_string();
    assert!(
        message.contains(&format!("source {}", sources.len())),
        "{message}"
    );
    assert!(
        message.contains(&changed.display().to_string()),
        "{message}"
    );

    // A changed rows.bin is caught when opened.
    let mut damaged = rows.clone();
    damaged[100] ^= 1;
    std::fs::write(again.join("rows.bin"), &damaged).unwrap();
    assert!(matches!(
        Prepared::open(&again),
        Err(SftError::Corrupt { .. })
    ));
    std::fs::write(again.join("rows.bin"), &rows[..rows.len() - 4]).unwrap();
    assert!(matches!(
        Prepared::open(&again),
        Err(SftError::Corrupt { .. })
    ));
}

#[test]
fn preference_pairs_split_exactly_at_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let codec = tokenizer();
    let lines = [
        serde_json::json!({"prompt": Q1, "chosen": A1, "rejected": "不知道。"}).to_string(),
        serde_json::json!({
            "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": Q2}],
            "chosen": [{"role": "assistant", "content": "2"}],
            "rejected": [{"role": "assistant", "content": "3"}],
        })
        .to_string(),
        // Starts with newlines: merged with the prompt's last `\n` by the tokenizer.
        serde_json::json!({"prompt": "q", "chosen": "\n\nanswer", "rejected": "answer"})
            .to_string(),
        serde_json::json!({"prompt": "q", "chosen": "same", "rejected": "same"}).to_string(),
        serde_json::json!({"prompt": "q", "chosen": "a"}).to_string(),
        "nope".to_string(),
    ];
    let path = write_lines(dir.path(), "pairs.jsonl", &lines);
    let set = read_pairs(&path, &codec, 2048).unwrap();
    assert_eq!(set.pairs.len(), 3);
    assert_eq!(set.report.pairs, 3);
    assert_eq!(set.report.split_merged, 1);
    assert_eq!(
        set.report.quarantined,
        BTreeMap::from([(SkipKind::BadField, 1), (SkipKind::NotJson, 1)])
    );
    assert_eq!(
        set.report.dropped,
        BTreeMap::from([(SkipKind::SameCompletions, 1)])
    );
    let skipped: Vec<u64> = set.skipped.iter().map(|s| s.line).collect();
    assert_eq!(skipped, [4, 5, 6]);
    assert_eq!((set.report.lines, set.report.blank), (6, 0));

    let prompt = format!(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{Q1}\
         <|im_end|>\n<|im_start|>assistant\n"
    );
    let first = &set.pairs[0];
    assert_eq!(first.prompt, codec.encode(&prompt).unwrap());
    let joined = |a: &[u32], b: &[u32]| [a, b].concat();
    assert_eq!(
        joined(&first.prompt, &first.chosen),
        codec.encode(&format!("{prompt}{A1}<|im_end|>")).unwrap()
    );
    assert_eq!(
        joined(&first.prompt, &first.rejected),
        codec
            .encode(&format!("{prompt}不知道。<|im_end|>"))
            .unwrap()
    );
    assert_eq!(first.chosen.last(), Some(&IM_END));

    let second = &set.pairs[1];
    let prompt = format!(
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n{Q2}<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        joined(&second.prompt, &second.chosen),
        codec.encode(&format!("{prompt}2<|im_end|>")).unwrap()
    );
    assert_eq!(codec.decode(&second.rejected), "3<|im_end|>");

    // The merged one: the same prompt tokens for both, the same text.
    let third = &set.pairs[2];
    let prompt = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nq\
                  <|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(third.prompt, codec.encode(prompt).unwrap());
    assert_eq!(
        codec.decode(&joined(&third.prompt, &third.chosen)),
        format!("{prompt}\n\nanswer<|im_end|>")
    );
    assert_eq!(third.chosen, codec.encode("\n\nanswer<|im_end|>").unwrap());
    assert_eq!(
        joined(&third.prompt, &third.rejected),
        codec.encode(&format!("{prompt}answer<|im_end|>")).unwrap()
    );

    // Cut: the prompt loses its start, the completions their end.
    let cut = read_pairs(&path, &codec, 16).unwrap();
    assert_eq!(cut.report.truncated, 3);
    for (pair, whole) in cut.pairs.iter().zip(&set.pairs) {
        assert!(pair.prompt.len() + pair.chosen.len().max(pair.rejected.len()) <= 16);
        assert!(whole.prompt.ends_with(&pair.prompt));
        assert!(whole.chosen.starts_with(&pair.chosen));
        assert!(whole.rejected.starts_with(&pair.rejected));
    }
}

#[test]
fn packing_utilisation_at_cutoff_768_on_belle_and_firefly() {
    let dir = tempfile::tempdir().unwrap();
    let codec = tokenizer();
    let (belle_text, belle_messages) = belle_files(dir.path());
    // Both forms of BELLE give the same examples.
    let from_text = read_examples(&belle_text, &codec, &options(768, false)).unwrap();
    let from_messages = read_examples(&belle_messages, &codec, &options(768, false)).unwrap();
    assert_eq!(from_text.examples, from_messages.examples);
    assert_eq!(from_text.report, from_messages.report);

    let firefly = firefly_shards(dir.path());
    let mut measured = Vec::new();
    for (name, sources) in [("belle", vec![belle_text]), ("firefly", firefly)] {
        for packing in [false, true] {
            let out = dir.path().join(format!("{name}-{packing}"));
            let prepared =
                Prepared::prepare(&sources, &tokenizer_path(), &options(768, packing), &out)
                    .unwrap();
            let report = prepared.report();
            println!(
                "{name} cutoff 768 packing {packing}: {} examples ({} cut, {} quarantined, {} \
                 dropped), {} tokens ({} trained), {} rows, {} padding, utilisation {:.4}",
                report.read.examples,
                report.read.truncated,
                report.read.quarantined_lines(),
                report.read.dropped_lines(),
                report.read.tokens,
                report.read.trained,
                report.rows.rows,
                report.rows.padding,
                report.rows.utilisation
            );
            assert_eq!(report.read.quarantined_lines(), 0);
            assert_eq!(report.read.examples + report.read.dropped_lines(), 1000);
            measured.push((name, packing, report.clone()));
        }
    }
    for pair in measured.chunks(2) {
        let (unpacked, packed) = (&pair[0].2, &pair[1].2);
        assert_eq!(unpacked.read, packed.read);
        assert_eq!(unpacked.rows.rows, unpacked.read.examples);
        // One example a row wastes most of a 768-token row on these short answers; packing
        // fills rows nearly full: within 2% of the fewest rows the tokens could fill.
        assert!(unpacked.rows.utilisation < 0.5, "{unpacked:?}");
        assert!(packed.rows.utilisation > 0.9, "{packed:?}");
        let fewest = packed.read.tokens.div_ceil(768);
        assert!(packed.rows.rows <= fewest + fewest / 50 + 1, "{packed:?}");
    }
}
