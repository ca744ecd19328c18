//! The training loop, on the CPU reference or the GPU (`engine`): blocks from the loader, micro-batches accumulated,
//! clipped, AdamW with a schedule, metrics as JSON lines and a `loss.svg` curve, validation on
//! held-out chunks (the best checkpoint kept in `best/`), checkpoints every N steps (the last
//! `keep` kept), exact resume. A step whose loss or gradient norm is not finite makes no
//! update; it stops the run, or is skipped and logged while `max_bad_steps` allow. At every
//! checkpoint (and every `follow_every` steps) the run follows its chunk directories: chunks
//! `steel pack` added since join the unseen remainder of the epoch, retracted ones leave,
//! each change logged in `metrics.jsonl`. Following at fixed steps keeps resume exact: a
//! resumed run takes in a change at the step an uninterrupted run would.

use crate::batch::Batch;
use crate::checkpoint::{self, TrainState, fingerprint};
use crate::data::chunks;
use crate::data::follow::DataChange;
use crate::data::rows::RowFeed;
use crate::data::{DataSource, Loader, LoaderError};
use crate::device::Device;
use crate::engine::{Engine, Objective};
use crate::error::TrainError;
use crate::model::config::ModelConfig;
use crate::model::params::Layout;
use crate::optim::adamw::AdamWConfig;
use crate::optim::schedule::Schedule;
use crate::parallel::bucket::Buckets;
use crate::parallel::collective::{Collective, InProcess};
use crate::parallel::tcp::Tcp;
use crate::plot::loss_svg;
use crate::sft::Prepared;
use crate::sft::prepared::read_manifest;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use steel_dataflow::pack::manifest::Manifest;

#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub config: ModelConfig,
    pub data: Vec<DataSource>,
    /// Tokens per training sequence (the chunks' block size).
    pub seq: u64,
    pub micro_batch: usize,
    /// Micro-batches per optimizer step (gradient accumulation): a step trains on
    /// `micro_batch · grad_accum` sequences per rank, as one batch that large would.
    pub grad_accum: usize,
    pub steps: u64,
    pub schedule: Schedule,
    pub adamw: AdamWConfig,
    pub clip: f32,
    pub seed: u64,
    pub out: PathBuf,
    pub checkpoint_every: u64,
    pub keep: usize,
    /// Held-out chunks scored every so many steps; the best checkpoint by this loss is kept in
    /// `best/`.
    pub validation: Option<Validation>,
    /// Start from these weights (an imported model) instead of a seeded initialisation.
    pub init_params: Option<Vec<f32>>,
    /// Where the steps run.
    pub device: Device,
    /// Data-parallel ranks (CPU: threads of this process); `micro_batch` is per rank.
    pub nproc: usize,
    /// Several processes or nodes, `nproc` ranks each (`None`: this process only).
    pub nodes: Option<Nodes>,
    /// Steps whose loss or gradient norm is not finite that may be skipped (no update, logged
    /// in `metrics.jsonl`) before the run stops; 0: the first one stops it.
    pub max_bad_steps: u64,
    /// Follow the chunk directories every so many steps, besides every checkpoint (0: only
    /// at checkpoints); see `data::follow`.
    pub follow_every: u64,
    /// Go on with chunks packed with another tokenizer than the checkpoint resumed from (or
    /// than the first data directory).
    pub allow_tokenizer_mismatch: bool,
    /// Train on prepared SFT rows (`steel sft`), mixed with blocks of the `data` chunk
    /// directories if `mix > 0`; `None`: on the chunks alone (pretraining).
    pub sft: Option<SftFeed>,
}

/// The SFT rows of a run.
#[derive(Clone, Debug)]
pub struct SftFeed {
    /// A directory `sft::Prepared` wrote; rows of `seq` positions.
    pub prepared: PathBuf,
    /// The share of each micro-batch's rows that are pretraining blocks from `data`, spread
    /// evenly over the run's row slots (0: none).
    pub mix: f64,
}

/// Whether row slot `slot` (counted from the run's start on each rank) is a pretraining
/// block when a share `mix` of the rows are: the slots where `⌊slot · mix⌋` steps up, so any
/// stretch of slots holds that share to within one row.
fn pretraining_slot(slot: u64, mix: f64) -> bool {
    ((slot + 1) as f64 * mix).floor() > (slot as f64 * mix).floor()
}

