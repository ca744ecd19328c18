// RMSNorm fused with the residual add. The residual stream is fp32; the normalised output,
// which feeds bf16 GEMMs, is bf16.
//   forward:  x_out = x_in + delta;  r = 1/sqrt(mean(x_out²) + eps);  y = x_out·r·w
//   backward: dx += r·(dy⊙w) - r³/d · x · Σ(dy⊙w⊙x)   (added into the residual gradient)
//             dw += Σ_rows dy⊙x·r                        (partials per row chunk, then summed)
#include "common.cuh"

// One block per row. `delta` may be null (plain RMSNorm of x_in); `x_out` may equal `x_in`
// only when `delta` is null.
extern "C" __global__ void add_rmsnorm_forward(const float* x_in, const float* delta,
                                               float* x_out, const bf16* w, bf16* y,
                                               float* rstd, int d, float eps) {
  __shared__ float scratch[32];
  int64_t row = blockIdx.x;
  const float* a = x_in + row * d;
  float* out = x_out + row * d;
  float sq = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    float v = a[j] + (delta ? delta[row * d + j] : 0.0f);
    out[j] = v;
    sq += v * v;
  }
  float r = rsqrtf(block_sum(sq, scratch) / d + eps);
  for (int j = threadIdx.x; j < d; j += blockDim.x)
    y[row * d + j] = to_bf(out[j] * r * to_f(w[j]));
  if (threadIdx.x == 0) rstd[row] = r;
}

// One block per row; adds the input gradient into `dx` (the fp32 residual gradient).
extern "C" __global__ void rmsnorm_backward(const bf16* dy, const float* x, const bf16* w,
                                            const float* rstd, float* dx, int d) {
  __shared__ float scratch[32];
  int64_t row = blockIdx.x;
  float r = rstd[row];
  float dot = 0.0f;
  for (int j = threadIdx.x; j < d; j += blockDim.x)
    dot += to_f(dy[row * d + j]) * to_f(w[j]) * x[row * d + j];
  dot = block_sum(dot, scratch);
  float c = r * r * r / d * dot;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    int64_t i = row * d + j;
    dx[i] += r * to_f(dy[i]) * to_f(w[j]) - c * x[i];
  }
}

// partial[c, j] = Σ_{rows in chunk c} dy⊙x·r; grid (ceil(d/256), chunks).
extern "C" __global__ void rmsnorm_weight_grad_partial(const bf16* dy, const float* x,
                                                       const float* rstd, int64_t rows, int d,
                                                       int rows_per_chunk, float* partial) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= d) return;
  int64_t start = (int64_t)blockIdx.y * rows_per_chunk;
  int64_t end = min(rows, start + rows_per_chunk);
  float sum = 0.0f;
  for (int64_t r = start; r < end; r++) sum += to_f(dy[r * d + j]) * x[r * d + j] * rstd[r];
  partial[(int64_t)blockIdx.y * d + j] = sum;
}
