// AdamW over the whole flat parameter buffer in one launch, with the global-norm clip folded
// in: the fp32 master weights and moments are updated and the bf16 compute copy rewritten.
//   g = grad · grad_scale · min(1, max_norm / norm)
//   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
//   θ −= lr · (m/c1 / (sqrt(v/c2) + ε) + λ·θ)     (λ = 0 inside the no-decay ranges)
// `no_decay` holds sorted, disjoint [start, end) pairs (norm weights and biases).
#include "common.cuh"

__device__ bool decayed(int64_t i, const int64_t* no_decay, int ranges) {
  int lo = 0, hi = ranges;
  while (lo < hi) {  // the first range whose end is past i
    int mid = (lo + hi) / 2;
    if (no_decay[2 * mid + 1] <= i) lo = mid + 1;
    else hi = mid;
  }
  return !(lo < ranges && no_decay[2 * lo] <= i);
}

extern "C" __global__ void adamw_step(float* param, float* m, float* v, const float* grad,
                                      bf16* param16, int64_t n, const int64_t* no_decay,
                                      int ranges, float lr, float beta1, float beta2, float eps,
                                      float weight_decay, float correction1, float correction2,
                                      float grad_scale, const float* norm, float max_norm) {
  float clip = (norm[0] > max_norm && norm[0] > 0.0f) ? max_norm / norm[0] : 1.0f;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    float g = grad[i] * grad_scale * clip;
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float p = param[i];
    float decay = decayed(i, no_decay, ranges) ? weight_decay * p : 0.0f;
    p -= lr * ((mi / correction1) / (sqrtf(vi / correction2) + eps) + decay);
    param[i] = p;
    param16[i] = to_bf(p);
  }
}
