"""16-bit PCM WAV in and out with the standard library."""

from __future__ import annotations

import os
import wave

import numpy as np
import torch

from .files import atomic_write


class WavError(ValueError):
    """A file that is not a 16-bit PCM WAV this package can read, or audio that cannot be written as one."""


def read_wav_channels(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """(float32 samples in [-1, 1) of shape (channels, T), sampling rate)."""
    try:
        with wave.open(os.fspath(path), "rb") as f:
            channels, width, rate, frames = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
            data = f.readframes(frames)
    except (wave.Error, EOFError) as err:
        raise WavError(f"{path} is not a PCM WAV file ({err}); convert it to 16-bit PCM WAV first") from err
    if width != 2:
        raise WavError(f"{path} holds {8 * width}-bit samples; only 16-bit PCM WAV is read")
    samples = np.frombuffer(data, dtype="<i2").reshape(-1, channels).T.astype(np.float32) / 32768.0
    return torch.from_numpy(np.ascontiguousarray(samples)), rate


def read_wav(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """(float32 samples in [-1, 1) of shape (T,), sampling rate); multi-channel files are averaged to
    mono (:func:`read_wav_channels` keeps the channels)."""
    samples, rate = read_wav_channels(path)
    return samples.mean(dim=0), rate


def write_wav(path: str | os.PathLike, audio: torch.Tensor, sampling_rate: int) -> None:
    """Write mono float audio in [-1, 1] as 16-bit PCM, atomically (no partial file on failure).

    Non-finite audio is refused: PCM has no NaN, and the cast would write arbitrary samples."""
    if os.path.splitext(os.fspath(path))[1].lower() != ".wav":
        raise WavError(f"{path}: the output is written as WAV, so its name must end in .wav")
    samples = audio.detach().double().cpu().reshape(-1).numpy()
    bad = int(np.count_nonzero(~np.isfinite(samples)))
    if bad:
        raise WavError(f"not writing {path}: {bad} of {samples.size} audio samples are NaN or infinite")
    # The inverse of read_wav's scaling (1/32768), so a round trip is exact to half a step.
    pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2").tobytes()
    with atomic_write(path) as tmp:
        with wave.open(tmp, "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(int(sampling_rate))
            f.writeframes(pcm)
