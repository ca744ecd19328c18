//! What generation, chat, the server and scoring run on: a [`Decoder`] (a model that feeds
//! several sequences' new tokens through their key/value caches, as [`forward`] does on the
//! CPU) and its per-sequence [`Cache`]. Two decoders exist: the CPU model with host caches
//! (`checkpoint::Model`, [`KvCache`]) and, with the `cuda` feature, the GPU decoder with
//! device caches (`gpu::decode`). [`Loaded`] is either, chosen by `--device` at run time.
//!
//! [`forward`]: crate::infer::forward::forward

use crate::checkpoint::Model;
use crate::device::Device;
use crate::error::TrainError;
use crate::infer::cache::KvCache;
use crate::infer::forward::{Logits, forward};
use crate::model::config::ModelConfig;

/// One sequence's key/value cache: the tokens of positions `0..len` and, somewhere, their
/// keys and values for every layer.
pub trait Cache {
    /// The tokens at positions `0..len`.
    fn tokens(&self) -> &[u32];

    /// Keep only positions `0..len` (no more than there are).
    fn truncate(&mut self, len: usize);

    /// Positions cached.
    fn len(&self) -> usize {
        self.tokens().len()
    }

    fn is_empty(&self) -> bool {
        self.tokens().is_empty()
    }

    /// Keep the longest cached prefix that `ids` starts with, but never all of `ids` (its
    /// last token must be fed again for its logits); returns the positions kept, so
    /// `ids[kept..]` is what is left to feed.
    fn keep_prefix_of(&mut self, ids: &[u32]) -> usize {
        let shared = self
            .tokens()
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count();
        let kept = shared.min(ids.len().saturating_sub(1));
        self.truncate(kept);
        kept
    }
}

/// A model that runs the key/value-cached forward pass.
pub trait Decoder {
    type Cache: Cache;

    fn config(&self) -> &ModelConfig;

    /// An empty cache for one sequence.
    fn new_cache(&self) -> Self::Cache;

    /// Feed `tokens[s]` to sequence `s` (appending them to `caches[s]`) and return its logits:
    /// `[vocab]` for its last new token (`Logits::Last`) or `[t_s, vocab]` for all of them.
    /// Bad input (no new token, an id outside the vocabulary, more positions than the
    /// context) is refused before any cache changes.
    fn forward(
        &self,
        caches: &mut [&mut Self::Cache],
        tokens: &[&[u32]],
        logits: Logits,
    ) -> Result<Vec<Vec<f32>>, TrainError>;
}

impl Cache for KvCache {
    fn tokens(&self) -> &[u32] {
        KvCache::tokens(self)
    }

    fn truncate(&mut self, len: usize) {
        KvCache::truncate(self, len)
    }
}

/// The CPU model with host caches: [`forward`].
impl Decoder for Model {
    type Cache = KvCache;

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn new_cache(&self) -> KvCache {
        KvCache::new(&self.config)
    }

    fn forward(
        &self,
        caches: &mut [&mut KvCache],
        tokens: &[&[u32]],
        logits: Logits,
    ) -> Result<Vec<Vec<f32>>, TrainError> {
        forward(self, caches, tokens, logits)
    }
}

/// A model loaded for generation on the device `--device` names.
pub enum Loaded {
    Cpu(Box<Model>),
    #[cfg(feature = "cuda")]
    Cuda(Box<crate::gpu::decode::GpuDecoder>),
}

/// A cache of a [`Loaded`] model: on the host or on the GPU, as the model is.
pub enum LoadedCache {
    Host(KvCache),
    #[cfg(feature = "cuda")]
    Device(crate::gpu::decode::DeviceCache),
}

