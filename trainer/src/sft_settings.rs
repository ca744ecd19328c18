//! The settings of `steel sft`: the training settings of `steel train` (its flags, its TOML
//! file) with `--data` naming chat files instead of chunk directories, plus how the chat data
//! becomes rows. Resolving prepares the rows once into the run directory (`sft-data/`, and
//! `sft-val/` for `--val-data`), where a resumed run finds them again.

use crate::checkpoint::{ModelDir, list, open_model};
use crate::data::DataSource;
use crate::error::TrainError;
use crate::settings::{TrainRun, TrainSettings};
use crate::sft::{Prepared, SftOptions};
use crate::train::SftFeed;
use std::path::{Path, PathBuf};

/// Steel-LLM's SFT: learning rate 3e-5 (cosine), no weight decay.
const DEFAULT_LR: f32 = 3e-5;

#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct SftSettings {
    /// Tokens per example; longer ones are cut at the end [default: 2048]. Rows have this
    /// many positions.
    #[cfg_attr(feature = "cli", arg(long))]
    pub cutoff: Option<usize>,
    /// Pack several examples into a row (each its own document: attention and positions
    /// restart) instead of one example per padded row.
    #[cfg_attr(feature = "cli", arg(long))]
    pub packing: bool,
    /// Train on every token, the prompt's too, not only on the assistant's replies.
    #[cfg_attr(feature = "cli", arg(long))]
    pub train_on_prompt: bool,
    /// Train only on the last assistant reply of each conversation.
    #[cfg_attr(feature = "cli", arg(long))]
    pub last_turn_only: bool,
    /// Mix pretraining blocks into the batches: DIR:SHARE, SHARE of the rows (0 < SHARE < 1)
    /// from the chunk directory DIR (packed with the same tokenizer; blocks cut to the
    /// rows' length).
    #[cfg_attr(feature = "cli", arg(long, value_name = "DIR:SHARE"))]
    pub mix_pretrain: Option<String>,
}

fn settings_error(message: impl Into<String>) -> TrainError {
    TrainError::Settings(message.into())
}

impl SftSettings {
    fn options(&self) -> SftOptions {
        SftOptions {
            cutoff: self.cutoff.unwrap_or(SftOptions::default().cutoff),
            packing: self.packing,
            train_on_prompt: self.train_on_prompt,
            last_turn_only: self.last_turn_only,
        }
    }

