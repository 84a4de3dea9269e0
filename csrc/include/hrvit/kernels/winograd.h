// Winograd F(2x2, 3x3) (Lavin & Gray, 2016) for stride-1, zero-padding-1 3x3 convolutions on channels-last fp32
// maps: the input and output transforms, between which the caller runs 16 matrix products (BLAS). 2.25x fewer
// multiply-adds than the direct convolution; the transforms add and subtract only (no rounding beyond fp32's).
//
// A map of H x W pixels has ceil(H/2) x ceil(W/2) tiles of 2 x 2 outputs; tile (r, j) reads the 4 x 4 pixels
// from (2r - 1, 2j - 1), zeros outside the map. Tile rows of all images are numbered g = b * ceil(H/2) + r; a
// call handles tile rows [first_row, first_row + rows), T = rows * ceil(W/2) tiles, tile t = (g - first_row) *
// ceil(W/2) + j.
#pragma once

#include "hrvit/simd.h"

namespace hrvit {

struct WinogradShape {
  index_t batch, height, width, in_channels, out_channels;
};

enum class Activation : int { kNone = 0, kRelu = 1, kGelu = 2 };

// u (16, in_channels, out_channels) = G g G^T of every 3x3 filter g of w (out_channels, in_channels, 3, 3).
void winograd_filter_transform(index_t out_channels, index_t in_channels, const float* w, float* u,
                               int num_threads);

// v (16, T, in_channels) = B^T d B of every tile d of x (B, H, W, in_channels) contiguous.
void winograd_input_transform(const WinogradShape& s, index_t first_row, index_t rows, const float* x, float* v,
                              int num_threads);

// out (B, H, W, out_channels) contiguous, the tiles' pixels = activation(A^T m A * scale + shift) of the
// products m (16, T, out_channels). Pixels outside the map are not written.
void winograd_output_transform(const WinogradShape& s, index_t first_row, index_t rows, const float* m,
                               const float* scale, const float* shift, Activation activation, float* out,
                               int num_threads);

}  // namespace hrvit
