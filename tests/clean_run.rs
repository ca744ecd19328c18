//! `steel clean` end to end: Steel's two recipes on the real samples, the report, traces,
//! determinism across thread counts, bad input, and dedup against the demo corpus's truth.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use steel_bench::samples::TEXT_SAMPLES;
use steel_dataflow::clean::filters::Resources;
use steel_dataflow::clean::lm::Unit;
use steel_dataflow::clean::lm::train::train_documents;
use steel_dataflow::clean::recipe::Recipe;
use steel_dataflow::clean::report::CleanReport;
use steel_dataflow::clean::run::{
    CleanError, CleanOptions, REJECTS_FILE, REPORT_JSON, REPORT_TEXT, clean,
};
use steel_dataflow::demo_data::{DemoDataOptions, DocKind, generate, read_truth};

fn shared_recipe(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/recipes")
        .join(name)
}

/// The converted text samples (5,240 documents) in `dir/converted`.
fn converted_text_samples(dir: &Path) -> String {
    let inputs: Vec<String> = TEXT_SAMPLES.iter().map(|f| common::sample(f)).collect();
    common::run(dir, "converted", &inputs, "auto");
    dir.join("converted").display().to_string()
}

/// A 3-gram character model of `input` (the bench and the demo build theirs the same way).
fn train_lm(input: &str, path: &Path) {
    let (arpa, _) = train_documents(&[input.to_string()], 3, Unit::Char).unwrap();
    std::fs::write(path, arpa).unwrap();
}

fn run_recipe(
    recipe: &Recipe,
    path: &Path,
    input: &[String],
    out: &Path,
    resources: Resources,
) -> CleanReport {
    let mut options = CleanOptions::new(path, out);
    options.resources = resources;
    options.trace = 2;
    clean(input, recipe, &options).unwrap()
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every operator's counts chain: one's output is the next one's input.
fn assert_counts_chain(report: &CleanReport) {
    let mut docs = report.docs_in;
    for op in &report.ops {
        assert_eq!(op.docs_in, docs, "{}", op.name);
        assert_eq!(op.removed, op.docs_in - op.docs_out, "{}", op.name);
        docs = op.docs_out;
    }
    assert_eq!(docs, report.docs_out);
}

#[test]
fn steel_text_recipe_keeps_what_data_juicer_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let input = converted_text_samples(dir.path());
    let path = shared_recipe("steel_text.yaml");
    let mut recipe = Recipe::load(&path).unwrap();
    assert_eq!(recipe.ops.len(), 22);
    assert_eq!(recipe.np, Some(20));
    assert!(recipe.ignored_keys.contains(&"export_path".to_string()));

    // Without perplexity_filter (data-juicer downloads its model): data-juicer 1.6.1 keeps
    // 1,199 of these 5,240 documents (`benches/clean.sh` compares them document by document).
    let full = recipe.clone();
    recipe.ops.retain(|op| op.name != "perplexity_filter");
    let out = dir.path().join("no-ppl");
    let report = run_recipe(
        &recipe,
        &path,
        std::slice::from_ref(&input),
        &out,
        Resources::default(),
    );
    assert_eq!((report.docs_in, report.docs_out), (5240, 1199));
    assert_counts_chain(&report);
    assert_eq!(lines(&out.join("part-00000.jsonl")).len(), 1199);

    // The whole recipe, with a model trained on the samples.
    let model = dir.path().join("zh.arpa");
    train_lm(&input, &model);
    let out = dir.path().join("full");
    let resources = Resources {
        lm_model: Some(model),
        hf_tokenizer: None,
    };
    let report = run_recipe(&full, &path, &[input], &out, resources);
    assert_counts_chain(&report);
    let ppl = report
        .ops
        .iter()
        .find(|op| op.name == "perplexity_filter")
        .unwrap();
    let stat = ppl.stat.as_ref().unwrap();
    assert!(stat.min > 1.0 && stat.max < 1500.0 * 100.0, "{stat:?}");

    // The report: JSON with every operator, a readable table, traces with before/after.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(REPORT_JSON)).unwrap()).unwrap();
    assert_eq!(json["ops"].as_array().unwrap().len(), 22);
    let fix = &json["ops"][7];
    assert_eq!(fix["name"], "fix_unicode_mapper");
    assert_eq!(fix["trace"].as_array().unwrap().len(), 2);
    assert!(
        fix["trace"][0]["after"].is_string()
            && fix["trace"][0]["before"] != fix["trace"][0]["after"]
    );
    let alnum = &json["ops"][12];
    assert_eq!(alnum["stat_name"], "alnum_ratio");
    assert!(alnum["trace"][0]["stat"].as_f64().unwrap() > 0.9);
    assert_eq!(alnum["stat"]["quantiles"].as_array().unwrap().len(), 7);
    let table = std::fs::read_to_string(out.join(REPORT_TEXT)).unwrap();
    assert!(
        table.contains("document_simhash_deduplicator") && table.contains("ignored recipe keys")
    );
    let brief = report.brief();
    assert_eq!(brief["ops"][0]["name"], "chinese_convert_mapper");
    assert_eq!(brief["docs_in"], 5240);
}

