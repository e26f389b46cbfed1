"""The mel front end of BigVGAN (the official ``meldataset.mel_spectrogram``), in torch only.

The filterbank is librosa's Slaney-scale, area-normalised ``librosa.filters.mel`` (computed here in
float64 and rounded once to float32, as librosa returns it); tests check it against librosa.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .config import DEFAULT_CONFIG, load_config

_F_SP = 200.0 / 3  # Slaney: linear below 1 kHz at 3 mels per 200 Hz ...
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0  # ... and logarithmic above, 27 steps per factor 6.4


def hz_to_mel(freq: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale (librosa's default, ``htk=False``)."""
    linear = freq / _F_SP
    log = _MIN_LOG_MEL + torch.log(torch.clamp(freq, min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(freq >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mels: torch.Tensor) -> torch.Tensor:
    linear = _F_SP * mels
    log = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mels - _MIN_LOG_MEL))
    return torch.where(mels >= _MIN_LOG_MEL, log, linear)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sampling_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) float32 Slaney mel filterbank, as ``librosa.filters.mel``."""
    fmax = sampling_rate / 2.0 if fmax is None else float(fmax)
    f64 = torch.float64
    fft_freqs = torch.arange(n_fft // 2 + 1, dtype=f64) * (sampling_rate / n_fft)
    mel_edges = torch.linspace(
        float(hz_to_mel(torch.tensor(float(fmin), dtype=f64))), float(hz_to_mel(torch.tensor(fmax, dtype=f64))), n_mels + 2, dtype=f64
    )
    hz_edges = mel_to_hz(mel_edges)
    widths = torch.diff(hz_edges)
    ramps = hz_edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0)
    weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    return weights.to(torch.float32)


@functools.lru_cache(maxsize=16)
def _hann(win_size: int, device: torch.device) -> torch.Tensor:
    return torch.hann_window(win_size, device=device)


def mel_spectrogram(wav: torch.Tensor, config=DEFAULT_CONFIG, *, fmax: float | None | str = "config") -> torch.Tensor:
    """Log-mel spectrogram of ``wav`` ((T,) or (B, T), float, nominally in [-1, 1]) as BigVGAN expects it.

    Args:
        wav: waveform at ``config.sampling_rate``.
        config: the model's config (anything :func:`load_config` takes).
        fmax: overrides ``config.fmax`` (None means sampling_rate / 2).

    Returns:
        (B, num_mels, frames) float32 log-mel, frames = T // hop_size for T a multiple of the hop.
    """
    h = load_config(config)
    if not isinstance(wav, torch.Tensor) or not wav.is_floating_point():
        raise TypeError("wav must be a floating-point torch.Tensor")
    if wav.dim() == 1:
        wav = wav.unsqueeze(0)
    padding = (h.n_fft - h.hop_size) // 2
    if wav.dim() != 2 or wav.shape[-1] <= padding:
        # A (samples, channels) array, as soundfile returns, is the usual way to get here.
        hint = " (for a (samples, channels) array pass wav.mean(-1) or wav.T)" if wav.dim() == 2 and wav.shape[0] > wav.shape[1] else ""
        raise ValueError(
            f"wav must have shape (samples,) or (batch, samples) with more than {padding} samples, "
            f"got shape {tuple(wav.shape)}{hint}"
        )
    if wav.shape[0] == 0:
        # The frame count of torch.stft(center=False) on the padded signal.
        frames = (wav.shape[-1] + 2 * padding - h.n_fft) // h.hop_size + 1
        return wav.new_zeros(0, h.num_mels, frames, dtype=torch.float32)
    fmax = h.fmax if fmax == "config" else fmax
    basis = mel_filterbank(h.sampling_rate, h.n_fft, h.num_mels, h.fmin, fmax).to(wav.device)
    wav = F.pad(wav.float().unsqueeze(1), (padding, padding), mode="reflect").squeeze(1)
    spec = torch.stft(
        wav,
        h.n_fft,
        hop_length=h.hop_size,
        win_length=h.win_size,
        window=_hann(h.win_size, wav.device),
        center=False,
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    magnitude = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
    return torch.log(torch.clamp(torch.matmul(basis, magnitude), min=1e-5))
