"""Triton kernels of the anti-aliased activation: 2x upsample -> Snake / SnakeBeta -> 2x downsample.

One file for the op (Liger-Kernel style): the ``@triton.jit`` forward and backward kernels, their
helpers and the host launchers :func:`anti_alias_activation_forward` and
:func:`anti_alias_activation_backward`. The definition they implement is SPEC.md's (and
``bigvgan_fast.activation.anti_alias_activation_ref``'s); ``tests/test_triton_kernel.py`` checks
every output sample, borders included, against a float64 evaluation of it.

Polyphase form used throughout (f_up, f_down: the 12 taps; x, g_y zero-based; m, t in [0, T)):

    u[2m]   = 2 * (f_up[1] x[m+2] + f_up[3] x[m+1] + f_up[5] x[m] + f_up[7] x[m-1] + f_up[9] x[m-2] + f_up[11] x[m-3])
    u[2m+1] = 2 * (f_up[0] x[m+3] + f_up[2] x[m+2] + f_up[4] x[m+1] + f_up[6] x[m] + f_up[8] x[m-1] + f_up[10] x[m-2])
    y[t]    = sum_{d=-3..3} w_d[t+d],   w_d[m] = f_down[2d+5] z[2m] + f_down[2d+6] z[2m+1]
              (taps outside 0..11 are zero: w_-3 = f_down[0] z[2m+1], w_3 = f_down[11] z[2m])

with x indices clamped to [0, T-1] and, for the downsample, z indices clamped to [0, 2T-1]: a
"z[2m]" or "z[2m+1]" with m < 0 is z[0] = act(u[0]) and one with m >= T is z[2T-1] = act(u[2T-1]).
Each y[t] reads x[t-6 .. t+6].

Kernel design (not yet measured on a GPU; the figures below are the reasoning, not timings):

- Grid: one program per (row = b*C + c, tile of BLOCK_T outputs), flattened to one axis (rows
  outer, tiles inner) so neither B*C nor T/BLOCK_T meets CUDA's 65535 limit of grid axes 1 and 2.
  Row offsets are int64 (B*C*T may exceed 2**31); lane offsets inside a tile stay int32.
- Each program computes u[2m], u[2m+1] and z for the BLOCK_T positions m of its tile once (two
  sines per output sample, as in the definition), from seven contiguous [BLOCK_T] loads of x at
  shifts -3..3 (all but one hit L1/L2: DRAM sees one read of x and one write of y). The
  downsample needs z of the neighbours m-3..m+3: these come from ``tl.gather`` (Triton lowers a
  gather across warps through shared memory), i.e. six shifted reads of the tile's w_d vectors.
  The three outputs at each end of the tile, whose neighbours belong to the next tile, are
  recomputed from x on an [8, 8] side block (128 extra sines per tile, 6% at BLOCK_T = 1024).
  ``use_gather=False`` recomputes every neighbour instead (16 sines per output, no shared
  memory): a fallback in case a Triton version mis-compiles the gather; the tests run both.
- Interior tiles (the whole halo inside [0, T)) take a branch with unclamped loads at constant
  offsets; only the first and last tiles of a row clamp indices and apply the z-border rule.
- Math in float32 (parameters converted in-kernel, exp of the parameters once per program, the
  2x of the upsample folded into its taps), one rounding at the store.
- Tiles of BLOCK_T = 1024 samples with 8 warps (4 samples per thread) for T >= 1024. Compiled
  for sm_90a by Triton 3.9 (ptxas, no GPU here) that is 59 registers for the forward and about
  100 for the backward, no spills; 2048 samples at 8 warps took 103 and 246 registers (the
  backward then fits one block per SM). Not yet timed on an H100: benchmarks/ should replace
  this reasoning with a measured choice.
- Vector width, from the same compile with T % 16 == 0 (every model shape): the forward stores
  y with 16-byte instructions in float32 and 8-byte ones in 16-bit dtypes (4 samples per
  thread); of the seven shifted x loads, the aligned ones are 8- and 16-byte wide, the others
  4-byte (coalesced across the warp either way). The backward's loads and stores stay 4-byte.
- The sine is ``tl.sin``, which Triton lowers to libdevice's accurate ``sinf`` (a few tens of
  instructions on its common path, no MUFU). The two sines per sample may make the kernel
  compute-bound on an H100 before it is memory-bound; whether a cheaper sine (e.g. reduction
  modulo pi, since only sin^2 and sin(2au) are needed) keeps SPEC's float32 standard is untested.

The backward recomputes u from x (only x and the parameters are saved) and applies the exact
adjoint of both clamps: gradient sent to z indices < 0 lands on z[0], > 2T-1 on z[2T-1]; gradient
sent to x indices < 0 lands on x[0], > T-1 on x[T-1]. Parameter gradients are reduced without
atomics: each program writes its partial sums to a float32 buffer [B*C, n_tiles] that the host
sums in a fixed order, so equal inputs give bitwise equal gradients.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

SNAKE_EPS = tl.constexpr(1e-9)  # as bigvgan_fast.activation.SNAKE_EPS
FILTER_TAPS = 12

# See the module docstring: 1024 samples / 8 warps is a compiled-for, not a timed, choice.
_MAX_BLOCK_T = 1024
_MIN_BLOCK_T = 16
# The recompute path holds a [BLOCK_T, 8] block of neighbours: 128 x 8 at 4 warps is 78-96 /
# 114-120 registers (forward / backward, by dtype), no spills.
_MAX_BLOCK_T_RECOMPUTE = 128
# tl.gather through shared memory (two sines per output) rather than recomputing neighbours.
USE_GATHER = hasattr(tl, "gather")  # tl.gather exists from Triton 3.3; before it, recompute


# --- device helpers ---------------------------------------------------------------------------


@triton.jit
def _upsample_pair(x_tile, pos, lo, hi,
                   u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11,
                   CLAMP: tl.constexpr):
    """(u[2m], u[2m+1]) for m = t0 + pos (any shape); the taps u0..u11 already carry the factor 2.

    With CLAMP, x indices are clamped to the row [lo, hi] (tile-relative), and positions outside
    the row follow the downsample's z-index clamp: m < 0 gives u[0] in both phases, m >= T gives
    u[2T-1] in both phases. Without CLAMP every x[m-3 .. m+3] must lie inside the row.
    """
    if CLAMP:
        p = tl.minimum(tl.maximum(pos, lo), hi)
        x_m3 = tl.load(x_tile + tl.maximum(p - 3, lo)).to(tl.float32)
        x_m2 = tl.load(x_tile + tl.maximum(p - 2, lo)).to(tl.float32)
        x_m1 = tl.load(x_tile + tl.maximum(p - 1, lo)).to(tl.float32)
        x_0 = tl.load(x_tile + p).to(tl.float32)
        x_p1 = tl.load(x_tile + tl.minimum(p + 1, hi)).to(tl.float32)
        x_p2 = tl.load(x_tile + tl.minimum(p + 2, hi)).to(tl.float32)
        x_p3 = tl.load(x_tile + tl.minimum(p + 3, hi)).to(tl.float32)
    else:
        x_m3 = tl.load(x_tile + (pos - 3)).to(tl.float32)
        x_m2 = tl.load(x_tile + (pos - 2)).to(tl.float32)
        x_m1 = tl.load(x_tile + (pos - 1)).to(tl.float32)
        x_0 = tl.load(x_tile + pos).to(tl.float32)
        x_p1 = tl.load(x_tile + (pos + 1)).to(tl.float32)
        x_p2 = tl.load(x_tile + (pos + 2)).to(tl.float32)
        x_p3 = tl.load(x_tile + (pos + 3)).to(tl.float32)
    u_even = u1 * x_p2 + u3 * x_p1 + u5 * x_0 + u7 * x_m1 + u9 * x_m2 + u11 * x_m3
    u_odd = u0 * x_p3 + u2 * x_p2 + u4 * x_p1 + u6 * x_0 + u8 * x_m1 + u10 * x_m2
    if CLAMP:
        u_even_at_border = tl.where(pos > hi, u_odd, u_even)
        u_odd = tl.where(pos < lo, u_even, u_odd)
        u_even = u_even_at_border
    return u_even, u_odd


@triton.jit
def _snake(u, a, inv_b):
    s = tl.sin(a * u)
    return u + inv_b * (s * s)


@triton.jit
def _neighbours(pos):
    """[N, 8] positions pos + d for d = -3..3 (the eighth column repeats d = 3; its taps are zero)."""
    return pos[:, None] + tl.minimum(tl.arange(0, 8) - 3, 3)[None, :]


@triton.jit
def _sum_over_neighbours(even_terms, odd_terms):
    """Row sums of an [N, 8] neighbour block's even-phase terms (d = -2..3) and odd-phase ones (d = -3..2).

    The other columns have zero taps, but are selected away rather than summed: a zero tap times a
    NaN or Inf sample is NaN, which would spread a non-finite x one sample further than the
    definition does (it never reads those samples).
    """
    column = tl.arange(0, 8)[None, :]
    even_terms = tl.where((column >= 1) & (column <= 6), even_terms, 0.0)
    odd_terms = tl.where(column <= 5, odd_terms, 0.0)
    return tl.sum(even_terms + odd_terms, axis=1)


@triton.jit
def _output_recomputed(x_tile, pos, lo, hi, a, inv_b,
                       u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11,
                       down_even, down_odd, CLAMP: tl.constexpr):
    """y at positions ``pos``, recomputing z of all seven neighbours from x (nothing shared across lanes).

    ``down_even[i]``, ``down_odd[i]``: the downsample taps of z[2(m+d)] and z[2(m+d)+1], d = i - 3.
    """
    u_even, u_odd = _upsample_pair(x_tile, _neighbours(pos), lo, hi,
                                   u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11, CLAMP)
    return _sum_over_neighbours(_snake(u_even, a, inv_b) * down_even[None, :],
                                _snake(u_odd, a, inv_b) * down_odd[None, :])


@triton.jit
def _forward_tile(x_tile, lanes, edge_lanes, lo, hi, a, inv_b,
                  u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11,
                  d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11,
                  down_even, down_odd,
                  BLOCK_T: tl.constexpr, USE_GATHER: tl.constexpr, CLAMP: tl.constexpr):
    """y of the tile's lanes (only lanes 3 .. BLOCK_T-4 are right with USE_GATHER) and of its edge lanes."""
    if USE_GATHER:
        u_even, u_odd = _upsample_pair(x_tile, lanes, lo, hi, u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11, CLAMP)
        z_even = _snake(u_even, a, inv_b)
        z_odd = _snake(u_odd, a, inv_b)
        # y[t] = sum_d w_d[t + d]; the gathers read the neighbours' w_d (wrapping at the tile ends,
        # where the edge lanes below take over).
        y = d5 * z_even + d6 * z_odd
        y += tl.gather(d0 * z_odd, (lanes - 3) & (BLOCK_T - 1), 0)
        y += tl.gather(d1 * z_even + d2 * z_odd, (lanes - 2) & (BLOCK_T - 1), 0)
        y += tl.gather(d3 * z_even + d4 * z_odd, (lanes - 1) & (BLOCK_T - 1), 0)
        y += tl.gather(d7 * z_even + d8 * z_odd, (lanes + 1) & (BLOCK_T - 1), 0)
        y += tl.gather(d9 * z_even + d10 * z_odd, (lanes + 2) & (BLOCK_T - 1), 0)
        y += tl.gather(d11 * z_even, (lanes + 3) & (BLOCK_T - 1), 0)
        y_edge = _output_recomputed(x_tile, edge_lanes, lo, hi, a, inv_b,
                                    u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11, down_even, down_odd, CLAMP)
    else:
        y = _output_recomputed(x_tile, lanes, lo, hi, a, inv_b,
                               u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11, down_even, down_odd, CLAMP)
        y_edge = tl.zeros(edge_lanes.shape, tl.float32)
    return y, y_edge


