"""The anti-aliased activation writing another dtype than its input's (``out_dtype``): what the mixed
half-precision mode uses to hand its float32 residual stream to bfloat16 / float16 convolutions
without a separate cast (issue 13).

Against the float64 definition (tests/definition.py) at docs/definition.md's tolerances, every sample
with the borders, fresh random inputs, the Triton kernel writing into a NaN-filled ``out``; one
rounding (a fused half-precision output is the float32 output rounded, bitwise); the generator's
mixed mode equal, bitwise, to the path before out_dtype (each activation in its input's dtype, then
a cast); the lean path's keys; the errors. On a CPU the Triton kernels run under the interpreter
(shapes stay small); on a GPU the same tests run compiled, the CUDA backend included (its own
tests: tests/test_cuda_kernel.py).
"""

from __future__ import annotations

import re

import pytest
import torch

from bigvgan_fast import BigVGAN, anti_alias_activation
from bigvgan_fast.anti_alias import policy
from bigvgan_fast.modules import Activation1d, AMPBlock1, AMPBlock2, SnakeBeta, as_input_of
from conftest import small_config
from definition import assert_close_to_definition, definition, describe_mismatch
from kernel_cases import (
    DEVICE,
    asymmetric_filters,
    dtype_id,
    published_filter,
    random_input,
    random_parameters,
    triton_problem,
)

F32, F16, BF16, F64 = torch.float32, torch.float16, torch.bfloat16, torch.float64
HALF = (BF16, F16)
TRITON = triton_problem()
needs_triton = pytest.mark.skipif(TRITON is not None, reason=f"the Triton backend cannot run here: {TRITON}")
INTERPRETED = TRITON is None and torch.device(DEVICE).type == "cpu"
# Every (x dtype, out dtype) pair of different dtypes the Triton kernel writes.
CROSS_PAIRS = [(F32, BF16), (F32, F16), (BF16, F32), (F16, F32), (BF16, F16), (F16, BF16)]


def pair_id(pair) -> str:
    return f"{dtype_id(pair[0])}-to-{dtype_id(pair[1])}"


def rounded_as_triton_stores(y32: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``y32`` rounded to ``dtype`` as the Triton kernel's store converts it. Compiled Triton rounds to
    nearest even, as torch does. Triton 3.9's interpreter truncates float32 -> bfloat16 (its
    ``cast_impl`` passes no rounding mode to ``_convert_float``); its float32 -> float16 goes through
    numpy, to nearest even. Truncation stays within the definition's 1 ulp."""
    if INTERPRETED and dtype == BF16:
        return (y32.view(torch.int32) & -65536).view(F32).to(BF16)  # exact: the low 16 bits are zero
    return y32.to(dtype)


def triton_poisoned(x, alpha, beta, up, down, alpha_logscale, out_dtype, **launch) -> torch.Tensor:
    """The Triton launcher writing into a NaN-filled ``out`` of ``out_dtype``: an element it leaves
    unwritten stays NaN. ``launch``: block_t, num_warps, use_gather."""
    from bigvgan_fast.kernels import anti_alias_activation_forward

    out = torch.full(x.shape, float("nan"), dtype=out_dtype, device=x.device)
    y = anti_alias_activation_forward(x, alpha, beta, up, down, alpha_logscale, out=out, **launch)
    assert y is out
    return y


# --- the op against the definition ---------------------------------------------------------------


@needs_triton
@pytest.mark.parametrize("snake_beta", [True, False], ids=["snakebeta", "snake"])
@pytest.mark.parametrize("pair", CROSS_PAIRS, ids=pair_id)
def test_triton_writes_another_dtype_within_the_definitions_tolerance(pair, snake_beta):
    x_dtype, out_dtype = pair
    gen = torch.Generator().manual_seed(100 + 2 * CROSS_PAIRS.index(pair) + snake_beta)
    up, down = asymmetric_filters(gen)
    alpha, beta = random_parameters(3, snake_beta, True, gen)
    # One sample; fewer than the filter's reach; three 16-sample tiles (tile borders inside the row).
    for T, launch in ((1, {}), (7, {}), (45, {"block_t": 16})):
        x = random_input((2, 3, T), x_dtype, gen)
        out = triton_poisoned(x, alpha, beta, up, down, True, out_dtype, **launch)
        assert out.dtype == out_dtype
        assert_close_to_definition(out, definition(x, alpha, beta, True, up, down))
    # The public op (the custom op, its default tiling) writes the same samples.
    via_op = anti_alias_activation(x, alpha, beta, backend="triton", upsample_filter=up, downsample_filter=down,
                                   out_dtype=out_dtype)
    launched = triton_poisoned(x, alpha, beta, up, down, True, out_dtype)
    assert via_op.dtype == out_dtype and torch.equal(via_op, launched), describe_mismatch(via_op, launched, 0)


