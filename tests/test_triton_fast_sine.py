"""The shared fast sine in the Triton kernels (bigvgan_fast/fast_sine.py; the algorithm of docs/fast_sine.md).

Under the interpreter the reduced argument's sine is tl.sin, so these tests check the reduction
modulo pi and the huge-argument path; on a GPU the same tests check the hardware sine as well,
against the bound the fast sine documents: |s*s - sin(v)^2| <= 1.1e-6 for float32 v, |v| < 65536.
"""

import math

import numpy as np
import pytest
import torch

triton = pytest.importorskip("triton", reason="triton is not installed")
import triton.language as tl  # noqa: E402

from bigvgan_fast import fast_sine  # noqa: E402
from bigvgan_fast.kernels import anti_alias_activation as kernel  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SIN_SQ_BOUND = 1.1e-6
# sin(2v) = 2 s c: twice the core error of each factor, plus the reduction's.
SIN2_BOUND = 2.5e-6


@triton.jit
def _sines_kernel(v_ptr, sin_sq_ptr, sin2_ptr, N: tl.constexpr):
    lanes = tl.arange(0, N)
    half = N // 2
    # The two halves go in as the even and odd phase, as the kernels pass them.
    v_even = tl.load(v_ptr + (lanes % half))
    v_odd = tl.load(v_ptr + half + (lanes % half))
    s_even, s_odd, c_even, c_odd = kernel._sines(v_even, v_odd, True, True, kernel.FAST_MAX)
    first = lanes < half
    s = tl.where(first, s_even, s_odd)
    c = tl.where(first, c_even, c_odd)
    tl.store(sin_sq_ptr + lanes, s * s)
    tl.store(sin2_ptr + lanes, 2.0 * s * c)


def sines(v: torch.Tensor):
    """sin(v)^2 and sin(2v) by the kernels' fast sine, for float32 v of a power-of-two length."""
    v = v.to(DEVICE)
    sin_sq = torch.full_like(v, float("nan"))
    sin2 = torch.full_like(v, float("nan"))
    _sines_kernel[(1,)](v, sin_sq, sin2, N=v.numel())
    return sin_sq.cpu().double(), sin2.cpu().double()


def test_constants_match_the_shared_module():
    for name in ("INV_PI", "PI_A", "PI_B", "MAGIC", "FAST_MAX"):
        assert getattr(kernel, name).value == getattr(fast_sine, name), name
    assert fast_sine.INV_PI == float(np.float32(1 / math.pi))
    assert fast_sine.PI_B == float(np.float32(math.pi - fast_sine.PI_A))
    assert fast_sine.MAGIC == 1.5 * 2**23


@pytest.mark.parametrize("scale", [1.0, 100.0, 1e4, 65535.0])
def test_fast_sine_within_its_bound(scale):
    """Fresh float32 arguments up to the fast path's limit, multiples of pi and their neighbours."""
    gen = torch.Generator().manual_seed(int(scale))
    v = (torch.rand(1024, generator=gen, dtype=torch.float64) * 2 - 1) * scale
    k = torch.round(v / math.pi)
    v[:256] = k[:256] * math.pi  # reductions that cancel to nearly zero
    v[256:384] = (k[256:384] + 0.5) * math.pi  # |r| at its largest, pi/2
    v = v.float()
    sin_sq, sin2 = sines(v)
    exact = v.double()
    err_sq = (sin_sq - torch.sin(exact) ** 2).abs()
    err_2 = (sin2 - torch.sin(2 * exact)).abs()
    assert err_sq.max() <= SIN_SQ_BOUND, f"sin^2 off by {err_sq.max():.3g} at v = {v[err_sq.argmax()]}"
    assert err_2.max() <= SIN2_BOUND, f"sin(2v) off by {err_2.max():.3g} at v = {v[err_2.argmax()]}"


def test_huge_arguments_take_the_precise_sine():
    """|v| >= 65536: as a float32 evaluation (the precise sine of the float32 argument), in blocks
    that mix them with small arguments (the uniform branch must not disturb those)."""
    gen = torch.Generator().manual_seed(17)
    small = (torch.rand(512, generator=gen, dtype=torch.float64) * 2 - 1) * 100
    huge = torch.cat([torch.tensor([65536.0, -65536.0, 65536.0 * 1.5, 1e6, -3e7, 1e30, 3e38]),
                      torch.exp(torch.rand(505, generator=gen, dtype=torch.float64) * 20) * 65536])
    v = torch.cat([small, huge]).float()
    sin_sq, sin2 = sines(v)
    exact = v.double()
    assert (sin_sq - torch.sin(exact) ** 2).abs().max() <= SIN_SQ_BOUND
    assert (sin2 - torch.sin(2 * exact)).abs().max() <= SIN2_BOUND