#[test]
fn steel_code_recipe_runs_on_starcoder() {
    let dir = tempfile::tempdir().unwrap();
    common::run(
        dir.path(),
        "code",
        &[common::sample("starcoder_python.parquet")],
        "starcoder",
    );
    let path = shared_recipe("steel_code.yaml");
    let recipe = Recipe::load(&path).unwrap();
    assert_eq!(recipe.ops.len(), 15);
    assert!(
        recipe.notes.iter().any(|n| n.contains("text_keys")),
        "{:?}",
        recipe.notes
    );
    // alphanumeric_filter with tokenization: true needs a tokenizer; without one, a clear error.
    let input = [dir.path().join("code").display().to_string()];
    let error = clean(
        &input,
        &recipe,
        &CleanOptions::new(&path, dir.path().join("x")),
    )
    .unwrap_err();
    assert!(
        matches!(error, CleanError::Recipe(ref m) if m.contains("--hf-tokenizer")),
        "{error}"
    );
    let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/tokenizers/qwen1_5/tokenizer.json");
    let resources = Resources {
        lm_model: None,
        hf_tokenizer: Some(tokenizer),
    };
    let report = run_recipe(&recipe, &path, &input, &dir.path().join("out"), resources);
    assert_eq!(report.docs_in, 500);
    assert_counts_chain(&report);
    assert!(
        report.docs_out > 50 && report.docs_out < 500,
        "{}",
        report.docs_out
    );
    let copyright = &report.ops[5];
    assert_eq!(copyright.name, "clean_copyright_mapper");
    assert!(copyright.changed.unwrap() > 0);
}

#[test]
fn output_is_identical_for_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let input = converted_text_samples(dir.path());
    let path = shared_recipe("steel_text.yaml");
    let mut recipe = Recipe::load(&path).unwrap();
    recipe.ops.retain(|op| op.name != "perplexity_filter");
    let mut outputs = Vec::new();
    for threads in [1, 2] {
        let out = dir.path().join(format!("t{threads}"));
        let mut options = CleanOptions::new(&path, &out);
        options.trace = 3;
        // Small batches so batching and the dedup order across batches are exercised.
        options.batch.records = 97;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let report = pool
            .install(|| clean(std::slice::from_ref(&input), &recipe, &options))
            .unwrap();
        let mut json: serde_json::Value = serde_json::to_value(&report).unwrap();
        for volatile in ["seconds", "threads", "output", "shards"] {
            json.as_object_mut().unwrap().remove(volatile);
        }
        for op in json["ops"].as_array_mut().unwrap() {
            let seconds = op.as_object_mut().unwrap().remove("seconds").unwrap();
            assert!(seconds.as_f64().unwrap() >= 0.0);
        }
        outputs.push((std::fs::read(out.join("part-00000.jsonl")).unwrap(), json));
    }
    assert!(
        outputs[0].0 == outputs[1].0,
        "shards differ between 1 and 2 threads"
    );
    assert_eq!(outputs[0].1, outputs[1].1);
}