@triton.jit
def _with_edges(values, edge_values, lanes, BLOCK_T: tl.constexpr):
    """``values`` with lanes 0..2 and BLOCK_T-3..BLOCK_T-1 taken from ``edge_values`` (the [8] side
    block whose entries 0..5 hold those lanes, see ``edge_lanes``)."""
    at_edge = (lanes < 3) | (lanes >= BLOCK_T - 3)
    edge_index = tl.minimum(tl.maximum(tl.where(lanes < 3, lanes, lanes - (BLOCK_T - 6)), 0), 7)
    return tl.where(at_edge, tl.gather(edge_values, edge_index, 0), values)


@triton.jit
def _tile_setup(pid, n_tiles, C, T, alpha_ptr, beta_ptr,
                HAS_BETA: tl.constexpr, ALPHA_LOGSCALE: tl.constexpr, BLOCK_T: tl.constexpr):
    """Row offset, tile start, clamp bounds and per-channel parameters of program ``pid``."""
    row = pid // n_tiles
    tile = pid - row * n_tiles
    t0 = tile.to(tl.int64) * BLOCK_T
    row_start = row.to(tl.int64) * T + t0
    # Tile-relative bounds of the row. A tile reads positions -9 .. BLOCK_T+8 at most, so bounds
    # clipped to [-64, BLOCK_T+64] clamp the same way and fit int32 whatever T is.
    lo = tl.maximum(-t0, -64).to(tl.int32)
    hi = tl.minimum(T - 1 - t0, BLOCK_T + 64).to(tl.int32)
    interior = (t0 >= 6) & (t0 + BLOCK_T + 6 <= T)
    channel = row % C
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
    return row_start, t0, lo, hi, interior, a, b