@pytest.mark.parametrize("pair", [(F32, BF16), (F32, F16), (F32, F64), (BF16, F32), (F16, BF16), (F64, F32)], ids=pair_id)
def test_torch_backend_computes_as_before_then_converts(pair):
    x_dtype, out_dtype = pair
    gen = torch.Generator().manual_seed(120 + pair[0].itemsize + 3 * pair[1].itemsize)
    up, down = asymmetric_filters(gen, device="cpu")
    alpha, beta = random_parameters(3, True, True, gen, device="cpu")
    x = random_input((2, 3, 37), x_dtype, gen, device="cpu")
    kwargs = dict(backend="torch", upsample_filter=up, downsample_filter=down)
    y = anti_alias_activation(x, alpha, beta, out_dtype=out_dtype, **kwargs)
    before = anti_alias_activation(x, alpha, beta, **kwargs)
    assert y.dtype == out_dtype and before.dtype == x_dtype
    assert torch.equal(y, before.to(out_dtype))
    if x_dtype == F32 and out_dtype in HALF:  # float32 math rounded once: the definition's standard
        assert_close_to_definition(y, definition(x, alpha, beta, True, up, down))
    empty = anti_alias_activation(x[:, :0], alpha[:0], beta[:0], backend="torch", out_dtype=out_dtype)
    assert empty.shape == (2, 0, 37) and empty.dtype == out_dtype


@pytest.mark.parametrize("out_dtype", HALF, ids=dtype_id)
@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
def test_half_output_is_the_float32_output_rounded_once(backend, out_dtype):
    """Bitwise: the op computes the float32 result and rounds it once, as its backend's float32
    output converted afterwards (the cast the mixed mode used to make) is rounded."""
    gen = torch.Generator().manual_seed(130 + HALF.index(out_dtype))
    device = DEVICE if backend == "triton" else "cpu"
    alpha, beta = random_parameters(4, True, True, gen, device=device)
    x = random_input((2, 4, 300), F32, gen, device=device)
    y32 = anti_alias_activation(x, alpha, beta, backend=backend)
    if backend == "triton":
        taps = published_filter(device)  # the op's default taps
        y = triton_poisoned(x, alpha, beta, taps, taps, True, out_dtype)
        assert torch.equal(y, anti_alias_activation(x, alpha, beta, backend=backend, out_dtype=out_dtype))
        expected = rounded_as_triton_stores(y32, out_dtype)
    else:
        y = anti_alias_activation(x, alpha, beta, backend=backend, out_dtype=out_dtype)
        expected = y32.to(out_dtype)
    assert y.dtype == out_dtype
    assert torch.equal(y, expected), describe_mismatch(y, expected, 0)
    assert not torch.equal(y.to(F32), y32)  # rounding happened: the comparison is not of float32 values


# --- the generator's mixed mode -------------------------------------------------------------------


def _amp_block1_forward_before_out_dtype(self, x):
    """AMPBlock1.forward as it was: each activation in its own dtype, then a cast to the convolution's."""
    acts1, acts2 = self.activations[::2], self.activations[1::2]
    for c1, c2, a1, a2 in zip(self.convs1, self.convs2, acts1, acts2):
        h = c1(as_input_of(c1, a1(x)))
        x = x + c2(as_input_of(c2, a2(h)))
    return x


def _amp_block2_forward_before_out_dtype(self, x):
    for c, a in zip(self.convs, self.activations):
        x = x + c(as_input_of(c, a(x)))
    return x


