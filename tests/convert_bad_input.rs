//! Bad input of every kind: each bad record is rejected with the right reason and position,
//! the rest still converts, and file-level problems are clear errors naming the file.

mod common;

use common::{read_docs, read_rejects, run};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use steel_dataflow::convert::{ConvertError, ConvertOptions, convert, plan_files};
use steel_dataflow::input::BatchLimits;
use steel_dataflow::output::OutputFormat;
use steel_dataflow::sources::{Format, FormatChoice};

const STEEL: &str = env!("CARGO_BIN_EXE_steel");

fn write(path: &Path, bytes: &[u8]) -> String {
    std::fs::write(path, bytes).unwrap();
    path.display().to_string()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `n` JSONL lines of varied text (so compression cannot shrink them to nothing).
fn many_lines(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("{{\"text\": \"第{i}行 line {i} {}\"}}\n", i * 7919 % 10007))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn every_kind_of_bad_record_is_rejected_with_its_reason_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"{\"text\": \"good one\"}\n"); // line 1
    bytes.extend_from_slice(b"{\"text\": \"unterminated\n"); // line 2: malformed
    bytes.extend_from_slice(b"[1, 2]\n"); // line 3: not an object
    bytes.extend_from_slice(b"{\"body\": \"x\"}\n"); // line 4: missing field
    bytes.extend_from_slice(b"{\"text\": 5}\n"); // line 5: wrong type
    bytes.extend_from_slice(b"{\"text\": \" \\r\\n \"}\n"); // line 6: empty after normalising
    bytes.extend_from_slice(b"{\"text\": \"bad \xff\xfe bytes\"}\n"); // line 7: invalid UTF-8
    bytes.extend_from_slice(b"\n"); // line 8: blank, not a record
    bytes.extend_from_slice(b"{\"text\": \"good two\"}\r\n"); // line 9, CRLF line end
    let input = write(&dir.path().join("mixed.jsonl"), &bytes);

    let summary = run(dir.path(), "out", &[input], "text");
    assert_eq!(
        (summary.docs_in, summary.docs_out, summary.rejected),
        (8, 2, 6)
    );
    assert_eq!(summary.files[0].blank_lines, 1);
    let docs = read_docs(&dir.path().join("out"));
    let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
    assert_eq!(texts, ["good one", "good two"]);
    assert_eq!((docs[0].meta.row, docs[1].meta.row), (0, 8));

    let rejects = read_rejects(&dir.path().join("out"));
    let got: Vec<(u64, &str)> = rejects
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (2, "malformed_json"),
            (3, "not_an_object"),
            (4, "missing_field"),
            (5, "wrong_type"),
            (6, "empty_field"),
            (7, "invalid_utf8"),
        ]
    );
    assert_eq!(rejects[2]["detail"], "field `text` is missing");
    assert_eq!(
        rejects[5]["head"],
        "{\"text\": \"bad \u{fffd}\u{fffd} bytes\"}"
    );
    assert_eq!(summary.reject_reasons.values().sum::<u64>(), 6);
}

#[test]
fn reject_head_keeps_the_first_200_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("{{\"other\": \"{}\"}}\n", "x".repeat(1000));
    let input = write(&dir.path().join("long.jsonl"), long.as_bytes());
    run(dir.path(), "out", &[input], "text");
    let rejects = read_rejects(&dir.path().join("out"));
    assert_eq!(rejects[0]["head"].as_str().unwrap().len(), 200);
    assert_eq!(rejects[0]["head"].as_str().unwrap(), &long[..200]);
}

