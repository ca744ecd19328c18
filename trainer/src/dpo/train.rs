//! `steel dpo`: preference training. Each step takes `micro_batch · grad_accum` pairs (in a
//! seeded order, epoch after epoch), scores the chosen and rejected completions under the
//! policy (one forward each, no gradient), turns the preference loss of every pair into
//! per-token weights — `−∂L/∂c` on the chosen completion's tokens, `−∂L/∂r` on the
//! rejected's, over the step's pairs — and takes one engine step on those weights (the
//! gradient of `Σ w · ce` is then the gradient of the mean pair loss).
//!
//! The reference model's log-probabilities are computed once, with the starting weights,
//! before the first step, and stored in `OUT/dpo-reference.json` beside the checkpoints:
//! only one model is ever in memory, and a resumed run reads them back.
//!
//! One rank (CPU or one GPU); the pairs are held in memory as token ids.

use crate::batch::Batch;
use crate::checkpoint::{self, TrainState, fingerprint};
use crate::data::LoaderState;
use crate::data::rows::RowsState;
use crate::dpo::loss::{Metrics, Pair as PairLogps, Settings, pair_loss};
use crate::engine::{Engine, Objective};
use crate::error::TrainError;
use crate::model::params::Layout;
use crate::sft::Pair;
use crate::train::{TrainOptions, init_params, trim_metrics, write_checkpoint};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::io::Write;

/// What a DPO run trains on, besides [`TrainOptions`] (whose `micro_batch` counts pairs and
/// whose `seq` is the rows' length).
pub struct DpoData {
    /// The pairs, tokenized (`sft::read_pairs`), and where they came from (for messages).
    pub pairs: Vec<Pair>,
    pub source: String,
    pub loss: Settings,
}

/// One line of `metrics.jsonl`: the step, and the batch means of TRL's metrics.
#[derive(Debug, Serialize)]
pub struct DpoMetrics {
    pub step: u64,
    pub loss: f64,
    pub lr: f32,
    pub grad_norm: f32,
    #[serde(rename = "rewards/chosen")]
    pub reward_chosen: f64,
    #[serde(rename = "rewards/rejected")]
    pub reward_rejected: f64,
    #[serde(rename = "rewards/margins")]
    pub margin: f64,
    #[serde(rename = "rewards/accuracies")]
    pub accuracy: f64,
    #[serde(rename = "logps/chosen")]
    pub logps_chosen: f64,
    #[serde(rename = "logps/rejected")]
    pub logps_rejected: f64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

/// The reference log-probabilities (`c_ref`, `r_ref` per pair), tied to the pairs they are of.
#[derive(Serialize, Deserialize)]
struct Reference {
    pairs_xxh3: String,
    logps: Vec<(f64, f64)>,
}

/// xxh3 of the pairs' token ids (lengths included), naming exactly what was trained on.
fn pairs_xxh3(pairs: &[Pair]) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for pair in pairs {
        for part in [&pair.prompt, &pair.chosen, &pair.rejected] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            for id in part.iter() {
                hasher.update(&id.to_le_bytes());
            }
        }
    }
    format!("{:016x}", hasher.digest())
}

/// A pair as two rows of `t` positions: prompt + chosen, prompt + rejected, each trained
/// (weight 1) on its completion's tokens only, padded with weight 0.
fn push_pair(batch: &mut Batch, pair: &Pair) {
    for completion in [&pair.chosen, &pair.rejected] {
        let t = batch.t;
        let full: Vec<u32> = pair
            .prompt
            .iter()
            .chain(completion.iter())
            .copied()
            .collect();
        let n = full.len().min(t + 1);
        let (mut ids, mut targets, mut weights) = (vec![0; t], vec![0; t], vec![0.0; t]);
        ids[..n - 1].copy_from_slice(&full[..n - 1]);
        targets[..n - 1].copy_from_slice(&full[1..n]);
        for (i, w) in weights.iter_mut().enumerate().take(n - 1) {
            if i + 1 >= pair.prompt.len() {
                *w = 1.0;
            }
        }
        batch.push_row(&ids, &targets, &weights, &[0]);
    }
}

/// The summed completion log-probabilities `(chosen, rejected)` of every pair in `batch`.
fn logps(engine: &Engine, batch: &Batch) -> Result<Vec<(f64, f64)>, TrainError> {
    let sums = engine.row_loss_sums(batch)?;
    Ok(sums.chunks(2).map(|s| (-s[0], -s[1])).collect())
}

/// The reference log-probabilities of every pair under `engine`'s current weights.
fn reference_logps(
    engine: &Engine,
    pairs: &[Pair],
    t: usize,
) -> Result<Vec<(f64, f64)>, TrainError> {
    let mut all = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(4) {
        let mut batch = Batch::new(t);
        chunk.iter().for_each(|pair| push_pair(&mut batch, pair));
        all.extend(logps(engine, &batch)?);
    }
    Ok(all)
}

