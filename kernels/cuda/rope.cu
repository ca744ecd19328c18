// Rotary position embedding ("rotate half", as Qwen2 applies it) fused with the q/k/v bias and
// the split of the packed projection into head-major tensors.
//   qkv: [n, (hq + 2·hkv)·hd] token-major (one GEMM over the contiguous q/k/v weights)
//   q: [B, hq, T, hd], k, v: [B, hkv, T, hd] head-major; token t of row b is token b·T + t.
//   positions: [B·T] (i32) each token's position p within its document (RoPE restarts at 0
//   where a document starts inside a row).
// For i < hd/2 the pair (x_i, x_{i+hd/2}) turns by p·θ^(-2i/hd); the backward turns back.
#include "common.cuh"

__device__ __forceinline__ void angle(int position, int i, int hd, float theta, float* c,
                                      float* s) {
  double inv_freq = 1.0 / pow((double)theta, 2.0 * i / hd);
  double sn, cs;
  sincos(position * inv_freq, &sn, &cs);
  *c = (float)cs;
  *s = (float)sn;
}

// grid = n tokens; threads over (head, i < hd/2) of q and k, and over v's elements.
extern "C" __global__ void qkv_rope_forward(const bf16* qkv, const bf16* bias,
                                            const int* positions, bf16* q, bf16* k, bf16* v,
                                            int T, int hq, int hkv, int hd, float theta) {
  int64_t token = blockIdx.x;
  int b = (int)(token / T), t = (int)(token % T), position = positions[token];
  int half = hd / 2, width = (hq + 2 * hkv) * hd;
  const bf16* row = qkv + token * width;
  for (int idx = threadIdx.x; idx < (hq + hkv) * half; idx += blockDim.x) {
    int head = idx / half, i = idx % half;
    int col = head * hd + i;
    float a = to_f(row[col]), c = to_f(row[col + half]);
    if (bias) {
      a += to_f(bias[col]);
      c += to_f(bias[col + half]);
    }
    float cs, sn;
    angle(position, i, hd, theta, &cs, &sn);
    bf16* out;
    if (head < hq) {
      out = q + (((int64_t)b * hq + head) * T + t) * hd;
    } else {
      out = k + (((int64_t)b * hkv + (head - hq)) * T + t) * hd;
    }
    out[i] = to_bf(a * cs - c * sn);
    out[i + half] = to_bf(c * cs + a * sn);
  }
  for (int idx = threadIdx.x; idx < hkv * hd; idx += blockDim.x) {
    int head = idx / hd, j = idx % hd;
    int col = (hq + hkv) * hd + idx;
    float x = to_f(row[col]) + (bias ? to_f(bias[col]) : 0.0f);
    v[(((int64_t)b * hkv + head) * T + t) * hd + j] = to_bf(x);
  }
}

// The gradients of q, k (rotated back) and v, packed token-major like `qkv`.
extern "C" __global__ void qkv_rope_backward(const bf16* dq, const bf16* dk, const bf16* dv,
                                             const int* positions, bf16* dqkv, int T, int hq,
                                             int hkv, int hd, float theta) {
  int64_t token = blockIdx.x;
  int b = (int)(token / T), t = (int)(token % T), position = positions[token];
  int half = hd / 2, width = (hq + 2 * hkv) * hd;
  bf16* row = dqkv + token * width;
  for (int idx = threadIdx.x; idx < (hq + hkv) * half; idx += blockDim.x) {
    int head = idx / half, i = idx % half;
    const bf16* in = head < hq ? dq + (((int64_t)b * hq + head) * T + t) * hd
                               : dk + (((int64_t)b * hkv + (head - hq)) * T + t) * hd;
    float a = to_f(in[i]), c = to_f(in[i + half]);
    float cs, sn;
    angle(position, i, hd, theta, &cs, &sn);
    int col = head * hd + i;
    row[col] = to_bf(a * cs + c * sn);
    row[col + half] = to_bf(c * cs - a * sn);
  }
  for (int idx = threadIdx.x; idx < hkv * hd; idx += blockDim.x) {
    int head = idx / hd, j = idx % hd;
    row[(hq + hkv) * hd + idx] = dv[(((int64_t)b * hkv + head) * T + t) * hd + j];
  }
}