/// A run over several processes or nodes, the way `torchrun` is told: node `node_rank` of
/// `nnodes` hosts ranks `node_rank·nproc ..`; rank 0 listens at `master` (`host:port`).
#[derive(Clone, Debug)]
pub struct Nodes {
    pub nnodes: usize,
    pub node_rank: usize,
    pub master: String,
}

#[derive(Clone, Debug)]
pub struct Validation {
    pub dir: PathBuf,
    pub every: u64,
    pub max_blocks: Option<u64>,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Serialize)]
pub struct StepMetrics {
    pub step: u64,
    /// `null` in the file when not finite.
    pub loss: f32,
    pub lr: f32,
    pub grad_norm: f32,
    pub tokens: u64,
    /// The loss or gradient norm was not finite and the step made no update (written only
    /// when true).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// The step's trained tokens over all ranks (the loss is their mean), when not every
    /// position is trained (SFT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trained_tokens: Option<u64>,
}

/// Seeded initialisation: normal(0, 0.02) by Box-Muller, norms at 1, biases at 0. Each
/// tensor is drawn in pieces of `INIT_PIECE` values, each piece from its own xoshiro stream
/// seeded by (seed, tensor, piece), so the pieces fill in parallel and the weights are the
/// same whatever the number of threads (a 1B model in about a second, not half a minute).
pub fn init_params(layout: &Layout, seed: u64) -> Vec<f32> {
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};
    use rayon::prelude::*;
    let mut params = vec![0.0; layout.len];
    // Every piece of every drawn tensor, with its stream's key.
    let mut pieces: Vec<([u64; 3], &mut [f32])> = Vec::new();
    let mut rest: &mut [f32] = &mut params;
    let mut at = 0;
    for (t, view) in layout.views.iter().enumerate() {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(view.offset - at);
        let (slice, tail) = tail.split_at_mut(view.len());
        rest = tail;
        at = view.offset + view.len();
        if view.name.ends_with("norm.weight") {
            slice.fill(1.0);
        } else if !view.name.ends_with(".bias") {
            for (p, piece) in slice.chunks_mut(INIT_PIECE).enumerate() {
                pieces.push(([seed, t as u64, p as u64], piece));
            }
        }
    }
    pieces.into_par_iter().for_each(|(key, piece)| {
        let bytes = key.map(u64::to_le_bytes).concat();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(xxhash_rust::xxh3::xxh3_64(&bytes));
        for x in piece.iter_mut() {
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random::<f64>());
            *x = (0.02 * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32;
        }
    });
    params
}

/// Values per independently seeded piece of [`init_params`].
const INIT_PIECE: usize = 1 << 20;

fn save(
    dir: &Path,
    options: &TrainOptions,
    layout: &Layout,
    engine: &Engine,
    state: &TrainState,
) -> Result<(), TrainError> {
    let snapshot = engine.snapshot()?;
    let (params, m, v) = (&snapshot.params, &snapshot.m, &snapshot.v);
    // Non-finite steps make no update, so this only catches weights that came in non-finite
    // (`--init-from`); a checkpoint of them would resume to NaN.
    for (what, values) in [
        ("weights", params),
        ("AdamW moments", m),
        ("AdamW moments", v),
    ] {
        if let Some(i) = values.iter().position(|x| !x.is_finite()) {
            let tensor = layout
                .views
                .iter()
                .find(|view| view.range().contains(&i))
                .map_or("?", |view| view.name.as_str());
            return Err(TrainError::Run(format!(
                "step {}: the {what} of `{tensor}` are not finite; refusing to write checkpoint `{}`",
                state.step,
                dir.display()
            )));
        }
    }
    checkpoint::save(dir, &options.config, layout, params, m, v, state)
        .map_err(|e| TrainError::Run(format!("cannot write checkpoint `{}`: {e}", dir.display())))
}

