"""Signals, weights and metrics of the half-precision quality checks, shared by the tests
(tests/test_half_precision.py) and benchmarks/bench_quality.py, which imports this file by path:
a speech-like mel, random weights scaled so that every layer shapes the signal, TF32 rounding, and
relative L2 and the multi-resolution STFT distance against a reference."""

from __future__ import annotations

import math

import torch
from torch import nn

from bigvgan_fast import BigVGAN, load_config, mel_spectrogram

F64 = torch.float64


# --- inputs --------------------------------------------------------------------------------------


def speech_like_wav(samples: int, sampling_rate: int, seed: int = 0) -> torch.Tensor:
    """A voiced, vowel-like signal: a band-limited glottal source (harmonics falling 12 dB/octave)
    shaped by three moving formant resonances, with a pitch contour, syllable-rate loudness and a
    little aspiration noise. Peak 0.5. float64, shape (samples,)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples, dtype=F64) / sampling_rate
    f0 = 130 + 35 * torch.sin(2 * math.pi * 1.3 * t) + 10 * torch.sin(2 * math.pi * 4.1 * t + 1.0)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sampling_rate
    formants = torch.stack(
        [
            650 + 150 * torch.sin(2 * math.pi * 2.0 * t),
            1300 + 400 * torch.sin(2 * math.pi * 1.5 * t + 0.7),
            2600 + 200 * torch.sin(2 * math.pi * 0.9 * t + 2.0),
        ]
    )
    bandwidths = torch.tensor([90.0, 110.0, 160.0], dtype=F64)[:, None]
    wav = torch.zeros(samples, dtype=F64)
    for k in range(1, int(sampling_rate / 2 / 100)):
        freq = k * f0
        # Magnitude of a cascade of second-order resonances at this harmonic's frequency.
        gain = torch.prod(1 / torch.sqrt((1 - (freq / formants) ** 2) ** 2 + (freq * bandwidths / formants**2) ** 2), 0)
        wav += torch.where(freq < sampling_rate / 2 - 200, gain / k**2 * torch.sin(k * phase), 0.0)
    wav += 0.02 * wav.abs().max() * torch.randn(samples, generator=g, dtype=F64)
    loudness = 0.35 + 0.65 * torch.sin(math.pi * 3.0 * t).abs()
    wav = wav * loudness
    return 0.5 * wav / wav.abs().max()


def speech_like_mel(config, frames: int) -> torch.Tensor:
    h = load_config(config)
    wav = speech_like_wav(frames * h.hop_size, h.sampling_rate)
    return mel_spectrogram(wav.float(), h)


# --- weights -------------------------------------------------------------------------------------


def unit_scale_weights(model: BigVGAN, seed: int = 0, residual_gain: float = 0.3) -> BigVGAN:
    """Redraw every convolution's weights with std 1/sqrt(fan_in) (the AMP blocks' ``residual_gain``
    times that, conv_post's 250x smaller), biases from N(0, 0.01) and the activations' log-scale
    alpha/beta from N(0, 0.5), in place: a stand-in for a trained model in which every layer shapes
    the signal. With gain 0.3 the tiny model's errors are those NVIDIA's 22 kHz checkpoint showed on
    the H200 (bf16 cast 1.3e-2 vs 1.07e-2, fp16 cast 2.0e-3 vs 1.63e-3); with gain 1 they grow 20x
    through the layers. Under the official init (N(0, 0.01) weights, PyTorch's
    default biases) the biases dominate: the waveform barely depends on the mel."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
                w = m.weight
                fan_in = w.shape[1] * w.shape[2] if isinstance(m, nn.Conv1d) else w.shape[0] * w.shape[2] // m.stride[0]
                w.copy_(torch.randn(w.shape, generator=g, dtype=F64) / math.sqrt(fan_in))
                if m.bias is not None:
                    m.bias.copy_(0.01 * torch.randn(m.bias.shape, generator=g, dtype=F64))
        for block in model.resblocks:
            for m in block.modules():
                if isinstance(m, nn.Conv1d):
                    m.weight.mul_(residual_gain)
        # The residual stream grows to ~100 through the stages; 1/250 keeps the waveform inside
        # the final clamp (which would hide errors), as a trained model's is.
        model.conv_post.weight.mul_(0.004)
        for a in model.activations():
            for p in (a.act.alpha, a.act.beta):
                if p is not None:
                    p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=F64))
    return model


# --- rounding and metrics ----------------------------------------------------------------------


def to_tf32(t: torch.Tensor) -> torch.Tensor:
    """``t`` rounded to TF32 (float32's range, 10 mantissa bits; nearest, ties away from zero, as
    the tensor cores' conversion), as float32. Finite inputs only."""
    bits = t.float().contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def relative_l2(y: torch.Tensor, ref: torch.Tensor) -> float:
    y, ref = y.double().flatten(), ref.double().flatten()
    return float(torch.linalg.vector_norm(y - ref) / torch.linalg.vector_norm(ref))


def multi_resolution_stft_distance(y: torch.Tensor, ref: torch.Tensor, fft_sizes=(512, 1024, 2048)) -> float:
    """Spectral convergence + log-magnitude L1 (Yamamoto et al., Parallel WaveGAN), mean over FFT sizes."""
    y, ref = y.double().reshape(-1), ref.double().reshape(-1)
    total = 0.0
    for n_fft in fft_sizes:
        window = torch.hann_window(n_fft, dtype=F64)
        spec = lambda s: torch.stft(s, n_fft, n_fft // 4, n_fft, window, return_complex=True).abs().clamp_min(1e-7)
        s_y, s_ref = spec(y), spec(ref)
        convergence = torch.linalg.matrix_norm(s_ref - s_y) / torch.linalg.matrix_norm(s_ref)
        log_l1 = (s_ref.log() - s_y.log()).abs().mean()
        total += float(convergence + log_l1)
    return total / len(fft_sizes)
