//! Step 3: the Qwen tokenizer's test vectors, the chunk format byte for byte (read back by a
//! reader written here from the spec), round trips, determinism, incremental appends and
//! damage detection.

mod common;

use std::path::{Path, PathBuf};
use steel_dataflow::convert::{ConvertOptions, convert};
use steel_dataflow::pack::manifest::Manifest;
use steel_dataflow::pack::tokenizer::{load, read_texts, train};
use steel_dataflow::pack::{PackOptions, pack};
use steel_dataflow::sources::FormatChoice;

fn qwen_tokenizer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tokenizers/qwen1_5/tokenizer.json")
}

#[test]
fn qwen_tokenizer_reproduces_every_test_vector() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/tokenizers/qwen_test_vectors.json");
    let vectors: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(vectors.len(), 42);
    let tokenizer = load(&qwen_tokenizer()).unwrap();
    for (i, vector) in vectors.iter().enumerate() {
        let text = vector["text"].as_str().unwrap();
        let expected: Vec<u32> = vector["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let ids = tokenizer
            .encode_fast(text, false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(ids, expected, "vector {i}: {text:?}");
    }
    assert_eq!(tokenizer.token_to_id("<|endoftext|>"), Some(151643));
    assert_eq!(tokenizer.token_to_id("<|im_start|>"), Some(151644));
    assert_eq!(tokenizer.token_to_id("<|im_end|>"), Some(151645));
}

/// A LITPKDS reader written from the format's description, independent of the crate's own.
fn read_litpkds(bytes: &[u8]) -> (u8, u64, Vec<u32>) {
    assert_eq!(&bytes[0..7], b"LITPKDS", "magic");
    assert_eq!(
        u64::from_le_bytes(bytes[7..15].try_into().unwrap()),
        1,
        "version"
    );
    let code = bytes[15];
    let chunk_size = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    let payload = &bytes[24..];
    let tokens: Vec<u32> = match code {
        8 => payload
            .chunks(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)
            .collect(),
        4 => payload
            .chunks(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u32)
            .collect(),
        other => panic!("unexpected dtype code {other}"),
    };
    assert_eq!(tokens.len() as u64, chunk_size, "payload length");
    (code, chunk_size, tokens)
}

fn chunk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    files.sort();
    files
}

/// Converted (non-code) samples, a small realistic document set.
fn converted_samples(dir: &Path) -> String {
    let inputs: Vec<String> = ["firefly.jsonl", "wiki_cn.json", "zhihu_qa.parquet"]
        .iter()
        .map(|f| common::sample(f))
        .collect();
    let out = dir.join("converted");
    convert(&inputs, &ConvertOptions::new(FormatChoice::Auto, &out)).unwrap();
    out.display().to_string()
}

#[test]
fn qwen_chunks_are_litpkds_int32_and_round_trip_to_the_documents() {
    let dir = tempfile::tempdir().unwrap();
    let input = converted_samples(dir.path());
    let mut options = PackOptions::new(qwen_tokenizer(), dir.path().join("chunks"));
    options.block_size = 512;
    options.chunk_blocks = 8;
    let outcome = pack(std::slice::from_ref(&input), &options).unwrap();
    let summary = &outcome.epochs[0];
    assert_eq!(
        (summary.docs_in, summary.docs_packed, summary.rejected),
        (2250, 2250, 0)
    );

    let mut stream = Vec::new();
    let files = chunk_files(&dir.path().join("chunks"));
    assert_eq!(files.len(), summary.chunks.len());
    for (i, file) in files.iter().enumerate() {
        let (code, chunk_size, tokens) = read_litpkds(&std::fs::read(file).unwrap());
        assert_eq!(code, 4, "Qwen's 151,646-token vocabulary needs int32");
        assert_eq!(chunk_size, 513 * 8);
        if i + 1 < files.len() {
            stream.extend(tokens);
        } else {
            let padding = summary.padding as usize;
            assert!(
                tokens[tokens.len() - padding..]
                    .iter()
                    .all(|&t| t == 151643),
                "tail is <|endoftext|>"
            );
            stream.extend(&tokens[..tokens.len() - padding]);
        }
    }
    assert_eq!(stream.len() as u64, summary.tokens);
    let tokenizer = load(&qwen_tokenizer()).unwrap();
    let decoded = tokenizer.decode(&stream, false).unwrap();
    let expected: String = read_texts(&[input])
        .unwrap()
        .iter()
        .map(|t| format!("{t}<|im_end|>"))
        .collect();
    assert!(
        decoded == expected,
        "decoded chunks differ from the documents"
    );
}

