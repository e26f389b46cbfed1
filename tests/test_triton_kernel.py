"""The Triton kernels of the anti-aliased activation, called directly (not through dispatch): what
only this backend has. The forward at default tiles, every dtype, length and Snake kind against
the definition, is tests/test_fused_forward.py's parametrization (backend "triton").

Forward: every output sample, borders included, against the float64 evaluation of docs/definition.md
(``definition``): float32 within 2e-5 absolute and relative L2 <= 1e-6; float16 / bfloat16 at most
one unit in the last place of the correctly rounded result on the same rounded input. Backward:
against torch.autograd through the reference path in float64. Outputs are NaN-poisoned first.

Without a GPU the kernels run on CPU tensors under TRITON_INTERPRET=1, so shapes stay small;
``block_t=16`` makes short rows span several tiles, so interior tiles (unclamped loads) and tile
edges are exercised. Tests marked ``gpu`` run model shapes and a row longer than 2**31 samples.
Inputs, parameters, filters and the poisoned launch come from tests/kernel_cases.py.
"""

import pytest
import torch

triton = pytest.importorskip("triton", reason="triton is not installed")

from bigvgan_fast.anti_alias.reference import anti_alias_activation_ref  # noqa: E402
from bigvgan_fast.kernels import (  # noqa: E402
    anti_alias_activation_backward,
    anti_alias_activation_forward,
    prepared_forward,
)
from definition import assert_close_to_definition, definition, describe_mismatch  # noqa: E402
from kernel_cases import (  # noqa: E402
    DEVICE,
    DTYPES,
    asymmetric_filters,
    dtype_id,
    published_filter,
    random_input,
    random_parameters,
    triton_forward_poisoned,
)


def published_filters(device=DEVICE):
    f = published_filter(device)
    return f, f


def forward(x, alpha, beta, alpha_logscale, filters=None, **launch):
    """The launcher on a NaN-poisoned ``out``; ``filters`` (up, down) default to the published one."""
    up, down = filters or published_filters(x.device)
    return triton_forward_poisoned(x, alpha, beta, up, down, alpha_logscale, **launch)


def assert_matches_definition(y, x, alpha, beta, alpha_logscale, filters=None):
    """docs/definition.md's standard for y = kernel(x): float32 2e-5 / rel-L2 1e-6, half types 1 ulp."""
    up, down = filters or published_filters(x.device)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert_close_to_definition(y, definition(x, alpha, beta, alpha_logscale, up, down))


# --- forward ----------------------------------------------------------------------------------


@pytest.mark.parametrize("use_gather", [True, False], ids=["gather", "recompute"])
@pytest.mark.parametrize("snake_beta", [True, False], ids=["snakebeta", "snake"])
@pytest.mark.parametrize("T", [1, 7, 16, 21, 22, 23, 64, 101])
def test_forward_many_tiles(T, snake_beta, use_gather):
    """16-sample tiles: interior tiles, tile edges and partial last tiles, both ways of sharing z;
    asymmetric filters, so taps reversed or swapped in the unclamped interior path fail too."""
    gen = torch.Generator().manual_seed(T + 7 * snake_beta)
    x = random_input((2, 2, T), torch.float32, gen)
    alpha, beta = random_parameters(2, snake_beta, True, gen)
    filters = asymmetric_filters(gen)
    y = forward(x, alpha, beta, True, filters, block_t=16, use_gather=use_gather)
    assert_matches_definition(y, x, alpha, beta, True, filters)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_forward_half_many_tiles(dtype):
    gen = torch.Generator().manual_seed(3)
    x = random_input((1, 3, 70), dtype, gen)
    alpha, beta = random_parameters(3, True, True, gen)
    filters = asymmetric_filters(gen)
    y = forward(x, alpha, beta, True, filters, block_t=32)
    assert_matches_definition(y, x, alpha, beta, True, filters)


@pytest.mark.parametrize("param_dtype", [torch.bfloat16, torch.float16, torch.float64], ids=dtype_id)
def test_forward_parameters_of_other_dtypes(param_dtype):
    """Parameters are read in their own dtype and converted to float32 in the kernel."""
    gen = torch.Generator().manual_seed(4)
    x = random_input((1, 4, 33), torch.float32, gen)
    alpha, beta = random_parameters(4, True, True, gen, dtype=param_dtype)
    y = forward(x, alpha, beta, True)
    assert_matches_definition(y, x, alpha, beta, True)