#[test]
fn truncated_gzip_stream_keeps_what_came_before_and_rejects_the_break() {
    let dir = tempfile::tempdir().unwrap();
    let whole = gzip(&many_lines(2000));
    let input = write(&dir.path().join("cut.jsonl.gz"), &whole[..whole.len() / 2]);
    let summary = run(dir.path(), "out", &[input], "text");
    assert!(
        summary.docs_out > 100 && summary.docs_out < 2000,
        "{}",
        summary.docs_out
    );
    assert_eq!(summary.rejected, 1);
    assert_eq!(summary.docs_in, summary.docs_out + 1);
    let rejects = read_rejects(&dir.path().join("out"));
    assert_eq!(rejects[0]["reason"], "truncated_stream");
    assert_eq!(rejects[0]["line"].as_u64().unwrap(), summary.docs_out + 1);
    // Everything before the break is intact and in order.
    let docs = read_docs(&dir.path().join("out"));
    for (i, doc) in docs.iter().enumerate() {
        assert!(
            doc.text.starts_with(&format!("第{i}行 ")),
            "row {i}: {}",
            doc.text
        );
    }
}

#[test]
fn truncated_zstd_stream_is_rejected_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    // Large enough for several zstd blocks, so the first half holds whole decodable blocks.
    let whole = zstd::encode_all(&many_lines(20_000)[..], 3).unwrap();
    let input = write(&dir.path().join("cut.jsonl.zst"), &whole[..whole.len() / 2]);
    let summary = run(dir.path(), "out", &[input], "text");
    assert!(
        summary.docs_out > 1000 && summary.docs_out < 20_000,
        "{}",
        summary.docs_out
    );
    assert_eq!(summary.rejected, 1);
    let rejects = read_rejects(&dir.path().join("out"));
    assert_eq!(rejects[0]["reason"], "truncated_stream");
}

#[test]
fn compressed_inputs_convert_like_plain_ones() {
    let dir = tempfile::tempdir().unwrap();
    let lines = many_lines(2000);
    let plain = write(&dir.path().join("a.jsonl"), &lines);
    let gz = write(&dir.path().join("b.jsonl.gz"), &gzip(&lines));
    let zst = write(
        &dir.path().join("c.jsonl.zst"),
        &zstd::encode_all(&lines[..], 3).unwrap(),
    );
    let texts = |name: &str, input: String| -> Vec<String> {
        run(dir.path(), name, &[input], "text");
        read_docs(&dir.path().join(name))
            .into_iter()
            .map(|d| d.text)
            .collect()
    };
    let expected = texts("plain", plain);
    assert_eq!(expected.len(), 2000);
    assert_eq!(texts("gz", gz), expected);
    assert_eq!(texts("zst", zst), expected);
}

#[test]
fn broken_json_array_keeps_elements_before_the_break() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        &dir.path().join("wiki.json"),
        "[\n {\"completion\": \"甲\"},\n {\"completion\": \"乙\"},\n {\"completion\": \"丙"
            .as_bytes(),
    );
    let summary = run(dir.path(), "out", &[input], "wiki");
    assert_eq!(
        (summary.docs_in, summary.docs_out, summary.rejected),
        (3, 2, 1)
    );
    let rejects = read_rejects(&dir.path().join("out"));
    assert_eq!(rejects[0]["reason"], "malformed_json");
    assert_eq!(rejects[0]["row"], 2);
}

/// A JSON array after a UTF-8 byte order mark is read whole, by a named format and by `auto`
/// (it used to give no documents, and abort an `auto` run).
#[test]
fn json_array_after_a_byte_order_mark_is_read_whole() {
    for format in ["wiki", "auto"] {
        let dir = tempfile::tempdir().unwrap();
        let input = write(
            &dir.path().join("wiki.json"),
            "\u{feff}[{\"completion\": \"甲\"}, {\"completion\": \"乙\"}]".as_bytes(),
        );
        let summary = run(dir.path(), "out", &[input], format);
        assert_eq!(
            (summary.docs_in, summary.docs_out, summary.rejected),
            (2, 2, 0),
            "{format}"
        );
        let texts: Vec<String> = read_docs(&dir.path().join("out"))
            .into_iter()
            .map(|d| d.text)
            .collect();
        assert_eq!(texts, ["甲", "乙"], "{format}");
    }
}

