"""SPEC.md's definition of the anti-aliased activation, evaluated in float64 by direct indexing.

Written independently of the package's reference path (which uses convolutions), so that the
reference, the goldens and every fused kernel are all checked against the same text.
"""

from __future__ import annotations

import math

import torch


def spec_filter() -> torch.Tensor:
    """The 12 Kaiser-sinc taps from SPEC.md, float64."""
    half, cutoff, half_width = 6, 0.25, 0.3
    delta_f = 4 * half_width
    A = 2.285 * (half - 1) * math.pi * delta_f + 7.95
    if A > 50:
        beta = 0.1102 * (A - 8.7)
    elif A >= 21:
        beta = 0.5842 * (A - 21) ** 0.4 + 0.07886 * (A - 21)
    else:
        beta = 0.0
    window = torch.kaiser_window(12, periodic=False, beta=beta, dtype=torch.float64)
    time = torch.arange(-6, 6, dtype=torch.float64) + 0.5
    f = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return f / f.sum()


def definition(x, alpha, beta=None, alpha_logscale=True, up_filter=None, down_filter=None) -> torch.Tensor:
    """y = down(act(up(x))) in float64 by the index formulas of SPEC.md; returns float64."""
    x = x.detach().to(torch.float64).cpu()
    f_up = (spec_filter() if up_filter is None else up_filter.detach().reshape(-1)).to(torch.float64).cpu()
    f_down = (spec_filter() if down_filter is None else down_filter.detach().reshape(-1)).to(torch.float64).cpu()
    T = x.shape[-1]
    n = torch.arange(2 * T)
    u = torch.zeros(*x.shape[:-1], 2 * T, dtype=torch.float64)
    for k in range(12):
        use = (n + 15 - k) % 2 == 0
        src = torch.clamp(torch.div(n + 15 - k, 2, rounding_mode="floor") - 5, 0, T - 1)
        u += torch.where(use, f_up[k] * x[..., src], torch.zeros((), dtype=torch.float64))
    u = 2 * u
    a = alpha.detach().to(torch.float64).cpu()[None, :, None]
    b = a if beta is None else beta.detach().to(torch.float64).cpu()[None, :, None]
    if alpha_logscale:
        a, b = torch.exp(a), torch.exp(b)
    z = u + 1.0 / (b + 1e-9) * torch.sin(a * u) ** 2
    t = torch.arange(T)
    y = torch.zeros_like(x)
    for k in range(12):
        y += f_down[k] * z[..., torch.clamp(2 * t + k - 5, 0, 2 * T - 1)]
    return y


def ulp_distance(actual: torch.Tensor, expected_f64: torch.Tensor) -> torch.Tensor:
    """|actual - round(expected)| in units of the last place of actual's dtype at the expected value."""
    rounded = expected_f64.to(actual.dtype).to(torch.float64)
    ulp = torch.finfo(actual.dtype).eps * torch.clamp(
        torch.exp2(torch.floor(torch.log2(rounded.abs()))), min=torch.finfo(actual.dtype).tiny
    )
    return (actual.to(torch.float64).cpu() - rounded.cpu()).abs() / ulp.cpu()


def describe_mismatch(actual: torch.Tensor, expected: torch.Tensor, tol: torch.Tensor | float) -> str:
    """Where ``actual`` is off: count, first indices, worst error, NaN agreement."""
    actual = actual.detach().to(torch.float64).cpu()
    expected = expected.detach().to(torch.float64).cpu()
    err = (actual - expected).abs()
    bad = ~(err <= tol)
    idx = bad.nonzero()[:5].tolist()
    return (
        f"{int(bad.sum())} of {bad.numel()} elements off (first at {idx}); max |err| = {err.nan_to_num(float('inf')).max():.3g}; "
        f"NaN in actual: {int(actual.isnan().sum())}, in expected: {int(expected.isnan().sum())}"
    )
