"""Bad inputs: each gets a clear error naming the argument or file, before any work, and leaves no file.

One parametrization per kind of input (issue 9). Each case asserts the error type and a message that
names what was wrong; the command-line cases also assert that nothing was written.
"""

from __future__ import annotations

import os
import re
import stat

import numpy as np
import pytest
import torch

from bigvgan_fast import BigVGAN, CheckpointError, ConfigError, DownloadError, cli, load_config, mel_spectrogram
from bigvgan_fast import checkpoint
from bigvgan_fast.convert import convert
from bigvgan_fast.files import atomic_write
from bigvgan_fast.wav import WavError, write_wav

TINY = os.path.join(os.path.dirname(__file__), "golden", "tiny_generator")


def tiny_config() -> dict:
    return load_config(TINY).to_dict()


def main(capsys, *argv):
    """Run the command line in this process: (exit code, stdout, stderr)."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


# --- configs (item 16) ------------------------------------------------------------------------


def _with(**changes):
    return lambda h: h.update(changes)


BAD_CONFIGS = {
    # what the official code builds and then fails on, or runs wrongly
    "hop_not_product": (_with(hop_size=512), "hop_size=512 must equal the product of upsample_rates"),
    "even_resblock_kernel": (_with(resblock_kernel_sizes=[3, 4, 11]), r"resblock_kernel_sizes\[1\] must be odd"),
    "zero_resblock_kernel": (_with(resblock_kernel_sizes=[0, 7, 11]), r"resblock_kernel_sizes\[0\] must be at least 1"),
    "odd_kernel_minus_rate": (_with(upsample_kernel_sizes=[9, 8, 4, 4, 4, 4]), r"upsample_kernel_sizes\[0\] - upsample_rates\[0\] = 9 - 4 must be even"),
    "kernel_below_rate": (_with(upsample_kernel_sizes=[2, 8, 4, 4, 4, 4]), r"upsample_kernel_sizes\[0\] must be at least 4"),
    "fmin_above_fmax": (_with(fmin=9000, fmax=8000), "0 <= fmin < fmax <= sampling_rate / 2"),
    "fmax_above_nyquist": (_with(fmax=12000), "sampling_rate / 2 = 11025"),
    "string_bool": (_with(snake_logscale="false"), "snake_logscale must be true or false, got 'false'"),
    "float_rate": (_with(upsample_rates=[2.5, 4, 2, 2, 2, 2]), r"upsample_rates\[0\] must be an integer, got 2.5"),
    "float_channels": (_with(upsample_initial_channel=64.0), "upsample_initial_channel must be an integer, got 64.0"),
    "bool_mels": (_with(num_mels=True), "num_mels must be an integer, got True"),
    "int_resblock": (_with(resblock=1), "resblock must be the string '1' or '2', got 1"),
    "no_channel_left": (_with(upsample_initial_channel=32), "leaves no channel after 6 halvings"),
    "dilation_not_list": (_with(resblock_dilation_sizes=[[1, 3, 5], 3, [1, 3, 5]]), r"resblock_dilation_sizes\[1\] must be a list"),
    "zero_dilation": (_with(resblock_dilation_sizes=[[1, 0, 5], [1, 3, 5], [1, 3, 5]]), r"resblock_dilation_sizes\[0\]\[1\] must be at least 1"),
    "window_over_fft": (_with(win_size=2048), "win_size=2048 must not exceed n_fft=1024"),
    "string_fmin": (_with(fmin="0"), "fmin must be a number of Hz, got '0'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_refused_when_read(case):
    change, message = BAD_CONFIGS[case]
    h = tiny_config()
    change(h)
    with pytest.raises(ConfigError, match=message):
        load_config(h)
    with pytest.raises(ConfigError, match=message):
        BigVGAN(h)  # the model is never built from it


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"resblock": "1", "name": "caf\xe9"}', "is not UTF-8 text"),  # Latin-1, as an old editor saves it
        (b"\xff\xfe{\x00}\x00", "is not UTF-8 text"),  # UTF-16
        (b"{not json", "is not valid JSON"),
        (b"[1, 2]", "must hold a JSON object"),
    ],
    ids=["latin1", "utf16", "not_json", "not_object"],
)
def test_bad_config_file_is_named(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


# --- checkpoints (items 17, 18) ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.bool, torch.complex64], ids=str)
def test_non_float_weights_are_refused(model_dir, dtype):
    sd = torch.load(model_dir / "bigvgan_generator.pt", weights_only=True)["generator"]
    sd["conv_pre.bias"] = torch.ones_like(sd["conv_pre.bias"], dtype=dtype)
    torch.save({"generator": sd}, model_dir / "bigvgan_generator.pt")
    with pytest.raises(CheckpointError, match=rf"non-float tensors .*\n    conv_pre.bias: {dtype}"):
        BigVGAN.from_pretrained(model_dir)


@pytest.mark.parametrize(
    "source, make_parent",
    [("checkpoints/bigvgan", True), ("checkpoints/bigvgan/", False), ("./ck", False), ("~/no_such_model_dir_xyz", False), ("a/b/c", False)],
    ids=["relative_beside_parent", "trailing_slash", "dot", "home", "three_parts"],
)
def test_missing_local_folder_is_named_without_the_hub(tmp_path, monkeypatch, source, make_parent):
    import huggingface_hub

    monkeypatch.chdir(tmp_path)
    if make_parent:
        (tmp_path / "checkpoints").mkdir()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda **kw: pytest.fail("a path must not reach the hub"))
    with pytest.raises(CheckpointError, match="the local folder .* does not exist") as err:
        BigVGAN.from_pretrained(source)
    assert os.path.abspath(os.path.expanduser(source)) in str(err.value)


def test_missing_folder_that_reads_as_a_repo_id_says_both(tmp_path, monkeypatch):
    # No checkpoints/ here, so "checkpoints/bigvgan" can be a repo id; when the hub has nothing
    # either, the error says the local folder is missing too.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(checkpoint, "_hub_unreachable", lambda: "huggingface.co:443 is not reachable: no network")
    with pytest.raises(DownloadError, match=r"there is no local folder .*checkpoints/bigvgan, and as a Hugging Face repo id"):
        BigVGAN.from_pretrained("checkpoints/bigvgan")


# --- waveforms into the mel front end (item 19) ----------------------------------------------


@pytest.mark.parametrize(
    "shape, message",
    [
        ((48000, 2), r"\(samples,\) or \(batch, samples\).*got shape \(48000, 2\).*wav.mean\(-1\) or wav.T"),
        ((1, 1, 5000), r"\(samples,\) or \(batch, samples\).*got shape \(1, 1, 5000\)"),
        ((100,), r"more than 384 samples, got shape \(1, 100\)"),
    ],
    ids=["samples_by_channels", "three_dims", "too_short"],
)
def test_bad_wav_layout_names_the_expected_one(shape, message):
    with pytest.raises(ValueError, match=message):
        mel_spectrogram(torch.zeros(shape), TINY)


def test_empty_batch_gives_an_empty_mel():
    wav = torch.randn(2, 256 * 20).clamp(-1, 1)
    mel = mel_spectrogram(wav[:0], TINY)
    assert mel.shape == (0, 80, 20) == (0, *mel_spectrogram(wav, TINY).shape[1:])


# --- output files (items 9, 10, 12) -----------------------------------------------------------


@pytest.mark.parametrize(
    "audio, name, message",
    [
        (torch.tensor([0.1, float("nan"), 0.2]), "out.wav", "1 of 3 audio samples are NaN or infinite"),
        (torch.tensor([float("inf"), 0.0]), "out.wav", "1 of 2 audio samples are NaN or infinite"),
        (torch.zeros(10), "out.mp3", "must end in .wav"),
        (torch.zeros(10), "missing/out.wav", "the folder .*missing does not exist"),
    ],
    ids=["nan", "inf", "mp3", "missing_folder"],
)
def test_write_wav_refuses_and_writes_nothing(tmp_path, audio, name, message):
    with pytest.raises((WavError, OSError), match=message) as err:
        write_wav(tmp_path / name, audio, 22050)
    assert os.fspath(tmp_path / name) in str(err.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_umask_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_wav(tmp_path / "a.wav", torch.zeros(10), 22050)
        with atomic_write(tmp_path / "b.bin") as tmp:
            open(tmp, "wb").close()
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert stat.S_IMODE(os.stat(tmp_path / "plain").st_mode) == expected
    assert stat.S_IMODE(os.stat(tmp_path / "a.wav").st_mode) == expected
    assert stat.S_IMODE(os.stat(tmp_path / "b.bin").st_mode) == expected


def test_rewritten_file_keeps_its_mode(tmp_path):
    path = tmp_path / "a.wav"
    write_wav(path, torch.zeros(10), 22050)
    os.chmod(path, 0o640)
    write_wav(path, torch.ones(10) / 2, 22050)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_convert_does_not_replace_another_file_without_force(model_dir):
    convert(model_dir)
    before = (model_dir / "generator.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match=r"generator.safetensors exists \(float32\); pass force=True \(--force\) to replace it with a float16 one"):
        convert(model_dir, dtype="float16")
    assert (model_dir / "generator.safetensors").read_bytes() == before
    convert(model_dir, dtype="float16", force=True)
    assert (model_dir / "generator.safetensors").read_bytes() != before


# --- the command line (items 9, 10, 11, 13) ---------------------------------------------------


def _broken_weights(model_dir):
    """Weights that fail to load: a case that reports its own error must have stopped before loading."""
    (model_dir / "bigvgan_generator.pt").write_bytes(b"not a checkpoint")


def _mel_file(tmp_path, value):
    mel = torch.randn(80, 7)
    mel[3, 4] = value
    np.save(tmp_path / "mel.npy", mel.numpy())
    return tmp_path / "mel.npy"


def _wav_file(tmp_path, samples):
    write_wav(tmp_path / "short.wav", torch.zeros(samples), 22050)
    return tmp_path / "short.wav"


CLI_CASES = {
    "bench_frames_0": (lambda d, t: ["bench", "--frames", "0"], "argument --frames: expected an integer >= 1, got 0"),
    "bench_batch_0": (lambda d, t: ["bench", "--batch", "0"], "argument --batch: expected an integer >= 1, got 0"),
    "bench_repeats_word": (lambda d, t: ["bench", "--repeats", "many"], "argument --repeats: expected an integer >= 1, got 'many'"),
    "bench_warmup_negative": (lambda d, t: ["bench", "--warmup", "-1"], "argument --warmup: expected an integer >= 0, got -1"),
    "vocode_chunk_0": (lambda d, t: ["vocode", _mel_file(t, 0.0), t / "out.wav", "--model", d, "--chunk-frames", "0"], "argument --chunk-frames: expected an integer >= 1"),
    "mel_nan": (lambda d, t: ["vocode", _mel_file(t, float("nan")), t / "out.wav", "--model", d], "mel.npy has 1 NaN or infinite value"),
    "mel_inf": (lambda d, t: ["vocode", _mel_file(t, float("-inf")), t / "out.wav", "--model", d], "mel.npy has 1 NaN or infinite value"),
    "output_folder_missing": (lambda d, t: ["vocode", _mel_file(t, 0.0), t / "missing" / "out.wav", "--model", d], r"output .*missing/out.wav: the folder .*missing does not exist"),
    "output_mp3": (lambda d, t: ["vocode", _mel_file(t, 0.0), t / "out.mp3", "--model", d], r"output .*out.mp3: only WAV is written"),
    "output_is_folder": (lambda d, t: ["vocode", _mel_file(t, 0.0), t / "dir.wav", "--model", d], r"output .*dir.wav is a folder"),
    "input_missing": (lambda d, t: ["vocode", t / "nothing.wav", t / "out.wav", "--model", d], r"input .*nothing.wav does not exist"),
    "input_kind": (lambda d, t: ["vocode", d / "config.json", t / "out.wav", "--model", d], r"config.json: must be a .wav, .npy or .pt file"),
    "bench_json_folder_missing": (lambda d, t: ["bench", "--json", t / "missing" / "b.json"], r"--json .*missing/b.json: the folder .*missing does not exist"),
    "wav_too_short": (lambda d, t: ["vocode", _wav_file(t, 100), t / "out.wav", "--model", d], r"short.wav: wav must have shape .* more than 384 samples, got shape \(1, 100\)"),
    "device_word": (lambda d, t: ["vocode", _mel_file(t, 0.0), t / "out.wav", "--model", d, "--device", "gpu"], "--device 'gpu' is not a device"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_command_line_refuses_before_loading_and_writes_nothing(capsys, model_dir, tmp_path, case):
    make_argv, message = CLI_CASES[case]
    (tmp_path / "dir.wav").mkdir()
    _broken_weights(model_dir)
    before = sorted(os.listdir(tmp_path))
    code, out, err = main(capsys, *make_argv(model_dir, tmp_path))
    assert code == 2
    assert re.search(message, err), err
    assert "Traceback" not in err and "not a readable PyTorch checkpoint" not in err
    inputs = ("mel.npy", "short.wav")
    assert sorted(p for p in os.listdir(tmp_path) if p not in inputs) == [p for p in before if p not in inputs]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_device_on_a_cpu_torch_is_one_line(capsys, model_dir, tmp_path, device):
    code, out, err = main(capsys, "vocode", _mel_file(tmp_path, 0.0), tmp_path / "out.wav", "--model", model_dir, "--device", device)
    assert code == 2
    assert err.strip().count("\n") == 0, err
    assert f"--device {device}:" in err and "--device cpu" in err
    assert not (tmp_path / "out.wav").exists()


def test_non_finite_audio_is_not_written_as_pcm(capsys, model_dir, tmp_path, monkeypatch):
    # A model whose output is NaN (finite mel): the command fails, and out.wav never appears.
    monkeypatch.setattr(BigVGAN, "forward", lambda self, mel: torch.full((mel.shape[0], 1, mel.shape[-1] * 256), float("nan")))
    code, out, err = main(capsys, "vocode", _mel_file(tmp_path, 0.0), tmp_path / "out.wav", "--model", model_dir)
    assert code == 2 and "1792 of 1792 audio samples are NaN or infinite" in err
    assert not (tmp_path / "out.wav").exists()


# --- the official package builds the same configs (item 16) ----------------------------------

# (upsample_initial_channel, upsample_rates, upsample_kernel_sizes): channel counts that do not
# halve evenly; the official code floors them.
ODD_CHANNEL_CONFIGS = [
    (18, [2, 2], [4, 4]),
    (48, [2, 2, 2, 2, 2], [4, 4, 4, 4, 4]),
    (1000, [4, 2], [8, 4]),
    (37, [3, 2], [3, 4]),
]


@pytest.fixture(scope="module")
def official():
    pytest.importorskip("librosa", reason="NVIDIA's package imports librosa")
    bigvgan = pytest.importorskip("bigvgan.bigvgan", reason="NVIDIA's package (pip install --no-deps bigvgan)")
    from bigvgan.env import AttrDict

    return lambda h: bigvgan.BigVGAN(AttrDict(dict(h)))


@pytest.mark.parametrize("channels, rates, kernels", ODD_CHANNEL_CONFIGS, ids=lambda v: str(v))
def test_official_configs_build_with_the_same_arithmetic(official, channels, rates, kernels):
    h = tiny_config()
    h.update(upsample_initial_channel=channels, upsample_rates=rates, upsample_kernel_sizes=kernels, hop_size=int(np.prod(rates)))
    torch.manual_seed(0)
    theirs = official(h).eval()
    ours = BigVGAN.from_state_dict(h, theirs.state_dict(), backend="torch")
    assert ours.conv_post.weight.shape[1] == channels // 2 ** len(rates)
    mel = torch.randn(1, 80, 5)
    with torch.inference_mode():
        expected = theirs(mel)
        torch.testing.assert_close(ours(mel), expected, rtol=1e-5, atol=1e-6)
    assert expected.shape == (1, 1, 5 * h["hop_size"])


@pytest.mark.parametrize("case", ["hop_not_product", "even_resblock_kernel", "odd_kernel_minus_rate", "fmin_above_fmax", "string_bool"])
def test_what_the_official_code_lets_through_fails_early_here(official, case):
    change, message = BAD_CONFIGS[case]
    h = tiny_config()
    change(h)
    official(h)  # builds: its failure, or its wrong output, comes later
    with pytest.raises(ConfigError, match=message):
        load_config(h)