/// Train from scratch, or from the newest checkpoint in `options.out` when `resume` is set.
/// Calls `report` after every step. With `nproc > 1`, that many ranks train as threads, each
/// on its own loader shard (and, on a CUDA device, its own GPU), summing gradients through an
/// in-process collective (GPUs: through NCCL, the collective passing its id); with `nodes`,
/// the ranks of every process sum over TCP. Rank 0 reports and writes metrics and
/// checkpoints (`out` must be shared storage across nodes). A run resumes with any number of
/// ranks.
pub fn train(
    options: &TrainOptions,
    resume: bool,
    report: &mut dyn FnMut(&StepMetrics),
) -> Result<TrainState, TrainError> {
    options.device.check_available()?;
    let tokenizer = check_data(options)?;
    let local = options.nproc.max(1);
    let (nnodes, node_rank) = options
        .nodes
        .as_ref()
        .map_or((1, 0), |n| (n.nnodes, n.node_rank));
    let world = local * nnodes;
    if world == 1 {
        return train_rank(options, resume, &tokenizer, report, None);
    }
    // One node: ranks are threads joined in process. Several: every rank connects to rank 0
    // over TCP (rank 0 is thread 0 of node 0).
    let members: Vec<Member> = match &options.nodes {
        None => InProcess::group(local)
            .into_iter()
            .map(Member::Thread)
            .collect(),
        Some(nodes) => (0..local)
            .map(|i| Member::Tcp {
                rank: node_rank * local + i,
                master: nodes.master.clone(),
            })
            .collect(),
    };
    let run = |member: Member, report: &mut dyn FnMut(&StepMetrics)| {
        let collective = member.connect(world)?;
        let result = train_rank(options, resume, &tokenizer, report, Some(&*collective));
        if let Err(e) = &result {
            collective.abort(&format!("rank {}: {e}", collective.rank()));
        }
        result
    };
    let mut members = members.into_iter();
    let first = members.next().expect("every process hosts a rank");
    std::thread::scope(|scope| {
        let run = &run;
        let others: Vec<_> = members
            .map(|member| scope.spawn(move || run(member, &mut |_| {})))
            .collect();
        let state = run(first, report)?;
        for handle in others {
            handle
                .join()
                .map_err(|_| TrainError::Run("a rank panicked".to_string()))??;
        }
        Ok(state)
    })
}

fn manifest(dir: &Path) -> Result<Manifest, TrainError> {
    Ok(Manifest::load(dir)?.ok_or_else(|| LoaderError::NotAChunkDir(dir.to_path_buf()))?)
}

/// The chunk directories a run reads: its data and validation directories (an SFT run's
/// validation data is prepared SFT rows, not chunks).
fn chunk_dirs(options: &TrainOptions) -> impl Iterator<Item = &Path> {
    let data = options.data.iter().map(|source| source.dir.as_path());
    let validation = options
        .validation
        .as_ref()
        .filter(|_| options.sft.is_none());
    data.chain(validation.map(|v| v.dir.as_path()))
}

/// Every chunk directory's tokenizer must fit the model's vocabulary (a token id beyond the
/// embedding table cannot be trained on, on either device), and all must be packed with one
/// tokenizer (unless `allow_tokenizer_mismatch`). Returns that tokenizer's xxh3 (the first
/// data directory's), which checkpoints record.
fn check_data(options: &TrainOptions) -> Result<String, TrainError> {
    // SFT rows, with any validation rows, record the tokenizer they were made with.
    let sft_tokenizer = match &options.sft {
        Some(sft) => {
            let tokenizer = read_manifest(&sft.prepared)?.tokenizer_xxh3;
            if let Some(validation) = &options.validation {
                let other = read_manifest(&validation.dir)?;
                if other.tokenizer_xxh3 != tokenizer && !options.allow_tokenizer_mismatch {
                    return Err(TrainError::Data(format!(
                        "the validation rows `{}` were made with another tokenizer than the training rows `{}`",
                        validation.dir.display(),
                        sft.prepared.display()
                    )));
                }
            }
            Some(tokenizer)
        }
        None => None,
    };
    let Some(DataSource { dir: first, .. }) = options.data.first() else {
        return sft_tokenizer.ok_or_else(|| TrainError::Settings("no training data".to_string()));
    };
    let tokenizer = manifest(first)?.settings.tokenizer_xxh3;
    if let Some(sft) = &sft_tokenizer
        && sft != &tokenizer
        && !options.allow_tokenizer_mismatch
    {
        return Err(TrainError::Data(format!(
            "the SFT rows were made with another tokenizer (xxh3 {sft}) than the chunks of `{}` were packed with ({tokenizer})",
            first.display()
        )));
    }
    let tokenizer = sft_tokenizer.unwrap_or(tokenizer);
    for dir in chunk_dirs(options) {
        let manifest = manifest(dir)?;
        chunks::check_vocabulary(dir, &manifest, options.config.vocab_size)?;
        if !options.allow_tokenizer_mismatch {
            chunks::check_tokenizer(dir, &manifest, first, &tokenizer)?;
        }
    }
    Ok(tokenizer)
}