#[test]
fn trained_tokenizer_has_the_special_tokens_and_packs_as_uint16() {
    let dir = tempfile::tempdir().unwrap();
    let input = converted_samples(dir.path());
    let path = dir.path().join("tok.json");
    train(
        read_texts(std::slice::from_ref(&input)).unwrap(),
        1000,
        &path,
    )
    .unwrap();
    let tokenizer = load(&path).unwrap();
    assert_eq!(tokenizer.get_vocab_size(true), 1000);
    for special in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        let id = tokenizer.token_to_id(special).unwrap();
        assert_eq!(
            tokenizer.encode_fast(special, false).unwrap().get_ids(),
            [id]
        );
    }
    let text = "今天天气很好,我们一起去公园散步吧。Hello world!";
    let ids = tokenizer
        .encode_fast(text, false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(tokenizer.decode(&ids, false).unwrap(), text);

    let mut options = PackOptions::new(&path, dir.path().join("chunks"));
    options.block_size = 128;
    options.chunk_blocks = 4;
    pack(&[input], &options).unwrap();
    let first = &chunk_files(&dir.path().join("chunks"))[0];
    let (code, _, _) = read_litpkds(&std::fs::read(first).unwrap());
    assert_eq!(code, 8, "a 1,000-token vocabulary packs as uint16");
}

#[test]
fn one_and_two_threads_pack_identical_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let input = converted_samples(dir.path());
    let run = |threads: usize| {
        let mut options =
            PackOptions::new(qwen_tokenizer(), dir.path().join(format!("t{threads}")));
        options.block_size = 256;
        options.chunk_blocks = 4;
        options.batch.records = 7;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| pack(std::slice::from_ref(&input), &options))
            .unwrap();
        chunk_files(&dir.path().join(format!("t{threads}")))
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect::<Vec<_>>()
    };
    let (one, two) = (run(1), run(2));
    assert!(one.len() > 10);
    assert!(one == two, "chunk bytes differ between 1 and 2 threads");
}

#[test]
fn packing_again_packs_only_what_is_new_and_never_rewrites_a_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let input = converted_samples(dir.path());
    let chunks = dir.path().join("chunks");
    let mut options = PackOptions::new(qwen_tokenizer(), &chunks);
    options.block_size = 512;
    options.chunk_blocks = 8;
    let first = pack(std::slice::from_ref(&input), &options).unwrap();
    let shards = first.epochs[0].files;
    let before: Vec<(PathBuf, Vec<u8>)> = chunk_files(&chunks)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();

    // The same input again: nothing new, nothing written.
    let again = pack(std::slice::from_ref(&input), &options).unwrap();
    assert!(again.nothing_new && again.epochs.is_empty());
    assert_eq!(again.known_inputs, shards);
    assert_eq!(chunk_files(&chunks).len(), before.len());

    // One more file: only it is packed, as epoch 1.
    let more = dir.path().join("more");
    std::fs::create_dir(&more).unwrap();
    let first_shard = Path::new(&input).join("part-00000.jsonl");
    let lines = std::fs::read_to_string(&first_shard).unwrap();
    let extra: String = lines.lines().take(10).map(|l| format!("{l}\n")).collect();
    std::fs::write(more.join("extra.jsonl"), &extra).unwrap();
    let inputs = [input.clone(), more.display().to_string()];
    let second = pack(&inputs, &options).unwrap();
    assert_eq!(second.epochs.len(), 1);
    let epoch = &second.epochs[0];
    assert_eq!((epoch.epoch, epoch.files, epoch.docs_in), (1, 1, 10));
    assert_eq!(second.known_inputs, shards);
    for (path, bytes) in &before {
        assert_eq!(
            &std::fs::read(path).unwrap(),
            bytes,
            "{} was rewritten",
            path.display()
        );
    }
    let manifest = Manifest::load(&chunks).unwrap().unwrap();
    assert!(
        manifest.chunks[before.len()..]
            .iter()
            .all(|c| c.epoch == 1 && c.file.starts_with("chunk_e0001_"))
    );
    for entry in &manifest.chunks {
        let tokens = manifest.read_chunk(&chunks, entry).unwrap();
        assert_eq!(tokens.len() as u64, entry.tokens + entry.padding);
        assert_eq!(
            entry.sources.values().sum::<u64>(),
            entry.tokens,
            "{}",
            entry.file
        );
    }

    // A packed input whose content changed is reported, not packed again.
    std::fs::write(more.join("extra.jsonl"), format!("{extra}{extra}")).unwrap();
    let changed = pack(&inputs, &options).unwrap();
    assert!(changed.nothing_new);
    assert_eq!(changed.changed.len(), 1);
    assert!(changed.changed[0].path.ends_with("extra.jsonl"));
    assert!(
        changed.changed[0]
            .reason
            .contains("changed since it was packed in epoch 1"),
        "{}",
        changed.changed[0].reason
    );

    // A repeated epoch and different settings are refused.
    std::fs::write(more.join("new.jsonl"), &extra).unwrap();
    options.epoch = Some(1);
    assert!(
        pack(&inputs, &options)
            .unwrap_err()
            .to_string()
            .contains("never rewritten")
    );
    options.epoch = None;
    options.block_size = 256;
    assert!(
        pack(&[input], &options)
            .unwrap_err()
            .to_string()
            .contains("other settings (block size 512); these are block size 256")
    );
}

