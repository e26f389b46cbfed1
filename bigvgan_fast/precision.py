"""Half-precision inference that stays close to float32: :meth:`BigVGAN.to_half_precision`.

Two modes, for ``dtype`` float16 or bfloat16:

- ``"cast"``: every parameter in ``dtype`` (``model.to(dtype)``), the residual stream too. What
  ``model.half()`` / ``model.bfloat16()`` give; unguarded.
- ``"mixed"`` (the default of ``from_pretrained(dtype=...)``): the AMP blocks' convolutions, nearly
  all of the work (about 97% of the convolution FLOPs), run in ``dtype``; everything else stays
  float32: the residual stream and the ``xs / num_kernels`` averages, the upsampling (transposed)
  convolutions, ``conv_pre``, ``activation_post`` and ``conv_post``, every activation's parameters
  and filter taps, and the returned waveform (rounding the waveform alone to bfloat16 costs 1.1e-3
  relative L2). Each first activation of an AMP layer reads the float32 residual and writes its
  convolution's ``dtype``.

Why the upsampling convolutions: they carry the whole signal from one stage to the next, while
each AMP layer adds a correction to it, so their rounding reaches the waveform undiminished. On
the CPU error budget (benchmarks/bench_quality.py, random weights scaled so that the plain casts
err as NVIDIA's checkpoint does on the H200), rounding only the six upsampling convolutions'
inputs and weights to bfloat16 costs 6.7e-3 relative L2 of the 6.8e-3 that rounding every
convolution's costs. They are about 3% of the convolution FLOPs (2 C^2 per output sample of a
stage against about 63 C^2 in its AMP blocks). On a GPU they run as float32 convolutions, which
cuDNN computes in TF32 under PyTorch's default ``torch.backends.cudnn.allow_tf32 = True`` (10
mantissa bits, tensor-core speed); with it False they are exact float32, closer still in float16
mode, at a cost not yet measured.

In float16 the mixed mode guards against overflow (float16 ends at 65504): every call checks its
float32 waveform before the final clamp (which would turn inf into a silent +-1). If it is not
finite and the mel is, the call is run again with every convolution checked, and the first float16
one to meet or make inf / NaN moves to bfloat16 (same tensor-core speed, float32's range) for good,
until the waveform is finite; a RuntimeWarning names the layers moved. A waveform that stays not
finite raises ``FloatingPointError``. A mel with NaN or inf raises ``ValueError``. Under a CUDA
graph (:mod:`bigvgan_fast.graphs`) the check is computed on the device inside the graph
(:func:`unchecked_forward`) and read after each replay; a replay that overflowed is run again
eagerly through the guard, and the graphs are captured anew.

Full-tensor passes the mixed mode adds over the plain cast. Each AMP layer's first activation reads
the float32 residual and writes its convolution's dtype itself (the AMP blocks call
``Activation1d(x, out_dtype=...)``; the fused kernels compute in float32 and round once, at the
store), so an AMP layer runs the kernels of the plain cast: two activations, two convolutions, the
residual add. No cast of the activation's output (``a1(x).to(...)``, which was one per AMP layer,
54 in the 22 kHz model) is left on the triton and cuda backends; the torch backend converts inside
the activation. The upsampling convolutions read and write float32, the residual stream's dtype:
no cast around them either. Bytes per element over the plain cast, per AMP layer: +6 (the first
activation reads 4 bytes instead of 2, +2; the residual add reads and writes float32, +4). Per
stage the block sums and the average (``num_kernels - 1`` adds and a division) read and write
float32: +6 bytes per element per add, +4 for the division; the upsampling convolution reads and
writes float32 (+4 per input and output element) and runs in TF32, at half the tensor-core rate of
half precision, on about 3% of the FLOPs. Not yet timed on a GPU (``benchmarks/bench_activation.py``
times the float32 -> bfloat16 activation beside the float32 one and the old activation-then-cast;
``run_on_gpu.sh`` the whole model, mixed against cast).
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
# The model's half convolutions, found once (a walk of the AMP blocks costs ~0.4 ms; reading their
# 108 dtypes ~2 us), so that whether the float16 guard runs is read from the layers at every call:
# a model cast in part afterwards (``model.resblocks.half()``) or pickled is never left unguarded.
HALF_CONVOLUTIONS_ATTRIBUTE = "_half_convolutions"
# Counts the changes of a model's parameters' memory (BigVGAN._apply: to(), half(), cuda(), ...; a
# layer moved by the guard): a CUDA graph captured before one reads parameters that no longer exist
# (see graphs._parameter_signature).
VERSION_ATTRIBUTE = "_parameters_version"


def check_precision_mode(mode) -> None:
    if mode not in MODES:
        raise ValueError(f"precision must be one of {', '.join(map(repr, MODES))}, got {mode!r}")


def check_half_precision(dtype, mode) -> None:
    if not isinstance(dtype, torch.dtype) or dtype not in HALF_DTYPES:
        raise TypeError(f"dtype must be torch.float16 or torch.bfloat16, got {dtype!r}")
    check_precision_mode(mode)


def half_convolutions(model) -> list[nn.Module]:
    """The convolutions the mixed mode runs in half precision: the AMP blocks' (not the upsampling
    ones: see the module docstring)."""
    return [m for block in model.resblocks for m in block.modules() if isinstance(m, nn.Conv1d)]


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
    return model


def to_dtype(model, dtype: torch.dtype, mode: str = "mixed"):
    """The float32 ``model`` in ``dtype``: :func:`to_half_precision` by ``mode`` for float16 /
    bfloat16, a plain cast (``model.to(dtype)``) for float32 / float64."""
    if dtype in HALF_DTYPES:
        return to_half_precision(model, dtype, mode)
    return model.to(dtype)


def parameters_version(model) -> int:
    """How many times ``model``'s parameters moved or changed dtype as a whole, or a layer was moved
    by the float16 guard (0: never): part of a CUDA graph's signature."""
    return getattr(model, VERSION_ATTRIBUTE, 0)