@triton.jit
def _load_taps(taps_ptr, SCALE: tl.constexpr):
    """The 12 filter taps as scalars, times SCALE (2 folds the upsample's gain into its taps)."""
    return (SCALE * tl.load(taps_ptr + 0), SCALE * tl.load(taps_ptr + 1), SCALE * tl.load(taps_ptr + 2),
            SCALE * tl.load(taps_ptr + 3), SCALE * tl.load(taps_ptr + 4), SCALE * tl.load(taps_ptr + 5),
            SCALE * tl.load(taps_ptr + 6), SCALE * tl.load(taps_ptr + 7), SCALE * tl.load(taps_ptr + 8),
            SCALE * tl.load(taps_ptr + 9), SCALE * tl.load(taps_ptr + 10), SCALE * tl.load(taps_ptr + 11))


@triton.jit
def _tap_vectors(taps_ptr, SCALE: tl.constexpr):
    """SCALE * taps of the even and odd phase per neighbour d = -3..4 (index d + 3): k = 2d+5, 2d+6."""
    d = tl.arange(0, 8) - 3
    even_k = 2 * d + 5
    odd_k = 2 * d + 6
    even = tl.load(taps_ptr + even_k, mask=(even_k >= 0) & (even_k < 12), other=0.0)
    odd = tl.load(taps_ptr + odd_k, mask=odd_k < 12, other=0.0)
    return SCALE * even, SCALE * odd


