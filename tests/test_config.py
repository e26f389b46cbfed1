import json
from importlib import resources

import pytest

import bigvgan_fast
from bigvgan_fast import BigVGANConfig, ConfigError, available_configs, load_config


def test_nine_official_configs_ship():
    assert len(available_configs()) == 9
    assert "bigvgan_v2_22khz_80band_256x" in available_configs()


def test_22khz_config_values():
    h = load_config("bigvgan_v2_22khz_80band_256x")
    assert isinstance(h, BigVGANConfig)
    assert h.upsample_rates == (4, 4, 2, 2, 2, 2)
    assert h.upsample_kernel_sizes == (8, 8, 4, 4, 4, 4)
    assert h.upsample_initial_channel == 1536
    assert h.resblock_dilation_sizes == ((1, 3, 5),) * 3
    assert (h.activation, h.snake_logscale, h.use_tanh_at_final, h.use_bias_at_final) == ("snakebeta", True, False, False)
    assert h.upsample_factor == 256 == h.hop_size
    assert h.extra["segment_size"] == 65536  # training keys kept, not interpreted


def test_repo_id_names_its_config():
    assert load_config("nvidia/bigvgan_v2_22khz_80band_256x") == load_config("bigvgan_v2_22khz_80band_256x")


def test_final_layer_flags_default_true_as_official():
    # The v1 config files do not name them; the official code then uses tanh and a bias.
    data = json.loads((resources.files("bigvgan_fast") / "configs" / "bigvgan_22khz_80band.json").read_text())
    assert "use_tanh_at_final" not in data and "use_bias_at_final" not in data
    h = load_config("bigvgan_22khz_80band")
    assert h.use_tanh_at_final is True and h.use_bias_at_final is True
    assert load_config(data).use_tanh_at_final is True


def test_round_trip_through_dict_and_file(tmp_path):
    h = load_config("bigvgan_v2_44khz_128band_512x")
    (tmp_path / "config.json").write_text(h.to_json())
    again = load_config(tmp_path)  # a folder holding config.json
    assert again == h and again.extra == h.extra


@pytest.mark.parametrize("key", ["upsample_rates", "num_mels", "activation", "resblock_dilation_sizes", "fmax"])
def test_missing_key_is_named(key):
    data = load_config(bigvgan_fast.DEFAULT_CONFIG).to_dict()
    del data[key]
    with pytest.raises(ConfigError, match=key):
        load_config(data)


def test_inconsistent_config_is_refused():
    data = load_config(bigvgan_fast.DEFAULT_CONFIG).to_dict()
    data["upsample_kernel_sizes"] = [8, 8]
    with pytest.raises(ConfigError, match="same length"):
        load_config(data)
    data = load_config(bigvgan_fast.DEFAULT_CONFIG).to_dict()
    data["activation"] = "relu"
    with pytest.raises(ConfigError, match="snake"):
        load_config(data)


def test_unknown_name_and_bad_json(tmp_path):
    with pytest.raises(ConfigError, match="shipped"):
        load_config("no_such_config")
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)


@pytest.mark.parametrize("name", available_configs())
def test_every_shipped_config_passes_the_checks(name):
    h = load_config(name)
    assert h.hop_size == h.upsample_factor and h.upsample_initial_channel // 2 ** len(h.upsample_rates) >= 1
    assert load_config(h.to_dict()) == h


def test_channels_halve_by_floor_division_as_official():
    # 18 channels over 2 stages: 9, then 4 (the official generator's arithmetic); refused before.
    data = load_config(bigvgan_fast.DEFAULT_CONFIG).to_dict()
    data.update(upsample_initial_channel=18, upsample_rates=[2, 2], upsample_kernel_sizes=[4, 4], hop_size=4)
    model = bigvgan_fast.BigVGAN(data)
    assert [up[0].weight.shape[1] for up in model.ups] == [9, 4] and model.conv_post.weight.shape[1] == 4


def test_booleans_are_json_booleans():
    data = load_config(bigvgan_fast.DEFAULT_CONFIG).to_dict()
    for value in (False, True):
        data["use_tanh_at_final"] = value
        assert load_config(data).use_tanh_at_final is value
    for value in ("false", 0, None):
        data["use_tanh_at_final"] = value
        with pytest.raises(ConfigError, match="use_tanh_at_final must be true or false"):
            load_config(data)
