//! Checkpoints: `config.json` (HuggingFace style), `model.safetensors` (parameters under their
//! HuggingFace names, so a dense or top-k checkpoint is a `transformers` model directory),
//! `optimizer.safetensors` (AdamW's `m` and `v`), `state.json` (step, tokens, loader state,
//! optimizer step, config fingerprint, the chunks' tokenizer) and `checksums.json` (the xxh3-64
//! of each of the others, checked whenever a file is read back). Written into a temporary
//! directory and renamed, so a checkpoint is complete or absent.

use crate::data::LoaderState;
use crate::error::TrainError;
use crate::model::config::{Ffn, ModelConfig};
use crate::model::params::Layout;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use steel_dataflow::pack::manifest::xxh3_hex;

/// The file of a checkpoint that lists the xxh3-64 of every other file in it.
pub const CHECKSUMS: &str = "checksums.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: u64,
    pub tokens: u64,
    pub loader: LoaderState,
    /// `xxh3` of the model configuration; a checkpoint only resumes the same model.
    pub config_fingerprint: String,
    /// Training losses so far, one per step (NaN for a skipped non-finite step; JSON has no
    /// NaN, so it is written as `null`).
    #[serde(deserialize_with = "losses_with_gaps")]
    pub losses: Vec<f32>,
    /// `(step, validation loss)` so far.
    #[serde(default)]
    pub validation: Vec<(u64, f32)>,
    /// Steps whose loss or gradient norm was not finite and that were skipped (no update), as
    /// `max_bad_steps` allows; counted over the whole run, across resumes.
    #[serde(default)]
    pub skipped_steps: Vec<u64>,
    /// xxh3-64 of the tokenizer file the training chunks were packed with (from their
    /// manifest), so eval, resume and `--init-from` can refuse chunks of another tokenizer.
    #[serde(default)]
    pub tokenizer_xxh3: Option<String>,
    /// Where the SFT rows stand (`steel sft` runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<crate::data::rows::RowsState>,
}

/// `losses` as written: a `null` (a non-finite loss) reads back as NaN.
fn losses_with_gaps<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f32>, D::Error> {
    let losses = Vec::<Option<f32>>::deserialize(deserializer)?;
    Ok(losses.into_iter().map(|l| l.unwrap_or(f32::NAN)).collect())
}

/// `checksums.json`: file name to the xxh3-64 of its bytes.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checksums {
    xxh3_64: BTreeMap<String, String>,
}

/// A stable fingerprint of a configuration.
pub fn fingerprint(config: &ModelConfig) -> String {
    format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(format!("{config:?}").as_bytes())
    )
}