def _generator_case(backend: str, dtype: torch.dtype, resblock: str):
    reason = None if backend == "torch" else policy.problem(backend, torch.device(DEVICE).type, F32, False)
    if reason is None and backend == "triton" and dtype == BF16 and INTERPRETED:
        reason = ("Triton's interpreter truncates float32 -> bfloat16 where torch's cast rounds to nearest "
                  "(rounded_as_triton_stores): the two paths differ by design here; a GPU runs this case")
    marks = [pytest.mark.skipif(reason is not None, reason=str(reason))]
    if backend == "cuda" or (backend == "triton" and dtype == BF16):  # cases only a GPU runs
        marks.append(pytest.mark.gpu)
    return pytest.param(backend, dtype, resblock, id=f"{backend}-{dtype_id(dtype)}-AMPBlock{resblock}", marks=marks)


def _random_small_model(resblock: str, backend: str, seed: int) -> BigVGAN:
    """The small generator with weights that shape the signal (std 1/sqrt(fan_in), the residual
    convolutions 0.3 of that) and spread Snake parameters: under the official init the residual
    convolutions barely move the stream and the activations' alpha/beta are all zero."""
    model = BigVGAN(small_config(resblock=resblock), use_weight_norm=False, backend=backend)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".alpha", ".beta")):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("weight"):
                fan_in = p[0].numel() if p.dim() == 3 else p.shape[1]
                # conv_post 1/100: the waveform stays inside the final clamp, which would hide errors.
                gain = 0.3 if name.startswith("resblocks.") else 0.01 if name.startswith("conv_post") else 1.0
                p.copy_(gain * torch.randn(p.shape, generator=gen) / fan_in**0.5)
    return model


@pytest.mark.parametrize(
    "backend,dtype,resblock",
    [
        _generator_case("torch", BF16, "1"),
        _generator_case("torch", F16, "1"),
        _generator_case("torch", BF16, "2"),
        _generator_case("triton", F16, "1"),
        _generator_case("triton", BF16, "1"),
        _generator_case("cuda", BF16, "1"),
        _generator_case("cuda", F16, "2"),
    ],
)
def test_mixed_generator_waveform_equals_the_path_before_out_dtype(backend, dtype, resblock, monkeypatch):
    import bigvgan_fast.kernels as kernels

    model = _random_small_model(resblock, backend, seed=140).to(DEVICE).to_half_precision(dtype)
    mel = torch.randn(1, 8, 5, generator=torch.Generator().manual_seed(141)).to(DEVICE)
    written = []  # (module kind, input dtype, output dtype) of every activation call
    hooks = [
        m.register_forward_hook(lambda m, args, out, kind=type(m): written.append((kind, args[0].dtype, out.dtype)))
        for m in model.activations()
    ]
    launched = []  # (x dtype, out dtype) of the Triton kernels prepared by the lean path
    prepare = kernels.prepared_forward

    def recording_prepare(dtype, *args, out_dtype=None, **kwargs):
        launched.append((dtype, out_dtype))
        return prepare(dtype, *args, out_dtype=out_dtype, **kwargs)

    monkeypatch.setattr(kernels, "prepared_forward", recording_prepare)
    with torch.inference_mode():
        now = model(mel)
        calls_now, written[:] = list(written), []
        with pytest.MonkeyPatch.context() as old:
            old.setattr(AMPBlock1, "forward", _amp_block1_forward_before_out_dtype)
            old.setattr(AMPBlock2, "forward", _amp_block2_forward_before_out_dtype)
            before = model(mel)
    for hook in hooks:
        hook.remove()
    assert now.dtype == F32 and torch.isfinite(now).all()
    assert torch.equal(now, before), describe_mismatch(now, before, 0)
    # Every AMP layer's first activation now reads the float32 residual and writes the convolution's
    # dtype itself (before: float32 out, then a cast). activation_post stays float32 -> float32.
    amp_layers = sum(len(block.convs1 if resblock == "1" else block.convs) for block in model.resblocks)
    assert calls_now.count((Activation1d, F32, dtype)) == amp_layers
    assert (Activation1d, F32, dtype) not in written
    assert calls_now[-1] == (Activation1d, F32, F32)
    if backend == "triton":
        assert (F32, dtype) in launched  # the kernel wrote it, no cast after it