/// A directory holding a symbolic link to its parent, and a second link to one file, is read
/// once per real file (a link loop used to repeat the records over and over).
#[test]
fn symlink_loops_and_repeated_links_read_each_real_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    write(
        &data.join("a.jsonl"),
        b"{\"text\": \"a\"}\n{\"text\": \"b\"}\n",
    );
    write(&data.join("sub/c.jsonl"), b"{\"text\": \"c\"}\n");
    std::os::unix::fs::symlink(&data, data.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink(data.join("a.jsonl"), data.join("sub/again.jsonl")).unwrap();
    let summary = run(dir.path(), "out", &[data.display().to_string()], "text");
    assert_eq!(
        (summary.docs_in, summary.docs_out, summary.rejected),
        (3, 3, 0)
    );
    let texts: Vec<String> = read_docs(&dir.path().join("out"))
        .into_iter()
        .map(|d| d.text)
        .collect();
    assert_eq!(texts, ["a", "b", "c"]);
}

#[test]
fn json_file_of_lines_and_gzipped_json_array_are_both_read() {
    let dir = tempfile::tempdir().unwrap();
    let lines = write(
        &dir.path().join("lines.json"),
        b"{\"completion\": \"a\"}\n{\"completion\": \"b\"}\n",
    );
    let array = write(
        &dir.path().join("array.json.gz"),
        &gzip(b"  [{\"completion\": \"c\"}, {\"completion\": 1}, {\"completion\": \"d\"}]  "),
    );
    let summary = run(dir.path(), "out", &[lines, array], "wiki");
    assert_eq!(
        (summary.docs_in, summary.docs_out, summary.rejected),
        (5, 4, 1)
    );
    let texts: Vec<String> = read_docs(&dir.path().join("out"))
        .into_iter()
        .map(|d| d.text)
        .collect();
    assert_eq!(texts, ["a", "b", "c", "d"]);
}

#[test]
fn max_rejects_stops_the_run_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        &dir.path().join("bad.jsonl"),
        b"{}\n{}\n{}\n{}\n{\"text\": \"ok\"}\n",
    );
    let mut options = ConvertOptions::new(FormatChoice::Auto, dir.path().join("out"));
    options.format = "text".parse().unwrap();
    options.max_rejects = Some(3);
    let error = convert(&[input], &options).unwrap_err();
    assert!(matches!(
        error.reason(),
        ConvertError::TooManyRejects {
            limit: 3,
            rejected: 4,
            ..
        }
    ));
    assert!(error.to_string().contains("_rejects.jsonl"), "{error}");
    assert_eq!(read_rejects(&dir.path().join("out")).len(), 4);
}

#[test]
fn file_level_problems_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let convert_err = |inputs: &[String], format: &str| {
        let options = ConvertOptions::new(format.parse().unwrap(), &out);
        convert(inputs, &options).unwrap_err().to_string()
    };

    let missing = dir.path().join("nope.jsonl").display().to_string();
    assert!(convert_err(std::slice::from_ref(&missing), "text").contains(&missing));

    let notes = write(&dir.path().join("notes.txt"), b"hello");
    let message = convert_err(std::slice::from_ref(&notes), "text");
    assert!(
        message.contains(&notes) && message.contains(".jsonl"),
        "{message}"
    );

    let unknown = write(&dir.path().join("odd.jsonl"), b"{\"foo\": 1, \"bar\": 2}\n");
    let message = convert_err(std::slice::from_ref(&unknown), "auto");
    assert!(
        message.contains(&unknown) && message.contains("bar, foo"),
        "{message}"
    );
    assert!(
        message.contains("baike: title + summary + sections"),
        "{message}"
    );

    let garbage = write(
        &dir.path().join("garbage.parquet"),
        b"not a parquet file at all",
    );
    assert!(convert_err(std::slice::from_ref(&garbage), "zhihu").contains(&garbage));

    let glob = dir.path().join("*.ndjson").display().to_string();
    assert!(convert_err(std::slice::from_ref(&glob), "text").contains("matches no files"));
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
}