#[test]
fn bad_records_are_quarantined_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"a fine document with enough words in it to pass\"}\n\
         {not json\n\
         {\"content\": \"no text field\"}\n\
         {\"text\": 42}\n\
         [1, 2]\n\
         {\"text\": \"\", \"meta\": {\"keep\": true}}\n",
    )
    .unwrap();
    let recipe_path = dir.path().join("r.yaml");
    std::fs::write(
        &recipe_path,
        "process:\n  - whitespace_normalization_mapper:\n",
    )
    .unwrap();
    let recipe = Recipe::load(&recipe_path).unwrap();
    let out = dir.path().join("out");
    let report = clean(
        &[input.display().to_string()],
        &recipe,
        &CleanOptions::new(&recipe_path, &out),
    )
    .unwrap();
    assert_eq!(
        (report.docs_in, report.docs_out, report.rejected),
        (2, 2, 4)
    );
    let reasons: Vec<(&str, u64)> = report
        .reject_reasons
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        reasons,
        [
            ("malformed_json", 1),
            ("missing_field", 1),
            ("not_an_object", 1),
            ("wrong_type", 1)
        ]
    );
    let rejects = lines(&out.join(REJECTS_FILE));
    assert_eq!(rejects[0]["line"], 2);
    assert_eq!(rejects[1]["reason"], "missing_field");
    // Other fields of a record travel with it.
    let kept = lines(&out.join("part-00000.jsonl"));
    assert_eq!(kept[1]["meta"]["keep"], true);
    // A second run into the same directory is refused rather than mixing outputs.
    let again = clean(
        &[input.display().to_string()],
        &recipe,
        &CleanOptions::new(&recipe_path, &out),
    );
    assert!(matches!(again, Err(CleanError::OutputNotEmpty(_))));
}

/// Dedup against the demo corpus's truth: exact and near-duplicates (1 to 3 character edits)
/// are found, and no clean original is dropped.
#[test]
fn dedup_finds_the_planted_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let options = DemoDataOptions {
        docs: 2000,
        seed: 7,
        files: 3,
        output: dir.path().join("data"),
    };
    generate(&options).unwrap();
    let truth = read_truth(&dir.path().join("data")).unwrap();
    let corpus = dir.path().join("data/corpus").display().to_string();
    for (name, body) in [
        (
            "minhash",
            "  - document_deduplicator:\n  - document_minhash_deduplicator:\n      tokenization: character\n      window_size: 5\n",
        ),
        (
            "simhash",
            "  - document_simhash_deduplicator:\n      tokenization: character\n      window_size: 5\n",
        ),
    ] {
        let recipe_path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&recipe_path, format!("process:\n{body}")).unwrap();
        let recipe = Recipe::load(&recipe_path).unwrap();
        let out = dir.path().join(name);
        clean(
            std::slice::from_ref(&corpus),
            &recipe,
            &CleanOptions::new(&recipe_path, &out),
        )
        .unwrap();
        let kept: HashSet<String> = lines(&out.join("part-00000.jsonl"))
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect();
        let share_removed = |kind: DocKind| {
            let docs: Vec<_> = truth.iter().filter(|t| t.kind == kind).collect();
            docs.iter().filter(|t| !kept.contains(&t.id)).count() as f64 / docs.len() as f64
        };
        assert_eq!(share_removed(DocKind::ExactDup), 1.0, "{name}");
        if name == "minhash" {
            assert!(
                share_removed(DocKind::NearDup) >= 0.95,
                "{name}: {}",
                share_removed(DocKind::NearDup)
            );
        }
        // Clean originals (not junk, whose very short or very long random texts do collide).
        let lost: Vec<_> = truth
            .iter()
            .filter(|t| t.kind == DocKind::Original && t.junk.is_empty() && !kept.contains(&t.id))
            .collect();
        assert!(lost.is_empty(), "{name} dropped originals: {lost:?}");
    }
}

/// `steel ARGS` with every file it writes capped at `blocks` × 512 bytes (`ulimit -f`), as on
/// a disk that fills up: a write past the cap fails with "File too large" (SIGXFSZ ignored).
fn steel_with_file_cap(blocks: u32, args: &[&str]) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_steel"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_failed_clean_leaves_no_file_named_like_a_finished_shard() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let text: String = (0..3000)
        .map(|i| {
            format!(
                "{{\"text\": \"document {i} with words {}\"}}\n",
                i * 7919 % 10007
            )
        })
        .collect();
    std::fs::write(&input, text).unwrap();
    let recipe = dir.path().join("r.yaml");
    std::fs::write(&recipe, "process:\n  - whitespace_normalization_mapper:\n").unwrap();
    let out = dir.path().join("out");
    let (recipe, out_arg, input) = (
        recipe.display().to_string(),
        out.display().to_string(),
        input.display().to_string(),
    );
    let output = steel_with_file_cap(64, &["clean", "--recipe", &recipe, "-o", &out_arg, &input]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("File too large"), "{stderr}");
    assert!(
        stderr.contains("left unfinished: `_rejects.jsonl`, `part-00000.jsonl.tmp`"),
        "{stderr}"
    );
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // No `part-*.jsonl` (which `steel pack` would read), and no report.
    assert_eq!(names, ["_rejects.jsonl", "part-00000.jsonl.tmp"]);
}