# --- forward ----------------------------------------------------------------------------------


@triton.jit
def _anti_alias_activation_forward_kernel(
    x_ptr, y_ptr, alpha_ptr, beta_ptr, up_ptr, down_ptr,
    T, C, n_tiles,
    HAS_BETA: tl.constexpr, ALPHA_LOGSCALE: tl.constexpr,
    BLOCK_T: tl.constexpr, USE_GATHER: tl.constexpr,
):
    pid = tl.program_id(0)
    row_start, t0, lo, hi, interior, a, b = _tile_setup(pid, n_tiles, C, T, alpha_ptr, beta_ptr,
                                                        HAS_BETA, ALPHA_LOGSCALE, BLOCK_T)
    inv_b = 1.0 / (b + SNAKE_EPS)
    u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11 = _load_taps(up_ptr, 2.0)
    d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11 = _load_taps(down_ptr, 1.0)
    down_even, down_odd = _tap_vectors(down_ptr, 1.0)

    x_tile = x_ptr + row_start
    y_tile = y_ptr + row_start
    lanes = tl.arange(0, BLOCK_T)
    # Lanes 0, 1, 2 and BLOCK_T-3 .. BLOCK_T-1 (the last one twice more as padding).
    edge = tl.arange(0, 8)
    edge_lanes = tl.where(edge < 3, edge, tl.minimum(edge + (BLOCK_T - 6), BLOCK_T - 1))

    if interior:
        y, y_edge = _forward_tile(x_tile, lanes, edge_lanes, lo, hi, a, inv_b,
                                  u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11,
                                  d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11,
                                  down_even, down_odd, BLOCK_T, USE_GATHER, False)
    else:
        y, y_edge = _forward_tile(x_tile, lanes, edge_lanes, lo, hi, a, inv_b,
                                  u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11,
                                  d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11,
                                  down_even, down_odd, BLOCK_T, USE_GATHER, True)

    if USE_GATHER:
        y = _with_edges(y, y_edge, lanes, BLOCK_T)
    # One store of the whole tile, masked by a bound that keeps T's divisibility: where T % 16 == 0
    # (every model shape) Triton then emits full-width vector stores. (The split store of the main
    # and edge lanes it replaces compiled to 4-byte stores for sm_90a.)
    tl.store(y_tile + lanes, y.to(y_ptr.dtype.element_ty), mask=lanes < T - t0)


# --- backward ---------------------------------------------------------------------------------