#[test]
fn output_directory_with_earlier_results_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(&dir.path().join("a.jsonl"), b"{\"text\": \"x\"}\n");
    run(dir.path(), "out", std::slice::from_ref(&input), "text");
    let options = ConvertOptions::new("text".parse().unwrap(), dir.path().join("out"));
    let error = convert(&[input], &options).unwrap_err();
    assert!(matches!(error, ConvertError::OutputNotEmpty(_)), "{error}");
}

#[test]
fn directories_and_globs_expand_in_sorted_order_and_skipped_files_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    write(&data.join("b.jsonl"), b"{\"text\": \"b\"}\n");
    write(&data.join("a.jsonl"), b"{\"text\": \"a\"}\n");
    write(&data.join("sub/c.jsonl"), b"{\"text\": \"c\"}\n");
    write(&data.join("README.md"), b"not data");
    let summary = run(dir.path(), "dir", &[data.display().to_string()], "text");
    let texts: Vec<String> = read_docs(&dir.path().join("dir"))
        .into_iter()
        .map(|d| d.text)
        .collect();
    assert_eq!(texts, ["a", "b", "c"]);
    assert_eq!(summary.skipped_files.len(), 1);
    assert!(summary.skipped_files[0].ends_with("README.md"));

    let pattern = data.join("*.jsonl").display().to_string();
    run(dir.path(), "glob", &[pattern], "text");
    let texts: Vec<String> = read_docs(&dir.path().join("glob"))
        .into_iter()
        .map(|d| d.text)
        .collect();
    assert_eq!(texts, ["a", "b"]);
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Files in `dir` named like a finished shard (`part-NNNNN.jsonl` or `.parquet`), which a
/// later stage (`steel pack`, `steel clean`, `steel run`) would read.
fn finished_shards(dir: &Path) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| n.starts_with("part-") && (n.ends_with(".jsonl") || n.ends_with(".parquet")))
        .collect()
}

fn unfinished_shards(dir: &Path) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| n.starts_with("part-") && n.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_failed_convert_leaves_no_file_named_like_a_finished_shard() {
    for output_format in [OutputFormat::Jsonl, OutputFormat::Parquet] {
        let dir = tempfile::tempdir().unwrap();
        let good = write(&dir.path().join("a-good.jsonl"), &many_lines(400));
        let bad = write(&dir.path().join("b-bad.jsonl"), b"{}\n{}\n");
        let out = dir.path().join("out");
        let mut options = ConvertOptions::new("text".parse().unwrap(), &out);
        options.output_format = output_format;
        options.shard_bytes = 4096;
        options.batch = BatchLimits {
            bytes: 1 << 20,
            records: 64,
        };
        options.max_rejects = Some(1);

        let error = convert(&[good.clone(), bad], &options).unwrap_err();
        assert!(
            matches!(
                error.reason(),
                ConvertError::TooManyRejects {
                    limit: 1,
                    rejected: 2,
                    ..
                }
            ),
            "{error}"
        );
        // Several shards were closed before the failure, none under a finished name.
        assert_eq!(finished_shards(&out), Vec::<String>::new());
        let unfinished = unfinished_shards(&out);
        assert!(unfinished.len() >= 3, "{output_format:?}: {unfinished:?}");
        let extension = match output_format {
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::Parquet => "parquet",
        };
        assert_eq!(unfinished[0], format!("part-00000.{extension}.tmp"));
        assert!(!out.join("_summary.json").exists());
        let message = error.to_string();
        assert!(
            message.starts_with("stopped: 2 records rejected, more than --max-rejects 1"),
            "{message}"
        );
        assert!(
            message.contains(&format!(
                "is left unfinished: `_rejects.jsonl`, `{}`",
                unfinished[0]
            )),
            "{message}"
        );
        assert!(message.contains("no _summary.json"), "{message}");

        // What a later stage sees there: nothing to read (pack, clean and run plan their
        // inputs this way).
        let later = plan_files(
            &[out.display().to_string()],
            FormatChoice::Fixed(Format::Text),
        );
        assert!(
            matches!(later, Err(ConvertError::NoInputs(_))),
            "{:?}",
            later.map(|(plans, _)| plans.len())
        );

        // The same run without the bad file finishes: every shard renamed, nothing `.tmp`.
        let done = dir.path().join("done");
        options.output = done.clone();
        let summary = convert(&[good], &options).unwrap();
        assert_eq!(unfinished_shards(&done), Vec::<String>::new());
        let listed: Vec<String> = summary.shards.iter().map(|s| s.file.clone()).collect();
        assert!(listed.len() >= 3);
        assert_eq!(finished_shards(&done), listed);
        assert_eq!(summary.docs_out, 400);
    }
}

