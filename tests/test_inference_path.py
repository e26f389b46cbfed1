"""The lean inference path of Activation1d and the fixed-shape, CUDA-graph-ready chunked synthesis.

CPU: the lean path against the autograd path (bitwise), its refresh rules, pickling; synthesize's
fixed windows (one shape for a long input, exact against the whole-sequence output) and the API's
errors. GPU (marked): graph replay equals eager bitwise, graphed synthesis equals the whole output.
"""

import copy
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from bigvgan_fast import BigVGAN, load_config
from bigvgan_fast.anti_alias import policy
from bigvgan_fast.modules import Activation1d, SnakeBeta, backends_ran
from bigvgan_fast.streaming import chunk_windows, synthesize
from conftest import SMALL_OVERRIDES, small_config
from definition import assert_close_to_definition, definition

TRITON = policy.problem("triton", "cpu" if not torch.cuda.is_available() else "cuda", torch.float32, False)


def activation(channels=3, backend="auto", seed=0):
    module = Activation1d(SnakeBeta(channels, alpha_logscale=True), backend=backend)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.act.alpha.copy_(0.3 * torch.randn(channels, generator=gen))
        module.act.beta.copy_(0.3 * torch.randn(channels, generator=gen))
    return module


def random_x(shape, seed=1):
    return torch.clamp(3 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), -10, 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(
    "backend", ["torch", "auto", pytest.param("triton", marks=pytest.mark.skipif(TRITON is not None, reason=str(TRITON)))]
)
def test_lean_path_equals_the_autograd_path(backend, dtype):
    # A half-precision x with float32 parameters too (the mixed mode's AMP layers): the two paths
    # must not promote differently.
    module = activation(backend=backend)
    x = random_x((2, 3, 41)).to(dtype)
    with torch.enable_grad():
        expected = module(x)  # the op with its autograd formula (parameters require grad)
    assert expected.requires_grad
    with torch.inference_mode():
        lean = module(x)
    with torch.no_grad():
        lean_no_grad = module(x)
    assert lean.dtype == expected.dtype
    assert torch.equal(lean, expected.detach()) and torch.equal(lean_no_grad, lean)
    if dtype == torch.float32 or backend == "triton":  # the torch backend computes in x's dtype
        assert_close_to_definition(lean, definition(x, module.act.alpha, module.act.beta))


def test_lean_path_reads_parameters_at_every_call():
    module = activation()
    x = random_x((1, 3, 20))
    with torch.inference_mode():
        before = module(x)
    new_alpha = nn.Parameter(module.act.alpha.detach() + 0.5)
    module.act.alpha = new_alpha  # reassigned
    with torch.inference_mode():
        after_reassign = module(x)
    with torch.no_grad():
        module.act.beta.add_(0.25)  # changed in place
    with torch.inference_mode():
        after_in_place = module(x)
    assert not torch.equal(before, after_reassign) and not torch.equal(after_reassign, after_in_place)
    assert_close_to_definition(after_in_place, definition(x, module.act.alpha, module.act.beta))


def test_lean_path_chooses_again_after_cast_and_backend_change(monkeypatch):
    module = activation()
    x = random_x((1, 3, 16))
    with torch.inference_mode():
        module(x)
    assert set(module._inference_runs) == {(x.device, torch.float32, None)}  # (device, x dtype, out_dtype asked)
    module.double()
    assert module._inference_runs == {}  # _apply forgets the choices
    with torch.inference_mode():
        y = module(x.double())
    assert y.dtype == torch.float64
    module.backend = "torch"
    assert module._inference_runs == {}
    with pytest.raises(ValueError, match="unknown backend"):
        module.backend = "fast"


def test_module_pickles_and_copies_after_inference_calls():
    module = activation()
    x = random_x((1, 3, 16))
    with torch.inference_mode():
        expected = module(x)
    for clone in (pickle.loads(pickle.dumps(module)), copy.deepcopy(module)):
        assert clone._inference_runs == {}
        with torch.inference_mode():
            assert torch.equal(clone(x), expected)


def test_module_pickled_with_a_plain_dict_of_calls_still_runs():
    # What an Activation1d pickled before InferenceRuns holds in its state: a plain dict.
    module = activation()
    x = random_x((1, 3, 16))
    with torch.inference_mode():
        expected = module(x)
    state = dict(module.__getstate__())
    state["_inference_runs"] = {}
    old = Activation1d.__new__(Activation1d)
    old.__setstate__(state)
    with torch.inference_mode():
        assert torch.equal(old(x), expected)
    assert backends_ran(old)


def test_explicit_unavailable_backend_raises_on_the_lean_path_too():
    module = activation(backend="cuda")
    if policy.problem("cuda", "cpu", torch.float32, False) is None:
        pytest.skip("the CUDA extension runs here")
    with torch.inference_mode(), pytest.raises(policy.BackendUnavailableError, match="cuda"):
        module(random_x((1, 3, 8)))


@pytest.mark.skipif(TRITON is not None, reason=str(TRITON))
def test_backends_ran_names_each_dtype_pair_of_the_mixed_mode():
    # Two stages of one AMPBlock1 with dilations (1, 2): 4 AMP layers, each a first activation
    # reading the float32 residual and writing bfloat16 and a second in bfloat16; activation_post
    # stays float32.
    torch.manual_seed(0)
    config = small_config(resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 2]])
    model = BigVGAN(config, use_weight_norm=False, backend="triton").eval().to_half_precision(torch.bfloat16, "mixed")
    assert backends_ran(model) == []
    with torch.inference_mode():
        model(torch.randn(1, SMALL_OVERRIDES["num_mels"], 6, generator=torch.Generator().manual_seed(5)))
    assert backends_ran(model) == [
        {"backend": "triton", "x_dtype": "float32", "out_dtype": "bfloat16", "activations": 4},
        {"backend": "triton", "x_dtype": "bfloat16", "out_dtype": "bfloat16", "activations": 4},
        {"backend": "triton", "x_dtype": "float32", "out_dtype": "float32", "activations": 1},
    ]
    model.set_backend("torch")  # chooses again: nothing ran since
    assert backends_ran(model) == []


