//! The `steel` binary: help for every command, `--json` summaries, exit codes.

use std::process::Command;

fn steel(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_steel"))
        .args(args)
        .output()
        .expect("steel runs")
}

#[test]
fn every_command_has_help_that_names_its_flags() {
    let cases: [(&[&str], &[&str]); 8] = [
        (
            &["--help"],
            &["convert", "demo-data", "demo", "bench", "--threads"],
        ),
        (
            &["convert", "--help"],
            &[
                "--format",
                "--output",
                "--field",
                "--output-format",
                "--max-rejects",
                "--json",
                "--shard-mb",
            ],
        ),
        (
            &["demo-data", "--help"],
            &["--docs", "--seed", "--files", "--output"],
        ),
        (&["demo", "--help"], &["--dir", "--docs"]),
        (
            &["sft", "--help"],
            &[
                "Chat data",
                "--cutoff",
                "--packing",
                "--train-on-prompt",
                "--last-turn-only",
                "--mix-pretrain",
                "--grad-accum",
                "--init-from",
            ],
        ),
        (
            &["dpo", "--help"],
            &[
                "Preference pairs",
                "--loss",
                "--beta",
                "--label-smoothing",
                "--gamma",
            ],
        ),
        (
            &["eval", "chat", "--help"],
            &["--checkpoint", "--data", "--json", "--last-turn-only"],
        ),
        (
            &["bench", "convert", "--help"],
            &["--samples", "--copies", "--threads-list"],
        ),
    ];
    for (args, flags) in cases {
        let out = steel(args);
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        for flag in flags {
            assert!(
                help.contains(flag),
                "`steel {}` does not mention {flag}",
                args.join(" ")
            );
        }
    }
}

#[test]
fn convert_json_summary_has_the_promised_fields() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"text\": \"你好\"}\nnot json\n").unwrap();
    let output = dir.path().join("out");
    let out = steel(&[
        "convert",
        "-f",
        "text",
        "-o",
        output.to_str().unwrap(),
        "--json",
        input.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["docs_in"], 2);
    assert_eq!(summary["docs_out"], 1);
    assert_eq!(summary["rejected"], 1);
    assert_eq!(
        summary["bytes_in"],
        std::fs::metadata(&input).unwrap().len()
    );
    assert_eq!(summary["bytes_out"], "你好".len());
    assert_eq!(summary["files"][0]["docs_out"], 1);
    assert_eq!(summary["reject_reasons"]["malformed_json"], 1);
    let human = String::from_utf8(out.stderr).unwrap();
    assert!(
        human.contains("2 docs in, 1 out, 1 rejected (malformed_json 1)"),
        "{human}"
    );
    // The same summary is kept next to the shards.
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(output.join("_summary.json")).unwrap()).unwrap();
    assert_eq!(kept["docs_out"], 1);
}