/// A run resumed from `checkpoint` must read chunks of the tokenizer it records (unless
/// `allow_tokenizer_mismatch`). A checkpoint that records none cannot be compared.
fn check_resumed_tokenizer(
    options: &TrainOptions,
    checkpoint: &Path,
    state: &TrainState,
) -> Result<(), TrainError> {
    let Some(expected) = &state.tokenizer_xxh3 else {
        return Ok(());
    };
    if options.allow_tokenizer_mismatch {
        return Ok(());
    }
    for dir in chunk_dirs(options) {
        chunks::check_tokenizer(dir, &manifest(dir)?, checkpoint, expected)?;
    }
    Ok(())
}

/// Drop the lines of `metrics.jsonl` past `step`: a run killed after its last checkpoint
/// logged steps that the resumed run does again, and they must not appear twice. Written to a
/// temporary file and renamed, so a kill here leaves the old file or the new one.
pub(crate) fn trim_metrics(path: &std::path::Path, step: u64) -> Result<(), TrainError> {
    let fail =
        |e: std::io::Error| TrainError::Run(format!("cannot trim `{}`: {e}", path.display()));
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(e)),
    };
    let step_of = |line: &str| {
        serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["step"].as_u64())
    };
    // A line cut short by the kill has no readable step and goes too.
    let kept: String = text
        .lines()
        .filter(|line| step_of(line).is_some_and(|s| s <= step))
        .map(|line| format!("{line}\n"))
        .collect();
    if kept.len() == text.len() {
        return Ok(());
    }
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, kept).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// A pretraining run resumes as one, an SFT run as one.
fn check_run_kind(options: &TrainOptions, state: &TrainState) -> Result<(), TrainError> {
    match (&options.sft, &state.rows) {
        (Some(_), None) => Err(TrainError::Run(format!(
            "`{}` holds a pretraining run; fine-tune it with `steel sft --init-from` a checkpoint of it",
            options.out.display()
        ))),
        (None, Some(_)) => Err(TrainError::Run(format!(
            "`{}` holds an SFT run; resume it with `steel sft --resume`",
            options.out.display()
        ))),
        _ => Ok(()),
    }
}

/// One rank of this process, before it joins its collective (a TCP rendezvous waits for every
/// rank, so it happens on the rank's own thread).
enum Member {
    Thread(InProcess),
    Tcp { rank: usize, master: String },
}

impl Member {
    fn connect(self, world: usize) -> Result<Box<dyn Collective>, TrainError> {
        Ok(match self {
            Member::Thread(group) => Box::new(group),
            Member::Tcp { rank: 0, master } => Box::new(Tcp::serve(&master, world)?),
            Member::Tcp { rank, master } => Box::new(Tcp::join(&master, rank, world)?),
        })
    }
}

/// Follow the chunk directories (`data::follow`) as of the pack epochs rank 0 reads now,
/// which every rank then applies alike. `sources`: the number of chunk directories.
fn follow_data(
    loader: &mut Loader,
    collective: Option<&dyn Collective>,
    sources: usize,
) -> Result<Vec<DataChange>, TrainError> {
    let epochs = agreed_epochs(collective, sources, || Ok(loader.data_epochs()?))?;
    Ok(loader.follow(&epochs)?)
}

/// Rank 0's `epochs()` (one pack epoch per chunk directory), given to every rank: summed
/// with zeros from the others, exact in f32 below 2^24 (`steel pack` numbers no higher).
fn agreed_epochs(
    collective: Option<&dyn Collective>,
    sources: usize,
    epochs: impl FnOnce() -> Result<Vec<u64>, TrainError>,
) -> Result<Vec<u64>, TrainError> {
    let Some(collective) = collective else {
        return epochs();
    };
    let mut values = vec![0f32; sources];
    if collective.rank() == 0 {
        for (value, epoch) in values.iter_mut().zip(epochs()?) {
            *value = epoch as f32;
        }
    }
    collective.all_reduce_sum(&mut values)?;
    Ok(values.iter().map(|&v| v as u64).collect())
}