@triton.jit
def _grad_z_pair(g_tile, pos, lo, hi, grad_z_first, grad_z_last,
                 d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11,
                 CLAMP: tl.constexpr):
    """(dL/dz[2m], dL/dz[2m+1]) for m = t0 + pos: the transposed downsample of grad_y (zero-padded),
    zero outside the row, plus the clamped taps' gradient ``grad_z_first`` at z[0] and
    ``grad_z_last`` at z[2T-1]."""
    if CLAMP:
        g_m3 = tl.load(g_tile + (pos - 3), mask=(pos - 3 >= lo) & (pos - 3 <= hi), other=0.0).to(tl.float32)
        g_m2 = tl.load(g_tile + (pos - 2), mask=(pos - 2 >= lo) & (pos - 2 <= hi), other=0.0).to(tl.float32)
        g_m1 = tl.load(g_tile + (pos - 1), mask=(pos - 1 >= lo) & (pos - 1 <= hi), other=0.0).to(tl.float32)
        g_0 = tl.load(g_tile + pos, mask=(pos >= lo) & (pos <= hi), other=0.0).to(tl.float32)
        g_p1 = tl.load(g_tile + (pos + 1), mask=(pos + 1 >= lo) & (pos + 1 <= hi), other=0.0).to(tl.float32)
        g_p2 = tl.load(g_tile + (pos + 2), mask=(pos + 2 >= lo) & (pos + 2 <= hi), other=0.0).to(tl.float32)
        g_p3 = tl.load(g_tile + (pos + 3), mask=(pos + 3 >= lo) & (pos + 3 <= hi), other=0.0).to(tl.float32)
    else:
        g_m3 = tl.load(g_tile + (pos - 3)).to(tl.float32)
        g_m2 = tl.load(g_tile + (pos - 2)).to(tl.float32)
        g_m1 = tl.load(g_tile + (pos - 1)).to(tl.float32)
        g_0 = tl.load(g_tile + pos).to(tl.float32)
        g_p1 = tl.load(g_tile + (pos + 1)).to(tl.float32)
        g_p2 = tl.load(g_tile + (pos + 2)).to(tl.float32)
        g_p3 = tl.load(g_tile + (pos + 3)).to(tl.float32)
    gz_even = d1 * g_p2 + d3 * g_p1 + d5 * g_0 + d7 * g_m1 + d9 * g_m2 + d11 * g_m3
    gz_odd = d0 * g_p3 + d2 * g_p2 + d4 * g_p1 + d6 * g_0 + d8 * g_m1 + d10 * g_m2
    if CLAMP:
        inside = (pos >= lo) & (pos <= hi)
        gz_even = tl.where(inside, gz_even + tl.where(pos == lo, grad_z_first, 0.0), 0.0)
        gz_odd = tl.where(inside, gz_odd + tl.where(pos == hi, grad_z_last, 0.0), 0.0)
    return gz_even, gz_odd


@triton.jit
def _grad_x_recomputed(g_tile, x_tile, pos, lo, hi, grad_z_first, grad_z_last, a, inv_b,
                       u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11,
                       d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11,
                       up_even, up_odd, CLAMP: tl.constexpr):
    """dL/dx at positions ``pos`` by the transposed upsample over zero-padded dL/du (the x-border
    sums excluded), recomputing dL/du of all seven neighbours: a [N, 8] block."""
    near = _neighbours(pos)
    gz_even, gz_odd = _grad_z_pair(g_tile, near, lo, hi, grad_z_first, grad_z_last,
                                   d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11, CLAMP)
    u_even, u_odd = _upsample_pair(x_tile, near, lo, hi, u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11, CLAMP)
    slope = a * inv_b
    s_even = tl.sin(a * u_even)
    c_even = tl.cos(a * u_even)
    s_odd = tl.sin(a * u_odd)
    c_odd = tl.cos(a * u_odd)
    gu_even = gz_even * (1.0 + slope * (2.0 * s_even * c_even))
    gu_odd = gz_odd * (1.0 + slope * (2.0 * s_odd * c_odd))
    return _sum_over_neighbours(gu_even * up_even[None, :], gu_odd * up_odd[None, :])


