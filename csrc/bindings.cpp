// pybind11 bindings of hrvit_kernels._C. Tensors cross as integer addresses (data_ptr()); the Python
// side has validated shapes, dtypes, devices and strides. The GIL is released while a kernel runs.
#include <pybind11/pybind11.h>

#include "hrvit/kernels.h"

namespace py = pybind11;
using hrvit::index_t;

namespace {

template <typename T>
T* ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

void mix_conv_gelu_forward(index_t batch, index_t height, index_t width, index_t channels,
                           index_t split, uintptr_t x, index_t x_sb, index_t x_sn, uintptr_t w3t,
                           uintptr_t b3, uintptr_t w5t, uintptr_t b5, uintptr_t out, int threads) {
  hrvit::mix_conv_gelu_forward({batch, height, width, channels, split}, ptr<const float>(x), x_sb,
                               x_sn, ptr<const float>(w3t), ptr<const float>(b3),
                               ptr<const float>(w5t), ptr<const float>(b5), ptr<float>(out), threads);
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
}