/// This rank's rows for the micro-batch of row slots `first_slot..first_slot + micro_batch`:
/// chunk blocks (pretraining), SFT rows, or SFT rows with pretraining blocks mixed in.
fn next_batch(
    options: &TrainOptions,
    loader: &mut Loader,
    rows: Option<&mut RowFeed>,
    first_slot: u64,
) -> Result<Batch, TrainError> {
    let Some(rows) = rows else {
        let blocks = (0..options.micro_batch)
            .map(|_| loader.next_block())
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Batch::from_blocks(&blocks));
    };
    let mix = options.sft.as_ref().map_or(0.0, |sft| sft.mix);
    let mut batch = Batch::new(rows.row_len());
    for slot in first_slot..first_slot + options.micro_batch as u64 {
        if pretraining_slot(slot, mix) {
            batch.extend(&Batch::from_blocks(&[loader.next_block()?]));
        } else {
            rows.next_rows(1, &mut batch)?;
        }
    }
    Ok(batch)
}

/// Gradient buckets of the data-parallel all-reduce: 25 M values (100 MB of fp32).
const BUCKET_ELEMS: usize = 25 << 20;

/// One rank's training loop (`collective` None: the only rank); `tokenizer` is the xxh3 of
/// the chunks' tokenizer, which checkpoints record.
fn train_rank(
    options: &TrainOptions,
    resume: bool,
    tokenizer: &str,
    report: &mut dyn FnMut(&StepMetrics),
    collective: Option<&dyn Collective>,
) -> Result<TrainState, TrainError> {
    let (rank, world) = collective.map_or((0, 1), |c| (c.rank(), c.world()));
    let layout = Layout::new(&options.config);
    let buckets = Buckets::new(&layout, BUCKET_ELEMS);
    let parallel = collective.map(|c| (c, &buckets));
    std::fs::create_dir_all(&options.out)
        .map_err(|e| TrainError::Run(format!("cannot create `{}`: {e}", options.out.display())))?;
    let (params, moments, mut loader, mut state) =
        match checkpoint::list(&options.out).last().filter(|_| resume) {
            Some(dir) => {
                let mut loaded = checkpoint::load(dir, &options.config, &layout)?;
                check_run_kind(options, &loaded.state)?;
                check_resumed_tokenizer(options, dir, &loaded.state)?;
                // From here on the run trains on these chunks (which differ from the recorded
                // tokenizer's only with allow_tokenizer_mismatch).
                loaded.state.tokenizer_xxh3 = Some(tokenizer.to_string());
                // The blocks served so far are counted globally, so the run can go on with
                // another number of ranks.
                let mut loader_state = loaded.state.loader.clone();
                loader_state.world = world;
                let loader = Loader::resume(&options.data, &loader_state, rank)?;
                (
                    loaded.params,
                    Some((loaded.m, loaded.v)),
                    loader,
                    loaded.state,
                )
            }
            None => {
                if !checkpoint::list(&options.out).is_empty() {
                    return Err(TrainError::Run(format!(
                        "`{}` already has checkpoints; pass --resume or choose a new directory",
                        options.out.display()
                    )));
                }
                // Every rank starts from the chunk lists rank 0 sees.
                let epochs = agreed_epochs(collective, options.data.len(), || {
                    options
                        .data
                        .iter()
                        .map(|s| Ok(manifest(&s.dir)?.next_epoch()))
                        .collect()
                })?;
                let loader = Loader::open_as_of(
                    &options.data,
                    options.seq,
                    options.seed,
                    rank,
                    world,
                    &epochs,
                )?;
                let state = TrainState {
                    step: 0,
                    tokens: 0,
                    loader: loader.state(),
                    config_fingerprint: fingerprint(&options.config),
                    losses: Vec::new(),
                    validation: Vec::new(),
                    skipped_steps: Vec::new(),
                    tokenizer_xxh3: Some(tokenizer.to_string()),
                    rows: None,
                };
                let params = match &options.init_params {
                    Some(params) if params.len() == layout.len => params.clone(),
                    Some(params) => {
                        return Err(TrainError::Run(format!(
                            "initial weights have {} values, the model {}",
                            params.len(),
                            layout.len
                        )));
                    }
                    None => init_params(&layout, options.seed),
                };
                (params, None, loader, state)
            }
        };
    // SFT rows: from the start, or where the checkpoint left them.
    let mut rows = match (&options.sft, &state.rows) {
        (Some(sft), Some(saved)) => Some(RowFeed::resume(&sft.prepared, saved, rank, world)?),
        (Some(sft), None) => Some(RowFeed::open(&sft.prepared, options.seed, rank, world)?),
        (None, _) => None,
    };
    // Each rank of a node trains on its own GPU (a CUDA device), the GPUs summing gradients
    // through NCCL.
    let mut engine = Engine::on_gpu(
        options.device,
        rank % options.nproc.max(1),
        &options.config,
        options.adamw,
        params,
        moments,
        state.step,
    )?;
    if world > 1 {
        engine.join_gpus(collective)?;
    }
    let metrics_path = options.out.join("metrics.jsonl");
    if rank == 0 {
        trim_metrics(&metrics_path, state.step)?;
    }
    // An SFT run's validation rows, opened (and checked) once, by rank 0 which scores them.
    let validation_rows = match (&options.sft, &options.validation) {
        (Some(_), Some(validation)) if rank == 0 => Some(Prepared::open(&validation.dir)?),
        _ => None,
    };
    let mut metrics = match rank {
        0 => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&metrics_path)
                .map_err(|e| {
                    TrainError::Run(format!("cannot open `{}`: {e}", metrics_path.display()))
                })?,
        ),
        _ => None,
    };
    while state.step < options.steps {
        let mut micro_batches = Vec::with_capacity(options.grad_accum);
        for micro in 0..options.grad_accum as u64 {
            let first_slot =
                (state.step * options.grad_accum as u64 + micro) * options.micro_batch as u64;
            let batch = next_batch(options, &mut loader, rows.as_mut(), first_slot)?;
            state.tokens += (batch.ids.len() * world) as u64;
            micro_batches.push(batch);
        }
        let lr = options.schedule.lr(state.step);
        let objective = Objective::MeanOverTrained;
        let result = engine.step(&micro_batches, objective, lr, options.clip, parallel)?;
        let (loss, grad_norm) = (result.loss, result.grad_norm);
        state.step += 1;
        // A non-finite step made no update (the engine saw to that; loss and gradient norm
        // are the same on every rank, so every rank stops or skips alike). Past
        // `max_bad_steps` of them the run stops, before this step reaches a checkpoint.
        if !result.updated {
            if state.skipped_steps.len() as u64 >= options.max_bad_steps {
                return Err(TrainError::NonFinite {
                    step: state.step,
                    loss,
                    grad_norm,
                    skipped: state.skipped_steps.len(),
                    max: options.max_bad_steps,
                });
            }
            state.skipped_steps.push(state.step);
        }
        state.losses.push(loss);
        // Every rank follows the data at the same steps, before a checkpoint records it.
        let at_checkpoint =
            state.step.is_multiple_of(options.checkpoint_every) || state.step == options.steps;
        let follow_now = at_checkpoint
            || (options.follow_every > 0 && state.step.is_multiple_of(options.follow_every));
        let changes = match follow_now {
            true => follow_data(&mut loader, collective, options.data.len())?,
            false => Vec::new(),
        };
        // Only rank 0 writes metrics, validates and checkpoints.
        let Some(metrics) = metrics.as_mut() else {
            continue;
        };
        let line = StepMetrics {
            step: state.step,
            loss,
            lr,
            grad_norm,
            tokens: state.tokens,
            skipped: !result.updated,
            trained_tokens: options.sft.as_ref().map(|_| result.trained as u64),
        };
        writeln!(
            metrics,
            "{}",
            serde_json::to_string(&line).expect("metrics serialise")
        )
        .map_err(|e| TrainError::Run(format!("cannot write `{}`: {e}", metrics_path.display())))?;
        for change in &changes {
            let line = serde_json::json!({"step": state.step, "data": change});
            writeln!(metrics, "{line}").map_err(|e| {
                TrainError::Run(format!("cannot write `{}`: {e}", metrics_path.display()))
            })?;
        }
        report(&line);
        if let Some(validation) = &options.validation
            && (state.step.is_multiple_of(validation.every) || state.step == options.steps)
        {
            let result = match &validation_rows {
                Some(rows) => engine.evaluate_rows(rows, validation.max_blocks)?,
                None => engine.evaluate(&validation.dir, validation.max_blocks)?,
            };
            let best = state
                .validation
                .iter()
                .map(|v| v.1)
                .fold(f32::INFINITY, f32::min);
            state.validation.push((state.step, result.loss as f32));
            writeln!(metrics, "{}", serde_json::json!({"step": state.step, "val_loss": result.loss, "val_tokens": result.tokens}))
                .map_err(|e| TrainError::Run(format!("cannot write `{}`: {e}", metrics_path.display())))?;
            if (result.loss as f32) < best {
                state.loader = loader.state();
                state.rows = rows.as_ref().map(RowFeed::state);
                let dir = options.out.join("best");
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(|e| {
                        TrainError::Run(format!("cannot replace `{}`: {e}", dir.display()))
                    })?;
                }
                save(&dir, options, &layout, &engine, &state)?;
            }
        }
        if at_checkpoint {
            state.loader = loader.state();
            state.rows = rows.as_ref().map(RowFeed::state);
            write_checkpoint(options, &layout, &engine, &state)?;
        }
    }
    Ok(state)
}

