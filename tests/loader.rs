//! The training loader: epochs cover every block once, ranks split them disjointly, resume
//! (also in a fresh process) continues with exactly the same blocks, appended chunks join
//! only the unseen remainder, excluded chunks are never served again, damage is caught.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use steel_dataflow::convert::{ConvertOptions, convert};
use steel_dataflow::demo_data::{DemoDataOptions, generate};
use steel_dataflow::pack::litpkds::decode_chunk;
use steel_dataflow::pack::manifest::Manifest;
use steel_dataflow::pack::{PackOptions, pack};
use steel_dataflow::sources::FormatChoice;
use steel_trainer::data::{DataSource, Loader, LoaderState};

const BLOCK: u64 = 32; // tokens per block; chunks hold 4 blocks of 33 tokens

fn qwen() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tokenizers/qwen1_5/tokenizer.json")
}

/// Generated documents (seed picks which), converted and packed into `chunks` as a new epoch.
fn pack_docs(dir: &Path, seed: u64, chunks: &Path) {
    let data = dir.join(format!("data-{seed}"));
    generate(&DemoDataOptions {
        docs: 40,
        seed,
        files: 1,
        output: data.clone(),
    })
    .unwrap();
    let converted = dir.join(format!("converted-{seed}"));
    let inputs = vec![data.join("corpus").display().to_string()];
    convert(
        &inputs,
        &ConvertOptions::new(FormatChoice::Auto, &converted),
    )
    .unwrap();
    let mut options = PackOptions::new(qwen(), chunks);
    options.block_size = BLOCK;
    options.chunk_blocks = 4;
    pack(&[converted.display().to_string()], &options).unwrap();
}

/// Every block of every chunk in `chunks`, read with the crate's plain chunk reader.
fn all_blocks(chunks: &Path) -> Vec<Vec<u32>> {
    let manifest = Manifest::load(chunks).unwrap().unwrap();
    let mut blocks = Vec::new();
    for entry in &manifest.chunks {
        let path = chunks.join(&entry.file);
        let (_, tokens) = decode_chunk(&std::fs::read(&path).unwrap(), &path).unwrap();
        blocks.extend(tokens.chunks((BLOCK + 1) as usize).map(<[u32]>::to_vec));
    }
    blocks
}

fn counts(blocks: &[Vec<u32>]) -> HashMap<Vec<u32>, usize> {
    let mut counts = HashMap::new();
    for block in blocks {
        *counts.entry(block.clone()).or_insert(0) += 1;
    }
    counts
}

fn take(loader: &mut Loader, n: usize) -> Vec<Vec<u32>> {
    (0..n).map(|_| loader.next_block().unwrap()).collect()
}

fn source(chunks: &Path) -> Vec<DataSource> {
    vec![DataSource {
        dir: chunks.to_path_buf(),
        weight: 1.0,
    }]
}

#[test]
fn an_epoch_serves_every_block_once_and_two_ranks_split_it() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = dir.path().join("chunks");
    pack_docs(dir.path(), 1, &chunks);
    let expected = all_blocks(&chunks);
    let n = expected.len();
    assert!(n > 100, "{n} blocks");

    let mut loader = Loader::open(&source(&chunks), BLOCK, 7, 0, 1).unwrap();
    let epoch = take(&mut loader, n);
    assert_eq!(counts(&epoch), counts(&expected));
    assert_ne!(epoch, expected, "the order is shuffled");
    let next_epoch = take(&mut loader, n);
    assert_eq!(counts(&next_epoch), counts(&expected));
    assert_ne!(next_epoch, epoch, "each epoch has its own order");

    let mut rank0 = Loader::open(&source(&chunks), BLOCK, 7, 0, 2).unwrap();
    let mut rank1 = Loader::open(&source(&chunks), BLOCK, 7, 1, 2).unwrap();
    let mut both = take(&mut rank0, n / 2);
    both.extend(take(&mut rank1, n / 2));
    // Disjoint and covering: together exactly the epoch (minus one block when n is odd).
    let mut covered = counts(&both);
    if n % 2 == 1 {
        let missing: Vec<_> = counts(&expected)
            .into_iter()
            .filter(|(b, c)| covered.get(b) != Some(c))
            .collect();
        assert_eq!(missing.len(), 1);
        covered.insert(missing[0].0.clone(), missing[0].1);
    }
    assert_eq!(covered, counts(&expected));
}