@triton.jit
def _backward_tile(g_tile, x_tile, lanes, edge, edge_lanes, lo, hi, grad_z_first, grad_z_last, a, inv_b,
                   u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11,
                   d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11,
                   up_even, up_odd,
                   BLOCK_T: tl.constexpr, USE_GATHER: tl.constexpr, CLAMP: tl.constexpr):
    """dL/dx of the tile's lanes and edge lanes, and the tile's sums for the parameter gradients:
    sum dL/dz * u * sin(2au) and sum dL/dz * sin(au)^2 over the tile's u samples."""
    gz_even, gz_odd = _grad_z_pair(g_tile, lanes, lo, hi, grad_z_first, grad_z_last,
                                   d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11, CLAMP)
    u_even, u_odd = _upsample_pair(x_tile, lanes, lo, hi, u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11, CLAMP)
    s_even = tl.sin(a * u_even)
    c_even = tl.cos(a * u_even)
    s_odd = tl.sin(a * u_odd)
    c_odd = tl.cos(a * u_odd)
    sin2_even = 2.0 * s_even * c_even
    sin2_odd = 2.0 * s_odd * c_odd
    # gz is zero outside the row, so lanes past T add nothing.
    sum_u_sin2 = tl.sum(gz_even * u_even * sin2_even + gz_odd * u_odd * sin2_odd, axis=0)
    sum_sin_sq = tl.sum(gz_even * (s_even * s_even) + gz_odd * (s_odd * s_odd), axis=0)

    if USE_GATHER:
        slope = a * inv_b
        gu_even = gz_even * (1.0 + slope * sin2_even)
        gu_odd = gz_odd * (1.0 + slope * sin2_odd)
        gx = u5 * gu_even + u6 * gu_odd
        gx += tl.gather(u0 * gu_odd, (lanes - 3) & (BLOCK_T - 1), 0)
        gx += tl.gather(u1 * gu_even + u2 * gu_odd, (lanes - 2) & (BLOCK_T - 1), 0)
        gx += tl.gather(u3 * gu_even + u4 * gu_odd, (lanes - 1) & (BLOCK_T - 1), 0)
        gx += tl.gather(u7 * gu_even + u8 * gu_odd, (lanes + 1) & (BLOCK_T - 1), 0)
        gx += tl.gather(u9 * gu_even + u10 * gu_odd, (lanes + 2) & (BLOCK_T - 1), 0)
        gx += tl.gather(u11 * gu_even, (lanes + 3) & (BLOCK_T - 1), 0)
        gx_edge = _grad_x_recomputed(g_tile, x_tile, edge_lanes, lo, hi, grad_z_first, grad_z_last, a, inv_b,
                                     u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11,
                                     d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11, up_even, up_odd, CLAMP)
    else:
        gx = _grad_x_recomputed(g_tile, x_tile, lanes, lo, hi, grad_z_first, grad_z_last, a, inv_b,
                                u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11,
                                d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11, up_even, up_odd, CLAMP)
        gx_edge = tl.zeros(edge_lanes.shape, tl.float32)

    if CLAMP:
        # The upsample read x[clamp(j)]: the gradient of the virtual samples j = -3..-1 lands on
        # x[0], that of j = T..T+2 on x[T-1]. (Where lo / hi are clipped, no lane equals them.)
        virtual_lanes = tl.where(edge < 3, lo - 3 + edge, hi - 2 + edge)
        gx_virtual = _grad_x_recomputed(g_tile, x_tile, virtual_lanes, lo, hi, grad_z_first, grad_z_last, a, inv_b,
                                        u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11,
                                        d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11, up_even, up_odd, CLAMP)
        to_first = tl.sum(tl.where(edge < 3, gx_virtual, 0.0), axis=0)
        to_last = tl.sum(tl.where((edge >= 3) & (edge < 6), gx_virtual, 0.0), axis=0)
        gx += tl.where(lanes == lo, to_first, 0.0) + tl.where(lanes == hi, to_last, 0.0)
        gx_edge += tl.where(edge_lanes == lo, to_first, 0.0) + tl.where(edge_lanes == hi, to_last, 0.0)
    return gx, gx_edge, sum_u_sin2, sum_sin_sq


