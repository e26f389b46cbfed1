"""The shared fast sine (bigvgan_fast/fast_sine.py, docs/fast_sine.md) on the CPU.

The float32 emulation of the kernels' range reduction against float64 (and mpmath for the constants):
the first Cody-Waite step is exact, the reduction's error stays within its stated bound, and with the
hardware sine off by its documented maximum in either direction sin(v)^2 stays within 1.1e-6, for
|v| up to the fast path's limit and, through the slow path, beyond it. The CUDA source holds the
same constants. The hardware sine itself is exercised by the GPU tests of the kernels.
"""

from __future__ import annotations

import re
from pathlib import Path

import mpmath
import numpy as np
import pytest

from bigvgan_fast import fast_sine

ROOT = Path(__file__).resolve().parents[1]
CUDA_SOURCE = ROOT / "csrc" / "anti_alias_activation.cu"
CUDA_NAMES = {"kInvPi": "INV_PI", "kRoundMagic": "MAGIC", "kPiA": "PI_A", "kPiB": "PI_B", "kFastSineMax": "FAST_MAX"}


def arguments(seed: int) -> np.ndarray:
    """float32 v: uniform and log-uniform over the fast range, the float32 neighbours of multiples of
    pi/2 and pi (where k changes and r is smallest), negatives, zeros, subnormals, the range's edge."""
    rng = np.random.default_rng(seed)
    uniform = rng.uniform(-fast_sine.FAST_MAX, fast_sine.FAST_MAX, 200_000)
    log_uniform = np.exp(rng.uniform(np.log(1e-6), np.log(fast_sine.FAST_MAX), 200_000)) * rng.choice([-1, 1], 200_000)
    multiples = np.arange(-fast_sine.K_MAX * 2, fast_sine.K_MAX * 2 + 1) * (np.pi / 2)
    near = multiples.astype(np.float32)
    neighbours = [near]
    up = down = near
    for _ in range(3):  # three float32 neighbours on each side
        up = np.nextafter(up, np.float32(np.inf))
        down = np.nextafter(down, np.float32(-np.inf))
        neighbours += [up, down]
    specials = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-40, 1e-38, 1e-30, 0.5, np.pi / 2, np.pi, 1e4, -1e4], dtype=np.float32)
    edge = np.nextafter(np.float32(fast_sine.FAST_MAX), np.float32(0)) * np.array([1, -1], dtype=np.float32)
    v = np.concatenate([uniform.astype(np.float32), log_uniform.astype(np.float32), *neighbours, specials, edge])
    v = v[np.abs(v) < fast_sine.FAST_MAX]
    assert v.size > 500_000
    return v.astype(np.float32)


def exact_residual(v: np.ndarray, k: np.ndarray) -> np.ndarray:
    """v - k*pi in float64 with pi split in two doubles: off by < 1e-11 for |k| <= K_MAX."""
    pi_hi = np.pi
    pi_lo = float(mpmath.pi - mpmath.mpf(pi_hi))
    k64 = k.astype(np.float64)
    return (v.astype(np.float64) - k64 * pi_hi) - k64 * pi_lo


def test_constants_are_what_they_claim():
    assert fast_sine.INV_PI == float(np.float32(1 / np.pi))
    assert fast_sine.PI_B == float(np.float32(np.pi - fast_sine.PI_A))
    assert fast_sine.MAGIC == 1.5 * 2**23
    # PI_A = 201/64: 8 significant bits, so |k| * PI_A < 2^24 units of 2^-6 is exact in float32.
    assert fast_sine.PI_A * 64 == 201 and fast_sine.K_MAX * 201 < 2**24
    assert fast_sine.K_MAX < 2**16
    tail = abs(mpmath.pi - mpmath.mpf(fast_sine.PI_A) - mpmath.mpf(fast_sine.PI_B))
    assert float(tail) <= fast_sine.PI_TAIL
    largest_fast = np.nextafter(np.float32(fast_sine.FAST_MAX), np.float32(0))
    assert int(fast_sine.reduce(largest_fast)[0]) == fast_sine.K_MAX
    assert fast_sine.HARDWARE_SINE_ERROR == pytest.approx(3.589e-7, rel=1e-3)
    assert fast_sine.SINE_SQUARED_ERROR <= fast_sine.SINE_SQUARED_BOUND == 1.1e-6


