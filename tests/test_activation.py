"""The reference path and the public op against the float64 definition (docs/definition.md) and the goldens;
the backend policy of bigvgan_fast.anti_alias.policy."""

import json
import os
import warnings

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import bigvgan_fast
from bigvgan_fast import BackendUnavailableError, anti_alias_activation, anti_alias_activation_ref
from bigvgan_fast.anti_alias import policy
from bigvgan_fast.anti_alias.reference import default_filter
from definition import definition, describe_mismatch, spec_filter

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "activation.safetensors")


def golden_cases():
    with safe_open(GOLDEN, "pt") as f:
        return json.loads(f.metadata()["cases"])


def random_params(C, snakebeta, logscale, gen):
    if logscale:
        alpha = 0.3 * torch.randn(C, generator=gen, dtype=torch.float64)
        beta = 0.3 * torch.randn(C, generator=gen, dtype=torch.float64) if snakebeta else None
    else:
        alpha = 0.5 + torch.rand(C, generator=gen, dtype=torch.float64)
        beta = 0.5 + torch.rand(C, generator=gen, dtype=torch.float64) if snakebeta else None
    return alpha, beta


def test_filter_equals_golden_taps():
    taps = load_file(GOLDEN)["filter"]
    assert torch.equal(spec_filter(), taps)
    assert torch.equal(default_filter(dtype=torch.float64).view(-1), taps)


@pytest.mark.parametrize("case", golden_cases(), ids=lambda c: f"{c['name']}-{c['activation']}-T{c['shape'][-1]}")
def test_reference_matches_golden_and_definition(case):
    g = load_file(GOLDEN)
    n = case["name"]
    x, alpha, beta, y = g[n + ".x"], g[n + ".alpha"], g.get(n + ".beta"), g[n + ".y"]
    assert (beta is None) == (case["activation"] == "snake")
    # The test's definition is docs/definition.md's text; it must reproduce the official golden exactly.
    torch.testing.assert_close(definition(x, alpha, beta, case["alpha_logscale"]), y, rtol=0, atol=1e-12)
    out = anti_alias_activation(x, alpha, beta, alpha_logscale=case["alpha_logscale"], backend="torch")
    assert out.shape == y.shape and out.dtype == torch.float64
    torch.testing.assert_close(out, y, rtol=0, atol=1e-12)
    out32 = anti_alias_activation(x.float(), alpha.float(), None if beta is None else beta.float(), alpha_logscale=case["alpha_logscale"])
    err = (out32.double() - y).abs()
    assert err.max() <= 2e-5, describe_mismatch(out32, y, 2e-5)


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 31, 100, 257])
@pytest.mark.parametrize("snakebeta", [False, True])
@pytest.mark.parametrize("logscale", [True, False])
def test_reference_float32_fresh_inputs(T, snakebeta, logscale):
    gen = torch.Generator().manual_seed(1000 * T + 10 * snakebeta + logscale)
    B, C = 2, 3
    x = torch.clamp(3 * torch.randn(B, C, T, generator=gen, dtype=torch.float64), -10, 10).float()
    alpha, beta = random_params(C, snakebeta, logscale, gen)
    alpha, beta = alpha.float(), None if beta is None else beta.float()
    expected = definition(x, alpha, beta, logscale)
    out = anti_alias_activation(x, alpha, beta, alpha_logscale=logscale, backend="torch")
    assert out.dtype == torch.float32 and out.shape == (B, C, T)
    err = (out.double() - expected).abs()
    assert err.max() <= 2e-5, describe_mismatch(out, expected, 2e-5)
    rel_l2 = (out.double() - expected).norm() / expected.norm()
    assert rel_l2 <= 1e-6, f"relative L2 {rel_l2:.3g}"
    # Borders explicitly: first and last sample of every row.
    assert err[..., 0].max() <= 2e-5 and err[..., -1].max() <= 2e-5


def test_reference_upcast_half_within_one_ulp():
    from definition import ulp_distance

    gen = torch.Generator().manual_seed(7)
    for dtype in (torch.float16, torch.bfloat16):
        x = torch.clamp(3 * torch.randn(2, 4, 50, generator=gen), -10, 10).to(dtype)
        alpha, beta = (p.float() for p in random_params(4, True, True, gen))
        out = anti_alias_activation_ref(x, alpha, beta, upcast=True)
        assert out.dtype == dtype
        ulps = ulp_distance(out, definition(x, alpha, beta))
        assert ulps.max() <= 1, f"{dtype}: max {ulps.max():.2f} ulp"


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: anti_alias_activation(torch.randn(3, 5), torch.zeros(3)), ValueError, "batch, channels, time"),
        (lambda: anti_alias_activation(torch.ones(1, 3, 5, dtype=torch.int32), torch.zeros(3)), TypeError, "floating"),
        (lambda: anti_alias_activation(torch.randn(1, 3, 0), torch.zeros(3)), ValueError, "T >= 1"),
        (lambda: anti_alias_activation(torch.randn(1, 3, 5), torch.zeros(4)), ValueError, r"alpha must have shape \(3,\)"),
        (lambda: anti_alias_activation(torch.randn(1, 3, 5), torch.zeros(3), torch.zeros(2)), ValueError, "beta"),
        (lambda: anti_alias_activation(torch.randn(1, 3, 5), torch.zeros(3), upsample_filter=torch.ones(10)), ValueError, "12 taps"),
        (lambda: anti_alias_activation(torch.randn(1, 3, 5), torch.zeros(3), backend="fast"), ValueError, "unknown backend"),
        # issue 9 item 8: filters on another device were read as uninitialised memory
        (lambda: anti_alias_activation(torch.randn(1, 3, 5), torch.zeros(3), upsample_filter=torch.ones(12, device="meta")),
         ValueError, "upsample_filter is on meta but x is on cpu"),
        (lambda: anti_alias_activation(torch.randn(1, 3, 5), torch.zeros(3), downsample_filter=torch.ones(12, device="meta")),
         ValueError, "downsample_filter is on meta"),
        (lambda: anti_alias_activation(torch.randn(1, 3, 5), torch.zeros(3), upsample_filter=torch.ones(12, dtype=torch.int64)),
         TypeError, "upsample_filter must be a floating-point tensor"),
        (lambda: anti_alias_activation(torch.randn(1, 3, 5), torch.zeros(3, device="meta")), ValueError, "alpha is on meta"),
    ],
)
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("shape", [(1, 0, 7), (0, 3, 7)], ids=["no_channels", "no_batch"])
def test_empty_input_gives_an_empty_result_on_the_torch_backend(shape):
    out = anti_alias_activation(torch.randn(*shape), torch.zeros(shape[1]), torch.zeros(shape[1]), backend="torch")
    assert out.shape == shape and out.dtype == torch.float32


