"""The command line, through subprocess as a user runs it."""

import os
import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest
import torch

from bigvgan_fast.wav import read_wav, write_wav

TINY = os.path.join(os.path.dirname(__file__), "golden", "tiny_generator")


def run(*args, env=None, check=True):
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "bigvgan_fast", *args], capture_output=True, text=True, env=full_env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(TINY, folder)
    return folder


def test_bench_runs_on_cpu_without_download(tmp_path):
    out = run("bench", "--config", "bigvgan_v2_22khz_80band_256x", "--frames", "4", "--repeats", "1", "--warmup", "0", "--json", str(tmp_path / "b.json"))
    assert "kHz" in out.stdout and "real-time" in out.stdout
    import json

    result = json.loads((tmp_path / "b.json").read_text())
    assert result["output_samples"] == 4 * 256 and result["khz"] > 0


def test_doctor_names_auto_backend_and_reasons():
    out = run("doctor", env={"TRITON_INTERPRET": "0"}).stdout
    assert "torch" in out and "<- auto" in out
    if not torch.cuda.is_available():  # on a CPU both fused backends are out, each with its reason
        assert "triton  unavailable: the Triton kernel needs a CUDA tensor" in out
        assert "cuda    unavailable: the CUDA extension" in out


def test_convert_then_vocode_wav_copy_synthesis(model_dir, tmp_path):
    assert "wrote" in run("convert", str(model_dir)).stdout
    assert (model_dir / "generator.safetensors").exists()
    t = np.arange(22050 // 4) / 22050
    wav_in = tmp_path / "in.wav"
    write_wav(wav_in, torch.from_numpy(0.5 * np.sin(2 * np.pi * 440 * t)), 22050)
    wav_out = tmp_path / "out.wav"
    proc = run("vocode", str(wav_in), str(wav_out), "--model", str(model_dir))
    assert "vocoding" in proc.stderr
    audio, rate = read_wav(wav_out)
    assert rate == 22050 and audio.numel() == (22050 // 4 // 256) * 256


@pytest.mark.parametrize("layout", ["2d.npy", "3d.pt"])
def test_vocode_mel_file(model_dir, tmp_path, layout):
    mel = torch.randn(80, 7) if layout.startswith("2d") else torch.randn(1, 80, 7)
    path = tmp_path / f"mel.{layout.split('.')[1]}"
    np.save(path, mel.numpy()) if path.suffix == ".npy" else torch.save(mel, path)
    # Chunks of 3 frames: the exact chunked path, with progress, must give the whole-sequence output.
    proc = run("vocode", str(path), str(tmp_path / "out.wav"), "--model", str(model_dir), "--chunk-frames", "3")
    assert "7/7 frames" in proc.stderr
    audio, rate = read_wav(tmp_path / "out.wav")
    assert audio.numel() == 7 * 256
    # Same samples as the Python API (to 16-bit PCM rounding).
    from bigvgan_fast import BigVGAN

    with torch.inference_mode():
        expected = BigVGAN.from_pretrained(model_dir)(mel.reshape(1, 80, 7)).reshape(-1)
    assert (audio - expected).abs().max() <= 0.5 / 32768 + 1e-7


def test_vocode_errors_are_clear_and_write_nothing(model_dir, tmp_path):
    wav_in = tmp_path / "in.wav"
    write_wav(wav_in, torch.zeros(4000), 16000)
    out = tmp_path / "out.wav"
    proc = run("vocode", str(wav_in), str(out), "--model", str(model_dir), check=False)
    assert proc.returncode == 2 and "16000 Hz" in proc.stderr and "resample" in proc.stderr
    (tmp_path / "float.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x03\x00\x01\x00\x22\x56\x00\x00\x88\x58\x01\x00\x04\x00\x20\x00data\x00\x00\x00\x00")
    proc = run("vocode", str(tmp_path / "float.wav"), str(out), "--model", str(model_dir), check=False)
    assert proc.returncode == 2 and "PCM WAV" in proc.stderr
    np.save(tmp_path / "bad.npy", np.zeros((100, 7), dtype=np.float32))
    proc = run("vocode", str(tmp_path / "bad.npy"), str(out), "--model", str(model_dir), check=False)
    assert proc.returncode == 2 and "[1, 80, frames]" in proc.stderr
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_download_offline_fails_fast_with_instructions(tmp_path):
    proc = run("download", "--dir", str(tmp_path / "ck"), env={"HF_HUB_OFFLINE": "1"}, check=False)
    assert proc.returncode == 2
    assert "Fetch config.json and bigvgan_generator.pt" in proc.stderr and str(tmp_path / "ck") in proc.stderr
    assert "Traceback" not in proc.stderr


def test_console_script_entry_point():
    exe = shutil.which("bigvgan-fast")
    if exe is None:
        pytest.skip("the package is not installed with its console script (pip install -e .)")
    assert subprocess.run([exe, "--help"], capture_output=True, text=True).stdout.count("vocode") >= 1


def test_wav_reader_refuses_8_bit(tmp_path):
    path = tmp_path / "u8.wav"
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(1)
        f.setframerate(22050)
        f.writeframes(b"\x80" * 100)
    with pytest.raises(ValueError, match="16-bit"):
        read_wav(path)


def test_wav_round_trip_and_stereo_mixdown(tmp_path):
    x = torch.linspace(-0.9, 0.9, 1000)
    write_wav(tmp_path / "a.wav", x, 24000)
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 24000 and (y - x).abs().max() <= 0.5 / 32768 + 1e-9
    stereo = np.stack([np.full(10, 1000, "<i2"), np.full(10, 3000, "<i2")], axis=1)
    with wave.open(str(tmp_path / "s.wav"), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(22050)
        f.writeframes(stereo.tobytes())
    mono, _ = read_wav(tmp_path / "s.wav")
    assert torch.allclose(mono, torch.full((10,), 2000 / 32768))
