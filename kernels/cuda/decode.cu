// Generation's attention over a sequence's key/value cache, and the copy of new keys and
// values into it.
//   cache k, v: [capacity, hkv, hd] bf16, position-major (the host cache's layout); positions
//   0..start + n hold keys and values once the new tokens' rows are appended.
//   q: n new queries at positions start..start + n; query i, head h starts at element
//   i·q_token_stride + h·q_head_stride (head-major [hq, n, hd] from the RoPE kernel, or
//   token-major [n, hq, hd]).
//   out: token-major [n, hq·hd] bf16 (what the output projection reads).
// Query head h reads key/value head h / (hq / hkv). The query at position p reads keys
// 0..=p: s_j = (q·k_j)·scale, o = Σ_j softmax(s)_j v_j, the softmax online in fp32.
// CPU twin: the trainer's `infer::attention::forward` (= rows start..start + n of
// `cpu::attention::forward`).
#include "common.cuh"

// grid (n, hq), block of `blockDim.x` threads (a multiple of 32, at least hd); dynamic shared
// memory (hd + blockDim.x) floats. Keys go in tiles of blockDim.x: thread t scores key
// tile + t, the block takes the tile's max and sum, and thread c < hd adds the tile's
// weighted values of dimension c.
extern "C" __global__ void decode_attention(const bf16* q, int64_t q_token_stride,
                                            int64_t q_head_stride, const bf16* k, const bf16* v,
                                            bf16* out, int start, int hq, int hkv, int hd,
                                            float scale) {
  extern __shared__ float shared[];
  __shared__ float scratch[32];
  float* qs = shared;       // [hd] the query
  float* ps = shared + hd;  // [blockDim.x] the tile's unnormalised probabilities
  int i = blockIdx.x, h = blockIdx.y, g = h / (hq / hkv);
  int keys = start + i + 1;
  int64_t row = (int64_t)hkv * hd;  // elements per cached position
  const bf16* qi = q + i * q_token_stride + h * q_head_stride;
  for (int c = threadIdx.x; c < hd; c += blockDim.x) qs[c] = to_f(qi[c]);
  __syncthreads();
  float m = -INFINITY, l = 0.0f, acc = 0.0f;  // acc: output dimension c = threadIdx.x
  for (int tile = 0; tile < keys; tile += blockDim.x) {
    int j = tile + threadIdx.x;
    float s = -INFINITY;
    if (j < keys) {
      const bf16* kj = k + j * row + (int64_t)g * hd;
      float dot = 0.0f;
      for (int c = 0; c < hd; c++) dot += qs[c] * to_f(kj[c]);
      s = dot * scale;
    }
    // Every tile has a key (tile < keys), so its max is finite; the first correction is 0.
    float m_new = fmaxf(m, block_max(s, scratch));
    float p = j < keys ? expf(s - m_new) : 0.0f;
    float correction = expf(m - m_new);
    l = l * correction + block_sum(p, scratch);
    ps[threadIdx.x] = p;
    __syncthreads();
    if (threadIdx.x < hd) {
      int count = min((int)blockDim.x, keys - tile);
      const bf16* vt = v + tile * row + (int64_t)g * hd + threadIdx.x;
      float a = acc * correction;
      for (int jj = 0; jj < count; jj++) a += ps[jj] * to_f(vt[jj * row]);
      acc = a;
    }
    m = m_new;
    __syncthreads();  // every thread has read `ps` before the next tile writes it
  }
  if (threadIdx.x < hd) out[((int64_t)i * hq + h) * hd + threadIdx.x] = to_bf(acc / l);
}

// cache[start + i, g, c] = src[i·token_stride + g·head_stride + c] for i < n (the grid),
// g < hkv, c < hd: a sequence's new keys (or values) from the RoPE kernel's head-major
// [hkv, n_all, hd] into its cache, or a cache's rows into a larger one.
extern "C" __global__ void kv_append(const bf16* src, int64_t token_stride, int64_t head_stride,
                                     bf16* cache, int start, int hkv, int hd) {
  int64_t i = blockIdx.x;
  bf16* to = cache + (start + i) * hkv * hd;
  for (int idx = threadIdx.x; idx < hkv * hd; idx += blockDim.x) {
    int g = idx / hd, c = idx % hd;
    to[idx] = src[i * token_stride + g * head_stride + c];
  }
}