TRITON_PROBLEM = policy.problem("triton", "cpu", torch.float32, False)
needs_triton = pytest.mark.skipif(TRITON_PROBLEM is not None, reason=f"triton cannot run here: {TRITON_PROBLEM}")


@needs_triton
def test_filters_that_require_grad_are_refused_by_fused_backends_and_served_by_auto():
    """Issue 9 item 5: the Triton backend left a filter's .grad at None, silently."""
    gen = torch.Generator().manual_seed(21)
    x = torch.randn(1, 2, 9, generator=gen)
    alpha = torch.zeros(2)
    taps = default_filter("cpu").view(-1).clone().requires_grad_()
    with pytest.raises(BackendUnavailableError, match="no gradient to upsample_filter / downsample_filter"):
        anti_alias_activation(x, alpha, backend="triton", upsample_filter=taps)
    anti_alias_activation(x, alpha, backend="auto", upsample_filter=taps).sum().backward()  # CPU: torch
    assert taps.grad is not None and taps.grad.abs().sum() > 0
    with torch.no_grad():  # no gradient wanted: the fused backend serves
        anti_alias_activation(x, alpha, backend="triton", upsample_filter=taps)


@needs_triton
def test_double_backward_through_a_fused_op_names_the_backend_that_has_it():
    """Issue 9 item 6: the error was torch's "no autograd formula was registered"."""
    gen = torch.Generator().manual_seed(22)
    x = torch.randn(1, 2, 9, generator=gen, requires_grad=True)
    alpha = (0.3 * torch.randn(2, generator=gen)).requires_grad_()
    y = anti_alias_activation(x, alpha, backend="triton")
    (grad_x,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    with pytest.raises(bigvgan_fast.DoubleBackwardError, match="backend='torch', which supports it"):
        grad_x.sum().backward()
    # The torch backend does it.
    y = anti_alias_activation(x, alpha, backend="torch")
    (grad_x,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    grad_x.sum().backward()
    assert alpha.grad is not None


def test_explicit_triton_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    policy.clear_cache()
    try:
        with pytest.raises(BackendUnavailableError, match="CUDA tensor"):
            anti_alias_activation(torch.randn(1, 2, 8), torch.zeros(2), backend="triton")
    finally:
        policy.clear_cache()


def test_explicit_cuda_without_extension_raises():
    if policy.problem("cuda", "cuda", torch.float32, False) is None:
        pytest.skip("the CUDA extension is built and a GPU is present here")
    with pytest.raises(BackendUnavailableError, match="cuda"):
        anti_alias_activation(torch.randn(1, 2, 8), torch.zeros(2), backend="cuda")


def test_float64_is_refused_by_fused_backends_with_a_reason():
    for name in ("triton", "cuda"):
        assert "float64" in policy.problem(name, "cuda", torch.float64, False)


def test_auto_on_cpu_is_the_reference_path_silently():
    x = torch.randn(1, 2, 9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = anti_alias_activation(x, torch.zeros(2), torch.zeros(2))
    torch.testing.assert_close(out, anti_alias_activation_ref(x, torch.zeros(2), torch.zeros(2)), rtol=0, atol=0)


def test_env_override_makes_auto_explicit(monkeypatch):
    monkeypatch.setenv(policy.ENV_VAR, "cuda")  # the CUDA extension never runs on CPU tensors
    with pytest.raises(BackendUnavailableError, match="'cuda'"):
        anti_alias_activation(torch.randn(1, 2, 8), torch.zeros(2))
    monkeypatch.setenv(policy.ENV_VAR, "nonsense")
    with pytest.raises(ValueError, match="BIGVGAN_FAST_BACKEND"):
        anti_alias_activation(torch.randn(1, 2, 8), torch.zeros(2))


def test_backends_report_names_auto_and_reasons():
    rows = bigvgan_fast.backends("cpu")
    assert [r["backend"] for r in rows] == ["torch", "triton", "cuda"]
    assert sum(r["auto"] for r in rows) == 1
    for r in rows:
        assert r["available"] or r["reason"], r


def test_reference_is_differentiable_gradcheck():
    gen = torch.Generator().manual_seed(3)
    for T in (1, 2, 5, 13):
        x = torch.randn(1, 2, T, generator=gen, dtype=torch.float64, requires_grad=True)
        alpha = (0.3 * torch.randn(2, generator=gen, dtype=torch.float64)).requires_grad_()
        beta = (0.3 * torch.randn(2, generator=gen, dtype=torch.float64)).requires_grad_()
        assert torch.autograd.gradcheck(lambda a, b, c: anti_alias_activation(a, b, c, backend="torch"), (x, alpha, beta))
