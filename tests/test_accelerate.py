"""accelerate(): NVIDIA's bigvgan.BigVGAN, a look-alike module tree and bigvgan_fast's own model,
before and after, against the official torch path.

On a CPU the fused (Triton) backend runs through Triton's interpreter, which took 27 s for the
109 activations of the tiny golden model, so the fused comparisons use a 9-activation config; the
tiny model is used where the torch backend serves (counts, state dict, idempotence). Tests of the
official package skip where it is not installed (``pip install --no-deps bigvgan``; it imports
librosa, scipy, tqdm and matplotlib).
"""

import contextlib
import copy
import io
import os
import sys
import types
import warnings

import torch

import pytest
import torch.nn.functional as F
from torch import nn

from bigvgan_fast import BigVGAN, load_config, refresh_backends
from bigvgan_fast.accelerate import BACKEND_ATTRIBUTE, accelerate
from bigvgan_fast.anti_alias import policy
from bigvgan_fast.modules import Activation1d, SnakeBeta, backends_ran
from bigvgan_fast.checkpoint import load_generator_state_dict
from conftest import TINY, small_config, spread_snake_parameters
from definition import assert_close_to_definition, definition, spec_filter

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOLERANCE = 2e-5  # docs/definition.md, float32 I/O


def fused_config():
    """9 anti-aliased activations: two stages of one AMP block with dilations (1, 2), and the post one."""
    return small_config(resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 2]])


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the Triton kernel's launches (proof that the fused path ran, not a fallback): through
    the launcher the op calls, and through the prepared launchers of the modules' inference path."""
    import bigvgan_fast.kernels as kernels

    calls = []
    launch = kernels.anti_alias_activation_forward
    prepare = kernels.prepared_forward

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return launch(*args, **kwargs)

    def counted_prepared(*args, **kwargs):
        prepared = prepare(*args, **kwargs)

        def counted_launch(x, *rest):
            calls.append(x.shape)
            return prepared(x, *rest)

        return counted_launch

    monkeypatch.setattr(kernels, "anti_alias_activation_forward", counted)
    monkeypatch.setattr(kernels, "prepared_forward", counted_prepared)
    return calls


def max_abs(a, b):
    return (a.double() - b.double()).abs().max().item()


def state_snapshot(model):
    return {k: (v.data_ptr(), v.clone()) for k, v in model.state_dict().items()}


def assert_state_unchanged(model, snapshot):
    state = model.state_dict()
    assert list(state) == list(snapshot)
    for key, (ptr, value) in snapshot.items():
        assert state[key].data_ptr() == ptr and torch.equal(state[key], value), key


# --- NVIDIA's bigvgan package ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bigvgan():
    return pytest.importorskip(
        "bigvgan", reason="NVIDIA's bigvgan package is not installed (pip install --no-deps bigvgan)"
    )


@pytest.fixture
def cuda_kernel_importable(bigvgan):
    """Let ``use_cuda_kernel=True`` build its module tree without compiling NVIDIA's extension:
    its loader is replaced by one whose kernel fails if called. Once accelerated, no official
    kernel may run. (The shipped extension asks for sm_70, which CUDA 13 cannot build: docs/definition.md.)"""
    import bigvgan.alias_free_activation.cuda as cuda_package

    class Unbuilt:
        def forward(self, *args):
            raise AssertionError("the official CUDA kernel ran: accelerate missed an activation")

    loader = types.ModuleType(cuda_package.__name__ + ".load")
    loader.load = Unbuilt
    saved = {name: sys.modules.get(name) for name in (loader.__name__, cuda_package.__name__ + ".activation1d")}
    saved_attributes = {name: getattr(cuda_package, name, None) for name in ("load", "activation1d")}
    sys.modules[loader.__name__] = loader
    sys.modules.pop(cuda_package.__name__ + ".activation1d", None)
    cuda_package.load = loader
    yield
    for name, module in saved.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module
    for name, value in saved_attributes.items():
        if value is None:
            if hasattr(cuda_package, name):
                delattr(cuda_package, name)
        else:
            setattr(cuda_package, name, value)


