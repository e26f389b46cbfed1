"""The fast sine shared by both fused backends: constants, a float32 emulation, the error bound.

Both kernels need s2 = sin(v)^2 for the float32 product v = a * u. It depends on v only modulo pi,
so v is reduced modulo pi by a two-constant Cody-Waite step whose first product and subtraction are
exact, and the reduced r (|r| <= pi/2 + 0.003) goes to the hardware sine (CUDA ``__sinf`` =
``sin.approx.f32`` = MUFU.SIN). ``docs/fast_sine.md`` derives the bound; ``csrc/anti_alias_activation.cu``
and the Triton kernel hold the same literal constants (tests/test_fast_sine.py compares them).

    k = fma(v, INV_PI, MAGIC) - MAGIC      # rint(v / pi), on the FP32 pipe
    r = fma(-k, PI_A, v)                   # exact
    r = fma(-k, PI_B, r)                   # one rounding
    s2 = sin_core(r) ** 2                  # |v| < FAST_MAX; else the precise sine of v
"""

from __future__ import annotations

import numpy as np

INV_PI = 0.31830987334251404  # float32(1 / pi)
MAGIC = 12582912.0  # 1.5 * 2**23: x + MAGIC - MAGIC rounds x to an integer (ties to even) for |x| < 2**22
PI_A = 3.140625  # 201 / 64: 8 significant bits, so k * PI_A is exact in float32 for |k| < 2**16
PI_B = 0.0009676535846665502  # float32(pi - PI_A)
FAST_MAX = 65536.0  # the fast path takes |v| < FAST_MAX: |k| <= K_MAX

K_MAX = 20861  # rint(FAST_MAX / pi) rounded up: the largest |k| on the fast path
# |pi - PI_A - PI_B|, the dropped third Cody-Waite constant (exact value: 5.126e-12).
PI_TAIL = 5.13e-12
# NVIDIA's documented maximum absolute error of __sinf on [-pi, pi] (CUDA C++ Programming Guide,
# intrinsic functions): 2^-21.41.
HARDWARE_SINE_ERROR = 2.0**-21.41
# |r - (v - k*pi)|: one rounding of |r| < 2 (2^-24) plus K_MAX * PI_TAIL (1.07e-7).
REDUCTION_ERROR = 2.0**-24 + K_MAX * PI_TAIL
# |s - sin(v)| up to the sign (-1)^k: the hardware error plus the reduction's (|d sin / dr| <= 1).
SINE_ERROR = HARDWARE_SINE_ERROR + REDUCTION_ERROR
# |fl(s*s) - sin(v)^2| <= |s - sin v| * |s + sin v| + half an ulp of a number <= 1 (2^-25).
SINE_SQUARED_ERROR = SINE_ERROR * (2.0 + SINE_ERROR) + 2.0**-25
# The figure the docs and the definition quote.
SINE_SQUARED_BOUND = 1.1e-6
assert SINE_SQUARED_ERROR <= SINE_SQUARED_BOUND


def reduce(v) -> tuple[np.ndarray, np.ndarray]:
    """(k, r) of the kernels' reduction for float32 ``v``, bit-exact to the fused-multiply-add sequence.

    Each fma is evaluated exactly in float64 and rounded once to float32: v * INV_PI is exact in
    float64 (24 + 24 bits) and the magic-number sum is rint of it; v - k * PI_A is exact in float32
    (returned as such, and tests check it); r1 - k * PI_B is exact in float64 (a multiple of 2^-33
    below 2^5) before its one rounding. Non-finite v gives k = +-inf or nan and r = nan. Past
    |v| = 2^22 * pi (far beyond FAST_MAX, where the kernels take the slow path) k is only approximate.
    """
    v32 = np.asarray(v, dtype=np.float32)
    v64 = v32.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        # fma(v, INV_PI, MAGIC) lands in [2^23, 2^24), where float32 steps by 1: it is MAGIC + rint.
        k = np.rint(v64 * INV_PI)
        k = np.where(np.abs(v64 * INV_PI) < 2.0**22, k, (v64 * INV_PI).astype(np.float32).astype(np.float64))
        r1 = v64 - k * PI_A
        r = (r1.astype(np.float32).astype(np.float64) - k * PI_B).astype(np.float32)
    return k.astype(np.float32), r


def reduce_exact_first_step(v) -> np.ndarray:
    """v - k * PI_A in float64: equal to its float32 rounding wherever the kernels' claim holds."""
    v64 = np.asarray(v, dtype=np.float32).astype(np.float64)
    k, _ = reduce(v)
    return v64 - k.astype(np.float64) * PI_A


def sine_squared(v, sin_core=np.sin) -> np.ndarray:
    """s2 as the kernels compute it, with ``sin_core`` standing for the hardware sine (float64 numpy
    by default, i.e. the kernels with an exact core); the slow path is float32 ``sin`` of v."""
    v32 = np.asarray(v, dtype=np.float32)
    _, r = reduce(v32)
    with np.errstate(invalid="ignore"):
        s = np.asarray(sin_core(r.astype(np.float64)), dtype=np.float64).astype(np.float32)
        slow = ~(np.abs(v32) < np.float32(FAST_MAX))
        s = np.where(slow, np.sin(v32.astype(np.float64)).astype(np.float32), s)
        return (s * s).astype(np.float32)
