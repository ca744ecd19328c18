// Causal attention kernels over rows that may pack several documents.
//
// `doc_start: [B, T]` (i32): the row position where each token's document starts. Query i
// attends to keys doc_start[i] ..= i only: neither the future nor another document. Every
// kernel relies on what a batch guarantees: doc_start[i] <= i, and doc_start never decreases
// along a row (documents are contiguous), so the first query of a block has the block's
// smallest start. All zeros: plain causal attention.
//
// 1. The cuBLAS path: S = Q·Kᵀ/√hd comes from a strided-batched GEMM ([rows = B·hq·T, T],
//    fp32); `causal_softmax_forward` masks the future and the other documents and writes P
//    (bf16, 0 outside); the backward turns dP = dO·Vᵀ into dS = P ⊙ (dP − Σ_j P·dP), which
//    is 0 wherever P is.
// 2. Flash attention: tiled over keys with an online softmax, never holding a T×T matrix.
//    q, k, v are head-major ([B, H, T, hd]); the output is token-major ([B·T, hq·hd]) for the
//    output projection; `lse[B, hq, T]` (log-sum-exp of each row) is kept for the backward,
//    which recomputes the probabilities: one kernel for dQ (a thread per query row) and one
//    for dK, dV (a thread per key row, summing over the query heads that share it), so no
//    two threads ever add into the same value.
// Query head h reads key/value head h / (hq / hkv).
#include "common.cuh"

// One block per row of S; row r = (b·hq + h)·T + i is query position i of row b, over keys
// lo = doc_start[b, i] ..= i.
extern "C" __global__ void causal_softmax_forward(const float* s, const int* doc_start, bf16* p,
                                                  int T, int hq) {
  __shared__ float scratch[32];
  int64_t r = blockIdx.x;
  int i = (int)(r % T);
  int64_t b = r / ((int64_t)hq * T);
  int lo = doc_start[b * T + i];
  const float* row = s + r * T;
  float m = -INFINITY;
  for (int j = lo + threadIdx.x; j <= i; j += blockDim.x) m = fmaxf(m, row[j]);
  m = block_max(m, scratch);
  float sum = 0.0f;
  for (int j = lo + threadIdx.x; j <= i; j += blockDim.x) sum += expf(row[j] - m);
  sum = block_sum(sum, scratch);
  for (int j = threadIdx.x; j < T; j += blockDim.x)
    p[r * T + j] = to_bf(lo <= j && j <= i ? expf(row[j] - m) / sum : 0.0f);
}

// ds = p ⊙ (dp − Σ_j p·dp), one block per row (masked entries have p = 0, so ds = 0 there
// with no mask of its own).
extern "C" __global__ void causal_softmax_backward(const float* dp, const bf16* p, bf16* ds,
                                                   int T) {
  __shared__ float scratch[32];
  int64_t r = blockIdx.x;
  float dot = 0.0f;
  for (int j = threadIdx.x; j < T; j += blockDim.x) dot += to_f(p[r * T + j]) * dp[r * T + j];
  dot = block_sum(dot, scratch);
  for (int j = threadIdx.x; j < T; j += blockDim.x) {
    float pj = to_f(p[r * T + j]);
    ds[r * T + j] = to_bf(pj * (dp[r * T + j] - dot));
  }
}

constexpr int ROWS = 64;  // query (or key) rows per block, one per thread
constexpr int TILE = 32;  // key (or query) rows staged in shared memory at a time

// Keys and values [start, start + TILE) of one head into shared memory (zero past T).
template <int HD>
__device__ __forceinline__ void load_kv_tile(float (*ks)[HD], float (*vs)[HD], const bf16* kbase,
                                             const bf16* vbase, int start, int T) {
  for (int idx = threadIdx.x; idx < TILE * HD; idx += blockDim.x) {
    int jj = idx / HD, c = idx % HD, j = start + jj;
    ks[jj][c] = j < T ? to_f(kbase[(int64_t)j * HD + c]) : 0.0f;
    vs[jj][c] = j < T ? to_f(vbase[(int64_t)j * HD + c]) : 0.0f;
  }
}