def test_cuda_source_holds_the_same_constants():
    text = CUDA_SOURCE.read_text()
    for cuda_name, python_name in CUDA_NAMES.items():
        found = re.findall(rf"constexpr float {cuda_name} = ([0-9.eE+-]+)f;", text)
        assert len(found) == 1, f"{CUDA_SOURCE.name}: expected one 'constexpr float {cuda_name} = ...f;', found {found}"
        assert float(np.float32(found[0])) == getattr(fast_sine, python_name), f"{cuda_name} = {found[0]}"
        assert float(found[0]) == getattr(fast_sine, python_name), f"{cuda_name}: the literal is not the float32 value"


@pytest.mark.parametrize("seed", [0, 1])
def test_first_step_is_exact_and_r_is_in_the_hardware_range(seed):
    v = arguments(seed)
    k, r = fast_sine.reduce(v)
    assert np.all(k == np.rint(k)) and np.all(np.abs(k) <= fast_sine.K_MAX)
    first = fast_sine.reduce_exact_first_step(v)
    exact = first.astype(np.float32).astype(np.float64) == first
    assert exact.all(), f"v - k*PI_A not a float32 at v = {v[~exact][:5]}"
    # The hardware sine's documented bound covers [-pi, pi]; the reduction keeps well inside it.
    assert np.abs(r).max() <= np.pi / 2 + 0.003
    small = np.abs(v) < 1.5
    assert np.array_equal(r[small], v[small]), "k = 0 must leave v untouched (bit for bit)"


@pytest.mark.parametrize("seed", [2, 3])
def test_reduction_error_within_bound(seed):
    v = arguments(seed)
    k, r = fast_sine.reduce(v)
    err = np.abs(r.astype(np.float64) - exact_residual(v, k))
    worst = int(np.argmax(err))
    assert err[worst] <= fast_sine.REDUCTION_ERROR + 1e-10, f"|r - (v - k pi)| = {err[worst]:.3g} at v = {v[worst]!r}"
    # And the bound is not loose by orders of magnitude: large k reach a sizeable part of it.
    assert err.max() >= 0.3 * fast_sine.REDUCTION_ERROR


@pytest.mark.parametrize("seed", [4, 5])
def test_sine_squared_within_bound_with_the_hardware_error_either_way(seed):
    v = arguments(seed)
    truth = np.sin(v.astype(np.float64)) ** 2  # float64 sin of the float32 v: error ~1e-16
    worst = 0.0
    for direction in (-1.0, 1.0):
        s2 = fast_sine.sine_squared(v, sin_core=lambda r, d=direction: np.sin(r) + d * fast_sine.HARDWARE_SINE_ERROR)
        err = np.abs(s2.astype(np.float64) - truth)
        at = int(np.argmax(err))
        assert err[at] <= fast_sine.SINE_SQUARED_BOUND, f"|s2 - sin^2 v| = {err[at]:.3g} at v = {v[at]!r}"
        worst = max(worst, float(err[at]))
    assert worst >= 0.5 * fast_sine.SINE_SQUARED_BOUND  # the hardware term dominates, as derived
    exact_core = np.abs(fast_sine.sine_squared(v).astype(np.float64) - truth).max()
    assert exact_core <= 2 * fast_sine.REDUCTION_ERROR + 2**-25


def test_beyond_the_fast_range_the_slow_path_is_a_float32_sine():
    rng = np.random.default_rng(6)
    v = np.concatenate([
        np.float32(fast_sine.FAST_MAX) * np.array([1, -1], dtype=np.float32),
        (np.exp(rng.uniform(np.log(fast_sine.FAST_MAX), np.log(3e38), 100_000)) * rng.choice([-1, 1], 100_000)).astype(np.float32),
    ])
    s2 = fast_sine.sine_squared(v).astype(np.float64)
    truth = np.sin(v.astype(np.float64)) ** 2
    # A float32 sine, squared in float32: within a few float32 roundings of the exact value.
    assert np.abs(s2 - truth).max() <= 3 * 2.0**-24
    # Why the fast path stops: beyond it the dropped constant alone exceeds the bound's share.
    far = np.float32(2.0**23)
    k, r = fast_sine.reduce(far)
    assert abs(float(r) - float(exact_residual(np.array([far]), np.array([k]))[0])) > fast_sine.REDUCTION_ERROR


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_arguments_give_nan(value):
    v = np.array([value], dtype=np.float32)
    assert np.isnan(fast_sine.sine_squared(v)).all()
    _, r = fast_sine.reduce(v)
    assert np.isnan(r).all()  # the fast path alone would also give NaN: inf * INV_PI - inf


