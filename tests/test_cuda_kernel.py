"""The CUDA op ``bigvgan_fast::anti_alias_activation_cuda`` (csrc/): what only this backend has.
The forward against docs/definition.md's float64 definition at every dtype, length around the tile
and Snake kind is tests/test_fused_forward.py's parametrization (backend "cuda"); here: the fast
sine's limits, borders, non-finite input, layouts, parameter dtypes, more than 2**31 elements,
devices, streams, graphs, opcheck, torch.compile and the host checks. Every element compared,
borders included, outputs poisoned (``call_poisoned``), fresh random inputs (tests/kernel_cases.py).

GPU only: skipped without a CUDA GPU or without the built extension ``bigvgan_fast._C``
(``pip install --no-build-isolation -e .`` with a CUDA torch and nvcc builds it).
"""

from __future__ import annotations

import pytest
import torch

from definition import FLOAT32_ATOL, assert_close_to_definition, definition, describe_mismatch, upsampled
from kernel_cases import (
    CUDA_TILE,
    DTYPES,
    asymmetric_filters,
    call_poisoned,
    cuda_problem,
    random_input,
    random_parameters,
)

WHY_NOT = cuda_problem()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]

DEVICE = "cuda"


@pytest.fixture(scope="module")
def op():
    from bigvgan_fast.anti_alias import library

    return library.cuda_op()  # imports bigvgan_fast._C and registers the fake implementation


def assert_no_worse_than_float32(out, x, alpha, beta, logscale, up, down):
    """Past the fast sine's range (|a*u| >= 65536) the kernel takes the precise sine: its error against
    float64 may be as large as a float32 evaluation's, not larger. At such arguments both are
    dominated by the float32 rounding of a*u (|a*u| * 6e-8 radians), realised differently by the
    two orders of operations, so the check allows 3x the reference's worst sample of the same row
    (rows of small alpha are not measured by those of large alpha) and 2x its L2 norm (plus 1 ulp of
    a half-precision output)."""
    exact = definition(x, alpha, beta, logscale, up, down)
    float32 = definition(x, alpha, beta, logscale, up, down, dtype=torch.float32).double()
    values = out.detach().double().cpu()
    assert not values.isnan().any(), describe_mismatch(values, exact, 0.0)
    reference_err = (float32 - exact).abs()
    if out.dtype == torch.float32:
        rounding = torch.full_like(exact, FLOAT32_ATOL)
    else:
        rounded = exact.to(out.dtype).double()
        rounding = torch.finfo(out.dtype).eps * torch.exp2(torch.floor(torch.log2(rounded.abs().clamp_min(1e-30))))
    allowed = 3 * reference_err.amax(dim=-1, keepdim=True) + rounding
    err = (values - exact).abs()
    assert (err <= allowed).all(), describe_mismatch(values, exact, allowed)
    if out.dtype == torch.float32:
        assert err.norm() <= 2 * reference_err.norm() + 1e-6 * exact.norm()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("T", [13, CUDA_TILE + 5])
def test_large_sine_arguments_take_the_slow_path(op, T, dtype):
    """|a*u| on both sides of the fast sine's 65536 limit within each row: linear alpha up to 40000
    with |x| <= 10 puts |a*u| up to a few 1e5 (the assertion below makes sure of both sides)."""
    gen = torch.Generator().manual_seed(20 + T)
    C = 4
    x = random_input((2, C, T), dtype, gen)
    alpha = torch.tensor([5000.0, 15000.0, 25000.0, 40000.0], device=DEVICE)
    beta = 0.5 + torch.rand(C, generator=gen).to(DEVICE)
    up, down = asymmetric_filters(gen)
    out = call_poisoned(op, x, alpha, beta, up, down, False)
    v = (alpha.double().cpu()[None, :, None] * upsampled(x, up)).abs()
    assert (v >= 65536).any() and (v < 65536).any(), "the case must straddle the fast path's limit"
    assert_no_worse_than_float32(out, x, alpha, beta, False, up, down)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("T", [7, 64, CUDA_TILE + 1])