def test_forward_non_contiguous_through_fused_op():
    """The public op makes the input contiguous once; the launcher refuses strided input."""
    from bigvgan_fast.anti_alias import op as ops

    gen = torch.Generator().manual_seed(6)
    base = random_input((2, 45, 4), torch.float32, gen)
    x = base.transpose(1, 2)[:, 1:, 3:42]  # (2, 3, 39), strided and offset
    assert not x.is_contiguous()
    alpha, beta = random_parameters(3, True, True, gen)
    up, down = asymmetric_filters(gen)
    y = ops.run("triton", x, alpha, beta, up, down, True)
    assert_matches_definition(y, x, alpha, beta, True, (up, down))
    with pytest.raises(ValueError, match="contiguous"):
        anti_alias_activation_forward(x, alpha, beta, up, down, True)


# --- backward ---------------------------------------------------------------------------------


def reference_grads(grad_y, x, alpha, beta, alpha_logscale, filters=None):
    """torch.autograd through the reference path, in float64."""
    up, down = (f.double() for f in (filters or published_filters(x.device)))
    x64 = x.detach().double().requires_grad_()
    alpha64 = alpha.detach().double().requires_grad_()
    beta64 = None if beta is None else beta.detach().double().requires_grad_()
    y = anti_alias_activation_ref(
        x64, alpha64, beta64, alpha_logscale=alpha_logscale, upsample_filter=up, downsample_filter=down
    )
    inputs = [x64, alpha64] + ([] if beta64 is None else [beta64])
    grads = torch.autograd.grad(y, inputs, grad_y.double())
    return grads[0], grads[1], None if beta is None else grads[2]


def backward(grad_y, x, alpha, beta, alpha_logscale, filters=None, **kwargs):
    """The backward launcher on a NaN-poisoned grad_x; ``filters`` default to the published one."""
    up, down = filters or published_filters(x.device)
    out = torch.full_like(x, float("nan"))
    grad_x, grad_alpha, grad_beta = anti_alias_activation_backward(
        grad_y, x, alpha, beta, up, down, alpha_logscale, True, True, out=out, **kwargs
    )
    assert grad_x is out
    return grad_x, grad_alpha, grad_beta


def assert_grads_close(got, expected, alpha, beta):
    grad_x, grad_alpha, grad_beta = got
    ref_x, ref_alpha, ref_beta = expected
    assert not grad_x.isnan().any(), describe_mismatch(grad_x, ref_x, 0)
    tol = 2e-5 * torch.clamp(ref_x.abs().cpu(), min=1.0)
    err = (grad_x.double().cpu() - ref_x.cpu()).abs()
    assert (err <= tol).all(), describe_mismatch(grad_x, ref_x, tol)
    rel = (grad_x.double().cpu() - ref_x.cpu()).norm() / ref_x.norm().clamp_min(1e-30)
    assert rel <= 1e-5, f"grad_x relative L2 error {rel:.3g}"
    assert grad_alpha.dtype == alpha.dtype and grad_alpha.shape == alpha.shape
    rel_alpha = (grad_alpha.double() - ref_alpha).norm() / ref_alpha.norm()
    assert rel_alpha <= 1e-5, f"grad_alpha relative error {rel_alpha:.3g}: {grad_alpha} vs {ref_alpha}"
    if beta is None:
        assert grad_beta is None
    else:
        assert grad_beta.dtype == beta.dtype and grad_beta.shape == beta.shape
        rel_beta = (grad_beta.double() - ref_beta).norm() / ref_beta.norm()
        assert rel_beta <= 1e-5, f"grad_beta relative error {rel_beta:.3g}: {grad_beta} vs {ref_beta}"


@pytest.mark.parametrize("alpha_logscale", [True, False], ids=["log", "linear"])
@pytest.mark.parametrize("snake_beta", [True, False], ids=["snakebeta", "snake"])
# 16 and 64: a row of exactly one tile, whose transposed upsample's wrapped neighbours at lanes 0..2
# are samples of the row (they must count as outside it).
@pytest.mark.parametrize("T", [1, 2, 3, 5, 13, 16, 64, 129])
def test_backward_matches_autograd(T, snake_beta, alpha_logscale):
    gen = torch.Generator().manual_seed(2000 * T + 10 * snake_beta + alpha_logscale)
    x = random_input((2, 3, T), torch.float32, gen)
    alpha, beta = random_parameters(3, snake_beta, alpha_logscale, gen)
    filters = asymmetric_filters(gen)
    # A non-contiguous gradient, as autograd may hand over.
    grad_y = torch.randn(2, T, 3, generator=gen).to(DEVICE).transpose(1, 2)
    got = backward(grad_y, x, alpha, beta, alpha_logscale, filters)
    assert_grads_close(got, reference_grads(grad_y, x, alpha, beta, alpha_logscale, filters), alpha, beta)


