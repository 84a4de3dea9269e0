// Sum of bilinear resizes (the SegFormer head's level sum and the final resize of the logits): each
// output row is written once, instead of one fresh full-size tensor per resized map plus one pass
// per addition. The backward pass is the adjoint of one resize, as gathers (no scattered writes).
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "hrvit/kernels/resize_sum.h"

#include "hrvit/bf16.h"
#include "hrvit/scratch.h"
#include "hrvit/threading.h"

namespace hrvit {
namespace {

constexpr index_t kRowsPerTask = 16;

// The two source indices of each output index along one axis and the weight of the upper one, computed
// as PyTorch does in fp32: src = max(in / out * (dst + 0.5) - 0.5, 0). int32 indices, so the gather
// in the horizontal pass vectorises.
struct AxisTaps {
  std::vector<int32_t> lo, hi;
  std::vector<float> w_hi;
};

AxisTaps axis_taps(index_t in, index_t out) {
  AxisTaps t{std::vector<int32_t>(out), std::vector<int32_t>(out), std::vector<float>(out)};
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (index_t o = 0; o < out; ++o) {
    const float src = std::max(scale * (static_cast<float>(o) + 0.5f) - 0.5f, 0.0f);
    const index_t lo = std::min(static_cast<index_t>(src), in - 1);
    t.lo[o] = static_cast<int32_t>(lo);
    t.hi[o] = static_cast<int32_t>(std::min(lo + 1, in - 1));
    t.w_hi[o] = std::min(src - static_cast<float>(lo), 1.0f);
  }
  return t;
}

struct MapTaps {
  AxisTaps rows, cols;
};

// Row r of one map's plane resized horizontally to `width` columns: out[x] = (1 - wx) src[lo] + wx src[hi].
// T is the map's element type (float or bf16_t); a bf16 row is converted into `converted` first.
template <typename T>
void widen_row(const ResizeSource& map, const AxisTaps& cols, index_t plane, index_t r, index_t width,
               float* __restrict converted, float* __restrict out) {
  const T* row = static_cast<const T*>(map.data) + (plane * map.height + r) * map.width;
  const float* __restrict src;
  if constexpr (std::is_same_v<T, float>) {
    src = row;
  } else {
    load_row(row, map.width, converted);
    src = converted;
  }
  const int32_t* __restrict lo = cols.lo.data();
  const int32_t* __restrict hi = cols.hi.data();
  const float* __restrict wx = cols.w_hi.data();
  for (index_t x = 0; x < width; ++x) out[x] = (1.0f - wx[x]) * src[lo[x]] + wx[x] * src[hi[x]];
}

// out (=, or += when accumulate) (1 - wy) top + wy bottom.
inline void blend_rows(const float* __restrict top, const float* __restrict bottom, float wy, index_t width,
                       bool accumulate, float* __restrict out) {
  if (accumulate) {
    for (index_t x = 0; x < width; ++x) out[x] += (1.0f - wy) * top[x] + wy * bottom[x];
  } else {
    for (index_t x = 0; x < width; ++x) out[x] = (1.0f - wy) * top[x] + wy * bottom[x];
  }
}

// rows[y - y0] (=, or += when accumulate) output rows [y0, y1) of one map's plane resized to (height, width).
// Horizontal pass first, on each source row the output rows read (as PyTorch orders the blend): a map
// enlarged k times vertically gathers its columns once per source row instead of k times.
template <typename T>
void resize_rows(const ResizeSource& map, const MapTaps& taps, index_t plane, index_t y0, index_t y1,
                 index_t width, bool accumulate, float* converted, std::vector<float>& widened_rows,
                 float* __restrict rows) {
  const index_t first = taps.rows.lo[y0], last = taps.rows.hi[y1 - 1];
  // Rows [first, last] are all read when the map is not taller than the output (its taps advance by at
  // most one source row per output row). A map over about twice the output's height skips rows: then each
  // output row widens just its own two.
  const bool dense = last - first + 1 <= 2 * (y1 - y0);
  float* widened = kept(widened_rows, (dense ? last - first + 1 : 2) * width);
  if (dense)
    for (index_t r = first; r <= last; ++r)
      widen_row<T>(map, taps.cols, plane, r, width, converted, widened + (r - first) * width);
  for (index_t y = y0; y < y1; ++y) {
    const float *top = widened, *bottom = widened + width;
    if (dense) {
      top = widened + (taps.rows.lo[y] - first) * width;
      bottom = widened + (taps.rows.hi[y] - first) * width;
    } else {  // this output row's two source rows
      widen_row<T>(map, taps.cols, plane, taps.rows.lo[y], width, converted, widened);
      widen_row<T>(map, taps.cols, plane, taps.rows.hi[y], width, converted, widened + width);
    }
    blend_rows(top, bottom, taps.rows.w_hi[y], width, accumulate, rows + (y - y0) * width);
  }
}

// rows[y - y0] (=, or += when accumulate) output rows [y0, y1) of one map's plane that is already at the
// output size.
template <typename T>
void add_rows(const ResizeSource& map, index_t plane, index_t y0, index_t y1, index_t width, bool accumulate,
              float* __restrict rows) {
  const T* src = static_cast<const T*>(map.data) + (plane * map.height + y0) * width;
  const index_t n = (y1 - y0) * width;
  if (accumulate) {
    for (index_t i = 0; i < n; ++i) rows[i] += to_float(src[i]);
  } else {
    load_row(src, n, rows);
  }
}

// The forward pass with output element type Out: each task's rows are summed in fp32 (in the output itself
// when it is fp32, else in scratch rows), map after map in order, and stored once.
template <typename Out>
void resize_sum_rows(index_t planes, index_t height, index_t width, const ResizeSource* maps, int num_maps,
                     Out* out, int num_threads) {
  std::vector<MapTaps> taps;
  index_t widest = 1;
  for (int m = 0; m < num_maps; ++m) {
    taps.push_back({axis_taps(maps[m].height, height), axis_taps(maps[m].width, width)});
    widest = std::max(widest, maps[m].width);
  }
  const index_t row_tasks = (height + kRowsPerTask - 1) / kRowsPerTask;
  parallel_for(planes * row_tasks, num_threads, [&](index_t task) {
    constexpr bool kSumInOutput = std::is_same_v<Out, float>;
    thread_local std::vector<float> converted_row, widened_rows, sum_rows;
    float* converted = kept(converted_row, widest);
    const index_t plane = task / row_tasks, y0 = task % row_tasks * kRowsPerTask;
    const index_t y1 = std::min(height, y0 + kRowsPerTask);
    Out* out_rows = out + (plane * height + y0) * width;
    float* rows;
    if constexpr (kSumInOutput)
      rows = out_rows;
    else
      rows = kept(sum_rows, (y1 - y0) * width);
    for (int m = 0; m < num_maps; ++m) {
      const ResizeSource& map = maps[m];
      const bool at_size = map.height == height && map.width == width;
      if (at_size && map.bf16)
        add_rows<bf16_t>(map, plane, y0, y1, width, m > 0, rows);
      else if (at_size)
        add_rows<float>(map, plane, y0, y1, width, m > 0, rows);
      else if (map.bf16)
        resize_rows<bf16_t>(map, taps[m], plane, y0, y1, width, m > 0, converted, widened_rows, rows);
      else
        resize_rows<float>(map, taps[m], plane, y0, y1, width, m > 0, converted, widened_rows, rows);
    }
    if constexpr (!kSumInOutput) store_row(rows, (y1 - y0) * width, out_rows);
  });
}

// For each source index, the output indices whose lower (upper) tap it is: contiguous ranges, since
// the taps are non-decreasing in the output index. Range i is [begin[i], begin[i + 1]).
struct AdjointRanges {
  std::vector<index_t> lo_begin, hi_begin;
};

AdjointRanges adjoint_ranges(const AxisTaps& taps, index_t in) {
  AdjointRanges r{std::vector<index_t>(in + 1, 0), std::vector<index_t>(in + 1, 0)};
  for (size_t o = 0; o < taps.lo.size(); ++o) {
    ++r.lo_begin[taps.lo[o] + 1];
    ++r.hi_begin[taps.hi[o] + 1];
  }
  for (index_t i = 0; i < in; ++i) {
    r.lo_begin[i + 1] += r.lo_begin[i];
    r.hi_begin[i + 1] += r.hi_begin[i];
  }
  return r;
}

}  // namespace

void resize_sum_forward(index_t planes, index_t height, index_t width, const ResizeSource* maps,
                        int num_maps, void* out, bool out_bf16, int num_threads) {
  if (out_bf16)
    resize_sum_rows(planes, height, width, maps, num_maps, static_cast<bf16_t*>(out), num_threads);
  else
    resize_sum_rows(planes, height, width, maps, num_maps, static_cast<float*>(out), num_threads);
}

void resize_backward(index_t planes, index_t height, index_t width, const float* grad_out,
                     index_t map_height, index_t map_width, float* grad_map, int num_threads) {
  const AxisTaps rows = axis_taps(map_height, height), cols = axis_taps(map_width, width);
  const AdjointRanges col_ranges = adjoint_ranges(cols, map_width);
  parallel_for(planes, num_threads, [&](index_t plane) {
    // Vertical adjoint first, on contiguous rows: partial (map_height, width) of output-width rows.
    thread_local std::vector<float> partial;
    partial.assign(map_height * width, 0.0f);
    const float* g = grad_out + plane * height * width;
    for (index_t y = 0; y < height; ++y) {
      const float* __restrict g_row = g + y * width;
      float* __restrict lo_row = partial.data() + rows.lo[y] * width;
      const float w_hi = rows.w_hi[y], w_lo = 1.0f - w_hi;
      for (index_t x = 0; x < width; ++x) lo_row[x] += w_lo * g_row[x];
      float* __restrict hi_row = partial.data() + rows.hi[y] * width;
      for (index_t x = 0; x < width; ++x) hi_row[x] += w_hi * g_row[x];
    }
    // Horizontal adjoint: each source column sums the output columns it feeds (two short ranges).
    float* out = grad_map + plane * map_height * map_width;
    for (index_t y = 0; y < map_height; ++y) {
      const float* p = partial.data() + y * width;
      for (index_t x = 0; x < map_width; ++x) {
        float sum = 0.0f;
        for (index_t o = col_ranges.lo_begin[x]; o < col_ranges.lo_begin[x + 1]; ++o)
          sum += (1.0f - cols.w_hi[o]) * p[o];
        for (index_t o = col_ranges.hi_begin[x]; o < col_ranges.hi_begin[x + 1]; ++o)
          sum += cols.w_hi[o] * p[o];
        out[y * map_width + x] = sum;
      }
    }
  });
}

}  // namespace hrvit
