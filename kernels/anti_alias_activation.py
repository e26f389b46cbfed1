"""Triton kernels of the anti-aliased activation: 2x upsample -> Snake / SnakeBeta -> 2x downsample.

One file for the op (Liger-Kernel style): the ``@triton.jit`` forward and backward kernels, their
helpers and the host launchers :func:`anti_alias_activation_forward` and
:func:`anti_alias_activation_backward`. The definition they implement is docs/definition.md's (and
``bigvgan_fast.anti_alias.reference.anti_alias_activation_ref``'s); ``tests/test_fused_forward.py`` and
``tests/test_triton_kernel.py`` check every output sample, borders included, against a float64
evaluation of it.

Polyphase form used throughout (f_up, f_down: the 12 taps; x, g_y zero-based; m, t in [0, T)):

    u[2m]   = 2 * (f_up[1] x[m+2] + f_up[3] x[m+1] + f_up[5] x[m] + f_up[7] x[m-1] + f_up[9] x[m-2] + f_up[11] x[m-3])
    u[2m+1] = 2 * (f_up[0] x[m+3] + f_up[2] x[m+2] + f_up[4] x[m+1] + f_up[6] x[m] + f_up[8] x[m-1] + f_up[10] x[m-2])
    y[t]    = sum_{d=-3..3} w_d[t+d],   w_d[m] = f_down[2d+5] z[2m] + f_down[2d+6] z[2m+1]
              (taps outside 0..11 are zero: w_-3 = f_down[0] z[2m+1], w_3 = f_down[11] z[2m])

with x indices clamped to [0, T-1] and, for the downsample, z indices clamped to [0, 2T-1]: a
"z[2m]" or "z[2m+1]" with m < 0 is z[0] = act(u[0]) and one with m >= T is z[2T-1] = act(u[2T-1]).
Each y[t] reads x[t-5 .. t+5]. The backward's transposed downsample has the upsample's form
(dL/dz[2m] = sum f_down[2i+1] g_y[m+2-i], dL/dz[2m+1] = sum f_down[2i] g_y[m+3-i]) and its
transposed upsample the downsample's, so one pair of helpers (``_polyphase``, ``_downsample_gathered``)
serves both directions.

Kernel design:

- Grid: 3-D (tile, channel, batch), so no program divides its id; the launchers split batches
  beyond CUDA's 65535 limit of grid axes 1 and 2 into several launches (and refuse more channels).
  A backward program runs one tile of a row, a forward program one or more (see below).
  Row offsets are int64 (B*C*T may exceed 2**31); lane offsets inside a tile stay int32.
- Each forward program computes u[2m], u[2m+1] and z for the BLOCK_T positions m of its tile
  once (two sines per output sample, as in the definition), from seven contiguous [BLOCK_T] loads
  of x at shifts -3..3, so DRAM sees one read of x and one write of y; the other six hit L1/L2.
  The downsample needs z of the neighbours m-3..m+3: ``tl.gather`` (across warps Triton routes it
  through shared memory) reads them from the neighbouring lanes, ten shifted reads of z_even and
  z_odd in two gathers (the five shifts of each phase in one), then 12 multiply-adds per output.
  Tiles overlap: a tile starts HALO = 8 lanes (6 in tiles under 64) before its first output and
  stores BLOCK_T - 2*HALO outputs, so every stored lane has its neighbours in the tile (1.6% of
  the sines computed twice at BLOCK_T = 1024); a row that fits one tile takes one, from its first
  sample. The backward's tiles overlap the same way (its transposed upsample gathers dL/du of the
  neighbouring lanes; each tile sums the parameter gradients over the lanes it stores, so every
  sample counts once); until 2026-11-30 they did not, and recomputed their three outputs at each
  tile end from x on an [8, 8] side block. ``use_gather=False`` recomputes every neighbour
  instead (16 sines per output, no shared memory): a fallback in case a Triton version
  mis-compiles the gather; the tests run both.
- The recompute block's columns whose taps are zero are selected away, not multiplied: a zero
  tap times a NaN or Inf would spread a non-finite x one sample further than the definition.
- Interior tiles (every x they read inside [0, T)) take a branch with unclamped loads at constant
  offsets and unclamped gathers; only the first and last tiles of a row clamp indices and apply
  the z-border rule.
- Math in float32 (parameters converted in-kernel, exp of the parameters once per program, the
  2x of the upsample folded into its taps), one rounding at the store. The forward carries a * z
  instead of z (upsample taps 2a f_up, downsample taps f_down / a; ``_forward_scales``), so the
  sine's argument a*u comes out of the upsample: one multiply fewer per sine.
- Tiles of BLOCK_T = 1024 samples for T >= 1024 (512 where that computes fewer lanes over the
  row, ``_default_block_t``), 8 samples per thread in the forward (4 warps) and 4 in the backward
  (8 warps): each thread's fixed work (tile setup, the sine's range check) is shared by that many
  outputs. A forward program runs up to 16 consecutive tiles
  of its row, as many as leave the GPU enough programs (``_tiles_per_program``), so its setup
  (filters, parameters, the range check's reduction) is shared by those tiles. Compile facts
  (registers, instruction counts, vector widths) are in benchmarks/RESULTS.md, timings in the
  benchmarks.
- The sine is the shared fast sine (see ``_sines``): reduction modulo pi, since only sin(au)^2 and
  sin(2au) are needed, then the GPU's approximate sine on |r| <= pi/2; about 5 FP32 operations and
  one special-function operation instead of a precise sinf's few tens. Arguments at or beyond
  FAST_MAX take the precise sine: the backward tests each tile's arguments first; the forward runs
  a program's tiles with the fast sine only and tests a bound, max|x| times the upsample's gain,
  once afterwards, computing the tiles again where it fails (never at model scales).

The backward recomputes u from x (only x and the parameters are saved) and applies the exact
adjoint of both clamps: gradient sent to z indices < 0 lands on z[0], > 2T-1 on z[2T-1]; gradient
sent to x indices < 0 lands on x[0], > T-1 on x[T-1]. Parameter gradients are reduced without
atomics: each program writes its partial sums to a float32 buffer [B*C, n_tiles] that the host
sums in a fixed order, so equal inputs give bitwise equal gradients.

Names the device helpers share: ``border = (lo, hi)``, the row's first and last sample relative
to the tile (the backward appends the gradient the downsample's clamp sends to z[0] and z[2T-1]);
``act = (a, inv_b)``, the backward's per-channel parameters (the forward's scaled equivalents come
from ``_forward_scales``); ``filters = (up, down, columns)``, the 12 taps of each filter as tuples
of scalars (scaled: see ``_load_filters``) and, for the recompute block, the [8]-vectors of the
taps its even and odd columns carry.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

# The oldest Triton that compiles every variant the launchers use (benchmarks/triton_sass.py
# --variants, sm_90): 3.0-3.2 have no tl.gather, and their JIT resolves every tl.* name a kernel
# mentions, a branch that a constexpr removes included; 3.3 fails on the forward's loop over tiles
# at BLOCK_T 512 and 1024 (TritonGPUOptimizeThreadLocality). Checked here, so that the backend
# reports it as its reason.
MIN_TRITON = (3, 4)
if tuple(int(part) for part in triton.__version__.split(".")[:2]) < MIN_TRITON:
    raise ImportError(f"the Triton kernels need Triton >= {MIN_TRITON[0]}.{MIN_TRITON[1]}, found {triton.__version__}")


def _interpreted() -> bool:
    """Whether @triton.jit gives interpreted functions (TRITON_INTERPRET=1), as Triton decides it."""
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


SNAKE_EPS = tl.constexpr(1e-9)  # as bigvgan_fast.anti_alias.reference.SNAKE_EPS
FILTER_TAPS = 12

# See the module docstring: compiled-for, not yet timed, choices.
_MAX_BLOCK_T = 1024
_MIN_BLOCK_T = 16
# The recompute path holds a [BLOCK_T, 8] block of neighbours; 128 keeps it free of spills.
_MAX_BLOCK_T_RECOMPUTE = 128
# Every launch and compile asks for FP fusion (enable_fp_fusion=True): the filters' sums and the
# reduction are written as multiply-adds that must become FFMA (Triton 3.10 turns the default off;
# without it the forward counts 64 FP32-pipe operations per output instead of 41 on sm_90).
# CUDA's limit of grid axes 1 and 2 (the forward's channel and batch axes).
_MAX_GRID_YZ = 65535
# tl.gather through shared memory (two sines per output) rather than recomputing neighbours
# (use_gather=False: the fallback in case a Triton version mis-compiles the gather).
USE_GATHER = True

# The shared fast sine (bigvgan_fast/fast_sine.py holds the same constants, its docs the error
# bound): reduction modulo pi by Cody-Waite with two constants, then a sine of |r| <= pi/2.
INV_PI = tl.constexpr(0.31830987334251404)  # float32(1 / pi)
PI_A = tl.constexpr(3.140625)  # pi to 8 significant bits: k * PI_A is exact for |k| < 2**16
PI_B = tl.constexpr(0.0009676535846665502)  # float32(pi - PI_A)
MAGIC = tl.constexpr(12582912.0)  # 1.5 * 2**23: fma(v, INV_PI, MAGIC) - MAGIC = rint(v / pi)
FAST_MAX = tl.constexpr(65536.0)  # |v| at or beyond this takes the precise sine
# The fast sine's error reaches y multiplied by 1 / b (docs/fast_sine.md): a channel with
# 1 / (b + eps) beyond this takes the precise sine for every argument, so that the sine's share of an
# output's error stays <= 1.25 * 1.33 * 1.1e-6 = 1.8e-6 (the definition's half-precision allowance
# near zero is 4e-6). A uniform branch per program (one channel each).
MAX_FAST_INV_B = tl.constexpr(1.25)
# The forward's bound max|x| * gain on |v| (float32, each side off by at most ~7 roundings of 2^-24)
# sends a program to the precise sine from here: a bound below it keeps every computed |v| < FAST_MAX.
FAST_BOUND_MAX = tl.constexpr(65536.0 * (1 - 2**-10))
# The sine of the reduced argument: the GPU's sin.approx.f32 (MUFU.SIN, max abs error 2**-21.41 on
# [-pi, pi]); the interpreter cannot run inline PTX, so there it is tl.sin and CI tests the reduction.
HARDWARE_SINE = tl.constexpr(not _interpreted() and torch.version.hip is None)

# What a load at a position outside the row reads (``_load_shifted``).
UNCHECKED = tl.constexpr(0)  # nothing: interior tiles never leave the row
REPLICATE = tl.constexpr(1)  # the nearest sample of the row: x under the upsample's clamp
ZEROS = tl.constexpr(2)  # zero: grad_y, which the transposed downsample pads with zeros


# --- device helpers ---------------------------------------------------------------------------


@triton.jit
def _load_at(ptr, pos, border, BORDER: tl.constexpr):
    if BORDER == REPLICATE:
        value = tl.load(ptr + tl.minimum(tl.maximum(pos, border[0]), border[1]))
    elif BORDER == ZEROS:
        value = tl.load(ptr + pos, mask=(pos >= border[0]) & (pos <= border[1]), other=0.0)
    else:
        value = tl.load(ptr + pos)
    return value.to(tl.float32)


@triton.jit
def _load_shifted(ptr, pos, border, BORDER: tl.constexpr):
    """(ptr[pos - 3], ..., ptr[pos + 3]) in float32, each of pos's shape; BORDER: see UNCHECKED."""
    return (_load_at(ptr, pos - 3, border, BORDER), _load_at(ptr, pos - 2, border, BORDER),
            _load_at(ptr, pos - 1, border, BORDER), _load_at(ptr, pos, border, BORDER),
            _load_at(ptr, pos + 1, border, BORDER), _load_at(ptr, pos + 2, border, BORDER),
            _load_at(ptr, pos + 3, border, BORDER))