#[test]
fn bad_arguments_and_failed_runs_exit_non_zero_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = steel(&["convert", "-f", "klingon", "-o", "x", "a.jsonl"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown format `klingon`"));

    let missing = dir.path().join("missing.jsonl");
    let target = dir.path().join("o");
    let out = steel(&[
        "convert",
        "-f",
        "text",
        "-o",
        target.to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn demo_runs_end_to_end_and_says_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("demo");
    let out = steel(&["demo", "--dir", work.to_str().unwrap(), "--docs", "300"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("300 docs in, 300 out, 0 rejected"),
        "{stderr}"
    );
    assert!(work.join("converted/part-00000.jsonl").exists());
    assert!(work.join("data/truth.jsonl").exists());
    // The pipeline's second run cleaned only the appended file (300 docs in 4 files).
    assert!(
        stderr.contains("run 2: 1 new files, 75 documents through the operators"),
        "{stderr}"
    );
    assert!(
        stderr.contains("run 3: nothing new (4 known files)"),
        "{stderr}"
    );
    // The appended file reached the running trainer at its next checkpoint (step 40), and
    // the retraction left its training data at the next follow point (step 75).
    assert!(
        stderr.contains("step 40 (metrics.jsonl): the trainer took in 4 new chunks;"),
        "{stderr}"
    );
    assert!(
        stderr.contains("step 75 (metrics.jsonl): the trainer took in 2 new chunks and stopped serving 3 chunks holding retracted documents"),
        "{stderr}"
    );

    // steel train from a TOML file (paths relative to it), then resumed further by flags.
    let config = work.join("train.toml");
    std::fs::write(
        &config,
        "preset = \"tiny-topk-moe\"\ndata = [\"chunks\"]\nseq = 256\nsteps = 4\nmicro_batch = 1\nschedule = \"wsd\"\nout = \"moe\"\ncheckpoint_every = 2\n",
    )
    .unwrap();
    let out = steel(&["train", config.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = steel(&[
        "train",
        config.to_str().unwrap(),
        "--steps",
        "6",
        "--resume",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("6 steps"));
    let metrics = std::fs::read_to_string(work.join("moe/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 6);
    std::fs::write(&config, "steps = 4\nbogus = 1\n").unwrap();
    let out = steel(&["train", config.to_str().unwrap()]);
    assert!(!out.status.success());
}

#[test]
fn demo_cleans_and_scores_against_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("demo");
    let out = steel(&["demo", "--dir", work.to_str().unwrap(), "--docs", "400"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("document_minhash_deduplicator"), "{stderr}");
    assert!(
        stderr.contains(" 0/") && stderr.contains("clean originals"),
        "{stderr}"
    );
    assert!(work.join("cleaned/report.json").exists());
    assert!(work.join("chunks/manifest.json").exists());

    // The demo's trained model: evaluate it, export it, evaluate the export.
    let eval = |dir: &std::path::Path| -> serde_json::Value {
        let out = steel(&[
            "eval",
            "--checkpoint",
            dir.to_str().unwrap(),
            "--data",
            work.join("chunks").to_str().unwrap(),
            "--max-blocks",
            "4",
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let checkpoint = work.join("run/step-00000100");
    let trained = eval(&checkpoint);
    assert_eq!(
        (trained["tokens"].as_u64(), trained["blocks"].as_u64()),
        (Some(4 * 256), Some(4))
    );
    // Better than the uniform guess over the 2,000-token vocabulary.
    assert!(
        trained["loss"].as_f64().unwrap() < 2000f64.ln() - 0.5,
        "{trained}"
    );
    assert!(
        work.join("hf/config.json").exists(),
        "the demo exports its model"
    );
    let exported = work.join("hf-again");
    let out = steel(&[
        "export",
        "hf",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--output",
        exported.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exported.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "Qwen2ForCausalLM");
    assert_eq!(eval(&exported), trained);
}

#[test]
fn clean_json_summary_and_recipe_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"联系 a@b.com 今天\"}\n{\"text\": \"x\"}\nbroken\n",
    )
    .unwrap();
    let recipe = dir.path().join("r.yaml");
    std::fs::write(
        &recipe,
        "project_name: t\nprocess:\n  - clean_email_mapper:\n  - text_length_filter:\n      min_len: 3\n",
    )
    .unwrap();
    let output = dir.path().join("out");
    let out = steel(&[
        "clean",
        "--recipe",
        recipe.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--json",
        input.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["docs_in"].as_u64(), summary["docs_out"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(summary["rejected"], 1);
    assert_eq!(summary["ops"][0]["name"], "clean_email_mapper");
    assert_eq!(summary["ops"][0]["changed"], 1);
    assert_eq!(summary["ops"][1]["docs_out"], 1);
    let kept = std::fs::read_to_string(output.join("part-00000.jsonl")).unwrap();
    assert_eq!(kept, "{\"text\":\"联系  今天\"}\n");

    std::fs::write(&recipe, "process:\n  - clean_emails_mapper:\n").unwrap();
    let out = steel(&[
        "clean",
        "--recipe",
        recipe.to_str().unwrap(),
        "-o",
        "unused",
        input.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown operator `clean_emails_mapper`")
            && stderr.contains("clean_email_mapper"),
        "{stderr}"
    );
}

#[test]
fn lm_train_writes_a_model_the_filter_reads() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ref.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"今天天气很好\"}\n{\"text\": \"今天我们去公园\"}\n",
    )
    .unwrap();
    let model = dir.path().join("m.arpa");
    let out = steel(&[
        "lm",
        "train",
        "--order",
        "2",
        "-o",
        model.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arpa = std::fs::read_to_string(&model).unwrap();
    assert!(
        arpa.starts_with("\\data\\\nngram 1=")
            && arpa.contains("\\2-grams:")
            && arpa.ends_with("\\end\\\n")
    );
    assert!(
        arpa.contains("\t今 天\t") || arpa.contains("\t今 天\n"),
        "{arpa}"
    );
}

mod common;

/// `steel train --device cuda` for one step on demo chunks under `dir`: its output, and the
/// checkpoints it left in its run directory.
fn train_one_step_on_cuda(dir: &std::path::Path) -> (std::process::Output, Vec<String>) {
    let chunks = common::demo_chunks(dir, 16);
    let run = dir.join("run");
    let out = steel(&[
        "train",
        "--data",
        chunks.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--steps",
        "1",
        "--micro-batch",
        "1",
        "--device",
        "cuda",
    ]);
    let checkpoints = std::fs::read_dir(&run)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("step-"))
                .collect()
        })
        .unwrap_or_default();
    (out, checkpoints)
}

/// A binary built without the `cuda` feature refuses `--device cuda`, saying to rebuild with
/// `--features cuda`, and trains nothing. (Only a build without the feature can check this;
/// CI builds with it, and runs the test below instead.)
#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_device_without_the_cuda_feature_says_to_rebuild_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (out, checkpoints) = train_one_step_on_cuda(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "this binary was built without the `cuda` feature: rebuild with \
             `cargo build --release --features cuda`"
        ),
        "{stderr}"
    );
    assert_eq!(checkpoints, Vec::<String>::new());
}

/// A binary built with the `cuda` feature, on a machine without a CUDA driver, refuses
/// `--device cuda` with "no CUDA driver found" and trains nothing.
#[cfg(feature = "cuda")]
#[test]
fn cuda_device_without_a_driver_says_no_cuda_driver_found() {
    match steel_kernels::cuda::Gpu::open(0) {
        Err(error) if error.0.contains("no CUDA driver found") => {}
        // A machine with a driver: the GPU path is tested in tests/train_cuda.rs.
        _ => return,
    }
    let dir = tempfile::tempdir().unwrap();
    let (out, checkpoints) = train_one_step_on_cuda(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no CUDA driver found (libcuda.so): this machine cannot run the CUDA path"),
        "{stderr}"
    );
    assert!(!stderr.contains("without the `cuda` feature"), "{stderr}");
    assert_eq!(checkpoints, Vec::<String>::new());
}