#[test]
fn text_to_tokens_to_chunks_to_loader_blocks_detokenises_to_the_documents() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = dir.path().join("chunks");
    pack_docs(dir.path(), 10, &chunks);
    let stream = all_blocks(&chunks);
    let mut loader = Loader::open(&source(&chunks), BLOCK, 4, 0, 1).unwrap();
    let served = take(&mut loader, stream.len());
    // Put the served blocks back in chunk order: each block takes the first unclaimed
    // position in the chunk stream with the same tokens.
    let mut positions: HashMap<&Vec<u32>, Vec<usize>> = HashMap::new();
    for (i, block) in stream.iter().enumerate().rev() {
        positions.entry(block).or_default().push(i);
    }
    let mut placed = vec![None; stream.len()];
    for block in &served {
        let i = positions
            .get_mut(block)
            .and_then(Vec::pop)
            .expect("served block is in the chunks");
        placed[i] = Some(block.clone());
    }
    let tokens: Vec<u32> = placed
        .into_iter()
        .flat_map(|b| b.expect("every position served"))
        .collect();
    let manifest = Manifest::load(&chunks).unwrap().unwrap();
    let padding = manifest.chunks.last().unwrap().padding as usize;
    let tokenizer = steel_dataflow::pack::tokenizer::load(&qwen()).unwrap();
    let text = tokenizer
        .decode(&tokens[..tokens.len() - padding], false)
        .unwrap();
    let converted = dir.path().join("converted-10").display().to_string();
    let documents: String = steel_dataflow::pack::tokenizer::read_texts(&[converted])
        .unwrap()
        .iter()
        .map(|t| format!("{t}<|im_end|>"))
        .collect();
    assert!(
        text == documents,
        "loader blocks do not detokenise to the documents"
    );
}

#[test]
fn resume_continues_with_exactly_the_same_blocks_for_each_rank() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = dir.path().join("chunks");
    pack_docs(dir.path(), 2, &chunks);
    let n = all_blocks(&chunks).len();
    for (rank, world) in [(0, 1), (0, 2), (1, 2)] {
        let mut straight = Loader::open(&source(&chunks), BLOCK, 3, rank, world).unwrap();
        let expected = take(&mut straight, n); // crosses an epoch boundary for world 1 and 2

        let mut first = Loader::open(&source(&chunks), BLOCK, 3, rank, world).unwrap();
        let mut got = take(&mut first, n / 3);
        let saved = serde_json::to_string(&first.state()).unwrap();
        drop(first);
        let state: LoaderState = serde_json::from_str(&saved).unwrap();
        let mut resumed = Loader::resume(&source(&chunks), &state, rank).unwrap();
        got.extend(take(&mut resumed, n - n / 3));
        assert!(
            got == expected,
            "rank {rank} of {world}: resumed blocks differ"
        );
    }
}

#[test]
fn resume_in_a_fresh_process_gives_the_same_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = dir.path().join("chunks");
    pack_docs(dir.path(), 3, &chunks);
    let steel = |args: &[&str]| -> Vec<String> {
        let out = Command::new(env!("CARGO_BIN_EXE_steel"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    };
    let data = chunks.display().to_string();
    let state = dir.path().join("state.json").display().to_string();
    let common = [
        "blocks",
        "--data",
        &data,
        "--block-size",
        "32",
        "--seed",
        "5",
    ];
    let straight = steel(&[&common[..], &["--take", "50"]].concat());
    let mut resumed = steel(&[&common[..], &["--take", "20", "--save", &state]].concat());
    resumed.extend(steel(
        &[&common[..], &["--resume", &state, "--take", "30"]].concat(),
    ));
    assert_eq!(straight.len(), 50);
    assert_eq!(resumed, straight);
}

#[test]
fn appended_chunks_join_only_the_unseen_remainder() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = dir.path().join("chunks");
    pack_docs(dir.path(), 4, &chunks);
    let old = all_blocks(&chunks);
    let mut loader = Loader::open(&source(&chunks), BLOCK, 9, 0, 1).unwrap();
    let seen = take(&mut loader, old.len() / 2);

    pack_docs(dir.path(), 5, &chunks); // a new epoch of chunks lands mid-run
    let everything = all_blocks(&chunks);
    let epochs = loader.data_epochs().unwrap();
    assert_eq!(epochs, [2]);
    assert!(
        loader.follow(&[1]).unwrap().is_empty(),
        "nothing as of epoch 1"
    );
    let changes = loader.follow(&epochs).unwrap();
    let manifest = Manifest::load(&chunks).unwrap().unwrap();
    let new: Vec<String> = manifest.chunks[old.len() / 4..]
        .iter()
        .map(|c| c.file.clone())
        .collect();
    assert_eq!(changes.len(), 1);
    assert_eq!((&changes[0].added, changes[0].excluded.len()), (&new, 0));
    let rest = take(&mut loader, everything.len() - seen.len());

    let mut served = seen.clone();
    served.extend(rest);
    // The epoch serves every old and new block exactly once: no seen block repeats and
    // every new block is served.
    assert_eq!(counts(&served), counts(&everything));
    // The new blocks appear only after the point where they were added.
    let new_only: Vec<&Vec<u32>> = everything[old.len()..]
        .iter()
        .filter(|b| !old.contains(b))
        .collect();
    for block in new_only {
        assert!(!seen.contains(block));
    }
}