@triton.jit
def _polyphase(shifted, taps):
    """(sum_i taps[2i+1] v[m+2-i], sum_i taps[2i] v[m+3-i]) for ``shifted`` = v[m-3 .. m+3]: the
    upsample's two phases (v = x) and the transposed downsample's (v = g_y)."""
    even = taps[1] * shifted[5]
    odd = taps[0] * shifted[6]
    for i in tl.static_range(1, 6):
        even += taps[2 * i + 1] * shifted[5 - i]
        odd += taps[2 * i] * shifted[6 - i]
    return even, odd


@triton.jit
def _upsample_pair(x_tile, pos, border, up, CLAMP: tl.constexpr):
    """(u[2m], u[2m+1], x[m]) for m = t0 + pos (any shape).

    With CLAMP, x indices are clamped to the row, and positions outside it follow the downsample's
    z-index clamp: m < 0 gives u[0] in both phases, m >= T gives u[2T-1] in both phases. Without
    CLAMP every x[m-3 .. m+3] must lie inside the row.
    """
    if CLAMP:
        inside = tl.minimum(tl.maximum(pos, border[0]), border[1])
        shifted = _load_shifted(x_tile, inside, border, REPLICATE)
        u_even, u_odd = _polyphase(shifted, up)
        u_even_at_border = tl.where(pos > border[1], u_odd, u_even)
        u_odd = tl.where(pos < border[0], u_even, u_odd)
        u_even = u_even_at_border
    else:
        shifted = _load_shifted(x_tile, pos, border, UNCHECKED)
        u_even, u_odd = _polyphase(shifted, up)
    return u_even, u_odd, shifted[3]


@triton.jit
def _reduce_mod_pi(v):
    """r = v - k*pi, k = rint(v / pi), so |r| <= pi/2 (plus rounding); sin(v)^2 = sin(r)^2 and
    sin(2v) = sin(2r). Exact up to one rounding and the dropped third constant for |v| < FAST_MAX."""
    k = tl.fma(v, INV_PI, MAGIC) - MAGIC
    # k times the negated constants (the same roundings as -k times them): Triton 3.6 computes -k
    # with an FADD of its own, one per sine (sm_90 forward: 42.87 -> 40.84 FP32-pipe per output).
    r = tl.fma(k, -PI_A, v)
    return tl.fma(k, -PI_B, r)


@triton.jit
def _core(r, COSINE: tl.constexpr):
    """sin(r), or cos(r) with COSINE, for the reduced |r| <= pi/2 (see HARDWARE_SINE)."""
    if HARDWARE_SINE:
        if COSINE:
            value = tl.inline_asm_elementwise("cos.approx.f32 $0, $1;", "=r,r", [r], dtype=tl.float32, is_pure=True, pack=1)
        else:
            value = tl.inline_asm_elementwise("sin.approx.f32 $0, $1;", "=r,r", [r], dtype=tl.float32, is_pure=True, pack=1)
    elif COSINE:
        value = tl.cos(r)
    else:
        value = tl.sin(r)
    return value


@triton.jit
def _sines(v_even, v_odd, WITH_COS: tl.constexpr, CHECK_RANGE: tl.constexpr, limit):
    """(sin v_even, sin v_odd) up to sign, and with WITH_COS (cos v_even, cos v_odd) up to the same
    sign, by the shared fast sine: callers use only s*s = sin(v)^2 and 2*s*c = sin(2v). With
    CHECK_RANGE, a program that holds any |v| >= ``limit`` (FAST_MAX, or 0 for a channel of small b:
    ``_sine_limit``; a uniform branch) computes the precise sine of those arguments instead;
    without, the caller has made sure that every |v| < FAST_MAX (see the forward's
    ``FAST_BOUND_MAX``) and that the channel's b allows the fast sine."""
    r_even = _reduce_mod_pi(v_even)
    r_odd = _reduce_mod_pi(v_odd)
    s_even = _core(r_even, False)
    s_odd = _core(r_odd, False)
    if WITH_COS:
        c_even = _core(r_even, True)
        c_odd = _core(r_odd, True)
    else:
        c_even = s_even
        c_odd = s_odd
    if CHECK_RANGE and tl.max(tl.maximum(tl.abs(v_even), tl.abs(v_odd))) >= limit:
        huge_even = tl.abs(v_even) >= limit
        huge_odd = tl.abs(v_odd) >= limit
        s_even = tl.where(huge_even, tl.sin(v_even), s_even)
        s_odd = tl.where(huge_odd, tl.sin(v_odd), s_odd)
        if WITH_COS:
            c_even = tl.where(huge_even, tl.cos(v_even), c_even)
            c_odd = tl.where(huge_odd, tl.cos(v_odd), c_odd)
    return s_even, s_odd, c_even, c_odd


@triton.jit
def _sine_limit(inv_b):
    """The |v| from which ``_sines`` takes the precise sine: FAST_MAX, or 0 (every argument) for a
    channel whose 1 / (b + eps) exceeds MAX_FAST_INV_B. NaN inv_b keeps FAST_MAX (NaN either way)."""
    return tl.where(tl.abs(inv_b) > MAX_FAST_INV_B, 0.0, FAST_MAX)


@triton.jit
def _neighbours(pos):
    """[N, 8] positions pos + d for d = -3..3 (the eighth column repeats d = 3; its taps are zero)."""
    return pos[:, None] + tl.minimum(tl.arange(0, 8) - 3, 3)[None, :]


