"""The anti-aliased activation's definition, written with PyTorch ops: the reference path.

Short, obviously equal to ``docs/definition.md`` and never optimised; it knows no backend. Every
fused kernel is tested against a float64 evaluation of the same definition.

For x of shape (B, C, T) and per-channel alpha (and beta) of shape (C,):

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
