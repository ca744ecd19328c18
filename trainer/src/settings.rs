//! The settings of a training run, one type for every way they arrive: `steel train`'s flags
//! (with the `cli` feature this type is the flag parser), its TOML file (the same names,
//! snake_case; paths relative to the file), and code (`steel demo`, tests). A setting left out
//! is `None`; [`TrainSettings::or`] lets the flags win over the file and
//! [`TrainSettings::resolve`] fills the defaults, checks everything and builds the model.

use crate::checkpoint::{self, ModelDir, open_model};
use crate::data::DataSource;
use crate::data::chunks::check_tokenizer;
use crate::device::Device;
use crate::error::TrainError;
use crate::model::config::ModelConfig;
use crate::optim::adamw::AdamWConfig;
use crate::optim::schedule::Schedule;
use crate::train::{Nodes, SftFeed, TrainOptions, Validation};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    /// Model preset: tiny-dense, tiny-softmax-moe, tiny-topk-moe, steel-1b, dense-1b,
    /// topk-moe-2b [default: tiny-dense].
    #[cfg_attr(feature = "cli", arg(long))]
    pub preset: Option<String>,
    /// Override the preset's vocabulary size (it must cover the tokenizer the chunks used).
    #[cfg_attr(feature = "cli", arg(long))]
    pub vocab_size: Option<usize>,
    /// Take the vocabulary size from this tokenizer.json (a preset; an --init-from model keeps
    /// its own, which must hold it). `steel sft` and `steel dpo` tokenize their data with it.
    #[cfg_attr(feature = "cli", arg(long))]
    pub tokenizer: Option<PathBuf>,
    /// Start from a HuggingFace model directory (config.json + model.safetensors), e.g. one
    /// `steel export hf` wrote or transformers saved, instead of a preset.
    #[cfg_attr(feature = "cli", arg(long))]
    pub init_from: Option<PathBuf>,
    /// A chunk directory, optionally with a mixture weight: DIR or DIR:WEIGHT. Repeatable.
    /// With --resume it may be left out: the run's checkpoint records its directories.
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default)]
    pub data: Vec<DataSource>,
    /// Tokens per training sequence [default: the first chunk directory's block size].
    #[cfg_attr(feature = "cli", arg(long))]
    pub seq: Option<u64>,
    /// Optimizer steps.
    #[cfg_attr(feature = "cli", arg(long))]
    pub steps: Option<u64>,
    /// Sequences per optimizer step [default: 4].
    #[cfg_attr(feature = "cli", arg(long))]
    pub micro_batch: Option<usize>,
    /// Micro-batches per optimizer step, their gradients summed (gradient accumulation): a
    /// step trains on micro-batch × grad-accum sequences per rank [default: 1].
    #[cfg_attr(feature = "cli", arg(long))]
    pub grad_accum: Option<usize>,
    /// Peak learning rate [default: 3e-3].
    #[cfg_attr(feature = "cli", arg(long))]
    pub lr: Option<f32>,
    /// Final learning rate [default: lr / 10].
    #[cfg_attr(feature = "cli", arg(long))]
    pub min_lr: Option<f32>,
    /// Warm-up steps [default: a tenth of the steps].
    #[cfg_attr(feature = "cli", arg(long))]
    pub warmup: Option<u64>,
    /// cosine (decay after warm-up) or wsd (flat, then linear decay over --decay-steps)
    /// [default: cosine].
    #[cfg_attr(feature = "cli", arg(long))]
    pub schedule: Option<String>,
    /// Decay steps of the wsd schedule [default: a fifth of the steps].
    #[cfg_attr(feature = "cli", arg(long))]
    pub decay_steps: Option<u64>,
    /// AdamW weight decay (not on norms and biases) [default: 0.1].
    #[cfg_attr(feature = "cli", arg(long))]
    pub weight_decay: Option<f32>,
    /// Clip gradients to this global norm [default: 1.0].
    #[cfg_attr(feature = "cli", arg(long))]
    pub clip: Option<f32>,
    /// Steps with a non-finite loss or gradient norm to skip (no update, logged in
    /// metrics.jsonl) before training stops with an error; 0: the first one stops it
    /// [default: 0].
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_bad_steps: Option<u64>,
    /// Re-read the chunk manifests every N steps (and at every checkpoint): chunks `steel
    /// pack` added join the unseen remainder of the epoch, retracted ones leave; 0: only at
    /// checkpoints. Steps, not seconds, so a resumed run changes its data where an
    /// uninterrupted one would [default: 0].
    #[cfg_attr(feature = "cli", arg(long))]
    pub follow_every: Option<u64>,
    /// Use chunks packed with another tokenizer than the one the --init-from or resumed
    /// checkpoint records (or than the first --data directory's), deliberately.
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(default)]
    pub allow_tokenizer_mismatch: bool,
    /// Run directory: metrics.jsonl, loss.svg, step-NNNNNNNN/ checkpoints.
    #[cfg_attr(feature = "cli", arg(long))]
    pub out: Option<PathBuf>,
    /// Continue from the newest checkpoint of a run directory: --resume DIR, or --resume with
    /// --out. (A flag only, not a file setting.)
    #[cfg_attr(feature = "cli", arg(long, num_args = 0..=1, value_name = "DIR"))]
    #[serde(skip)]
    pub resume: Option<Option<PathBuf>>,
    /// Write a checkpoint every N steps (and at the end) [default: 100].
    #[cfg_attr(feature = "cli", arg(long))]
    pub checkpoint_every: Option<u64>,
    /// Checkpoints to keep [default: 3].
    #[cfg_attr(feature = "cli", arg(long))]
    pub keep: Option<usize>,
    /// Held-out chunk directory scored every --eval-every steps; the best checkpoint is kept
    /// in best/.
    #[cfg_attr(feature = "cli", arg(long))]
    pub val_data: Option<PathBuf>,
    /// [default: 100]
    #[cfg_attr(feature = "cli", arg(long))]
    pub eval_every: Option<u64>,
    /// Score only the first N validation blocks.
    #[cfg_attr(feature = "cli", arg(long))]
    pub val_blocks: Option<u64>,
    /// [default: 42]
    #[cfg_attr(feature = "cli", arg(long))]
    pub seed: Option<u64>,
    /// Where steps run: cpu, cuda (one GPU, flash attention) or cuda:cublas (cuBLAS
    /// attention); cuda needs a binary built with `--features cuda` [default: cpu].
    #[cfg_attr(feature = "cli", arg(long))]
    pub device: Option<Device>,
    /// Data-parallel ranks, each with its own loader shard and --micro-batch sequences per
    /// step, gradients summed across ranks (CPU: threads; CUDA: one GPU per rank, summed
    /// through NCCL) [default: 1].
    #[cfg_attr(feature = "cli", arg(long))]
    pub nproc: Option<usize>,
    /// Nodes (or processes) of a multi-node run, each started with its --node-rank
    /// [default: 1]. (Flags only, like the three below.)
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(skip)]
    pub nnodes: Option<usize>,
    /// This node's index, 0..nnodes (node 0 hosts rank 0, which the others connect to)
    /// [default: 0].
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(skip)]
    pub node_rank: Option<usize>,
    /// Address of node 0, where rank 0 listens [default: 127.0.0.1].
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(skip)]
    pub master_addr: Option<String>,
    /// Port rank 0 listens on [default: 29500].
    #[cfg_attr(feature = "cli", arg(long))]
    #[serde(skip)]
    pub master_port: Option<u16>,
}