/// Pair indices in epoch `epoch`'s order: a shuffle seeded by (seed, epoch).
fn order(pairs: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let key = [seed, epoch, 0x0d70].map(u64::to_le_bytes).concat();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(xxhash_rust::xxh3::xxh3_64(&key));
    let mut order: Vec<u32> = (0..pairs as u32).collect();
    order.shuffle(&mut rng);
    order
}

/// Train `options` on `data` from its start, or from the newest checkpoint in `options.out`
/// when `resume`; calls `report` after every step.
pub fn dpo(
    options: &TrainOptions,
    data: &DpoData,
    resume: bool,
    report: &mut dyn FnMut(&DpoMetrics),
) -> Result<TrainState, TrainError> {
    data.loss.check()?;
    if options.nproc != 1 || options.nodes.is_some() {
        return Err(TrainError::Settings(
            "steel dpo runs on one rank (--nproc 1, one node)".into(),
        ));
    }
    if data.pairs.is_empty() {
        return Err(TrainError::Data(format!("`{}` has no pairs", data.source)));
    }
    let t = options.seq as usize;
    let layout = Layout::new(&options.config);
    let hash = pairs_xxh3(&data.pairs);
    std::fs::create_dir_all(&options.out)
        .map_err(|e| TrainError::Run(format!("cannot create `{}`: {e}", options.out.display())))?;
    let (params, moments, mut state) = match checkpoint::list(&options.out)
        .last()
        .filter(|_| resume)
    {
        Some(dir) => {
            let loaded = checkpoint::load(dir, &options.config, &layout)?;
            match &loaded.state.rows {
                Some(rows) if rows.rows_xxh3 == hash => {}
                _ => {
                    return Err(TrainError::Data(format!(
                        "`{}` was not trained on these pairs (`{}`); resume with the data it started with",
                        dir.display(),
                        data.source
                    )));
                }
            }
            (loaded.params, Some((loaded.m, loaded.v)), loaded.state)
        }
        None => {
            if !checkpoint::list(&options.out).is_empty() {
                return Err(TrainError::Run(format!(
                    "`{}` already has checkpoints; pass --resume or choose a new directory",
                    options.out.display()
                )));
            }
            let params = match &options.init_params {
                Some(params) => params.clone(),
                None => init_params(&layout, options.seed),
            };
            let state = TrainState {
                step: 0,
                tokens: 0,
                loader: LoaderState {
                    seed: options.seed,
                    block_size: options.seq,
                    world: 1,
                    step: 0,
                    sources: Vec::new(),
                },
                config_fingerprint: fingerprint(&options.config),
                losses: Vec::new(),
                validation: Vec::new(),
                skipped_steps: Vec::new(),
                tokenizer_xxh3: None,
                rows: Some(RowsState {
                    dir: data.source.clone(),
                    rows_xxh3: hash.clone(),
                    seed: options.seed,
                    served: 0,
                }),
            };
            (params, None, state)
        }
    };
    let mut engine = Engine::new(
        options.device,
        &options.config,
        options.adamw,
        params,
        moments,
        state.step,
    )?;
    let reference = match data.loss.variant.uses_reference() {
        true => load_or_compute_reference(options, &engine, data, &hash, resume)?,
        false => vec![(0.0, 0.0); data.pairs.len()],
    };
    let metrics_path = options.out.join("metrics.jsonl");
    trim_metrics(&metrics_path, state.step)?;
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(|e| TrainError::Run(format!("cannot open `{}`: {e}", metrics_path.display())))?;
    let per_step = options.micro_batch * options.grad_accum;
    let mut epoch_order = (u64::MAX, Vec::new());
    while state.step < options.steps {
        let rows = state.rows.as_mut().expect("a DPO state records its pairs");
        // This step's pairs, in micro-batches.
        let mut micro_batches = Vec::with_capacity(options.grad_accum);
        let mut chosen = Vec::with_capacity(per_step);
        for _ in 0..options.grad_accum {
            let mut batch = Batch::new(t);
            for _ in 0..options.micro_batch {
                let epoch = rows.served / data.pairs.len() as u64;
                if epoch_order.0 != epoch {
                    epoch_order = (epoch, order(data.pairs.len(), options.seed, epoch));
                }
                let index = epoch_order.1[(rows.served % data.pairs.len() as u64) as usize];
                push_pair(&mut batch, &data.pairs[index as usize]);
                chosen.push(index as usize);
                rows.served += 1;
            }
            micro_batches.push(batch);
        }
        // The policy's log-probabilities, the pairs' losses, and their derivatives as weights.
        let mut losses = Vec::with_capacity(per_step);
        let mut logged = Vec::with_capacity(per_step);
        let mut k = 0;
        for batch in &mut micro_batches {
            let policy = logps(&engine, batch)?;
            for (p, &(c, r)) in policy.iter().enumerate() {
                let index = chosen[k];
                let pair = &data.pairs[index];
                let (c_ref, r_ref) = reference[index];
                let loss = pair_loss(
                    &data.loss,
                    &PairLogps {
                        chosen: c,
                        rejected: r,
                        ref_chosen: c_ref,
                        ref_rejected: r_ref,
                        chosen_tokens: pair.chosen.len(),
                        rejected_tokens: pair.rejected.len(),
                    },
                );
                // L_step = Σ L_pair / pairs; c = −Σ ce over the chosen tokens.
                let scale = [loss.d_chosen, loss.d_rejected].map(|d| (-d / per_step as f64) as f32);
                for (side, s) in scale.into_iter().enumerate() {
                    let row = 2 * p + side;
                    let span = row * t..(row + 1) * t;
                    batch.weights[span].iter_mut().for_each(|w| *w *= s);
                }
                losses.push(loss.loss);
                logged.push(loss.metrics);
                k += 1;
            }
            state.tokens += batch.ids.len() as u64;
        }
        let lr = options.schedule.lr(state.step);
        let result = engine.step(&micro_batches, Objective::Weighted, lr, options.clip, None)?;
        let loss = losses.iter().sum::<f64>() / losses.len() as f64;
        state.step += 1;
        let finite = result.updated && loss.is_finite();
        if !finite {
            if state.skipped_steps.len() as u64 >= options.max_bad_steps {
                return Err(TrainError::NonFinite {
                    step: state.step,
                    loss: loss as f32,
                    grad_norm: result.grad_norm,
                    skipped: state.skipped_steps.len(),
                    max: options.max_bad_steps,
                });
            }
            state.skipped_steps.push(state.step);
        }
        state.losses.push(loss as f32);
        let line = step_metrics(state.step, loss, lr, result.grad_norm, &logged, !finite);
        writeln!(
            metrics,
            "{}",
            serde_json::to_string(&line).expect("metrics serialise")
        )
        .map_err(|e| TrainError::Run(format!("cannot write `{}`: {e}", metrics_path.display())))?;
        report(&line);
        if state.step.is_multiple_of(options.checkpoint_every) || state.step == options.steps {
            write_checkpoint(options, &layout, &engine, &state)?;
        }
    }
    Ok(state)
}

