"""The backend table of the anti-aliased activation and its one rule for ``"auto"``.

=========  ===================================================  =====================================
backend    runs                                                 can run when
=========  ===================================================  =====================================
torch      the reference path (``reference.py``)                always (any device, any float dtype)
triton     ``bigvgan_fast.kernels`` through ``library.py``      triton imports; a CUDA tensor (or a
                                                                CPU one under TRITON_INTERPRET=1)
cuda       the extension ``bigvgan_fast._C`` (``csrc/``)        the extension loads; a CUDA tensor;
                                                                training also needs triton's backward
=========  ===================================================  =====================================

Fused backends take float32, float16 and bfloat16 and give no gradient to the filter taps. The
output dtype (``out_dtype``, default x's): ``torch`` writes any float dtype, ``triton`` any of the
three whatever x's, ``cuda`` x's or, for float32 x, bfloat16 / float16 (:func:`out_dtype_problem`).

- An explicitly requested backend that cannot run raises :class:`BackendUnavailableError` with the
  reason; one that cannot write the requested ``out_dtype`` raises a ``TypeError`` naming it.
  Nothing falls back silently.
- ``"auto"`` (:func:`auto_choice`, the one rule): CPU tensors take ``torch``; CUDA tensors take the
  first of :data:`AUTO_ORDER` that can run and write ``out_dtype``, and a warning (once per reason)
  says why when that is the slow ``torch``.
- ``BIGVGAN_FAST_BACKEND`` (torch | triton | cuda) replaces ``"auto"`` with that backend, which is
  then treated as explicitly requested.
- :func:`backends` (and ``python -m bigvgan_fast doctor``) report the same reasons.
"""

from __future__ import annotations

import functools
import os
import warnings

import torch

from . import library

