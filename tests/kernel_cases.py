"""What the tests of the fused kernels share: fresh random inputs, parameters and filters, whether
each fused backend can run here (and why not), and one NaN-poisoned forward call per backend.

Used by tests/test_fused_forward.py (the forward of every backend against docs/definition.md),
tests/test_triton_kernel.py and tests/test_cuda_kernel.py (what only one backend has).
"""

from __future__ import annotations

import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# The Triton forward's tiles: next_power_of_2(T) clamped to [16, 1024], and for longer rows 1024 or
# 512, whichever computes fewer lanes (kernels/anti_alias_activation.py, _default_block_t).
# _MAX_BLOCK_T there; a literal here, so that this module imports where Triton does not.
TRITON_MAX_TILE = 1024
# The CUDA kernel's tile (kTile in csrc/anti_alias_activation.cu).
CUDA_TILE = 2304


def dtype_id(dtype: torch.dtype) -> str:
    """``float32`` for torch.float32: short test ids."""
    return str(dtype).split(".")[-1]


def random_input(shape, dtype, gen: torch.Generator, device=DEVICE) -> torch.Tensor:
    """3 * N(0, 1) clamped to [-10, 10] (the range docs/definition.md's tolerances cover), rounded to ``dtype``."""
    return torch.clamp(3 * torch.randn(*shape, generator=gen), -10, 10).to(dtype).to(device)


def random_parameters(channels: int, snake_beta: bool, alpha_logscale: bool, gen: torch.Generator,
                      dtype=torch.float32, device=DEVICE):
    """(alpha, beta) with distinct values per channel; beta is None for Snake. Log-scale parameters
    around 0 (a = exp(alpha) in [0.4, 2.5] mostly), linear ones in [0.5, 1.5): never the all-zero
    initial values, which would hide a swapped alpha/beta."""

    def draw():
        if alpha_logscale:
            return 0.3 * torch.randn(channels, generator=gen)
        return 0.5 + torch.rand(channels, generator=gen)

    alpha = draw().to(dtype).to(device)
    beta = draw().to(dtype).to(device) if snake_beta else None
    return alpha, beta


def published_filter(device=DEVICE) -> torch.Tensor:
    """The 12 Kaiser-sinc taps every checkpoint uses, float32, contiguous: symmetric."""
    from bigvgan_fast.anti_alias.reference import default_filter

    return default_filter(device, torch.float32).reshape(-1).contiguous()


def asymmetric_filters(gen: torch.Generator, device=DEVICE):
    """(upsample, downsample) float32 taps: the published filter plus a different asymmetric
    perturbation (0.05 N(0, 1) per tap) each. The published filter is symmetric and serves both
    steps, so with it a kernel that reversed the taps or swapped the two filters would pass."""
    taps = published_filter("cpu")
    up = taps + 0.05 * torch.randn(12, generator=gen)
    down = taps + 0.05 * torch.randn(12, generator=gen)
    return up.to(device).contiguous(), down.to(device).contiguous()


# --- which backend runs here ----------------------------------------------------------------------


def triton_problem() -> str | None:
    """Why the Triton kernels cannot run on DEVICE tensors here (policy's reason), or None."""
    from bigvgan_fast.anti_alias import policy

    return policy.problem("triton", torch.device(DEVICE).type, torch.float32, False)


def cuda_problem() -> str | None:
    """Why the CUDA op cannot run here, or None."""
    if not torch.cuda.is_available():
        return "needs a CUDA GPU (none visible to torch)"
    from bigvgan_fast.anti_alias import policy

    return policy.problem("cuda", "cuda", torch.float32, False)


# --- poisoned calls -------------------------------------------------------------------------------


def triton_forward_poisoned(x, alpha, beta, up, down, alpha_logscale, **launch) -> torch.Tensor:
    """The Triton launcher writing into a NaN-filled ``out``: an element it leaves unwritten stays
    NaN. ``launch``: block_t, num_warps, use_gather."""
    from bigvgan_fast.kernels import anti_alias_activation_forward

    out = torch.full_like(x, float("nan"))
    y = anti_alias_activation_forward(x, alpha, beta, up, down, alpha_logscale, out=out, **launch)
    assert y is out
    return y


def call_poisoned(op, x, *args, poison_dtype=None):
    """Call ``op`` after NaN-filling freed blocks of the output's size, which the caching allocator
    hands to the op's output: an element the kernel leaves unwritten stays NaN. Two blocks, because
    a non-contiguous x takes the first for its contiguous copy. ``poison_dtype``: the output's dtype
    when it is not x's (the blocks must have the output's size)."""
    dtype = x.dtype if poison_dtype is None else poison_dtype
    poison = [torch.full((x.numel(),), float("nan"), dtype=dtype, device=x.device) for _ in range(2)]
    del poison
    return op(x, *args)


def cuda_forward_poisoned(x, alpha, beta, up, down, alpha_logscale) -> torch.Tensor:
    """The CUDA op (``bigvgan_fast::anti_alias_activation_cuda``) through :func:`call_poisoned`."""
    from bigvgan_fast.anti_alias import library

    return call_poisoned(library.cuda_op(), x, alpha, beta, up, down, alpha_logscale)


POISONED_FORWARD = {"triton": triton_forward_poisoned, "cuda": cuda_forward_poisoned}


def forward_poisoned(backend: str, x, alpha, beta, up, down, alpha_logscale) -> torch.Tensor:
    """One forward of fused ``backend`` ("triton" or "cuda") on a NaN-poisoned output."""
    return POISONED_FORWARD[backend](x, alpha, beta, up, down, alpha_logscale)