def test_zero_and_subnormal_arguments():
    v = np.array([0.0, -0.0, 1e-45, -1e-40, 1e-38], dtype=np.float32)
    k, r = fast_sine.reduce(v)
    assert np.all(k == 0) and np.array_equal(r, v)
    assert np.all(fast_sine.sine_squared(v) <= 1e-76)


def kernel_algorithm(x, alpha, beta, logscale, up, down, hardware_error):
    """The CUDA kernel's arithmetic in float32 on the CPU: z carried scaled by a (upsample taps
    2a f_up, downsample taps f_down / a, sine term a/b s2), the fast sine with its core off by
    ``hardware_error``, the slow path past FAST_MAX. An emulation of the algorithm, not of the code."""
    import torch

    x = x.detach().float()
    batch, channels, T = x.shape
    a = alpha.float()
    b = a if beta is None else beta.float()
    if logscale:
        a, b = torch.exp(a), torch.exp(b)
    n, t = torch.arange(2 * T), torch.arange(T)
    y = torch.empty(batch, channels, T)
    for c in range(channels):
        scale_by_a = not bool(a[c].abs() < 2.0**-64)
        sigma = a[c] if scale_by_a else torch.tensor(1.0)
        up_c, down_c = (2.0 * sigma) * up.float(), down.float() / sigma
        scaled_inv_b = a[c] * (1.0 / (b[c] + 1e-9)) if scale_by_a else torch.tensor(0.0)
        v = torch.zeros(batch, 2 * T)
        for k in range(12):
            src = torch.clamp(torch.div(n + 15 - k, 2, rounding_mode="floor") - 5, 0, T - 1)
            v = v + torch.where((n + 15 - k) % 2 == 0, up_c[k] * x[:, c, src], torch.zeros(()))
        s2 = fast_sine.sine_squared(v.numpy(), sin_core=lambda r: np.sin(r) + hardware_error)
        z = v + scaled_inv_b * torch.from_numpy(s2)
        acc = torch.zeros(batch, T)
        for k in range(12):
            acc = acc + down_c[k] * z[:, torch.clamp(2 * t + k - 5, 0, 2 * T - 1)]
        y[:, c] = acc
    return y


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("logscale", [True, False], ids=["logscale", "linear"])
def test_kernel_algorithm_meets_spec_with_the_worst_hardware_sine(dtype, logscale):
    """The kernel's algorithm (a-scaled z, fast sine) within the definition's tolerances (docs/definition.md) of the float64
    definition, borders included, with the hardware sine off by its full documented error in either
    direction: what the GPU tests check on the real kernel."""
    import sys

    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from definition import assert_close_to_definition, definition, spec_filter

    torch_dtype = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(7 + logscale)
    x = torch.clamp(3 * torch.randn(2, 3, 2311, generator=gen, dtype=torch.float64), -10, 10).to(torch_dtype)
    if logscale:
        alpha, beta = 0.3 * torch.randn(3, generator=gen), 0.3 * torch.randn(3, generator=gen)
    else:
        alpha, beta = 0.5 + torch.rand(3, generator=gen), 0.5 + torch.rand(3, generator=gen)
    taps = spec_filter().float()
    up, down = taps + 0.05 * torch.randn(12, generator=gen), taps + 0.05 * torch.randn(12, generator=gen)
    expected = definition(x, alpha, beta, logscale, up, down)
    for direction in (-1.0, 1.0):
        y = kernel_algorithm(x, alpha, beta, logscale, up, down, direction * fast_sine.HARDWARE_SINE_ERROR)
        assert_close_to_definition(y.to(torch_dtype), expected)