/// The means of the pairs' metrics.
fn step_metrics(
    step: u64,
    loss: f64,
    lr: f32,
    grad_norm: f32,
    pairs: &[Metrics],
    skipped: bool,
) -> DpoMetrics {
    let mean = |f: &dyn Fn(&Metrics) -> f64| pairs.iter().map(f).sum::<f64>() / pairs.len() as f64;
    DpoMetrics {
        step,
        loss,
        lr,
        grad_norm,
        reward_chosen: mean(&|m| m.reward_chosen),
        reward_rejected: mean(&|m| m.reward_rejected),
        margin: mean(&|m| m.margin()),
        accuracy: mean(&|m| if m.accurate() { 1.0 } else { 0.0 }),
        logps_chosen: mean(&|m| m.logps_chosen),
        logps_rejected: mean(&|m| m.logps_rejected),
        skipped,
    }
}

/// `OUT/dpo-reference.json` if it is of these pairs; otherwise (a new run only) computed with
/// the starting weights and written there (to a temporary name, then renamed).
fn load_or_compute_reference(
    options: &TrainOptions,
    engine: &Engine,
    data: &DpoData,
    hash: &str,
    resume: bool,
) -> Result<Vec<(f64, f64)>, TrainError> {
    let path = options.out.join("dpo-reference.json");
    let fail = |e: &dyn std::fmt::Display| {
        TrainError::Run(format!(
            "reference log-probabilities `{}`: {e}",
            path.display()
        ))
    };
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| fail(&e))?;
        let stored: Reference = serde_json::from_str(&text).map_err(|e| fail(&e))?;
        if stored.pairs_xxh3 == hash && stored.logps.len() == data.pairs.len() {
            return Ok(stored.logps);
        }
        if resume {
            return Err(fail(&"they are of other pairs than the run's"));
        }
    } else if resume && !checkpoint::list(&options.out).is_empty() {
        return Err(fail(&"missing: the run cannot resume without them"));
    }
    let logps = reference_logps(engine, &data.pairs, options.seq as usize)?;
    let stored = Reference {
        pairs_xxh3: hash.to_string(),
        logps,
    };
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string(&stored).expect("serialise"))
        .map_err(|e| fail(&e))?;
    std::fs::rename(&tmp, &path).map_err(|e| fail(&e))?;
    Ok(stored.logps)
}
