"""Receptive field, exact chunked synthesis and streaming (bigvgan_fast.streaming).

The 64-channel golden tiny generator has the 22 kHz model's layer plan (receptive field 39
frames), so it is the model of record for exactness; smaller configs built here cover many chunk
sizes and layer plans at little cost.
"""

import os
import warnings

import pytest
import torch
from safetensors.torch import load_file

from bigvgan_fast import BigVGAN, available_configs, receptive_field_frames
from bigvgan_fast.generator import receptive_field_reach
from bigvgan_fast.streaming import SAFETY_MARGIN_FRAMES, stream, synthesize
from conftest import TINY, small_config, spread_snake_parameters

MEL_GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "mel.safetensors")


def random_model(config, dtype=torch.float32, seed=0):
    """The official initialisation (unsaturated output: the final clamp would hide dependencies)
    with spread Snake parameters; eval mode, weight norm folded."""
    torch.manual_seed(seed)
    return spread_snake_parameters(BigVGAN(config, backend="torch").remove_weight_norm().eval().to(dtype), seed)


@pytest.fixture(scope="module")
def tiny():
    return BigVGAN.from_pretrained(TINY, backend="torch")


@pytest.fixture(scope="module")
def small():
    return random_model(small_config())


def whole(model, mel):
    with torch.inference_mode():
        return model(mel)


def max_abs(a, b):
    return (a.double() - b.double()).abs().max().item()


# --- receptive field ------------------------------------------------------------------------------


def test_receptive_field_of_published_configs():
    # conv_pre 3 + stage 1: ConvTranspose 1 frame + AMP(k=11): 3 x (5 + 5d + 5 + 5) = 90 samples at
    # 4 per frame + stage 2: 90 samples at 16 per frame + ... carried exactly through the layers'
    # integer index maps: 38 frames each side, plus the 1-frame margin.
    assert receptive_field_reach("bigvgan_v2_22khz_80band_256x") == (38, 38)
    assert receptive_field_frames("bigvgan_v2_22khz_80band_256x") == 39
    assert receptive_field_frames(TINY) == 39
    assert receptive_field_frames("bigvgan_v2_44khz_128band_512x") == 22
    assert receptive_field_frames("bigvgan_base_22khz_80band") == 19
    for name in available_configs():
        assert receptive_field_frames(name) == max(receptive_field_reach(name)) + SAFETY_MARGIN_FRAMES
    model = BigVGAN(small_config())
    assert receptive_field_frames(model) == receptive_field_frames(model.config)


def dependency_frames(model, frames, target, dtype=torch.float64):
    """Mel frames on which the samples of frame ``target`` depend: where the gradient of a random
    projection of those samples is nonzero (a structural test, free of the rounding that hides
    the far taps' tiny contributions in a perturbation test)."""
    hop = model.config.upsample_factor
    gen = torch.Generator().manual_seed(1)
    mel = torch.randn(1, model.config.num_mels, frames, dtype=dtype, generator=gen, requires_grad=True)
    audio = model(mel)[0, 0, target * hop : (target + 1) * hop]
    (audio * torch.randn(hop, dtype=dtype, generator=gen)).sum().backward()
    nonzero = (mel.grad[0].abs().sum(0) != 0).nonzero().flatten()
    return nonzero.min().item() - target, nonzero.max().item() - target


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"resblock": "2"},
        {"upsample_rates": [4, 2], "upsample_kernel_sizes": [8, 4]},
        {
            "upsample_rates": [3],
            "upsample_kernel_sizes": [7],
            "resblock_kernel_sizes": [7],
            "resblock_dilation_sizes": [[1, 3, 5]],
        },
    ],
    ids=["amp1", "amp2", "rates-4-2", "odd-transposed-kernel"],
)
def test_receptive_field_reach_is_exact(overrides):
    config = small_config(**overrides)
    model = random_model(config, torch.float64)
    left, right = receptive_field_reach(config)
    frames = 2 * (left + right) + 8
    target = frames // 2
    assert dependency_frames(model, frames, target) == (-left, right)


