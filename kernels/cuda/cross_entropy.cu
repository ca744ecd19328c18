// The LM head fused with cross-entropy over vocabulary chunks: the host computes the logits of
// one chunk of `c` vocabulary columns at a time (a GEMM into an fp32 [n, c] buffer), these
// kernels fold it into a running log-sum-exp per row, and the backward recomputes each chunk
// to turn it into dlogits. No [n, vocab] tensor is ever held.
// Each row i has a loss weight w_i (fp32 `weights: [n]`, any real number): the loss is
// Σ_i w_i·(lse_i − logit_i[target_i]) / norm, and a row of weight 0 adds exactly nothing.
#include "common.cuh"

// Fold chunk [c0, c0 + c) into the running max and sum of each row; pick up the target's
// logit when it falls in the chunk. One block per row.
extern "C" __global__ void ce_chunk_stats(const float* logits, int c, int c0, const int* targets,
                                          float* run_max, float* run_sum, float* target_logit,
                                          int first_chunk) {
  __shared__ float scratch[32];
  int64_t row = blockIdx.x;
  const float* l = logits + row * c;
  float m = -INFINITY;
  for (int j = threadIdx.x; j < c; j += blockDim.x) m = fmaxf(m, l[j]);
  m = block_max(m, scratch);
  float s = 0.0f;
  for (int j = threadIdx.x; j < c; j += blockDim.x) s += expf(l[j] - m);
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) {
    if (first_chunk) {
      run_max[row] = m;
      run_sum[row] = s;
    } else {
      float old_m = run_max[row], new_m = fmaxf(old_m, m);
      run_sum[row] = run_sum[row] * expf(old_m - new_m) + s * expf(m - new_m);
      run_max[row] = new_m;
    }
    int t = targets[row] - c0;
    if (t >= 0 && t < c) target_logit[row] = l[t];
  }
}

// lse = max + log(sum); term = w·(lse − target logit), 0 where w = 0. A thread per row.
extern "C" __global__ void ce_finish(const float* run_max, const float* run_sum,
                                     const float* target_logit, const float* weights, float* lse,
                                     float* term, int64_t n) {
  int64_t row = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (row >= n) return;
  float v = run_max[row] + logf(run_sum[row]);
  lse[row] = v;
  float w = weights[row];
  term[row] = w == 0.0f ? 0.0f : w * (v - target_logit[row]);
}

// dlogits = (softmax − onehot(target)) · w / norm for chunk [c0, c0 + c), exactly 0 where
// w = 0. One block per row.
extern "C" __global__ void ce_chunk_backward(const float* logits, int c, int c0,
                                             const int* targets, const float* lse,
                                             const float* weights, float norm, bf16* dlogits) {
  int64_t row = blockIdx.x;
  float w = weights[row];
  if (w == 0.0f) {
    for (int j = threadIdx.x; j < c; j += blockDim.x) dlogits[row * c + j] = to_bf(0.0f);
    return;
  }
  float z = lse[row], scale = w / norm;
  int t = targets[row] - c0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    float p = expf(logits[row * c + j] - z);
    dlogits[row * c + j] = to_bf((p - (j == t ? 1.0f : 0.0f)) * scale);
  }
}