/// `loss.svg` redrawn and `step-NNNNNNNN/` written for `state`; only the newest `keep`
/// checkpoints are kept.
pub(crate) fn write_checkpoint(
    options: &TrainOptions,
    layout: &Layout,
    engine: &Engine,
    state: &TrainState,
) -> Result<(), TrainError> {
    let curve: Vec<(u64, f32)> = state
        .losses
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, *l))
        .filter(|(_, l)| l.is_finite())
        .collect();
    let svg = options.out.join("loss.svg");
    std::fs::write(&svg, loss_svg(&curve, &state.validation))
        .map_err(|e| TrainError::Run(format!("cannot write `{}`: {e}", svg.display())))?;
    let dir = options.out.join(format!("step-{:08}", state.step));
    save(&dir, options, layout, engine, state)?;
    let all = checkpoint::list(&options.out);
    for old in &all[..all.len().saturating_sub(options.keep.max(1))] {
        std::fs::remove_dir_all(old)
            .map_err(|e| TrainError::Run(format!("cannot remove `{}`: {e}", old.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same weights with one thread or four; normal(0, 0.02) where drawn, norms 1,
    /// biases 0.
    #[test]
    fn initialisation_is_seeded_and_independent_of_threads() {
        let config = ModelConfig::preset("tiny-topk-moe").unwrap();
        let layout = Layout::new(&config);
        let with = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| init_params(&layout, 9))
        };
        let one = with(1);
        assert_eq!(one, with(4));
        assert_ne!(one, init_params(&layout, 10));
        for view in &layout.views {
            let values = &one[view.range()];
            if view.name.ends_with("norm.weight") {
                assert!(values.iter().all(|&v| v == 1.0), "{}", view.name);
            } else if view.name.ends_with(".bias") {
                assert!(values.iter().all(|&v| v == 0.0), "{}", view.name);
            } else if values.len() > 2000 {
                let n = values.len() as f64;
                let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
                let std = (values
                    .iter()
                    .map(|&v| (v as f64 - mean).powi(2))
                    .sum::<f64>()
                    / n)
                    .sqrt();
                assert!(
                    mean.abs() < 2e-3 && (std - 0.02).abs() < 2e-3,
                    "{}: {mean} {std}",
                    view.name
                );
            }
        }
    }

    #[test]
    fn mixed_slots_hold_their_share() {
        let picked =
            |mix: f64, slots: u64| (0..slots).filter(|&s| pretraining_slot(s, mix)).count();
        assert_eq!(picked(0.0, 100), 0);
        assert_eq!(picked(1.0, 100), 100);
        assert_eq!(picked(0.25, 100), 25);
        assert_eq!(picked(0.3, 10), 3);
        // Spread out: every stretch of 4 slots at 0.25 holds one.
        assert!((0..96).all(|s| (s..s + 4).filter(|&x| pretraining_slot(x, 0.25)).count() == 1));
    }
}
