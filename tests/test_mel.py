import os

import pytest
import torch
from safetensors.torch import load_file

from bigvgan_fast import load_config, mel_spectrogram
from bigvgan_fast.mel import mel_filterbank

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "mel.safetensors")


@pytest.mark.parametrize("key, fmax", [("mel_fmax_none", None), ("mel_fmax_8000", 8000.0)])
def test_mel_matches_official_golden(key, fmax):
    g = load_file(GOLDEN)
    mel = mel_spectrogram(g["wav"], "bigvgan_v2_22khz_80band_256x", fmax=fmax)
    assert mel.shape == g[key].shape == (1, 80, 64)
    torch.testing.assert_close(mel, g[key], rtol=0, atol=2e-5)


def test_config_fmax_is_used():
    g = load_file(GOLDEN)
    h = load_config("bigvgan_v2_22khz_80band_fmax8k_256x")
    assert h.fmax == 8000
    torch.testing.assert_close(mel_spectrogram(g["wav"], h), g["mel_fmax_8000"], rtol=0, atol=2e-5)


def test_batched_and_frame_count():
    wav = torch.randn(3, 256 * 20).clamp(-1, 1)
    mel = mel_spectrogram(wav)
    assert mel.shape == (3, 80, 20)
    torch.testing.assert_close(mel[1:2], mel_spectrogram(wav[1]), rtol=0, atol=1e-5)


def test_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa", reason="librosa is an optional test oracle (pip install librosa)")
    for sr, n_fft, n_mels, fmax in [(22050, 1024, 80, None), (24000, 1024, 100, None), (44100, 2048, 128, 8000)]:
        ours = mel_filterbank(sr, n_fft, n_mels, 0.0, fmax)
        theirs = torch.from_numpy(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0, fmax=fmax))
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_bad_wav_inputs():
    with pytest.raises(TypeError, match="floating"):
        mel_spectrogram(torch.ones(5000, dtype=torch.int16))
    with pytest.raises(ValueError, match="shape"):
        mel_spectrogram(torch.randn(1, 1, 5000))
    with pytest.raises(ValueError, match="samples"):
        mel_spectrogram(torch.randn(100))