@pytest.mark.parametrize("use_gather", [True, False], ids=["gather", "recompute"])
@pytest.mark.parametrize("snake_beta", [True, False], ids=["snakebeta", "snake"])
@pytest.mark.parametrize("T", [7, 22, 53])
def test_backward_many_tiles(T, snake_beta, use_gather):
    gen = torch.Generator().manual_seed(3000 + T + 7 * snake_beta)
    x = random_input((1, 2, T), torch.float32, gen)
    alpha, beta = random_parameters(2, snake_beta, True, gen)
    filters = asymmetric_filters(gen)
    grad_y = torch.randn(1, 2, T, generator=gen).to(DEVICE)
    got = backward(grad_y, x, alpha, beta, True, filters, block_t=16, use_gather=use_gather)
    assert_grads_close(got, reference_grads(grad_y, x, alpha, beta, True, filters), alpha, beta)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_backward_half_grad_x(dtype):
    """grad_x in the input dtype, computed in float32 and rounded once."""
    gen = torch.Generator().manual_seed(8)
    x = random_input((1, 3, 40), dtype, gen)
    alpha, beta = random_parameters(3, True, True, gen)
    grad_y = torch.randn(1, 3, 40, generator=gen).to(dtype).to(DEVICE)
    grad_x, grad_alpha, grad_beta = backward(grad_y, x, alpha, beta, True, block_t=16)
    ref_x, ref_alpha, ref_beta = reference_grads(grad_y, x, alpha, beta, True)
    assert grad_x.dtype == dtype and grad_alpha.dtype == torch.float32
    assert_close_to_definition(grad_x, ref_x)
    assert (grad_alpha.double() - ref_alpha).norm() / ref_alpha.norm() <= 1e-5
    assert (grad_beta.double() - ref_beta).norm() / ref_beta.norm() <= 1e-5


def test_backward_selected_parameter_grads():
    gen = torch.Generator().manual_seed(9)
    x = random_input((1, 2, 20), torch.float32, gen)
    alpha, beta = random_parameters(2, True, True, gen)
    grad_y = torch.randn(1, 2, 20, generator=gen).to(DEVICE)
    f = published_filter()
    ref = reference_grads(grad_y, x, alpha, beta, True)
    poisoned = torch.full_like(x, float("nan"))  # an element the kernel leaves unwritten stays NaN
    grad_x, grad_alpha, grad_beta = anti_alias_activation_backward(grad_y, x, alpha, beta, f, f, True, False, False,
                                                                   out=poisoned)
    assert grad_alpha is None and grad_beta is None and grad_x is poisoned
    assert (grad_x.double().cpu() - ref[0].cpu()).abs().max() <= 2e-5
    _, grad_alpha, grad_beta = anti_alias_activation_backward(grad_y, x, alpha, beta, f, f, True, False, True)
    assert grad_alpha is None and (grad_beta.double() - ref[2]).norm() / ref[2].norm() <= 1e-5


def test_backward_parameter_grads_are_deterministic():
    gen = torch.Generator().manual_seed(10)
    x = random_input((3, 2, 50), torch.float32, gen)
    alpha, beta = random_parameters(2, True, True, gen)
    grad_y = torch.randn(3, 2, 50, generator=gen).to(DEVICE)
    first = backward(grad_y, x, alpha, beta, True, block_t=16)
    second = backward(grad_y, x, alpha, beta, True, block_t=16)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


# --- non-finite input ---------------------------------------------------------------------------

# T = 70 in 16-sample tiles: the forward's tiles store 4 outputs each and overlap by 12 lanes
# (tiles 3-14 interior, 0-2 and 15-17 clamp), the backward's store 16 (1-3 interior, 0 and 4 clamp).
# One non-finite sample per channel, at the row's ends, on and beside tile edges, inside tiles.
NONFINITE_T = 70
NONFINITE_POSITIONS = [0, 1, 5, 15, 16, 17, 31, 32, 40, 47, 48, 63, 64, 69]
NONFINITE_VALUES = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
# (block_t, use_gather): many tiles both ways; one tile (clamped throughout) both ways.
NONFINITE_LAUNCHES = [(16, True), (16, False), (None, True), (None, False)]


