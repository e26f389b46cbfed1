"""The anti-aliased activation: 2x upsample -> Snake / SnakeBeta -> 2x downsample.

``anti_alias_activation`` is the one entry point. It picks a backend (``bigvgan_fast.dispatch``)
and runs either the reference path below, which is the published definition written with
PyTorch ops and is never optimised, or a fused kernel (``bigvgan_fast.kernels`` for Triton,
``csrc/`` for CUDA) that every test checks against it.

Definition (SPEC.md), for x of shape (B, C, T) and per-channel alpha (and beta) of shape (C,):

1. u = 2 * conv_transpose1d(replicate_pad(x, 5), f, stride=2)[15 : 15 + 2T]
2. z = u + sin(a*u)^2 / (b + 1e-9), a = exp(alpha) (or alpha), b = exp(beta) (or beta, or a)
3. y = conv1d(replicate_pad(z, (5, 6)), f, stride=2)

f is the 12-tap Kaiser-windowed sinc low-pass filter of :func:`kaiser_sinc_filter1d`.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

SNAKE_EPS = 1e-9
FILTER_TAPS = 12
RATIO = 2


def kaiser_sinc_filter1d(
    cutoff: float, half_width: float, kernel_size: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass filter of shape (1, 1, kernel_size), normalised to sum 1.

    Computed in float64 and rounded once to ``dtype`` (the goldens' taps are float64).
    """
    even = kernel_size % 2 == 0
    half_size = kernel_size // 2
    delta_f = 4 * half_width
    attenuation = 2.285 * (half_size - 1) * math.pi * delta_f + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    f64 = torch.float64
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False, dtype=f64)
    time = torch.arange(-half_size, half_size, dtype=f64) + 0.5 if even else torch.arange(kernel_size, dtype=f64) - half_size
    if cutoff == 0:
        return torch.zeros(1, 1, kernel_size, dtype=dtype)
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (taps / taps.sum()).view(1, 1, kernel_size).to(dtype)


