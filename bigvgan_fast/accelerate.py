"""Drop-in acceleration of a BigVGAN model you already have: ``accelerate(model)``.

``accelerate`` walks any ``nn.Module`` tree and makes every anti-aliased activation with the
official structure run :func:`bigvgan_fast.anti_alias_activation` (one fused kernel) instead of its
three-step upsample / Snake / downsample path. It works on NVIDIA's ``bigvgan.BigVGAN``
(``use_cuda_kernel`` False or True: the CUDA-kernel ``Activation1d`` has the same attributes and
buffers), on ``bigvgan_fast.BigVGAN`` and on any tree that copies the official module layout.

An activation is recognised by its attributes, not its class (duck typing), as in the official code:

- ``act`` with a parameter ``alpha`` (and ``beta`` for SnakeBeta) and a flag ``alpha_logscale``;
  ``act`` must compute Snake (``beta`` absent or None) or SnakeBeta, which the attributes promise;
- ``upsample.filter`` and ``downsample.lowpass.filter``.

It is fused when both filters have 12 taps and both ratios are 2 (``upsample.ratio``,
``downsample.ratio``, ``up_ratio``, ``down_ratio`` and ``downsample.lowpass.stride``, where
present), i.e. every activation of every published BigVGAN. Others keep their own path and are
counted in one warning.

The change is in place and touches no parameter or buffer: each fused module's ``forward`` is
replaced, on that instance only, by a ``functools.partial`` of :func:`_fused_forward` that reads
``act.alpha``, ``act.beta`` and the two filters at every call. Under ``torch.no_grad`` /
``inference_mode`` it takes the lean path of ``bigvgan_fast.Activation1d``, kept in the same
:class:`~bigvgan_fast.modules.InferenceRuns` (backend and op chosen once per device and dtype,
chosen again after ``load_state_dict``, another ``accelerate`` or
:func:`~bigvgan_fast.modules.refresh_backends`, e.g. after a change of ``BIGVGAN_FAST_BACKEND``);
with gradients it calls the public op with its autograd formula. The state dict is unchanged,
``load_state_dict`` keeps working (new weights are used by the next call), the model still pickles
and deep-copies, and calling ``accelerate`` again only sets the backend. ``bigvgan_fast``'s own
``Activation1d`` already calls the fused op: there ``accelerate`` sets its ``backend``.
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

from .anti_alias import FILTER_TAPS, FUSED_TAPS_DTYPE, RATIO, anti_alias_activation, check_backend_name, default_filter
from .anti_alias.policy import choose
from .modules import INFERENCE_RUNS_ATTRIBUTE, Activation1d, InferenceRuns, fused_inference_call

# Instance attributes of a fused module: the backend its fused forward asks for, and whether its
# filters were the standard Kaiser-sinc taps when accelerate() looked.
BACKEND_ATTRIBUTE = "_bigvgan_fast_backend"
STANDARD_TAPS_ATTRIBUTE = "_bigvgan_fast_standard_taps"


def _is_standard(taps: torch.Tensor) -> bool:
    """Whether ``taps`` are the standard filter up to the rounding of their dtype (the official code
    computes them in float32, we in float64: 2.6e-8 apart). A one-time check, on the CPU."""
    if not taps.is_floating_point() or taps.numel() != FILTER_TAPS:
        return False
    tolerance = torch.finfo(taps.dtype).eps
    taps = taps.detach().reshape(-1).cpu().double()
    return torch.allclose(taps, default_filter("cpu", torch.float64).view(-1), rtol=0, atol=tolerance)


def _taps(module: nn.Module, taps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The taps to fuse with: a model cast to float16 / bfloat16 rounds its filter buffers too; for the
    standard filter the fused op then takes the exact taps in FUSED_TAPS_DTYPE (see anti_alias.op)."""
    if taps.dtype in (torch.float16, torch.bfloat16) and getattr(module, STANDARD_TAPS_ATTRIBUTE, False):
        return default_filter(x.device, FUSED_TAPS_DTYPE)
    return taps