@triton.jit
def _sum_over_neighbours(even, odd, columns):
    """Row sums of an [N, 8] neighbour block times its taps: even-phase terms in columns d = -2..3,
    odd-phase ones in d = -3..2. The other columns have zero taps but are selected away rather than
    multiplied: zero times a NaN or Inf sample is NaN, and the definition never reads those samples."""
    column = tl.arange(0, 8)[None, :]
    even_terms = tl.where((column >= 1) & (column <= 6), even * columns[0][None, :], 0.0)
    odd_terms = tl.where(column <= 5, odd * columns[1][None, :], 0.0)
    return tl.sum(even_terms + odd_terms, axis=1)


@triton.jit
def _tile_geometry(row, tile, n_tiles, T, BLOCK_T: tl.constexpr, HALO: tl.constexpr):
    """Row offset of the tile's lane 0, the row position of lane 0 (``base``), the row border and
    the interior flag of tile ``tile`` of row ``row`` (= b*C + c). Tiles advance by
    BLOCK_T - 2*HALO outputs and start HALO lanes early (see ``_halo``); a row of one tile
    starts at its first sample."""
    base = tl.cast(tile, tl.int64) * (BLOCK_T - 2 * HALO) - HALO
    if HALO > 0:
        base = tl.where(n_tiles == 1, 0, base)
    row_start = row.to(tl.int64) * T + base
    # Tile-relative bounds of the row. A tile reads positions -9 .. BLOCK_T+8 at most, so bounds
    # clipped to [-64, BLOCK_T+64] clamp the same way and fit int32 whatever T is.
    lo = tl.maximum(-base, -64).to(tl.int32)
    hi = tl.minimum(T - 1 - base, BLOCK_T + 64).to(tl.int32)
    if HALO > 0:
        # Outputs read z of lanes +-3 (gathered), each z x of lanes +-3 (loaded).
        interior = (base >= 3) & (base + BLOCK_T + 3 <= T)
    else:
        # Edge outputs recompute z of lanes +-3 from x of lanes +-3 beyond those.
        interior = (base >= 6) & (base + BLOCK_T + 6 <= T)
    return row_start, base, (lo, hi), interior


@triton.jit
def _owned_lanes(lanes, n_tiles, T, base, BLOCK_T: tl.constexpr, HALO: tl.constexpr):
    """The lanes whose outputs the tile stores: HALO .. BLOCK_T-HALO-1 (every lane in a row of one
    tile) inside the row; each output of a row is stored by exactly one tile. Bounds that are
    multiples of 8 (HALO, and T - base where T % 16 == 0, as at every model shape) let Triton emit
    full-width vector stores."""
    if HALO > 0:
        single = n_tiles == 1
        owned = (lanes >= tl.where(single, 0, HALO)) & (lanes < tl.where(single, BLOCK_T, BLOCK_T - HALO))
        owned = owned & (lanes < T - base)
    else:
        owned = lanes < T - base
    return owned


@triton.jit
def _channel_parameters(channel, alpha_ptr, beta_ptr, HAS_BETA: tl.constexpr, ALPHA_LOGSCALE: tl.constexpr):
    """(a, b) of the channel in float32."""
    alpha = tl.load(alpha_ptr + channel).to(tl.float32)
    if HAS_BETA:
        beta = tl.load(beta_ptr + channel).to(tl.float32)
    else:
        beta = alpha
    if ALPHA_LOGSCALE:
        a = tl.exp(alpha)
        b = tl.exp(beta)
    else:
        a = alpha
        b = beta
    return a, b


@triton.jit
def _load_filters(up_ptr, down_ptr, up_scale, down_scale, COLUMNS_OF_UP: tl.constexpr):
    """``filters`` (see the module docstring): both filters' taps as scalars, the upsample's times
    ``up_scale``, the downsample's times ``down_scale``, and the recompute block's column taps
    (k = 2d+5 even, 2d+6 odd, for d = -3..4), scaled alike, of the upsample (COLUMNS_OF_UP: the
    backward's transposed upsample) or of the downsample (forward)."""
    up = (up_scale * tl.load(up_ptr + 0), up_scale * tl.load(up_ptr + 1), up_scale * tl.load(up_ptr + 2),
          up_scale * tl.load(up_ptr + 3), up_scale * tl.load(up_ptr + 4), up_scale * tl.load(up_ptr + 5),
          up_scale * tl.load(up_ptr + 6), up_scale * tl.load(up_ptr + 7), up_scale * tl.load(up_ptr + 8),
          up_scale * tl.load(up_ptr + 9), up_scale * tl.load(up_ptr + 10), up_scale * tl.load(up_ptr + 11))
    down = (down_scale * tl.load(down_ptr + 0), down_scale * tl.load(down_ptr + 1),
            down_scale * tl.load(down_ptr + 2), down_scale * tl.load(down_ptr + 3),
            down_scale * tl.load(down_ptr + 4), down_scale * tl.load(down_ptr + 5),
            down_scale * tl.load(down_ptr + 6), down_scale * tl.load(down_ptr + 7),
            down_scale * tl.load(down_ptr + 8), down_scale * tl.load(down_ptr + 9),
            down_scale * tl.load(down_ptr + 10), down_scale * tl.load(down_ptr + 11))
    d = tl.arange(0, 8) - 3
    even_k = 2 * d + 5
    odd_k = 2 * d + 6
    if COLUMNS_OF_UP:
        columns_ptr = up_ptr
        scale = up_scale
    else:
        columns_ptr = down_ptr
        scale = down_scale
    even = tl.load(columns_ptr + even_k, mask=(even_k >= 0) & (even_k < 12), other=0.0)
    odd = tl.load(columns_ptr + odd_k, mask=odd_k < 12, other=0.0)
    return up, down, (scale * even, scale * odd)


# --- forward ----------------------------------------------------------------------------------


@triton.jit
def _snake_scaled_pair(v_even, v_odd, sine_scale, CHECK_RANGE: tl.constexpr, limit):
    """sigma * z = v + sigma * inv_b * sin(v)^2 of both phases, for v = sigma * u (the forward's
    scaled upsample; see ``_forward_scales``); CHECK_RANGE and limit as in ``_sines``."""
    s_even, s_odd, _, _ = _sines(v_even, v_odd, False, CHECK_RANGE, limit)
    return v_even + sine_scale * (s_even * s_even), v_odd + sine_scale * (s_odd * s_odd)


@triton.jit
def _forward_scales(a, inv_b):
    """(2 sigma, 1 / sigma, sigma * inv_b): the forward carries sigma * z with sigma = a, so that
    the upsample (taps 2 sigma f_up) yields v = a u for the sine directly, one multiply fewer per
    sine; the downsample's taps f_down / sigma undo it. For |a| < 2^-64, sigma = 1 and the sine
    term is dropped: inv_b sin(a u)^2 <= inv_b a^2 u^2 is then below float32 resolution of u for
    any |u| < 2^64 / inv_b. NaN and infinite a keep sigma = a and reach every output as NaN, as in
    the definition. (The same rule as the CUDA kernel's ChannelConstants.)"""
    negligible = tl.abs(a) < 5.421010862427522e-20  # 2^-64
    sigma = tl.where(negligible, 1.0, a)
    return 2.0 * sigma, 1.0 / sigma, tl.where(negligible, 0.0, a * inv_b)


@triton.jit
def _upsample_gain(up):
    """max over the two phases of sum |up[k]|: |u| <= max|x| * gain."""
    even = tl.abs(up[1]) + tl.abs(up[3]) + tl.abs(up[5]) + tl.abs(up[7]) + tl.abs(up[9]) + tl.abs(up[11])
    odd = tl.abs(up[0]) + tl.abs(up[2]) + tl.abs(up[4]) + tl.abs(up[6]) + tl.abs(up[8]) + tl.abs(up[10])
    return tl.maximum(even, odd)


@triton.jit
def _output_recomputed(x_tile, pos, border, sine_scale, filters, limit, CLAMP: tl.constexpr):
    """y at positions ``pos``, recomputing z of all seven neighbours from x (nothing shared across lanes)."""
    v_even, v_odd, _ = _upsample_pair(x_tile, _neighbours(pos), border, filters[0], CLAMP)
    z_even, z_odd = _snake_scaled_pair(v_even, v_odd, sine_scale, True, limit)
    return _sum_over_neighbours(z_even, z_odd, filters[2])


@triton.jit
def _neighbour_lanes(z_even, z_odd, lanes, shift, border, BLOCK_T: tl.constexpr):
    """(z[2(m+shift)], z[2(m+shift)+1]) for the tile's positions m, gathered from lane + shift under
    the downsample's z-index clamp: a position before the row reads z[0] (the even phase of its
    first sample) in both phases, one past the row z[2T-1] (the odd phase of its last)."""
    source = tl.minimum(tl.maximum(lanes + shift, border[0]), border[1]) & (BLOCK_T - 1)
    at_source_even = tl.gather(z_even, source, 0)
    at_source_odd = tl.gather(z_odd, source, 0)
    even = tl.where(lanes + shift > border[1], at_source_odd, at_source_even)
    odd = tl.where(lanes + shift < border[0], at_source_even, at_source_odd)
    return even, odd


