// Token embedding into the fp32 residual stream, and its backward without atomics: the host
// groups token positions by id (`order` sorted by id, `starts[u]..starts[u+1]` the run of
// unique id `ids[u]`), and one block per unique id sums its rows in token order.
#include "common.cuh"

// x[t, :] = table[ids[t], :]; grid = tokens.
extern "C" __global__ void embedding_forward(const int* ids, const bf16* table, float* x, int d) {
  int64_t t = blockIdx.x;
  const bf16* row = table + (int64_t)ids[t] * d;
  for (int j = threadIdx.x; j < d; j += blockDim.x) x[t * d + j] = to_f(row[j]);
}

// dtable[ids[u], :] += Σ_{t in run u} dx[t, :]; grid = unique ids.
extern "C" __global__ void embedding_backward(const int* unique_ids, const int* starts,
                                              const int* order, const float* dx, float* dtable,
                                              int d) {
  int u = blockIdx.x;
  int begin = starts[u], end = starts[u + 1];
  float* out = dtable + (int64_t)unique_ids[u] * d;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    float sum = 0.0f;
    for (int i = begin; i < end; i++) sum += dx[(int64_t)order[i] * d + j];
    out[j] += sum;
  }
}
