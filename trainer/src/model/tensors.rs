//! Typed views of the flat parameter buffer (llm.c's `ParameterTensors`): every tensor of the
//! model as a named field holding its place in the buffer. `Layout::new` builds them in the
//! same pass as the named views, so both always agree; the pass, the FFN and the GPU model
//! reach their weights through these (`&params[layer.attn.q.range()]`). Shapes are written
//! with `d` the model width, `E` the number of experts and `w` an MLP's hidden width.

use std::ops::Range;

/// One tensor's place in the flat buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub offset: usize,
    pub len: usize,
}

impl Slot {
    pub fn range(self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// Every tensor of the model. `Default` is a layout with no model tensors (a hand-made
/// layout of loose views).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelTensors {
    /// `[vocab, d]`.
    pub embed: Slot,
    pub layers: Vec<LayerTensors>,
    /// The final norm `[d]`.
    pub norm: Slot,
    /// The output projection `[vocab, d]`: `lm_head.weight`, or `embed` when tied.
    pub head: Slot,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerTensors {
    /// `[d]`.
    pub input_layernorm: Slot,
    pub attn: AttentionTensors,
    /// `[d]`.
    pub post_attention_layernorm: Slot,
    pub ffn: FfnTensors,
}

/// The attention's projections, `q_width = heads · head_dim`, `kv_width = kv_heads ·
/// head_dim`. Laid out in this order, so q, k and v (and their biases) are adjacent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionTensors {
    /// `[q_width, d]`.
    pub q: Slot,
    /// `[kv_width, d]`.
    pub k: Slot,
    /// `[kv_width, d]`.
    pub v: Slot,
    /// `[q_width]`, present iff `config.qkv_bias` (as are `k_bias` and `v_bias`).
    pub q_bias: Option<Slot>,
    /// `[kv_width]`.
    pub k_bias: Option<Slot>,
    /// `[kv_width]`.
    pub v_bias: Option<Slot>,
    /// `[d, q_width]`.
    pub o: Slot,
}

/// A layer's feed-forward block, per `Ffn` kind. The experts of a block are laid out back to
/// back, expert `e`'s weights then expert `e + 1`'s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FfnTensors {
    Dense(MlpTensors),
    SoftmaxMoe {
        /// `[E, d]`.
        gate: Slot,
        /// `[E]`.
        gate_bias: Slot,
        experts: Vec<MlpTensors>,
    },
    TopkMoe {
        /// The router `[E, d]`.
        gate: Slot,
        experts: Vec<MlpTensors>,
        shared: Option<SharedExpertTensors>,
    },
}

/// The top-k MoE's shared expert and its sigmoid gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedExpertTensors {
    pub mlp: MlpTensors,
    /// `[1, d]`.
    pub gate: Slot,
}

/// One MLP (the dense block or one expert), its weights in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MlpTensors {
    SwiGlu {
        /// `[w, d]`.
        gate: Slot,
        /// `[w, d]`.
        up: Slot,
        /// `[d, w]`.
        down: Slot,
    },
    DualSwiGlu {
        /// `[w, d]`.
        g1: Slot,
        /// `[w, d]`.
        u1: Slot,
        /// `[d, w]`.
        g2: Slot,
        /// `[d, w]`.
        u2: Slot,
    },
}

impl MlpTensors {
    /// The weights in layout order.
    pub fn slots(&self) -> Vec<Slot> {
        match *self {
            MlpTensors::SwiGlu { gate, up, down } => vec![gate, up, down],
            MlpTensors::DualSwiGlu { g1, u1, g2, u2 } => vec![g1, u1, g2, u2],
        }
    }
}

/// Two disjoint slots of one buffer as two mutable slices.
pub fn split_two(buffer: &mut [f32], a: Slot, b: Slot) -> (&mut [f32], &mut [f32]) {
    let (a, b) = (a.range(), b.range());
    assert!(
        a.end <= b.start || b.end <= a.start,
        "overlapping parameter slots"
    );
    if a.start < b.start {
        let (low, high) = buffer.split_at_mut(b.start);
        (&mut low[a], &mut high[..b.end - b.start])
    } else {
        let (low, high) = buffer.split_at_mut(a.start);
        let (b_len, a_len) = (b.end - b.start, a.end - a.start);
        (&mut high[..a_len], &mut low[b.start..b.start + b_len])
    }
}