/// A resolved run: what [`crate::train::train`] takes.
#[derive(Clone, Debug)]
pub struct TrainRun {
    pub options: TrainOptions,
    /// Continue from the newest checkpoint in `options.out`.
    pub resume: bool,
}

fn settings_error(message: impl Into<String>) -> TrainError {
    TrainError::Settings(message.into())
}

impl TrainSettings {
    /// The settings of a TOML file; its relative paths are taken against its directory.
    pub fn load(path: &Path) -> Result<TrainSettings, TrainError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| settings_error(format!("reading {}: {e}", path.display())))?;
        let mut file: TrainSettings = toml::from_str(&text).map_err(|e| {
            settings_error(format!(
                "{} is not a valid training config: {e}",
                path.display()
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        file.data.iter_mut().for_each(|source| rel(&mut source.dir));
        for path in [
            &mut file.tokenizer,
            &mut file.init_from,
            &mut file.out,
            &mut file.val_data,
        ]
        .into_iter()
        .flatten()
        {
            rel(path);
        }
        Ok(file)
    }

    /// These settings, with every one they leave out taken from `other` (flags `or` file).
    pub fn or(self, other: TrainSettings) -> TrainSettings {
        TrainSettings {
            preset: self.preset.or(other.preset),
            vocab_size: self.vocab_size.or(other.vocab_size),
            tokenizer: self.tokenizer.or(other.tokenizer),
            init_from: self.init_from.or(other.init_from),
            data: if self.data.is_empty() {
                other.data
            } else {
                self.data
            },
            seq: self.seq.or(other.seq),
            steps: self.steps.or(other.steps),
            micro_batch: self.micro_batch.or(other.micro_batch),
            grad_accum: self.grad_accum.or(other.grad_accum),
            lr: self.lr.or(other.lr),
            min_lr: self.min_lr.or(other.min_lr),
            warmup: self.warmup.or(other.warmup),
            schedule: self.schedule.or(other.schedule),
            decay_steps: self.decay_steps.or(other.decay_steps),
            weight_decay: self.weight_decay.or(other.weight_decay),
            clip: self.clip.or(other.clip),
            max_bad_steps: self.max_bad_steps.or(other.max_bad_steps),
            follow_every: self.follow_every.or(other.follow_every),
            allow_tokenizer_mismatch: self.allow_tokenizer_mismatch
                || other.allow_tokenizer_mismatch,
            out: self.out.or(other.out),
            resume: self.resume.or(other.resume),
            checkpoint_every: self.checkpoint_every.or(other.checkpoint_every),
            keep: self.keep.or(other.keep),
            val_data: self.val_data.or(other.val_data),
            eval_every: self.eval_every.or(other.eval_every),
            val_blocks: self.val_blocks.or(other.val_blocks),
            seed: self.seed.or(other.seed),
            device: self.device.or(other.device),
            nproc: self.nproc.or(other.nproc),
            nnodes: self.nnodes.or(other.nnodes),
            node_rank: self.node_rank.or(other.node_rank),
            master_addr: self.master_addr.or(other.master_addr),
            master_port: self.master_port.or(other.master_port),
        }
    }

    /// The run these settings describe: defaults filled in, every setting checked, the model
    /// configuration (and any imported weights) loaded.
    pub fn resolve(self) -> Result<TrainRun, TrainError> {
        self.resolve_with(None)
    }

    /// [`TrainSettings::resolve`] for a run on SFT rows (`sft`): `data` is then only the
    /// chunks mixed in, and may be empty; `seq` must be given (the rows' length).
    pub fn resolve_with(self, sft: Option<SftFeed>) -> Result<TrainRun, TrainError> {
        let chunks_required = sft.is_none();
        self.resolve_inner(sft, chunks_required)
    }

    /// [`TrainSettings::resolve`] for a run whose data is not chunks (`steel dpo`: `data`
    /// names its pairs file, which the caller reads); `seq` must be given.
    pub fn resolve_without_chunks(mut self) -> Result<TrainRun, TrainError> {
        self.data.clear();
        self.resolve_inner(None, false)
    }

    fn resolve_inner(
        mut self,
        sft: Option<SftFeed>,
        chunks_required: bool,
    ) -> Result<TrainRun, TrainError> {
        let resume = self.resume.is_some();
        let out = self
            .resume
            .clone()
            .flatten()
            .or(self.out.clone())
            .ok_or_else(|| settings_error("--out (or --resume DIR) is required"));
        // A resumed run without --data reads what its newest checkpoint read (the loader
        // state records each directory as an absolute path, so this works from any
        // directory).
        let mut seq = self.seq;
        if self.data.is_empty()
            && chunks_required
            && resume
            && let Ok(out) = &out
            && let Some(newest) = checkpoint::list(out).last()
            && let Some(state) = ModelDir::open(newest)?.state()?
        {
            self.data = state
                .loader
                .sources
                .iter()
                .map(|source| DataSource {
                    dir: PathBuf::from(&source.dir),
                    weight: source.weight,
                })
                .collect();
            seq = seq.or(Some(state.loader.block_size));
        }
        let first = self.data.first();
        if first.is_none() && chunks_required {
            return Err(settings_error(
                "no training data: give --data DIR (or `data = [...]` in the config)",
            ));
        }
        let seq = match (seq, first) {
            (Some(seq), _) => seq,
            (None, None) => return Err(settings_error("the rows' length (--seq) is required")),
            (None, Some(first)) => {
                steel_dataflow::pack::manifest::Manifest::load(&first.dir)?
                    .ok_or_else(|| {
                        settings_error(format!(
                            "{} is not a chunk directory (no manifest.json)",
                            first.dir.display()
                        ))
                    })?
                    .settings
                    .block_size
            }
        };
        let steps = self
            .steps
            .ok_or_else(|| settings_error("--steps is required"))?;
        let out = out?;
        let micro_batch = self.micro_batch.unwrap_or(4);
        let checkpoint_every = self.checkpoint_every.unwrap_or(100);
        let nproc = self.nproc.unwrap_or(1);
        let grad_accum = self.grad_accum.unwrap_or(1);
        if steps == 0 || micro_batch == 0 || grad_accum == 0 || checkpoint_every == 0 || nproc == 0
        {
            return Err(settings_error(
                "steps, micro_batch, grad_accum, checkpoint_every and nproc must be positive",
            ));
        }
        let lr = self.lr.unwrap_or(3e-3);
        let min_lr = self.min_lr.unwrap_or(lr / 10.0);
        let warmup = self.warmup.unwrap_or((steps / 10).max(1));
        let schedule = match self.schedule.as_deref().unwrap_or("cosine") {
            "cosine" => Schedule::Cosine {
                max_lr: lr,
                min_lr,
                warmup,
                total: steps,
            },
            "wsd" => Schedule::WarmupStableDecay {
                max_lr: lr,
                min_lr,
                warmup,
                total: steps,
                decay_steps: self.decay_steps.unwrap_or((steps / 5).max(1)),
            },
            other => {
                return Err(settings_error(format!(
                    "unknown schedule `{other}`; expected cosine or wsd"
                )));
            }
        };

        // The model: a preset (its vocabulary from `tokenizer` or `vocab_size`), or an
        // imported HuggingFace directory's configuration and weights.
        let (mut config, init_params) = match &self.init_from {
            Some(dir) => {
                let model = open_model(dir)?;
                // A Steel checkpoint records its chunks' tokenizer; a HuggingFace directory
                // (imported or exported) records none, and then nothing can be compared.
                if let Some(expected) = &model.tokenizer_xxh3
                    && !self.allow_tokenizer_mismatch
                {
                    let dirs = self.data.iter().map(|source| &source.dir);
                    // An SFT run's validation data is SFT rows, not chunks.
                    let validation = self.val_data.iter().filter(|_| chunks_required);
                    for chunks in dirs.chain(validation) {
                        let manifest = steel_dataflow::pack::manifest::Manifest::load(chunks)?
                            .ok_or_else(|| {
                                crate::data::LoaderError::NotAChunkDir(chunks.clone())
                            })?;
                        check_tokenizer(chunks, &manifest, dir, expected)?;
                    }
                }
                (model.config, Some(model.params))
            }
            None => (
                ModelConfig::preset(self.preset.as_deref().unwrap_or("tiny-dense"))?,
                None,
            ),
        };
        // A preset takes its vocabulary from the tokenizer; an imported model keeps its own,
        // which must hold the tokenizer's.
        if let Some(tokenizer) = &self.tokenizer {
            let size = steel_dataflow::pack::tokenizer::load(tokenizer)?.get_vocab_size(true);
            match &self.init_from {
                None => config.vocab_size = size,
                Some(dir) if size > config.vocab_size => {
                    return Err(settings_error(format!(
                        "`{}` has {size} tokens, more than the {} of the model in `{}`",
                        tokenizer.display(),
                        config.vocab_size,
                        dir.display()
                    )));
                }
                Some(_) => {}
            }
        }
        if let Some(vocab) = self.vocab_size {
            config.vocab_size = vocab;
        }
        let validation = self.val_data.map(|dir| Validation {
            dir,
            every: self.eval_every.unwrap_or(100),
            max_blocks: self.val_blocks,
        });
        let options = TrainOptions {
            config,
            data: self.data,
            seq,
            micro_batch,
            grad_accum,
            steps,
            schedule,
            adamw: AdamWConfig {
                weight_decay: self.weight_decay.unwrap_or(0.1),
                ..AdamWConfig::default()
            },
            clip: self.clip.unwrap_or(1.0),
            seed: self.seed.unwrap_or(42),
            out,
            checkpoint_every,
            keep: self.keep.unwrap_or(3),
            validation,
            init_params,
            device: self.device.unwrap_or(Device::Cpu),
            nproc,
            max_bad_steps: self.max_bad_steps.unwrap_or(0),
            follow_every: self.follow_every.unwrap_or(0),
            allow_tokenizer_mismatch: self.allow_tokenizer_mismatch,
            sft,
            nodes: nodes(
                self.nnodes.unwrap_or(1),
                self.node_rank.unwrap_or(0),
                self.master_addr.as_deref().unwrap_or("127.0.0.1"),
                self.master_port.unwrap_or(29500),
            )?,
        };
        Ok(TrainRun { options, resume })
    }
}

/// A multi-node run's place (None for one node).
fn nodes(
    nnodes: usize,
    node_rank: usize,
    master_addr: &str,
    master_port: u16,
) -> Result<Option<Nodes>, TrainError> {
    if nnodes == 0 || node_rank >= nnodes {
        return Err(settings_error(format!(
            "--node-rank {node_rank} is not one of --nnodes {nnodes}"
        )));
    }
    Ok((nnodes > 1).then(|| Nodes {
        nnodes,
        node_rank,
        master: format!("{master_addr}:{master_port}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_data(dir: &str) -> TrainSettings {
        TrainSettings {
            data: vec![dir.parse().unwrap()],
            seq: Some(16),
            steps: Some(50),
            out: Some("run".into()),
            ..TrainSettings::default()
        }
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let run = with_data("chunks").resolve().unwrap();
        let o = &run.options;
        assert!(!run.resume);
        assert_eq!((o.micro_batch, o.checkpoint_every, o.keep), (4, 100, 3));
        assert_eq!((o.clip, o.seed, o.nproc), (1.0, 42, 1));
        assert_eq!(o.adamw.weight_decay, 0.1);
        assert_eq!(o.device, Device::Cpu);
        assert!(o.nodes.is_none() && o.validation.is_none() && o.init_params.is_none());
        assert_eq!((o.max_bad_steps, o.allow_tokenizer_mismatch), (0, false));
        assert_eq!(
            o.config.vocab_size,
            ModelConfig::preset("tiny-dense").unwrap().vocab_size
        );
        // Cosine from 3e-3 to a tenth of it, warming up over a tenth of the steps.
        let Schedule::Cosine {
            max_lr,
            min_lr,
            warmup,
            total,
        } = o.schedule
        else {
            panic!("{:?}", o.schedule)
        };
        assert_eq!((max_lr, min_lr, warmup, total), (3e-3, 3e-4, 5, 50));
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let flags = TrainSettings {
            lr: Some(1e-3),
            ..with_data("flag-chunks")
        };
        let file = TrainSettings {
            lr: Some(5e-3),
            keep: Some(7),
            data: vec!["file-chunks:2".parse().unwrap()],
            ..TrainSettings::default()
        };
        let o = flags.or(file).resolve().unwrap().options;
        assert_eq!(o.keep, 7);
        assert_eq!(o.data.len(), 1);
        assert_eq!(o.data[0].dir, PathBuf::from("flag-chunks"));
        let Schedule::Cosine { max_lr, .. } = o.schedule else {
            panic!()
        };
        assert_eq!(max_lr, 1e-3);
    }

    #[test]
    fn a_file_is_read_relative_to_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(
            &path,
            "data = [\"chunks:3\", \"/abs/other\"]\nsteps = 9\nout = \"runs/a\"\nschedule = \"wsd\"\n",
        )
        .unwrap();
        let file = TrainSettings::load(&path).unwrap();
        assert_eq!(file.data[0].dir, dir.path().join("chunks"));
        assert_eq!(file.data[0].weight, 3.0);
        assert_eq!(file.data[1].dir, PathBuf::from("/abs/other"));
        assert_eq!(file.out, Some(dir.path().join("runs/a")));
        std::fs::write(&path, "stepz = 9\n").unwrap();
        let error = TrainSettings::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("not a valid training config") && error.contains("stepz"),
            "{error}"
        );
    }

    #[test]
    fn max_bad_steps_and_the_tokenizer_override_come_from_the_file_or_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(
            &path,
            "max_bad_steps = 3\nallow_tokenizer_mismatch = true\n",
        )
        .unwrap();
        let file = TrainSettings::load(&path).unwrap();
        let o = with_data("c").or(file).resolve().unwrap().options;
        assert_eq!((o.max_bad_steps, o.allow_tokenizer_mismatch), (3, true));
        let flags = TrainSettings {
            max_bad_steps: Some(1),
            ..with_data("c")
        };
        let file = TrainSettings::load(&path).unwrap();
        assert_eq!(flags.or(file).resolve().unwrap().options.max_bad_steps, 1);
    }

    #[test]
    fn impossible_settings_are_refused_with_the_reason() {
        let refused = |settings: TrainSettings| settings.resolve().unwrap_err().to_string();
        assert!(refused(TrainSettings::default()).contains("no training data"));
        let no_steps = TrainSettings {
            steps: None,
            ..with_data("c")
        };
        assert!(refused(no_steps).contains("--steps is required"));
        let zero = TrainSettings {
            micro_batch: Some(0),
            ..with_data("c")
        };
        assert!(refused(zero).contains("must be positive"));
        let schedule = TrainSettings {
            schedule: Some("linear".into()),
            ..with_data("c")
        };
        assert!(refused(schedule).contains("unknown schedule `linear`"));
        let rank = TrainSettings {
            nnodes: Some(2),
            node_rank: Some(2),
            ..with_data("c")
        };
        assert!(refused(rank).contains("--node-rank 2 is not one of --nnodes 2"));
        let preset = TrainSettings {
            preset: Some("huge".into()),
            ..with_data("c")
        };
        assert!(refused(preset).contains("unknown preset `huge`"));
    }

    #[test]
    fn resume_takes_its_directory_or_the_out_directory() {
        let resumed = TrainSettings {
            resume: Some(Some("old".into())),
            ..with_data("c")
        };
        let run = resumed.resolve().unwrap();
        assert!(run.resume);
        assert_eq!(run.options.out, PathBuf::from("old"));
        let with_out = TrainSettings {
            resume: Some(None),
            ..with_data("c")
        };
        assert_eq!(
            with_out.resolve().unwrap().options.out,
            PathBuf::from("run")
        );
    }
}