#[test]
fn excluded_chunks_are_never_served_again() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = dir.path().join("chunks");
    pack_docs(dir.path(), 6, &chunks);
    let manifest = Manifest::load(&chunks).unwrap().unwrap();
    let victim = manifest.chunks[1].file.clone();
    let path = chunks.join(&victim);
    let (_, tokens) = decode_chunk(&std::fs::read(&path).unwrap(), &path).unwrap();
    let victim_blocks: Vec<Vec<u32>> = tokens.chunks(33).map(<[u32]>::to_vec).collect();

    let mut loader = Loader::open(&source(&chunks), BLOCK, 1, 0, 1).unwrap();
    let before = take(&mut loader, 10);
    loader.exclude_chunks(0, std::slice::from_ref(&victim));
    let total = all_blocks(&chunks).len();
    let after = take(&mut loader, 2 * total); // the rest of this epoch and all of the next
    let unique_to_victim: Vec<&Vec<u32>> = victim_blocks
        .iter()
        .filter(|b| all_blocks(&chunks).iter().filter(|x| x == b).count() == 1)
        .collect();
    for block in unique_to_victim {
        assert!(!after.contains(block), "an excluded block was served");
    }
    assert_eq!(before.len(), 10);
    // The state remembers the exclusion across a resume.
    assert!(loader.state().sources[0].excluded.contains(&victim));
}

#[test]
fn changed_chunks_and_misfit_block_sizes_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = dir.path().join("chunks");
    pack_docs(dir.path(), 7, &chunks);
    let message = Loader::open(&source(&chunks), 31, 0, 0, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains("block size 31") && message.contains("132 tokens"),
        "{message}"
    );

    let manifest = Manifest::load(&chunks).unwrap().unwrap();
    for entry in &manifest.chunks {
        let path = chunks.join(&entry.file);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    let mut loader = Loader::open(&source(&chunks), BLOCK, 0, 0, 1).unwrap();
    let message = loader.next_block().unwrap_err().to_string();
    assert!(
        message.contains("chunk_e0000_") && message.contains("changed"),
        "{message}"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(
        Loader::open(&source(&empty), BLOCK, 0, 0, 1)
            .err()
            .unwrap()
            .to_string()
            .contains("manifest.json")
    );
}

#[test]
fn mixtures_draw_sources_by_weight() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    pack_docs(dir.path(), 8, &a);
    pack_docs(dir.path(), 9, &b);
    let from_a = counts(&all_blocks(&a));
    let sources = vec![
        DataSource {
            dir: a.clone(),
            weight: 3.0,
        },
        DataSource {
            dir: b.clone(),
            weight: 1.0,
        },
    ];
    let mut loader = Loader::open(&sources, BLOCK, 11, 0, 1).unwrap();
    let blocks = take(&mut loader, 2000);
    let share_a = blocks
        .iter()
        .filter(|blk| from_a.contains_key(*blk))
        .count() as f64
        / 2000.0;
    assert!(
        (share_a - 0.75).abs() < 0.05,
        "share of source a: {share_a}"
    );
}

/// `path` spelled relative to the current directory (`../../tmp/...`).
fn relative_to_current_dir(path: &Path) -> PathBuf {
    let here = std::env::current_dir().unwrap().canonicalize().unwrap();
    let mut relative = PathBuf::new();
    for _ in here.components().skip(1) {
        relative.push("..");
    }
    relative.join(path.canonicalize().unwrap().strip_prefix("/").unwrap())
}