def _note_standard_taps(module: nn.Module, *unused) -> None:
    """Record whether ``module``'s filters are the standard ones: when accelerate() fuses it, and again
    after every ``load_state_dict`` (registered as its post-load hook), so new taps are used."""
    standard = _is_standard(module.upsample.filter) and _is_standard(module.downsample.lowpass.filter)
    setattr(module, STANDARD_TAPS_ATTRIBUTE, standard)
    runs = module.__dict__.get(INFERENCE_RUNS_ATTRIBUTE)
    if runs is not None:
        runs.clear()  # chosen with the old taps


def _inference_run(module: nn.Module, x: torch.Tensor, out_dtype: None):
    """As Activation1d's inference path, (backend, call): the backend chosen once, then one op call
    per forward (writing x's dtype: ``out_dtype`` is always None here, the key InferenceRuns passes).
    Taps that are neither float32 nor the standard ones (a model cast to half precision after
    loading other taps) take the public op, which converts them at each call."""
    name = choose(getattr(module, BACKEND_ATTRIBUTE), x.device.type, x.dtype, False)
    up, down = module.upsample._buffers, module.downsample.lowpass._buffers
    taps = []
    for buffers in (up, down):
        chosen = _taps(module, buffers["filter"], x)
        if chosen is not buffers["filter"]:
            buffers = {"filter": chosen}  # the exact standard taps, fixed for this (device, dtype)
        taps.append((buffers, "filter"))
    if name == "torch" or any(b["filter"].dtype != FUSED_TAPS_DTYPE for b, _ in taps):
        # The backend chosen, not the module's: "auto" would be chosen again (from
        # BIGVGAN_FAST_BACKEND) at every call, the kept choice only for the fused backends.
        return name, functools.partial(_public_op_forward, module, backend=name)
    return name, fused_inference_call(name, x, module.act, *taps)


def _fused_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if not torch.is_grad_enabled() and not torch.compiler.is_compiling():
        runs = module.__dict__.get(INFERENCE_RUNS_ATTRIBUTE)
        if runs is not None:
            run = runs.get((x.device, x.dtype, None))
            if run is not None:
                return run(x)
        else:  # a module accelerated and pickled before its calls were kept on it
            runs = module.__dict__[INFERENCE_RUNS_ATTRIBUTE] = InferenceRuns()
        return runs.first_call(functools.partial(_inference_run, module), x)
    return _public_op_forward(module, x)


