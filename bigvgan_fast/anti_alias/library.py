"""The fused anti-aliased activation as ``torch.library`` ops: the only module that imports the
Triton kernels (``bigvgan_fast.kernels``) and the CUDA extension (``bigvgan_fast._C``).

Both fused backends share one schema, so ``torch.compile(fullgraph=True)`` and CUDA-graph capture
see one opaque op per activation:

    (Tensor x, Tensor alpha, Tensor? beta, Tensor upsample_filter, Tensor downsample_filter,
     bool alpha_logscale, ScalarType? out_dtype=None) -> Tensor

``out_dtype`` (None: x's) is the output's dtype: float32 math, one rounding at the store, so the
mixed half-precision mode's float32 residual stream is written straight into its convolutions'
bfloat16 / float16 without a separate cast. Triton writes any of float32, float16, bfloat16 from
any of them; the CUDA kernel is instantiated for each dtype to itself and float32 -> bfloat16 /
float16 (``policy.out_dtype_problem`` says so before a call).

- ``bigvgan_fast::anti_alias_activation_triton``: defined here, implemented by
  ``bigvgan_fast.kernels.anti_alias_activation_forward``.
- ``bigvgan_fast::anti_alias_activation_cuda``: defined and implemented in C++ by the extension
  (``csrc/``); its fake implementation and autograd formula are registered here, at import.

Training: both forward ops share one autograd formula, the Triton backward op
``bigvgan_fast::anti_alias_activation_triton_backward``, which saves only x and the parameters and
recomputes the upsampled signal (the CUDA forward pairs with it). grad_y may come in the output's
dtype (the backward reads it as float32); grad_x is x's. The backward op itself has no derivative:
double backward raises :class:`DoubleBackwardError`, naming the backend that has one.

What cannot be imported is kept as a reason (:func:`triton_import_problem`,
:data:`CUDA_IMPORT_PROBLEM`) for the backend table to report; nothing here raises at import.
"""

from __future__ import annotations

import functools

import torch


def _import_problem(module: str) -> str | None:
    import importlib

    try:
        importlib.import_module(module)
    except Exception as err:  # an import failure is a reason to report, whatever its type
        return f"{module} cannot be imported ({type(err).__name__}: {err})"
    return None


class DoubleBackwardError(RuntimeError):
    """A second derivative was asked of a fused op."""


# --- Triton ----------------------------------------------------------------------------------------


def _fake(x, alpha, beta, upsample_filter, downsample_filter, alpha_logscale, out_dtype=None):
    torch._check(x.dim() == 3, lambda: "x must have shape (batch, channels, time)")
    return torch.empty_like(x, dtype=out_dtype, memory_format=torch.contiguous_format)