    /// The SFT run of `train` (whose `data` are chat files) with these settings: the rows
    /// prepared in the run directory (or found there on `--resume`), then resolved as
    /// `steel train` resolves its settings.
    pub fn resolve(self, mut train: TrainSettings) -> Result<TrainRun, TrainError> {
        let out = train
            .resume
            .clone()
            .flatten()
            .or(train.out.clone())
            .ok_or_else(|| settings_error("--out (or --resume DIR) is required"))?;
        let chat_files = std::mem::take(&mut train.data)
            .into_iter()
            .map(|source| match source.weight {
                1.0 => Ok(source.dir),
                _ => Err(settings_error(format!(
                    "`{}:{}`: a chat file takes no weight (mix pretraining data with --mix-pretrain)",
                    source.dir.display(),
                    source.weight
                ))),
            })
            .collect::<Result<Vec<PathBuf>, _>>()?;
        let options = self.options();
        if train.seq.is_some_and(|seq| seq != options.cutoff as u64) {
            return Err(settings_error(
                "an SFT row has --cutoff positions; leave --seq out",
            ));
        }
        train.seq = Some(options.cutoff as u64);
        let resume = train.resume.is_some();
        let prepared_dir = out.join("sft-data");
        let tokenizer = tokenizer_path(&train)?;
        let prepared = match (chat_files.is_empty(), resume) {
            (false, _) => prepare(&chat_files, tokenizer.as_deref(), &options, &prepared_dir)?,
            (true, true) => Prepared::open(&prepared_dir)?,
            (true, false) => {
                return Err(settings_error(
                    "no SFT data: give --data FILE.jsonl (chat messages or rendered chat text)",
                ));
            }
        };
        if prepared.row_len() != options.cutoff {
            return Err(settings_error(format!(
                "`{}` holds rows of {} positions, not --cutoff {}",
                prepared_dir.display(),
                prepared.row_len(),
                options.cutoff
            )));
        }
        // Validation rows are prepared the same way, beside the training rows.
        if let Some(val) = train.val_data.take() {
            let val_dir = out.join("sft-val");
            if val != val_dir {
                prepare(&[val], tokenizer.as_deref(), &options, &val_dir)?;
            }
            train.val_data = Some(val_dir);
        }
        check_init_tokenizer(&train, &prepared)?;
        let mix = match &self.mix_pretrain {
            None => 0.0,
            Some(spec) => {
                let source: DataSource = spec.parse()?;
                if !(source.weight > 0.0 && source.weight < 1.0) {
                    return Err(settings_error(format!(
                        "--mix-pretrain `{spec}`: expected DIR:SHARE with 0 < SHARE < 1"
                    )));
                }
                train.data = vec![DataSource {
                    dir: source.dir,
                    weight: 1.0,
                }];
                source.weight
            }
        };
        // On --resume without --mix-pretrain the checkpoint's mixed chunks come back through
        // `resolve`, but not their share: say so rather than train unmixed.
        if resume && mix == 0.0 && resumed_mix(&out)? {
            return Err(settings_error(
                "this run mixed pretraining blocks in; give --mix-pretrain again to resume it",
            ));
        }
        train.lr = train.lr.or(Some(DEFAULT_LR));
        train.weight_decay = train.weight_decay.or(Some(0.0));
        let feed = SftFeed {
            prepared: prepared_dir,
            mix,
        };
        train.resolve_with(Some(feed))
    }
}

/// `--tokenizer`, or the `tokenizer.json` of the `--init-from` directory.
fn tokenizer_path(train: &TrainSettings) -> Result<Option<PathBuf>, TrainError> {
    if let Some(path) = &train.tokenizer {
        return Ok(Some(path.clone()));
    }
    Ok(train
        .init_from
        .as_ref()
        .map(|dir| dir.join("tokenizer.json"))
        .filter(|path| path.exists()))
}

fn prepare(
    files: &[PathBuf],
    tokenizer: Option<&Path>,
    options: &SftOptions,
    dir: &Path,
) -> Result<Prepared, TrainError> {
    let tokenizer = tokenizer.ok_or_else(|| {
        settings_error("SFT data is tokenized with --tokenizer (or the --init-from directory's tokenizer.json)")
    })?;
    Ok(Prepared::prepare(files, tokenizer, options, dir)?)
}

/// The rows must be made with the tokenizer the `--init-from` checkpoint was trained with,
/// when it records one.
fn check_init_tokenizer(train: &TrainSettings, prepared: &Prepared) -> Result<(), TrainError> {
    let Some(dir) = &train.init_from else {
        return Ok(());
    };
    if let Some(expected) = open_model(dir)?.tokenizer_xxh3
        && expected != prepared.manifest().tokenizer_xxh3.as_str()
        && !train.allow_tokenizer_mismatch
    {
        return Err(TrainError::Data(format!(
            "the SFT rows were made with another tokenizer (xxh3 {}) than `{}` was trained with ({expected}); pass --allow-tokenizer-mismatch to go on anyway",
            prepared.manifest().tokenizer_xxh3.as_str(),
            dir.display()
        )));
    }
    Ok(())
}

/// Whether the newest checkpoint in `out` mixed chunk blocks into its SFT rows.
fn resumed_mix(out: &Path) -> Result<bool, TrainError> {
    let Some(newest) = list(out).last().cloned() else {
        return Ok(false);
    };
    Ok(ModelDir::open(&newest)?
        .state()?
        .is_some_and(|state| !state.loader.sources.is_empty()))
}
