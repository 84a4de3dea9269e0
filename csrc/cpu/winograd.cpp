// Winograd F(2x2, 3x3) transforms (see the header). Each tile is transformed channel vector by channel vector:
// 16 loads, 32 adds and 16 stores in, 16 loads, 24 adds and 4 stores (+ affine and activation) out.
#include "hrvit/kernels/winograd.h"

#include "hrvit/fast_math.h"
#include "hrvit/threading.h"

namespace hrvit {
namespace {

index_t tiles_across(index_t size) { return (size + 1) / 2; }

template <typename V>
inline V activate(V x, Activation activation) {
  if (activation == Activation::kGelu) return gelu(x);
  if (activation == Activation::kRelu) return x > 0.0f ? x : V{} + 0.0f;
  return x;
}

// One tile's channels [c, c + lanes of V): d = the 4 x 4 input, v[k] = (B^T d B)[k / 4][k % 4].
template <typename V>
inline void input_tile(const float* x, const WinogradShape& s, index_t b, index_t y0, index_t x0, index_t c,
                       float* v, index_t k_stride) {
  const index_t C = s.in_channels;
  V d[4][4];
  for (int a = 0; a < 4; ++a) {
    const index_t y = y0 + a;
    for (int e = 0; e < 4; ++e) {
      const index_t xx = x0 + e;
      const bool inside = y >= 0 && y < s.height && xx >= 0 && xx < s.width;
      d[a][e] = inside ? load<V>(x + ((b * s.height + y) * s.width + xx) * C + c) : V{} + 0.0f;
    }
  }
  V t[4][4];  // B^T d: rows combined
  for (int e = 0; e < 4; ++e) {
    t[0][e] = d[0][e] - d[2][e];
    t[1][e] = d[1][e] + d[2][e];
    t[2][e] = d[2][e] - d[1][e];
    t[3][e] = d[1][e] - d[3][e];
  }
  for (int a = 0; a < 4; ++a) {  // (B^T d) B: columns combined
    float* row = v + 4 * a * k_stride + c;
    store(row, t[a][0] - t[a][2]);
    store(row + k_stride, t[a][1] + t[a][2]);
    store(row + 2 * k_stride, t[a][2] - t[a][1]);
    store(row + 3 * k_stride, t[a][1] - t[a][3]);
  }
}

// One tile's output channels [c, c + lanes of V): y = A^T m A, then the affine and activation, stored where
// the 2 x 2 pixels lie inside the map.
template <typename V>
inline void output_tile(const float* m, index_t k_stride, const WinogradShape& s, index_t b, index_t y0,
                        index_t x0, index_t c, const float* scale, const float* shift, Activation activation,
                        float* out) {
  V t[2][4];  // A^T m: rows combined
  for (int e = 0; e < 4; ++e) {
    const V m0 = load<V>(m + e * k_stride + c), m1 = load<V>(m + (4 + e) * k_stride + c);
    const V m2 = load<V>(m + (8 + e) * k_stride + c), m3 = load<V>(m + (12 + e) * k_stride + c);
    t[0][e] = m0 + m1 + m2;
    t[1][e] = m1 - m2 - m3;
  }
  const V sc = load<V>(scale + c), sh = load<V>(shift + c);
  for (int a = 0; a < 2; ++a) {
    const index_t y = y0 + a;
    if (y >= s.height) break;
    const V pixel[2] = {t[a][0] + t[a][1] + t[a][2], t[a][1] - t[a][2] - t[a][3]};
    for (int e = 0; e < 2 && x0 + e < s.width; ++e)
      store(out + ((b * s.height + y) * s.width + x0 + e) * s.out_channels + c,
            activate(pixel[e] * sc + sh, activation));
  }
}

}  // namespace

void winograd_filter_transform(index_t out_channels, index_t in_channels, const float* w, float* u,
                               int num_threads) {
  const index_t k_stride = in_channels * out_channels;
  parallel_for(out_channels, num_threads, [&](index_t o) {
    for (index_t i = 0; i < in_channels; ++i) {
      const float* g = w + (o * in_channels + i) * 9;
      float t[4][3];  // G g: rows 0, (0 + 1 + 2) / 2, (0 - 1 + 2) / 2, 2
      for (int e = 0; e < 3; ++e) {
        t[0][e] = g[e];
        t[1][e] = 0.5f * (g[e] + g[3 + e] + g[6 + e]);
        t[2][e] = 0.5f * (g[e] - g[3 + e] + g[6 + e]);
        t[3][e] = g[6 + e];
      }
      for (int a = 0; a < 4; ++a) {  // (G g) G^T: the same on the columns
        float* dst = u + 4 * a * k_stride + i * out_channels + o;
        dst[0] = t[a][0];
        dst[k_stride] = 0.5f * (t[a][0] + t[a][1] + t[a][2]);
        dst[2 * k_stride] = 0.5f * (t[a][0] - t[a][1] + t[a][2]);
        dst[3 * k_stride] = t[a][2];
      }
    }
  });
}

void winograd_input_transform(const WinogradShape& s, index_t first_row, index_t rows, const float* x, float* v,
                              int num_threads) {
  const index_t tile_h = tiles_across(s.height), tile_w = tiles_across(s.width), C = s.in_channels;
  const index_t k_stride = rows * tile_w * C;
  parallel_for(rows * tile_w, num_threads, [&](index_t t) {
    const index_t g = first_row + t / tile_w, j = t % tile_w;
    const index_t b = g / tile_h, y0 = 2 * (g % tile_h) - 1, x0 = 2 * j - 1;
    float* tile = v + t * C;
    index_t c = 0;
    for (; c + kLanes <= C; c += kLanes) input_tile<vecf>(x, s, b, y0, x0, c, tile, k_stride);
    for (; c < C; ++c) input_tile<float>(x, s, b, y0, x0, c, tile, k_stride);
  });
}

void winograd_output_transform(const WinogradShape& s, index_t first_row, index_t rows, const float* m,
                               const float* scale, const float* shift, Activation activation, float* out,
                               int num_threads) {
  const index_t tile_h = tiles_across(s.height), tile_w = tiles_across(s.width), C = s.out_channels;
  const index_t k_stride = rows * tile_w * C;
  parallel_for(rows * tile_w, num_threads, [&](index_t t) {
    const index_t g = first_row + t / tile_w, j = t % tile_w;
    const index_t b = g / tile_h, y0 = 2 * (g % tile_h), x0 = 2 * j;
    const float* tile = m + t * C;
    index_t c = 0;
    for (; c + kLanes <= C; c += kLanes)
      output_tile<vecf>(tile, k_stride, s, b, y0, x0, c, scale, shift, activation, out);
    for (; c < C; ++c) output_tile<float>(tile, k_stride, s, b, y0, x0, c, scale, shift, activation, out);
  });
}

}  // namespace hrvit