def official_model(bigvgan, config, *, use_cuda_kernel=False, state_dict=None, seed=0):
    """NVIDIA's generator for ``config``, weight norm removed, eval mode."""
    from bigvgan.env import AttrDict

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # its torch.nn.utils.weight_norm
        model = bigvgan.BigVGAN(AttrDict(load_config(config).to_dict()), use_cuda_kernel=use_cuda_kernel)
    weight_norm = state_dict is not None and any(k.endswith(".weight_g") for k in state_dict)
    if weight_norm:
        model.load_state_dict(state_dict)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Removing weight norm..."
        model.remove_weight_norm()
    if state_dict is None:
        spread_snake_parameters(model, seed)
    elif not weight_norm:
        model.load_state_dict(state_dict)
    return model.eval()


def official_activations(model):
    return [m for m in model.modules() if type(m).__name__ == "Activation1d"]


@pytest.mark.parametrize("use_cuda_kernel", [False, True], ids=["torch-activations", "cuda-kernel-activations"])
def test_official_model_fused_matches_the_official_torch_path(bigvgan, cuda_kernel_importable, kernel_calls, use_cuda_kernel):
    reference = official_model(bigvgan, fused_config())
    model = official_model(bigvgan, fused_config(), use_cuda_kernel=use_cuda_kernel, state_dict=reference.state_dict())
    if use_cuda_kernel:
        assert all(type(m).__module__.endswith("cuda.activation1d") for m in official_activations(model))
    mel = torch.randn(1, 8, 13, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = reference(mel)
    assert accelerate(model, backend="triton") == 9
    with torch.inference_mode():
        audio = model(mel)
    assert audio.shape == expected.shape == (1, 1, 52)
    assert len(kernel_calls) == 9
    assert max_abs(audio, expected) <= TOLERANCE


def test_official_tiny_model_count_state_dict_and_idempotence(bigvgan):
    state_dict = load_generator_state_dict(os.path.join(TINY, "bigvgan_generator.pt"))
    model = official_model(bigvgan, TINY, state_dict=state_dict)
    mel = torch.randn(1, 80, 4, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = model(mel)
    snapshot = state_snapshot(model)
    # torch backend: the whole 109-activation tree at CPU speed; the fused kernels are compared above.
    assert accelerate(model, backend="torch") == 109 == 6 * 3 * 6 + 1
    assert_state_unchanged(model, snapshot)
    forwards = {name: m.__dict__["forward"] for name, m in model.named_modules() if "forward" in m.__dict__}
    assert len(forwards) == 109
    assert accelerate(model, backend="torch") == 109
    assert_state_unchanged(model, snapshot)
    assert {name: m.__dict__["forward"] for name, m in model.named_modules() if "forward" in m.__dict__} == forwards
    with torch.inference_mode():
        assert max_abs(model(mel), expected) <= TOLERANCE


def test_official_model_load_state_dict_after_accelerate(bigvgan):
    model = official_model(bigvgan, fused_config(), seed=0)
    accelerate(model, backend="triton")
    other = official_model(bigvgan, fused_config(), seed=1)  # other weights and Snake parameters
    model.load_state_dict(other.state_dict())
    mel = torch.randn(1, 8, 9, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        assert max_abs(model(mel), other(mel)) <= TOLERANCE


def test_official_model_pickles_and_copies_after_accelerate(bigvgan):
    model = official_model(bigvgan, fused_config())
    accelerate(model, backend="triton")
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for clone in (torch.load(buffer, weights_only=False), copy.deepcopy(model)):
        fused = [m for m in clone.modules() if "forward" in m.__dict__]
        assert len(fused) == 9
        assert all(m.forward.args[0] is m and getattr(m, BACKEND_ATTRIBUTE) == "triton" for m in fused)
        clone.activation_post.act.alpha.data.add_(1.0)  # the clone's parameters, not the original's
    mel = torch.randn(1, 8, 6, generator=torch.Generator().manual_seed(4))
    reference = official_model(bigvgan, fused_config(), state_dict=clone.state_dict())
    with torch.inference_mode():
        assert max_abs(clone(mel), reference(mel)) <= TOLERANCE


def test_module_accelerated_before_its_calls_were_kept_on_it_still_runs(bigvgan):
    # A model accelerated and pickled before InferenceRuns: its fused modules lack the attribute.
    model = official_model(bigvgan, fused_config())
    accelerate(model, backend="torch")
    mel = torch.randn(1, 8, 6, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        expected = model(mel)
    for module in model.modules():
        module.__dict__.pop("_inference_runs", None)
    model.load_state_dict(model.state_dict())  # the post-load hook, on modules without the attribute
    with torch.inference_mode():
        assert torch.equal(model(mel), expected)


# --- a look-alike tree: the official structure, written here from docs/definition.md ------------------------


class LookAlikeSnake(nn.Module):
    def __init__(self, channels, beta: bool, logscale: bool, gen):
        super().__init__()
        def init():  # log-scale parameters around 0, linear ones around 1
            return 0.3 * torch.randn(channels, generator=gen) if logscale else 0.5 + torch.rand(channels, generator=gen)

        self.alpha_logscale = logscale
        self.alpha = nn.Parameter(init())
        if beta:
            self.beta = nn.Parameter(init())

    def forward(self, x):
        alpha = self.alpha[None, :, None]
        beta = getattr(self, "beta", self.alpha)[None, :, None]
        if self.alpha_logscale:
            alpha, beta = alpha.exp(), beta.exp()
        return x + 1.0 / (beta + 1e-9) * torch.sin(alpha * x) ** 2


def lowpass_taps(taps):
    if taps == 12:
        return spec_filter().float().view(1, 1, 12)
    window = torch.hann_window(taps + 2, periodic=False)[1:-1]
    return (window / window.sum()).view(1, 1, taps)


class LookAlikeUp(nn.Module):
    def __init__(self, ratio, taps):
        super().__init__()
        self.ratio, self.kernel_size = ratio, taps
        self.register_buffer("filter", lowpass_taps(taps))

    def forward(self, x):
        k, r, c = self.kernel_size, self.ratio, x.shape[1]
        pad = k // r - 1
        left, right = pad * r + (k - r) // 2, pad * r + (k - r + 1) // 2
        x = r * F.conv_transpose1d(F.pad(x, (pad, pad), mode="replicate"), self.filter.expand(c, -1, -1), stride=r, groups=c)
        return x[..., left : x.shape[-1] - right]


class LookAlikeLowPass(nn.Module):
    def __init__(self, stride, taps):
        super().__init__()
        self.stride = stride
        self.register_buffer("filter", lowpass_taps(taps))

    def forward(self, x):
        k = self.filter.shape[-1]
        x = F.pad(x, (k // 2 - (k % 2 == 0), k // 2), mode="replicate")
        return F.conv1d(x, self.filter.expand(x.shape[1], -1, -1), stride=self.stride, groups=x.shape[1])


class LookAlikeDown(nn.Module):
    def __init__(self, ratio, taps):
        super().__init__()
        self.ratio = ratio
        self.lowpass = LookAlikeLowPass(ratio, taps)

    def forward(self, x):
        return self.lowpass(x)


class LookAlikeActivation(nn.Module):
    def __init__(self, channels, *, beta=True, logscale=True, ratio=2, taps=12, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.act = LookAlikeSnake(channels, beta, logscale, gen)
        self.upsample = LookAlikeUp(ratio, taps)
        self.downsample = LookAlikeDown(ratio, taps)

    def forward(self, x):
        return self.downsample(self.act(self.upsample(x)))


def look_alike_tree():
    """Two fusable activations (SnakeBeta log-scale, Snake linear-scale) and two that are not
    (a 10-tap filter, ratio 3), nested in containers."""
    return nn.Sequential(
        nn.Conv1d(4, 6, 3, padding=1),
        LookAlikeActivation(6, beta=True, logscale=True, seed=1),
        nn.Sequential(LookAlikeActivation(6, beta=False, logscale=False, seed=2)),
        LookAlikeActivation(6, taps=10, seed=3),
        nn.Conv1d(6, 6, 1),
        LookAlikeActivation(6, ratio=3, taps=18, seed=4),
    ).eval()


def test_look_alike_tree_fused_and_skipped(kernel_calls):
    model = look_alike_tree()
    x = 2 * torch.randn(2, 4, 37, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        expected = model(x)
    snapshot = state_snapshot(model)
    with pytest.warns(RuntimeWarning, match=r"left 2 anti-aliased activation\(s\) on their own") as record:
        assert accelerate(model, backend="triton") == 2
    message = str(record[0].message)
    assert "3: upsample.filter has 10 taps" in message and "5: upsample.ratio is 3" in message
    assert_state_unchanged(model, snapshot)
    assert "forward" in model[1].__dict__ and "forward" in model[2][0].__dict__
    assert "forward" not in model[3].__dict__ and "forward" not in model[5].__dict__
    with torch.inference_mode():
        audio = model(x)
    assert len(kernel_calls) == 2
    assert max_abs(audio, expected) <= TOLERANCE
    with pytest.warns(RuntimeWarning, match="left 2"):
        assert accelerate(model, backend="triton") == 2
    assert_state_unchanged(model, snapshot)


def test_accelerated_tree_compiles_with_fullgraph(kernel_calls):
    """The instance-level forward is traceable: torch.compile sees one op per fused activation."""
    model = look_alike_tree()
    x = torch.randn(1, 4, 20, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = model(x)
    with pytest.warns(RuntimeWarning, match="left 2"):
        accelerate(model, backend="triton")
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        assert max_abs(compiled(x), expected) <= TOLERANCE
    assert len(kernel_calls) == 2


def test_taps_loaded_after_accelerate_are_used_in_half_precision():
    """Issue 9 item 4: whether the taps were the standard ones was decided once, in accelerate();
    taps loaded later, then a cast to float16, ran the fused op with the standard taps (max error 1.49)."""
    model = nn.Sequential(LookAlikeActivation(4, seed=1)).eval()
    accelerate(model, backend="triton")
    state = model.state_dict()
    gen = torch.Generator().manual_seed(9)
    for key in state:
        if key.endswith(".filter"):
            state[key] = state[key] + 0.05 * torch.randn(state[key].shape, generator=gen)
    model.load_state_dict(state)
    model.half()
    act = model[0]
    x = (2 * torch.randn(1, 4, 40, generator=gen)).half()
    with torch.inference_mode():
        out = model(x)
    expected = definition(x, act.act.alpha, act.act.beta, True, act.upsample.filter, act.downsample.lowpass.filter)
    assert_close_to_definition(out, expected)


def test_only_unfusable_activations_raise():
    model = nn.Sequential(LookAlikeActivation(3, taps=10), LookAlikeActivation(3, ratio=3, taps=18))
    with pytest.raises(ValueError, match=r"its 2 anti-aliased activation\(s\) cannot be fused .*10 taps"):
        accelerate(model)
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_a_model_without_activations_raises():
    with pytest.raises(ValueError, match="no anti-aliased activation to fuse in Sequential"):
        accelerate(nn.Sequential(nn.Conv1d(80, 16, 7), nn.ReLU()))


def test_bad_arguments_raise_and_change_nothing():
    model = look_alike_tree()
    with pytest.raises(ValueError, match="unknown backend 'fast'; choose one of auto, torch, triton, cuda"):
        accelerate(model, backend="fast")
    assert all("forward" not in m.__dict__ for m in model.modules())
    with pytest.raises(TypeError, match="torch.nn.Module"):
        accelerate(model.state_dict())


def test_explicit_backend_that_cannot_run_raises_at_the_call():
    from bigvgan_fast import BackendUnavailableError

    model = nn.Sequential(LookAlikeActivation(3))
    accelerate(model, backend="cuda")  # the CUDA extension never takes CPU tensors
    with pytest.raises(BackendUnavailableError, match="backend 'cuda' cannot run here"):
        model(torch.randn(1, 3, 5))


def test_backend_variable_applies_to_both_kinds_of_activation_after_refresh_backends(monkeypatch, kernel_calls):
    """An accelerated look-alike and bigvgan_fast's Activation1d keep their inference choices in the
    same InferenceRuns: a change of BIGVGAN_FAST_BACKEND applies to both at refresh_backends, not
    before (the accelerated module's choices were once never refreshed but by another accelerate)."""
    own = Activation1d(SnakeBeta(6, alpha_logscale=True))
    with torch.no_grad():
        own.act.alpha.copy_(0.3 * torch.randn(6, generator=torch.Generator().manual_seed(2)))
        own.act.beta.copy_(0.3 * torch.randn(6, generator=torch.Generator().manual_seed(3)))
    model = nn.Sequential(LookAlikeActivation(6, seed=1), own).eval()
    assert accelerate(model) == 2  # backend "auto", which the variable replaces
    x = 2 * torch.randn(1, 6, 30, generator=torch.Generator().manual_seed(4))
    monkeypatch.setenv(policy.ENV_VAR, "torch")
    with torch.inference_mode():
        on_torch = model(x)
    assert kernel_calls == []
    monkeypatch.setenv(policy.ENV_VAR, "triton")
    with torch.inference_mode():
        kept = model(x)
    assert kernel_calls == [] and torch.equal(kept, on_torch)  # the choices are kept until a refresh
    refresh_backends(model)
    with torch.inference_mode():
        on_triton = model(x)
    assert len(kernel_calls) == 2  # both activations, one launch each
    assert max_abs(on_triton, on_torch) <= TOLERANCE
    assert backends_ran(model) == [{"backend": "triton", "x_dtype": "float32", "out_dtype": "float32", "activations": 2}]
    monkeypatch.setenv(policy.ENV_VAR, "torch")
    refresh_backends(model)
    with torch.inference_mode():
        assert torch.equal(model(x), on_torch)
    assert len(kernel_calls) == 2


# --- bigvgan_fast's own generator ----------------------------------------------------------------


def test_own_model_sets_the_backend(kernel_calls):
    model = spread_snake_parameters(BigVGAN(fused_config(), backend="torch").remove_weight_norm().eval())
    mel = torch.randn(1, 8, 11, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        expected = model(mel)
    snapshot = state_snapshot(model)
    assert accelerate(model, backend="triton") == 9
    assert all(act.backend == "triton" for act in model.activations())
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert_state_unchanged(model, snapshot)
    with torch.inference_mode():
        assert max_abs(model(mel), expected) <= TOLERANCE
    assert len(kernel_calls) == 9
    # set_backend keeps working: accelerate left nothing behind that overrides it.
    model.set_backend("torch")
    with torch.inference_mode():
        assert torch.equal(model(mel), expected)


def test_tiny_own_model_matches_golden_after_accelerate():
    from safetensors.torch import load_file

    io_golden = load_file(os.path.join(TINY, "io.safetensors"))
    model = BigVGAN.from_pretrained(TINY, backend="torch")
    assert accelerate(model) == 109
    with torch.inference_mode():
        audio = model(io_golden["mel"].float())
    rel_l2 = ((audio.double() - io_golden["audio"]).norm() / io_golden["audio"].norm()).item()
    assert rel_l2 <= 1e-5


# --- on a GPU ------------------------------------------------------------------------------------


def gpu_backends():
    from bigvgan_fast.anti_alias import policy

    out = []
    for name in ("triton", "cuda"):
        reason = "needs a CUDA GPU (none visible to torch)"
        if torch.cuda.is_available():
            reason = policy.problem(name, "cuda", torch.float32, False)
        out.append(pytest.param(name, marks=pytest.mark.skipif(reason is not None, reason=str(reason))))
    return out


@pytest.fixture
def no_tf32():
    """Float32 convolutions compared with float32 ones (cuDNN would round their inputs to TF32)."""
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False):
        yield


@pytest.mark.gpu
@pytest.mark.parametrize("backend", gpu_backends())
@pytest.mark.parametrize("use_cuda_kernel", [False, True], ids=["torch-activations", "cuda-kernel-activations"])
def test_gpu_official_22khz_model_fused(bigvgan, cuda_kernel_importable, no_tf32, backend, use_cuda_kernel):
    reference = official_model(bigvgan, "bigvgan_v2_22khz_80band_256x").cuda()
    model = official_model(
        bigvgan, "bigvgan_v2_22khz_80band_256x", use_cuda_kernel=use_cuda_kernel, state_dict=reference.state_dict()
    ).cuda()
    mel = torch.randn(1, 80, 64, device="cuda")
    with torch.inference_mode():
        expected = reference(mel)
        assert accelerate(model, backend=backend) == 6 * 3 * 6 + 1
        audio = model(mel)
    assert max_abs(audio, expected) <= TOLERANCE


@pytest.mark.gpu
@pytest.mark.parametrize("backend", gpu_backends())
def test_gpu_look_alike_tree(backend):
    model = look_alike_tree().cuda()
    x = 2 * torch.randn(2, 4, 1000, device="cuda")
    with torch.inference_mode():
        expected = model(x)
    with pytest.warns(RuntimeWarning, match="left 2"):
        assert accelerate(model, backend=backend) == 2
    with torch.inference_mode():
        assert max_abs(model(x), expected) <= TOLERANCE
