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

_cuda_fake_registered = False


def _cuda_op():
    global _cuda_fake_registered
    import bigvgan_fast._C  # noqa: F401  (registers the op with the dispatcher)

    if not _cuda_fake_registered:
        torch.library.register_fake("bigvgan_fast::anti_alias_activation_cuda")(_fake)
        _cuda_fake_registered = True
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