/// `steel ARGS` with every file it writes capped at `blocks` × 512 bytes (`ulimit -f`), as on
/// a disk that fills up. With `ignore_signal` a write past the cap fails with "File too
/// large" (an I/O error the run reports); without it the kernel kills the process (SIGXFSZ),
/// as a crash would.
fn steel_with_file_cap(blocks: u32, ignore_signal: bool, args: &[&str]) -> Output {
    let trap = if ignore_signal { "trap '' XFSZ; " } else { "" };
    Command::new("sh")
        .arg("-c")
        .arg(format!("{trap}ulimit -f {blocks}; exec \"$0\" \"$@\""))
        .arg(STEEL)
        .args(args)
        .output()
        .unwrap()
}

fn qwen_tokenizer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tokenizers/qwen1_5/tokenizer.json")
}

#[test]
fn a_convert_stopped_by_a_full_disk_leaves_nothing_pack_takes_for_finished_output() {
    for ignore_signal in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let input = write(&dir.path().join("big.jsonl"), &many_lines(3000));
        let out = dir.path().join("out");
        let out_arg = out.display().to_string();
        let output = steel_with_file_cap(
            64,
            ignore_signal,
            &["convert", "-f", "text", "-o", &out_arg, &input],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        if ignore_signal {
            assert!(stderr.contains("File too large"), "{stderr}");
            assert!(
                stderr.contains("left unfinished: `_rejects.jsonl`, `part-00000.jsonl.tmp`"),
                "{stderr}"
            );
        } else {
            assert_eq!(
                output.status.signal(),
                Some(25),
                "killed by SIGXFSZ: {stderr}"
            );
        }
        // The shard cut off at the cap exists only under its temporary name.
        assert_eq!(finished_shards(&out), Vec::<String>::new());
        assert_eq!(unfinished_shards(&out), ["part-00000.jsonl.tmp"]);
        let cut = std::fs::read(out.join("part-00000.jsonl.tmp")).unwrap();
        assert!(
            cut.len() <= 64 * 512 && !cut.ends_with(b"\n"),
            "{}",
            cut.len()
        );
        assert!(!out.join("_summary.json").exists());

        // `steel pack` finds nothing to pack there, instead of packing the cut shard.
        let chunks = dir.path().join("chunks").display().to_string();
        let tokenizer = qwen_tokenizer().display().to_string();
        let pack = Command::new(STEEL)
            .args(["pack", "--tokenizer", &tokenizer, "-o", &chunks, &out_arg])
            .output()
            .unwrap();
        let pack_err = String::from_utf8_lossy(&pack.stderr);
        assert!(!pack.status.success(), "{pack_err}");
        assert!(pack_err.contains("nothing readable"), "{pack_err}");
    }
}

