"""The Triton backend through the public API: dispatch, the torch.library op (fake, autograd,
opcheck), torch.compile without graph breaks, and the generator on backend="triton".

On a CPU machine the kernel runs under TRITON_INTERPRET=1 (set by conftest.py); shapes stay small.
"""

import os

import pytest
import torch

import bigvgan_fast
from bigvgan_fast import BigVGAN, anti_alias_activation
from bigvgan_fast.anti_alias.policy import problem
from conftest import small_config
from definition import assert_close_to_definition, definition, describe_mismatch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TINY = os.path.join(os.path.dirname(__file__), "golden", "tiny_generator")

reason = problem("triton", DEVICE, torch.float32, False)
pytestmark = pytest.mark.skipif(reason is not None, reason=f"the Triton backend cannot run here: {reason}")


def params(C, gen, beta=True):
    alpha = (0.3 * torch.randn(C, generator=gen)).to(DEVICE)
    return alpha, (0.3 * torch.randn(C, generator=gen)).to(DEVICE) if beta else None


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "offset"])
def test_public_op_on_triton_matches_definition(layout):
    gen = torch.Generator().manual_seed(11)
    B, C, T = 2, 3, 37
    if layout == "transposed":
        x = torch.clamp(3 * torch.randn(B, T, C, generator=gen), -10, 10).to(DEVICE).transpose(1, 2)
    elif layout == "offset":
        x = torch.clamp(3 * torch.randn(B, C, T + 5, generator=gen), -10, 10).to(DEVICE)[..., 3 : 3 + T]
    else:
        x = torch.clamp(3 * torch.randn(B, C, T, generator=gen), -10, 10).to(DEVICE)
    alpha, beta = params(C, gen)
    out = anti_alias_activation(x, alpha, beta, backend="triton")
    expected = definition(x, alpha, beta)
    assert out.shape == (B, C, T) and out.dtype == torch.float32
    err = (out.double().cpu() - expected).abs()
    assert err.max() <= 2e-5, describe_mismatch(out, expected, 2e-5)


def test_opcheck_forward_and_backward_ops():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 9, generator=gen).to(DEVICE)
    alpha, beta = params(2, gen)
    f = bigvgan_fast.anti_alias.reference.default_filter(DEVICE).view(-1)
    for b in (beta, None):
        torch.library.opcheck(bigvgan_fast.anti_alias.library.anti_alias_activation_triton, (x, alpha, b, f, f, True), test_utils=("test_schema", "test_faketensor"))
        torch.library.opcheck(
            bigvgan_fast.anti_alias.library.anti_alias_activation_triton_backward, (torch.randn_like(x), x, alpha, b, f, f, False, True, True), test_utils=("test_schema", "test_faketensor")
        )
    # out_dtype: the fake gives the output's dtype, the schema takes ScalarType? (None: x's).
    for out_dtype in (torch.bfloat16, torch.float16, None):
        torch.library.opcheck(bigvgan_fast.anti_alias.library.anti_alias_activation_triton, (x, alpha, beta, f, f, True, out_dtype), test_utils=("test_schema", "test_faketensor"))
    assert "ScalarType? out_dtype=None" in str(torch.ops.bigvgan_fast.anti_alias_activation_triton.default._schema)
    # A parameter gradient nobody needs is not computed (empty).
    grad_x, grad_alpha, grad_beta = bigvgan_fast.anti_alias.library.anti_alias_activation_triton_backward(torch.randn_like(x), x, alpha, beta, f, f, True, False, True)
    assert grad_x.shape == x.shape and grad_alpha.numel() == 0 and grad_beta.shape == beta.shape


def one_block_config():
    return small_config(resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], num_mels=80)


def test_compile_fullgraph_has_no_graph_break():
    gen = torch.Generator().manual_seed(6)
    model = BigVGAN(one_block_config(), backend="triton").remove_weight_norm().eval().to(DEVICE)
    mel = torch.randn(1, 80, 2, generator=gen).to(DEVICE)
    explanation = torch._dynamo.explain(model)(mel)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(mel), model(mel), rtol=0, atol=0)


