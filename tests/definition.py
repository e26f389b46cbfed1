"""the definition (docs/definition.md) of the anti-aliased activation, evaluated in float64 by direct indexing.

Written independently of the package's reference path (which uses convolutions), so that the
reference, the goldens and every fused kernel are all checked against the same text.
"""

from __future__ import annotations

import math

import torch


def spec_filter() -> torch.Tensor:
    """The 12 Kaiser-sinc taps from docs/definition.md, float64."""
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


def upsampled(x, up_filter=None, dtype=torch.float64) -> torch.Tensor:
    """u of docs/definition.md (the 2x upsample, borders included), evaluated in ``dtype`` on the CPU."""
    x = x.detach().to(dtype).cpu()
    f_up = (spec_filter() if up_filter is None else up_filter.detach().reshape(-1)).to(dtype).cpu()
    T = x.shape[-1]
    n = torch.arange(2 * T)
    u = torch.zeros(*x.shape[:-1], 2 * T, dtype=dtype)
    for k in range(12):
        use = (n + 15 - k) % 2 == 0
        src = torch.clamp(torch.div(n + 15 - k, 2, rounding_mode="floor") - 5, 0, T - 1)
        u += torch.where(use, f_up[k] * x[..., src], torch.zeros((), dtype=dtype))
    return 2 * u


def definition(x, alpha, beta=None, alpha_logscale=True, up_filter=None, down_filter=None, dtype=torch.float64) -> torch.Tensor:
    """y = down(act(up(x))) by the index formulas of docs/definition.md, evaluated in ``dtype``
    (float64: the yardstick of every test; float32: what a float32 evaluation with a precise sine
    gives, for arguments too large for float32 to meet the absolute tolerances)."""
    f_down = (spec_filter() if down_filter is None else down_filter.detach().reshape(-1)).to(dtype).cpu()
    u = upsampled(x, up_filter, dtype)
    T = x.shape[-1]
    a = alpha.detach().to(dtype).cpu()[None, :, None]
    b = a if beta is None else beta.detach().to(dtype).cpu()[None, :, None]
    if alpha_logscale:
        a, b = torch.exp(a), torch.exp(b)
    z = u + 1.0 / (b + 1e-9) * torch.sin(a * u) ** 2
    t = torch.arange(T)
    y = torch.zeros(*x.shape, dtype=dtype)
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


# docs/definition.md's standards (section 4) for a fused kernel's output against the float64 definition.
FLOAT32_ATOL = 2e-5
FLOAT32_REL_L2 = 1e-6
# Float32 math is off the exact result by up to ~2e-6 on |x| <= 10 (cancellation between the ~10x
# larger upsampled samples; the float32 tests see 1.8e-6 at most). Where a half-precision output's
# ulp is finer than that (|y| below ~2e-3 in float16, ~3e-4 in bfloat16), the definition's "1 ulp" cannot be
# met by any float32 computation, so such samples may be off by this much on top of the 1 ulp.
FLOAT32_MATH_ERROR = 4e-6


def assert_close_to_definition(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """float32: every sample within 2e-5 and relative L2 <= 1e-6; float16 / bfloat16: at most 1 ulp
    (plus FLOAT32_MATH_ERROR) from ``expected`` rounded to the output dtype. NaN never passes."""
    values = actual.detach().to(torch.float64).cpu()
    expected = expected.detach().to(torch.float64).cpu()
    assert values.shape == expected.shape, f"shape {tuple(values.shape)} != {tuple(expected.shape)}"
    assert not values.isnan().any(), "NaN in the output (unwritten elements?): " + describe_mismatch(actual, expected, FLOAT32_ATOL)
    if actual.dtype == torch.float32:
        assert (values - expected).abs().max() <= FLOAT32_ATOL, describe_mismatch(actual, expected, FLOAT32_ATOL)
        rel_l2 = (values - expected).norm() / expected.norm().clamp_min(1e-300)
        assert rel_l2 <= FLOAT32_REL_L2, f"relative L2 error {rel_l2:.3g} > {FLOAT32_REL_L2}"
        return
    rounded = expected.to(actual.dtype).to(torch.float64)
    ulp = torch.finfo(actual.dtype).eps * torch.clamp(
        torch.exp2(torch.floor(torch.log2(rounded.abs()))), min=torch.finfo(actual.dtype).tiny
    )
    ok = (values - rounded).abs() <= ulp + FLOAT32_MATH_ERROR
    assert ok.all(), f"{actual.dtype}: {int((~ok).sum())} samples more than 1 ulp off; " + describe_mismatch(
        actual, rounded, ulp + FLOAT32_MATH_ERROR
    )
