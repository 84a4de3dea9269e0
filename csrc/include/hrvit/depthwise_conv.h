// K x K depthwise convolution (zero padding K/2, stride 1 or 2, optional bias, optional GELU) of one
// output row, in token layout: the building block of the MixCFN and depthwise-MLP kernels.
//
// Every loop nest keeps a block of channels in registers and runs over contiguous channels, so the
// compiler emits whole-vector FMAs; image borders are handled by clipping the tap rows and reading
// tokens left or right of the image as zeros.
#pragma once

#include <algorithm>

#include "hrvit/fast_math.h"
#include "hrvit/simd.h"

namespace hrvit {
namespace depthwise {

// Channels run in blocks of one vector of L floats: first the widest vectors (16 floats with AVX-512), then
// narrower ones down to 4 for what is left (R/2 = 48, 144, 360 in HRViT-b2 leave 0, 0 and 8 channels after
// 16-channel blocks), then scalars for fewer than 4 channels.
template <index_t L>
using lanes = typename Vec<L>::type;

// The offsets [lo, hi] of a radius-r tap window around pos that stay inside [0, size): zero padding
// is handled by skipping the taps outside the image.
struct TapRange {
  index_t lo, hi;
};
inline TapRange taps_inside(index_t r, index_t pos, index_t size) {
  return {std::max(-r, -pos), std::min(r, size - 1 - pos)};
}

// Channels [0, len) of the conv at output pixel (h, w), centred on input pixel (S h, S w) of an
// H x W image whose token t is at src + t * sn (tap-major weights wt (K*K, c)): acc[j] = bias[j] +
// sum_taps wt[tap][j] * in[j], then GELU if Gelu. Scalar code, for the fewer than 4 channels that the
// vector blocks leave.
template <int K, bool Gelu, index_t S>
inline void conv_pixel(const float* src, index_t sn, index_t H, index_t W, index_t h, index_t w,
                       const float* wt, index_t c, const float* bias, float* acc, index_t len) {
  constexpr index_t r = K / 2;
  const auto [dy0, dy1] = taps_inside(r, S * h, H);
  const auto [dx0, dx1] = taps_inside(r, S * w, W);
  for (index_t j = 0; j < len; ++j) acc[j] = bias ? bias[j] : 0.0f;
  for (index_t dy = dy0; dy <= dy1; ++dy)
    for (index_t dx = dx0; dx <= dx1; ++dx) {
      const float* in = src + ((S * h + dy) * W + (S * w + dx)) * sn;
      const float* k = wt + ((dy + r) * K + (dx + r)) * c;
      for (index_t j = 0; j < len; ++j) acc[j] += k[j] * in[j];
    }
  if (Gelu)
    for (index_t j = 0; j < len; ++j) acc[j] = gelu(acc[j]);
}

// kPixels<S> horizontally adjacent output pixels (w, w + 1, ...), channels [0, L), of which the first `count`
// are stored (GELU applied first if Gelu): kPixels independent accumulator chains, so the FMAs are not held
// up by each other's latency. Each input row of the window ((kPixels - 1) S + K tokens) is loaded into
// registers once and used by all K taps of the row, and each tap's weights once for all pixels: per tap row
// (kPixels - 1) S + 2 K loads feed K * kPixels FMAs. One vector of channels and 12 pixels in AVX-512's 32
// registers measured 1.4x the speed of the earlier two vectors and 4 pixels (MixCFN's 5 x 5 and 3 x 3 halves
// at 128 x 128 x 64, 2.2 -> 1.5 and 1.7 -> 1.25 ms), whose input loads, twice as many per FMA, ran into the
// cache's bandwidth; fewer pixels where the window's tokens and the sums would not fit in the registers
// (stride 2, 16 registers). Tokens left or right of the image load as zeros, which is the zero padding;
// Interior says the window lies inside the image.
template <index_t S>
constexpr index_t kPixels = kLanes >= 16 ? 12 / S : 4;
template <int K, index_t L, bool Gelu, bool Interior, index_t S>
inline void conv_pixels(const float* src, index_t sn, index_t H, index_t W, index_t h, index_t w,
                        const float* wt, index_t c, const float* bias, float* dst, index_t dn,
                        index_t count) {
  typedef lanes<L> V;
  constexpr index_t r = K / 2, pixels = kPixels<S>, span = (pixels - 1) * S + K;
  const auto [dy0, dy1] = taps_inside(r, S * h, H);
  V a[pixels];
  for (index_t p = 0; p < pixels; ++p) a[p] = bias ? load<V>(bias) : V{};
  for (index_t dy = dy0; dy <= dy1; ++dy) {
    V in[span];
    const index_t first = S * w - r;  // input column of in[0]
    const float* row = src + ((S * h + dy) * W + first) * sn;
    for (index_t t = 0; t < span; ++t) {
      const bool inside = Interior || (first + t >= 0 && first + t < W);
      in[t] = inside ? load<V>(row + t * sn) : V{};
    }
    const float* k = wt + (dy + r) * K * c;
    for (index_t dx = 0; dx < K; ++dx) {
      const V kx = load<V>(k + dx * c);
      for (index_t p = 0; p < pixels; ++p) a[p] += kx * in[S * p + dx];
    }
  }
  for (index_t p = 0; p < pixels; ++p) {
    if (!Interior && p >= count) break;
    store(dst + p * dn, Gelu ? gelu(a[p]) : a[p]);
  }
}

// Output row h (out_width pixels) over channels [c0, c) of `src` (H x W input, token stride sn) into
// dst (token stride dn), in blocks of L channels while they fit; returns the first channel left.
template <int K, index_t L, bool Gelu, index_t S>
index_t conv_row_blocks(const float* src, index_t sn, index_t H, index_t W, index_t h, index_t out_width,
                        const float* wt, const float* bias, index_t c, float* dst, index_t dn, index_t c0) {
  constexpr index_t r = K / 2, pixels = kPixels<S>;
  for (; c0 + L <= c; c0 += L) {
    const float* b = bias ? bias + c0 : nullptr;
    for (index_t w = 0; w < out_width; w += pixels) {
      float* d = dst + w * dn + c0;
      if (S * w >= r && S * (w + pixels - 1) + r < W)
        conv_pixels<K, L, Gelu, true, S>(src + c0, sn, H, W, h, w, wt + c0, c, b, d, dn, pixels);
      else
        conv_pixels<K, L, Gelu, false, S>(src + c0, sn, H, W, h, w, wt + c0, c, b, d, dn,
                                          std::min(pixels, out_width - w));
    }
  }
  return c0;
}

// Output row h of a K x K depthwise conv with stride S over channels [0, c) of an H x W input, then
// GELU if Gelu; out_width = (W - 1) / S + 1 pixels. bias may be null.
template <int K, bool Gelu, index_t S = 1>
void conv_row(const float* src, index_t sn, index_t H, index_t W, index_t h, const float* wt,
              const float* bias, index_t c, float* dst, index_t dn) {
  const index_t out_width = (W - 1) / S + 1;
  index_t c0 = conv_row_blocks<K, kLanes, Gelu, S>(src, sn, H, W, h, out_width, wt, bias, c, dst, dn, 0);
  if constexpr (kLanes > 8)
    c0 = conv_row_blocks<K, 8, Gelu, S>(src, sn, H, W, h, out_width, wt, bias, c, dst, dn, c0);
  if constexpr (kLanes > 4)
    c0 = conv_row_blocks<K, 4, Gelu, S>(src, sn, H, W, h, out_width, wt, bias, c, dst, dn, c0);
  if (c0 < c)  // fewer than 4 channels: scalars
    for (index_t w = 0; w < out_width; ++w)
      conv_pixel<K, Gelu, S>(src + c0, sn, H, W, h, w, wt + c0, c, bias ? bias + c0 : nullptr,
                             dst + w * dn + c0, c - c0);
}

}  // namespace depthwise
}  // namespace hrvit
