// Host layer of the fused anti-aliased activation (kernel: anti_alias_activation.cu).
//
// Registers bigvgan_fast::anti_alias_activation_cuda with the dispatcher (schema below, CUDA
// implementation here; the fake implementation lives in bigvgan_fast/anti_alias/library.py) and
// checks every assumption the kernel makes before launching it. `import bigvgan_fast._C` loads this
// library, which runs the registrations; the module itself is empty.

#include <Python.h>

#include <ATen/ATen.h>
// c10's stream and guard headers rather than ATen/cuda/CUDAContext.h (where at::cuda::
// getCurrentCUDAStream is this same function): that one also includes cuBLAS and cuSPARSE headers,
// which a toolkit with only nvcc and the runtime lacks.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>
#include <string>

#include "anti_alias_activation.h"
#include "anti_alias_activation_checks.h"

namespace bigvgan_fast {
namespace {

IoDtype io_dtype(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return IoDtype::kFloat32;
    case at::kHalf:
      return IoDtype::kFloat16;
    case at::kBFloat16:
      return IoDtype::kBFloat16;
    default:
      TORCH_CHECK(false, "anti_alias_activation_cuda: x must be float32, float16 or bfloat16, got ", dtype_text(dtype));
  }
}

at::Tensor anti_alias_activation_cuda(const at::Tensor& x, const at::Tensor& alpha,
                                      const std::optional<at::Tensor>& beta, const at::Tensor& upsample_filter,
                                      const at::Tensor& downsample_filter, bool alpha_logscale,
                                      std::optional<at::ScalarType> out_dtype) {
  TORCH_CHECK(x.is_cuda(), "anti_alias_activation_cuda: x must be a CUDA tensor, got one on ", device_text(x.device()));
  TORCH_CHECK(x.dim() == 3, "anti_alias_activation_cuda: x must have shape (batch, channels, time), got ",
              shape_text(x.sizes()));
  const IoDtype dtype = io_dtype(x.scalar_type());
  const at::ScalarType out_scalar_type = out_dtype.value_or(x.scalar_type());
  check_out_dtype(x.scalar_type(), out_scalar_type);
  const IoDtype y_dtype = io_dtype(out_scalar_type);
  TORCH_CHECK(x.size(2) >= 1, "anti_alias_activation_cuda: x must have at least one time step, got shape ",
              shape_text(x.sizes()));
  check_channel_parameter(alpha, "alpha", x);
  if (beta.has_value()) check_channel_parameter(*beta, "beta", x);
  check_filter(upsample_filter, "upsample_filter", x);
  check_filter(downsample_filter, "downsample_filter", x);

  const c10::cuda::CUDAGuard device_guard(x.device());
  const at::Tensor x_contiguous = x.contiguous();
  // The kernel reads alpha and beta in float32, float16 or bfloat16 (one dtype for both): a model cast
  // to half precision passes its parameters as they are, with no conversion kernel per call. Other
  // dtypes (float64) and mixed pairs are converted to float32 here.
  const at::ScalarType param_type = alpha.scalar_type();
  const bool read_as_is = (param_type == at::kFloat || param_type == at::kHalf || param_type == at::kBFloat16) &&
                          (!beta.has_value() || beta->scalar_type() == param_type);
  const at::ScalarType kernel_param_type = read_as_is ? param_type : at::kFloat;
  const at::Tensor alpha_param = alpha.to(kernel_param_type).contiguous();
  const std::optional<at::Tensor> beta_param =
      beta.has_value() ? std::optional<at::Tensor>(beta->to(kernel_param_type).contiguous()) : std::nullopt;
  const at::Tensor upsample_taps = upsample_filter.contiguous();
  const at::Tensor downsample_taps = downsample_filter.contiguous();

  at::Tensor y = at::empty(x_contiguous.sizes(), x_contiguous.options().dtype(out_scalar_type));
  if (y.numel() == 0) return y;

  const cudaError_t status = launch_anti_alias_activation(
      x_contiguous.const_data_ptr(), y.mutable_data_ptr(), alpha_param.const_data_ptr(),
      beta_param.has_value() ? beta_param->const_data_ptr() : nullptr, io_dtype(kernel_param_type),
      upsample_taps.const_data_ptr<float>(), downsample_taps.const_data_ptr<float>(), x.size(0) * x.size(1),
      x.size(1), x.size(2), alpha_logscale, dtype, y_dtype, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(status == cudaSuccess, "anti_alias_activation_cuda: kernel launch failed: ", cudaGetErrorString(status));
  return y;
}

}  // namespace
}  // namespace bigvgan_fast

// The Python side defines bigvgan_fast::anti_alias_activation_triton in the same namespace, so
// this library is a fragment, not the namespace's one TORCH_LIBRARY.
TORCH_LIBRARY_FRAGMENT(bigvgan_fast, m) {
  m.def(
      "anti_alias_activation_cuda(Tensor x, Tensor alpha, Tensor? beta, Tensor upsample_filter, "
      "Tensor downsample_filter, bool alpha_logscale, ScalarType? out_dtype=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(bigvgan_fast, CUDA, m) {
  m.impl("anti_alias_activation_cuda", &bigvgan_fast::anti_alias_activation_cuda);
}

// An empty module: importing it loads this library, whose static initialisers above register the op.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "bigvgan_fast._C",  // m_name
      nullptr,            // m_doc
      -1,                 // m_size: no per-interpreter state
      nullptr,            // m_methods
      nullptr,            // m_slots
      nullptr,            // m_traverse
      nullptr,            // m_clear
      nullptr,            // m_free
  };
  return PyModule_Create(&module_def);
}