# --- chunked synthesis on fixed windows ----------------------------------------------------------------


@pytest.mark.parametrize("total,chunk,context", [(1, 4, 3), (5, 4, 3), (10, 4, 3), (11, 4, 3), (100, 7, 39), (2000, 1024, 39)])
def test_chunk_windows_have_one_shape_and_cover_their_context(total, chunk, context):
    rows = chunk_windows(total, chunk, context)
    window = min(total, chunk + 2 * context)
    kept = []
    for start, stop, keep_start, keep_stop in rows:
        assert stop - start == window and 0 <= start and stop <= total
        # each kept frame has `context` real frames on each side, or the true end, in its window
        assert start <= max(0, keep_start - context) and stop >= min(total, keep_stop + context)
        kept.extend(range(keep_start, keep_stop))
    assert kept == list(range(total))


class CountingModel(nn.Module):
    """Wraps a generator and records the frame count of each call."""

    def __init__(self, model):
        super().__init__()
        self.inner = model
        self.config = model.config
        self.conv_pre = model.conv_pre
        self.shapes = []

    def receptive_field_reach(self):
        return self.inner.receptive_field_reach()

    def forward(self, mel):
        self.shapes.append(mel.shape[-1])
        return self.inner(mel)


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    model = BigVGAN(small_config(), use_weight_norm=False).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".alpha", ".beta")):
                p.copy_(0.3 * torch.randn(p.shape))
    return model


def test_long_input_runs_on_one_window_shape_and_is_exact(small_model):
    field = small_model.receptive_field_frames
    mel = torch.randn(1, SMALL_OVERRIDES["num_mels"], 3 * field + 17, generator=torch.Generator().manual_seed(3))
    counting = CountingModel(small_model)
    audio = synthesize(counting, mel, chunk_frames=field // 2)
    assert len(set(counting.shapes)) == 1 and counting.shapes[0] == field // 2 + 2 * field
    with torch.inference_mode():
        whole = small_model(mel)
    assert (audio - whole).abs().max() <= 1e-5


def test_synthesize_takes_numpy_integers_and_converts_other_float_dtypes(small_model):
    mel = torch.randn(1, SMALL_OVERRIDES["num_mels"], 30, generator=torch.Generator().manual_seed(4))
    audio = synthesize(small_model, mel.double(), chunk_frames=np.int64(7))
    assert audio.dtype == torch.float32
    with torch.inference_mode():
        assert (audio - small_model(mel)).abs().max() <= 1e-5
        assert torch.equal(small_model(mel.double()), small_model(mel))  # the model converts too


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_graph_on_a_cpu_input_is_refused(small_model):
    mel = torch.randn(1, SMALL_OVERRIDES["num_mels"], 8)
    with pytest.raises(ValueError, match="cuda_graph=True needs the mel"):
        synthesize(small_model, mel, cuda_graph=True)
    with pytest.raises(TypeError, match="cuda_graph must be True, False or None"):
        synthesize(small_model, mel, cuda_graph="yes")
    assert synthesize(small_model, mel, cuda_graph=None).shape[-1] == 8 * small_model.config.upsample_factor


# --- GPU -------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_gpu_graph_replay_equals_eager_and_graphed_synthesis_is_exact(dtype):
    from bigvgan_fast.graphs import GraphRunner

    torch.manual_seed(0)
    model = BigVGAN(load_config("bigvgan_v2_22khz_80band_256x"), use_weight_norm=False).eval().to("cuda", dtype)
    mel = torch.randn(1, 80, 200, device="cuda", dtype=dtype)
    runner = GraphRunner(model)
    with torch.inference_mode():
        eager = model(mel)
    graphed = runner(mel)
    assert torch.equal(graphed, eager)  # same kernels on the same shapes: bitwise
    again = runner(mel)
    assert torch.equal(again, eager) and len(runner.captures) == 1
    # A long input on one window shape, against the whole-sequence output.
    long_mel = torch.randn(1, 80, 700, device="cuda", dtype=dtype)
    with torch.inference_mode():
        whole = model(long_mel).float()
    audio = synthesize(model, long_mel, chunk_frames=128, cuda_graph=True).float()
    tolerance = 1e-4 if dtype == torch.float32 else 3e-2
    assert (audio - whole).abs().max() <= tolerance
    # Parameters moved to new memory (a round trip through another dtype) are noticed: the stale
    # graph is dropped and the next call recaptures, and still equals eager.
    other = torch.float16 if dtype == torch.float32 else torch.float32
    model.to(other).to(dtype)
    with torch.inference_mode():
        eager = model(mel)
    assert torch.equal(runner(mel), eager) and len(runner.captures) == 2


def test_a_mel_in_another_dtype_meets_a_cast_weight_normed_model():
    """The model converts the mel to its first layer's dtype, read from a parameter: under weight norm
    the attribute ``weight`` keeps its old dtype until the layer next runs."""
    model = BigVGAN(small_config(), use_weight_norm=True).eval()
    mel = torch.randn(1, SMALL_OVERRIDES["num_mels"], 6, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        model(mel)
        model.double()
        assert model(mel).dtype == torch.float64