def test_perturbing_one_frame_changes_output_only_within_the_receptive_field():
    model = BigVGAN.from_pretrained(TINY, backend="torch", dtype=torch.float64)
    field = receptive_field_frames(model)
    hop = model.config.upsample_factor
    frames, t = 2 * field + 21, field + 10
    gen = torch.Generator().manual_seed(2)
    mel = torch.randn(1, 80, frames, dtype=torch.float64, generator=gen)
    perturbed = mel.clone()
    perturbed[..., t] += torch.randn(80, dtype=torch.float64, generator=gen)
    changed = (whole(model, perturbed) - whole(model, mel))[0, 0].abs() > 0
    samples = changed.nonzero().flatten()
    assert samples.numel() > 0
    first, last = samples.min().item() // hop, samples.max().item() // hop
    print(f"frame {t} changes frames {first - t:+d} .. {last - t:+d}; predicted within +-{field}")
    assert t - field <= first and last <= t + field
    # The bound is tight up to its margin: the far taps' contributions are below float64 rounding
    # here (weights ~0.01), so the gradient shows them.
    assert dependency_frames(model, frames, t) == (-(field - SAFETY_MARGIN_FRAMES), field - SAFETY_MARGIN_FRAMES)


# --- chunked synthesis ----------------------------------------------------------------------------


def test_synthesize_equals_whole_on_the_tiny_model(tiny):
    gen = torch.Generator().manual_seed(3)
    mel = torch.randn(2, 80, 67, generator=gen)
    expected = whole(tiny, mel)
    # 33 < the 39-frame field, and 67 = 33 + 33 + 1 = 66 + 1: last chunks of one frame.
    for chunk in (33, 66):
        audio = synthesize(tiny, mel, chunk_frames=chunk)
        assert audio.shape == expected.shape == (2, 1, 67 * 256)
        assert max_abs(audio, expected) <= 1e-5, chunk


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_synthesize_equals_whole_for_any_chunk(small, dtype, tolerance):
    model = random_model(small.config, dtype)
    field = receptive_field_frames(model)
    gen = torch.Generator().manual_seed(4)
    frames = 3 * field + 1
    mel = torch.randn(1, 8, frames, dtype=dtype, generator=gen)
    expected = whole(model, mel)
    for chunk in (1, 2, 3, field - 1, field, field + 1, frames - 1, frames, frames + 5):
        audio = synthesize(model, mel, chunk_frames=chunk)
        assert audio.dtype == dtype
        assert max_abs(audio, expected) <= tolerance, f"chunk_frames={chunk}"


def test_too_little_context_is_not_exact(small):
    # The exactness above comes from the context: without it the seams show.
    mel = torch.randn(1, 8, 40, generator=torch.Generator().manual_seed(5))
    assert max_abs(synthesize(small, mel, chunk_frames=10, context_frames=0), whole(small, mel)) > 1e-3


def test_synthesize_reports_progress(small):
    calls = []
    mel = torch.randn(1, 8, 25)
    synthesize(small, mel, chunk_frames=10, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(10, 25), (20, 25), (25, 25)]


def test_synthesize_rejects_bad_arguments(small):
    mel = torch.randn(1, 8, 10)
    with pytest.raises(ValueError, match="chunk_frames must be >= 1"):
        synthesize(small, mel, chunk_frames=0)
    with pytest.raises(TypeError, match="chunk_frames must be an int"):
        synthesize(small, mel, chunk_frames=2.5)
    with pytest.raises(ValueError, match=r"context_frames must be >= 0"):
        synthesize(small, mel, context_frames=-1)
    with pytest.raises(ValueError, match=r"\(batch, 8, frames\)"):
        synthesize(small, torch.randn(1, 80, 10))
    with pytest.raises(ValueError, match=r"\(batch, 8, frames\)"):
        synthesize(small, torch.randn(8, 10))
    with pytest.raises(ValueError, match="at least one frame"):
        synthesize(small, torch.randn(1, 8, 0))
    with pytest.raises(TypeError, match="floating"):
        synthesize(small, torch.ones(1, 8, 10, dtype=torch.long))
    with pytest.raises(TypeError, match="progress must be callable"):
        synthesize(small, mel, progress=3)
    with pytest.raises(TypeError, match="carries no BigVGAN config"):
        synthesize(torch.nn.Conv1d(8, 1, 3), mel)


# --- streaming ------------------------------------------------------------------------------------


def one_frame_at_a_time(mel, consumed=None):
    for t in range(mel.shape[-1]):
        if consumed is not None:
            consumed.append(t)
        yield mel[0, :, t : t + 1]  # (num_mels, 1)


def test_stream_frame_by_frame_equals_whole_on_the_tiny_model(tiny):
    field = receptive_field_frames(tiny)
    mel = torch.randn(1, 80, field + 7, generator=torch.Generator().manual_seed(6))
    consumed, packets, first_packet_after = [], [], None
    for packet in stream(tiny, one_frame_at_a_time(mel, consumed)):
        if first_packet_after is None:
            first_packet_after = len(consumed)
        packets.append(packet)
    # Frame 0 is determined once the default lookahead (the receptive field) has followed it.
    assert first_packet_after == field + 1
    assert all(p.dim() == 1 and p.numel() % 256 == 0 and p.numel() > 0 for p in packets)
    audio = torch.cat(packets)
    assert audio.shape == (mel.shape[-1] * 256,)
    assert max_abs(audio, whole(tiny, mel)[0, 0]) <= 1e-5


