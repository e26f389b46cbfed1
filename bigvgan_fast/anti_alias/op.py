"""The public anti-aliased activation: check the inputs, choose the backend, run it."""

from __future__ import annotations

import torch

from . import library, policy
from .reference import FILTER_TAPS, anti_alias_activation_ref, default_filter

# The fused kernels compute in float32 and take their taps in float32, whatever the I/O dtype:
# taps rounded to bfloat16 sum to 1.0011 (a DC gain error) and put about 9% of bfloat16 outputs
# more than 1 ulp off the definition.
FUSED_TAPS_DTYPE = torch.float32


def check_out_dtype(out_dtype) -> None:
    """Raise a TypeError unless ``out_dtype`` is None or a floating-point ``torch.dtype`` (which
    backend writes which: ``policy.out_dtype_problem``)."""
    if out_dtype is not None and not (isinstance(out_dtype, torch.dtype) and out_dtype.is_floating_point):
        raise TypeError(f"out_dtype must be a floating-point torch.dtype or None, got {out_dtype!r}")


def check_inputs(x, alpha, beta=None, upsample_filter=None, downsample_filter=None, out_dtype=None) -> None:
    """Raise a TypeError / ValueError naming the first argument that the op cannot take."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"x must have shape (batch, channels, time), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if x.shape[-1] < 1:
        raise ValueError(f"x must have at least one time step (T >= 1), got shape {tuple(x.shape)}")
    channels = x.shape[1]
    for name, p in (("alpha", alpha), ("beta", beta)):
        if p is None:
            continue
        if not isinstance(p, torch.Tensor) or not p.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {getattr(p, 'dtype', type(p).__name__)}")
        if p.shape != (channels,):
            raise ValueError(f"{name} must have shape ({channels},) for x with {channels} channels, got {tuple(p.shape)}")
        if p.device != x.device:
            raise ValueError(f"{name} is on {p.device} but x is on {x.device}")
    for name, f in (("upsample_filter", upsample_filter), ("downsample_filter", downsample_filter)):
        if f is None:
            continue
        if not isinstance(f, torch.Tensor) or not f.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {getattr(f, 'dtype', type(f).__name__)}")
        if f.numel() != FILTER_TAPS:
            raise ValueError(
                f"{name} must hold {FILTER_TAPS} taps, got shape {tuple(f.shape)}; "
                "other filter sizes run through the modules' reference path"
            )
        if f.device != x.device:
            raise ValueError(f"{name} is on {f.device} but x is on {x.device}")
    check_out_dtype(out_dtype)


def fused_taps(taps: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Taps as the fused ops take them: 12 contiguous float32 values on ``like``'s device."""
    if taps is None:
        return default_filter(like.device, FUSED_TAPS_DTYPE).view(-1)
    return taps.reshape(-1).to(device=like.device, dtype=FUSED_TAPS_DTYPE).contiguous()


def run(name: str, x, alpha, beta, upsample_filter, downsample_filter, alpha_logscale: bool,
        out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Run backend ``name`` (already chosen, for ``out_dtype`` too) on checked inputs."""
    if name == "torch":
        if x.numel() == 0:  # (B, 0, T) or (0, C, T): nothing to compute (F.pad refuses empty inputs)
            return torch.empty_like(x, dtype=out_dtype)
        y = anti_alias_activation_ref(
            x, alpha, beta, alpha_logscale=alpha_logscale,
            upsample_filter=upsample_filter, downsample_filter=downsample_filter,
        )
        return y if out_dtype is None else y.to(out_dtype)
    return library.fused_op(name)(
        x.contiguous(),
        alpha.contiguous(),
        None if beta is None else beta.contiguous(),
        fused_taps(upsample_filter, x),
        fused_taps(downsample_filter, x),
        bool(alpha_logscale),
        out_dtype,
    )


def anti_alias_activation(
    x: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor | None = None,
    *,
    alpha_logscale: bool = True,
    backend: str = "auto",
    upsample_filter: torch.Tensor | None = None,
    downsample_filter: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Anti-aliased Snake (``beta is None``) or SnakeBeta activation of BigVGAN (docs/definition.md).

    Args:
        x: (B, C, T) float tensor, any T >= 1; float32, float16, bfloat16 (float64 on ``"torch"``).
        alpha: (C,) per-channel frequency parameter (log-scale when ``alpha_logscale``).
        beta: (C,) per-channel magnitude parameter of SnakeBeta, or None for Snake.
        alpha_logscale: parameters are stored as logarithms (every published v2 checkpoint).
        backend: ``"auto"``, ``"torch"``, ``"triton"`` or ``"cuda"`` (see
            ``bigvgan_fast.anti_alias.policy``). An explicit backend that cannot run raises
            ``BackendUnavailableError`` with the reason.
        upsample_filter, downsample_filter: 12 taps each, on x's device; default the standard
            Kaiser-sinc taps. Only ``"torch"`` gives them gradients.
        out_dtype: the output's dtype; None: x's. ``"torch"`` writes any floating dtype (computing as
            for x, then converting); ``"triton"`` float32, float16 or bfloat16 whatever x's;
            ``"cuda"`` x's, or bfloat16 / float16 from float32 x. Another raises a ``TypeError`` on
            an explicit backend; ``"auto"`` takes the first backend that writes it. The mixed
            half-precision mode writes its float32 residual stream straight into the convolutions'
            dtype this way, with no separate cast.

    Returns:
        (B, C, T) tensor of ``out_dtype`` (x's by default); fused backends compute in float32 and
        round once, to the output's dtype.
    """
    check_inputs(x, alpha, beta, upsample_filter, downsample_filter, out_dtype)
    grad = torch.is_grad_enabled()
    needs_grad = grad and (x.requires_grad or alpha.requires_grad or (beta is not None and beta.requires_grad))
    filters_need_grad = grad and any(f is not None and f.requires_grad for f in (upsample_filter, downsample_filter))
    name = policy.choose(backend, x.device.type, x.dtype, needs_grad, filters_need_grad, out_dtype)
    return run(name, x, alpha, beta, upsample_filter, downsample_filter, alpha_logscale, out_dtype)
