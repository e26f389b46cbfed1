import os
import pickle
import shutil

import pytest
import torch
from safetensors import safe_open

import bigvgan_fast
from bigvgan_fast import BigVGAN, CheckpointError, DownloadError, convert, download, load_config
from bigvgan_fast import checkpoint

TINY = os.path.join(os.path.dirname(__file__), "golden", "tiny_generator")


def output(model, seed=0):
    mel = torch.randn(1, 80, 6, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        return model(mel)


def test_convert_writes_folded_generator_with_config_and_same_output(model_dir):
    from_pt = BigVGAN.from_pretrained(model_dir)
    path = convert(model_dir)
    assert path == model_dir / "generator.safetensors"
    with safe_open(path, "pt") as f:
        keys = set(f.keys())
        metadata = f.metadata()
    assert not any(k.endswith(("weight_g", "weight_v")) for k in keys) and "conv_pre.weight" in keys
    assert load_config(__import__("json").loads(metadata["config"])) == load_config(model_dir)
    from_st = BigVGAN.from_pretrained(model_dir)  # the safetensors file wins now
    assert torch.equal(output(from_st), output(from_pt))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_convert_half_precision(model_dir, dtype):
    convert(model_dir, dtype=dtype)
    with safe_open(model_dir / "generator.safetensors", "pt") as f:
        assert str(f.get_tensor("conv_pre.weight").dtype) == f"torch.{dtype}"
        assert f.get_tensor("activation_post.upsample.filter").dtype == torch.float32  # taps never rounded
    model = BigVGAN.from_pretrained(model_dir, dtype=torch.float32)
    ref = output(BigVGAN.from_pretrained(TINY))
    rel = (output(model) - ref).norm() / ref.norm()
    assert rel < (1e-2 if dtype == "bfloat16" else 2e-3), rel


def test_failed_convert_leaves_no_partial_file(model_dir, monkeypatch):
    import safetensors.torch

    def failing_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        convert(model_dir)
    assert sorted(os.listdir(model_dir)) == ["bigvgan_generator.pt", "config.json"]


def test_missing_extra_and_misshaped_keys_are_listed(model_dir):
    sd = torch.load(model_dir / "bigvgan_generator.pt", weights_only=True)["generator"]
    del sd["conv_pre.bias"]
    sd["conv_pre.extra"] = torch.zeros(1)
    sd["conv_post.weight_v"] = torch.zeros(1, 2, 7)
    torch.save({"generator": sd}, model_dir / "bigvgan_generator.pt")
    with pytest.raises(CheckpointError) as err:
        BigVGAN.from_pretrained(model_dir)
    text = str(err.value)
    assert "missing keys (1)" in text and "conv_pre.bias" in text
    assert "unexpected keys (1)" in text and "conv_pre.extra" in text
    assert "mis-shaped keys (1)" in text and "conv_post.weight_v: checkpoint (1, 2, 7), model (1, 1, 7)" in text


def test_config_that_does_not_match_the_checkpoint(model_dir):
    h = load_config(model_dir).to_dict()
    h["upsample_initial_channel"] = 128
    (model_dir / "config.json").write_text(__import__("json").dumps(h))
    with pytest.raises(CheckpointError, match="does config.json describe this checkpoint"):
        BigVGAN.from_pretrained(model_dir)


def test_truncated_checkpoint(model_dir):
    data = (model_dir / "bigvgan_generator.pt").read_bytes()
    (model_dir / "bigvgan_generator.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        BigVGAN.from_pretrained(model_dir)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_non_checkpoint_files_are_refused_without_unpickling(model_dir):
    (model_dir / "bigvgan_generator.pt").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="weights_only"):
        BigVGAN.from_pretrained(model_dir)
    (model_dir / "bigvgan_generator.pt").write_text("hello")
    with pytest.raises(CheckpointError):
        BigVGAN.from_pretrained(model_dir)
    torch.save({"generator": [1, 2]}, model_dir / "bigvgan_generator.pt")
    with pytest.raises(CheckpointError, match="state dict"):
        BigVGAN.from_pretrained(model_dir)
    (model_dir / "generator.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="safetensors"):
        BigVGAN.from_pretrained(model_dir)


def test_folder_without_weights_or_config(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        BigVGAN.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(load_config(TINY).to_json())
    with pytest.raises(CheckpointError, match="neither"):
        BigVGAN.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="neither a model folder nor"):
        BigVGAN.from_pretrained("./no/such/folder")


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """hf_hub_download served from local folders: {repo_id: folder}."""
    repos = {}
    calls = []

    def hf_hub_download(repo_id, filename, local_dir=None, cache_dir=None, local_files_only=False, token=None):
        calls.append((repo_id, filename))
        src = os.path.join(repos.get(repo_id, "/nonexistent"), filename)
        if not os.path.isfile(src):
            raise FileNotFoundError(f"404: {repo_id}/{filename}")
        dest_dir = local_dir or os.path.join(tmp_path, "hub-cache", repo_id.replace("/", "--"))
        os.makedirs(dest_dir, exist_ok=True)
        return shutil.copy(src, os.path.join(dest_dir, filename))

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(checkpoint, "_hub_unreachable", lambda: None)
    return repos, calls


def test_download_convert_load_round_trip(fake_hub, model_dir, tmp_path):
    repos, calls = fake_hub
    repos["nvidia/model_dir"] = model_dir
    target = tmp_path / "checkpoints" / "bigvgan"
    assert download("nvidia/model_dir", target) == target
    assert sorted(os.listdir(target)) == ["bigvgan_generator.pt", "config.json"]
    reference = output(BigVGAN.from_pretrained(target))
    convert(target)
    assert torch.equal(output(BigVGAN.from_pretrained(target)), reference)
    # From the repo id: the hub has no generator.safetensors, so the .pt is used.
    assert torch.equal(output(BigVGAN.from_pretrained("nvidia/model_dir")), reference)
    assert ("nvidia/model_dir", "generator.safetensors") in calls and ("nvidia/model_dir", "bigvgan_generator.pt") in calls


def test_download_failure_says_what_to_fetch_and_where(fake_hub, tmp_path):
    with pytest.raises(DownloadError) as err:
        download("nvidia/bigvgan_v2_22khz_80band_256x", tmp_path / "ck")
    text = str(err.value)
    assert "config.json and bigvgan_generator.pt" in text and str(tmp_path / "ck") in text
    assert "https://huggingface.co/nvidia/bigvgan_v2_22khz_80band_256x" in text


def test_unreachable_hub_fails_before_the_client_retries(monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.setattr(checkpoint, "_hub_unreachable", lambda: "huggingface.co:443 is not reachable: no network")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda **kw: pytest.fail("the client must not be called"))
    with pytest.raises(DownloadError, match="not reachable"):
        download(bigvgan_fast.DEFAULT_REPO_ID, tmp_path / "ck")
    assert not (tmp_path / "ck").exists()  # nothing left on disk


def test_convert_lives_above_checkpoint_and_generator():
    # The layering of issue 10: checkpoint knows no generator; convert imports both (no cycle).
    import ast
    import importlib
    import inspect

    convert_module = importlib.import_module("bigvgan_fast.convert")  # the package attribute is the function

    def imported(module):
        tree = ast.parse(inspect.getsource(module))
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}

    assert "generator" not in imported(checkpoint) and "files" not in imported(checkpoint)
    assert {"checkpoint", "generator", "files"} <= imported(convert_module)
    assert bigvgan_fast.convert is convert_module.convert
    assert not hasattr(checkpoint, "convert") and not hasattr(checkpoint, "atomic_write")
