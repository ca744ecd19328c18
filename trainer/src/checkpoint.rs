//! Checkpoints: `config.json` (HuggingFace style), `model.safetensors` (parameters under their
//! HuggingFace names, so a dense or top-k checkpoint is a `transformers` model directory),
//! `optimizer.safetensors` (AdamW's `m` and `v`), `state.json` (step, tokens, loader state,
//! optimizer step, config fingerprint). Written into a temporary directory and renamed, so a
//! checkpoint is complete or absent.

use crate::data::LoaderState;
use crate::error::TrainError;
use crate::model::config::{Ffn, ModelConfig};
use crate::model::params::Layout;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: u64,
    pub tokens: u64,
    pub loader: LoaderState,
    /// `xxh3` of the model configuration; a checkpoint only resumes the same model.
    pub config_fingerprint: String,
    /// Training losses so far, one per step.
    pub losses: Vec<f32>,
    /// `(step, validation loss)` so far.
    #[serde(default)]
    pub validation: Vec<(u64, f32)>,
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

/// `config.json` and `model.safetensors` in `dir` (plus `modeling_steel.py` for softmax-MoE):
/// a directory `transformers` loads.
pub fn write_model(
    dir: &Path,
    config: &ModelConfig,
    layout: &Layout,
    params: &[f32],
) -> std::io::Result<()> {
    let mut json = config.to_hf_json();
    if matches!(config.ffn, Ffn::SoftmaxMoe { .. }) {
        // transformers has no class for Steel's softmax-MoE: ship ours and point to it.
        json["architectures"] = serde_json::json!(["SteelForCausalLM"]);
        json["auto_map"] =
            serde_json::json!({"AutoModelForCausalLM": "modeling_steel.SteelForCausalLM"});
        std::fs::write(dir.join("modeling_steel.py"), MODELING_STEEL)?;
    }
    let config_json = serde_json::to_vec_pretty(&json).expect("a config serialises");
    std::fs::write(dir.join("config.json"), config_json)?;
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
    std::fs::write(dir.join("model.safetensors"), safetensors_bytes(&model))
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
    write_model(&tmp, config, layout, params)?;
    let moments = [("m", vec![m.len()], m), ("v", vec![v.len()], v)];
    std::fs::write(
        tmp.join("optimizer.safetensors"),
        safetensors_bytes(&moments),
    )?;
    std::fs::write(
        tmp.join("state.json"),
        serde_json::to_vec_pretty(state).expect("state serialises"),
    )?;
    std::fs::rename(&tmp, dir)
}

/// What a checkpoint holds.
pub struct Loaded {
    pub params: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub state: TrainState,
}

/// Read a checkpoint for `config`; a different configuration is refused.
pub fn load(dir: &Path, config: &ModelConfig, layout: &Layout) -> Result<Loaded, TrainError> {
    let read = |name: &str| -> Result<Vec<u8>, TrainError> {
        std::fs::read(dir.join(name)).map_err(|e| {
            TrainError::Checkpoint(format!(
                "checkpoint `{}`: cannot read {name}: {e}",
                dir.display()
            ))
        })
    };
    let state: TrainState = serde_json::from_slice(&read("state.json")?).map_err(|e| {
        TrainError::Checkpoint(format!(
            "checkpoint `{}`: bad state.json: {e}",
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
    let mut params = vec![0.0; layout.len];
    layout
        .load_safetensors(&read("model.safetensors")?, &mut params)
        .map_err(TrainError::Checkpoint)?;
    let moments = read("optimizer.safetensors")?;
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
        m: vector("m")?,
        v: vector("v")?,
        state,
    })
}

/// The model configuration and weights of a checkpoint (or of any HuggingFace directory with
/// `config.json` and `model.safetensors`).
pub fn load_model(dir: &Path) -> Result<(ModelConfig, Layout, Vec<f32>), TrainError> {
    let config = ModelConfig::from_hf_file(&dir.join("config.json"))?;
    let layout = Layout::new(&config);
    let bytes = std::fs::read(dir.join("model.safetensors")).map_err(|e| {
        TrainError::Checkpoint(format!(
            "cannot read `{}`: {e}",
            dir.join("model.safetensors").display()
        ))
    })?;
    let mut params = vec![0.0; layout.len];
    layout
        .load_safetensors(&bytes, &mut params)
        .map_err(|e| TrainError::Checkpoint(format!("`{}`: {e}", dir.display())))?;
    Ok((config, layout, params))
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
