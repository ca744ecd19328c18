// Mixture-of-experts glue: the gate's softmax, top-k routing, and mixing expert outputs into
// the fp32 block output (and their backwards). Every expert's output y_e: [n, d] is mixed with
// a per-token weight mix[n, E] (softmax-MoE: the gate probabilities; top-k: the routed
// weights, zero off the chosen experts). E is small (≤ 64): a thread per token for routing.
#include "common.cuh"

// probs = softmax(logits + bias) per row; `bias` may be null. A thread per row.
extern "C" __global__ void gate_softmax_forward(const float* logits, const bf16* bias,
                                                float* probs, int64_t n, int E) {
  int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (t >= n) return;
  const float* l = logits + t * E;
  float m = -INFINITY;
  for (int e = 0; e < E; e++) m = fmaxf(m, l[e] + (bias ? to_f(bias[e]) : 0.0f));
  float sum = 0.0f;
  for (int e = 0; e < E; e++) sum += expf(l[e] + (bias ? to_f(bias[e]) : 0.0f) - m);
  for (int e = 0; e < E; e++)
    probs[t * E + e] = expf(l[e] + (bias ? to_f(bias[e]) : 0.0f) - m) / sum;
}

// dlogits = p ⊙ (dp − Σ p·dp), bf16 for the gate's weight-gradient GEMM. A thread per row.
extern "C" __global__ void gate_softmax_backward(const float* dprobs, const float* probs,
                                                 bf16* dlogits, int64_t n, int E) {
  int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (t >= n) return;
  float dot = 0.0f;
  for (int e = 0; e < E; e++) dot += probs[t * E + e] * dprobs[t * E + e];
  for (int e = 0; e < E; e++)
    dlogits[t * E + e] = to_bf(probs[t * E + e] * (dprobs[t * E + e] - dot));
}

// Each token's k most probable experts (ties to the lower index), their weights (optionally
// renormalised to sum to 1) and the dense mixing matrix. A thread per token.
extern "C" __global__ void topk_route(const float* probs, int64_t n, int E, int k,
                                      int renormalize, int* chosen, float* weights,
                                      float* mix) {
  int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (t >= n) return;
  const float* p = probs + t * E;
  float sum = 0.0f;
  for (int s = 0; s < k; s++) {
    int best = -1;
    for (int e = 0; e < E; e++) {
      bool taken = false;
      for (int r = 0; r < s; r++) taken |= chosen[t * k + r] == e;
      if (!taken && (best < 0 || p[e] > p[best])) best = e;
    }
    chosen[t * k + s] = best;
    weights[t * k + s] = p[best];
    sum += p[best];
  }
  for (int e = 0; e < E; e++) mix[t * E + e] = 0.0f;
  for (int s = 0; s < k; s++) {
    if (renormalize) weights[t * k + s] /= sum;
    mix[t * E + chosen[t * k + s]] = weights[t * k + s];
  }
}

// dprobs from the mixing weights' gradient (dw_s = dmix[t, chosen_s]); with renormalisation
// w_s = p_s / S: dp_s = (dw_s − Σ dw·w) / S. Adds `extra` (the load-balancing loss's
// gradient) when given. A thread per token.
extern "C" __global__ void topk_route_backward(const float* dmix, const float* probs,
                                               const int* chosen, int64_t n, int E, int k,
                                               int renormalize, const float* extra,
                                               float* dprobs) {
  int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (t >= n) return;
  const float* p = probs + t * E;
  for (int e = 0; e < E; e++) dprobs[t * E + e] = extra ? extra[t * E + e] : 0.0f;
  float sum = 0.0f, weighted = 0.0f;
  for (int s = 0; s < k; s++) sum += p[chosen[t * k + s]];
  for (int s = 0; s < k; s++) {
    int e = chosen[t * k + s];
    weighted += p[e] / sum * dmix[t * E + e];
  }
  for (int s = 0; s < k; s++) {
    int e = chosen[t * k + s];
    float dw = dmix[t * E + e];
    dprobs[t * E + e] += renormalize ? (dw - weighted) / sum : dw;
  }
}

// out[t, :] (=|+=) mix[t, e] · y[t, :]. Grid-stride over n·d.
extern "C" __global__ void mix_forward(float* out, const bf16* y, const float* mix, int e, int E,
                                       int64_t n, int d, int overwrite) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n * d;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t t = i / d;
    float v = mix[t * E + e] * to_f(y[i]);
    out[i] = overwrite ? v : out[i] + v;
  }
}

// dmix[t, e] = dout[t]·y[t]; dy[t] = mix[t, e]·dout[t]. One block per token.
extern "C" __global__ void mix_backward(const float* dout, const bf16* y, const float* mix, int e,
                                        int E, int d, float* dmix, bf16* dy) {
  __shared__ float scratch[32];
  int64_t t = blockIdx.x;
  float w = mix[t * E + e], dot = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    float g = dout[t * d + j];
    dot += g * to_f(y[t * d + j]);
    dy[t * d + j] = to_bf(w * g);
  }
  dot = block_sum(dot, scratch);
  if (threadIdx.x == 0) dmix[t * E + e] = dot;
}

// The shared expert: out[t] += σ(g[t]) · y[t]. Grid-stride over n·d.
extern "C" __global__ void sigmoid_gate_forward(float* out, const bf16* y, const float* gate,
                                                int64_t n, int d) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n * d;
       i += (int64_t)gridDim.x * blockDim.x)
    out[i] += sigmoidf(gate[i / d]) * to_f(y[i]);
}

// dgate[t] = (dout[t]·y[t]) · σ'(g[t]) (bf16, for the gate's GEMMs); dy[t] = σ(g[t])·dout[t].
// One block per token.
extern "C" __global__ void sigmoid_gate_backward(const float* dout, const bf16* y,
                                                 const float* gate, int d, bf16* dgate,
                                                 bf16* dy) {
  __shared__ float scratch[32];
  int64_t t = blockIdx.x;
  float s = sigmoidf(gate[t]), dot = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    float g = dout[t * d + j];
    dot += g * to_f(y[t * d + j]);
    dy[t * d + j] = to_bf(s * g);
  }
  dot = block_sum(dot, scratch);
  if (threadIdx.x == 0) dgate[t] = to_bf(dot * s * (1.0f - s));
}
