"""Constants of the shared fast sine (both fused backends): reduction modulo pi, then a sine of |r| <= pi/2.

Minimal module from the Triton branch: the CUDA branch brings the full one (float32 emulation of the
reduction, the error bound and its derivation); the constants here must equal those.

    k = rint(v * INV_PI)          (fma(v, INV_PI, MAGIC) - MAGIC)
    r = fma(-k, PI_B, fma(-k, PI_A, v))
    sin(v)^2 = sin(r)^2,  sin(2v) = sin(2r)       for |v| < FAST_MAX; beyond it, the precise sine
"""

INV_PI = 0.31830987334251404  # float32(1 / pi)
PI_A = 3.140625  # pi to 8 significant bits: k * PI_A is exact for |k| < 2**16
PI_B = 0.0009676535846665502  # float32(pi - PI_A)
MAGIC = 12582912.0  # 1.5 * 2**23
FAST_MAX = 65536.0