def test_under_autocast_the_activations_are_asked_for_nothing():
    """The autocast exception of ``as_input_of`` holds for out_dtype too: autocast casts the
    convolutions' inputs itself, so the AMP blocks ask for no dtype (and give what they gave)."""
    block = AMPBlock1(4, 3, (1, 3), backend="torch")
    asked = []
    for a in block.activations:
        a.register_forward_hook(lambda m, args, kwargs, out: asked.append(kwargs.get("out_dtype")), with_kwargs=True)
    x = torch.randn(1, 4, 12, generator=torch.Generator().manual_seed(150))
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=BF16):
            y = block(x)
            with pytest.MonkeyPatch.context() as old:
                old.setattr(AMPBlock1, "forward", _amp_block1_forward_before_out_dtype)
                before = block(x)
        assert asked[:4] == [None] * 4
        assert y.dtype == before.dtype == F32 and torch.equal(y, before)
        asked.clear()
        block.convs1.to(BF16)  # without autocast: each activation is asked for its convolution's dtype
        block(x)
    assert asked == [BF16, F32, BF16, F32]


# --- the lean inference path ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
def test_lean_path_is_chosen_per_device_x_dtype_and_out_dtype(backend):
    gen = torch.Generator().manual_seed(160)
    module = Activation1d(SnakeBeta(3, alpha_logscale=True), backend=backend).to(DEVICE)
    with torch.no_grad():
        module.act.alpha.copy_(0.3 * torch.randn(3, generator=gen))
        module.act.beta.copy_(0.3 * torch.randn(3, generator=gen))
    x = random_input((1, 3, 20), F32, gen)
    asked = [(x, None), (x, F32), (x, BF16), (x, F16), (x.to(BF16), F32)]
    with torch.inference_mode():
        lean = [module(xi, out_dtype=od) for xi, od in asked]
        run = module._inference_runs[(x.device, F32, BF16)]
        again = module(x, out_dtype=BF16)
    assert set(module._inference_runs) == {(x.device, xi.dtype, od) for xi, od in asked}
    assert module._inference_runs[(x.device, F32, BF16)] is run  # chosen once, reused
    assert torch.equal(again, lean[2])
    for (xi, od), y in zip(asked, lean):
        assert y.dtype == (xi.dtype if od is None else od)
        with torch.enable_grad():  # the op with its autograd formula (the parameters require grad)
            expected = module(xi, out_dtype=od)
        assert expected.requires_grad and torch.equal(y, expected.detach()), f"{xi.dtype} -> {od}"
    assert_close_to_definition(lean[2], definition(x, module.act.alpha, module.act.beta))
    module.half()
    assert module._inference_runs == {}  # a cast forgets the choices


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [torch.int32, torch.complex64, "bfloat16", 16, [BF16]], ids=repr)
def test_an_out_dtype_that_is_not_a_float_dtype_is_a_type_error(bad):
    x = torch.randn(1, 2, 9)
    alpha = torch.zeros(2)
    message = "out_dtype must be a floating-point torch.dtype or None, got " + re.escape(repr(bad))
    for backend in ("torch", "auto", "triton", "cuda"):  # before any backend is asked
        with pytest.raises(TypeError, match=message):
            anti_alias_activation(x, alpha, backend=backend, out_dtype=bad)
    module = Activation1d(SnakeBeta(2, alpha_logscale=True), backend="torch")
    with torch.inference_mode(), pytest.raises(TypeError, match=message):
        module(x, out_dtype=bad)
    with pytest.raises(TypeError, match=message):
        module(x, out_dtype=bad)  # the autograd path


@needs_triton
def test_fused_backends_refuse_float64_output_naming_it():
    x = random_input((1, 2, 9), F32, torch.Generator().manual_seed(170))
    alpha = torch.zeros(2, device=DEVICE)
    message = r"backend 'triton' cannot write out_dtype torch.float64: the fused kernels write float32, float16 or bfloat16"
    with pytest.raises(TypeError, match=message):
        anti_alias_activation(x, alpha, backend="triton", out_dtype=F64)
    module = Activation1d(SnakeBeta(2, alpha_logscale=True), backend="triton").to(DEVICE)
    with torch.inference_mode(), pytest.raises(TypeError, match=message):
        module(x, out_dtype=F64)