def test_nonfinite_arguments_give_nan():
    v = torch.tensor([float("nan"), float("inf"), float("-inf"), 1.0] * 4, dtype=torch.float32)
    sin_sq, sin2 = sines(v)
    finite = torch.isfinite(v)
    assert sin_sq[~finite].isnan().all() and sin2[~finite].isnan().all()
    assert (sin_sq[finite] - math.sin(1.0) ** 2).abs().max() <= SIN_SQ_BOUND


@pytest.mark.parametrize("block_t,use_gather", [(None, True), (16, True), (16, False)])
def test_large_activation_arguments_through_the_kernel(block_t, use_gather):
    """a*u up to ~1.5e4 (fast path) and ~1.5e6 (precise path) through the whole forward: there a
    float32 u is off by ~1e-6 relative, which moves sin(a u) by up to ~1e-1, so no float32
    evaluation meets 2e-5; the definition asks the fast path to be no worse than one. The float32 evaluation
    is the reference path run in float32 (precise sine)."""
    from bigvgan_fast.anti_alias.reference import anti_alias_activation_ref, default_filter
    from definition import definition

    gen = torch.Generator().manual_seed(18)
    x = torch.clamp(3 * torch.randn(1, 2, 64, generator=gen), -10, 10)
    alpha = torch.tensor([1000.0, 100000.0])
    beta = torch.tensor([1.0, 1.0])
    f = default_filter("cpu", torch.float32).reshape(-1).contiguous()
    out = torch.full_like(x, float("nan")).to(DEVICE)
    y = kernel.anti_alias_activation_forward(x.to(DEVICE), alpha.to(DEVICE), beta.to(DEVICE), f.to(DEVICE),
                                             f.to(DEVICE), False, out=out, block_t=block_t,
                                             use_gather=use_gather).double().cpu()
    exact = definition(x, alpha, beta, False)
    float32_eval = anti_alias_activation_ref(x, alpha, beta, alpha_logscale=False, upsample_filter=f,
                                             downsample_filter=f).double()
    for channel in range(2):
        err_kernel = (y[:, channel] - exact[:, channel]).abs().max()
        err_float32 = (float32_eval[:, channel] - exact[:, channel]).abs().max()
        assert err_float32 > 1e-4, "the case no longer stresses the sine: raise alpha"
        assert err_kernel <= 3 * err_float32, f"channel {channel}: {err_kernel:.3g} vs float32's {err_float32:.3g}"


@pytest.mark.parametrize("block_t", [None, 16])
def test_huge_arguments_through_the_gather_path_take_the_precise_sine(block_t):
    """The gather path runs a program's tiles with the fast sine only and redoes them with the
    precise sine where its bound on |a*u| reaches 65536; the recompute path checks every tile
    before its sines. Both form a*u identically, so they agree to the downsample's summation order.
    Arguments past 2^22 pi, where the fast sine's reduction is meaningless (on the CPU its core is a
    precise sine, so smaller ones would not show a missed second pass): one channel huge throughout,
    one only in the second half of its row (with block_t=16, programs of 4 tiles: the first
    programs fast, the later ones redone)."""
    from bigvgan_fast.anti_alias.reference import default_filter

    gen = torch.Generator().manual_seed(24)
    x = torch.clamp(3 * torch.randn(1, 2, 64, generator=gen), -10, 10)
    x[0, 1, 32:] *= 1000
    alpha = torch.tensor([1e7, 4000.0])
    beta = torch.tensor([1.0, 0.7])
    f = default_filter("cpu", torch.float32).reshape(-1).contiguous().to(DEVICE)
    outs = []
    for use_gather in (True, False):
        out = torch.full_like(x, float("nan")).to(DEVICE)
        outs.append(kernel.anti_alias_activation_forward(
            x.to(DEVICE), alpha.to(DEVICE), beta.to(DEVICE), f, f, False, out=out, block_t=block_t,
            use_gather=use_gather).double().cpu())
    gathered, recomputed = outs
    assert torch.isfinite(recomputed).all()
    err = ((gathered - recomputed).abs() / (1 + recomputed.abs())).max()
    assert err <= 1e-5, f"gather and recompute paths differ by {err:.3g} (relative)"