def test_compile_fullgraph_of_a_mixed_precision_amp_block():
    """The AMP block asking each activation for its convolution's dtype traces as one graph, the op
    (with out_dtype) opaque in it, and computes what eager does."""
    from bigvgan_fast.modules import AMPBlock1

    gen = torch.Generator().manual_seed(14)
    block = AMPBlock1(3, 3, (1, 3), backend="triton", use_weight_norm=False).to(DEVICE)
    with torch.no_grad():
        for name, p in block.named_parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    block.convs1.to(torch.bfloat16)
    block.convs2.to(torch.bfloat16)
    x = torch.randn(1, 3, 24, generator=gen).to(DEVICE)
    explanation = torch._dynamo.explain(block)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    ops = [str(n.target) for g in explanation.graphs for n in g.graph.nodes if n.op == "call_function"]
    assert ops.count("bigvgan_fast.anti_alias_activation_triton.default") == 4, ops
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), block(x), rtol=0, atol=0)


def test_generator_triton_matches_torch():
    gen = torch.Generator().manual_seed(8)
    model = BigVGAN.from_pretrained(TINY, device=DEVICE)
    mel = torch.randn(1, 80, 3, generator=gen).to(DEVICE)
    with torch.inference_mode():
        reference = model.set_backend("torch")(mel)
        fused = model.set_backend("triton")(mel)
    rel = (fused - reference).norm() / reference.norm()
    assert rel <= 1e-5, f"relative L2 {rel:.3g}"


def test_training_step_triton_matches_torch():
    """Forward, loss, backward, optimizer step of a small generator: fused vs reference."""
    h = one_block_config()
    mel = torch.randn(2, 80, 3, generator=torch.Generator().manual_seed(9)).to(DEVICE)
    results = {}
    for backend in ("torch", "triton"):
        torch.manual_seed(0)
        model = BigVGAN(h, backend=backend).to(DEVICE)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss = model(mel).pow(2).mean()
        loss.backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters()}
        opt.step()
        results[backend] = (loss.detach(), grads, {k: p.detach().clone() for k, p in model.named_parameters()})
    (l_ref, g_ref, p_ref), (l_fused, g_fused, p_fused) = results["torch"], results["triton"]
    torch.testing.assert_close(l_fused, l_ref, rtol=1e-5, atol=1e-7)
    for k in g_ref:
        rel = (g_fused[k] - g_ref[k]).norm() / g_ref[k].norm().clamp_min(1e-12)
        assert rel <= 1e-4, f"{k}: gradient relative L2 {rel:.3g}"
        torch.testing.assert_close(p_fused[k], p_ref[k], rtol=1e-5, atol=1e-6)


def test_compiled_training_step_uses_the_registered_backward():
    """torch.compile(fullgraph=True) through forward and backward: the backward op's fake
    implementation and register_autograd are what make this trace."""
    mel = torch.randn(1, 80, 2, generator=torch.Generator().manual_seed(10)).to(DEVICE)
    grads = []
    for compile_it in (False, True):
        torch.manual_seed(0)
        model = BigVGAN(one_block_config(), backend="triton").to(DEVICE)
        run = torch.compile(model, fullgraph=True, backend="aot_eager") if compile_it else model
        run(mel).pow(2).mean().backward()
        grads.append({k: p.grad for k, p in model.named_parameters()})
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-5, atol=1e-7, msg=k)


def test_frozen_parameters_get_no_gradient_and_x_gets_the_right_one():
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(1, 2, 21, generator=gen).to(DEVICE).requires_grad_()
    alpha, beta = params(2, gen)
    grad = torch.randn(1, 2, 21, generator=gen).to(DEVICE)
    anti_alias_activation(x, alpha, beta, backend="triton").backward(grad)
    x64 = x.detach().double().requires_grad_()
    anti_alias_activation(x64, alpha.double(), beta.double(), backend="torch").backward(grad.double())
    assert alpha.grad is None and beta.grad is None
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=0, atol=2e-5)