@torch.library.custom_op("bigvgan_fast::anti_alias_activation_triton", mutates_args=())
def anti_alias_activation_triton(
    x: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor | None,
    upsample_filter: torch.Tensor,
    downsample_filter: torch.Tensor,
    alpha_logscale: bool,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    from bigvgan_fast.kernels import anti_alias_activation_forward

    return anti_alias_activation_forward(x, alpha, beta, upsample_filter, downsample_filter, alpha_logscale,
                                         out_dtype=out_dtype)


anti_alias_activation_triton.register_fake(_fake)


@torch.library.custom_op("bigvgan_fast::anti_alias_activation_triton_backward", mutates_args=())
def anti_alias_activation_triton_backward(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor | None,
    upsample_filter: torch.Tensor,
    downsample_filter: torch.Tensor,
    alpha_logscale: bool,
    needs_alpha_grad: bool,
    needs_beta_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad_x, grad_alpha, grad_beta); a parameter gradient that is not needed (and grad_beta for
    Snake, ``beta is None``) comes back empty, and its reduction is skipped."""
    from bigvgan_fast.kernels import anti_alias_activation_backward

    grad_x, grad_alpha, grad_beta = anti_alias_activation_backward(
        grad_y.contiguous(), x, alpha, beta, upsample_filter, downsample_filter, alpha_logscale,
        needs_alpha_grad, needs_beta_grad and beta is not None,
    )
    return (
        grad_x,
        alpha.new_empty(0) if grad_alpha is None else grad_alpha,  # two empties: outputs may not alias
        alpha.new_empty(0) if grad_beta is None else grad_beta,
    )


@anti_alias_activation_triton_backward.register_fake
def _backward_fake(grad_y, x, alpha, beta, upsample_filter, downsample_filter, alpha_logscale, needs_alpha_grad, needs_beta_grad):
    grad_alpha = torch.empty_like(alpha) if needs_alpha_grad else alpha.new_empty(0)
    grad_beta = torch.empty_like(beta) if beta is not None and needs_beta_grad else alpha.new_empty(0)
    return torch.empty_like(x, memory_format=torch.contiguous_format), grad_alpha, grad_beta


def _no_double_backward(ctx, *grads):
    raise DoubleBackwardError(
        "double backward (a gradient of a gradient, e.g. create_graph=True then backward again) is not "
        "supported by the fused backends 'triton' and 'cuda'; run the activation on backend='torch', "
        "which supports it"
    )


anti_alias_activation_triton_backward.register_autograd(_no_double_backward, setup_context=lambda ctx, inputs, output: None)


def _setup_context(ctx, inputs, output):
    x, alpha, beta, upsample_filter, downsample_filter, alpha_logscale = inputs[:6]
    ctx.save_for_backward(x, alpha, beta, upsample_filter, downsample_filter)
    ctx.alpha_logscale = alpha_logscale


def _backward(ctx, grad_y):
    x, alpha, beta, upsample_filter, downsample_filter = ctx.saved_tensors
    needs_alpha, needs_beta = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
    grad_x, grad_alpha, grad_beta = anti_alias_activation_triton_backward(
        grad_y, x, alpha, beta, upsample_filter, downsample_filter, ctx.alpha_logscale, needs_alpha, needs_beta
    )
    return grad_x, grad_alpha if needs_alpha else None, grad_beta if needs_beta else None, None, None, None, None


anti_alias_activation_triton.register_autograd(_backward, setup_context=_setup_context)

@functools.lru_cache(maxsize=None)
def triton_import_problem() -> str | None:
    """Why the Triton kernels cannot be imported, or None. Asked lazily, not at import: importing
    Triton costs time, and TRITON_INTERPRET must be set before the kernels are first imported."""
    problem = _import_problem("triton")
    if problem is not None:
        return problem + "; pip install triton"
    return _import_problem("bigvgan_fast.kernels")


# --- CUDA ------------------------------------------------------------------------------------------


def _register_cuda_op() -> str | None:
    """Load the CUDA extension (its C++ registers the op) and give the op its fake implementation and
    autograd formula. Done at import, never inside a traced function: torch.compile must not meet
    the registration calls. Returns why the extension does not load, or None."""
    problem = _import_problem("bigvgan_fast._C")
    if problem is not None:
        return problem
    torch.library.register_fake("bigvgan_fast::anti_alias_activation_cuda")(_fake)
    torch.library.register_autograd("bigvgan_fast::anti_alias_activation_cuda", _backward, setup_context=_setup_context)
    return None


CUDA_IMPORT_PROBLEM = _register_cuda_op()


def cuda_op():
    """``torch.ops.bigvgan_fast.anti_alias_activation_cuda.default`` (raises the import error if absent)."""
    if CUDA_IMPORT_PROBLEM is not None:
        import bigvgan_fast._C  # noqa: F401  (raises the import error)
    return torch.ops.bigvgan_fast.anti_alias_activation_cuda.default


def fused_op(name: str):
    """The op of fused backend ``name`` ("triton" or "cuda"), with autograd."""
    if name == "triton":
        return anti_alias_activation_triton
    if name == "cuda":
        return cuda_op()
    raise ValueError(f"{name!r} is not a fused backend")


def inference_launcher(name: str, device: torch.device, dtype: torch.dtype, has_beta: bool, alpha_logscale: bool,
                       param_dtype: torch.dtype, out_dtype: torch.dtype | None = None):
    """The leanest call of fused backend ``name`` for inference (no autograd):
    ``run(x, alpha, beta, upsample_filter, downsample_filter) -> y`` for contiguous inputs of the
    given dtypes on ``device`` (the caller prepares them so once), y of ``out_dtype`` (None: x's;
    a pair the backend writes, see ``policy.out_dtype_problem``).

    cuda: the C++ op itself (under ``torch.inference_mode`` the dispatcher goes straight to its CUDA
    kernel). triton: ``bigvgan_fast.kernels.prepared_forward``, a launch of the kernel compiled once
    for this configuration, without the custom op's Python dispatch or Triton's per-call binding.
    """
    if name == "cuda":
        op = cuda_op()
        return lambda x, alpha, beta, up, down: op(x, alpha, beta, up, down, alpha_logscale, out_dtype)
    if name == "triton":
        from bigvgan_fast import kernels

        out_dtype = dtype if out_dtype is None else out_dtype
        launch = kernels.prepared_forward(dtype, has_beta, alpha_logscale, device, param_dtype=param_dtype,
                                          out_dtype=out_dtype)
        return lambda x, alpha, beta, up, down: launch(x, torch.empty_like(x, dtype=out_dtype), alpha, beta, up, down)
    raise ValueError(f"{name!r} is not a fused backend")