/// Safetensors bytes for f32 tensors `(name, shape, data)`.
fn safetensors_bytes(tensors: &[(&str, Vec<usize>, &[f32])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        let end = offset + data.len() * 4;
        header.insert(
            (*name).to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&header).expect("a header always serialises");
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, _, data) in tensors {
        for v in *data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Steel's softmax-MoE for `transformers` (`trust_remote_code=True`).
pub const MODELING_STEEL: &str = include_str!("../hf/modeling_steel.py");

/// The files of a model directory `transformers` loads: `config.json` and `model.safetensors`
/// (plus `modeling_steel.py` for softmax-MoE), as `(name, bytes)`.
fn model_files(
    config: &ModelConfig,
    layout: &Layout,
    params: &[f32],
) -> Vec<(&'static str, Vec<u8>)> {
    let mut files = Vec::new();
    let mut json = config.to_hf_json();
    if matches!(config.ffn, Ffn::SoftmaxMoe { .. }) {
        // transformers has no class for Steel's softmax-MoE: ship ours and point to it.
        json["architectures"] = serde_json::json!(["SteelForCausalLM"]);
        json["auto_map"] =
            serde_json::json!({"AutoModelForCausalLM": "modeling_steel.SteelForCausalLM"});
        files.push(("modeling_steel.py", MODELING_STEEL.as_bytes().to_vec()));
    }
    let config_json = serde_json::to_vec_pretty(&json).expect("a config serialises");
    files.push(("config.json", config_json));
    let model: Vec<(&str, Vec<usize>, &[f32])> = layout
        .views
        .iter()
        .map(|view| {
            (
                view.name.as_str(),
                view.shape.clone(),
                &params[view.range()],
            )
        })
        .collect();
    files.push(("model.safetensors", safetensors_bytes(&model)));
    files
}

/// `config.json` and `model.safetensors` in `dir` (plus `modeling_steel.py` for softmax-MoE):
/// a directory `transformers` loads.
pub fn write_model(
    dir: &Path,
    config: &ModelConfig,
    layout: &Layout,
    params: &[f32],
) -> std::io::Result<()> {
    for (name, bytes) in model_files(config, layout, params) {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// A checkpoint's model as a HuggingFace directory `output` (must be empty or absent), with
/// `tokenizer` copied in if given.
pub fn export_hf(
    checkpoint: &Path,
    output: &Path,
    tokenizer: Option<&Path>,
) -> Result<(), TrainError> {
    let (config, layout, params) = load_model(checkpoint)?;
    if output.exists()
        && std::fs::read_dir(output)
            .map_err(|e| {
                TrainError::Checkpoint(format!("cannot read `{}`: {e}", output.display()))
            })?
            .next()
            .is_some()
    {
        return Err(TrainError::Checkpoint(format!(
            "`{}` is not empty; choose a new directory",
            output.display()
        )));
    }
    std::fs::create_dir_all(output).map_err(|e| {
        TrainError::Checkpoint(format!("cannot create `{}`: {e}", output.display()))
    })?;
    write_model(output, &config, &layout, &params)
        .map_err(|e| TrainError::Checkpoint(format!("cannot write `{}`: {e}", output.display())))?;
    if let Some(tokenizer) = tokenizer {
        std::fs::copy(tokenizer, output.join("tokenizer.json")).map_err(|e| {
            TrainError::Checkpoint(format!("cannot copy `{}`: {e}", tokenizer.display()))
        })?;
    }
    Ok(())
}

/// Write a checkpoint as `dir` (replacing nothing: `dir` must not exist).
pub fn save(
    dir: &Path,
    config: &ModelConfig,
    layout: &Layout,
    params: &[f32],
    m: &[f32],
    v: &[f32],
    state: &TrainState,
) -> std::io::Result<()> {
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    let mut files = model_files(config, layout, params);
    let moments = [("m", vec![m.len()], m), ("v", vec![v.len()], v)];
    files.push(("optimizer.safetensors", safetensors_bytes(&moments)));
    files.push((
        "state.json",
        serde_json::to_vec_pretty(state).expect("state serialises"),
    ));
    let mut checksums = Checksums::default();
    for (name, bytes) in &files {
        std::fs::write(tmp.join(name), bytes)?;
        checksums.xxh3_64.insert(name.to_string(), xxh3_hex(bytes));
    }
    std::fs::write(
        tmp.join(CHECKSUMS),
        serde_json::to_vec_pretty(&checksums).expect("checksums serialise"),
    )?;
    std::fs::rename(&tmp, dir)
}

/// A model directory opened for reading: a Steel checkpoint, whose `checksums.json` every file
/// read from it is checked against, or a HuggingFace directory (no checksums to check).
pub struct ModelDir {
    pub dir: PathBuf,
    /// `None`: not a Steel checkpoint.
    checksums: Option<Checksums>,
}

impl ModelDir {
    pub fn open(dir: &Path) -> Result<ModelDir, TrainError> {
        let path = dir.join(CHECKSUMS);
        let checksums = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                TrainError::Checkpoint(format!("`{}` is damaged: {e}", path.display()))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if dir.join("state.json").exists() {
                    return Err(TrainError::Checkpoint(format!(
                        "checkpoint `{}` has no {CHECKSUMS}, so its files cannot be verified \
                         (it was written by an older Steel, or damaged)",
                        dir.display()
                    )));
                }
                None
            }
            Err(e) => {
                return Err(TrainError::Checkpoint(format!(
                    "cannot read `{}`: {e}",
                    path.display()
                )));
            }
        };
        Ok(ModelDir {
            dir: dir.to_path_buf(),
            checksums,
        })
    }

    /// Whether this is a Steel checkpoint (with `state.json` and checksums).
    pub fn is_checkpoint(&self) -> bool {
        self.checksums.is_some()
    }

    /// The bytes of file `name`; in a checkpoint, checked against its recorded xxh3-64.
    pub fn read(&self, name: &str) -> Result<Vec<u8>, TrainError> {
        let path = self.dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| {
            TrainError::Checkpoint(format!("cannot read `{}`: {e}", path.display()))
        })?;
        if let Some(checksums) = &self.checksums {
            let recorded = checksums.xxh3_64.get(name).ok_or_else(|| {
                TrainError::Checkpoint(format!(
                    "`{}`: {CHECKSUMS} has no checksum for {name}",
                    self.dir.display()
                ))
            })?;
            let actual = xxh3_hex(&bytes);
            if actual != *recorded {
                return Err(TrainError::Corrupt {
                    path,
                    recorded: recorded.clone(),
                    actual,
                });
            }
        }
        Ok(bytes)
    }

    /// The training state of a checkpoint (`None` for a HuggingFace directory).
    pub fn state(&self) -> Result<Option<TrainState>, TrainError> {
        if !self.is_checkpoint() {
            return Ok(None);
        }
        serde_json::from_slice(&self.read("state.json")?)
            .map(Some)
            .map_err(|e| {
                TrainError::Checkpoint(format!(
                    "checkpoint `{}`: bad state.json: {e}",
                    self.dir.display()
                ))
            })
    }

    /// The model configuration (`config.json`).
    pub fn config(&self) -> Result<ModelConfig, TrainError> {
        let path = self.dir.join("config.json");
        let json: serde_json::Value = serde_json::from_slice(&self.read("config.json")?)
            .map_err(|e| TrainError::Config(format!("`{}` is not JSON: {e}", path.display())))?;
        ModelConfig::from_hf_json(&json)
            .map_err(|e| TrainError::Config(format!("`{}`: {e}", path.display())))
    }

    /// The weights (`model.safetensors`) laid out by `layout`.
    pub fn params(&self, layout: &Layout) -> Result<Vec<f32>, TrainError> {
        let mut params = vec![0.0; layout.len];
        layout
            .load_safetensors(&self.read("model.safetensors")?, &mut params)
            .map_err(|e| TrainError::Checkpoint(format!("`{}`: {e}", self.dir.display())))?;
        Ok(params)
    }
}

/// What a checkpoint holds.
pub struct Loaded {
    pub params: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub state: TrainState,
}

/// Read a checkpoint for `config`; a different configuration is refused, and so is a file
/// whose bytes do not match `checksums.json`.
/// An AdamW moment read from a checkpoint, in `layout`'s buffer: as stored when it has the
/// layout's length, or spread view by view when it is a checkpoint of an older Steel, whose
/// layout packed the same views in the same order with no alignment gaps.
fn laid_out(layout: &Layout, stored: Vec<f32>, dir: &Path) -> Result<Vec<f32>, TrainError> {
    if stored.len() == layout.len {
        return Ok(stored);
    }
    let packed: usize = layout.views.iter().map(|v| v.len()).sum();
    if stored.len() != packed {
        return Err(TrainError::Checkpoint(format!(
            "`{}`: the optimizer state holds {} values, the model {}",
            dir.display(),
            stored.len(),
            layout.len
        )));
    }
    let mut spread = vec![0.0; layout.len];
    let mut from = 0;
    for view in &layout.views {
        spread[view.range()].copy_from_slice(&stored[from..from + view.len()]);
        from += view.len();
    }
    Ok(spread)
}

pub fn load(dir: &Path, config: &ModelConfig, layout: &Layout) -> Result<Loaded, TrainError> {
    let files = ModelDir::open(dir)?;
    let state = files.state()?.ok_or_else(|| {
        TrainError::Checkpoint(format!(
            "`{}` is not a Steel checkpoint (no {CHECKSUMS} and state.json)",
            dir.display()
        ))
    })?;
    if state.config_fingerprint != fingerprint(config) {
        return Err(TrainError::Checkpoint(format!(
            "checkpoint `{}` was trained with another model configuration (fingerprint {}, this run's {})",
            dir.display(),
            state.config_fingerprint,
            fingerprint(config)
        )));
    }
    let params = files.params(layout)?;
    let moments = files.read("optimizer.safetensors")?;
    let tensors = safetensors::SafeTensors::deserialize(&moments)
        .map_err(|e| TrainError::Checkpoint(format!("optimizer state: {e}")))?;
    let vector = |name: &str| -> Result<Vec<f32>, TrainError> {
        let tensor = tensors
            .tensor(name)
            .map_err(|_| TrainError::Checkpoint(format!("optimizer state has no `{name}`")))?;
        Ok(tensor
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect())
    };
    Ok(Loaded {
        params,
        m: laid_out(layout, vector("m")?, dir)?,
        v: laid_out(layout, vector("v")?, dir)?,
        state,
    })
}

/// A model read from a checkpoint or a HuggingFace directory.
pub struct Model {
    pub config: ModelConfig,
    pub layout: Layout,
    pub params: Vec<f32>,
    /// xxh3-64 of the tokenizer the model was trained with, as its checkpoint records it.
    /// `None` for a HuggingFace directory (an import, or an export): nothing to compare.
    pub tokenizer_xxh3: Option<String>,
}

/// The model of a checkpoint (its files checked against `checksums.json`) or of any
/// HuggingFace directory with `config.json` and `model.safetensors`.
pub fn open_model(dir: &Path) -> Result<Model, TrainError> {
    let files = ModelDir::open(dir)?;
    let tokenizer_xxh3 = files.state()?.and_then(|s| s.tokenizer_xxh3);
    let config = files.config()?;
    let layout = Layout::new(&config);
    let params = files.params(&layout)?;
    Ok(Model {
        config,
        layout,
        params,
        tokenizer_xxh3,
    })
}

/// The model configuration and weights of a checkpoint (or of any HuggingFace directory with
/// `config.json` and `model.safetensors`): [`open_model`] without the tokenizer.
pub fn load_model(dir: &Path) -> Result<(ModelConfig, Layout, Vec<f32>), TrainError> {
    let model = open_model(dir)?;
    Ok((model.config, model.layout, model.params))
}

/// `step-` and eight digits: a finished checkpoint (a save that was killed leaves `….tmp`).
fn is_checkpoint_name(name: &str) -> bool {
    name.strip_prefix("step-")
        .is_some_and(|digits| digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Checkpoint directories under `out`, oldest first (`step-00000010`, ...).
pub fn list(out: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_dir()
                        && p.file_name()
                            .is_some_and(|n| is_checkpoint_name(&n.to_string_lossy()))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moments saved by an older Steel (views packed without alignment gaps) are spread into
    /// today's layout view by view; a length that is neither is refused.
    #[test]
    fn packed_moments_of_older_checkpoints_are_spread_into_the_layout() {
        let config = ModelConfig::preset("tiny-softmax-moe").unwrap();
        let layout = Layout::new(&config);
        let packed: usize = layout.views.iter().map(|v| v.len()).sum();
        assert!(packed < layout.len, "this preset has alignment gaps");
        let stored: Vec<f32> = (0..packed).map(|i| i as f32).collect();
        let spread = laid_out(&layout, stored, Path::new("old")).unwrap();
        let mut next = 0.0;
        for view in &layout.views {
            for &value in &spread[view.range()] {
                assert_eq!(value, next, "{}", view.name);
                next += 1.0;
            }
        }
        assert_eq!(spread.iter().filter(|&&v| v != 0.0).count(), packed - 1);
        let current = vec![0.5; layout.len];
        assert_eq!(
            laid_out(&layout, current.clone(), Path::new("new")).unwrap(),
            current
        );
        let error = laid_out(&layout, vec![0.0; 7], Path::new("bad")).unwrap_err();
        assert!(error.to_string().contains("7 values"), "{error}");
    }
}