impl Loaded {
    /// `model` on `device`: as it is on the CPU, its weights uploaded to GPU 0 on `cuda` (the
    /// attention method named after `cuda:` does not matter here: decoding has its own
    /// attention kernel).
    pub fn new(model: Model, device: Device) -> Result<Loaded, TrainError> {
        match device {
            Device::Cpu => Ok(Loaded::Cpu(Box::new(model))),
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => {
                let gpu = steel_kernels::cuda::Gpu::open(0)?;
                let decoder =
                    crate::gpu::decode::GpuDecoder::new(gpu, &model.config, &model.params)?;
                Ok(Loaded::Cuda(Box::new(decoder)))
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(TrainError::Device(crate::device::NO_CUDA_FEATURE.into())),
        }
    }
}

#[cfg(feature = "cuda")]
fn mismatch() -> TrainError {
    TrainError::Data("a cache of the other device was given to the model".into())
}

impl Cache for LoadedCache {
    fn tokens(&self) -> &[u32] {
        match self {
            LoadedCache::Host(cache) => Cache::tokens(cache),
            #[cfg(feature = "cuda")]
            LoadedCache::Device(cache) => cache.tokens(),
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            LoadedCache::Host(cache) => Cache::truncate(cache, len),
            #[cfg(feature = "cuda")]
            LoadedCache::Device(cache) => cache.truncate(len),
        }
    }
}

impl Decoder for Loaded {
    type Cache = LoadedCache;

    fn config(&self) -> &ModelConfig {
        match self {
            Loaded::Cpu(model) => &model.config,
            #[cfg(feature = "cuda")]
            Loaded::Cuda(decoder) => decoder.config(),
        }
    }

    fn new_cache(&self) -> LoadedCache {
        match self {
            Loaded::Cpu(model) => LoadedCache::Host(model.new_cache()),
            #[cfg(feature = "cuda")]
            Loaded::Cuda(decoder) => LoadedCache::Device(decoder.new_cache()),
        }
    }

    fn forward(
        &self,
        caches: &mut [&mut LoadedCache],
        tokens: &[&[u32]],
        logits: Logits,
    ) -> Result<Vec<Vec<f32>>, TrainError> {
        match self {
            Loaded::Cpu(model) => {
                let mut host = caches
                    .iter_mut()
                    .map(|cache| match &mut **cache {
                        LoadedCache::Host(cache) => Ok(cache),
                        #[cfg(feature = "cuda")]
                        LoadedCache::Device(_) => Err(mismatch()),
                    })
                    .collect::<Result<Vec<&mut KvCache>, TrainError>>()?;
                model.forward(&mut host, tokens, logits)
            }
            #[cfg(feature = "cuda")]
            Loaded::Cuda(decoder) => {
                let mut device = caches
                    .iter_mut()
                    .map(|cache| match &mut **cache {
                        LoadedCache::Device(cache) => Ok(cache),
                        LoadedCache::Host(_) => Err(mismatch()),
                    })
                    .collect::<Result<Vec<_>, TrainError>>()?;
                decoder.forward(&mut device, tokens, logits)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Attention;
    use crate::model::params::Layout;
    use crate::train::init_params;

    fn model() -> Model {
        let config = ModelConfig::preset("tiny-topk-moe").unwrap();
        let layout = Layout::new(&config);
        Model {
            params: init_params(&layout, 4),
            config,
            layout,
            tokenizer_xxh3: None,
        }
    }

    /// The CPU model through `Loaded` is the CPU pass, and its caches keep the same tokens.
    #[test]
    fn a_loaded_cpu_model_runs_the_cpu_pass() {
        let model = model();
        let mut cpu = model.new_cache();
        let want = forward(&model, &mut [&mut cpu], &[&[5, 6, 7]], Logits::All).unwrap();
        let loaded = Loaded::new(model, Device::Cpu).unwrap();
        let mut cache = loaded.new_cache();
        let got = loaded
            .forward(&mut [&mut cache], &[&[5, 6, 7]], Logits::All)
            .unwrap();
        assert_eq!(got, want);
        assert_eq!(cache.tokens(), &[5, 6, 7]);
        assert_eq!(cache.keep_prefix_of(&[5, 6, 9]), 2);
        assert_eq!(cache.tokens(), &[5, 6]);
        cache.truncate(0);
        assert!(cache.is_empty());
    }

    /// `--device cuda` where it cannot run is refused with what to do: rebuild with the
    /// feature, or (a build with it) there is no driver.
    #[test]
    fn cuda_where_it_cannot_run_is_a_clear_error() {
        #[cfg(feature = "cuda")]
        if steel_kernels::cuda::Gpu::open(0).is_ok() {
            return; // a GPU machine: tests/generate_cuda.rs covers it
        }
        let error = Loaded::new(model(), Device::Cuda(Attention::Flash))
            .err()
            .expect("no GPU here")
            .to_string();
        let expected = match cfg!(feature = "cuda") {
            true => "no CUDA driver found",
            false => "built without the `cuda` feature",
        };
        assert!(error.contains(expected), "{error}");
    }
}