def test_which_backend_writes_which_pair(monkeypatch):
    """The CUDA kernel is instantiated for each dtype to itself and float32 -> bfloat16 / float16;
    Triton writes any pair; "auto" takes the first backend that can run and write the pair."""
    for x_dtype, out_dtype in [(F32, BF16), (F32, F16), (BF16, BF16), (F16, None), (F32, F32)]:
        assert policy.out_dtype_problem("cuda", x_dtype, out_dtype) is None
    for x_dtype, out_dtype in [(BF16, F32), (F16, F32), (BF16, F16), (F16, BF16)]:
        assert policy.out_dtype_problem("cuda", x_dtype, out_dtype) == (
            f"the CUDA kernel writes x's dtype, or bfloat16 / float16 from float32 x, not {x_dtype} -> {out_dtype} "
            "('triton' and 'torch' write it)"
        )
        assert policy.out_dtype_problem("triton", x_dtype, out_dtype) is None
    assert "float32, float16 or bfloat16, not torch.float64" in policy.out_dtype_problem("triton", F32, F64)
    assert policy.out_dtype_problem("torch", F32, F64) is None

    # With both fused backends able to run (whatever this machine has), the pair decides.
    monkeypatch.delenv(policy.ENV_VAR, raising=False)
    monkeypatch.setattr(policy, "problem", lambda *args, **kwargs: None)
    assert policy.auto_choice("cuda", F32, False, False, BF16) == ("cuda", [])
    name, skipped = policy.auto_choice("cuda", BF16, False, False, F16)
    assert name == "triton" and skipped == ["cuda: " + policy.out_dtype_problem("cuda", BF16, F16)]
    name, skipped = policy.auto_choice("cuda", F32, False, False, F64)
    assert name == "torch" and [s.split(":")[0] for s in skipped] == ["cuda", "triton"]
    with pytest.warns(RuntimeWarning, match="backend 'auto' runs the slow torch path: cuda: the fused kernels write"):
        assert policy.choose("auto", "cuda", F32, False, out_dtype=F64) == "torch"
    with pytest.raises(TypeError, match=r"backend 'cuda' cannot write out_dtype torch.float16: the CUDA kernel writes"):
        policy.choose("cuda", "cuda", BF16, False, out_dtype=F16)
    assert policy.choose("triton", "cuda", BF16, False, out_dtype=F16) == "triton"


@needs_triton
def test_triton_launchers_check_the_output_they_write():
    from bigvgan_fast.kernels import anti_alias_activation_forward, prepared_forward

    gen = torch.Generator().manual_seed(180)
    x = random_input((1, 2, 20), F32, gen)
    alpha, beta = random_parameters(2, True, True, gen)
    up, down = asymmetric_filters(gen)
    with pytest.raises(TypeError, match="out_dtype must be float32, float16 or bfloat16, got torch.float64"):
        anti_alias_activation_forward(x, alpha, beta, up, down, True, out=torch.empty_like(x, dtype=F64))
    with pytest.raises(TypeError, match="out_dtype must be float32, float16 or bfloat16, got torch.int16"):
        anti_alias_activation_forward(x, alpha, beta, up, down, True, out_dtype=torch.int16)
    with pytest.raises(ValueError, match="out must be a contiguous torch.float16 tensor .* got torch.bfloat16"):
        anti_alias_activation_forward(x, alpha, beta, up, down, True, out=torch.empty_like(x, dtype=BF16), out_dtype=F16)
    with pytest.raises(TypeError, match="out_dtype must be float32, float16 or bfloat16, got torch.float64"):
        prepared_forward(F32, True, True, DEVICE, out_dtype=F64)
    launch = prepared_forward(F32, True, True, DEVICE, out_dtype=BF16)
    with pytest.raises(ValueError):
        launch(x, torch.empty_like(x), alpha, beta, up, down)  # out of x's dtype, not the prepared one
    for T in (16, 45):  # on a GPU: the aligned and unaligned compiled classes
        x = random_input((1, 2, T), F32, gen)
        out = torch.full(x.shape, float("nan"), dtype=BF16, device=DEVICE)
        assert launch(x, out, alpha, beta, up, down) is out
        expected = anti_alias_activation_forward(x, alpha, beta, up, down, True, out_dtype=BF16)
        assert torch.equal(out, expected), describe_mismatch(out, expected, 0)


