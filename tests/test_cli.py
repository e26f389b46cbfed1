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


def test_bench_runs_on_cpu_without_download(tmp_path):
    out = run("bench", "--config", "bigvgan_v2_22khz_80band_256x", "--frames", "4", "--repeats", "1", "--warmup", "0", "--json", str(tmp_path / "b.json"))
    assert "kHz of output" in out.stdout and "than real time" in out.stdout and "backend torch" in out.stdout
    assert "graph" not in out.stdout.split("\n", 1)[1]  # no CUDA graphs on a CPU
    import json

    result = json.loads((tmp_path / "b.json").read_text())
    assert result["output_samples"] == 4 * 256 and result["backend"] == "torch"
    eager = result["eager"]
    assert eager["min_ms"] <= eager["median_ms"] <= eager["max_ms"] and eager["mhz"] > 0 and eager["first_call_ms"] > 0


def test_bench_half_precision_modes_report_each_dtype_pair_that_ran(tmp_path):
    # The 22 kHz model: 54 AMP layers of two activations, and activation_post. In the mixed mode
    # each layer's first activation reads the float32 residual and writes bfloat16, its second
    # reads and writes bfloat16, activation_post stays float32: three calls of their own, each with
    # its backend (on a CPU "auto" is torch for all of them).
    ran = {
        "mixed": ([("torch", "float32", "bfloat16", 54), ("torch", "bfloat16", "bfloat16", 54), ("torch", "float32", "float32", 1)],
                  "backend torch for float32->bfloat16 (54 activations), bfloat16->bfloat16 (54), float32->float32 (1)"),
        "cast": ([("torch", "bfloat16", "bfloat16", 109)], "backend torch for bfloat16->bfloat16 (109 activations)"),
    }
    for precision, (rows, line) in ran.items():
        out = run("bench", "--config", "bigvgan_v2_22khz_80band_256x", "--frames", "2", "--repeats", "1", "--warmup", "0",
                  "--dtype", "bfloat16", "--precision", precision, "--json", str(tmp_path / f"{precision}.json"))
        assert f"bfloat16 ({precision})" in out.stdout and line in out.stdout, out.stdout
        import json

        result = json.loads((tmp_path / f"{precision}.json").read_text())
        assert result["precision"] == precision and result["backend"] == "torch"
        calls = [(r["backend"], r["x_dtype"], r["out_dtype"], r["activations"]) for r in result["activation_calls"]]
        assert calls == rows


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_bench_convolutions_only(dtype):
    # benchmarks/bench_tts.py's baseline: every activation replaced by its input, in the dtype the
    # next convolution reads (the AMP blocks ask for it).
    from bigvgan_fast.bench import bench_generator

    result = bench_generator("bigvgan_v2_22khz_80band_256x", frames=2, device=torch.device("cpu"), dtype=dtype,
                             repeats=1, warmup=0, conv_only=True)
    assert result["backend"] == "none (conv_only)" and result["eager"]["median_ms"] > 0


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


def in_process(capsys, *argv):
    """The command line in this process (monkeypatch reaches it): (exit code, stdout, stderr)."""
    from bigvgan_fast import cli

    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_vocode_says_what_ran(capsys, model_dir, tmp_path):
    np.save(tmp_path / "mel.npy", torch.randn(80, 5).numpy())
    code, out, err = in_process(capsys, "vocode", tmp_path / "mel.npy", tmp_path / "out.wav", "--model", model_dir)
    assert code == 0
    assert f"weights {model_dir / 'bigvgan_generator.pt'}" in out
    # what ran (backends() marks torch auto on a CPU): each activation, float32 in and out
    assert "backend auto -> torch for float32->float32 (109 activations)" in out and "float32 on cpu" in out
    assert __import__("re").search(r"in \d+\.\d\d s, \d[\d,]*\.\dx (faster|slower) than real time", out), out
    assert "0.06 s at 22050 Hz" in out  # 5 frames x 256 / 22050


def test_vocode_refuses_an_unavailable_backend_before_vocoding(capsys, model_dir, tmp_path):
    from bigvgan_fast.anti_alias import policy

    if policy.problem("cuda", "cpu", torch.float32, False) is None:
        pytest.skip("the CUDA extension runs on CPU tensors here")
    np.save(tmp_path / "mel.npy", torch.randn(80, 5).numpy())
    code, out, err = in_process(capsys, "vocode", tmp_path / "mel.npy", tmp_path / "out.wav", "--model", model_dir,
                                "--backend", "cuda")
    assert code != 0
    assert "cuda" in err and "cannot run here" in err, err
    assert "vocoding" not in err and not (tmp_path / "out.wav").exists()