@pytest.mark.parametrize("lookahead", [None, "reach"])
def test_stream_equals_whole_for_any_item_sizes(small, lookahead):
    field = receptive_field_frames(small)
    lookahead = receptive_field_reach(small)[1] if lookahead == "reach" else None
    gen = torch.Generator().manual_seed(7)
    mel = torch.randn(1, 8, 3 * field + 5, generator=gen)
    sizes = [1, 1, 3, field, 2, 1, 7, 1, 100]
    items, t = [], 0
    for k, shape in zip(sizes, ["2d", "3d"] * len(sizes)):
        if t >= mel.shape[-1]:
            break
        item = mel[..., t : t + k]
        items.append(item[0] if shape == "2d" else item)
        t += k
    audio = torch.cat(list(stream(small, items, lookahead_frames=lookahead)))
    assert max_abs(audio, whole(small, mel)[0, 0]) <= 1e-5


def test_stream_of_a_short_or_empty_input(small):
    assert list(stream(small, [])) == []
    mel = torch.randn(1, 8, 3)
    packets = list(stream(small, [mel]))
    assert len(packets) == 1  # fewer frames than the lookahead: all at the end
    assert max_abs(packets[0], whole(small, mel)[0, 0]) <= 1e-6


def seam_stats(packets, exact):
    audio = torch.cat(packets)
    seams = torch.tensor([p.numel() for p in packets]).cumsum(0)[:-1]
    step = (audio[seams] - audio[seams - 1]).abs()
    exact_step = (exact[seams] - exact[seams - 1]).abs()
    return audio, (step - exact_step).max().item()


def test_low_lookahead_stream_stays_close_and_continuous(tiny):
    """A real mel (the golden chirp) through the tiny model, 4 frames per item.

    Measured here (float32, CPU), deviation from the whole-sequence output:
      lookahead 0: max 2.7e-2, all in the last frame (the end of the input is not known when that
                   frame is emitted), relative L2 3.2e-3; elsewhere max 1.1e-5
      lookahead 4: max 1.5e-6, relative L2 4.7e-7
      lookahead 8: max 6.0e-8, relative L2 1.1e-7
    against a signal of RMS 0.07 whose samples move by up to 3.0e-2 from one to the next; seams
    step at most 5.8e-7 more than the exact output does there.
    The weights are random (~0.01): a trained model's far taps matter more, so its deviations at a
    given lookahead are larger than these.
    """
    mel = load_file(MEL_GOLDEN)["mel_fmax_none"]
    exact = whole(tiny, mel)[0, 0]
    hop = 256
    bounds = {0: (5e-2, 1e-2, 1e-4), 4: (1e-5, 3e-6, 1e-5), 8: (1e-6, 1e-6, 1e-6)}
    for lookahead, (max_bound, rel_bound, interior_bound) in bounds.items():
        items = [mel[..., t : t + 4] for t in range(0, mel.shape[-1], 4)]
        audio, seam_excess = seam_stats(list(stream(tiny, items, lookahead_frames=lookahead)), exact)
        error = (audio - exact).abs()
        rel_l2 = ((audio - exact).norm() / exact.norm()).item()
        interior = error[: -hop].max().item()
        print(
            f"lookahead {lookahead}: max |dev| {error.max():.2e}, rel L2 {rel_l2:.2e}, "
            f"interior max {interior:.2e}, seam step excess {seam_excess:.2e}"
        )
        assert error.max() <= max_bound and rel_l2 <= rel_bound and interior <= interior_bound
        # No clicks: at every seam the output moves no more than the exact output does there,
        # up to a small fraction of the signal's largest sample-to-sample step.
        assert seam_excess <= 0.02 * (exact[1:] - exact[:-1]).abs().max()