@triton.jit
def _anti_alias_activation_backward_kernel(
    grad_y_ptr, x_ptr, grad_x_ptr, partial_alpha_ptr, partial_beta_ptr,
    alpha_ptr, beta_ptr, up_ptr, down_ptr,
    T, C, n_tiles,
    HAS_BETA: tl.constexpr, ALPHA_LOGSCALE: tl.constexpr, PARAM_GRADS: tl.constexpr,
    BLOCK_T: tl.constexpr, USE_GATHER: tl.constexpr,
):
    pid = tl.program_id(0)
    row_start, t0, lo, hi, interior, a, b = _tile_setup(pid, n_tiles, C, T, alpha_ptr, beta_ptr,
                                                        HAS_BETA, ALPHA_LOGSCALE, BLOCK_T)
    inv_b = 1.0 / (b + SNAKE_EPS)
    u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11 = _load_taps(up_ptr, 2.0)
    d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11 = _load_taps(down_ptr, 1.0)
    up_even, up_odd = _tap_vectors(up_ptr, 2.0)

    # Gradient the downsample sends to clamped z indices: y[t] reads z[2t+k-5] < 0 for
    # (t, k) in {0} x 0..4, {1} x 0..2, {2} x {0}, and z > 2T-1 for {T-1} x 7..11, {T-2} x 9..11,
    # {T-3} x {11}. (Vector loads with lane masks: the JIT may specialise T == 1 to a constant.)
    g_row = grad_y_ptr + (row_start - t0)
    k4 = tl.arange(0, 4)
    g_head = tl.load(g_row + k4, mask=k4 < T, other=0.0).to(tl.float32)
    g_tail = tl.load(g_row + (T - 1 - k4), mask=k4 < T, other=0.0).to(tl.float32)
    head_taps = tl.where(k4 == 0, d0 + d1 + d2 + d3 + d4, tl.where(k4 == 1, d0 + d1 + d2, tl.where(k4 == 2, d0, 0.0)))
    tail_taps = tl.where(k4 == 0, d7 + d8 + d9 + d10 + d11, tl.where(k4 == 1, d9 + d10 + d11, tl.where(k4 == 2, d11, 0.0)))
    grad_z_first = tl.sum(g_head * head_taps, axis=0)
    grad_z_last = tl.sum(g_tail * tail_taps, axis=0)

    g_tile = grad_y_ptr + row_start
    x_tile = x_ptr + row_start
    lanes = tl.arange(0, BLOCK_T)
    edge = tl.arange(0, 8)
    edge_lanes = tl.where(edge < 3, edge, tl.minimum(edge + (BLOCK_T - 6), BLOCK_T - 1))

    if interior:
        gx, gx_edge, sum_u_sin2, sum_sin_sq = _backward_tile(
            g_tile, x_tile, lanes, edge, edge_lanes, lo, hi, grad_z_first, grad_z_last, a, inv_b,
            u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11,
            d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11,
            up_even, up_odd, BLOCK_T, USE_GATHER, False)
    else:
        gx, gx_edge, sum_u_sin2, sum_sin_sq = _backward_tile(
            g_tile, x_tile, lanes, edge, edge_lanes, lo, hi, grad_z_first, grad_z_last, a, inv_b,
            u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11,
            d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11,
            up_even, up_odd, BLOCK_T, USE_GATHER, True)

    gx_tile = grad_x_ptr + row_start
    out_ty = grad_x_ptr.dtype.element_ty
    if USE_GATHER:
        main = (lanes >= 3) & (lanes < BLOCK_T - 3) & (lanes <= hi)
        tl.store(gx_tile + lanes, gx.to(out_ty), mask=main)
        tl.store(gx_tile + edge_lanes, gx_edge.to(out_ty), mask=(edge < 6) & (edge_lanes <= hi))
    else:
        tl.store(gx_tile + lanes, gx.to(out_ty), mask=lanes <= hi)

    if PARAM_GRADS:
        # dz/da = u sin(2au) / (b + eps); dz/db = -sin(au)^2 / (b + eps)^2; times a (b) for log-scale.
        grad_a = sum_u_sin2 * inv_b
        grad_b = -sum_sin_sq * inv_b * inv_b
        if ALPHA_LOGSCALE:
            grad_a = grad_a * a
            grad_b = grad_b * b
        if HAS_BETA:
            tl.store(partial_alpha_ptr + pid, grad_a)
            tl.store(partial_beta_ptr + pid, grad_b)
        else:
            # Snake: b = a, so alpha receives both terms.
            tl.store(partial_alpha_ptr + pid, grad_a + grad_b)


# --- host launchers ---------------------------------------------------------------------------


