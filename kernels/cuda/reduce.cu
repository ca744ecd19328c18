// Deterministic reductions: every sum is taken in a fixed order (fixed grid, block tree, then
// one block over the partials), so the same inputs give the same bits on every run.
#include "common.cuh"

// partial[c, j] = Σ_{r in chunk c} m[r, j] for a bf16 matrix `m: [rows, cols]`;
// grid (ceil(cols/256), chunks), each chunk `rows_per_chunk` rows.
extern "C" __global__ void column_sum_bf16_partial(const bf16* m, int64_t rows, int cols,
                                                   int rows_per_chunk, float* partial) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  int64_t start = (int64_t)blockIdx.y * rows_per_chunk;
  int64_t end = min(rows, start + rows_per_chunk);
  float sum = 0.0f;
  for (int64_t r = start; r < end; r++) sum += to_f(m[r * cols + j]);
  partial[(int64_t)blockIdx.y * cols + j] = sum;
}

// out[j] += Σ_c partial[c, j], chunks in order.
extern "C" __global__ void add_column_partials(const float* partial, int chunks, int cols,
                                               float* out) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  float sum = 0.0f;
  for (int c = 0; c < chunks; c++) sum += partial[(int64_t)c * cols + j];
  out[j] += sum;
}

// partial[block] = Σ x² over a grid-stride share of `x` (in f64), for a fixed grid.
extern "C" __global__ void sum_squares_partial(const float* x, int64_t n, double* partial) {
  __shared__ double scratch[32];
  double sum = 0.0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    sum += (double)x[i] * (double)x[i];
  sum = block_sum_f64(sum, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

// out[0] = sqrt(Σ partial) · scale, one block.
extern "C" __global__ void finish_norm(const double* partial, int count, float scale, float* out) {
  __shared__ double scratch[32];
  double sum = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) sum += partial[i];
  sum = block_sum_f64(sum, scratch);
  if (threadIdx.x == 0) out[0] = (float)(sqrt(sum) * scale);
}

// out[0] = Σ x · scale over `n` floats, one block (the loss over rows).
extern "C" __global__ void sum_scaled(const float* x, int64_t n, float scale, float* out) {
  __shared__ double scratch[32];
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += x[i];
  sum = block_sum_f64(sum, scratch);
  if (threadIdx.x == 0) out[0] = (float)(sum * scale);
}