class FarSighted(torch.nn.Module):
    """A stand-in generator (hop 64) whose output leans on the farthest future frame its config
    allows, so that a short lookahead guesses badly, and whose waveform is smooth (linear
    interpolation between frame values): any step at a seam is the streaming's doing."""

    def __init__(self):
        super().__init__()
        self.config = small_config(upsample_rates=[8, 8], upsample_kernel_sizes=[16, 16])
        self.reach = receptive_field_reach(self.config)[1] - 1  # the interpolation adds one frame

    def receptive_field_reach(self):
        return receptive_field_reach(self.config)

    def forward(self, mel):
        x = mel.mean(1, keepdim=True)
        frames = x + torch.nn.functional.pad(x, (0, self.reach), mode="replicate")[..., self.reach :]
        return torch.nn.functional.interpolate(frames, scale_factor=64, mode="linear", align_corners=False)


def test_crossfade_removes_the_seam_step():
    model = FarSighted()
    mel = torch.randn(1, 8, 40, generator=torch.Generator().manual_seed(8))
    exact = whole(model, mel)[0, 0]
    items = [mel[..., t : t + 3] for t in range(0, 40, 3)]
    assert max_abs(torch.cat(list(stream(model, items))), exact) <= 1e-6
    exact_step = (exact[1:] - exact[:-1]).abs().max().item()
    steps = {}
    for crossfade in (None, 0):
        audio = torch.cat(list(stream(model, items, lookahead_frames=0, crossfade_samples=crossfade)))
        steps[crossfade] = (audio[1:] - audio[:-1]).abs().max().item()
    # Measured: largest step 1.3 without the crossfade (a click at a seam), 0.045 with it, 0.031 in
    # the exact output.
    print(f"largest sample step: exact {exact_step:.3f}, crossfade {steps[None]:.3f}, none {steps[0]:.3f}")
    assert steps[0] > 10 * exact_step
    assert steps[None] < 2 * exact_step


def test_stream_rejects_bad_arguments(small):
    with pytest.raises(ValueError, match="lookahead_frames must be >= 0"):
        stream(small, [], lookahead_frames=-1)
    with pytest.raises(ValueError, match="context_frames must be >= 0"):
        stream(small, [], context_frames=-2)
    with pytest.raises(ValueError, match="crossfade_samples must be >= 0"):
        stream(small, [], lookahead_frames=0, crossfade_samples=-1)
    # Issue 9 item 20: a crossfade wider than the lookahead blended in stale estimates, silently.
    hop = small.config.upsample_factor
    with pytest.raises(ValueError, match=r"at most max\(lookahead_frames, 1\) \* hop = 8 samples"):
        stream(small, [], lookahead_frames=2, crossfade_samples=2 * hop + 1)
    stream(small, [], lookahead_frames=2, crossfade_samples=2 * hop)  # the bound itself is fine
    with pytest.raises(ValueError, match="= 4 samples"):
        stream(small, [], lookahead_frames=0, crossfade_samples=hop + 1)
    with pytest.raises(TypeError, match="lookahead_frames must be an int"):
        stream(small, [], lookahead_frames=1.5)
    for bad in (torch.randn(80, 3), torch.randn(8), torch.randn(2, 8, 3), torch.randn(8, 0)):
        with pytest.raises(ValueError, match=r"\(8, k\) or \(1, 8, k\)"):
            list(stream(small, [bad]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        list(stream(small, [[0.0] * 8]))


def test_synthesize_and_stream_take_the_official_model():
    bigvgan = pytest.importorskip("bigvgan", reason="NVIDIA's bigvgan package (pip install --no-deps bigvgan) is not installed")
    from bigvgan.env import AttrDict

    torch.manual_seed(9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # its torch.nn.utils.weight_norm
        official = bigvgan.BigVGAN(AttrDict(small_config().to_dict()), use_cuda_kernel=False).eval()
    mel = torch.randn(1, 8, 30)
    expected = whole(official, mel)
    assert max_abs(synthesize(official, mel, chunk_frames=7), expected) <= 1e-6
    assert max_abs(torch.cat(list(stream(official, [mel[..., :13], mel[..., 13:]]))), expected[0, 0]) <= 1e-6


@pytest.mark.gpu
def test_synthesize_and_stream_on_the_gpu_22khz_model():
    from bigvgan_fast import accelerate

    torch.manual_seed(10)
    model = spread_snake_parameters(BigVGAN("bigvgan_v2_22khz_80band_256x").remove_weight_norm().eval()).cuda()
    accelerate(model)
    mel = torch.randn(1, 80, 150, device="cuda")
    # Float32 convolutions throughout (cuDNN would round their inputs to TF32).
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False):
        expected = whole(model, mel)
        assert max_abs(synthesize(model, mel, chunk_frames=50), expected) <= 1e-5
        items = [mel[..., t : t + 10] for t in range(0, 150, 10)]
        assert max_abs(torch.cat(list(stream(model, items))), expected[0, 0]) <= 1e-5