# --- gradients -------------------------------------------------------------------------------------


@needs_triton
def test_gradient_through_a_half_output_comes_back_in_x_dtype():
    """grad_y arrives in the output's dtype; the backward reads it as float32, so the gradients equal
    those of the float32 output for the same (rounded) grad_y, bitwise."""
    gen = torch.Generator().manual_seed(190)
    x = random_input((1, 2, 21), F32, gen).requires_grad_()
    alpha, beta = (p.requires_grad_() for p in random_parameters(2, True, True, gen))
    grad_y = torch.randn(1, 2, 21, generator=gen).to(DEVICE, BF16)
    y = anti_alias_activation(x, alpha, beta, backend="triton", out_dtype=BF16)
    assert y.dtype == BF16
    y.backward(grad_y)
    assert x.grad.dtype == F32 and alpha.grad.dtype == F32
    x2, alpha2, beta2 = (t.detach().clone().requires_grad_() for t in (x, alpha, beta))
    anti_alias_activation(x2, alpha2, beta2, backend="triton").backward(grad_y.to(F32))
    for got, expected in ((x.grad, x2.grad), (alpha.grad, alpha2.grad), (beta.grad, beta2.grad)):
        assert torch.equal(got, expected), describe_mismatch(got, expected, 0)


def test_torch_backend_gradient_through_another_output_dtype():
    gen = torch.Generator().manual_seed(191)
    x = random_input((1, 2, 15), F32, gen, device="cpu").requires_grad_()
    alpha, beta = (p.requires_grad_() for p in random_parameters(2, True, True, gen, device="cpu"))
    y = anti_alias_activation(x, alpha, beta, backend="torch", out_dtype=F64)
    grad_y = torch.randn(1, 2, 15, generator=gen, dtype=F64)
    y.backward(grad_y)
    x2 = x.detach().clone().requires_grad_()
    anti_alias_activation(x2, alpha.detach(), beta.detach(), backend="torch").backward(grad_y.to(F32))
    assert x.grad.dtype == F32 and torch.equal(x.grad, x2.grad)


# --- GPU: the compiled Triton store ---------------------------------------------------------------


@pytest.mark.gpu
@needs_triton
@pytest.mark.parametrize("out_dtype", HALF, ids=dtype_id)
def test_gpu_compiled_triton_store_rounds_once_to_nearest(out_dtype):
    """At a model shape (768 x 1024: one full tile per row) and an odd length, through the public op
    and the lean path's prepared launcher (aligned and unaligned classes): the definition's 1 ulp,
    and bitwise the float32 output rounded to nearest even as torch rounds it."""
    from bigvgan_fast.kernels import prepared_forward

    gen = torch.Generator().manual_seed(200 + HALF.index(out_dtype))
    for C, T in ((768, 1024), (5, 4099)):
        alpha, beta = random_parameters(C, True, True, gen)
        up, down = asymmetric_filters(gen)
        x = random_input((1, C, T), F32, gen)
        out = triton_poisoned(x, alpha, beta, up, down, True, out_dtype)
        assert_close_to_definition(out, definition(x, alpha, beta, True, up, down))
        y32 = anti_alias_activation(x, alpha, beta, backend="triton", upsample_filter=up, downsample_filter=down)
        assert torch.equal(out, y32.to(out_dtype)), describe_mismatch(out, y32.to(out_dtype), 0)
        launch = prepared_forward(F32, True, True, DEVICE, out_dtype=out_dtype)
        for offset in (0, 1):
            base = torch.full((C * T + offset,), float("nan"), dtype=out_dtype, device=DEVICE)
            prepared_out = base[offset:].view(1, C, T)
            launch(x, prepared_out, alpha, beta, up, down)
            assert torch.equal(prepared_out, out), f"offset {offset}: " + describe_mismatch(prepared_out, out, 0)