#[test]
fn empty_files_are_skipped_with_auto_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write(&data.join("a.jsonl"), b"{\"text\": \"one\"}\n");
    write(&data.join("b-empty.jsonl"), b"");
    write(&data.join("c-blank.jsonl"), b"\n  \n\n");
    write(&data.join("d-empty.json"), b"[]");
    write(&data.join("e-empty.parquet"), b"");
    write(&data.join("f-empty.jsonl.gz"), &gzip(b""));
    write(&data.join("g.jsonl"), b"{\"text\": \"two\"}\n");
    let summary = run(dir.path(), "auto", &[data.display().to_string()], "auto");
    let texts: Vec<String> = read_docs(&dir.path().join("auto"))
        .into_iter()
        .map(|d| d.text)
        .collect();
    assert_eq!(texts, ["one", "two"]);
    let file_name = |p: &String| {
        Path::new(p)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let empty: Vec<String> = summary.empty_files.iter().map(file_name).collect();
    assert_eq!(
        empty,
        [
            "b-empty.jsonl",
            "c-blank.jsonl",
            "d-empty.json",
            "e-empty.parquet",
            "f-empty.jsonl.gz"
        ]
    );
    let read: Vec<String> = summary.files.iter().map(|f| file_name(&f.file)).collect();
    assert_eq!(read, ["a.jsonl", "g.jsonl"]);
    assert_eq!((summary.docs_in, summary.docs_out), (2, 2));
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("auto/_summary.json")).unwrap())
            .unwrap();
    assert_eq!(written["empty_files"].as_array().unwrap().len(), 5);

    // A zero-byte file named on its own is skipped too, with auto or as parquet; a JSONL one
    // with a fixed format reads as zero documents.
    let zero = data.join("b-empty.jsonl").display().to_string();
    let summary = run(dir.path(), "one", std::slice::from_ref(&zero), "auto");
    assert_eq!((summary.files.len(), summary.empty_files.len()), (0, 1));
    assert!(summary.shards.is_empty());
    let parquet = data.join("e-empty.parquet").display().to_string();
    let summary = run(dir.path(), "zhihu", std::slice::from_ref(&parquet), "zhihu");
    assert_eq!(summary.empty_files, [parquet]);
    let summary = run(dir.path(), "fixed", &[zero], "text");
    assert_eq!((summary.files.len(), summary.docs_in), (1, 0));
    assert!(summary.empty_files.is_empty());
}

/// `first` and `second` gzipped as two members, then damaged as `damage` says.
fn corrupt_gzip(first: &[u8], second: &[u8], damage: &str) -> Vec<u8> {
    let (mut one, mut two) = (gzip(first), gzip(second));
    // flate2 writes a 10-byte header with no optional fields: the deflate data follows it.
    assert_eq!((one[3], two[3]), (0, 0), "no gzip header flags");
    match damage {
        // The first deflate block of the second member claims the reserved block type 3.
        "block type" => two[10] |= 0b110,
        // The CRC-32 in the first member's trailer no longer matches its data.
        "checksum" => {
            let at = one.len() - 8;
            one[at] ^= 0xff;
        }
        other => panic!("unknown damage {other}"),
    }
    one.extend_from_slice(&two);
    one
}

