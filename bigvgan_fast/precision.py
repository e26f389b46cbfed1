"""Half-precision inference that stays close to float32: :meth:`BigVGAN.to_half_precision`.

Two modes, for ``dtype`` float16 or bfloat16:

- ``"cast"``: every parameter in ``dtype`` (``model.to(dtype)``), the residual stream too. What
  ``model.half()`` / ``model.bfloat16()`` give; unguarded.
- ``"mixed"`` (the default of ``from_pretrained(dtype=...)``): the upsampling and AMP-block
  convolutions, nearly all of the work, run in ``dtype``; the residual stream and the
  ``xs / num_kernels`` averages stay float32, and so do ``conv_pre``, ``activation_post`` and
  ``conv_post`` (at the mel rate and at one output channel: little work), every activation's
  parameters and filter taps, and the returned waveform (rounding the waveform alone to bfloat16
  costs 1.1e-3 relative L2). Each first activation of an AMP layer reads the float32 residual and
  writes its convolution's ``dtype``.

What it buys (benchmarks/bench_quality.py, CPU, random weights, relative L2 to float64): with weights
scaled so that the plain casts err as NVIDIA's checkpoint does on the H200, bf16 8.2e-3 against the
cast's 1.21e-2 and fp16 1.3e-3 against 1.8e-3; the floor of any mode whose convolutions read bf16
inputs and weights is 6.8e-3 there. Under the official random init, where rounding the residual
stream dominates, bf16 4.9e-4 against 9.1e-3 (5.1e-3 with float32 activation math).

In float16 the mixed mode guards against overflow (float16 ends at 65504): every call checks its
float32 waveform before the final clamp (which would turn inf into a silent +-1). If it is not
finite and the mel is, the call is run again with every convolution checked, and the first float16
one to meet or make inf / NaN moves to bfloat16 (same tensor-core speed, float32's range) for good,
until the waveform is finite; a RuntimeWarning names the layers moved. A waveform that stays not
finite raises ``FloatingPointError``. A mel with NaN or inf raises ``ValueError``.

Full-tensor passes the mixed mode adds over the plain cast. Each AMP layer's first activation reads
the float32 residual and writes its convolution's dtype itself (the AMP blocks call
``Activation1d(x, out_dtype=...)``; the fused kernels compute in float32 and round once, at the
store), so an AMP layer runs the kernels of the plain cast: two activations, two convolutions, the
residual add. The 54 casts of the activation's output (``a1(x).to(...)``, one per AMP layer, 3 per
AMPBlock1, +20% launches per block) are gone on the triton and cuda backends; the torch backend
converts inside the activation, as the cast did. What remains: per upsampling stage two casts (the
float32 average to ``dtype`` before the transposed convolution, its output back to float32): 12 in
the 22 kHz model, 6 bytes per element each. Bytes per element over the plain cast, per AMP layer:
+6 (the first activation reads 4 bytes instead of 2, +2; the residual add reads and writes float32,
+4), where the cast made it +14 (the activation also wrote float32, +2, and the cast read 4 and
wrote 2, +6). Per stage the block sums and the average (``num_kernels - 1`` adds and a division)
read and write float32: +6 bytes per element per add, +4 for the division. Not yet timed on a GPU
(``benchmarks/bench_activation.py`` times the float32 -> bfloat16 activation beside the float32
one and the old activation-then-cast).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .modules import parameter_dtype

MODES = ("mixed", "cast")
HALF_DTYPES = (torch.float16, torch.bfloat16)
RESIDUAL_DTYPE = torch.float32
FALLBACK_DTYPE = torch.bfloat16
GUARD_ATTRIBUTE = "_float16_guard"  # set by to_half_precision (see _note_guard)


def check_precision_mode(mode) -> None:
    if mode not in MODES:
        raise ValueError(f"precision must be one of {', '.join(map(repr, MODES))}, got {mode!r}")


def check_half_precision(dtype, mode) -> None:
    if not isinstance(dtype, torch.dtype) or dtype not in HALF_DTYPES:
        raise TypeError(f"dtype must be torch.float16 or torch.bfloat16, got {dtype!r}")
    check_precision_mode(mode)


def half_convolutions(model) -> list[nn.Module]:
    """The convolutions the mixed mode runs in half precision: upsampling and AMP blocks."""
    ups = [up for stage in model.ups for up in stage]
    blocks = [m for block in model.resblocks for m in block.modules() if isinstance(m, nn.Conv1d)]
    return ups + blocks


def to_half_precision(model, dtype: torch.dtype = torch.bfloat16, mode: str = "mixed"):
    """Put ``model`` in half precision ``dtype`` by ``mode`` (see the module docstring); in place."""
    check_half_precision(dtype, mode)
    rounded = sorted({p.dtype for p in model.parameters() if p.dtype in HALF_DTYPES}, key=str)
    if rounded:
        raise ValueError(
            f"to_half_precision needs a float32 or float64 model, this one holds {rounded[0]} parameters "
            "(already rounded); call it on the model before any cast"
        )
    if mode == "cast":
        model.precision_mode = None
        return model.to(dtype)
    model.float()
    names = {id(m): name for name, m in model.named_modules()}
    too_large = []
    for conv in half_convolutions(model):
        if dtype == torch.float16 and any(bool(p.abs().max() > torch.finfo(torch.float16).max) for p in conv.parameters()):
            too_large.append(names[id(conv)])
            conv.to(FALLBACK_DTYPE)
        else:
            conv.to(dtype)
    if too_large:
        _warn_fallback(too_large, "their weights exceed float16's range")
    model.precision_mode = "mixed"
    _note_guard(model)
    return model


def _note_guard(model) -> None:
    """Record whether any half convolution runs in float16 (then every forward checks its output):
    decided when the mode is set and when the guard moves a layer, not walked at every call."""
    setattr(model, GUARD_ATTRIBUTE, any(parameter_dtype(conv) == torch.float16 for conv in half_convolutions(model)))


def _warn_fallback(names: list[str], why: str) -> None:
    warnings.warn(
        f"bigvgan_fast: {len(names)} convolution(s) run in bfloat16 instead of float16 because {why}: "
        + ", ".join(names),
        RuntimeWarning,
        stacklevel=3,
    )


def mixed_forward(model, mel: torch.Tensor) -> torch.Tensor:
    """``BigVGAN.forward`` in the mixed mode: its layers with a float32 residual stream, and the
    float16 guard."""
    x = model.waveform_before_clamp(mel, RESIDUAL_DTYPE)
    if syncs_each_call(model) and not bool(torch.isfinite(x).all()):
        x = _rerun_with_fallback(model, mel)
    return model.final_activation(x)


def syncs_each_call(model) -> bool:
    """Whether ``model``'s forward reads a result on the host (the float16 guard): such a forward
    cannot be captured in a CUDA graph."""
    return getattr(model, "precision_mode", None) == "mixed" and getattr(model, GUARD_ATTRIBUTE, False)


def _rerun_with_fallback(model, mel: torch.Tensor) -> torch.Tensor:
    """Run again until the waveform is finite, each time moving to bfloat16, for good, the first
    convolution (in execution order) that meets or makes a non-finite value, if it runs in float16.
    A float16 convolution's input is non-finite when float32 values beyond 65504 were cast for it:
    in bfloat16 the same cast is finite. Anything else non-finite first raises."""
    if not bool(torch.isfinite(mel).all()):
        raise ValueError("mel holds NaN or inf values")
    names = {id(m): name for name, m in model.named_modules()}
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]
    moved: list[str] = []
    for _ in range(len(convs) + 1):
        first: list[nn.Module] = []

        def spot(conv, inputs, output):
            if not first and not (bool(torch.isfinite(inputs[0]).all()) and bool(torch.isfinite(output).all())):
                first.append(conv)

        handles = [conv.register_forward_hook(spot) for conv in convs]
        try:
            x = model.waveform_before_clamp(mel, RESIDUAL_DTYPE)
        finally:
            for handle in handles:
                handle.remove()
        if bool(torch.isfinite(x).all()) or not first or parameter_dtype(first[0]) != torch.float16:
            break
        first[0].to(FALLBACK_DTYPE)
        moved.append(names[id(first[0])])
    if moved:
        _note_guard(model)
        _warn_fallback(moved, "float16 overflowed in or before them (the model keeps this)")
    if not bool(torch.isfinite(x).all()):
        where = f"; first at {names[id(first[0])]} ({parameter_dtype(first[0])})" if first else ""
        raise FloatingPointError(
            f"the float16 model's waveform is not finite although the mel is{where}"
            + (f", after moving {len(moved)} convolution(s) to bfloat16" if moved else "")
            + "; use dtype=torch.bfloat16 or float32"
        )
    return x
