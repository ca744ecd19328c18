// Elementwise kernels: precision casts and the fused SwiGLU gating (forward and backward).
// SwiGLU reads the packed projection `gu: [rows, 2w]` (gate in columns [0, w), up in [w, 2w)),
// which one GEMM over the contiguous gate/up weights produces.
#include "common.cuh"

extern "C" __global__ void cast_f32_bf16(const float* in, bf16* out, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    out[i] = to_bf(in[i]);
}

extern "C" __global__ void cast_bf16_f32(const bf16* in, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    out[i] = to_f(in[i]);
}

// h[r, j] = silu(g[r, j]) * u[r, j].
extern "C" __global__ void swiglu_forward(const bf16* gu, bf16* h, int64_t rows, int w) {
  int64_t n = rows * w;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i / w;
    int j = (int)(i - r * w);
    float g = to_f(gu[r * 2 * w + j]), u = to_f(gu[r * 2 * w + w + j]);
    h[i] = to_bf(g * sigmoidf(g) * u);
  }
}

// dg = dh·u·σ(g)·(1 + g·(1 - σ(g))), du = dh·silu(g), written packed like `gu`.
extern "C" __global__ void swiglu_backward(const bf16* dh, const bf16* gu, bf16* dgu,
                                           int64_t rows, int w) {
  int64_t n = rows * w;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i / w;
    int j = (int)(i - r * w);
    float g = to_f(gu[r * 2 * w + j]), u = to_f(gu[r * 2 * w + w + j]);
    float s = sigmoidf(g), d = to_f(dh[i]);
    dgu[r * 2 * w + j] = to_bf(d * u * s * (1.0f + g * (1.0f - s)));
    dgu[r * 2 * w + w + j] = to_bf(d * g * s);
  }
}
