//! `steel run` end to end: appends in several steps give what one batch run gives, byte for
//! byte across worker counts and processes; retraction; killed runs; bad state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const STEEL: &str = env!("CARGO_BIN_EXE_steel");

/// The demo corpus (2,000 documents with planted duplicates, 4 files), made once per test.
fn corpus(dir: &Path) -> Vec<PathBuf> {
    let out = dir.join("gen");
    let status = Command::new(STEEL)
        .args([
            "demo-data",
            "--docs",
            "2000",
            "--files",
            "4",
            "--seed",
            "7",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success());
    (0..4)
        .map(|i| out.join("corpus").join(format!("part-{i:05}.jsonl")))
        .collect()
}

/// A job directory with `sources` (name, files) and the demo recipe without perplexity.
fn job(dir: &Path, name: &str, workers: usize, sources: &[(&str, &[PathBuf])]) -> PathBuf {
    let job = dir.join(name);
    std::fs::create_dir_all(&job).unwrap();
    let recipe = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/recipes/demo_run.yaml"
    ))
    .unwrap();
    std::fs::write(job.join("recipe.yaml"), recipe).unwrap();
    let mut toml = format!("state = \"state\"\noutput = \"out\"\nworkers = {workers}\n");
    for (source, files) in sources {
        let raw = job.join("raw").join(source);
        std::fs::create_dir_all(&raw).unwrap();
        for file in *files {
            std::fs::copy(file, raw.join(file.file_name().unwrap())).unwrap();
        }
        toml.push_str(&format!(
            "[[source]]\nname = \"{source}\"\nformat = \"text\"\npath = \"raw/{source}/*.jsonl\"\n"
        ));
    }
    toml.push_str("[clean]\nrecipe = \"recipe.yaml\"\n");
    std::fs::write(job.join("pipeline.toml"), toml).unwrap();
    job
}

fn add_files(job: &Path, source: &str, files: &[PathBuf]) {
    for file in files {
        std::fs::copy(
            file,
            job.join("raw").join(source).join(file.file_name().unwrap()),
        )
        .unwrap();
    }
}

fn steel(job: &Path, args: &[&str], env: Option<(&str, &str)>) -> Output {
    let mut command = Command::new(STEEL);
    command.current_dir(job).args(args);
    if let Some((k, v)) = env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn run_ok(job: &Path, args: &[&str]) -> serde_json::Value {
    let out = steel(job, args, None);
    assert!(
        out.status.success(),
        "steel {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The documents live now: every epoch's shards in order, less its tombstones. Keyed by
/// (source, file name, row), with the output line.
fn live(job: &Path) -> BTreeMap<(String, String, u64), String> {
    let mut live = BTreeMap::new();
    let mut epochs: Vec<PathBuf> = std::fs::read_dir(job.join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    epochs.sort();
    let key = |v: &serde_json::Value| {
        let meta = &v["meta"];
        let file = Path::new(meta["file"].as_str().unwrap())
            .file_name()
            .unwrap();
        (
            meta["source"].as_str().unwrap().to_string(),
            file.to_string_lossy().into_owned(),
            meta["row"].as_u64().unwrap(),
        )
    };
    for epoch in epochs {
        let mut parts: Vec<PathBuf> = std::fs::read_dir(&epoch)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("part-")
            })
            .collect();
        parts.sort();
        if let Ok(tombstones) = std::fs::read_to_string(epoch.join("tombstones.jsonl")) {
            for line in tombstones.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert!(
                    live.remove(&key(&v)).is_some(),
                    "tombstone of a document not live: {line}"
                );
            }
        }
        for part in parts {
            for line in std::fs::read_to_string(part).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let text = v["text"].as_str().unwrap().to_string();
                assert!(
                    live.insert(key(&v), text).is_none(),
                    "document output twice: {line}"
                );
            }
        }
    }
    live
}

/// Every output file's bytes, by path under `out/` (reports hold timings, so not those).
fn output_bytes(job: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for epoch in std::fs::read_dir(job.join("out")).unwrap() {
        let epoch = epoch.unwrap().path();
        if !epoch.is_dir() {
            // `_committed.json`: which state writes the output, not output itself.
            continue;
        }
        for file in std::fs::read_dir(&epoch).unwrap() {
            let file = file.unwrap().path();
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("report") {
                let relative = format!("{}/{name}", epoch.file_name().unwrap().to_string_lossy());
                files.insert(relative, std::fs::read(&file).unwrap());
            }
        }
    }
    files
}

/// Output lines with file paths made relative, so jobs in different directories compare.
fn normalised(job: &Path) -> BTreeMap<String, String> {
    output_bytes(job)
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                String::from_utf8(v)
                    .unwrap()
                    .replace(&job.display().to_string(), "JOB"),
            )
        })
        .collect()
}