def input_with_nonfinite(value, gen):
    x = random_input((1, len(NONFINITE_POSITIONS), NONFINITE_T), torch.float32, gen)
    for channel, position in enumerate(NONFINITE_POSITIONS):
        x[0, channel, position] = NONFINITE_VALUES[value]
    return x


def assert_same_nonfinite(actual, expected, tol):
    """NaN and Inf exactly where ``expected`` has them, values within ``tol`` everywhere else."""
    actual = actual.detach().double().cpu()
    expected = expected.detach().double().cpu()
    assert expected.isnan().any(dim=-1).all(), "the check is vacuous: some row of the expectation has no NaN"
    assert torch.equal(actual.isnan(), expected.isnan()), (
        f"NaN at {(actual.isnan() != expected.isnan()).nonzero().tolist()[:8]} differs from the expectation"
    )
    assert torch.equal(actual.isinf(), expected.isinf())
    finite = expected.isfinite()
    assert (actual[finite] - expected[finite]).abs().max() <= tol, describe_mismatch(
        actual[finite], expected[finite], tol
    )


@pytest.mark.parametrize("block_t,use_gather", NONFINITE_LAUNCHES, ids=lambda v: str(v))
@pytest.mark.parametrize("value", list(NONFINITE_VALUES))
def test_forward_nonfinite_reaches_what_the_definition_reaches(value, block_t, use_gather):
    """A NaN or Inf in x[j] makes y[j-5 .. j+5] NaN (clamped to the row), as in the definition."""
    gen = torch.Generator().manual_seed(15)
    x = input_with_nonfinite(value, gen)
    alpha, beta = random_parameters(x.shape[1], True, True, gen)
    y = forward(x, alpha, beta, True, block_t=block_t, use_gather=use_gather)
    expected = definition(x, alpha, beta, True)
    assert int(expected[0, 8].isnan().sum()) == 11  # x[40]: y[35 .. 45]
    assert_same_nonfinite(y, expected, 2e-5)


@pytest.mark.parametrize("block_t,use_gather", NONFINITE_LAUNCHES, ids=lambda v: str(v))
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_backward_nonfinite_reaches_what_autograd_reaches(value, block_t, use_gather):
    """grad_x is NaN exactly where float64 autograd of the reference path makes it NaN."""
    gen = torch.Generator().manual_seed(16)
    x = input_with_nonfinite(value, gen)
    alpha, beta = random_parameters(x.shape[1], True, True, gen)
    grad_y = torch.randn(x.shape, generator=gen).to(DEVICE)
    grad_x, grad_alpha, grad_beta = backward(grad_y, x, alpha, beta, True, block_t=block_t, use_gather=use_gather)
    ref_x, ref_alpha, ref_beta = reference_grads(grad_y, x, alpha, beta, True)
    assert_same_nonfinite(grad_x, ref_x, 2e-5 * max(1.0, float(ref_x.nan_to_num(0.0).abs().max())))
    # Every channel holds a non-finite sample, so every parameter gradient is NaN, as in autograd.
    assert grad_alpha.isnan().all() and ref_alpha.isnan().all()
    assert grad_beta.isnan().all() and ref_beta.isnan().all()


@pytest.mark.parametrize("snake_beta", [True, False], ids=["snakebeta", "snake"])
def test_forward_zero_tiny_and_negative_alpha(snake_beta):
    """The forward carries a * z (its taps scaled by a, 1 / a); for |a| < 2^-64 it carries z and
    drops the sine term instead. Linear-scale alpha of 0, 1e-30, 2^-64 itself and negative values."""
    gen = torch.Generator().manual_seed(23)
    x = random_input((1, 5, 40), torch.float32, gen)
    alpha = torch.tensor([0.0, 1e-30, 2.0**-64, -0.7, 1.3]).to(DEVICE)
    beta = torch.tensor([1.0, 0.5, 2.0, 0.8, 1.1]).to(DEVICE) if snake_beta else None
    for block_t in (16, None):
        y = forward(x, alpha, beta, False, block_t=block_t)
        assert_matches_definition(y, x, alpha, beta, False)