/// A loader opened on a relative path records the directory absolute and canonical: the
/// state means the same chunks from any working directory.
#[test]
fn the_state_records_each_directory_as_an_absolute_canonical_path() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = dir.path().join("chunks");
    pack_docs(dir.path(), 2, &chunks);
    let relative = relative_to_current_dir(&chunks);
    assert!(relative.is_relative() && relative.join("manifest.json").exists());
    let mut loader = Loader::open(&source(&relative), BLOCK, 3, 0, 1).unwrap();
    take(&mut loader, 3);
    let state = loader.state();
    assert_eq!(
        state.sources[0].dir,
        chunks.canonicalize().unwrap().display().to_string()
    );
    // Resumed from the recorded path, it serves what the straight loader serves.
    let recorded = source(Path::new(&state.sources[0].dir));
    let mut resumed = Loader::resume(&recorded, &state, 0).unwrap();
    let mut straight = Loader::open(&source(&chunks), BLOCK, 3, 0, 1).unwrap();
    take(&mut straight, 3);
    assert!(take(&mut resumed, 5) == take(&mut straight, 5));
}

/// Chunk names repeat across directories: resuming with the directories swapped (or another
/// one) would serve other data at the saved positions, so it is refused, naming both.
#[test]
fn a_resume_with_other_or_reordered_directories_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    pack_docs(dir.path(), 2, &a);
    pack_docs(dir.path(), 5, &b);
    let both = |first: &Path, second: &Path| {
        vec![
            DataSource {
                dir: first.to_path_buf(),
                weight: 1.0,
            },
            DataSource {
                dir: second.to_path_buf(),
                weight: 1.0,
            },
        ]
    };
    let mut loader = Loader::open(&both(&a, &b), BLOCK, 3, 0, 1).unwrap();
    take(&mut loader, 4);
    let state = loader.state();
    assert!(Loader::resume(&both(&a, &b), &state, 0).is_ok());
    let err = Loader::resume(&both(&b, &a), &state, 0)
        .err()
        .unwrap()
        .to_string();
    let a_name = a.canonicalize().unwrap().display().to_string();
    let b_name = b.canonicalize().unwrap().display().to_string();
    assert!(
        err.contains(&format!(
            "data source 1 is `{b_name}`, but the state was saved reading `{a_name}`"
        )),
        "{err}"
    );
}

#[test]
fn a_following_loader_stops_serving_retracted_chunks_and_serves_their_repacked_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (out, chunks) = (dir.path().join("out"), dir.path().join("chunks"));
    common::run_epoch(&out, 1, 0..60, &[]);
    let mut options = PackOptions::new(qwen(), &chunks);
    options.block_size = BLOCK;
    options.chunk_blocks = 4;
    pack(&[out.display().to_string()], &options).unwrap();
    let mut loader = Loader::open(&source(&chunks), BLOCK, 5, 0, 1).unwrap();
    let before = all_blocks(&chunks);
    let seen = take(&mut loader, before.len() / 3);

    common::run_epoch(&out, 2, 0..0, &[7, 30]);
    let outcome = pack(&[out.display().to_string()], &options).unwrap();
    let retraction = &outcome.epochs[0].retraction;
    assert_eq!(retraction.docs_removed, 2);
    let manifest = Manifest::load(&chunks).unwrap().unwrap();
    let new: Vec<String> = manifest
        .chunks
        .iter()
        .filter(|c| c.epoch == 1)
        .map(|c| c.file.clone())
        .collect();
    assert!(!new.is_empty());

    // As of epoch 1 nothing changed; as of now, the retracted chunks leave, the new join.
    assert!(loader.follow(&[1]).unwrap().is_empty());
    let epochs = loader.data_epochs().unwrap();
    let changes = loader.follow(&epochs).unwrap();
    let mut expected_out = retraction.chunks.clone();
    expected_out.sort();
    assert_eq!(
        (&changes[0].excluded, &changes[0].added),
        (&expected_out, &new)
    );
    let gone: Vec<Vec<u32>> = manifest
        .retracted
        .iter()
        .flat_map(|c| {
            let tokens = manifest.read_chunk(&chunks, c).unwrap();
            tokens
                .chunks((BLOCK + 1) as usize)
                .map(<[u32]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    let live = all_blocks(&chunks);
    // The rest of the epoch: every live block not served yet, once, and no retracted block
    // (unless it is also a live one, as padding-only blocks can be).
    let rest = take(
        &mut loader,
        live.len() - seen.iter().filter(|b| live.contains(b)).count(),
    );
    for block in &rest {
        assert!(live.contains(block), "a block of no live chunk was served");
    }
    for block in gone.iter().filter(|b| !live.contains(b)) {
        assert!(!rest.contains(block));
    }
    let mut served: Vec<Vec<u32>> = seen.iter().filter(|b| live.contains(b)).cloned().collect();
    served.extend(rest);
    for block in &live {
        assert!(served.contains(block), "a live block was never served");
    }
}
