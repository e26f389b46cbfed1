// Launcher of the fused anti-aliased activation kernel (anti_alias_activation.cu).
//
// CUDA headers only: the host layer (anti_alias_activation_host.cpp) includes this and does every
// check on tensors; the .cu file knows nothing of torch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace bigvgan_fast {

// Element type of x, of y and of the channel parameters. The math always runs in float32, with one
// rounding at the store.
enum class IoDtype : int {
  kFloat32 = 0,
  kFloat16 = 1,
  kBFloat16 = 2,
};

// y = downsample2(snake(upsample2(x))) for x of shape (rows, time_steps), rows = batch * channels
// laid out row-major (row r has channel r % channels), as docs/definition.md defines it, borders included.
//
//   x                  contiguous, `dtype` elements
//   y                  contiguous, `out_dtype` elements; must not overlap x. Instantiated pairs
//                      (dtype, out_dtype): each type to itself, float32 to bfloat16 or float16
//   alpha              (channels,) of `param_dtype`: Snake alpha (log-scale when alpha_logscale)
//   beta               (channels,) of `param_dtype` for SnakeBeta, or nullptr for Snake (b = a)
//   upsample_filter,   float32 (12,) each, on the device
//   downsample_filter
//
// Runs on `stream` and returns the launch's error (cudaSuccess when nothing had to run, i.e.
// rows == 0); cudaErrorInvalidValue for a bad argument, a pair of types included.
cudaError_t launch_anti_alias_activation(const void* x, void* y, const void* alpha, const void* beta,
                                         IoDtype param_dtype, const float* upsample_filter,
                                         const float* downsample_filter, int64_t rows, int64_t channels,
                                         int64_t time_steps, bool alpha_logscale, IoDtype dtype,
                                         IoDtype out_dtype, cudaStream_t stream);

}  // namespace bigvgan_fast