def test_border_samples_with_large_and_small_sine_arguments(op, T, dtype):
    """The first and last 6 samples of every row (z is replicated there, not recomputed): with x near
    multiples of pi / a at the ends (sin^2 near 0, reduced argument near 0) and, in a second call,
    |a*u| past the fast path at the ends only."""
    gen = torch.Generator().manual_seed(30 + T + DTYPES.index(dtype))
    B, C = 2, 3
    x = random_input((B, C, T), dtype, gen)
    alpha, beta = random_parameters(C, True, False, gen)
    up, down = asymmetric_filters(gen)
    ends = torch.zeros(T, dtype=torch.bool)
    ends[:6] = True
    ends[-6:] = True
    # Near multiples of pi / a, plus a tiny offset.
    k = torch.randint(-1, 2, (B, C, T), generator=gen).double()  # |x| <= pi / 0.5 < 10
    near_pi = (k * torch.pi / alpha.double().cpu()[None, :, None] + 1e-4 * torch.randn(B, C, T, generator=gen, dtype=torch.float64))
    x_near = torch.where(ends, near_pi.to(dtype), x.cpu()).to(DEVICE)
    out = call_poisoned(op, x_near, alpha, beta, up, down, False)
    assert_close_to_definition(out, definition(x_near, alpha, beta, False, up, down))
    # Large at the ends only (float16 stops at 65504): |a*u| past 65536 at the borders, small inside.
    large = 6e4 if dtype == torch.float16 else 2e5
    x_large = torch.where(ends, (large * torch.sign(x.cpu().double() + 0.5)).to(dtype), x.cpu()).to(DEVICE)
    out = call_poisoned(op, x_large, alpha, beta, up, down, False)
    assert_no_worse_than_float32(out, x_large, alpha, beta, False, up, down)
    interior = ~torch.zeros(T, dtype=torch.bool)
    interior[: min(T, 12)] = False
    interior[max(0, T - 12) :] = False
    if interior.any():  # away from the large ends (12 > the 6-sample reach), the definition's tolerance holds
        expected = definition(x_large, alpha, beta, False, up, down)
        assert_close_to_definition(out[..., interior.to(DEVICE)], expected[..., interior])


def test_non_finite_input_reaches_exactly_the_definitions_samples(op):
    """NaN and Inf in x become NaN in y exactly where the definition's do (through the slow path)."""
    gen = torch.Generator().manual_seed(40)
    x = random_input((1, 3, 300), torch.float32, gen)
    x[0, 0, 100] = float("nan")
    x[0, 1, 0] = float("inf")
    x[0, 2, 299] = float("-inf")
    alpha, beta = random_parameters(3, True, True, gen)
    up, down = asymmetric_filters(gen)
    out = call_poisoned(op, x, alpha, beta, up, down, True).cpu()
    expected = definition(x, alpha, beta, True, up, down)
    assert torch.equal(out.isnan(), expected.isnan()), f"NaN at {out.isnan().nonzero().tolist()[:8]} vs {expected.isnan().nonzero().tolist()[:8]}"
    finite = ~expected.isnan()
    assert (out[finite].double() - expected[finite]).abs().max() <= FLOAT32_ATOL