def test_auto_in_grad_mode_on_cpu_is_reference():
    x = torch.randn(1, 2, 5, requires_grad=True)
    alpha = torch.zeros(2, requires_grad=True)
    y = anti_alias_activation(x, alpha)
    assert y.grad_fn is not None and "Convolution" in type(y.grad_fn).__name__


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_cuda_graph_and_inductor_compile_of_the_generator(backend):
    reason = problem(backend, "cuda", torch.float32, False)
    if reason is not None:
        pytest.skip(reason)
    model = BigVGAN(one_block_config(), backend=backend).remove_weight_norm().eval().cuda()
    mel = torch.randn(1, 80, 16, device="cuda")
    with torch.inference_mode():
        eager = model(mel)
        reference = model.set_backend("torch")(mel)
        model.set_backend(backend)
        torch.testing.assert_close(eager, reference, rtol=1e-4, atol=2e-5)
        static_in = mel.clone()
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            model(static_in)  # warm-up on a side stream, as graph capture requires
        torch.cuda.current_stream().wait_stream(stream)
        with torch.cuda.graph(graph):
            static_out = model(static_in)
        static_in.copy_(torch.randn_like(mel))
        graph.replay()
        torch.testing.assert_close(static_out, model(static_in), rtol=0, atol=0)
        compiled = torch.compile(model, fullgraph=True)
        torch.testing.assert_close(compiled(mel), eager, rtol=1e-4, atol=2e-5)


@pytest.mark.gpu
def test_gpu_generator_auto_backend_matches_torch_on_the_golden():
    model = BigVGAN.from_pretrained(TINY, device="cuda")
    from safetensors.torch import load_file

    io = load_file(os.path.join(TINY, "io.safetensors"))
    with torch.inference_mode():
        audio = model(io["mel"].float().cuda())
    rel = (audio.double().cpu() - io["audio"]).norm() / io["audio"].norm()
    assert rel <= 1e-5, f"relative L2 {rel:.3g}"


def _look_alike_activation(C):
    """An activation with the official attribute layout and plain buffers (as NVIDIA's modules)."""
    from torch import nn

    from bigvgan_fast.anti_alias.reference import kaiser_sinc_filter1d

    module = nn.Module()
    module.act = bigvgan_fast.SnakeBeta(C, alpha_logscale=True)
    module.upsample, module.downsample = nn.Module(), nn.Module()
    module.upsample.register_buffer("filter", kaiser_sinc_filter1d(0.25, 0.3, 12))
    module.downsample.lowpass = nn.Module()
    module.downsample.lowpass.register_buffer("filter", kaiser_sinc_filter1d(0.25, 0.3, 12))
    module.forward = lambda x: pytest.fail("accelerate did not replace forward")
    return module


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("kind", ["ours", "accelerated look-alike"])
def test_half_precision_model_fuses_with_float32_taps(dtype, kind):
    """A model cast to bf16/fp16 rounds its filter buffers; the fused op must still meet the definition's
    1-ulp standard (rounded bf16 taps sum to 1.0011 and fail it on ~9% of samples)."""
    C, T = 3, 40
    gen = torch.Generator().manual_seed(12)
    if kind == "ours":
        module = bigvgan_fast.Activation1d(bigvgan_fast.SnakeBeta(C, alpha_logscale=True), backend="triton")
    else:
        module = _look_alike_activation(C)
        assert bigvgan_fast.accelerate(module, backend="triton") == 1
    with torch.no_grad():
        module.act.alpha.copy_(0.3 * torch.randn(C, generator=gen))
        module.act.beta.copy_(0.3 * torch.randn(C, generator=gen))
    module = module.to(device=DEVICE, dtype=dtype)
    if kind == "ours":
        assert module.upsample.filter.dtype == module.downsample.lowpass.filter.dtype == torch.float32
    else:
        assert module.upsample.filter.dtype == dtype  # the look-alike's buffers are rounded
    x = torch.clamp(3 * torch.randn(2, C, T, generator=gen), -10, 10).to(DEVICE, dtype)
    with torch.no_grad():
        out = module.forward(x)
    assert out.dtype == dtype
    assert_close_to_definition(out, definition(x, module.act.alpha, module.act.beta))