/// `first` and `second` as two zstd frames, the second's first block claiming the reserved
/// block type 3.
fn corrupt_zstd(first: &[u8], second: &[u8]) -> Vec<u8> {
    let mut one = zstd::encode_all(first, 3).unwrap();
    let mut two = zstd::encode_all(second, 3).unwrap();
    assert_eq!(&two[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
    // The frame header: descriptor, window descriptor (unless single segment), dictionary
    // id and content size; the first block header (3 bytes, type in bits 1-2) follows.
    let descriptor = two[4];
    let single_segment = descriptor & 0x20 != 0;
    let dictionary = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let content_size = match descriptor >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let block = 5 + usize::from(!single_segment) + dictionary + content_size;
    two[block] |= 0b110;
    one.extend_from_slice(&two);
    one
}

/// Corrupt (not cut short) gzip and zstd data: everything decoded before the damage
/// converts, the damage is one `read_error` reject at the line where reading failed, counted
/// in the summary, and the run goes on with the next file.
#[test]
fn corrupt_compressed_data_is_one_read_error_and_the_run_goes_on() {
    let first = many_lines(1000);
    let second: Vec<u8> = (1000..2000)
        .flat_map(|i| format!("{{\"text\": \"lost {i}\"}}\n").into_bytes())
        .collect();
    let cases = [
        ("a.jsonl.gz", corrupt_gzip(&first, &second, "block type")),
        ("a.jsonl.gz", corrupt_gzip(&first, &second, "checksum")),
        ("a.jsonl.zst", corrupt_zstd(&first, &second)),
    ];
    for (case, (name, bytes)) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let corrupt = write(&dir.path().join(name), &bytes);
        let after = write(
            &dir.path().join("b.jsonl"),
            b"{\"text\": \"after one\"}\n{\"text\": \"after two\"}\n",
        );
        let summary = run(dir.path(), "out", &[corrupt.clone(), after], "text");
        assert_eq!(
            (summary.docs_in, summary.docs_out, summary.rejected),
            (1003, 1002, 1),
            "case {case}"
        );
        assert_eq!(
            serde_json::to_value(&summary.reject_reasons).unwrap(),
            serde_json::json!({"read_error": 1}),
            "case {case}"
        );
        let per_file: Vec<(u64, u64, u64)> = summary
            .files
            .iter()
            .map(|f| (f.docs_in, f.docs_out, f.rejected))
            .collect();
        assert_eq!(per_file, [(1001, 1000, 1), (2, 2, 0)], "case {case}");

        let rejects = read_rejects(&dir.path().join("out"));
        assert_eq!(rejects.len(), 1, "case {case}: {rejects:?}");
        let reject = &rejects[0];
        assert_eq!(reject["reason"], "read_error", "case {case}: {reject}");
        assert_eq!(reject["file"], corrupt.as_str(), "case {case}");
        assert_eq!(
            (reject["line"].as_u64(), reject["row"].as_u64()),
            (Some(1001), Some(1000))
        );
        let detail = reject["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("reading stopped in line 1001: ")
                && detail.ends_with("; the rest of the file is lost"),
            "case {case}: {detail}"
        );

        // The lines before the damage are intact and in order, then the next file's.
        let texts: Vec<String> = read_docs(&dir.path().join("out"))
            .into_iter()
            .map(|d| d.text)
            .collect();
        assert_eq!(texts.len(), 1002, "case {case}");
        for (i, text) in texts[..1000].iter().enumerate() {
            assert!(
                text.starts_with(&format!("第{i}行 ")),
                "case {case}, row {i}: {text}"
            );
        }
        assert_eq!(texts[1000..], ["after one", "after two"], "case {case}");
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("out/_summary.json")).unwrap())
                .unwrap();
        assert_eq!(
            written["reject_reasons"],
            serde_json::json!({"read_error": 1})
        );
    }
}

/// A UTF-8 byte order mark at the start of a JSONL file is skipped: the first record is read,
/// by a named format and by `auto`, and its text does not start with the mark.
#[test]
fn jsonl_after_a_byte_order_mark_reads_its_first_record() {
    for format in ["text", "auto"] {
        let dir = tempfile::tempdir().unwrap();
        let input = write(
            &dir.path().join("bom.jsonl"),
            "\u{feff}{\"text\": \"第一行\"}\n{\"text\": \"second\"}\n".as_bytes(),
        );
        let summary = run(dir.path(), "out", &[input], format);
        assert_eq!(
            (summary.docs_in, summary.docs_out, summary.rejected),
            (2, 2, 0),
            "{format}"
        );
        let docs = read_docs(&dir.path().join("out"));
        let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
        assert_eq!(texts, ["第一行", "second"], "{format}");
        assert_eq!((docs[0].meta.row, docs[1].meta.row), (0, 1), "{format}");
        assert!(
            !dir.path().join("out/_rejects.jsonl").exists()
                || read_rejects(&dir.path().join("out")).is_empty()
        );
    }
}
