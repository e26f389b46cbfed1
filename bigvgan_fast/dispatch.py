"""Backend policy for the anti-aliased activation, in one place.

Backends: ``"torch"`` (the reference path, runs anywhere), ``"triton"`` (``bigvgan_fast.kernels``),
``"cuda"`` (the ahead-of-time CUDA extension ``bigvgan_fast._C``).

- An explicitly requested backend that cannot run raises :class:`BackendUnavailableError` with
  the reason. Nothing falls back silently.
- ``"auto"`` takes the first backend of :data:`AUTO_ORDER` that can run on the tensor's device,
  dtype and grad mode. When it passes over a fused backend on a CUDA tensor it warns once, with
  the reason. CPU tensors take the reference path under ``"auto"``.
- ``BIGVGAN_FAST_BACKEND`` (torch | triton | cuda) replaces ``"auto"`` with that backend,
  which is then treated as explicitly requested.
- :func:`backends` (and ``python -m bigvgan_fast doctor``) report the same reasons.
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings

import torch

BACKENDS = ("torch", "triton", "cuda")
# Preference of "auto" on CUDA tensors. The CUDA extension comes first because it needs no JIT
# compilation; benchmarks/RESULTS.md records which is faster per shape once measured.
AUTO_ORDER = ("cuda", "triton", "torch")
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
ENV_VAR = "BIGVGAN_FAST_BACKEND"


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run on these inputs."""


def _triton_interpreter() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.lru_cache(maxsize=None)
def _import_problem(module: str) -> str | None:
    try:
        importlib.import_module(module)
    except Exception as err:  # an import failure is a reason to report, whatever its type
        return f"{module} cannot be imported ({type(err).__name__}: {err})"
    return None


def _triton_problem(device_type: str) -> str | None:
    problem = _import_problem("triton")
    if problem is not None:
        return problem + "; pip install triton"
    if device_type == "cpu" and not _triton_interpreter():
        return "the Triton kernel needs a CUDA tensor (CPU tensors run it only with TRITON_INTERPRET=1)"
    if device_type not in ("cpu", "cuda"):
        return f"the Triton kernel does not run on {device_type} tensors"
    if device_type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available to torch"
    return _import_problem("bigvgan_fast.kernels")


def _cuda_problem(device_type: str) -> str | None:
    problem = _import_problem("bigvgan_fast._C")
    if problem is not None:
        how = "build it with a CUDA torch and nvcc: pip install --no-build-isolation -e ."
        if "No module named 'bigvgan_fast._C'" in problem:
            return f"the CUDA extension is not built ({how})"
        return f"the CUDA extension does not load: {problem} (built for another torch? rebuild: {how})"
    if device_type != "cuda":
        return f"the CUDA extension runs only on CUDA tensors, not {device_type}"
    return None


@torch._dynamo.assume_constant_result
def problem(name: str, device_type: str, dtype: torch.dtype, needs_grad: bool) -> str | None:
    """Why backend ``name`` cannot run for these inputs, or None when it can.

    A constant to ``torch.compile`` (its imports and environment checks would break the graph):
    the backend is chosen when the graph is traced, as a shape is.
    """
    return _problem(name, device_type, dtype, needs_grad)


def clear_cache() -> None:
    """Forget what was found out about the backends (after changing TRITON_INTERPRET, say)."""
    _problem.cache_clear()
    _import_problem.cache_clear()


@functools.lru_cache(maxsize=None)
def _problem(name: str, device_type: str, dtype: torch.dtype, needs_grad: bool) -> str | None:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(('auto',) + BACKENDS)}")
    if name == "torch":
        return None
    if dtype not in FUSED_DTYPES:
        return f"{dtype} is not supported by the fused kernels (float32, float16, bfloat16; float64 runs on 'torch')"
    if name == "triton":
        return _triton_problem(device_type)
    reason = _cuda_problem(device_type)
    if reason is None and needs_grad and _triton_problem(device_type) is not None:
        # The CUDA forward pairs with the Triton backward.
        return "training needs the Triton backward, which cannot run: " + _triton_problem(device_type)
    return reason


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _requested(backend: str) -> str:
    if backend != "auto":
        return backend
    override = os.environ.get(ENV_VAR, "").strip()
    if override and override != "auto":
        if override not in BACKENDS:
            raise ValueError(f"{ENV_VAR}={override!r} is not a backend; choose one of {', '.join(BACKENDS)}")
        return override
    return "auto"


def resolve(backend: str, x: torch.Tensor, *params: torch.Tensor | None) -> str:
    """The backend that runs ``x`` (and its parameters): see the module docstring for the rule."""
    requested = _requested(backend)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, *params))
    if requested != "auto":
        reason = problem(requested, x.device.type, x.dtype, needs_grad)
        if reason is not None:
            raise BackendUnavailableError(f"backend {requested!r} cannot run here: {reason}")
        return requested
    if x.device.type != "cuda":
        return "torch"
    skipped = []
    for name in AUTO_ORDER:
        reason = problem(name, x.device.type, x.dtype, needs_grad)
        if reason is None:
            if skipped and name == "torch":
                _warn_once("bigvgan_fast: backend 'auto' runs the slow torch path: " + "; ".join(skipped))
            return name
        skipped.append(f"{name}: {reason}")
    raise AssertionError("the torch backend always runs")


def run_fused(name: str, x, alpha, beta, upsample_filter, downsample_filter, alpha_logscale: bool) -> torch.Tensor:
    """Run a fused backend that :func:`resolve` chose (inputs are made contiguous once here)."""
    from . import ops

    return ops.fused(name, x, alpha, beta, upsample_filter, downsample_filter, alpha_logscale)


def backends(device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> list[dict]:
    """For each backend: whether it runs on ``device`` (default: CUDA if present, else CPU) and why not.

    Also says which one ``"auto"`` picks there, for inference (no gradient).
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device_type = torch.device(device).type
    auto = "torch"
    if device_type == "cuda":
        auto = next(n for n in AUTO_ORDER if problem(n, device_type, dtype, False) is None)
    rows = []
    for name in BACKENDS:
        reason = problem(name, device_type, dtype, False)
        rows.append({"backend": name, "available": reason is None, "reason": reason or "", "auto": name == auto})
    override = _requested("auto")  # validates BIGVGAN_FAST_BACKEND
    if override != "auto":
        for row in rows:
            row["auto"] = row["backend"] == override
    return rows


def check_backend_name(backend: str) -> str:
    """``backend`` if it names a backend (or "auto"), else a ValueError listing the choices."""
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(('auto',) + BACKENDS)}")
    return backend