def test_batches_beyond_the_grid_limit(monkeypatch):
    """The grids are (tiles, channels, batches); batches past CUDA's axis limit go in several
    launches over contiguous views, channels past it are refused. The limit lowered to 2 here:
    forward and backward equal bitwise to one launch, and to the definition / autograd."""
    from bigvgan_fast.kernels import anti_alias_activation as kernel_module

    gen = torch.Generator().manual_seed(22)
    x = random_input((5, 2, 40), torch.float32, gen)
    alpha, beta = random_parameters(2, True, True, gen)
    grad_y = torch.randn(x.shape, generator=gen).to(DEVICE)
    whole = forward(x, alpha, beta, True, block_t=16)
    whole_grads = backward(grad_y, x, alpha, beta, True, block_t=16)
    monkeypatch.setattr(kernel_module, "_MAX_GRID_YZ", 2)
    split = forward(x, alpha, beta, True, block_t=16)
    assert torch.equal(split, whole), describe_mismatch(split, whole, 0)
    assert_matches_definition(split, x, alpha, beta, True)
    split_grads = backward(grad_y, x, alpha, beta, True, block_t=16)
    for a, b in zip(split_grads, whole_grads):
        assert torch.equal(a, b)
    assert_grads_close(split_grads, reference_grads(grad_y, x, alpha, beta, True), alpha, beta)
    x3 = random_input((1, 3, 40), torch.float32, gen)
    alpha3, beta3 = random_parameters(3, True, True, gen)
    with pytest.raises(ValueError, match="channels"):
        forward(x3, alpha3, beta3, True)
    with pytest.raises(ValueError, match="channels"):
        backward(torch.randn(x3.shape, generator=gen).to(DEVICE), x3, alpha3, beta3, True)


# --- lean inference launch -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("snake_beta", [True, False], ids=["snakebeta", "snake"])
def test_prepared_forward_equals_the_launcher(snake_beta, dtype):
    """One prepared launcher over several lengths (tile lengths, aligned and unaligned T): bitwise
    the ordinary launcher's output, and the definition's. On the CPU it is the ordinary launcher
    under the interpreter, so there only the second comparison can fail."""
    gen = torch.Generator().manual_seed(19)
    alpha, beta = random_parameters(3, snake_beta, True, gen)
    f = published_filter()
    launch = prepared_forward(dtype, snake_beta, True, DEVICE)
    for T in (1, 13, 16, 48, 70):
        x = random_input((2, 3, T), dtype, gen)
        out = torch.full_like(x, float("nan"))
        assert launch(x, out, alpha, beta, f, f) is out
        expected = forward(x, alpha, beta, True)
        assert torch.equal(out, expected), f"T={T}: " + describe_mismatch(out, expected, 0)
        assert_close_to_definition(out, definition(x, alpha, beta, True, f, f))


def test_prepared_forward_fixed_tile_length():
    gen = torch.Generator().manual_seed(20)
    x = random_input((1, 2, 45), torch.float32, gen)
    alpha, beta = random_parameters(2, True, False, gen)
    f = published_filter()
    launch = prepared_forward(torch.float32, True, False, DEVICE, block_t=16, use_gather=False)
    out = launch(x, torch.full_like(x, float("nan")), alpha, beta, f, f)
    assert torch.equal(out, forward(x, alpha, beta, False, block_t=16, use_gather=False))
    assert_matches_definition(out, x, alpha, beta, False)


def test_prepared_forward_refuses_what_it_cannot_launch():
    with pytest.raises(TypeError, match="dtype"):
        prepared_forward(torch.float64, True, True, DEVICE)
    with pytest.raises(ValueError, match="block_t"):
        prepared_forward(torch.float32, True, True, DEVICE, block_t=24)


# --- GPU --------------------------------------------------------------------------------------

