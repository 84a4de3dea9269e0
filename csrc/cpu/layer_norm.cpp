// LayerNorm rows with an optional residual sum, fp32 or bf16 in and out, fp32 inside: rows of a few whole
// vectors stay in registers from load to store; other widths are summed into an fp32 tile that stays in L1.
// PyTorch's kernel costs about ten times a plain add on rows of 32 channels (HRViT's stride-4 branch).
#include "hrvit/kernels/layer_norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "hrvit/bf16.h"
#include "hrvit/scratch.h"
#include "hrvit/threading.h"

namespace hrvit {
namespace {

constexpr index_t kStackColumns = 1024;  // rows this wide are summed on the stack, wider ones in kept scratch

// tile[0, n) (+)= row i of the operand, converted to fp32.
inline void load_into(const RowsArg& a, index_t i, index_t n, float* tile) {
  if (a.bf16)
    load_row(static_cast<const bf16_t*>(a.data) + i * a.row_stride, n, tile);
  else
    copy_row(static_cast<const float*>(a.data) + i * a.row_stride, n, tile);
}
inline void add_into(const RowsArg& a, index_t i, index_t n, float* tile) {
  index_t j = 0;
  if (a.bf16) {
    const bf16_t* row = static_cast<const bf16_t*>(a.data) + i * a.row_stride;
    for (; j < n; ++j) tile[j] += to_float(row[j]);
    return;
  }
  const float* row = static_cast<const float*>(a.data) + i * a.row_stride;
  for (; j + kLanes <= n; j += kLanes) store(tile + j, load(tile + j) + load(row + j));
  for (; j < n; ++j) tile[j] += row[j];
}
inline void store_from(const float* tile, index_t n, const RowsOut& o, index_t i) {
  if (o.bf16)
    store_row(tile, n, static_cast<bf16_t*>(o.data) + i * n);
  else
    copy_row(tile, n, static_cast<float*>(o.data) + i * n);
}

// The mean and 1 / sqrt(variance + eps) of n values from the sums of d = value - shift and of d^2. Shifted by
// one of the values, a large mean does not cancel the variance's digits as the plain E[x^2] - mean^2 would.
inline void statistics(float shifted_sum, float shifted_squares, float shift, index_t n, float eps, float& mean,
                       float& rstd) {
  const float shifted_mean = shifted_sum / static_cast<float>(n);
  const float variance = std::max(shifted_squares / static_cast<float>(n) - shifted_mean * shifted_mean, 0.0f);
  mean = shift + shifted_mean;
  rstd = 1.0f / std::sqrt(variance + eps);
}

// The statistics of v[0, n) in one pass over the data shifted by its first element (both sums reduce
// independently).
inline void mean_and_rstd(const float* v, index_t n, float eps, float& mean, float& rstd) {
  const float shift = v[0];
  vecf sum = {}, squares = {};
  index_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    const vecf d = load(v + j) - shift;
    sum += d;
    squares += d * d;
  }
  float s = lane_sum(sum), q = lane_sum(squares);
  for (; j < n; ++j) {
    const float d = v[j] - shift;
    s += d;
    q += d * d;
  }
  statistics(s, q, shift, n, eps, mean, rstd);
}

// Rows of exactly Vectors whole vectors (HRViT's 32 and 64 channels, 48 and 96 of b2, 128 with AVX-512) stay in
// registers from load to store: no tile round trips, bf16 converted a vector at a time.
inline vecf load_vector(const void* base, bool bf16, index_t offset) {
  return bf16 ? load_bf16(static_cast<const bf16_t*>(base) + offset) : load(static_cast<const float*>(base) + offset);
}
inline void store_vector(void* base, bool bf16, index_t offset, vecf v) {
  if (bf16)
    store_bf16(static_cast<bf16_t*>(base) + offset, v);
  else
    store(static_cast<float*>(base) + offset, v);
}

template <int Vectors>
void layer_norm_registers(index_t rows, RowsArg x, RowsArg residual, const float* weight, const float* bias,
                          float eps, RowsOut sum, RowsOut out, int num_threads) {
  constexpr index_t cols = Vectors * kLanes;
  parallel_for(rows, num_threads, [&](index_t i) {
    vecf v[Vectors];
    for (int k = 0; k < Vectors; ++k) v[k] = load_vector(x.data, x.bf16, i * x.row_stride + k * kLanes);
    if (residual.data != nullptr) {
      for (int k = 0; k < Vectors; ++k)
        v[k] += load_vector(residual.data, residual.bf16, i * residual.row_stride + k * kLanes);
      if (sum.data != nullptr) {
        for (int k = 0; k < Vectors; ++k) {
          store_vector(sum.data, sum.bf16, i * cols + k * kLanes, v[k]);
          if (sum.bf16) v[k] = load_bf16(static_cast<const bf16_t*>(sum.data) + i * cols + k * kLanes);
        }
      }
    }
    const float shift = v[0][0];
    vecf total = {}, squares = {};
    for (int k = 0; k < Vectors; ++k) {
      const vecf d = v[k] - shift;
      total += d;
      squares += d * d;
    }
    float mean, rstd;
    statistics(lane_sum(total), lane_sum(squares), shift, cols, eps, mean, rstd);
    for (int k = 0; k < Vectors; ++k)
      store_vector(out.data, out.bf16, i * cols + k * kLanes,
                   (v[k] - mean) * rstd * load(weight + k * kLanes) + load(bias + k * kLanes));
  });
}

}  // namespace

void add_layer_norm_forward(index_t rows, index_t cols, RowsArg x, RowsArg residual, const float* weight,
                            const float* bias, float eps, RowsOut sum, RowsOut out, int num_threads) {
  switch (cols == 0 || cols % kLanes != 0 ? 0 : cols / kLanes) {
    case 1: return layer_norm_registers<1>(rows, x, residual, weight, bias, eps, sum, out, num_threads);
    case 2: return layer_norm_registers<2>(rows, x, residual, weight, bias, eps, sum, out, num_threads);
    case 3: return layer_norm_registers<3>(rows, x, residual, weight, bias, eps, sum, out, num_threads);
    case 4: return layer_norm_registers<4>(rows, x, residual, weight, bias, eps, sum, out, num_threads);
    case 6: return layer_norm_registers<6>(rows, x, residual, weight, bias, eps, sum, out, num_threads);
    case 8: return layer_norm_registers<8>(rows, x, residual, weight, bias, eps, sum, out, num_threads);
    default: break;
  }
  parallel_for(rows, num_threads, [&](index_t i) {
    alignas(64) float on_stack[kStackColumns];
    thread_local std::vector<float> buffer;
    float* __restrict__ tile = cols <= kStackColumns ? on_stack : kept(buffer, cols);
    load_into(x, i, cols, tile);
    if (residual.data != nullptr) {
      add_into(residual, i, cols, tile);
      // A bf16 sum is normalised as stored, as a separate add and LayerNorm would see it.
      if (sum.bf16)
        for (index_t j = 0; j < cols; ++j) tile[j] = to_float(to_bf16(tile[j]));
    }
    if (sum.data != nullptr) store_from(tile, cols, sum, i);
    float mean, rstd;
    mean_and_rstd(tile, cols, eps, mean, rstd);
    index_t j = 0;
    for (; j + kLanes <= cols; j += kLanes)
      store(tile + j, (load(tile + j) - mean) * rstd * load(weight + j) + load(bias + j));
    for (; j < cols; ++j) tile[j] = (tile[j] - mean) * rstd * weight[j] + bias[j];
    store_from(tile, cols, out, i);
  });
}

}  // namespace hrvit