@triton.jit
def _gather_five_shifts(z, lanes, s0: tl.constexpr, s1: tl.constexpr, s2: tl.constexpr, s3: tl.constexpr,
                        s4: tl.constexpr, BLOCK_T: tl.constexpr):
    """z at lanes + s0, ..., + s4 (wrapping at the tile's ends), by one tl.gather of an
    [8 * BLOCK_T] index (slots 5-7 repeat s4): Triton stages z in shared memory once for all five,
    where five gathers would stage it five times (sm_90, fp32, 8 tiles per program: 1.3 shared
    stores and 0.5 barriers per output instead of 6.4 and 2.6; 168 registers instead of 140, still
    3 programs of 128 threads per multiprocessor)."""
    j = tl.arange(0, 8)[None, :]
    shift = tl.where(j == 0, s0, tl.where(j == 1, s1, tl.where(j == 2, s2, tl.where(j == 3, s3, s4))))
    index = tl.reshape((lanes[:, None] + shift) & (BLOCK_T - 1), [8 * BLOCK_T])
    # Element 8m + j of the result is z at lane m + s_j; j = 4p + 2q + r, split r, then q, then p.
    at_r0, at_r1 = tl.split(tl.reshape(tl.gather(z, index, 0), [BLOCK_T, 2, 2, 2]))
    at_q0r0, at_q1r0 = tl.split(at_r0)
    at_q0r1, at_q1r1 = tl.split(at_r1)
    at_s0, at_s4 = tl.split(at_q0r0)
    at_s2, _ = tl.split(at_q1r0)
    at_s1, _ = tl.split(at_q0r1)
    at_s3, _ = tl.split(at_q1r1)
    return at_s0, at_s1, at_s2, at_s3, at_s4


@triton.jit
def _inside(values, pos, border):
    """``values`` where ``pos`` lies in the row, 0 elsewhere (selected, not multiplied: a NaN or
    Inf outside the row stays out)."""
    return tl.where((pos >= border[0]) & (pos <= border[1]), values, 0.0)


@triton.jit
def _downsample_gathered(z_even, z_odd, lanes, border, down, BLOCK_T: tl.constexpr, BORDER: tl.constexpr):
    """y[m] = sum_{d=-3..3} down[2d+5] z[2(m+d)] + down[2d+6] z[2(m+d)+1] (taps outside 0..11 absent):
    12 products of gathered neighbours, rather than gathering the 7 partial sums w_d (18 products
    and sums per output). The downsample (z_even, z_odd = z; BORDER REPLICATE in a tile that
    reaches past the row: the z-index clamp), and the backward's transposed upsample (dL/du;
    BORDER ZEROS there: dL/du outside the row adds nothing). UNCHECKED: lanes wrap at the tile's
    ends, where only lanes that store nothing read."""
    y = down[5] * z_even + down[6] * z_odd
    if BORDER == REPLICATE:
        for shift in tl.static_range(1, 4):
            even, odd = _neighbour_lanes(z_even, z_odd, lanes, -shift, border, BLOCK_T)
            if shift < 3:
                y += down[5 - 2 * shift] * even
            y += down[6 - 2 * shift] * odd
            even, odd = _neighbour_lanes(z_even, z_odd, lanes, shift, border, BLOCK_T)
            y += down[5 + 2 * shift] * even
            if shift < 3:
                y += down[6 + 2 * shift] * odd
    else:
        even_m2, even_m1, even_p1, even_p2, even_p3 = _gather_five_shifts(z_even, lanes, -2, -1, 1, 2, 3, BLOCK_T)
        odd_m3, odd_m2, odd_m1, odd_p1, odd_p2 = _gather_five_shifts(z_odd, lanes, -3, -2, -1, 1, 2, BLOCK_T)
        if BORDER == ZEROS:
            # After the gather, by position: in a row of one tile the wrapped lanes are in the row.
            even_m2 = _inside(even_m2, lanes - 2, border)
            even_m1 = _inside(even_m1, lanes - 1, border)
            even_p1 = _inside(even_p1, lanes + 1, border)
            even_p2 = _inside(even_p2, lanes + 2, border)
            even_p3 = _inside(even_p3, lanes + 3, border)
            odd_m3 = _inside(odd_m3, lanes - 3, border)
            odd_m2 = _inside(odd_m2, lanes - 2, border)
            odd_m1 = _inside(odd_m1, lanes - 1, border)
            odd_p1 = _inside(odd_p1, lanes + 1, border)
            odd_p2 = _inside(odd_p2, lanes + 2, border)
        y += down[0] * odd_m3
        y += down[1] * even_m2
        y += down[2] * odd_m2
        y += down[3] * even_m1
        y += down[4] * odd_m1
        y += down[7] * even_p1
        y += down[8] * odd_p1
        y += down[9] * even_p2
        y += down[10] * odd_p2
        y += down[11] * even_p3
    return y


@triton.jit
def _forward_tile(x_tile, lanes, border, sine_scale, filters, limit,
                  BLOCK_T: tl.constexpr, USE_GATHER: tl.constexpr, CLAMP: tl.constexpr, CHECK_RANGE: tl.constexpr):
    """(y of the tile's lanes (with USE_GATHER, of the lanes at least 3 from either end), |x| of the
    lanes), from the scaled filters and sine term of ``_forward_scales``. Without CHECK_RANGE every
    sine takes the fast path: the caller checks |x| afterwards (``_forward_program``). The
    recompute path (no USE_GATHER) checks its arguments itself and reports |x| as 0."""
    if USE_GATHER:
        v_even, v_odd, x = _upsample_pair(x_tile, lanes, border, filters[0], CLAMP)
        z_even, z_odd = _snake_scaled_pair(v_even, v_odd, sine_scale, CHECK_RANGE, limit)
        if CLAMP:
            y = _downsample_gathered(z_even, z_odd, lanes, border, filters[1], BLOCK_T, REPLICATE)
        else:
            y = _downsample_gathered(z_even, z_odd, lanes, border, filters[1], BLOCK_T, UNCHECKED)
        x_abs = tl.abs(x)
    else:
        y = _output_recomputed(x_tile, lanes, border, sine_scale, filters, limit, CLAMP)
        x_abs = tl.zeros(lanes.shape, tl.float32)
    return y, x_abs


@triton.jit
def _forward_program(x_ptr, y_ptr, row, first_tile, last_tile, n_tiles, T, sine_scale, filters, limit,
                     BLOCK_T: tl.constexpr, USE_GATHER: tl.constexpr, HALO: tl.constexpr,
                     CHECK_RANGE: tl.constexpr):
    """Tiles first_tile .. last_tile-1 of the row; returns the largest |x| of each lane they read."""
    lanes = tl.arange(0, BLOCK_T)
    largest = tl.zeros([BLOCK_T], tl.float32)
    for tile in range(first_tile, last_tile):
        row_start, base, border, interior = _tile_geometry(row, tile, n_tiles, T, BLOCK_T, HALO)
        x_tile = x_ptr + row_start
        if interior:
            y, x_abs = _forward_tile(x_tile, lanes, border, sine_scale, filters, limit, BLOCK_T, USE_GATHER, False,
                                     CHECK_RANGE)
        else:
            y, x_abs = _forward_tile(x_tile, lanes, border, sine_scale, filters, limit, BLOCK_T, USE_GATHER, True,
                                     CHECK_RANGE)
        largest = tl.maximum(largest, x_abs)
        keep = _owned_lanes(lanes, n_tiles, T, base, BLOCK_T, HALO)
        tl.store(y_ptr + row_start + lanes, y.to(y_ptr.dtype.element_ty), mask=keep)
    return largest


