// pybind11 bindings of hrvit_kernels._C. Tensors cross as integer addresses (data_ptr()); the Python
// side has validated shapes, dtypes, devices and strides. The GIL is released while a kernel runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <tuple>
#include <vector>

#include "hrvit/bf16_dot.h"
#include "hrvit/kernels/attention_to_mask.h"
#include "hrvit/kernels/cswin_attention.h"
#include "hrvit/kernels/hlg_conv_blocks.h"
#include "hrvit/kernels/hlg_attention.h"
#include "hrvit/kernels/layer_norm.h"
#include "hrvit/kernels/mixcfn.h"
#include "hrvit/kernels/resize_sum.h"
#include "hrvit/kernels/winograd.h"

namespace py = pybind11;
using hrvit::index_t;

namespace {

template <typename T>
T* ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

void mix_conv_gelu_forward(index_t batch, index_t height, index_t width, index_t channels,
                           index_t split, uintptr_t x, index_t x_sb, index_t x_sn, bool bf16, uintptr_t w3t,
                           uintptr_t b3, uintptr_t w5t, uintptr_t b5, uintptr_t out, int threads) {
  const hrvit::MixConvShape shape{batch, height, width, channels, split};
  if (bf16)
    hrvit::mix_conv_gelu_forward_bf16(shape, ptr<const hrvit::bf16_t>(x), x_sb, x_sn, ptr<const float>(w3t),
                                      ptr<const float>(b3), ptr<const float>(w5t), ptr<const float>(b5),
                                      ptr<hrvit::bf16_t>(out), threads);
  else
    hrvit::mix_conv_gelu_forward(shape, ptr<const float>(x), x_sb, x_sn, ptr<const float>(w3t),
                                 ptr<const float>(b3), ptr<const float>(w5t), ptr<const float>(b5),
                                 ptr<float>(out), threads);
}

void mix_conv_gelu_backward(index_t batch, index_t height, index_t width, index_t channels,
                            index_t split, uintptr_t x, index_t x_sb, index_t x_sn,
                            uintptr_t grad_out, index_t g_sb, index_t g_sn, uintptr_t w3t,
                            uintptr_t b3, uintptr_t w5t, uintptr_t b5, uintptr_t grad_x,
                            uintptr_t grad_w3t, uintptr_t grad_b3, uintptr_t grad_w5t,
                            uintptr_t grad_b5, int threads) {
  hrvit::mix_conv_gelu_backward(
      {batch, height, width, channels, split}, ptr<const float>(x), x_sb, x_sn,
      ptr<const float>(grad_out), g_sb, g_sn, ptr<const float>(w3t), ptr<const float>(b3),
      ptr<const float>(w5t), ptr<const float>(b5), ptr<float>(grad_x), ptr<float>(grad_w3t),
      ptr<float>(grad_b3), ptr<float>(grad_w5t), ptr<float>(grad_b5), threads);
}

void affine_gelu_inplace(index_t rows, index_t cols, uintptr_t data, uintptr_t scale, uintptr_t shift, int threads) {
  hrvit::affine_gelu_inplace(rows, cols, ptr<float>(data), ptr<const float>(scale), ptr<const float>(shift), threads);
}

void residual_affine_gelu_inplace(index_t rows, index_t cols, uintptr_t data, uintptr_t residual, uintptr_t scale,
                                  uintptr_t shift, int threads) {
  hrvit::residual_affine_gelu_inplace(rows, cols, ptr<float>(data), ptr<const float>(residual),
                                      ptr<const float>(scale), ptr<const float>(shift), threads);
}

// Addresses of 0 mean "no residual" and "do not store the sum".
void add_layer_norm_forward(index_t rows, index_t cols, uintptr_t x, bool x_bf16, index_t x_row_stride,
                            uintptr_t residual, bool residual_bf16, index_t residual_row_stride, uintptr_t weight,
                            uintptr_t bias, float eps, uintptr_t sum, bool sum_bf16, uintptr_t out, bool out_bf16,
                            int threads) {
  hrvit::add_layer_norm_forward(rows, cols, {ptr<const void>(x), x_bf16, x_row_stride},
                                {ptr<const void>(residual), residual_bf16, residual_row_stride},
                                ptr<const float>(weight), ptr<const float>(bias), eps, {ptr<void>(sum), sum_bf16},
                                {ptr<void>(out), out_bf16}, threads);
}

void depthwise_conv3_forward(index_t batch, index_t height, index_t width, index_t channels, index_t stride, bool gelu,
                             uintptr_t x, index_t x_sb, index_t x_sn, uintptr_t wt, uintptr_t bias, uintptr_t out,
                             int threads) {
  if (stride != 1 && stride != 2) throw std::invalid_argument("depthwise_conv3_forward: stride must be 1 or 2");
  hrvit::depthwise_conv3_forward({batch, height, width, channels, stride}, gelu, ptr<const float>(x), x_sb, x_sn,
                                 ptr<const float>(wt), ptr<const float>(bias), ptr<float>(out), threads);
}

hrvit::WinogradShape winograd_shape(index_t batch, index_t height, index_t width, index_t in_channels,
                                    index_t out_channels) {
  return {batch, height, width, in_channels, out_channels};
}

void winograd_filter_transform(index_t out_channels, index_t in_channels, uintptr_t w, uintptr_t u, int threads) {
  hrvit::winograd_filter_transform(out_channels, in_channels, ptr<const float>(w), ptr<float>(u), threads);
}

void winograd_input_transform(index_t batch, index_t height, index_t width, index_t in_channels, index_t first_row,
                              index_t rows, uintptr_t x, uintptr_t v, int threads) {
  hrvit::winograd_input_transform(winograd_shape(batch, height, width, in_channels, 0), first_row, rows,
                                  ptr<const float>(x), ptr<float>(v), threads);
}

void winograd_output_transform(index_t batch, index_t height, index_t width, index_t out_channels,
                               index_t first_row, index_t rows, uintptr_t m, uintptr_t scale, uintptr_t shift,
                               int activation, uintptr_t out, int threads) {
  if (activation < 0 || activation > 2)
    throw std::invalid_argument("winograd_output_transform: activation must be 0 (none), 1 (ReLU) or 2 (GELU)");
  hrvit::winograd_output_transform(winograd_shape(batch, height, width, 0, out_channels), first_row, rows,
                                   ptr<const float>(m), ptr<const float>(scale), ptr<const float>(shift),
                                   static_cast<hrvit::Activation>(activation), ptr<float>(out), threads);
}

hrvit::StripeShape stripe_shape(index_t batch, index_t height, index_t width, index_t channels,
                                index_t stripe_width, index_t heads, index_t head_dim, float scale) {
  return {batch, height, width, channels, stripe_width, heads, head_dim, scale};
}

// A token tensor crosses as (address, batch stride, token stride, is bf16).
using TokenArg = std::tuple<uintptr_t, index_t, index_t, bool>;
// A token tensor for a kernel that reads bf16 as well as fp32.
hrvit::TokenTensor fp32_or_bf16_tokens(const TokenArg& t) {
  const auto [address, sb, sn, bf16] = t;
  if (bf16) return {nullptr, sb, sn, ptr<const hrvit::bf16_t>(address)};
  return {ptr<const float>(address), sb, sn};
}
// A token tensor for a kernel that reads fp32 only.
hrvit::TokenTensor tokens(const TokenArg& t) {
  if (std::get<3>(t)) throw std::invalid_argument("this kernel reads fp32 token tensors only");
  return fp32_or_bf16_tokens(t);
}

void cswin_attention_forward(index_t batch, index_t height, index_t width, index_t channels,
                             index_t stripe_width, index_t heads, index_t head_dim, float scale,
                             const TokenArg& q, const TokenArg& k, const TokenArg& v, uintptr_t out,
                             bool out_bf16, bool bf16_dots, uintptr_t lse, int threads) {
  hrvit::cswin_attention_forward(
      stripe_shape(batch, height, width, channels, stripe_width, heads, head_dim, scale),
      fp32_or_bf16_tokens(q), fp32_or_bf16_tokens(k), fp32_or_bf16_tokens(v), ptr<void>(out), out_bf16,
      bf16_dots, ptr<float>(lse), threads);
}

void cswin_attention_backward(index_t batch, index_t height, index_t width, index_t channels,
                              index_t stripe_width, index_t heads, index_t head_dim, float scale,
                              const TokenArg& q, const TokenArg& k, const TokenArg& v,
                              const TokenArg& out, uintptr_t lse, const TokenArg& grad_out,
                              bool kv_aliased, uintptr_t grad_q, uintptr_t grad_k, uintptr_t grad_v,
                              int threads) {
  hrvit::cswin_attention_backward(
      stripe_shape(batch, height, width, channels, stripe_width, heads, head_dim, scale), tokens(q),
      tokens(k), tokens(v), tokens(out), ptr<const float>(lse), tokens(grad_out), kv_aliased,
      ptr<float>(grad_q), ptr<float>(grad_k), ptr<float>(grad_v), threads);
}

void attention_to_mask_forward(index_t batch, index_t queries, index_t keys, index_t channels,
                               index_t heads, float scale, const TokenArg& q, const TokenArg& k,
                               const TokenArg& v, uintptr_t out, bool bf16_dots, uintptr_t mask, uintptr_t lse,
                               int threads) {
  hrvit::attention_to_mask_forward({batch, queries, keys, channels, heads, scale}, fp32_or_bf16_tokens(q),
                                   fp32_or_bf16_tokens(k), fp32_or_bf16_tokens(v), ptr<void>(out), bf16_dots,
                                   ptr<float>(mask), ptr<float>(lse), threads);
}

void attention_to_mask_backward(index_t batch, index_t queries, index_t keys, index_t channels,
                                index_t heads, float scale, const TokenArg& q, const TokenArg& k,
                                const TokenArg& v, const TokenArg& out, uintptr_t lse,
                                const TokenArg& grad_out, uintptr_t grad_mask, uintptr_t grad_q,
                                uintptr_t grad_k, uintptr_t grad_v, int threads) {
  hrvit::attention_to_mask_backward({batch, queries, keys, channels, heads, scale}, tokens(q), tokens(k),
                                    tokens(v), tokens(out), ptr<const float>(lse), tokens(grad_out),
                                    ptr<const float>(grad_mask), ptr<float>(grad_q), ptr<float>(grad_k),
                                    ptr<float>(grad_v), threads);
}

void hlg_local_attention_forward(index_t batch, index_t height, index_t width, index_t channels, index_t heads,
                                 bool dilated, float scale, const TokenArg& q, const TokenArg& v, uintptr_t bias,
                                 uintptr_t out, uintptr_t lse, int threads) {
  hrvit::hlg_local_attention_forward({batch, height, width, channels, heads, dilated, scale}, tokens(q), tokens(v),
                                     ptr<const float>(bias), ptr<float>(out), ptr<float>(lse), threads);
}

void hlg_local_attention_backward(index_t batch, index_t height, index_t width, index_t channels, index_t heads,
                                  bool dilated, float scale, const TokenArg& q, const TokenArg& v,
                                  const TokenArg& out, uintptr_t lse, const TokenArg& grad_out, uintptr_t bias,
                                  uintptr_t grad_q, uintptr_t grad_v, uintptr_t grad_bias, int threads) {
  hrvit::hlg_local_attention_backward({batch, height, width, channels, heads, dilated, scale}, tokens(q), tokens(v),
                                      tokens(out), ptr<const float>(lse), tokens(grad_out), ptr<const float>(bias),
                                      ptr<float>(grad_q), ptr<float>(grad_v), ptr<float>(grad_bias), threads);
}

void hlg_global_attention_forward(index_t batch, index_t height, index_t width, index_t keys, index_t channels,
                                  index_t heads, index_t grid_height, index_t grid_width, index_t table_size,
                                  float scale, const TokenArg& q, const TokenArg& k, const TokenArg& v,
                                  uintptr_t table, uintptr_t out, uintptr_t lse, int threads) {
  hrvit::hlg_global_attention_forward({batch, height, width, keys, channels, heads, grid_height, grid_width,
                                       table_size, scale}, tokens(q), tokens(k),
                                      tokens(v), ptr<const float>(table), ptr<float>(out), ptr<float>(lse), threads);
}

void hlg_global_attention_backward(index_t batch, index_t height, index_t width, index_t keys, index_t channels,
                                   index_t heads, index_t grid_height, index_t grid_width, index_t table_size,
                                   float scale, const TokenArg& q, const TokenArg& k, const TokenArg& v,
                                   const TokenArg& out, uintptr_t lse, const TokenArg& grad_out, uintptr_t table,
                                   uintptr_t grad_q, uintptr_t grad_k, uintptr_t grad_v, uintptr_t grad_table,
                                   int threads) {
  hrvit::hlg_global_attention_backward({batch, height, width, keys, channels, heads, grid_height, grid_width,
                                        table_size, scale}, tokens(q), tokens(k),
                                       tokens(v), tokens(out), ptr<const float>(lse), tokens(grad_out),
                                       ptr<const float>(table), ptr<float>(grad_q), ptr<float>(grad_k),
                                       ptr<float>(grad_v), ptr<float>(grad_table), threads);
}

// Each map crosses as (address, is bf16, height, width): `planes` contiguous fp32 or bf16 planes.
using ResizeArg = std::tuple<uintptr_t, bool, index_t, index_t>;

void resize_sum_forward(index_t planes, index_t height, index_t width,
                        const std::vector<ResizeArg>& maps, uintptr_t out, bool out_bf16, int threads) {
  std::vector<hrvit::ResizeSource> sources;
  for (const auto& [address, bf16, map_height, map_width] : maps)
    sources.push_back({ptr<const void>(address), bf16, map_height, map_width});
  hrvit::resize_sum_forward(planes, height, width, sources.data(), static_cast<int>(sources.size()),
                            ptr<void>(out), out_bf16, threads);
}

void resize_backward(index_t planes, index_t height, index_t width, uintptr_t grad_out,
                     index_t map_height, index_t map_width, uintptr_t grad_map, int threads) {
  hrvit::resize_backward(planes, height, width, ptr<const float>(grad_out), map_height, map_width,
                         ptr<float>(grad_map), threads);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "hrvit_kernels CPU kernels (fp32, OpenMP); see hrvit_kernels/ops/*/cpu.py";
#ifdef _OPENMP
  m.attr("has_openmp") = true;
#else
  m.attr("has_openmp") = false;
#endif
  const auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def("mix_conv_gelu_forward", &mix_conv_gelu_forward, nogil);
  m.def("mix_conv_gelu_backward", &mix_conv_gelu_backward, nogil);
  m.def("affine_gelu_inplace", &affine_gelu_inplace, nogil);
  m.def("residual_affine_gelu_inplace", &residual_affine_gelu_inplace, nogil);
  m.def("depthwise_conv3_forward", &depthwise_conv3_forward, nogil);
  m.def("add_layer_norm_forward", &add_layer_norm_forward, nogil);
  m.def("winograd_filter_transform", &winograd_filter_transform, nogil);
  m.def("winograd_input_transform", &winograd_input_transform, nogil);
  m.def("winograd_output_transform", &winograd_output_transform, nogil);
  m.def("cswin_attention_forward", &cswin_attention_forward, nogil);
  m.def("cswin_attention_backward", &cswin_attention_backward, nogil);
  m.def("attention_to_mask_forward", &attention_to_mask_forward, nogil);
  m.def("attention_to_mask_backward", &attention_to_mask_backward, nogil);
  m.def("hlg_local_attention_forward", &hlg_local_attention_forward, nogil);
  m.def("hlg_local_attention_backward", &hlg_local_attention_backward, nogil);
  m.def("hlg_global_attention_forward", &hlg_global_attention_forward, nogil);
  m.def("hlg_global_attention_backward", &hlg_global_attention_backward, nogil);
  m.def("has_bf16_dot_products", &hrvit::cpu_has_bf16_dot,
        "whether this build has bf16 matrix products and this CPU runs them (AVX-512-BF16)");
  m.def("resize_sum_forward", &resize_sum_forward, nogil);
  m.def("resize_backward", &resize_backward, nogil);
}
