import os

import pytest
import torch
from safetensors.torch import load_file

from bigvgan_fast import BigVGAN, available_configs, load_config
from bigvgan_fast.checkpoint import load_generator_state_dict
from official_format import write_official_checkpoint

TINY = os.path.join(os.path.dirname(__file__), "golden", "tiny_generator")


def parameter_count(name: str) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in BigVGAN(name).parameters())


CONFIG_IDS = [f"{name}-{parameter_count(name) / 1e6:.1f}M" for name in available_configs()]


@pytest.mark.parametrize("name", available_configs(), ids=CONFIG_IDS)
def test_every_shipped_config_builds(name):
    h = load_config(name)
    with torch.device("meta"):
        model = BigVGAN(h)
        count = sum(p.numel() for p in model.parameters())
        print(f"{name}: {count / 1e6:.1f} M parameters")
        out = model(torch.empty(1, h.num_mels, 3))
    assert out.shape == (1, 1, 3 * h.upsample_factor)
    assert len(model.ups) == len(h.upsample_rates)
    assert len(model.resblocks) == len(h.upsample_rates) * len(h.resblock_kernel_sizes)


def test_22khz_parameter_count_is_112_2_million():
    assert round(parameter_count("bigvgan_v2_22khz_80band_256x") / 1e5) == 1122


def test_22khz_random_weights_map_100_frames_to_25600_samples():
    torch.manual_seed(0)
    model = BigVGAN("bigvgan_v2_22khz_80band_256x").remove_weight_norm().eval()
    with torch.inference_mode():
        audio = model(torch.randn(1, 80, 100))
    assert audio.shape == (1, 1, 25600)
    assert torch.isfinite(audio).all() and audio.abs().max() <= 1.0 and audio.std() > 0


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-7)])
def test_tiny_generator_matches_golden(dtype, tolerance):
    io = load_file(os.path.join(TINY, "io.safetensors"))
    model = BigVGAN.from_pretrained(TINY, dtype=dtype)
    assert not model.training and not model.has_weight_norm
    with torch.inference_mode():
        audio = model(io["mel"].to(dtype))
    assert audio.shape == io["audio"].shape == (2, 1, 2304)
    rel_l2 = (audio.double() - io["audio"]).norm() / io["audio"].norm()
    assert rel_l2 <= tolerance, f"relative L2 {rel_l2:.3g}"


def test_weight_norm_keys_and_folding_keep_the_output():
    sd = load_generator_state_dict(os.path.join(TINY, "bigvgan_generator.pt"))
    model = BigVGAN(load_config(TINY))
    assert set(model.state_dict()) == set(sd)
    model.load_state_dict(sd, strict=True)
    mel = torch.randn(1, 80, 5)
    with torch.no_grad():
        before = model(mel)
        model.remove_weight_norm()
        after = model(mel)
    assert "conv_pre.weight" in model.state_dict() and "conv_pre.weight_g" not in model.state_dict()
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", available_configs())
@pytest.mark.parametrize("weight_norm", [True, False], ids=["weight_norm", "plain"])
def test_official_format_checkpoints_load_strictly(tmp_path, name, weight_norm):
    write_official_checkpoint(tmp_path, name, weight_norm=weight_norm)
    model = BigVGAN.from_pretrained(tmp_path)
    assert not model.has_weight_norm and not model.training
    sd = torch.load(tmp_path / "bigvgan_generator.pt", weights_only=True)["generator"]
    loaded = model.state_dict()
    if not weight_norm:
        for key, value in sd.items():
            assert torch.equal(loaded[key], value), key
    else:
        v, g = sd["conv_pre.weight_v"], sd["conv_pre.weight_g"]
        torch.testing.assert_close(loaded["conv_pre.weight"], g * v / v.norm(dim=(1, 2), keepdim=True))


def test_mel_shape_errors_are_clear():
    model = BigVGAN(load_config(TINY))
    with pytest.raises(ValueError, match=r"\(batch, 80, frames\)"):
        model(torch.randn(1, 100, 5))
    with pytest.raises(ValueError, match=r"\(batch, 80, frames\)"):
        model(torch.randn(80, 5))
    with pytest.raises(TypeError, match="floating"):
        model(torch.ones(1, 80, 5, dtype=torch.long))