// grid (ceil(T/ROWS), B·hq), block ROWS. Query i reads keys lo = doc_start[i] ..= i; the
// block's key tiles run from its first query's start (the smallest) to its last query.
template <int HD>
__device__ void flash_forward(const bf16* q, const bf16* k, const bf16* v, const int* doc_start,
                              bf16* out, float* lse, int T, int hq, int hkv, float scale) {
  __shared__ float ks[TILE][HD];
  __shared__ float vs[TILE][HD];
  int bh = blockIdx.y, b = bh / hq, h = bh % hq;
  int g = h / (hq / hkv);
  int i = blockIdx.x * ROWS + threadIdx.x;
  bool live = i < T;
  const int* starts = doc_start + (int64_t)b * T;
  int lo = live ? starts[i] : 0;
  int first_key = starts[blockIdx.x * ROWS];
  const bf16* qrow = q + ((int64_t)bh * T + (live ? i : 0)) * HD;
  const bf16* kbase = k + ((int64_t)b * hkv + g) * T * HD;
  const bf16* vbase = v + ((int64_t)b * hkv + g) * T * HD;
  float qr[HD], acc[HD];
  for (int c = 0; c < HD; c++) {
    qr[c] = to_f(qrow[c]) * scale;
    acc[c] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  int last = min(T - 1, (int)(blockIdx.x * ROWS + ROWS - 1));
  for (int start = first_key - first_key % TILE; start <= last; start += TILE) {
    __syncthreads();
    load_kv_tile<HD>(ks, vs, kbase, vbase, start, T);
    __syncthreads();
    if (!live) continue;
    for (int jj = max(0, lo - start); jj < TILE; jj++) {
      int j = start + jj;
      if (j > i) break;
      float s = 0.0f;
      for (int c = 0; c < HD; c++) s += qr[c] * ks[jj][c];
      if (s > m) {
        float correction = expf(m - s);
        l *= correction;
        for (int c = 0; c < HD; c++) acc[c] *= correction;
        m = s;
      }
      float p = expf(s - m);
      l += p;
      for (int c = 0; c < HD; c++) acc[c] += p * vs[jj][c];
    }
  }
  if (!live) return;
  bf16* orow = out + ((int64_t)b * T + i) * hq * HD + h * HD;
  for (int c = 0; c < HD; c++) orow[c] = to_bf(acc[c] / l);
  lse[(int64_t)bh * T + i] = m + logf(l);
}

// delta[b, h, i] = Σ_c dO·O over the token-major output; a thread per row, grid over B·hq·T.
extern "C" __global__ void flash_backward_delta(const bf16* dout, const bf16* out, float* delta,
                                                int64_t rows, int T, int hq, int hd) {
  int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= rows) return;
  int64_t bh = r / T;
  int i = (int)(r % T), b = (int)(bh / hq), h = (int)(bh % hq);
  int64_t at = ((int64_t)b * T + i) * hq * hd + (int64_t)h * hd;
  float sum = 0.0f;
  for (int c = 0; c < hd; c++) sum += to_f(dout[at + c]) * to_f(out[at + c]);
  delta[r] = sum;
}

// dQ, a thread per query row over the forward's keys (doc_start[i] ..= i); grid
// (ceil(T/ROWS), B·hq). dq is head-major.
template <int HD>
__device__ void flash_backward_dq(const bf16* q, const bf16* k, const bf16* v,
                                  const int* doc_start, const bf16* dout, const float* lse,
                                  const float* delta, bf16* dq, int T, int hq, int hkv,
                                  float scale) {
  __shared__ float ks[TILE][HD];
  __shared__ float vs[TILE][HD];
  int bh = blockIdx.y, b = bh / hq, h = bh % hq;
  int g = h / (hq / hkv);
  int i = blockIdx.x * ROWS + threadIdx.x;
  bool live = i < T;
  int ii = live ? i : 0;
  const int* starts = doc_start + (int64_t)b * T;
  int lo = starts[ii];
  int first_key = starts[blockIdx.x * ROWS];
  const bf16* qrow = q + ((int64_t)bh * T + ii) * HD;
  const bf16* dorow = dout + ((int64_t)b * T + ii) * hq * HD + h * HD;
  const bf16* kbase = k + ((int64_t)b * hkv + g) * T * HD;
  const bf16* vbase = v + ((int64_t)b * hkv + g) * T * HD;
  float qr[HD], dor[HD], acc[HD];
  for (int c = 0; c < HD; c++) {
    qr[c] = to_f(qrow[c]) * scale;
    dor[c] = to_f(dorow[c]);
    acc[c] = 0.0f;
  }
  float row_lse = lse[(int64_t)bh * T + ii], row_delta = delta[(int64_t)bh * T + ii];
  int last = min(T - 1, (int)(blockIdx.x * ROWS + ROWS - 1));
  for (int start = first_key - first_key % TILE; start <= last; start += TILE) {
    __syncthreads();
    load_kv_tile<HD>(ks, vs, kbase, vbase, start, T);
    __syncthreads();
    if (!live) continue;
    for (int jj = max(0, lo - start); jj < TILE; jj++) {
      int j = start + jj;
      if (j > i) break;
      float s = 0.0f, dp = 0.0f;
      for (int c = 0; c < HD; c++) {
        s += qr[c] * ks[jj][c];
        dp += dor[c] * vs[jj][c];
      }
      float ds = expf(s - row_lse) * (dp - row_delta);
      for (int c = 0; c < HD; c++) acc[c] += ds * ks[jj][c];
    }
  }
  if (!live) return;
  bf16* out = dq + ((int64_t)bh * T + i) * HD;
  for (int c = 0; c < HD; c++) out[c] = to_bf(acc[c] * scale);
}

