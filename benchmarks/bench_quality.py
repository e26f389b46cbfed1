"""Half-precision quality on the CPU: candidate precision schemes against the same model in float64.

Every candidate runs the generator's own modules (random weights: no checkpoint is reachable here)
with each piece's dtype chosen separately, so one table says which rounding costs what:

- ``conv``: dtype of every convolution's input and weights (the tensor-core dtype);
- ``resid``: dtype of the residual stream of the AMP blocks and of the ``xs / num_kernels`` averages;
- ``act_in``: whether an activation reads the residual stream as stored (``resid``) or a copy cast to
  the convolution dtype first (``conv``);
- ``act_math``: ``f32`` computes every activation in float32 and rounds once (what the fused GPU
  kernels do; the CPU has no fused kernel, so this emulates them), ``io`` computes in its input's
  dtype (NVIDIA's torch path);
- ``ends``: dtype of ``conv_pre``, ``activation_post`` and ``conv_post``;
- ``ups``: dtype of the upsampling (transposed) convolutions (default: ``conv``); ``"tf32"`` rounds
  their inputs and weights to TF32 (10 mantissa bits, round to nearest) and computes in float32,
  as cuDNN does for a float32 convolution under PyTorch's default ``allow_tf32``;
- ``out``: dtype of the returned waveform.

Metrics, against float64: relative L2 of the waveform, and the multi-resolution STFT distance of
Parallel WaveGAN (spectral convergence + mean |log magnitude| difference, averaged over FFT sizes
512 / 1024 / 2048, hop = FFT / 4, Hann window). Mels: a synthesized voiced speech-like signal through
``bigvgan_fast.mel_spectrogram``, and a standard normal mel. The library's modes
(``BigVGAN.to_half_precision``) are measured as extra rows on the same model, as the CPU runs them
(torch backend: an activation computes in its input's dtype).

Weights (``--weights``): ``scaled`` (:func:`unit_scale_weights`: the plain casts err about as much as
NVIDIA's checkpoint does on the H200) and ``official`` (the official random init: the biases dominate,
the waveform is near-silent and hardly depends on the mel, and its MR-STFT distance is dominated by
near-empty bins; a model in which the residual stream's rounding dominates). Two reference rows bound
what a mode can reach: ``tf32`` and ``bf16-in`` round only the convolutions' inputs and weights.

    python benchmarks/bench_quality.py                       # small model (fast)
    python benchmarks/bench_quality.py --channels 1536 --frames 16 --only-modes   # the real config
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

import bigvgan_fast
from bigvgan_fast import BigVGAN, anti_alias_activation_ref, load_config

# The signals, weights and metrics the tests check the modes with (tests/quality.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from quality import multi_resolution_stft_distance, relative_l2, speech_like_mel, to_tf32, unit_scale_weights  # noqa: E402

BASE_CONFIG = "bigvgan_v2_22khz_80band_256x"
HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}
F32, F64 = torch.float32, torch.float64


# --- inputs --------------------------------------------------------------------------------------


def random_mel(config, frames: int, seed: int = 1) -> torch.Tensor:
    h = load_config(config)
    return torch.randn(1, h.num_mels, frames, generator=torch.Generator().manual_seed(seed))


# --- the candidates ------------------------------------------------------------------------------


# Convolutions whose inputs and weights are rounded but computed and written in float32: "tf32"
# (cuDNN's float32 convolutions under PyTorch's default) and "bf16-in" (the floor of any mode whose
# convolutions all read bfloat16).
ROUNDED_CONV = {"tf32": to_tf32, "bf16-in": lambda t: t.to(torch.bfloat16).float()}


def _conv(m: nn.Module, x: torch.Tensor, dtype) -> torch.Tensor:
    if dtype in ROUNDED_CONV:
        rounded = ROUNDED_CONV[dtype]
        w, x = rounded(m.weight), rounded(x)
        b = None if m.bias is None else m.bias.float()
    else:
        w = m.weight.to(dtype)
        b = None if m.bias is None else m.bias.to(dtype)
        x = x.to(dtype)
    if isinstance(m, nn.ConvTranspose1d):
        return F.conv_transpose1d(x, w, b, m.stride, m.padding, m.output_padding, m.groups, m.dilation)
    return F.conv1d(x, w, b, m.stride, m.padding, m.dilation, m.groups)


def _act(a, x: torch.Tensor, out_dtype: torch.dtype, math_mode: str) -> torch.Tensor:
    dtype = F32 if math_mode == "f32" and x.dtype != F64 else x.dtype
    beta = None if a.act.beta is None else a.act.beta.to(dtype)
    y = anti_alias_activation_ref(
        x.to(dtype),
        a.act.alpha.to(dtype),
        beta,
        alpha_logscale=a.act.alpha_logscale,
        upsample_filter=a.upsample.filter.to(dtype),
        downsample_filter=a.downsample.lowpass.filter.to(dtype),
    )
    return y.to(out_dtype)


def candidate_forward(model: BigVGAN, mel: torch.Tensor, *, conv, resid, act_in="conv", act_math="f32", ends=None, out=None,
                      ups=None):
    """The generator's forward with each piece's dtype given (see the module docstring).
    ``model`` holds float64 parameters; each piece rounds them to its dtype."""
    store = F32 if conv in ROUNDED_CONV else conv  # dtype the convolutions' inputs are held in
    ends = store if ends is None else ends
    out = ends if out is None else out
    ups = conv if ups is None else ups
    x = _conv(model.conv_pre, mel, ends).to(resid)
    for i in range(model.num_upsamples):
        x = _conv(model.ups[i][0], x, ups).to(resid)
        xs = None
        for j in range(model.num_kernels):
            block = model.resblocks[i * model.num_kernels + j]
            h_res = x
            acts = block.activations
            for n, (c1, c2) in enumerate(zip(block.convs1, block.convs2)):
                a_in = h_res if act_in == "resid" else h_res.to(store)
                h = _conv(c1, _act(acts[2 * n], a_in, store, act_math), conv)
                h = _conv(c2, _act(acts[2 * n + 1], h, store, act_math), conv)
                h_res = h_res + h.to(resid)
            xs = h_res if xs is None else xs + h_res
        x = xs / model.num_kernels
    x = _act(model.activation_post, x if act_in == "resid" else x.to(store), ends, act_math)
    x = _conv(model.conv_post, x, ends)
    x = torch.tanh(x) if model.use_tanh_at_final else x.clamp(-1.0, 1.0)
    return x.to(out)


def candidates(half: str) -> list[tuple[str, dict]]:
    d = HALF[half]
    return [
        (f"{half} cast, torch activations (NVIDIA's .{'bfloat16' if half == 'bf16' else 'half'}())",
         dict(conv=d, resid=d, act_math="io")),
        (f"{half} cast, float32 activation math (ours today)", dict(conv=d, resid=d)),
        ("  + conv_pre/activation_post/conv_post float32, float32 out", dict(conv=d, resid=d, ends=F32)),
        ("  + residual/averages float32, activation reads a half copy", dict(conv=d, resid=F32, act_in="conv")),
        ("  + residual/averages float32, activation reads float32", dict(conv=d, resid=F32, act_in="resid")),
        ("  residual f32 + act reads f32 + ends f32, float32 out", dict(conv=d, resid=F32, act_in="resid", ends=F32)),
        ("  residual f32 + act reads f32 + ends f32, half out", dict(conv=d, resid=F32, act_in="resid", ends=F32, out=d)),
        ("  residual f32 + act reads half + ends f32, float32 out", dict(conv=d, resid=F32, act_in="conv", ends=F32)),
        ("  residual f32 + act reads f32 + ends f32 + upsampling float32 (TF32): the mixed mode on a GPU",
         dict(conv=d, resid=F32, act_in="resid", ends=F32, ups="tf32")),
        ("  residual f32 + act reads f32 + ends f32 + upsampling exact float32 (allow_tf32 off)",
         dict(conv=d, resid=F32, act_in="resid", ends=F32, ups=F32)),
    ]


# --- driver --------------------------------------------------------------------------------------


def build_model(channels: int, seed: int, weight_scale: str, residual_gain: float = 0.3) -> BigVGAN:
    """The 22 kHz v2 structure with ``channels`` initial channels, random weights, float64.

    ``weight_scale``: ``official`` keeps the official init, ``scaled`` applies :func:`unit_scale_weights`
    (with ``residual_gain``: how much the AMP blocks shape the signal).
    """
    config = dataclasses.replace(load_config(BASE_CONFIG), upsample_initial_channel=channels)
    torch.manual_seed(seed)
    model = BigVGAN(config, use_weight_norm=False, backend="torch").eval().double()
    if weight_scale == "scaled":
        unit_scale_weights(model, seed, residual_gain)
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=256, help="upsample_initial_channel (real config: 1536)")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--weights", choices=["official", "scaled"], nargs="+", default=["scaled", "official"])
    p.add_argument("--mels", choices=["speech", "random"], nargs="+", default=["speech", "random"])
    p.add_argument("--halves", choices=list(HALF), nargs="+", default=list(HALF))
    p.add_argument("--only-modes", action="store_true", help="only the float32 and rounding-floor rows, the casts and the library's modes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--residual-gain", type=float, default=0.3,
                   help="scaled weights: the AMP blocks' convolutions' scale (larger: the blocks shape more)")
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args()

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    rows = []
    print(f"# CPU quality vs float64 | {platform.processor() or platform.machine()} | torch {torch.__version__} | "
          f"{BASE_CONFIG} structure, upsample_initial_channel {args.channels}, {args.frames} frames, random weights")
    print("| weights | mel | dtype | candidate | rel-L2 | MR-STFT | s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for weights in args.weights:
        model64 = build_model(args.channels, args.seed, weights, args.residual_gain)
        for mel_kind in args.mels:
            mel = (speech_like_mel if mel_kind == "speech" else random_mel)(model64.config, args.frames)
            with torch.inference_mode():
                ref = candidate_forward(model64, mel.double(), conv=F64, resid=F64, act_math="io")
                runs = [
                    ("float32", "float32 everything", dict(conv=F32, resid=F32)),
                    ("tf32", "conv inputs+weights rounded to TF32, float32 otherwise (a GPU's float32 model)",
                     dict(conv="tf32", resid=F32, act_in="resid", ends=F32)),
                    ("bf16-in", "conv inputs+weights rounded to bf16, float32 otherwise (bf16 floor)",
                     dict(conv="bf16-in", resid=F32, act_in="resid", ends=F32)),
                    ("bf16-in", "  only the upsampling convolutions' rounded to bf16",
                     dict(conv=F32, resid=F32, act_in="resid", ends=F32, ups="bf16-in")),
                    ("bf16-in", "  only the AMP blocks' convolutions' rounded to bf16",
                     dict(conv="bf16-in", resid=F32, act_in="resid", ends=F32, ups=F32)),
                ]
                for half in args.halves:
                    runs += [(half, name, kw) for name, kw in candidates(half)
                             if not args.only_modes or "cast" in name or "mixed mode" in name]
                for dtype_name, name, kw in runs:
                    start = time.perf_counter()
                    y = candidate_forward(model64, mel, **kw)
                    rows.append(_row(weights, mel_kind, dtype_name, name, y, ref, time.perf_counter() - start))
                for half in args.halves:
                    for mode in ("cast", "mixed"):
                        model = copy.deepcopy(model64).to_half_precision(HALF[half], mode)
                        start = time.perf_counter()
                        y = model(mel if mode == "mixed" else mel.to(HALF[half]))
                        rows.append(_row(weights, mel_kind, half, f"library: to_half_precision({half}, {mode!r})",
                                         y, ref, time.perf_counter() - start))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        meta = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(), device="cpu", torch=torch.__version__,
                    bigvgan_fast=bigvgan_fast.__version__, channels=args.channels, frames=args.frames,
                    seed=args.seed, residual_gain=args.residual_gain,
                    config=BASE_CONFIG, weights="random")
        with open(args.out, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)


def _row(weights, mel_kind, dtype_name, name, y, ref, seconds) -> dict:
    row = dict(weights=weights, mel=mel_kind, dtype=dtype_name, candidate=name, out_dtype=str(y.dtype),
               rel_l2=relative_l2(y, ref), mr_stft=multi_resolution_stft_distance(y, ref), seconds=seconds)
    print(f"| {weights} | {mel_kind} | {dtype_name} | {name} | {row['rel_l2']:.2e} | {row['mr_stft']:.2e} | {seconds:.1f} |",
          flush=True)
    return row


if __name__ == "__main__":
    main()