#[test]
fn damaged_chunks_and_bad_settings_are_errors_naming_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let input = converted_samples(dir.path());
    let chunks = dir.path().join("chunks");
    let mut options = PackOptions::new(qwen_tokenizer(), &chunks);
    options.block_size = 512;
    options.chunk_blocks = 8;
    pack(std::slice::from_ref(&input), &options).unwrap();
    let manifest = Manifest::load(&chunks).unwrap().unwrap();
    let entry = &manifest.chunks[0];
    let path = chunks.join(&entry.file);
    let original = std::fs::read(&path).unwrap();

    let mut flipped = original.clone();
    flipped[100] ^= 1;
    std::fs::write(&path, &flipped).unwrap();
    let message = manifest.read_chunk(&chunks, entry).unwrap_err().to_string();
    assert!(
        message.contains(&entry.file) && message.contains("changed"),
        "{message}"
    );

    // Damage the header too (with a matching hash, so the header check itself speaks).
    let mut truncated_entry = entry.clone();
    std::fs::write(&path, &original[..original.len() - 4]).unwrap();
    truncated_entry.xxh3 =
        steel_dataflow::pack::manifest::xxh3_hex(&original[..original.len() - 4]);
    let message = manifest
        .read_chunk(&chunks, &truncated_entry)
        .unwrap_err()
        .to_string();
    assert!(message.contains("truncated"), "{message}");
    let mut foreign = original.clone();
    foreign[..7].copy_from_slice(b"NOTPKDS");
    std::fs::write(&path, &foreign).unwrap();
    truncated_entry.xxh3 = steel_dataflow::pack::manifest::xxh3_hex(&foreign);
    let message = manifest
        .read_chunk(&chunks, &truncated_entry)
        .unwrap_err()
        .to_string();
    assert!(message.contains("not a LITPKDS chunk"), "{message}");

    let bad_tokenizer = dir.path().join("bad.json");
    std::fs::write(&bad_tokenizer, "{\"not\": \"a tokenizer\"}").unwrap();
    let error = pack(
        std::slice::from_ref(&input),
        &PackOptions::new(&bad_tokenizer, dir.path().join("x")),
    );
    assert!(error.unwrap_err().to_string().contains("bad.json"));

    let mut options = PackOptions::new(qwen_tokenizer(), dir.path().join("y"));
    options.eos = "<|nope|>".into();
    assert!(
        pack(&[input], &options)
            .unwrap_err()
            .to_string()
            .contains("<|nope|>")
    );
}
/// Documents `steel pack` cannot pack (bad JSON, not an object, no text, a text that is not
/// a string, an empty text) go to the epoch's `_rejects-eNNNN.jsonl` with their line and
/// reason and are counted as `rejected`; the others are packed. A later epoch's rejects go to
/// its own file.
#[test]
fn documents_pack_cannot_pack_are_rejected_to_the_epochs_file_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = dir.path().join("chunks");
    let input = dir.path().join("docs.jsonl");
    let (good, second) = ("第一篇文档，写得很好。", "A second good document.");
    std::fs::write(
        &input,
        format!(
            "{{\"text\": \"{good}\"}}\n\
             {{\"text\": \"cut short\n\
             [1, 2]\n\
             {{\"meta\": {{\"source\": \"web\"}}}}\n\
             {{\"text\": 5}}\n\
             {{\"text\": \"\"}}\n\
             {{\"text\": \"{second}\"}}\n"
        ),
    )
    .unwrap();
    let mut options = PackOptions::new(qwen_tokenizer(), &chunks);
    options.block_size = 64;
    options.chunk_blocks = 2;
    let outcome = pack(&[input.display().to_string()], &options).unwrap();
    let summary = &outcome.epochs[0];
    assert_eq!(
        (summary.docs_in, summary.docs_packed, summary.rejected),
        (7, 2, 5)
    );
    let tokenizer = load(&qwen_tokenizer()).unwrap();
    let tokens = |text: &str| tokenizer.encode_fast(text, false).unwrap().get_ids().len() as u64;
    assert_eq!(
        summary.tokens,
        tokens(good) + tokens(second) + 2,
        "with two end tokens"
    );
    let rejects_path = chunks.join("_rejects-e0000.jsonl");
    assert_eq!(summary.rejects_file, rejects_path.display().to_string());
    let reasons = |path: &Path| -> Vec<(u64, String)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| {
                let reject: serde_json::Value = serde_json::from_str(line).unwrap();
                assert!(
                    reject["file"].as_str().unwrap().ends_with(".jsonl"),
                    "{reject}"
                );
                (
                    reject["line"].as_u64().unwrap(),
                    reject["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let expected = [
        (2, "malformed_json"),
        (3, "not_an_object"),
        (4, "missing_field"),
        (5, "wrong_type"),
        (6, "empty_text"),
    ]
    .map(|(line, reason)| (line, reason.to_string()));
    assert_eq!(reasons(&rejects_path), expected);

    // The next epoch: its reject (a null text reads as empty) goes to its own file.
    let more = dir.path().join("more.jsonl");
    std::fs::write(&more, "{\"text\": null}\n{\"text\": \"one more\"}\n").unwrap();
    let outcome = pack(&[more.display().to_string()], &options).unwrap();
    let summary = &outcome.epochs[0];
    assert_eq!(
        (
            summary.epoch,
            summary.docs_in,
            summary.docs_packed,
            summary.rejected
        ),
        (1, 2, 1, 1)
    );
    assert_eq!(
        reasons(&chunks.join("_rejects-e0001.jsonl")),
        [(1, "empty_text".to_string())]
    );
    assert_eq!(reasons(&rejects_path), expected, "epoch 0's file is kept");
}

/// Every file in `dir` with its bytes, by name.
fn files_in(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// A chunk's document list (`CHUNK.bin.docs`) changed on disk, still a well-formed list, is
/// refused when a later pack of a `steel run` output applies tombstones to it: the error
/// names the list and says it changed, and no chunk or manifest is written. Put back, the
/// same pack retracts the document.
#[test]
fn a_changed_document_list_is_refused_before_a_retraction_uses_it() {
    use steel_dataflow::pack::docs;
    let dir = tempfile::tempdir().unwrap();
    let (out, chunks) = (dir.path().join("out"), dir.path().join("chunks"));
    common::run_epoch(&out, 1, 0..60, &[]);
    let mut options = PackOptions::new(qwen_tokenizer(), &chunks);
    options.block_size = 32;
    options.chunk_blocks = 4;
    pack(&[out.display().to_string()], &options).unwrap();

    // The first list holding row 7, with that segment now saying row 8.
    let manifest = Manifest::load(&chunks).unwrap().unwrap();
    let (list, original, mut segments) = manifest
        .chunks
        .iter()
        .find_map(|entry| {
            let list = chunks.join(format!("{}.docs", entry.file));
            let bytes = std::fs::read(&list).unwrap();
            let segments = docs::decode(&bytes, &list).unwrap();
            segments
                .iter()
                .any(|s| s.row == 7)
                .then_some((list, bytes, segments))
        })
        .expect("a chunk holds row 7");
    for segment in segments.iter_mut().filter(|s| s.row == 7) {
        segment.row = 8;
    }
    let changed = docs::encode(&segments);
    assert_ne!(changed, original);
    std::fs::write(&list, &changed).unwrap();
    let before = files_in(&chunks);

    common::run_epoch(&out, 2, 0..0, &[7]);
    let error = pack(&[out.display().to_string()], &options)
        .expect_err("the changed list is refused")
        .to_string();
    let hex = steel_dataflow::pack::manifest::xxh3_hex;
    assert_eq!(
        error,
        format!(
            "`{}`: xxh3 {} differs from the manifest's {}: the document list changed",
            list.display(),
            hex(&changed),
            hex(&original)
        )
    );
    let after = files_in(&chunks);
    let mut written: Vec<&String> = after
        .iter()
        .filter(|(name, bytes)| before.get(*name) != Some(*bytes))
        .map(|(name, _)| name)
        .collect();
    written.retain(|name| !name.starts_with("_rejects-"));
    assert_eq!(
        written,
        Vec::<&String>::new(),
        "no chunk or manifest written"
    );

    std::fs::write(&list, &original).unwrap();
    let outcome = pack(&[out.display().to_string()], &options).unwrap();
    let epoch = &outcome.epochs[0];
    assert_eq!(
        (epoch.retraction.docs_removed, epoch.tombstones_unmatched),
        (1, 0)
    );
}