// dK, dV, a thread per key row of kv head g, summed over its query heads; grid
// (ceil(T/ROWS), B·hkv). dk, dv are head-major. Query i reaches key j when
// doc_start[i] <= j <= i: the query tiles run from the block's first key until a tile whose
// first query starts after the block's last key (starts never decrease, so no later query
// reaches the block either).
template <int HD>
__device__ void flash_backward_dkv(const bf16* q, const bf16* k, const bf16* v,
                                   const int* doc_start, const bf16* dout, const float* lse,
                                   const float* delta, bf16* dk, bf16* dv, int T, int hq,
                                   int hkv, float scale) {
  __shared__ float qs[TILE][HD];
  __shared__ float dos[TILE][HD];
  __shared__ float lses[TILE], deltas[TILE];
  __shared__ int query_starts[TILE];
  int bg = blockIdx.y, b = bg / hkv, g = bg % hkv;
  int rep = hq / hkv;
  int j = blockIdx.x * ROWS + threadIdx.x;
  bool live = j < T;
  int jj0 = live ? j : 0;
  const int* starts = doc_start + (int64_t)b * T;
  const bf16* krow = k + ((int64_t)bg * T + jj0) * HD;
  const bf16* vrow = v + ((int64_t)bg * T + jj0) * HD;
  float kr[HD], vr[HD], dkr[HD], dvr[HD];
  for (int c = 0; c < HD; c++) {
    kr[c] = to_f(krow[c]) * scale;  // s = q·k·scale; dk gets its scale at the end
    vr[c] = to_f(vrow[c]);
    dkr[c] = 0.0f;
    dvr[c] = 0.0f;
  }
  int first = blockIdx.x * ROWS;
  int last = min(T - 1, first + ROWS - 1);
  for (int r = 0; r < rep; r++) {
    int h = g * rep + r;
    int64_t bh = (int64_t)b * hq + h;
    for (int start = first - first % TILE; start < T; start += TILE) {
      if (starts[start] > last) break;  // the same for every thread of the block
      __syncthreads();
      for (int idx = threadIdx.x; idx < TILE * HD; idx += blockDim.x) {
        int ii = idx / HD, c = idx % HD, i = start + ii;
        qs[ii][c] = i < T ? to_f(q[(bh * T + i) * HD + c]) : 0.0f;
        dos[ii][c] = i < T ? to_f(dout[((int64_t)b * T + i) * hq * HD + h * HD + c]) : 0.0f;
      }
      for (int ii = threadIdx.x; ii < TILE; ii += blockDim.x) {
        int i = start + ii;
        lses[ii] = i < T ? lse[bh * T + i] : 0.0f;
        deltas[ii] = i < T ? delta[bh * T + i] : 0.0f;
        query_starts[ii] = i < T ? starts[i] : T;
      }
      __syncthreads();
      if (!live) continue;
      for (int ii = 0; ii < TILE; ii++) {
        int i = start + ii;
        if (i < j || i >= T || query_starts[ii] > j) continue;
        float s = 0.0f, dp = 0.0f;
        for (int c = 0; c < HD; c++) {
          s += qs[ii][c] * kr[c];
          dp += dos[ii][c] * vr[c];
        }
        float p = expf(s - lses[ii]);
        float ds = p * (dp - deltas[ii]);
        for (int c = 0; c < HD; c++) {
          dvr[c] += p * dos[ii][c];
          dkr[c] += ds * qs[ii][c];
        }
      }
    }
  }
  if (!live) return;
  bf16* dko = dk + ((int64_t)bg * T + j) * HD;
  bf16* dvo = dv + ((int64_t)bg * T + j) * HD;
  for (int c = 0; c < HD; c++) {
    dko[c] = to_bf(dkr[c] * scale);
    dvo[c] = to_bf(dvr[c]);
  }
}

// The head sizes the model family uses, one entry point each.
#define FLASH_ENTRY_POINTS(HD)                                                                 \
  extern "C" __global__ void __launch_bounds__(ROWS) flash_forward_##HD(                       \
      const bf16* q, const bf16* k, const bf16* v, const int* doc_start, bf16* out,            \
      float* lse, int T, int hq, int hkv, float scale) {                                       \
    flash_forward<HD>(q, k, v, doc_start, out, lse, T, hq, hkv, scale);                        \
  }                                                                                            \
  extern "C" __global__ void __launch_bounds__(ROWS) flash_backward_dq_##HD(                   \
      const bf16* q, const bf16* k, const bf16* v, const int* doc_start, const bf16* dout,     \
      const float* lse, const float* delta, bf16* dq, int T, int hq, int hkv, float scale) {   \
    flash_backward_dq<HD>(q, k, v, doc_start, dout, lse, delta, dq, T, hq, hkv, scale);        \
  }                                                                                            \
  extern "C" __global__ void __launch_bounds__(ROWS) flash_backward_dkv_##HD(                  \
      const bf16* q, const bf16* k, const bf16* v, const int* doc_start, const bf16* dout,     \
      const float* lse, const float* delta, bf16* dk, bf16* dv, int T, int hq, int hkv,        \
      float scale) {                                                                           \
    flash_backward_dkv<HD>(q, k, v, doc_start, dout, lse, delta, dk, dv, T, hq, hkv, scale);   \
  }

FLASH_ENTRY_POINTS(16)
FLASH_ENTRY_POINTS(32)
FLASH_ENTRY_POINTS(56)
FLASH_ENTRY_POINTS(64)
FLASH_ENTRY_POINTS(128)