def test_vocode_says_when_safetensors_wins_over_a_newer_pt(capsys, model_dir, tmp_path):
    run("convert", str(model_dir))
    pt = model_dir / "bigvgan_generator.pt"
    newer = os.path.getmtime(model_dir / "generator.safetensors") + 60
    os.utime(pt, (newer, newer))
    np.save(tmp_path / "mel.npy", torch.randn(80, 3).numpy())
    code, out, err = in_process(capsys, "vocode", tmp_path / "mel.npy", tmp_path / "out.wav", "--model", model_dir)
    assert code == 0 and f"weights {model_dir / 'generator.safetensors'}" in out
    assert "note: bigvgan_generator.pt is newer than generator.safetensors, which was loaded" in err
    assert f"convert {model_dir} --force" in err
    os.utime(pt, (newer - 120, newer - 120))  # an older .pt: nothing to say
    code, out, err = in_process(capsys, "vocode", tmp_path / "mel.npy", tmp_path / "out.wav", "--model", model_dir)
    assert code == 0 and "newer" not in err


def test_vocode_shows_progress_inside_one_chunk(capsys, model_dir, tmp_path, monkeypatch):
    from bigvgan_fast import cli

    # As if the run were slow: progress from the first residual block on.
    monkeypatch.setattr(cli, "PROGRESS_AFTER_S", 0.0)
    monkeypatch.setattr(cli, "PROGRESS_EVERY_S", 0.0)
    np.save(tmp_path / "mel.npy", torch.randn(80, 8).numpy())
    code, out, err = in_process(capsys, "vocode", tmp_path / "mel.npy", tmp_path / "out.wav", "--model", model_dir)
    assert code == 0
    shown = [float(p.split("/")[0]) for p in err.split("\r")[1:]]
    # 6 stages x 3 blocks, each weighted by its work, then the chunk's end: frames grow to the
    # whole input, never past it.
    assert len(shown) == 19 and shown == sorted(shown) and shown[0] < 1 and shown[-1] == 8, err
    assert err.split("\r")[-1].startswith("  8/8 frames (100%")
    # Runs of one chunk that end before PROGRESS_AFTER_S print none.
    monkeypatch.setattr(cli, "PROGRESS_AFTER_S", 1e9)
    code, out, err = in_process(capsys, "vocode", tmp_path / "mel.npy", tmp_path / "out.wav", "--model", model_dir)
    assert "\r" not in err


def test_vocode_names_a_stereo_mixdown(capsys, model_dir, tmp_path):
    stereo = np.stack([np.full(22050 // 8, 1000, "<i2"), np.full(22050 // 8, -1000, "<i2")], axis=1)
    with wave.open(str(tmp_path / "s.wav"), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(22050)
        f.writeframes(stereo.tobytes())
    code, out, err = in_process(capsys, "vocode", tmp_path / "s.wav", tmp_path / "out.wav", "--model", model_dir)
    assert code == 0 and f"{tmp_path / 's.wav'} has 2 channels: vocoding their average (mono)" in err
    write_wav(tmp_path / "m.wav", torch.zeros(22050 // 8), 22050)
    code, out, err = in_process(capsys, "vocode", tmp_path / "m.wav", tmp_path / "out.wav", "--model", model_dir)
    assert code == 0 and "channels" not in err


def test_float16_on_the_cpu_warns_naming_float32(capsys, model_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("the warning is for CPU runs; --device auto picks the GPU here")
    np.save(tmp_path / "mel.npy", torch.randn(80, 2).numpy())
    code, out, err = in_process(capsys, "vocode", tmp_path / "mel.npy", tmp_path / "out.wav", "--model", model_dir, "--dtype", "float16")
    assert code == 0 and "warning: float16 is very slow on the CPU" in err and "--dtype float32" in err
    code, out, err = in_process(capsys, "vocode", tmp_path / "mel.npy", tmp_path / "out.wav", "--model", model_dir)
    assert "warning" not in err


def test_convert_refuses_to_replace_without_force(model_dir):
    assert "(float32)" in run("convert", str(model_dir)).stdout
    first = (model_dir / "generator.safetensors").read_bytes()
    proc = run("convert", str(model_dir), "--dtype", "float16", check=False)
    assert proc.returncode == 2 and "generator.safetensors exists (float32)" in proc.stderr and "--force" in proc.stderr
    assert (model_dir / "generator.safetensors").read_bytes() == first
    assert "(float16)" in run("convert", str(model_dir), "--dtype", "float16", "--force").stdout
    from safetensors import safe_open

    with safe_open(model_dir / "generator.safetensors", "pt") as f:
        assert f.metadata()["dtype"] == "float16"


def test_bench_frames_are_the_ones_asked_for(tmp_path):
    # --frames 1 must run 1 frame (0 used to mean "the default"; now it is refused).
    run("bench", "--frames", "1", "--repeats", "1", "--warmup", "0", "--json", str(tmp_path / "b.json"))
    import json

    assert json.loads((tmp_path / "b.json").read_text())["frames"] == 1
