"""The fused anti-aliased activation as ``torch.library`` ops.

Both fused backends share one schema, so ``torch.compile(fullgraph=True)`` and CUDA-graph capture
see one opaque op per activation:

    (Tensor x, Tensor alpha, Tensor? beta, Tensor upsample_filter, Tensor downsample_filter,
     bool alpha_logscale) -> Tensor

- ``bigvgan_fast::anti_alias_activation_triton``: defined here, implemented by
  ``bigvgan_fast.kernels.anti_alias_activation_forward``.
- ``bigvgan_fast::anti_alias_activation_cuda``: defined and implemented in C++ by the extension
  ``bigvgan_fast._C`` (``csrc/``); its fake implementation is registered here.

The ops take contiguous inputs: :func:`fused` makes them so once, with float32 filters.

Training: both forward ops share one autograd formula, the Triton backward op
``bigvgan_fast::anti_alias_activation_triton_backward``, which saves only x and the parameters and
recomputes the upsampled signal (the CUDA forward pairs with it).
"""

from __future__ import annotations

import torch


def _fake(x, alpha, beta, upsample_filter, downsample_filter, alpha_logscale):
    torch._check(x.dim() == 3, lambda: "x must have shape (batch, channels, time)")
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("bigvgan_fast::anti_alias_activation_triton", mutates_args=())
def anti_alias_activation_triton(
    x: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor | None,
    upsample_filter: torch.Tensor,
    downsample_filter: torch.Tensor,
    alpha_logscale: bool,
) -> torch.Tensor:
    from bigvgan_fast.kernels import anti_alias_activation_forward

    return anti_alias_activation_forward(x, alpha, beta, upsample_filter, downsample_filter, alpha_logscale)


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


def _setup_context(ctx, inputs, output):
    x, alpha, beta, upsample_filter, downsample_filter, alpha_logscale = inputs
    ctx.save_for_backward(x, alpha, beta, upsample_filter, downsample_filter)
    ctx.alpha_logscale = alpha_logscale


def _backward(ctx, grad_y):
    x, alpha, beta, upsample_filter, downsample_filter = ctx.saved_tensors
    needs_alpha, needs_beta = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
    grad_x, grad_alpha, grad_beta = anti_alias_activation_triton_backward(
        grad_y, x, alpha, beta, upsample_filter, downsample_filter, ctx.alpha_logscale, needs_alpha, needs_beta
    )
    return grad_x, grad_alpha if needs_alpha else None, grad_beta if needs_beta else None, None, None, None


anti_alias_activation_triton.register_autograd(_backward, setup_context=_setup_context)

def _register_cuda_op() -> bool:
    """Load the CUDA extension (its C++ registers the op) and give the op its fake implementation and
    autograd formula. Done at import, never inside a traced function: torch.compile must not meet
    the registration calls."""
    try:
        import bigvgan_fast._C  # noqa: F401
    except Exception:  # not built, or built for another torch: dispatch reports the import error
        return False
    torch.library.register_fake("bigvgan_fast::anti_alias_activation_cuda")(_fake)
    torch.library.register_autograd("bigvgan_fast::anti_alias_activation_cuda", _backward, setup_context=_setup_context)
    return True


CUDA_OP_REGISTERED = _register_cuda_op()


def _cuda_op():
    if not CUDA_OP_REGISTERED:
        import bigvgan_fast._C  # noqa: F401  (raises the import error)
    return torch.ops.bigvgan_fast.anti_alias_activation_cuda.default


def fused(name, x, alpha, beta, upsample_filter, downsample_filter, alpha_logscale: bool) -> torch.Tensor:
    """Run the fused op of backend ``name`` ("triton" or "cuda")."""
    args = (
        x.contiguous(),
        alpha.contiguous(),
        None if beta is None else beta.contiguous(),
        upsample_filter.reshape(-1).to(device=x.device, dtype=torch.float32).contiguous(),
        downsample_filter.reshape(-1).to(device=x.device, dtype=torch.float32).contiguous(),
        bool(alpha_logscale),
    )
    if name == "triton":
        return anti_alias_activation_triton(*args)
    if name == "cuda":
        return _cuda_op()(*args)
    raise ValueError(f"{name!r} is not a fused backend")
