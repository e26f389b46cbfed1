// Checks of the op's channel parameters and filters, and the text of their error messages.
//
// Torch headers only (no CUDA), so that tests/test_cuda_compile.py can build these checks into a CPU
// op and run every failing case on a machine without a GPU. The host layer
// (anti_alias_activation_host.cpp) calls them before launching the kernel.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace bigvgan_fast {

constexpr int64_t kFilterTaps = 12;

// Error messages are built from integers and strings only, written here by hand; none streams a
// library type (c10::ArrayRef, c10::Device or ScalarType through operator<<). On the H200 run (torch
// 2.11.0+cu130) the one check whose message streamed param.sizes() killed the process instead of
// raising (issue 9); the same check raises cleanly under torch 2.13 on the CPU, so the cause is not
// proven: this removes the only code that check had and the passing ones lacked.

// "(4,)", "(3, 5)", "()": Python's notation for a shape.
inline std::string shape_text(at::IntArrayRef sizes) {
  std::string text = "(";
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(sizes[i]);
  }
  text += sizes.size() == 1 ? ",)" : ")";
  return text;
}

// "cpu", "cuda:0": the device as torch prints it (Device::str is an exported function returning a
// std::string, not a stream insertion).
inline std::string device_text(const at::Device& device) { return device.str(); }

inline const char* dtype_text(at::ScalarType dtype) { return c10::toString(dtype); }

// The (x, out) dtypes the kernel is instantiated for (launch_anti_alias_activation's switch): each
// dtype to itself, and Float to BFloat16 or Half. Float, Half and BFloat16 x are checked before this.
inline void check_out_dtype(at::ScalarType x_dtype, at::ScalarType out_dtype) {
  const bool instantiated =
      out_dtype == x_dtype || (x_dtype == at::kFloat && (out_dtype == at::kBFloat16 || out_dtype == at::kHalf));
  TORCH_CHECK(instantiated,
              "anti_alias_activation_cuda: out_dtype must be x's dtype, or BFloat16 or Half for Float x; got ",
              dtype_text(out_dtype), " for ", dtype_text(x_dtype), " x");
}

inline void check_channel_parameter(const at::Tensor& param, const char* name, const at::Tensor& x) {
  const int64_t channels = x.size(1);
  TORCH_CHECK(param.is_floating_point(), "anti_alias_activation_cuda: ", name,
              " must be a floating-point tensor, got ", dtype_text(param.scalar_type()));
  const bool shape_ok = param.dim() == 1 && param.size(0) == channels;
  TORCH_CHECK(shape_ok, "anti_alias_activation_cuda: ", name, " must have shape (", channels, ",) for x with ",
              channels, " channels, got ", shape_text(param.sizes()));
  TORCH_CHECK(param.device() == x.device(), "anti_alias_activation_cuda: ", name, " is on ",
              device_text(param.device()), " but x is on ", device_text(x.device()));
}

inline void check_filter(const at::Tensor& filter, const char* name, const at::Tensor& x) {
  TORCH_CHECK(filter.scalar_type() == at::kFloat, "anti_alias_activation_cuda: ", name,
              " must be float32, got ", dtype_text(filter.scalar_type()));
  TORCH_CHECK(filter.numel() == kFilterTaps, "anti_alias_activation_cuda: ", name, " must hold ", kFilterTaps,
              " taps, got shape ", shape_text(filter.sizes()));
  TORCH_CHECK(filter.device() == x.device(), "anti_alias_activation_cuda: ", name, " is on ",
              device_text(filter.device()), " but x is on ", device_text(x.device()));
}

}  // namespace bigvgan_fast
