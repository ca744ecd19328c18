//! One sequence's key/value cache: for every layer, the keys (after RoPE) and the values of
//! every position seen so far, so a new token attends to them without the prefix being
//! recomputed. It also keeps the tokens themselves, so a later prompt that starts with them
//! (the next turn of a chat) reuses what is cached (`decoder::Cache::keep_prefix_of`).

use crate::model::config::ModelConfig;

/// One layer's cached keys and values, `[len, kv_width]` each (`kv_width = hkv · hd`),
/// position-major like the training pass's `k` and `v`.
#[derive(Clone, Debug, Default)]
pub struct LayerCache {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct KvCache {
    /// The tokens at positions `0..len`.
    tokens: Vec<u32>,
    layers: Vec<LayerCache>,
    kv_width: usize,
}

impl KvCache {
    /// An empty cache for a model of `config`.
    pub fn new(config: &ModelConfig) -> KvCache {
        KvCache {
            tokens: Vec::new(),
            layers: vec![LayerCache::default(); config.num_layers],
            kv_width: config.num_kv_heads * config.head_dim,
        }
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens at positions `0..len`.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Layer `l`'s keys and values. Inside a forward pass, the layers already passed hold the
    /// new tokens too (`len + t` rows); between passes every layer holds `len` rows.
    pub fn layer(&self, l: usize) -> &LayerCache {
        &self.layers[l]
    }

    /// Append the new tokens' keys and values `[t, kv_width]` to layer `l` (the forward pass,
    /// layer by layer; `push_tokens` closes the pass).
    pub(crate) fn append(&mut self, l: usize, k: &[f32], v: &[f32]) {
        debug_assert_eq!(k.len() % self.kv_width, 0);
        let layer = &mut self.layers[l];
        layer.k.extend_from_slice(k);
        layer.v.extend_from_slice(v);
    }

    /// Record the tokens whose keys and values every layer has just appended.
    pub(crate) fn push_tokens(&mut self, tokens: &[u32]) {
        self.tokens.extend_from_slice(tokens);
        debug_assert!(
            self.layers
                .iter()
                .all(|l| l.k.len() == self.tokens.len() * self.kv_width)
        );
    }

    /// Keep only positions `0..len`.
    pub fn truncate(&mut self, len: usize) {
        let len = len.min(self.tokens.len());
        self.tokens.truncate(len);
        for layer in &mut self.layers {
            layer.k.truncate(len * self.kv_width);
            layer.v.truncate(len * self.kv_width);
        }
    }

    /// Bytes the keys and values take.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.k.len() + l.v.len()) * std::mem::size_of::<f32>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::decoder::Cache;

    #[test]
    fn a_prompt_reuses_the_shared_prefix_and_always_feeds_its_last_token() {
        let config = ModelConfig::preset("tiny-dense").unwrap();
        let width = config.num_kv_heads * config.head_dim;
        let mut cache = KvCache::new(&config);
        for l in 0..config.num_layers {
            cache.append(l, &vec![1.0; 4 * width], &vec![2.0; 4 * width]);
        }
        cache.push_tokens(&[5, 6, 7, 8]);
        assert_eq!(cache.bytes(), config.num_layers * 2 * 4 * width * 4);
        // Shares 5, 6 with the new prompt: those two stay.
        assert_eq!(cache.keep_prefix_of(&[5, 6, 9, 9]), 2);
        assert_eq!(cache.tokens(), &[5, 6]);
        assert_eq!(cache.layer(1).k.len(), 2 * width);
        // The whole prompt is cached: its last token is fed again.
        assert_eq!(cache.keep_prefix_of(&[5, 6]), 1);
        assert_eq!(cache.keep_prefix_of(&[]), 0);
        assert!(cache.is_empty());
    }
}