@triton.jit(do_not_specialize=["n_tiles", "tiles_per_program"])
def _anti_alias_activation_forward_kernel(
    x_ptr, y_ptr, alpha_ptr, beta_ptr, up_ptr, down_ptr,
    T, C, n_tiles, tiles_per_program,
    HAS_BETA: tl.constexpr, ALPHA_LOGSCALE: tl.constexpr,
    BLOCK_T: tl.constexpr, USE_GATHER: tl.constexpr, HALO: tl.constexpr,
):
    # A 3-D grid (tile group, channel, batch): no division of a flat program id. Each program runs
    # up to tiles_per_program consecutive tiles of one row (``_tiles_per_program``), so the
    # per-thread setup (the filters' 24 loads and scalings, the exps, the division, the range
    # check's reduction) is shared by that many tiles.
    channel = tl.program_id(1)
    row = tl.program_id(2).to(tl.int64) * C + channel  # B*C may pass 2**31 (each axis is < 2**16)
    a, b = _channel_parameters(channel, alpha_ptr, beta_ptr, HAS_BETA, ALPHA_LOGSCALE)
    inv_b = 1.0 / (b + SNAKE_EPS)
    up_scale, down_scale, sine_scale = _forward_scales(a, inv_b)
    filters = _load_filters(up_ptr, down_ptr, up_scale, down_scale, False)
    first_tile = tl.program_id(0) * tiles_per_program
    last_tile = tl.minimum(first_tile + tiles_per_program, n_tiles)
    largest = _forward_program(x_ptr, y_ptr, row, first_tile, last_tile, n_tiles, T, sine_scale, filters,
                               FAST_MAX, BLOCK_T, USE_GATHER, HALO, False)
    # Every sine above took the fast path. Its arguments are bounded by |v| <= max|x| * gain (every
    # u of a stored output is made of x the tile loaded at its own lanes, as HALO >= 6); where the
    # bound reaches FAST_BOUND_MAX (never at model scales), the tiles are computed again, with the
    # precise sine for the arguments at or beyond FAST_MAX; in a channel of small b (see
    # MAX_FAST_INV_B), with the precise sine for every argument. One check per program, not one per
    # tile; the fast pass stays the only code on the common path (a small-b channel pays both).
    if (tl.max(largest, axis=0) * _upsample_gain(filters[0]) >= FAST_BOUND_MAX) | (tl.abs(inv_b) > MAX_FAST_INV_B):
        _forward_program(x_ptr, y_ptr, row, first_tile, last_tile, n_tiles, T, sine_scale, filters,
                         _sine_limit(inv_b), BLOCK_T, USE_GATHER, HALO, True)


# --- backward ---------------------------------------------------------------------------------


@triton.jit
def _grad_z_pair(g_tile, pos, border, down, CLAMP: tl.constexpr):
    """(dL/dz[2m], dL/dz[2m+1]) for m = t0 + pos: the transposed downsample of grad_y (zero-padded),
    zero outside the row, plus the clamped taps' gradient border[2] at z[0] and border[3] at z[2T-1]."""
    if CLAMP:
        gz_even, gz_odd = _polyphase(_load_shifted(g_tile, pos, border, ZEROS), down)
        inside = (pos >= border[0]) & (pos <= border[1])
        gz_even = tl.where(inside, gz_even + tl.where(pos == border[0], border[2], 0.0), 0.0)
        gz_odd = tl.where(inside, gz_odd + tl.where(pos == border[1], border[3], 0.0), 0.0)
    else:
        gz_even, gz_odd = _polyphase(_load_shifted(g_tile, pos, border, UNCHECKED), down)
    return gz_even, gz_odd


@triton.jit
def _grad_u(x_tile, g_tile, pos, border, act, filters, CLAMP: tl.constexpr):
    """dL/du of both phases at positions ``pos``, with u and the sine terms the parameter gradients use."""
    gz_even, gz_odd = _grad_z_pair(g_tile, pos, border, filters[1], CLAMP)
    u_even, u_odd, _ = _upsample_pair(x_tile, pos, border, filters[0], CLAMP)
    s_even, s_odd, c_even, c_odd = _sines(act[0] * u_even, act[0] * u_odd, True, True, _sine_limit(act[1]))
    sin2_even = 2.0 * s_even * c_even
    sin2_odd = 2.0 * s_odd * c_odd
    slope = act[0] * act[1]
    gu = (gz_even * (1.0 + slope * sin2_even), gz_odd * (1.0 + slope * sin2_odd))
    return gu, (gz_even, gz_odd), (u_even, u_odd), (s_even * s_even, s_odd * s_odd), (sin2_even, sin2_odd)


@triton.jit
def _grad_x_recomputed(x_tile, g_tile, pos, border, act, filters, CLAMP: tl.constexpr):
    """dL/dx at positions ``pos`` by the transposed upsample over zero-padded dL/du (the x-border
    sums excluded), recomputing dL/du of all seven neighbours: a [N, 8] block."""
    gu, _, _, _, _ = _grad_u(x_tile, g_tile, _neighbours(pos), border, act, filters, CLAMP)
    return _sum_over_neighbours(gu[0], gu[1], filters[2])


@triton.jit
def _backward_tile(x_tile, g_tile, lanes, border, act, filters, owned,
                   BLOCK_T: tl.constexpr, USE_GATHER: tl.constexpr, CLAMP: tl.constexpr):
    """dL/dx of the tile's lanes (of its ``owned`` lanes, with USE_GATHER), and the sums over its
    owned lanes for the parameter gradients: sum dL/dz * u * sin(2au) and sum dL/dz * sin(au)^2
    (tiles overlap: each u sample counted by the one tile that owns its lane)."""
    gu, gz, u, sin_sq, sin2 = _grad_u(x_tile, g_tile, lanes, border, act, filters, CLAMP)
    sum_u_sin2 = tl.sum(tl.where(owned, gz[0] * u[0] * sin2[0] + gz[1] * u[1] * sin2[1], 0.0), axis=0)
    sum_sin_sq = tl.sum(tl.where(owned, gz[0] * sin_sq[0] + gz[1] * sin_sq[1], 0.0), axis=0)
    if USE_GATHER:
        # The transposed upsample of dL/du from the neighbouring lanes: an owned lane is at least
        # HALO >= 3 lanes from either end of its tile (or its tile holds the whole row).
        if CLAMP:
            gx = _downsample_gathered(gu[0], gu[1], lanes, border, filters[0], BLOCK_T, ZEROS)
        else:
            gx = _downsample_gathered(gu[0], gu[1], lanes, border, filters[0], BLOCK_T, UNCHECKED)
    else:
        gx = _grad_x_recomputed(x_tile, g_tile, lanes, border, act, filters, CLAMP)
    if CLAMP:
        # The upsample read x[clamp(j)]: the gradient of the virtual samples j = -3..-1 lands on
        # x[0], that of j = T..T+2 on x[T-1]. (Where lo / hi are clipped, no lane equals them.)
        edge = tl.arange(0, 8)
        lo = border[0]
        hi = border[1]
        virtual_lanes = tl.where(edge < 3, lo - 3 + edge, hi - 2 + edge)
        gx_virtual = _grad_x_recomputed(x_tile, g_tile, virtual_lanes, border, act, filters, CLAMP)
        to_first = tl.sum(tl.where(edge < 3, gx_virtual, 0.0), axis=0)
        to_last = tl.sum(tl.where((edge >= 3) & (edge < 6), gx_virtual, 0.0), axis=0)
        gx += tl.where(lanes == lo, to_first, 0.0) + tl.where(lanes == hi, to_last, 0.0)
    return gx, sum_u_sin2, sum_sin_sq


@triton.jit
def _grad_at_clamped_z(g_row, T, down):
    """Gradient the downsample sends to the clamped z indices, (to z[0], to z[2T-1]): y[t] reads
    z[2t+k-5] < 0 for (t, k) in {0} x 0..4, {1} x 0..2, {2} x {0}, and z > 2T-1 for {T-1} x 7..11,
    {T-2} x 9..11, {T-3} x {11}. (Vector loads with lane masks: the JIT may specialise T == 1.)"""
    k4 = tl.arange(0, 4)
    g_head = tl.load(g_row + k4, mask=k4 < T, other=0.0).to(tl.float32)
    g_tail = tl.load(g_row + (T - 1 - k4), mask=k4 < T, other=0.0).to(tl.float32)
    head_taps = tl.where(k4 == 0, down[0] + down[1] + down[2] + down[3] + down[4],
                         tl.where(k4 == 1, down[0] + down[1] + down[2], tl.where(k4 == 2, down[0], 0.0)))
    tail_taps = tl.where(k4 == 0, down[7] + down[8] + down[9] + down[10] + down[11],
                         tl.where(k4 == 1, down[9] + down[10] + down[11], tl.where(k4 == 2, down[11], 0.0)))
    return tl.sum(g_head * head_taps, axis=0), tl.sum(g_tail * tail_taps, axis=0)