BACKEND_NAMES = ("torch", "triton", "cuda")
CHOICES = ("auto",) + BACKEND_NAMES
# Preference of "auto" on CUDA tensors: the CUDA extension needs no JIT compilation and was the
# faster of the two at every model shape of the first H200 run (MEASURED.md: 0.017-0.083 ms
# against Triton's 0.055-0.127 ms per activation).
AUTO_ORDER = ("cuda", "triton", "torch")
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# (x dtype, out dtype) pairs the CUDA kernel writes besides each dtype to itself: the mixed
# half-precision mode's float32 residual stream read by bfloat16 / float16 convolutions. Each pair
# is one more ~2,000-instruction kernel in the extension; no other pair has a user.
CUDA_OUT_DTYPES = ((torch.float32, torch.bfloat16), (torch.float32, torch.float16))
ENV_VAR = "BIGVGAN_FAST_BACKEND"


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run on these inputs."""


def check_backend_name(backend: str) -> str:
    """``backend`` if it is one of :data:`CHOICES`, else a ValueError listing them."""
    if backend not in CHOICES:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(CHOICES)}")
    return backend


def _triton_interpreter() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _triton_problem(device_type: str) -> str | None:
    if device_type == "cpu" and not _triton_interpreter():
        return "the Triton kernel needs a CUDA tensor (CPU tensors run it only with TRITON_INTERPRET=1)"
    if device_type not in ("cpu", "cuda"):
        return f"the Triton kernel does not run on {device_type} tensors"
    if device_type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available to torch"
    return library.triton_import_problem()


def _cuda_problem(device_type: str, needs_grad: bool) -> str | None:
    problem = library.CUDA_IMPORT_PROBLEM
    if problem is not None:
        how = "build it with a CUDA torch and nvcc: pip install --no-build-isolation -e ."
        if "No module named 'bigvgan_fast._C'" in problem:
            return f"the CUDA extension is not built ({how})"
        return f"the CUDA extension does not load: {problem} (built for another torch? rebuild: {how})"
    if device_type != "cuda":
        return f"the CUDA extension runs only on CUDA tensors, not {device_type}"
    if needs_grad and _triton_problem(device_type) is not None:  # the CUDA forward pairs with the Triton backward
        return "training needs the Triton backward, which cannot run: " + _triton_problem(device_type)
    return None


@functools.lru_cache(maxsize=None)
def _problem(name: str, device_type: str, dtype: torch.dtype, needs_grad: bool, filters_need_grad: bool) -> str | None:
    check_backend_name(name)
    if name in ("torch", "auto"):
        return None
    if dtype not in FUSED_DTYPES:
        return f"{dtype} is not supported by the fused kernels (float32, float16, bfloat16; float64 runs on 'torch')"
    if filters_need_grad:
        return "the fused kernels give no gradient to upsample_filter / downsample_filter, which require grad here ('torch' does)"
    if name == "triton":
        return _triton_problem(device_type)
    return _cuda_problem(device_type, needs_grad)


@torch._dynamo.assume_constant_result
def problem(name: str, device_type: str, dtype: torch.dtype, needs_grad: bool, filters_need_grad: bool = False) -> str | None:
    """Why backend ``name`` cannot run for these inputs, or None when it can.

    A constant to ``torch.compile`` (its imports and environment checks would break the graph):
    the backend is chosen when the graph is traced, as a shape is.
    """
    return _problem(name, device_type, dtype, needs_grad, filters_need_grad)


@torch._dynamo.assume_constant_result
def out_dtype_problem(name: str, dtype: torch.dtype, out_dtype: torch.dtype | None) -> str | None:
    """Why backend ``name`` cannot write ``out_dtype`` from x of ``dtype`` (a floating dtype, None:
    ``dtype``), or None when it can. A constant to ``torch.compile``, as :func:`problem`."""
    if out_dtype is None or out_dtype == dtype or name == "torch":
        return None
    if out_dtype not in FUSED_DTYPES:
        return f"the fused kernels write float32, float16 or bfloat16, not {out_dtype} (any float dtype runs on 'torch')"
    if name == "cuda" and (dtype, out_dtype) not in CUDA_OUT_DTYPES:
        return (f"the CUDA kernel writes x's dtype, or bfloat16 / float16 from float32 x, not {dtype} -> {out_dtype} "
                "('triton' and 'torch' write it)")
    return None


def clear_cache() -> None:
    """Forget what was found out about the backends (after changing TRITON_INTERPRET, say)."""
    _problem.cache_clear()
    library.triton_import_problem.cache_clear()


def requested(backend: str) -> str:
    """``backend``, with ``"auto"`` replaced by ``BIGVGAN_FAST_BACKEND`` when that is set."""
    if backend != "auto":
        return check_backend_name(backend)
    override = os.environ.get(ENV_VAR, "").strip()
    if override and override != "auto":
        if override not in BACKEND_NAMES:
            raise ValueError(f"{ENV_VAR}={override!r} is not a backend; choose one of {', '.join(BACKEND_NAMES)}")
        return override
    return "auto"


def auto_choice(device_type: str, dtype: torch.dtype, needs_grad: bool, filters_need_grad: bool = False,
                out_dtype: torch.dtype | None = None) -> tuple[str, list[str]]:
    """The rule of ``"auto"``: (the backend, the reasons each faster one was passed over)."""
    if device_type != "cuda":
        return "torch", []
    skipped = []
    for name in AUTO_ORDER:
        reason = problem(name, device_type, dtype, needs_grad, filters_need_grad) or out_dtype_problem(name, dtype, out_dtype)
        if reason is None:
            return name, skipped
        skipped.append(f"{name}: {reason}")
    raise AssertionError("the torch backend always runs")


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def choose(backend: str, device_type: str, dtype: torch.dtype, needs_grad: bool, filters_need_grad: bool = False,
           out_dtype: torch.dtype | None = None) -> str:
    """The backend that runs and writes ``out_dtype`` (a floating dtype; None: ``dtype``): an explicit
    one if it can (else :class:`BackendUnavailableError`, or a ``TypeError`` for an ``out_dtype`` it
    does not write), or the one of :func:`auto_choice` (warning once when a CUDA tensor ends up on
    ``torch``)."""
    wanted = requested(backend)
    if wanted != "auto":
        reason = problem(wanted, device_type, dtype, needs_grad, filters_need_grad)
        if reason is not None:
            raise BackendUnavailableError(f"backend {wanted!r} cannot run here: {reason}")
        reason = out_dtype_problem(wanted, dtype, out_dtype)
        if reason is not None:
            raise TypeError(f"backend {wanted!r} cannot write out_dtype {out_dtype}: {reason}")
        return wanted
    name, skipped = auto_choice(device_type, dtype, needs_grad, filters_need_grad, out_dtype)
    if skipped and name == "torch":
        _warn_once("bigvgan_fast: backend 'auto' runs the slow torch path: " + "; ".join(skipped))
    return name


def backends(device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> list[dict]:
    """For each backend: whether it runs on ``device`` (default: CUDA if present, else CPU) and why not,
    and which one ``"auto"`` (or ``BIGVGAN_FAST_BACKEND``) picks there for inference."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device_type = torch.device(device).type
    picked = requested("auto")  # validates BIGVGAN_FAST_BACKEND
    if picked == "auto":
        picked = auto_choice(device_type, dtype, False)[0]
    rows = []
    for name in BACKEND_NAMES:
        reason = problem(name, device_type, dtype, False)
        rows.append({"backend": name, "available": reason is None, "reason": reason or "", "auto": name == picked})
    return rows