/// Add a `[pack]` section to `job`'s pipeline file: the Qwen tokenizer, 1,032-token chunks
/// into `job/chunks`.
fn with_pack(job: &Path) {
    let toml = std::fs::read_to_string(job.join("pipeline.toml")).unwrap();
    let section = format!(
        "[pack]\ntokenizer = \"{}/../shared/data/tokenizers/qwen1_5/tokenizer.json\"\noutput = \"chunks\"\nblock_size = 128\nchunk_blocks = 8\n",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::write(job.join("pipeline.toml"), format!("{toml}{section}")).unwrap();
}

/// `steel run --watch` of `job`, looking every 0.2 s and stopping after 3 s with nothing new.
fn watch(job: &Path) -> std::process::Child {
    Command::new(STEEL)
        .current_dir(job)
        .args([
            "run",
            "pipeline.toml",
            "--json",
            "--watch",
            "--interval",
            "0.2",
            "--idle-exit",
            "3",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The `--json` outcome of a `watch` that exited successfully.
fn finished(child: std::process::Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Wait (at most 2 minutes) until `path` exists.
fn wait_for(path: &Path, what: &str) {
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(start.elapsed().as_secs() < 120, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn appends_equal_one_batch_run_and_workers_do_not_change_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let batch = job(dir.path(), "batch", 1, &[("web", &files)]);
    let report = run_ok(&batch, &["run", "pipeline.toml", "--json"]);
    let counts = &report["epochs"][0]["sources"]["web"];
    let expected = live(&batch);
    // The batch `steel clean` of the same recipe keeps the same texts.
    let inputs: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let cleaned = dir.path().join("cleaned");
    let out = Command::new(STEEL)
        .args(["clean", "--recipe", "recipes/demo_run.yaml", "--json", "-o"])
        .arg(&cleaned)
        .args(&inputs)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut clean_texts: Vec<String> = std::fs::read_to_string(cleaned.join("part-00000.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut run_texts: Vec<String> = expected.values().cloned().collect();
    clean_texts.sort();
    run_texts.sort();
    assert_eq!(
        run_texts, clean_texts,
        "steel run and steel clean keep different documents"
    );
    assert!(counts["exact_dups"].as_u64().unwrap() >= 198, "{report}");
    assert!(counts["near_dups"].as_u64().unwrap() >= 100, "{report}");

    let two = job(dir.path(), "two-workers", 2, &[("web", &files)]);
    run_ok(&two, &["run", "pipeline.toml", "--json"]);
    assert_eq!(
        normalised(&two),
        normalised(&batch),
        "2 workers wrote other bytes than 1"
    );

    let appended = job(dir.path(), "appended", 2, &[("web", &files[..1])]);
    // Small batches: many timestamps per file and per epoch.
    let toml = std::fs::read_to_string(appended.join("pipeline.toml")).unwrap();
    std::fs::write(
        appended.join("pipeline.toml"),
        format!("batch_docs = 37\n{toml}"),
    )
    .unwrap();
    run_ok(&appended, &["run", "pipeline.toml", "--json"]);
    for file in &files[1..] {
        add_files(&appended, "web", std::slice::from_ref(file));
        let report = run_ok(&appended, &["run", "pipeline.toml", "--json"]);
        // Only the new file's documents went through the operators.
        assert_eq!(report["epochs"][0]["ops"][0]["docs_in"], 500, "{report}");
    }
    assert_eq!(
        live(&appended),
        expected,
        "4 appends differ from one batch run"
    );

    // Nothing new: nothing changes, and the run says so.
    let manifest = std::fs::read(appended.join("state/manifest.json")).unwrap();
    let report = run_ok(&appended, &["run", "pipeline.toml", "--json"]);
    assert_eq!(report["nothing_new"], true);
    assert_eq!(report["known_files"], 4);
    assert_eq!(
        std::fs::read(appended.join("state/manifest.json")).unwrap(),
        manifest
    );

    let status = run_ok(&appended, &["status", "--state", "state", "--json"]);
    assert_eq!(status["epochs"], 4);
    assert_eq!(
        status["sources"]["web"]["kept"].as_u64().unwrap() as usize,
        expected.len()
    );
}

#[test]
fn retraction_readmits_and_tombstones_like_a_run_without_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let both = job(
        dir.path(),
        "both",
        2,
        &[("web", &files[1..]), ("old", &files[..1])],
    );
    run_ok(&both, &["run", "pipeline.toml", "--json"]);
    let before = live(&both);
    let report = run_ok(
        &both,
        &["retract", "pipeline.toml", "--source", "web", "--json"],
    );
    let epoch = &report["epochs"][0];
    assert!(epoch["readmitted"].as_u64().unwrap() > 0, "{epoch}");
    assert!(epoch["tombstoned"].as_u64().unwrap() > 0, "{epoch}");
    let without = job(dir.path(), "without", 1, &[("old", &files[..1])]);
    run_ok(&without, &["run", "pipeline.toml", "--json"]);
    assert_eq!(live(&both), live(&without));
    assert_ne!(live(&both), before);
    // Retracted files are not ingested again.
    let report = run_ok(&both, &["run", "pipeline.toml", "--json"]);
    assert_eq!(report["nothing_new"], true);
    assert!(
        report["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("retracted")
    );
}

/// A job that ran `files[..2]`, then was killed at fail `point` appending `files[2..]`.
fn killed_at(dir: &Path, point: &str, files: &[PathBuf]) -> PathBuf {
    let crashed = job(dir, point, 2, &[("web", &files[..2])]);
    run_ok(&crashed, &["run", "pipeline.toml", "--json"]);
    add_files(&crashed, "web", &files[2..]);
    let out = steel(
        &crashed,
        &["run", "pipeline.toml", "--json"],
        Some(("STEEL_FAIL_AT", point)),
    );
    assert_eq!(
        out.status.code(),
        Some(86),
        "{point}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    crashed
}

#[test]
fn a_killed_run_is_finished_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let reference = job(dir.path(), "reference", 2, &[("web", &files[..2])]);
    run_ok(&reference, &["run", "pipeline.toml", "--json"]);
    add_files(&reference, "web", &files[2..]);
    run_ok(&reference, &["run", "pipeline.toml", "--json"]);
    for point in [
        "after-first-file",
        "before-epoch-rename",
        "before-commit",
        "before-manifest-rename",
    ] {
        let crashed = killed_at(dir.path(), point, &files);
        let report = run_ok(&crashed, &["run", "pipeline.toml", "--json"]);
        assert_eq!(report["epochs"][0]["epoch"], 2, "{point}: {report}");
        assert_eq!(normalised(&crashed), normalised(&reference), "{point}");
    }
    // Killed after epoch 2 committed, while merging its index segment with epoch 1's: the
    // merged segment is not committed, the next run removes it, and epoch 2 stands.
    let point = "before-compaction-commit";
    let crashed = killed_at(dir.path(), point, &files);
    let merged = crashed.join("state/index/000001-000002");
    assert!(merged.exists(), "the merge was written before the kill");
    let report = run_ok(&crashed, &["run", "pipeline.toml", "--json"]);
    assert_eq!(report["nothing_new"], true, "{report}");
    let removed = report["removed_leftovers"].to_string();
    assert!(removed.contains("000001-000002"), "{report}");
    assert!(!merged.exists());
    assert_eq!(normalised(&crashed), normalised(&reference), "{point}");
}

#[test]
fn bad_state_and_changed_files_are_reported_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let j = job(dir.path(), "job", 1, &[("web", &files[..1])]);
    // A foreign state directory.
    std::fs::create_dir_all(j.join("state")).unwrap();
    std::fs::write(j.join("state/notes.txt"), "mine").unwrap();
    let out = steel(&j, &["run", "pipeline.toml"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a steel run state"));
    assert_eq!(
        std::fs::read_to_string(j.join("state/notes.txt")).unwrap(),
        "mine"
    );
    std::fs::remove_file(j.join("state/notes.txt")).unwrap();
    run_ok(&j, &["run", "pipeline.toml", "--json"]);
    // A changed file under a known path: reported, not ingested twice.
    let known = j.join("raw/web").join(files[0].file_name().unwrap());
    let mut text = std::fs::read_to_string(&known).unwrap();
    text.push_str("{\"text\": \"one more document appended to a file already ingested\"}\n");
    std::fs::write(&known, text).unwrap();
    let report = run_ok(&j, &["run", "pipeline.toml", "--json"]);
    assert_eq!(report["nothing_new"], true);
    assert!(
        report["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("changed since")
    );
    // An empty file is ingested as no documents, once.
    std::fs::write(j.join("raw/web/empty.jsonl"), "").unwrap();
    let report = run_ok(&j, &["run", "pipeline.toml", "--json"]);
    let ingested = &report["epochs"][0]["files"];
    assert_eq!(ingested.as_array().unwrap().len(), 1, "{report}");
    assert_eq!(
        (ingested[0]["path"].as_str(), ingested[0]["docs"].as_u64()),
        (Some("raw/web/empty.jsonl"), Some(0))
    );
    let report = run_ok(&j, &["run", "pipeline.toml", "--json"]);
    assert_eq!(report["nothing_new"], true, "{report}");
    // A corrupt manifest.
    std::fs::write(j.join("state/manifest.json"), "{ not json").unwrap();
    let out = steel(&j, &["run", "pipeline.toml"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("manifest.json is corrupt"));
    assert_eq!(
        std::fs::read_to_string(j.join("state/manifest.json")).unwrap(),
        "{ not json"
    );
}

#[test]
fn two_processes_write_what_one_writes() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let one = job(dir.path(), "one", 1, &[("web", &files)]);
    run_ok(&one, &["run", "pipeline.toml", "--json"]);
    let two = job(dir.path(), "two", 1, &[("web", &files)]);
    let port = 20000 + std::process::id() % 20000;
    std::fs::write(
        two.join("hosts"),
        format!("127.0.0.1:{port}\n127.0.0.1:{}\n", port + 1),
    )
    .unwrap();
    let spawn = |p: &str| {
        Command::new(STEEL)
            .current_dir(&two)
            .args([
                "run",
                "pipeline.toml",
                "--json",
                "-w",
                "2",
                "-n",
                "2",
                "-p",
                p,
                "-h",
                "hosts",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn("0"), spawn("1"));
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(normalised(&two), normalised(&one));
}

#[test]
fn watch_ingests_files_as_they_appear() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let batch = job(dir.path(), "batch", 1, &[("web", &files[..2])]);
    run_ok(&batch, &["run", "pipeline.toml", "--json"]);
    let watched = job(dir.path(), "watched", 2, &[("web", &files[..1])]);
    let child = watch(&watched);
    // Wait for the first epoch's commit, then drop in the second file.
    wait_for(
        &watched.join("state/manifest.json"),
        "the first epoch never committed",
    );
    add_files(&watched, "web", &files[1..2]);
    let outcome = finished(child);
    assert_eq!(outcome["epochs"].as_array().unwrap().len(), 2, "{outcome}");
    assert_eq!(outcome["epochs"][1]["kind"], "watch");
    assert_eq!(live(&watched), live(&batch));
}

/// Flip one letter inside the first text of `path` (a JSONL state file), keeping valid JSON.
fn corrupt_a_text(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let at = text.find("\"text\":\"").unwrap() + 8;
    let mut bytes = text.into_bytes();
    let letter = (at..bytes.len())
        .find(|&i| bytes[i].is_ascii_lowercase())
        .unwrap();
    bytes[letter] = if bytes[letter] == b'z' { b'y' } else { b'z' };
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn corrupt_state_files_are_refused_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let j = job(
        dir.path(),
        "job",
        1,
        &[("web", &files[1..]), ("old", &files[..1])],
    );
    run_ok(&j, &["run", "pipeline.toml", "--json"]);
    // A corrupted `dups.jsonl` would re-admit corrupted text on retraction.
    let dups = j.join("state/epochs/000001/dups.jsonl");
    let good = std::fs::read(&dups).unwrap();
    corrupt_a_text(&dups);
    let out = steel(&j, &["retract", "pipeline.toml", "--source", "web"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("dups.jsonl") && stderr.contains("corrupt state file"),
        "{stderr}"
    );
    assert!(!j.join("out/epoch-000002").exists(), "nothing is committed");
    std::fs::write(&dups, good).unwrap();
    // A manifest with one digit changed is still JSON, but not the manifest that was written.
    let manifest = j.join("state/manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let changed = text.replacen("\"epoch\": 1", "\"epoch\": 3", 1);
    assert_ne!(changed, text);
    std::fs::write(&manifest, &changed).unwrap();
    let out = steel(&j, &["run", "pipeline.toml"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("manifest.json is corrupt: checksum mismatch"),
        "{stderr}"
    );
    std::fs::write(&manifest, &text).unwrap();
    let report = run_ok(
        &j,
        &["retract", "pipeline.toml", "--source", "web", "--json"],
    );
    assert!(report["epochs"][0]["readmitted"].as_u64().unwrap() > 0);
}

#[test]
fn one_writer_at_a_time_and_a_killed_writers_lock_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let j = job(dir.path(), "job", 1, &[("web", &files[..1])]);
    let mut watcher = Command::new(STEEL)
        .current_dir(&j)
        .args(["run", "pipeline.toml", "--watch", "--interval", "0.2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        &j.join("state/manifest.json"),
        "the first epoch never committed",
    );
    let out = steel(&j, &["run", "pipeline.toml"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let holder = format!("pid {} on host", watcher.id());
    assert!(
        stderr.contains("in use by another steel run") && stderr.contains(&holder),
        "{stderr}"
    );
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    // Killed: the kernel dropped its lock, its line stays and is reported by the next run.
    add_files(&j, "web", &files[1..2]);
    let report = run_ok(&j, &["run", "pipeline.toml", "--json"]);
    assert_eq!(report["epochs"][0]["epoch"], 2, "{report}");
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("took over the state's lock") && notes.contains(&holder),
        "{notes}"
    );
    let report = run_ok(&j, &["run", "pipeline.toml", "--json"]);
    assert!(
        !report["notes"].to_string().contains("took over"),
        "a finished run leaves no stale lock"
    );
}

#[test]
fn a_state_is_refused_to_another_pipeline_and_kept_by_a_moved_one() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let a = job(dir.path(), "a", 1, &[("web", &files[..1])]);
    run_ok(&a, &["run", "pipeline.toml", "--json"]);
    // Pipeline b: its own sources and output, a's state (same recipe).
    let b = job(dir.path(), "b", 1, &[("crawl", &files[1..2])]);
    let toml = std::fs::read_to_string(b.join("pipeline.toml")).unwrap();
    std::fs::write(
        b.join("pipeline.toml"),
        toml.replace("state = \"state\"", "state = \"../a/state\""),
    )
    .unwrap();
    let out = steel(&b, &["run", "pipeline.toml"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("belongs to another pipeline"), "{stderr}");
    assert!(
        stderr.contains("another pipeline (state `state`, output `out`, sources web)"),
        "{stderr}"
    );
    // Outside b's directory, so named absolute (by name: `..` resolved, links not followed).
    let theirs = format!("this one has state `{}`", a.join("state").display());
    assert!(stderr.contains(&theirs), "{stderr}");
    assert!(stderr.contains("sources crawl (missing web)"), "{stderr}");
    assert!(!b.join("out").exists());
    // A new source in a's own pipeline is an append, not another pipeline.
    let toml = std::fs::read_to_string(a.join("pipeline.toml")).unwrap();
    let toml = toml.replace(
        "[clean]",
        "[[source]]\nname = \"crawl\"\nformat = \"text\"\npath = \"raw/crawl/*.jsonl\"\n[clean]",
    );
    std::fs::write(a.join("pipeline.toml"), toml).unwrap();
    std::fs::create_dir_all(a.join("raw/crawl")).unwrap();
    add_files(&a, "crawl", &files[1..2]);
    let report = run_ok(&a, &["run", "pipeline.toml", "--json"]);
    assert_eq!(report["epochs"][0]["files"].as_array().unwrap().len(), 1);
    // The job moved as a whole keeps its state: nothing is ingested again.
    let moved = dir.path().join("moved");
    std::fs::rename(&a, &moved).unwrap();
    let report = run_ok(&moved, &["run", "pipeline.toml", "--json"]);
    assert_eq!(report["nothing_new"], true, "{report}");
    assert_eq!(report["known_files"], 2);
    add_files(&moved, "web", &files[2..3]);
    let report = run_ok(&moved, &["run", "pipeline.toml", "--json"]);
    let ingested = &report["epochs"][0]["files"];
    assert_eq!(ingested.as_array().unwrap().len(), 1, "{report}");
    assert_eq!(
        ingested[0]["path"],
        format!(
            "raw/web/{}",
            files[2].file_name().unwrap().to_string_lossy()
        )
    );
}

/// The documents a chunk directory serves: per (source, file name, row), the token pieces of
/// its live chunks' segments; and the chunk files taken out.
#[allow(clippy::type_complexity)]
fn served(chunks: &Path) -> (BTreeMap<(String, String, u64), Vec<Vec<u32>>>, Vec<String>) {
    use steel_dataflow::pack::{docs, manifest::Manifest};
    let manifest = Manifest::load(chunks).unwrap().unwrap();
    let mut served: BTreeMap<(String, String, u64), Vec<Vec<u32>>> = BTreeMap::new();
    for entry in &manifest.chunks {
        let tokens = manifest.read_chunk(chunks, entry).unwrap();
        let list = chunks.join(format!("{}.docs", entry.file));
        let segments = docs::decode(&std::fs::read(&list).unwrap(), &list).unwrap();
        for (segment, range) in docs::ranges(&segments, entry.tokens, &list).unwrap() {
            let file = &manifest.doc_files[segment.file as usize];
            let name = Path::new(&file.file).file_name().unwrap().to_string_lossy();
            let key = (file.source.clone(), name.into_owned(), segment.row);
            served.entry(key).or_default().push(tokens[range].to_vec());
        }
    }
    (
        served,
        manifest.retracted.iter().map(|c| c.file.clone()).collect(),
    )
}

/// `steel pack` of `job`'s output into `job/chunks` (Qwen tokenizer, 1,032-token chunks).
fn pack_run(job: &Path) -> serde_json::Value {
    let tokenizer = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/tokenizers/qwen1_5/tokenizer.json"
    );
    let args = [
        "pack",
        "--tokenizer",
        tokenizer,
        "-o",
        "chunks",
        "--block-size",
        "128",
        "--chunk-blocks",
        "8",
        "--json",
        "out",
    ];
    run_ok(job, &args)
}

#[test]
fn pack_follows_appends_and_retractions_document_by_document() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let j = job(
        dir.path(),
        "job",
        1,
        &[("web", &files[1..3]), ("old", &files[..1])],
    );
    run_ok(&j, &["run", "pipeline.toml", "--json"]);
    let tokenizer = steel_dataflow::pack::tokenizer::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/tokenizers/qwen1_5/tokenizer.json"
    )))
    .unwrap();
    // Served documents are exactly the live ones, and each document's pieces tile its
    // tokens (text + <|im_end|>) exactly once. After a retraction a piece may be served in
    // another chunk than its neighbours, so the pieces are matched, not concatenated.
    let check = |job: &Path| {
        let live = live(job);
        let (served, retracted) = served(&job.join("chunks"));
        assert_eq!(
            served.keys().collect::<Vec<_>>(),
            live.keys().collect::<Vec<_>>()
        );
        for (key, pieces) in &served {
            let mut expected = tokenizer
                .encode_fast(live[key].as_str(), false)
                .unwrap()
                .get_ids()
                .to_vec();
            expected.push(151645);
            let mut left: Vec<&Vec<u32>> = pieces.iter().collect();
            let mut at = 0;
            while let Some(i) = left.iter().position(|p| expected[at..].starts_with(p)) {
                at += left.swap_remove(i).len();
            }
            assert!(
                left.is_empty() && at == expected.len(),
                "{key:?}: pieces do not tile the document"
            );
        }
        retracted
    };
    let first = pack_run(&j);
    assert_eq!(first["epochs"].as_array().unwrap().len(), 1);
    assert!(check(&j).is_empty());
    let again = pack_run(&j);
    assert_eq!(again["nothing_new"], true, "{again}");

    add_files(&j, "web", &files[3..4]);
    run_ok(&j, &["run", "pipeline.toml", "--json"]);
    let append = pack_run(&j);
    let epochs = append["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 1, "{append}");
    assert!(
        epochs[0]["unit"]
            .as_str()
            .unwrap()
            .ends_with("epoch-000002")
    );
    assert_eq!(epochs[0]["files"], 1);
    assert!(check(&j).is_empty());

    let retract = run_ok(
        &j,
        &["retract", "pipeline.toml", "--source", "web", "--json"],
    );
    assert!(retract["epochs"][0]["readmitted"].as_u64().unwrap() > 0);
    let after = pack_run(&j);
    let epoch = &after["epochs"][0];
    assert!(
        epoch["retraction"]["docs_removed"].as_u64().unwrap() > 0,
        "{after}"
    );
    assert_eq!(epoch["tombstones_unmatched"], 0, "{after}");
    let retracted = check(&j);
    assert_eq!(
        retracted,
        epoch["retraction"]["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    );
    assert!(!retracted.is_empty());
}

#[test]
fn run_with_a_pack_section_packs_each_append_like_one_run_over_everything() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let once = job(dir.path(), "once", 1, &[("web", &files)]);
    with_pack(&once);
    let report = run_ok(&once, &["run", "pipeline.toml", "--json"]);
    assert_eq!(
        report["packs"][0]["epochs"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    let appended = job(dir.path(), "appended", 2, &[("web", &files[..2])]);
    with_pack(&appended);
    run_ok(&appended, &["run", "pipeline.toml", "--json"]);
    for file in &files[2..] {
        add_files(&appended, "web", std::slice::from_ref(file));
        let report = run_ok(&appended, &["run", "pipeline.toml", "--json"]);
        let packed = &report["packs"][0]["epochs"];
        assert_eq!(packed.as_array().unwrap().len(), 1, "{report}");
        assert_eq!(packed[0]["files"], 1);
    }
    let documents = |job: &Path| -> BTreeMap<(String, String, u64), Vec<u32>> {
        let (served, retracted) = served(&job.join("chunks"));
        assert!(retracted.is_empty());
        served
            .into_iter()
            .map(|(k, pieces)| (k, pieces.concat()))
            .collect()
    };
    let expected = documents(&once);
    assert_eq!(expected.len(), live(&once).len());
    assert_eq!(documents(&appended), expected);
    let report = run_ok(&appended, &["run", "pipeline.toml", "--json"]);
    assert_eq!(report["packs"][0]["nothing_new"], true, "{report}");
}
/// Every file under `dir` (recursively) with its bytes, by path relative to `dir`.
fn tree_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

/// A state built with one recipe is refused to a run with other recipe settings (a filter
/// parameter) or other dedup settings (a `[dedup]` section), naming both fingerprints, and
/// nothing in the state or the output changes; with its own settings it runs on.
#[test]
fn a_state_built_with_other_settings_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let j = job(dir.path(), "job", 1, &[("web", &files[..1])]);
    run_ok(&j, &["run", "pipeline.toml", "--json"]);
    add_files(&j, "web", &files[1..2]);
    let state = tree_bytes(&j.join("state"));
    let out = tree_bytes(&j.join("out"));
    let manifest: serde_json::Value = serde_json::from_slice(&state["manifest.json"]).unwrap();
    let built_with = manifest["settings"].as_str().unwrap().to_string();
    assert_eq!(built_with.len(), 16, "{built_with}");

    let recipe = std::fs::read_to_string(j.join("recipe.yaml")).unwrap();
    let pipeline = std::fs::read_to_string(j.join("pipeline.toml")).unwrap();
    let other_recipe = recipe.replace("min_len: 20\n", "min_len: 21\n");
    assert_ne!(other_recipe, recipe);
    let other_dedup = format!("{pipeline}[dedup]\nmethod = \"simhash\"\n");
    for (what, recipe_text, pipeline_text) in [
        ("recipe", other_recipe.as_str(), pipeline.as_str()),
        ("dedup", recipe.as_str(), other_dedup.as_str()),
    ] {
        std::fs::write(j.join("recipe.yaml"), recipe_text).unwrap();
        std::fs::write(j.join("pipeline.toml"), pipeline_text).unwrap();
        let output = steel(&j, &["run", "pipeline.toml"], None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "it was built with other recipe or dedup settings ({built_with} here, "
            )) && stderr.contains(" now); use a new state directory"),
            "{what}: {stderr}"
        );
        assert!(
            tree_bytes(&j.join("state")) == state,
            "{what}: the state changed"
        );
        assert!(
            tree_bytes(&j.join("out")) == out,
            "{what}: the output changed"
        );
    }

    // Its own settings again: the new file is taken in as the next epoch.
    std::fs::write(j.join("recipe.yaml"), &recipe).unwrap();
    std::fs::write(j.join("pipeline.toml"), &pipeline).unwrap();
    let report = run_ok(&j, &["run", "pipeline.toml", "--json"]);
    assert_eq!(report["epochs"][0]["epoch"], 2, "{report}");
}

/// A state whose manifest says version 3 (written by an older steel) is refused, named as
/// made by an older steel, and left as it was.
#[test]
fn a_state_made_by_an_older_steel_is_refused_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let j = job(dir.path(), "job", 1, &[("web", &files[..1])]);
    run_ok(&j, &["run", "pipeline.toml", "--json"]);
    add_files(&j, "web", &files[1..2]);
    let manifest = j.join("state/manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let older = text.replacen("\"version\": 4,", "\"version\": 3,", 1);
    assert_ne!(older, text);
    std::fs::write(&manifest, &older).unwrap();
    let state = tree_bytes(&j.join("state"));
    let out = tree_bytes(&j.join("out"));
    for command in ["run", "retract"] {
        let args: &[&str] = if command == "run" {
            &["run", "pipeline.toml"]
        } else {
            &["retract", "pipeline.toml", "--source", "web"]
        };
        let output = steel(&j, args, None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command}: {stderr}");
        assert!(
            stderr.contains(
                "manifest.json is `steel-run-state` version 3, not steel-run-state version 4 \
                 (made by an older steel, whose index this one cannot read: rebuild it by running \
                 the job again with a new, empty state directory and a new output directory; the \
                 sources are read again)"
            ),
            "{command}: {stderr}"
        );
        assert!(
            tree_bytes(&j.join("state")) == state,
            "{command}: the state changed"
        );
        assert!(
            tree_bytes(&j.join("out")) == out,
            "{command}: the output changed"
        );
    }
}

/// Records `steel run` cannot read (bad JSON, not an object, no text, a text of the wrong
/// type) go to the epoch's `_rejects.jsonl` with their reason and line, and are counted per
/// source in the epoch's report and in `steel status`; the good records of the same file and
/// the other source's are kept.
#[test]
fn records_steel_run_rejects_are_written_and_counted_per_source() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"text\": \"a good document of the crawl source, long enough to pass the length filter\"}\n\
         {\"text\": \"cut short\n\
         [1, 2]\n\
         {\"body\": \"no text field here\"}\n\
         {\"text\": 5}\n\
         {\"text\": \"another good document of the crawl source, also long enough to be kept\"}\n",
    )
    .unwrap();
    let j = job(
        dir.path(),
        "job",
        1,
        &[("web", &files[..1]), ("crawl", std::slice::from_ref(&bad))],
    );
    let report = run_ok(&j, &["run", "pipeline.toml", "--json"]);
    let sources = &report["epochs"][0]["sources"];
    assert_eq!(sources["crawl"]["rejected"], 4, "{report}");
    assert_eq!(sources["crawl"]["docs_in"], 6, "{report}");
    assert_eq!(sources["crawl"]["kept"], 2, "{report}");
    assert_eq!(sources["web"]["rejected"], 0, "{report}");

    let rejects: Vec<serde_json::Value> =
        std::fs::read_to_string(j.join("out/epoch-000001/_rejects.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    // The file as the manifest names it: relative to the pipeline file.
    let got: Vec<(&str, u64, &str)> = rejects
        .iter()
        .map(|r| {
            (
                r["file"].as_str().unwrap(),
                r["line"].as_u64().unwrap(),
                r["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("raw/crawl/bad.jsonl", 2, "malformed_json"),
            ("raw/crawl/bad.jsonl", 3, "not_an_object"),
            ("raw/crawl/bad.jsonl", 4, "missing_field"),
            ("raw/crawl/bad.jsonl", 5, "wrong_type"),
        ]
    );
    let crawl: Vec<(u64, String)> = live(&j)
        .into_iter()
        .filter(|((source, _, _), _)| source == "crawl")
        .map(|((_, _, row), text)| (row, text))
        .collect();
    assert_eq!(
        crawl,
        [
            (
                0,
                "a good document of the crawl source, long enough to pass the length filter"
                    .to_string()
            ),
            (
                5,
                "another good document of the crawl source, also long enough to be kept"
                    .to_string()
            ),
        ]
    );

    let status = run_ok(&j, &["status", "--state", "state", "--json"]);
    assert_eq!(status["sources"]["crawl"]["rejected"], 4, "{status}");
    assert_eq!(status["sources"]["web"]["rejected"], 0, "{status}");
}

#[test]
fn watch_with_a_pack_section_packs_each_epoch_as_files_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let watched = job(dir.path(), "watched", 1, &[("web", &files[..1])]);
    with_pack(&watched);
    let child = watch(&watched);
    wait_for(
        &watched.join("chunks/manifest.json"),
        "the first epoch was never packed",
    );
    add_files(&watched, "web", &files[1..2]);
    let outcome = finished(child);
    let packs = outcome["packs"].as_array().unwrap();
    assert_eq!(packs.len(), 2, "{outcome}");
    assert!(
        packs[1]["epochs"][0]["unit"]
            .as_str()
            .unwrap()
            .ends_with("epoch-000002")
    );
    // What the chunks serve is exactly what the watched job kept.
    let (served, retracted) = served(&watched.join("chunks"));
    assert!(retracted.is_empty());
    assert_eq!(
        served.keys().collect::<Vec<_>>(),
        live(&watched).keys().collect::<Vec<_>>()
    );
}

#[test]
fn an_output_is_written_by_one_state_and_packed_only_as_far_as_it_committed() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let j = job(dir.path(), "job", 1, &[("web", &files[..1])]);
    run_ok(&j, &["run", "pipeline.toml", "--json"]);
    let out = tree_bytes(&j.join("out"));
    // A second state aimed at the same output (or the first one deleted): refused, nothing
    // removed.
    let toml = std::fs::read_to_string(j.join("pipeline.toml")).unwrap();
    std::fs::write(
        j.join("other.toml"),
        toml.replace("state = \"state\"", "state = \"state2\""),
    )
    .unwrap();
    let refused = steel(&j, &["run", "other.toml"], None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("written by another state directory"),
        "{stderr}"
    );
    std::fs::rename(j.join("state"), j.join("state-old")).unwrap();
    let refused = steel(&j, &["run", "pipeline.toml"], None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("holds epochs up to 1 but the state has committed only 0"),
        "{stderr}"
    );
    assert!(tree_bytes(&j.join("out")) == out, "the output changed");
    // (The refused run made a new, empty state directory: only its lock.)
    std::fs::remove_dir_all(j.join("state")).unwrap();
    std::fs::rename(j.join("state-old"), j.join("state")).unwrap();
    // An epoch renamed into place but not committed (a run killed just then) is not packed.
    let staged = j.join("out/epoch-000002");
    std::fs::create_dir(&staged).unwrap();
    std::fs::copy(
        j.join("out/epoch-000001/part-00000.jsonl"),
        staged.join("part-00000.jsonl"),
    )
    .unwrap();
    std::fs::write(staged.join("report.json"), "{}").unwrap();
    let packed = pack_run(&j);
    let epochs = packed["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 1, "{packed}");
    assert!(
        epochs[0]["unit"]
            .as_str()
            .unwrap()
            .ends_with("epoch-000001")
    );
}

#[test]
fn run_and_clean_report_the_same_operators() {
    // `steel run` converts its sources (NFKC) before the recipe; `steel clean` on the same
    // files once converted sees the same texts in the same order, so both engines' per-
    // operator reports must agree on every count and every statistic.
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let job = job(dir.path(), "job", 2, &[("web", &files)]);
    let report = run_ok(&job, &["run", "pipeline.toml", "--json"]);
    let run_ops = report["epochs"][0]["ops"].as_array().unwrap().clone();

    let converted = dir.path().join("converted");
    let mut convert = vec!["convert", "--format", "text", "-o"];
    convert.push(converted.to_str().unwrap());
    convert.extend(files.iter().map(|f| f.to_str().unwrap()));
    run_ok(dir.path(), &[convert.as_slice(), &["--json"]].concat());
    let cleaned = dir.path().join("cleaned");
    let recipe = job.join("recipe.yaml");
    run_ok(
        dir.path(),
        &[
            "clean",
            "--recipe",
            recipe.to_str().unwrap(),
            "-o",
            cleaned.to_str().unwrap(),
            "--json",
            converted.to_str().unwrap(),
        ],
    );
    let clean_report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cleaned.join("report.json")).unwrap())
            .unwrap();
    let clean_ops = clean_report["ops"].as_array().unwrap();

    assert_eq!(run_ops.len(), clean_ops.len(), "{run_ops:?}");
    let same = |op: &serde_json::Value| {
        let mut op = op.clone();
        let fields = op.as_object_mut().unwrap();
        let seconds = fields.remove("seconds").unwrap();
        // `steel clean` keeps examples (`--trace`); `steel run` none.
        fields.remove("trace");
        (op, seconds.as_f64().unwrap())
    };
    let mut run_seconds = 0.0;
    for (run_op, clean_op) in run_ops.iter().zip(clean_ops) {
        let ((run_op, seconds), (clean_op, _)) = (same(run_op), same(clean_op));
        assert_eq!(run_op, clean_op, "the two engines disagree");
        run_seconds += seconds;
    }
    assert!(run_ops[0]["docs_in"].as_u64().unwrap() > 1900);
    assert!(run_seconds > 0.0, "steel run timed no operator");
}

/// A known file whose size and modification time are the recorded ones is not read again;
/// once its time changes it is hashed, and a changed content is reported, not ingested.
#[test]
fn known_files_are_hashed_again_only_when_their_time_or_size_changed() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let j = job(dir.path(), "job", 1, &[("web", &files[..1])]);
    run_ok(&j, &["run", "pipeline.toml", "--json"]);
    let known = j.join("raw/web").join(files[0].file_name().unwrap());
    let modified = std::fs::metadata(&known).unwrap().modified().unwrap();
    // The same size, other bytes, and the recorded time put back: taken as known, unread.
    let mut bytes = std::fs::read(&known).unwrap();
    let at = bytes.iter().position(|&b| b.is_ascii_digit()).unwrap();
    bytes[at] = if bytes[at] == b'7' { b'8' } else { b'7' };
    std::fs::write(&known, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&known)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    let report = run_ok(&j, &["run", "pipeline.toml", "--json"]);
    assert_eq!(report["nothing_new"], true, "{report}");
    assert_eq!(report["known_files"], 1, "{report}");
    assert_eq!(report["skipped"].as_array().unwrap().len(), 0, "{report}");
    // A new time: hashed, found changed, skipped with the reason.
    let later = modified + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&known)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let report = run_ok(&j, &["run", "pipeline.toml", "--json"]);
    let reason = report["skipped"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("changed since it was ingested"), "{report}");
}