def note_parameters_changed(model) -> None:
    setattr(model, VERSION_ATTRIBUTE, parameters_version(model) + 1)


def _kept_half_convolutions(model) -> list[nn.Module]:
    convs = model.__dict__.get(HALF_CONVOLUTIONS_ATTRIBUTE)
    if convs is None:
        convs = model.__dict__[HALF_CONVOLUTIONS_ATTRIBUTE] = half_convolutions(model)
    return convs


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
        return repaired_forward(model, mel)
    return model.final_activation(x)


def repaired_forward(model, mel: torch.Tensor) -> torch.Tensor:
    """The forward of a float16 model whose waveform was just found not finite: the guard's repair
    (layers moved to bfloat16, with a warning) and the finite waveform, or FloatingPointError."""
    return model.final_activation(_rerun_with_fallback(model, mel))


def syncs_each_call(model) -> bool:
    """Whether ``model``'s forward reads a result on the host (the float16 guard): a CUDA graph
    captures :func:`unchecked_forward` instead and reads its flag after the replay."""
    return getattr(model, "precision_mode", None) == "mixed" and any(
        parameter_dtype(conv) == torch.float16 for conv in _kept_half_convolutions(model))


def unchecked_forward(model, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(waveform, finite)``: the mixed forward without the guard's host read, for a CUDA graph to
    capture. ``finite`` is a 0-d bool tensor on the device: whether the waveform before the final
    clamp is finite. When it is False the caller must discard the waveform and call ``model(mel)``,
    whose guard repairs the model or raises."""
    x = model.waveform_before_clamp(mel, RESIDUAL_DTYPE)
    return model.final_activation(x), torch.isfinite(x).all()


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
        note_parameters_changed(model)  # one layer moved: not seen by BigVGAN._apply
        _warn_fallback(moved, "float16 overflowed in or before them (the model keeps this)")
    if not bool(torch.isfinite(x).all()):
        where = f"; first at {names[id(first[0])]} ({parameter_dtype(first[0])})" if first else ""
        raise FloatingPointError(
            f"the float16 model's waveform is not finite although the mel is{where}"
            + (f", after moving {len(moved)} convolution(s) to bfloat16" if moved else "")
            + "; use dtype=torch.bfloat16 or float32"
        )
    return x