# (C, T) of every activation of bigvgan_v2_22khz_80band_256x at 256 mel frames.
MODEL_SHAPES = [(768, 1024), (384, 4096), (192, 8192), (96, 16384), (48, 32768), (24, 65536)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("C,T", MODEL_SHAPES)
def test_gpu_model_shapes(C, T, dtype):
    gen = torch.Generator().manual_seed(C + T)
    x = random_input((1, C, T), dtype, gen)
    alpha, beta = random_parameters(C, True, True, gen)
    y = forward(x, alpha, beta, True)
    assert_matches_definition(y, x, alpha, beta, True)


@pytest.mark.gpu
@pytest.mark.parametrize("snake_beta", [True, False], ids=["snakebeta", "snake"])
def test_gpu_recompute_path_and_odd_shapes(snake_beta):
    gen = torch.Generator().manual_seed(12)
    x = random_input((3, 5, 70001), torch.float32, gen)
    alpha, beta = random_parameters(5, snake_beta, False, gen)
    for use_gather in (True, False):
        y = forward(x, alpha, beta, False, use_gather=use_gather)
        assert_matches_definition(y, x, alpha, beta, False)


@pytest.mark.gpu
@pytest.mark.parametrize("snake_beta", [True, False], ids=["snakebeta", "snake"])
def test_gpu_backward(snake_beta):
    gen = torch.Generator().manual_seed(13)
    x = random_input((2, 48, 4099), torch.float32, gen)
    alpha, beta = random_parameters(48, snake_beta, True, gen)
    grad_y = torch.randn(2, 4099, 48, generator=gen).to(DEVICE).transpose(1, 2)
    expected = reference_grads(grad_y, x, alpha, beta, True)
    for use_gather in (True, False):
        first = backward(grad_y, x, alpha, beta, True, use_gather=use_gather)
        assert_grads_close(first, expected, alpha, beta)
        second = backward(grad_y, x, alpha, beta, True, use_gather=use_gather)
        for a, b in zip(first, second):
            # Snake's grad_beta is None on both calls (the op's contract); the rest is bitwise equal.
            assert b is None if a is None else torch.equal(a, b)


@pytest.mark.gpu
def test_gpu_row_longer_than_int32():
    """B*C*T > 2**31: offsets must be 64-bit. Checks windows at the start, around 2**31 and the end."""
    T = 2**31 + 7
    free, _ = torch.cuda.mem_get_info()
    if free < 3 * 2 * T:
        pytest.skip(f"needs {3 * 2 * T / 2**30:.1f} GiB of free GPU memory")
    x = torch.empty(1, 1, T, dtype=torch.bfloat16, device="cuda")
    x.normal_(0.0, 3.0, generator=torch.Generator("cuda").manual_seed(14)).clamp_(-10, 10)
    gen = torch.Generator().manual_seed(14)
    alpha, beta = random_parameters(1, True, True, gen)
    y = forward(x, alpha, beta, True)
    W = 300
    windows = [(0, W, 0, W - 6), (2**31 - W, 2**31 + W, 2**31 - W + 6, 2**31 + W - 6), (T - W, T, T - W + 6, T)]
    for start, stop, keep_start, keep_stop in windows:
        # y[t] reads x[t-6 .. t+6]: a window of x gives exact y away from its cut ends.
        expected = definition(x[..., start:stop].cpu(), alpha, beta, True)[..., keep_start - start : keep_stop - start]
        got = y[..., keep_start:keep_stop].cpu()
        assert not got.isnan().any(), f"unwritten samples in [{keep_start}, {keep_stop})"
        assert_close_to_definition(got, expected)


@pytest.mark.gpu
def test_gpu_prepared_forward_alignment_classes_and_errors():
    """The directly launched kernels: unaligned views and T % 16 != 0 take the kernel compiled
    without those facts; equal outputs bitwise; wrong dtype or a Snake/SnakeBeta mix-up raises."""
    gen = torch.Generator().manual_seed(21)
    alpha, beta = random_parameters(4, True, True, gen)
    f = published_filter()
    launch = prepared_forward(torch.bfloat16, True, True, DEVICE)
    for T, offset in ((1024, 0), (1024, 1), (1000, 0), (4099, 3), (1, 0)):
        base = random_input((4 * T + offset,), torch.bfloat16, gen)
        x = base[offset:].view(1, 4, T)
        out = torch.full((4 * T + offset,), float("nan"), dtype=torch.bfloat16, device=DEVICE)[offset:].view(1, 4, T)
        launch(x, out, alpha, beta, f, f)
        expected = forward(x.contiguous(), alpha, beta, True)
        assert torch.equal(out, expected), f"T={T}, offset {offset}: " + describe_mismatch(out, expected, 0)
    assert len(launch._compiled) <= 4  # (block_t, aligned) pairs, reused across calls
    with pytest.raises(ValueError, match="contiguous"):
        launch(x.float(), out.float(), alpha, beta, f, f)
    with pytest.raises(ValueError, match="SnakeBeta"):
        launch(x, out, alpha, None, f, f)