def _launch_config(T: int, block_t: int | None, num_warps: int | None, use_gather: bool) -> tuple[int, int]:
    """Tile length and warps: 4 samples per thread on the gather path, 8 neighbour blocks on the other."""
    if block_t is None:
        largest = _MAX_BLOCK_T if use_gather else _MAX_BLOCK_T_RECOMPUTE
        block_t = min(largest, max(_MIN_BLOCK_T, triton.next_power_of_2(T)))
    if block_t < _MIN_BLOCK_T or block_t & (block_t - 1):
        raise ValueError(f"block_t must be a power of two >= {_MIN_BLOCK_T}, got {block_t}")
    if num_warps is None:
        num_warps = max(1, min(8, block_t // 128)) if use_gather else max(1, min(4, block_t // 32))
    return block_t, num_warps


def _check(x, alpha, beta, upsample_filter, downsample_filter) -> None:
    """Cheap checks of what the kernels assume (``bigvgan_fast.ops.fused`` prepares the inputs so)."""
    if x.dim() != 3 or x.shape[-1] < 1:
        raise ValueError(f"x must have shape (B, C, T >= 1), got {tuple(x.shape)}")
    if not x.is_contiguous():
        raise ValueError("x must be contiguous (bigvgan_fast.ops.fused makes it so)")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"x must be float32, float16 or bfloat16, got {x.dtype}")
    channels = x.shape[1]
    for name, p in (("alpha", alpha), ("beta", beta)):
        if p is not None and not (p.shape == (channels,) and p.is_contiguous() and p.device == x.device and p.is_floating_point()):
            raise ValueError(f"{name} must be a contiguous float ({channels},) tensor on {x.device}")
    for name, f in (("upsample_filter", upsample_filter), ("downsample_filter", downsample_filter)):
        if not (f.numel() == FILTER_TAPS and f.dtype == torch.float32 and f.is_contiguous() and f.device == x.device):
            raise ValueError(f"{name} must be a contiguous float32 tensor of {FILTER_TAPS} taps on {x.device}")


def _check_out(out, x) -> None:
    if not (out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous() and out.device == x.device):
        raise ValueError(f"out must be a contiguous {x.dtype} tensor of shape {tuple(x.shape)} on {x.device}")


def anti_alias_activation_forward(
    x: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor | None,
    upsample_filter: torch.Tensor,
    downsample_filter: torch.Tensor,
    alpha_logscale: bool,
    *,
    out: torch.Tensor | None = None,
    block_t: int | None = None,
    num_warps: int | None = None,
    use_gather: bool | None = None,
) -> torch.Tensor:
    """Fused anti-aliased Snake / SnakeBeta activation (SPEC.md), one Triton launch.

    Args:
        x: (B, C, T) contiguous float32 / float16 / bfloat16, any T >= 1.
        alpha: (C,) float tensor (any float dtype, read as float32); log-scale if ``alpha_logscale``.
        beta: (C,) float tensor for SnakeBeta, or None for Snake.
        upsample_filter, downsample_filter: 12 contiguous float32 taps on x's device.
        alpha_logscale: the parameters are logarithms (a = exp(alpha), b = exp(beta)).
        out: optional contiguous (B, C, T) tensor of x's dtype to write into.
        block_t, num_warps: override the launch heuristic (power of two >= 16), for tests and tuning.
        use_gather: share neighbouring samples through ``tl.gather`` (default :data:`USE_GATHER`)
            or recompute them.

    Returns:
        (B, C, T) tensor of x's dtype (``out`` when given); float32 math, one rounding at the store.
    """
    _check(x, alpha, beta, upsample_filter, downsample_filter)
    B, C, T = x.shape
    if out is None:
        out = torch.empty_like(x)
    else:
        _check_out(out, x)
    if x.numel() == 0:
        return out
    use_gather = USE_GATHER if use_gather is None else bool(use_gather)
    block_t, num_warps = _launch_config(T, block_t, num_warps, use_gather)
    n_tiles = triton.cdiv(T, block_t)
    grid = (B * C * n_tiles,)
    if grid[0] >= 2**31:
        raise ValueError(f"{grid[0]} tiles exceed one launch; use a larger block_t")
    _anti_alias_activation_forward_kernel[grid](
        x, out, alpha, alpha if beta is None else beta, upsample_filter, downsample_filter,
        T, C, n_tiles,
        HAS_BETA=beta is not None, ALPHA_LOGSCALE=bool(alpha_logscale),
        BLOCK_T=block_t, USE_GATHER=use_gather,
        num_warps=num_warps,
    )
    return out


def anti_alias_activation_backward(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor | None,
    upsample_filter: torch.Tensor,
    downsample_filter: torch.Tensor,
    alpha_logscale: bool,
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
        grad_y: (B, C, T) gradient of the output, any float dtype and strides (made contiguous here).
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
        _check_out(out, x)
    use_gather = USE_GATHER if use_gather is None else bool(use_gather)
    block_t, num_warps = _launch_config(T, block_t, num_warps, use_gather)
    n_tiles = triton.cdiv(T, block_t)
    grid = (B * C * n_tiles,)
    if grid[0] >= 2**31:
        raise ValueError(f"{grid[0]} tiles exceed one launch; use a larger block_t")
    partial_alpha = torch.empty((B, C, n_tiles) if param_grads else (1,), dtype=torch.float32, device=x.device)
    partial_beta = torch.empty((B, C, n_tiles) if param_grads and beta is not None else (1,),
                               dtype=torch.float32, device=x.device)
    if x.numel() > 0:
        _anti_alias_activation_backward_kernel[grid](
            grad_y, x, out, partial_alpha, partial_beta,
            alpha, alpha if beta is None else beta, upsample_filter, downsample_filter,
            T, C, n_tiles,
            HAS_BETA=beta is not None, ALPHA_LOGSCALE=bool(alpha_logscale), PARAM_GRADS=param_grads,
            BLOCK_T=block_t, USE_GATHER=use_gather,
            num_warps=num_warps,
        )
    elif param_grads:
        partial_alpha.zero_()
        partial_beta.zero_()
    # Fixed-order reduction over (batch, tiles), in float64: deterministic and well below fp32 error.
    grad_alpha = partial_alpha.double().sum(dim=(0, 2)).to(alpha.dtype) if needs_alpha_grad else None
    grad_beta = partial_beta.double().sum(dim=(0, 2)).to(beta.dtype) if needs_beta_grad else None
    return out, grad_alpha, grad_beta