@triton.jit(do_not_specialize=["n_tiles"])
def _anti_alias_activation_backward_kernel(
    grad_y_ptr, x_ptr, grad_x_ptr, partial_alpha_ptr, partial_beta_ptr,
    alpha_ptr, beta_ptr, up_ptr, down_ptr,
    T, C, n_tiles,
    HAS_BETA: tl.constexpr, ALPHA_LOGSCALE: tl.constexpr, PARAM_GRADS: tl.constexpr,
    BLOCK_T: tl.constexpr, USE_GATHER: tl.constexpr, HALO: tl.constexpr,
):
    # The forward's 3-D grid (tile, channel, batch), one tile per program; tiles overlap as the
    # forward's do (HALO), so that every owned lane's neighbours are in its tile.
    tile = tl.program_id(0)
    channel = tl.program_id(1)
    row = tl.program_id(2).to(tl.int64) * C + channel
    row_start, base, border, interior = _tile_geometry(row, tile, n_tiles, T, BLOCK_T, HALO)
    a, b = _channel_parameters(channel, alpha_ptr, beta_ptr, HAS_BETA, ALPHA_LOGSCALE)
    inv_b = 1.0 / (b + SNAKE_EPS)
    act = (a, inv_b)
    filters = _load_filters(up_ptr, down_ptr, 2.0, 1.0, True)

    g_tile = grad_y_ptr + row_start
    x_tile = x_ptr + row_start
    lanes = tl.arange(0, BLOCK_T)
    owned = _owned_lanes(lanes, n_tiles, T, base, BLOCK_T, HALO)
    if interior:
        # Reads no border gradient: border[2:] only complete the tuple's shape.
        gx, sum_u_sin2, sum_sin_sq = _backward_tile(x_tile, g_tile, lanes, (border[0], border[1], 0.0, 0.0), act,
                                                    filters, owned, BLOCK_T, USE_GATHER, False)
    else:
        # Only a tile that reaches past the row needs the gradient sent to the clamped z[0], z[2T-1].
        grad_z_first, grad_z_last = _grad_at_clamped_z(grad_y_ptr + (row_start - base), T, filters[1])
        gx, sum_u_sin2, sum_sin_sq = _backward_tile(x_tile, g_tile, lanes,
                                                    (border[0], border[1], grad_z_first, grad_z_last), act,
                                                    filters, owned, BLOCK_T, USE_GATHER, True)
    tl.store(grad_x_ptr + row_start + lanes, gx.to(grad_x_ptr.dtype.element_ty), mask=owned)

    if PARAM_GRADS:
        # dz/da = u sin(2au) / (b + eps); dz/db = -sin(au)^2 / (b + eps)^2; times a (b) for log-scale.
        grad_a = sum_u_sin2 * inv_b
        grad_b = -sum_sin_sq * inv_b * inv_b
        if ALPHA_LOGSCALE:
            grad_a = grad_a * a
            grad_b = grad_b * b
        partial = row * n_tiles + tile
        if HAS_BETA:
            tl.store(partial_alpha_ptr + partial, grad_a)
            tl.store(partial_beta_ptr + partial, grad_b)
        else:
            # Snake: b = a, so alpha receives both terms.
            tl.store(partial_alpha_ptr + partial, grad_a + grad_b)


# --- host launchers ---------------------------------------------------------------------------


def _halo(block_t: int, use_gather: bool) -> int:
    """Lanes at each end of a tile that compute z (the backward: dL/du) for a neighbouring tile's
    outputs, not outputs of their own. Tiles overlap by twice this instead of recomputing their
    edge outputs' neighbours: 16 of 1024 lanes (1.6%) against an edge block of 8 neighbours per
    edge output, which every thread carried (its [8, 8] block has fewer elements than a tile has
    threads). At least 6, the downsample's reach (3) plus the upsample's (3): then every x an
    output depends on was loaded at a lane of the tile, which the forward's range check of the
    sine's arguments relies on (see ``_anti_alias_activation_forward_kernel``). 8 keeps each tile's
    first output (a multiple of BLOCK_T - 16, less 8, plus 8) 16-byte aligned for half precision,
    so stores stay vectors. The recompute path needs no neighbours from other lanes: no halo."""
    if not use_gather:
        return 0
    return 8 if block_t >= 64 else 6