@functools.lru_cache(maxsize=None)
def _default_filter(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return kaiser_sinc_filter1d(0.5 / RATIO, 0.6 / RATIO, FILTER_TAPS, dtype).to(device)


def default_filter(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 12-tap filter every BigVGAN activation uses for up- and downsampling, shape (1, 1, 12)."""
    return _default_filter(torch.device(device), dtype)


# --- the reference path: the official module math, one function per step ------------------------


def upsample_ref(x: torch.Tensor, filt: torch.Tensor, ratio: int = RATIO) -> torch.Tensor:
    """Replicate-pad, transposed convolution with ``filt`` (1, 1, K), times ``ratio``, crop."""
    kernel_size = filt.shape[-1]
    pad = kernel_size // ratio - 1
    pad_left = pad * ratio + (kernel_size - ratio) // 2
    pad_right = pad * ratio + (kernel_size - ratio + 1) // 2
    channels = x.shape[1]
    x = F.pad(x, (pad, pad), mode="replicate")
    x = ratio * F.conv_transpose1d(x, filt.to(x.dtype).expand(channels, -1, -1), stride=ratio, groups=channels)
    return x[..., pad_left : x.shape[-1] - pad_right]


def downsample_ref(x: torch.Tensor, filt: torch.Tensor, ratio: int = RATIO) -> torch.Tensor:
    """Replicate-pad by (K/2 - 1, K/2) (even K), convolution with ``filt`` (1, 1, K), stride ``ratio``."""
    kernel_size = filt.shape[-1]
    even = kernel_size % 2 == 0
    channels = x.shape[1]
    x = F.pad(x, (kernel_size // 2 - int(even), kernel_size // 2), mode="replicate")
    return F.conv1d(x, filt.to(x.dtype).expand(channels, -1, -1), stride=ratio, groups=channels)


def snake_ref(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor | None, alpha_logscale: bool) -> torch.Tensor:
    """Snake (``beta is None``) or SnakeBeta, per channel of dim 1."""
    alpha = alpha.unsqueeze(0).unsqueeze(-1)
    beta = alpha if beta is None else beta.unsqueeze(0).unsqueeze(-1)
    if alpha_logscale:
        alpha = torch.exp(alpha)
        beta = torch.exp(beta)
    return x + (1.0 / (beta + SNAKE_EPS)) * torch.pow(torch.sin(x * alpha), 2)


def anti_alias_activation_ref(
    x: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor | None = None,
    *,
    alpha_logscale: bool = True,
    upsample_filter: torch.Tensor | None = None,
    downsample_filter: torch.Tensor | None = None,
    upcast: bool = False,
) -> torch.Tensor:
    """The reference path. With ``upcast`` the math runs in float32 (float64 stays float64)."""
    out_dtype = x.dtype
    if upcast and x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    up_f = default_filter(x.device, x.dtype) if upsample_filter is None else upsample_filter.view(1, 1, -1)
    down_f = default_filter(x.device, x.dtype) if downsample_filter is None else downsample_filter.view(1, 1, -1)
    alpha = alpha.to(x.dtype)
    beta = None if beta is None else beta.to(x.dtype)
    y = downsample_ref(snake_ref(upsample_ref(x, up_f), alpha, beta, alpha_logscale), down_f)
    return y.to(out_dtype)


# --- the public op -------------------------------------------------------------------------------


def _check_inputs(x, alpha, beta, upsample_filter, downsample_filter) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"x must have shape (batch, channels, time), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if x.shape[-1] < 1:
        raise ValueError("x must have at least one time step (T >= 1)")
    channels = x.shape[1]
    for name, p in (("alpha", alpha), ("beta", beta)):
        if p is None:
            continue
        if not isinstance(p, torch.Tensor) or not p.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor")
        if p.shape != (channels,):
            raise ValueError(f"{name} must have shape ({channels},) for x with {channels} channels, got {tuple(p.shape)}")
        if p.device != x.device:
            raise ValueError(f"{name} is on {p.device} but x is on {x.device}")
    for name, f in (("upsample_filter", upsample_filter), ("downsample_filter", downsample_filter)):
        if f is not None and f.numel() != FILTER_TAPS:
            raise ValueError(
                f"{name} must hold {FILTER_TAPS} taps, got shape {tuple(f.shape)}; "
                "other filter sizes run through the modules' reference path"
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
) -> torch.Tensor:
    """Anti-aliased Snake (``beta is None``) or SnakeBeta activation of BigVGAN.

    Args:
        x: (B, C, T) float tensor, any T >= 1; float32, float16, bfloat16 (float64 on ``"torch"``).
        alpha: (C,) per-channel frequency parameter (log-scale when ``alpha_logscale``).
        beta: (C,) per-channel magnitude parameter of SnakeBeta, or None for Snake.
        alpha_logscale: parameters are stored as logarithms (every published v2 checkpoint).
        backend: ``"auto"``, ``"torch"``, ``"triton"`` or ``"cuda"`` (see ``bigvgan_fast.dispatch``).
            An explicit backend that cannot run raises ``BackendUnavailableError`` with the reason.
        upsample_filter, downsample_filter: 12 taps each; default the standard Kaiser-sinc taps.

    Returns:
        (B, C, T) tensor of the dtype of ``x``; fused backends compute in float32 and round once.
    """
    from . import dispatch

    _check_inputs(x, alpha, beta, upsample_filter, downsample_filter)
    name = dispatch.resolve(backend, x, alpha, beta)
    if name == "torch":
        return anti_alias_activation_ref(
            x,
            alpha,
            beta,
            alpha_logscale=alpha_logscale,
            upsample_filter=upsample_filter,
            downsample_filter=downsample_filter,
        )
    up_f = default_filter(x.device, torch.float32) if upsample_filter is None else upsample_filter
    down_f = default_filter(x.device, torch.float32) if downsample_filter is None else downsample_filter
    return dispatch.run_fused(name, x, alpha, beta, up_f, down_f, alpha_logscale)