def _public_op_forward(module: nn.Module, x: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """The public op on ``backend`` (None: the one accelerate() was given)."""
    act = module.act
    return anti_alias_activation(
        x,
        act.alpha,
        getattr(act, "beta", None),
        alpha_logscale=bool(act.alpha_logscale),
        backend=getattr(module, BACKEND_ATTRIBUTE) if backend is None else backend,
        upsample_filter=_taps(module, module.upsample.filter, x),
        downsample_filter=_taps(module, module.downsample.lowpass.filter, x),
    )


def is_anti_aliased_activation(module: nn.Module) -> bool:
    """Whether ``module`` has the official anti-aliased activation's structure (fusable or not)."""
    act = getattr(module, "act", None)
    downsample = getattr(module, "downsample", None)
    return (
        act is not None
        and hasattr(act, "alpha")
        and hasattr(act, "alpha_logscale")
        and hasattr(getattr(module, "upsample", None), "filter")
        and hasattr(getattr(downsample, "lowpass", None), "filter")
    )


def _unfusable_reason(module: nn.Module) -> str | None:
    """Why the fused op cannot compute this activation, or None when it can."""
    act = module.act
    alpha, beta = act.alpha, getattr(act, "beta", None)
    if not isinstance(alpha, torch.Tensor) or alpha.dim() != 1:
        return "act.alpha is not a 1-D per-channel tensor"
    if beta is not None and (not isinstance(beta, torch.Tensor) or beta.shape != alpha.shape):
        return "act.beta is not a per-channel tensor shaped like act.alpha"
    ratios = {
        "upsample.ratio": getattr(module.upsample, "ratio", RATIO),
        "downsample.ratio": getattr(module.downsample, "ratio", RATIO),
        "up_ratio": getattr(module, "up_ratio", RATIO),
        "down_ratio": getattr(module, "down_ratio", RATIO),
        "downsample.lowpass.stride": getattr(module.downsample.lowpass, "stride", RATIO),
    }
    for name, ratio in ratios.items():
        if ratio != RATIO:
            return f"{name} is {ratio}, the fused op resamples by {RATIO}"
    filters = {"upsample.filter": module.upsample.filter, "downsample.lowpass.filter": module.downsample.lowpass.filter}
    for name, taps in filters.items():
        if not isinstance(taps, torch.Tensor) or taps.numel() != FILTER_TAPS:
            size = taps.numel() if isinstance(taps, torch.Tensor) else type(taps).__name__
            return f"{name} has {size} taps, the fused op takes {FILTER_TAPS}"
    padding_mode = getattr(module.downsample.lowpass, "padding_mode", "replicate")
    if padding_mode != "replicate":
        return f"downsample.lowpass pads with {padding_mode!r}, the fused op replicates"
    if isinstance(module, Activation1d) and not module.fusable:
        return "its act is not bigvgan_fast's Snake or SnakeBeta"
    return None


def accelerate(model: nn.Module, backend: str = "auto") -> int:
    """Make every official-structure anti-aliased activation in ``model`` run the fused op, in place.

    Args:
        model: any ``nn.Module`` tree, e.g. NVIDIA's ``bigvgan.BigVGAN`` or ``bigvgan_fast.BigVGAN``.
        backend: ``"auto"``, ``"torch"``, ``"triton"`` or ``"cuda"``, as for
            :func:`bigvgan_fast.anti_alias_activation`; it applies at each call, so an explicit
            backend that cannot run on the input's device raises there, with the reason.

    Returns:
        The number of activations that now run the fused op (the same on a second call).

    Raises:
        ValueError: ``backend`` is unknown, or ``model`` holds no activation the fused op can run.

    Warns:
        RuntimeWarning: some activations (other ratios or filter sizes) keep their own path.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_backend_name(backend)
    fusable, skipped = [], []
    for name, module in model.named_modules():
        if not is_anti_aliased_activation(module):
            continue
        reason = _unfusable_reason(module)
        if reason is None:
            fusable.append(module)
        else:
            skipped.append(f"{name or type(module).__name__}: {reason}")
    if not fusable:
        found = (
            f"its {len(skipped)} anti-aliased activation(s) cannot be fused ({'; '.join(skipped[:3])})"
            if skipped
            else "it has none (a module with act.alpha, act.alpha_logscale, upsample.filter and downsample.lowpass.filter)"
        )
        raise ValueError(f"accelerate found no anti-aliased activation to fuse in {type(model).__name__}: {found}")
    for module in fusable:
        if isinstance(module, Activation1d):
            module.backend = backend
            continue
        setattr(module, BACKEND_ATTRIBUTE, backend)
        _note_standard_taps(module)  # also forgets the inference calls chosen for the old backend
        current = module.__dict__.get("forward")
        if not (isinstance(current, functools.partial) and current.func is _fused_forward):
            module.forward = functools.partial(_fused_forward, module)
            module.register_load_state_dict_post_hook(_note_standard_taps)
    if skipped:
        shown = "; ".join(skipped[:5]) + ("; ..." if len(skipped) > 5 else "")
        warnings.warn(
            f"accelerate left {len(skipped)} anti-aliased activation(s) on their own (unfused) path: {shown}",
            RuntimeWarning,
            stacklevel=2,
        )
    return len(fusable)