def _tiles_per_row(T: int, block_t: int, halo: int) -> int:
    """A row that fits one tile takes one (its clamped ends need no halo); longer rows take tiles of
    block_t - 2 * halo outputs."""
    return 1 if T <= block_t else -(-T // (block_t - 2 * halo))


def _tiling(shape, block_t: int | None, num_warps: int | None, use_gather: bool | None,
            samples_per_thread: int) -> tuple[int, int, int, bool, int]:
    """(tiles per row, block_t, num_warps, use_gather, halo) of a launch over x of ``shape``,
    defaults filled in (forward and backward alike)."""
    B, C, T = shape
    use_gather = USE_GATHER if use_gather is None else bool(use_gather)
    block_t, num_warps = _launch_config(T, block_t, num_warps, use_gather, samples_per_thread)
    halo = _halo(block_t, use_gather)
    n_tiles = _tiles_per_row(T, block_t, halo)
    return n_tiles, block_t, num_warps, use_gather, halo


# Samples per thread on the gather path. Forward: 8 (benchmarks/triton_sass.py, sm_90, fp32,
# BLOCK_T = 1024, 8 tiles per program: 40.8 FP32-pipe operations and 58 instructions per output at
# 168 registers, against 41.9 and 71 at 4 samples (8 warps) and 80 registers: each thread's work
# per tile beyond the arithmetic, the gathers' indexing and the tile's bookkeeping, is shared by
# twice the outputs). Backward: 4 (8 would take 206 registers).
_FORWARD_SAMPLES_PER_THREAD = 8
_BACKWARD_SAMPLES_PER_THREAD = 4

# Consecutive tiles of a row one forward program runs: as many as leave at least
# _PROGRAMS_PER_SM programs per multiprocessor (about 3 waves of the 3 resident programs that 168
# registers allow), at most _MAX_TILES_PER_PROGRAM. Each program's setup is ~250 instructions per
# thread (benchmarks/triton_sass.py, sm_90), 32 per output at one tile, 2 at 16. At 2048 mel frames
# the 22 kHz model's activations get 6-12 tiles per program on an H200, at 256 frames 1.
_MAX_TILES_PER_PROGRAM = 16
_PROGRAMS_PER_SM = 8
# Without a GPU (the interpreter) 4, so the tests run programs of several tiles.
_CPU_TILES_PER_PROGRAM = 4


@functools.lru_cache(maxsize=None)
def _multiprocessor_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _program_tiles(rows: int, n_tiles: int, programs_wanted: int) -> int:
    """Tiles per forward program over ``rows`` rows of ``n_tiles`` tiles, leaving at least
    ``programs_wanted`` programs where there are enough tiles."""
    return max(1, min(n_tiles, _MAX_TILES_PER_PROGRAM, rows * n_tiles // programs_wanted))


def _tiles_per_program(B: int, C: int, n_tiles: int, device: torch.device) -> int:
    """Tiles per forward program of a launch over (B, C, n_tiles tiles) on ``device``: the GPU rule
    of ``_program_tiles``, or _CPU_TILES_PER_PROGRAM under the interpreter."""
    if device.type != "cuda":
        return min(n_tiles, _CPU_TILES_PER_PROGRAM)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _program_tiles(B * C, n_tiles, _multiprocessor_count(index) * _PROGRAMS_PER_SM)


def _default_block_t(T: int, use_gather: bool) -> int:
    """The tile length for rows of T samples: the row rounded up to a power of two, at most
    _MAX_BLOCK_T (_MAX_BLOCK_T_RECOMPUTE). Rows longer than a tile on the gather path take
    the tile length of 1024 or 512 that computes fewer lanes over the row (the tiles overlap, so
    T = 4096 takes 5 tiles of 1024 but 9 of 512: 4608 lanes instead of 5120), the longer one on a tie."""
    largest = _MAX_BLOCK_T if use_gather else _MAX_BLOCK_T_RECOMPUTE
    block_t = min(largest, max(_MIN_BLOCK_T, 1 << (T - 1).bit_length()))
    if use_gather and T > block_t:
        half = block_t // 2
        lanes = _tiles_per_row(T, block_t, _halo(block_t, True)) * block_t
        if _tiles_per_row(T, half, _halo(half, True)) * half < lanes:
            block_t = half
    return block_t


def _launch_config(T: int, block_t: int | None, num_warps: int | None, use_gather: bool,
                   samples_per_thread: int) -> tuple[int, int]:
    """Tile length and warps: ``samples_per_thread`` on the gather path, 8 neighbour blocks on the other."""
    if block_t is None:
        block_t = _default_block_t(T, use_gather)
    if block_t < _MIN_BLOCK_T or block_t & (block_t - 1):
        raise ValueError(f"block_t must be a power of two >= {_MIN_BLOCK_T}, got {block_t}")
    if num_warps is None:
        if use_gather:
            num_warps = max(1, min(8, block_t // (32 * samples_per_thread)))
        else:
            num_warps = max(1, min(4, block_t // 32))
    return block_t, num_warps


_IO_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _batch_chunks(B: int, C: int):
    """(b0, b1) of the launches over a batch: grid axes 1 (channels) and 2 (batch) take at most
    _MAX_GRID_YZ, so larger batches go in several launches (contiguous views of the tensors)."""
    if C > _MAX_GRID_YZ:
        raise ValueError(f"at most {_MAX_GRID_YZ} channels (a CUDA grid axis), got {C}")
    for b0 in range(0, B, _MAX_GRID_YZ):
        yield b0, min(B, b0 + _MAX_GRID_YZ)


def _check(x, alpha, beta, upsample_filter, downsample_filter) -> None:
    """Cheap checks of what the kernels assume (``bigvgan_fast.anti_alias.op.run`` prepares the inputs so)."""
    if x.dim() != 3 or x.shape[-1] < 1:
        raise ValueError(f"x must have shape (B, C, T >= 1), got {tuple(x.shape)}")
    if not x.is_contiguous():
        raise ValueError("x must be contiguous (bigvgan_fast.anti_alias.op.run makes it so)")
    if x.dtype not in _IO_DTYPES:
        raise TypeError(f"x must be float32, float16 or bfloat16, got {x.dtype}")
    channels = x.shape[1]
    for name, p in (("alpha", alpha), ("beta", beta)):
        if p is not None and not (p.shape == (channels,) and p.is_contiguous() and p.device == x.device and p.is_floating_point()):
            raise ValueError(f"{name} must be a contiguous float ({channels},) tensor on {x.device}")
    for name, f in (("upsample_filter", upsample_filter), ("downsample_filter", downsample_filter)):
        if not (f.numel() == FILTER_TAPS and f.dtype == torch.float32 and f.is_contiguous() and f.device == x.device):
            raise ValueError(f"{name} must be a contiguous float32 tensor of {FILTER_TAPS} taps on {x.device}")


def _check_out_dtype(out_dtype) -> None:
    if out_dtype not in _IO_DTYPES:
        raise TypeError(f"out_dtype must be float32, float16 or bfloat16, got {out_dtype}")


def _check_out(out, x, dtype) -> None:
    if not (out.shape == x.shape and out.dtype == dtype and out.is_contiguous() and out.device == x.device):
        raise ValueError(f"out must be a contiguous {dtype} tensor of shape {tuple(x.shape)} on {x.device}, "
                         f"got {out.dtype} {tuple(out.shape)}")


def anti_alias_activation_forward(
    x: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor | None,
    upsample_filter: torch.Tensor,
    downsample_filter: torch.Tensor,
    alpha_logscale: bool,
    *,
    out: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    block_t: int | None = None,
    num_warps: int | None = None,
    use_gather: bool | None = None,
) -> torch.Tensor:
    """Fused anti-aliased Snake / SnakeBeta activation (docs/definition.md), one Triton launch.

    Args:
        x: (B, C, T) contiguous float32 / float16 / bfloat16, any T >= 1.
        alpha: (C,) float tensor (any float dtype, read as float32); log-scale if ``alpha_logscale``.
        beta: (C,) float tensor for SnakeBeta, or None for Snake.
        upsample_filter, downsample_filter: 12 contiguous float32 taps on x's device.
        alpha_logscale: the parameters are logarithms (a = exp(alpha), b = exp(beta)).
        out: optional contiguous (B, C, T) tensor to write into: float32, float16 or bfloat16,
            whatever x's dtype (of ``out_dtype`` when that is given too).
        out_dtype: the output's dtype when ``out`` is None (float32, float16 or bfloat16); None:
            ``out``'s, else x's.
        block_t, num_warps: override the launch heuristic (power of two >= 16), for tests and tuning.
        use_gather: share neighbouring samples through ``tl.gather`` (default :data:`USE_GATHER`)
            or recompute them.

    Returns:
        (B, C, T) tensor (``out`` when given) of ``out_dtype``; float32 math, one rounding at the
        store, whatever the input and output dtypes.
    """
    _check(x, alpha, beta, upsample_filter, downsample_filter)
    B, C, T = x.shape
    if out is None:
        out_dtype = x.dtype if out_dtype is None else out_dtype
        _check_out_dtype(out_dtype)
        out = torch.empty_like(x, dtype=out_dtype)
    else:
        _check_out(out, x, out.dtype if out_dtype is None else out_dtype)
        _check_out_dtype(out.dtype)
    if x.numel() == 0:
        return out
    n_tiles, block_t, num_warps, use_gather, halo = _tiling(x.shape, block_t, num_warps, use_gather,
                                                            _FORWARD_SAMPLES_PER_THREAD)
    for b0, b1 in _batch_chunks(B, C):
        tiles_per_program = _tiles_per_program(b1 - b0, C, n_tiles, x.device)
        _anti_alias_activation_forward_kernel[(triton.cdiv(n_tiles, tiles_per_program), C, b1 - b0)](
            x[b0:b1], out[b0:b1], alpha, alpha if beta is None else beta, upsample_filter, downsample_filter,
            T, C, n_tiles, tiles_per_program,
            HAS_BETA=beta is not None, ALPHA_LOGSCALE=bool(alpha_logscale),
            BLOCK_T=block_t, USE_GATHER=use_gather, HALO=halo,
            num_warps=num_warps, enable_fp_fusion=True,
        )
    return out


def anti_alias_activation_backward(
    grad_y: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor | None,
    upsample_filter: torch.Tensor, downsample_filter: torch.Tensor, alpha_logscale: bool,
    needs_alpha_grad: bool = True,
    needs_beta_grad: bool = True,
    *,
    out: torch.Tensor | None = None,
    block_t: int | None = None,
    num_warps: int | None = None,
    use_gather: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Gradients of :func:`anti_alias_activation_forward`, recomputing the activation from x.

    Args:
        grad_y: (B, C, T) gradient of the output, any float dtype (e.g. the forward's out_dtype) and
            strides (made contiguous here).
        x, alpha, beta, upsample_filter, downsample_filter, alpha_logscale: as in the forward.
        needs_alpha_grad, needs_beta_grad: which parameter gradients to compute.
        out: optional contiguous tensor like x to write grad_x into.
        block_t, num_warps, use_gather: as in the forward.

    Returns:
        (grad_x in x's dtype, grad_alpha in alpha's dtype or None, grad_beta in beta's dtype or None).
        Parameter gradients are summed without atomics, in a fixed order: bitwise reproducible.
        For Snake (beta None) grad_alpha holds both of alpha's roles and grad_beta is None.
    """
    _check(x, alpha, beta, upsample_filter, downsample_filter)
    if grad_y.shape != x.shape or grad_y.device != x.device or not grad_y.is_floating_point():
        raise ValueError(f"grad_y must be a float tensor of shape {tuple(x.shape)} on {x.device}")
    grad_y = grad_y.contiguous()
    B, C, T = x.shape
    needs_beta_grad = bool(needs_beta_grad) and beta is not None
    param_grads = bool(needs_alpha_grad) or needs_beta_grad
    if out is None:
        out = torch.empty_like(x)
    else:
        _check_out(out, x, x.dtype)
    n_tiles, block_t, num_warps, use_gather, halo = _tiling(x.shape, block_t, num_warps, use_gather,
                                                            _BACKWARD_SAMPLES_PER_THREAD)
    partial_alpha = torch.empty((B, C, n_tiles) if param_grads else (1,), dtype=torch.float32, device=x.device)
    partial_beta = torch.empty((B, C, n_tiles) if param_grads and beta is not None else (1,),
                               dtype=torch.float32, device=x.device)
    if x.numel() > 0:
        for b0, b1 in _batch_chunks(B, C):
            _anti_alias_activation_backward_kernel[(n_tiles, C, b1 - b0)](
                grad_y[b0:b1], x[b0:b1], out[b0:b1],
                partial_alpha[b0:b1] if partial_alpha.dim() == 3 else partial_alpha,
                partial_beta[b0:b1] if partial_beta.dim() == 3 else partial_beta,
                alpha, alpha if beta is None else beta, upsample_filter, downsample_filter,
                T, C, n_tiles,
                HAS_BETA=beta is not None, ALPHA_LOGSCALE=bool(alpha_logscale), PARAM_GRADS=param_grads,
                BLOCK_T=block_t, USE_GATHER=use_gather, HALO=halo,
                num_warps=num_warps, enable_fp_fusion=True,
            )
    elif param_grads:
        partial_alpha.zero_()
        partial_beta.zero_()
    # Fixed-order reduction over (batch, tiles), in float64: deterministic and well below fp32 error.
    grad_alpha = partial_alpha.double().sum(dim=(0, 2)).to(alpha.dtype) if needs_alpha_grad else None
    grad_beta = partial_beta.double().sum(dim=(0, 2)).to(beta.dtype) if needs_beta_grad else None
    return out, grad_alpha, grad_beta


# --- lean inference launch ----------------------------------------------------------------------


def prepared_forward(
    dtype: torch.dtype,
    has_beta: bool,
    alpha_logscale: bool,
    device: torch.device | str,
    *,
    param_dtype: torch.dtype = torch.float32,
    out_dtype: torch.dtype | None = None,
    block_t: int | None = None,
    num_warps: int | None = None,
    use_gather: bool | None = None,
):
    """A forward launcher for a fixed configuration with little Python per call, for inference.

    ``anti_alias_activation_forward`` checks its arguments and lets Triton bind them and compute the
    specialisation key on every call. Here the kernel is compiled once per tile length and
    alignment class (at the first call that needs it) and then launched directly through Triton's
    compiled-kernel runner: per call only the tile count, the alignment class and a few identity
    checks are computed. Under the Triton interpreter (CPU) it is the ordinary launcher.

    Args:
        dtype: x's dtype (float32, float16 or bfloat16).
        has_beta: SnakeBeta (the launcher takes beta) or Snake (beta is None).
        alpha_logscale: as in the forward.
        device: the CUDA device every call's tensors are on (and the current device at the call).
        param_dtype: alpha's (and beta's) dtype.
        out_dtype: out's dtype (float32, float16 or bfloat16, whatever ``dtype``); None: ``dtype``.
        block_t, num_warps, use_gather: as in the forward; block_t None picks it from each call's T.

    Returns:
        ``launch(x, out, alpha, beta, up, down) -> out``: x contiguous (B, C, T) of ``dtype``; out a
        contiguous tensor of x's shape and ``out_dtype``; alpha, beta (None for Snake) contiguous
        (C,) of ``param_dtype``; up, down contiguous float32 12-tap filters, all on ``device``.
        Shapes and devices of the parameters are the caller's promise (prepare them once); what is
        checked per call is what would otherwise write out of bounds or read the wrong dtype.
    """
    device = torch.device(device)
    use_gather = USE_GATHER if use_gather is None else bool(use_gather)
    if block_t is not None:
        block_t, num_warps = _launch_config(block_t, block_t, num_warps, use_gather, _FORWARD_SAMPLES_PER_THREAD)
    if dtype not in _IO_DTYPES:
        raise TypeError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
    out_dtype = dtype if out_dtype is None else out_dtype
    _check_out_dtype(out_dtype)
    if not param_dtype.is_floating_point:
        raise TypeError(f"param_dtype must be a float dtype, got {param_dtype}")
    if _interpreted() or device.type != "cuda":
        def launch(x, out, alpha, beta, up, down):
            if x.dtype != dtype:
                raise ValueError(f"prepared for {dtype} x, got {x.dtype}")
            return anti_alias_activation_forward(x, alpha, beta, up, down, alpha_logscale, out=out, out_dtype=out_dtype,
                                                 block_t=block_t, num_warps=num_warps, use_gather=use_gather)
        return launch
    return _PreparedForward(dtype, bool(has_beta), bool(alpha_logscale), device, param_dtype, out_dtype,
                            block_t, num_warps, use_gather)


class _PreparedForward:
    """See :func:`prepared_forward`. One instance per (x dtype, out dtype, ...): Triton specialises on
    both pointers' element types. Compiled kernels are keyed by (block_t, aligned): aligned means
    T % 16 == 0 and 16-byte aligned x and out, which Triton's specialisation would also see and
    which lets it emit wide loads and stores; the other class is compiled without those facts.
    Parameters are compiled as unaligned pointers (they are read once per program)."""

    def __init__(self, dtype, has_beta, alpha_logscale, device, param_dtype, out_dtype, block_t, num_warps, use_gather):
        self.dtype = dtype
        self.out_dtype = out_dtype
        self.has_beta = has_beta
        self.alpha_logscale = alpha_logscale
        self.device = device
        self.device_index = device.index if device.index is not None else torch.cuda.current_device()
        self.programs_wanted = _multiprocessor_count(self.device_index) * _PROGRAMS_PER_SM
        self.param_dtype = param_dtype
        self.block_t = block_t
        self.num_warps = num_warps
        self.use_gather = use_gather
        self._compiled = {}
        self._geometry = {}  # (B, C, T) -> (block_t, (grid, n_tiles, tiles_per_program))
        self._current_stream = triton.runtime.driver.active.get_current_stream

    def _compile(self, block_t: int, aligned: bool):
        _, num_warps = _launch_config(block_t, block_t, self.num_warps, self.use_gather, _FORWARD_SAMPLES_PER_THREAD)
        # Stand-ins that carry exactly the facts of the class: Triton specialises on pointer
        # alignment, integers divisible by 16 and integers equal to 1, so T = 48 (or 17) and C = 3
        # leave only the intended facts (n_tiles and tiles_per_program are never specialised); a
        # one-element offset makes a pointer unaligned.
        with torch.cuda.device(self.device_index):
            data = torch.empty(65, dtype=self.dtype, device=self.device)
            written = torch.empty(65, dtype=self.out_dtype, device=self.device)
            params = torch.empty(32, dtype=self.param_dtype, device=self.device)[1:]
            taps = torch.empty(32, dtype=torch.float32, device=self.device)[1:13]
            x, out = (data[:64], written[:64]) if aligned else (data[1:65], written[1:65])
            constexprs = dict(HAS_BETA=self.has_beta, ALPHA_LOGSCALE=self.alpha_logscale, BLOCK_T=block_t,
                              USE_GATHER=self.use_gather, HALO=_halo(block_t, self.use_gather))
            compiled = _anti_alias_activation_forward_kernel.warmup(
                x, out, params, params, taps, taps, 48 if aligned else 17, 3, 3, 3,
                **constexprs, num_warps=num_warps, enable_fp_fusion=True, grid=(1,))
        # The compiled kernel's runner takes one value per parameter, in order, the constexprs too
        # (its launcher skips them): so since Triton 3.3 (3.0-3.2 took the others only).
        # tests/test_triton_launch_contract.py checks this against the installed Triton.
        self._compiled[block_t, aligned] = compiled, tuple(constexprs.values())
        return self._compiled[block_t, aligned]

    def __call__(self, x, out, alpha, beta, up, down):
        if not (x.dtype is self.dtype and out.dtype is self.out_dtype and out.shape == x.shape
                and x.is_contiguous() and out.is_contiguous()):
            raise ValueError(f"x and out must be contiguous tensors of one shape, {self.dtype} and {self.out_dtype}, "
                             f"got {x.dtype} {tuple(x.shape)} and {out.dtype} {tuple(out.shape)}")
        if (beta is not None) != self.has_beta or alpha.dtype is not self.param_dtype:
            raise ValueError(f"prepared for {'SnakeBeta' if self.has_beta else 'Snake'} with {self.param_dtype} "
                             f"parameters, got beta {'given' if beta is not None else 'None'}, alpha {alpha.dtype}")
        if torch.cuda.current_device() != self.device_index:
            raise RuntimeError(f"the launcher was prepared for cuda:{self.device_index}, but the current "
                               f"device is cuda:{torch.cuda.current_device()}")
        B, C, T = x.shape
        if x.numel() == 0 or T >= 2**31 or B > _MAX_GRID_YZ or C > _MAX_GRID_YZ:
            # Nothing to launch, 64-bit lengths the stand-ins do not specialise for, or a grid
            # the ordinary launcher splits (or refuses).
            return anti_alias_activation_forward(x, alpha, beta, up, down, self.alpha_logscale, out=out,
                                                 block_t=self.block_t, num_warps=self.num_warps,
                                                 use_gather=self.use_gather)
        geometry = self._geometry.get((B, C, T)) or self._tile(B, C, T)
        block_t, (grid, n_tiles, tiles_per_program) = geometry
        aligned = T % 16 == 0 and x.data_ptr() % 16 == 0 and out.data_ptr() % 16 == 0
        compiled, constexprs = self._compiled.get((block_t, aligned)) or self._compile(block_t, aligned)
        compiled[grid](
            x, out, alpha, alpha if beta is None else beta, up, down, T, C, n_tiles, tiles_per_program, *constexprs,
            stream=self._current_stream(self.device_index))
        return out

    def _tile(self, B: int, C: int, T: int):
        """The launch geometry of x of shape (B, C, T), kept: a model calls with few shapes."""
        block_t = self.block_t if self.block_t is not None else _default_block_t(T, self.use_gather)
        n_tiles = _tiles_per_row(T, block_t, _halo(block_t, self.use_gather))
        tiles_per_program = _program_tiles(B * C, n_tiles, self.programs_wanted)
        if len(self._geometry) >= 256:  # a bound for callers of ever new lengths
            self._geometry.clear()
        self._geometry[B, C, T] = block_t, ((-(-n_tiles // tiles_per_program), C, B), n_tiles, tiles_per_program)
        return self._geometry[B, C, T]