@pytest.mark.parametrize("layout", ["transposed", "sliced", "misaligned"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_layouts(op, layout, dtype):
    """Non-contiguous inputs, and a contiguous one whose rows are not 16-byte aligned (the kernel's
    scalar load path) although T is a multiple of the vector width."""
    gen = torch.Generator().manual_seed(4)
    B, C, T = 2, 3, 4096
    if layout == "transposed":
        x = random_input((B, T, C), dtype, gen).transpose(1, 2)
    elif layout == "sliced":
        x = random_input((B, C, T + 7), dtype, gen)[..., 3 : 3 + T]
    else:
        storage = random_input((B * C * T + 1,), dtype, gen)
        x = storage[1:].view(B, C, T)
        assert x.is_contiguous() and x.data_ptr() % 16 != 0
    alpha, beta = random_parameters(C, True, True, gen)
    up, down = asymmetric_filters(gen)
    out = call_poisoned(op, x, alpha, beta, up, down, True)
    assert out.shape == (B, C, T) and out.is_contiguous()
    assert_close_to_definition(out, definition(x, alpha, beta, True, up, down))


@pytest.mark.parametrize("x_dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "param_dtype, beta_dtype",
    [(torch.float64, torch.float64), (torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16),
     (torch.bfloat16, torch.float32), (torch.float16, None), (torch.bfloat16, None)],
    ids=str,
)
def test_parameters_of_any_float_dtype_are_read_as_float32(op, x_dtype, param_dtype, beta_dtype):
    # Half-precision parameters are read by the kernel as they are (no conversion on the host), the
    # others converted first; either way the same float32 values, so the same output bit for bit.
    # Two rows of several tiles: every block finds its own channel's parameters.
    gen = torch.Generator().manual_seed(5)
    x = random_input((2, 4, 2 * CUDA_TILE + 300), x_dtype, gen)
    alpha, beta = random_parameters(4, True, True, gen)
    alpha = alpha.to(param_dtype)
    beta = None if beta_dtype is None else beta.to(beta_dtype)
    up, down = asymmetric_filters(gen)
    out = call_poisoned(op, x, alpha, beta, up, down, True)
    expected = op(x, alpha.float(), None if beta is None else beta.float(), up, down, True)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    if beta is None:
        return
    # Strided parameters too.
    alpha_strided = torch.stack([alpha, alpha], 1)[:, 0]
    assert not alpha_strided.is_contiguous()
    torch.testing.assert_close(op(x, alpha_strided, beta, up, down, True), out, rtol=0, atol=0)


def _row_windows(shape, width=64):
    """(row, start, end) output windows: each row's first and last samples, and the samples around
    flat element 2**31 (where 32-bit indexing would wrap)."""
    B, C, T = shape
    windows = set()
    for row in range(B * C):
        windows.add((row, 0, min(T, width)))
        windows.add((row, max(0, T - width), T))
    lo, hi = 2**31 - width, min(B * C * T, 2**31 + width)
    for row in range(lo // T, (hi - 1) // T + 1):
        windows.add((row, max(lo, row * T) - row * T, min(hi, (row + 1) * T) - row * T))
    return sorted(windows)


@pytest.mark.parametrize(
    "shape", [(1, 1, 2**31 + 7), (1, 3, 2**30 + 5)], ids=["one_row_past_2_31", "row_offsets_past_2_31"]
)
def test_more_than_2_31_elements(op, shape):
    numel = shape[0] * shape[1] * shape[2]
    needed = 2 * numel * 2 + (2 << 30)  # bf16 x and y, and room for the rest
    free, _ = torch.cuda.mem_get_info()
    if free < max(12e9, needed):
        pytest.skip(f"needs {max(12e9, needed) / 1e9:.1f} GB of free GPU memory, {free / 1e9:.1f} GB free")
    gen = torch.Generator(device=DEVICE).manual_seed(6)
    x = torch.randn(shape, device=DEVICE, dtype=torch.bfloat16, generator=gen)
    C, T = shape[1], shape[2]
    alpha, beta = random_parameters(C, True, True, torch.Generator().manual_seed(7))
    up, down = asymmetric_filters(torch.Generator().manual_seed(8))
    out = call_poisoned(op, x, alpha, beta, up, down, True)
    assert out.shape == x.shape
    margin = 16  # > the 6-sample reach of an output: windows away from the ends see no false border
    for row, start, end in _row_windows(shape):
        channel = row % C
        lo, hi = max(0, start - margin), min(T, end + margin)
        x_window = x[0, channel : channel + 1, lo:hi].unsqueeze(0)
        beta_c = None if beta is None else beta[channel : channel + 1]
        expected = definition(x_window, alpha[channel : channel + 1], beta_c, True, up, down)[..., start - lo : end - lo]
        assert_close_to_definition(out[0, channel : channel + 1, start:end].unsqueeze(0), expected)
    del x, out
    torch.cuda.empty_cache()


def test_empty_batch(op):
    gen = torch.Generator().manual_seed(9)
    alpha, beta = random_parameters(3, True, True, gen)
    up, down = asymmetric_filters(gen)
    out = op(torch.empty(0, 3, 5, device=DEVICE), alpha, beta, up, down, True)
    assert out.shape == (0, 3, 5)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_tensor_on_a_device_that_is_not_current(op):
    gen = torch.Generator().manual_seed(10)
    x = random_input((2, 3, 999), torch.float32, gen).to("cuda:0")
    alpha, beta = random_parameters(3, True, True, gen)
    up, down = asymmetric_filters(gen)
    with torch.cuda.device(1):
        out = op(x, alpha, beta, up, down, True)
    torch.cuda.synchronize(0)
    assert out.device == x.device
    assert_close_to_definition(out, definition(x, alpha, beta, True, up, down))


def test_runs_on_the_current_stream(op):
    gen = torch.Generator().manual_seed(11)
    x = random_input((2, 3, 5000), torch.float32, gen)
    alpha, beta = random_parameters(3, True, True, gen)
    up, down = asymmetric_filters(gen)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = op(x, alpha, beta, up, down, True)
    stream.synchronize()
    assert_close_to_definition(out, definition(x, alpha, beta, True, up, down))


def test_cuda_graph_replay(op):
    gen = torch.Generator().manual_seed(12)
    x = random_input((2, 3, 3000), torch.bfloat16, gen)
    alpha, beta = random_parameters(3, True, True, gen)
    up, down = asymmetric_filters(gen)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        op(x, alpha, beta, up, down, True)  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = op(x, alpha, beta, up, down, True)
    fresh = random_input(x.shape, x.dtype, gen)
    x.copy_(fresh)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, op(fresh, alpha, beta, up, down, True), rtol=0, atol=0)


@pytest.mark.parametrize("snakebeta", [False, True], ids=["snake", "snakebeta"])
def test_opcheck(op, snakebeta):
    gen = torch.Generator().manual_seed(14)
    x = random_input((2, 3, 37), torch.float32, gen)
    alpha, beta = random_parameters(3, snakebeta, True, gen)
    up, down = asymmetric_filters(gen)
    torch.library.opcheck(op, (x, alpha, beta, up, down, True))


def test_compile_fullgraph(op):
    gen = torch.Generator().manual_seed(15)
    x = random_input((2, 3, 100), torch.float32, gen)
    alpha, beta = random_parameters(3, True, True, gen)
    up, down = asymmetric_filters(gen)

    def activation(x, alpha, beta):
        return op(x, alpha, beta, up, down, True)

    compiled = torch.compile(activation, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, alpha, beta), activation(x, alpha, beta), rtol=0, atol=0)


# Every message is written from integers and strings by hand (csrc/anti_alias_activation_checks.h):
# on the H200 (torch 2.11) the alpha_shape case, whose message then streamed param.sizes(), killed
# the process (issue 9). Each case runs on the GPU; none may be skipped.
BAD_INPUTS = {
    # name: (how to spoil (x, alpha, beta, up, down), expected message)
    "x_on_cpu": (lambda x, a, b, u, d: (x.cpu(), a, b, u, d), "x must be a CUDA tensor, got one on cpu"),
    "x_float64": (lambda x, a, b, u, d: (x.double(), a, b, u, d), "float32, float16 or bfloat16, got Double"),
    "x_rank_2": (lambda x, a, b, u, d: (x[0], a, b, u, d), r"batch, channels, time\), got \(3, 5\)"),
    "x_no_time_steps": (lambda x, a, b, u, d: (x[..., :0], a, b, u, d), r"at least one time step, got shape \(1, 3, 0\)"),
    "alpha_shape": (
        lambda x, a, b, u, d: (x, torch.zeros(4, device=DEVICE), b, u, d),
        r"alpha must have shape \(3,\) for x with 3 channels, got \(4,\)",
    ),
    "alpha_2d": (lambda x, a, b, u, d: (x, a[:, None], b, u, d), r"alpha must have shape \(3,\) for x with 3 channels, got \(3, 1\)"),
    "alpha_0d": (lambda x, a, b, u, d: (x, a[0], b, u, d), r"alpha must have shape \(3,\) for x with 3 channels, got \(\)"),
    "alpha_integer": (
        lambda x, a, b, u, d: (x, torch.zeros(3, dtype=torch.int32, device=DEVICE), b, u, d),
        "alpha must be a floating-point tensor, got Int",
    ),
    "alpha_on_cpu": (lambda x, a, b, u, d: (x, a.cpu(), b, u, d), "alpha is on cpu but x is on cuda:0"),
    "beta_shape": (
        lambda x, a, b, u, d: (x, a, torch.zeros(2, device=DEVICE), u, d),
        r"beta must have shape \(3,\) for x with 3 channels, got \(2,\)",
    ),
    "up_taps": (lambda x, a, b, u, d: (x, a, b, u[:10], d), r"upsample_filter must hold 12 taps, got shape \(10,\)"),
    "up_float64": (lambda x, a, b, u, d: (x, a, b, u.double(), d), "upsample_filter must be float32, got Double"),
    "down_on_cpu": (lambda x, a, b, u, d: (x, a, b, u, d.cpu()), "downsample_filter is on cpu but x is on cuda:0"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_named(op, case):
    spoil, match = BAD_INPUTS[case]
    gen = torch.Generator().manual_seed(16)
    x = random_input((1, 3, 5), torch.float32, gen)
    alpha, beta = random_parameters(3, True, True, gen)
    up, down = asymmetric_filters(gen)
    with pytest.raises(RuntimeError, match=match):
        op(*spoil(x, alpha, beta, up, down), True)


# --- out_dtype: the kernel writing another dtype than x's (the mixed half-precision mode) -----------


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("T", [1, 7, CUDA_TILE + 5])
@pytest.mark.parametrize("layout", ["contiguous", "misaligned"])
def test_float32_to_half_matches_the_definition_and_rounds_once(op, out_dtype, T, layout):
    gen = torch.Generator().manual_seed(60 + T)
    B, C = 2, 3
    if layout == "misaligned":  # x's rows not 16-byte aligned: the scalar staging path
        x = random_input((B * C * T + 1,), torch.float32, gen)[1:].view(B, C, T)
    else:
        x = random_input((B, C, T), torch.float32, gen)
    alpha, beta = random_parameters(C, True, True, gen)
    up, down = asymmetric_filters(gen)
    out = call_poisoned(op, x, alpha, beta, up, down, True, out_dtype, poison_dtype=out_dtype)
    assert out.dtype == out_dtype and out.shape == (B, C, T) and out.is_contiguous()
    assert_close_to_definition(out, definition(x, alpha, beta, True, up, down))
    # One rounding: the float32 output rounded to nearest even (as torch's cast), bitwise.
    y32 = op(x, alpha, beta, up, down, True)
    assert torch.equal(out, y32.to(out_dtype)), describe_mismatch(out, y32.to(out_dtype), 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_out_dtype_of_x_is_the_default_call(op, dtype):
    gen = torch.Generator().manual_seed(61)
    x = random_input((2, 3, 300), dtype, gen)
    alpha, beta = random_parameters(3, False, True, gen)
    up, down = asymmetric_filters(gen)
    explicit = call_poisoned(op, x, alpha, beta, up, down, True, dtype, poison_dtype=dtype)
    assert torch.equal(explicit, op(x, alpha, beta, up, down, True))


@pytest.mark.parametrize(
    "x_dtype,out_dtype",
    [(torch.bfloat16, torch.float32), (torch.float16, torch.float32), (torch.bfloat16, torch.float16),
     (torch.float16, torch.bfloat16), (torch.float32, torch.float64)],
    ids=str,
)
def test_pairs_without_an_instantiation_are_refused_by_name(op, x_dtype, out_dtype):
    gen = torch.Generator().manual_seed(62)
    x = random_input((1, 3, 5), x_dtype, gen)
    alpha, beta = random_parameters(3, True, True, gen)
    up, down = asymmetric_filters(gen)
    names = {torch.float32: "Float", torch.float16: "Half", torch.bfloat16: "BFloat16", torch.float64: "Double"}
    with pytest.raises(RuntimeError, match=f"out_dtype must be x's dtype, or BFloat16 or Half for Float x; "
                                           f"got {names[out_dtype]} for {names[x_dtype]} x"):
        op(x, alpha, beta, up, down, True, out_dtype)


def test_opcheck_and_graph_capture_with_out_dtype(op):
    gen = torch.Generator().manual_seed(63)
    x = random_input((2, 3, 37), torch.float32, gen)
    alpha, beta = random_parameters(3, True, True, gen)
    up, down = asymmetric_filters(gen)
    torch.library.opcheck(op, (x, alpha, beta, up, down, True, torch.bfloat16))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        op(x, alpha, beta, up, down, True, torch.bfloat16)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = op(x, alpha, beta, up, down, True, torch.bfloat16)
    fresh = random_input(x.shape, x.dtype, gen)
    x.copy_(fresh)
    graph.replay()
    torch.cuda.synchronize()
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, op(fresh, alpha, beta, up, down, True, torch.bfloat16))


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16], ids=str)
def test_the_public_op_and_the_lean_path_write_out_dtype_on_cuda(op, out_dtype):
    from bigvgan_fast import anti_alias_activation
    from bigvgan_fast.modules import Activation1d, SnakeBeta

    gen = torch.Generator().manual_seed(64)
    x = random_input((1, 4, 1000), torch.float32, gen)
    module = Activation1d(SnakeBeta(4, alpha_logscale=True), backend="cuda").to(DEVICE)
    alpha, beta = random_parameters(4, True, True, gen)
    with torch.no_grad():
        module.act.alpha.copy_(alpha)
        module.act.beta.copy_(beta)
    with torch.inference_mode():
        lean = call_poisoned(lambda x: module(x, out_dtype=out_dtype), x, poison_dtype=out_dtype)
    assert (x.device, torch.float32, out_dtype) in module._inference_runs
    public = call_poisoned(lambda x: anti_alias_activation(x, alpha, beta, backend="cuda", out_dtype=out_dtype), x,
                           poison_dtype=out_dtype)
    assert lean.dtype == public.dtype == out_dtype
    assert torch.equal(lean, public)
    assert_close_to_definition(lean, definition(x, alpha, beta))
