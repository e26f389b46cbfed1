"""How setup.py builds the CUDA extension ``bigvgan_fast._C`` (sources in ``csrc/``).

:func:`cuda_build_options` returns the ``setup()`` keywords that add the extension, or ``{}``:

- ``BIGVGAN_FAST_BUILD_CUDA=0``: never build it.
- unset (or ``auto``): build it when torch is importable in the build environment, is a CUDA build
  (``torch.version.cuda``) and nvcc is found (``torch.utils.cpp_extension.CUDA_HOME``); otherwise
  print one line saying why and how to build it, and install the pure-Python package.
- ``BIGVGAN_FAST_BUILD_CUDA=1``: build it, and fail with the reason when it cannot be built.

Architectures: ``TORCH_CUDA_ARCH_LIST`` when set, else those of the visible GPUs (both handled by
torch's ``BuildExtension``), else sm_75 up to the newest that the local nvcc supports, plus PTX of
the newest. ``BIGVGAN_FAST_PTXAS_VERBOSE=1`` adds ``-Xptxas -v`` (registers and spills per kernel).

Nothing here compiles at import time: it only describes the build.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

BUILD_ENV = "BIGVGAN_FAST_BUILD_CUDA"
PTXAS_VERBOSE_ENV = "BIGVGAN_FAST_PTXAS_VERBOSE"
EXTENSION = "bigvgan_fast._C"
# Distinct stems: setuptools names each object after its source, so x.cpp and x.cu would collide.
SOURCES = ["csrc/anti_alias_activation_host.cpp", "csrc/anti_alias_activation.cu"]
# The oldest architecture that CUDA 13 still compiles for.
MIN_ARCH = 75
HOW_TO_BUILD = (
    "to build it, install a CUDA build of torch and the CUDA toolkit (nvcc), then run "
    "pip install --no-build-isolation -e . (set BIGVGAN_FAST_BUILD_CUDA=1 to make a failure an error)"
)
# No --use_fast_math: the kernel already takes the hardware sine where its bound is shown
# (docs/fast_sine.md); the flag would also approximate the precise path's sinf, the expf of the
# parameters and the division 1 / (b + eps), and flush subnormals (small a*u) to zero.
NVCC_FLAGS = ["-O3", "-lineinfo"]
CXX_FLAGS = ["-O3"]


class CudaBuildError(RuntimeError):
    """BIGVGAN_FAST_BUILD_CUDA is not 0, 1 or auto, or is 1 and the extension cannot be built."""


def _toolchain_problem() -> str | None:
    """Why the extension cannot be built in this environment, or None when it can."""
    try:
        import torch
    except ImportError as err:
        return f"torch is not importable in the build environment ({err}; pip's isolated builds have none)"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is not a CUDA build (torch.version.cuda is None)"
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None:
        return "nvcc was not found (set CUDA_HOME or put nvcc on PATH)"
    nvcc = _nvcc(CUDA_HOME)
    if not os.path.exists(nvcc):
        return f"nvcc was not found at {nvcc} (CUDA_HOME={CUDA_HOME})"
    return None


def _nvcc(cuda_home: str) -> str:
    return os.path.join(cuda_home, "bin", "nvcc.exe" if sys.platform == "win32" else "nvcc")


def nvcc_architectures(nvcc: str) -> list[int]:
    """The real architectures (e.g. 90 for sm_90) that ``nvcc`` compiles for, oldest first."""
    try:
        listed = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return sorted({int(n) for n in re.findall(r"compute_(\d+)\b", listed)})


def _arch_flags(nvcc: str) -> list[str]:
    """-gencode flags, or [] where torch's BuildExtension picks them (and must find no 'arch' flag)."""
    import torch

    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return []
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return []
    archs = [a for a in nvcc_architectures(nvcc) if a >= MIN_ARCH]
    if not archs:
        raise CudaBuildError(
            f"cannot tell which GPU architectures {nvcc} supports (nvcc --list-gpu-arch failed) and no GPU "
            "is visible: set TORCH_CUDA_ARCH_LIST, e.g. TORCH_CUDA_ARCH_LIST=9.0"
        )
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    # PTX of the newest, so that a newer GPU can still JIT-compile the kernel.
    flags.append(f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}")
    return flags


def _say(message: str) -> None:
    print(f"bigvgan_fast: {message}", file=sys.stderr, flush=True)


def cuda_build_options() -> dict:
    """``setup()`` keywords that build ``bigvgan_fast._C``, or ``{}`` (see the module docstring)."""
    setting = os.environ.get(BUILD_ENV, "auto").strip().lower() or "auto"
    if setting not in ("0", "1", "auto"):
        raise CudaBuildError(f"{BUILD_ENV}={setting!r}: use 0 (never), 1 (always) or auto (when possible)")
    if setting == "0":
        _say(f"not building the CUDA extension {EXTENSION} ({BUILD_ENV}=0)")
        return {}
    problem = _toolchain_problem()
    if problem is not None:
        if setting == "1":
            raise CudaBuildError(f"{BUILD_ENV}=1 but the CUDA extension {EXTENSION} cannot be built: {problem}")
        _say(f"not building the CUDA extension {EXTENSION}: {problem}; {HOW_TO_BUILD}")
        return {}

    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension

    try:
        arch_flags = _arch_flags(_nvcc(CUDA_HOME))
    except CudaBuildError as err:
        if setting == "1":
            raise
        _say(f"not building the CUDA extension {EXTENSION}: {err}")
        return {}
    nvcc_flags = NVCC_FLAGS + arch_flags
    if os.environ.get(PTXAS_VERBOSE_ENV, "0") not in ("", "0"):
        nvcc_flags += ["-Xptxas", "-v"]
    extension = CUDAExtension(
        name=EXTENSION,
        sources=SOURCES,
        extra_compile_args={"cxx": list(CXX_FLAGS), "nvcc": nvcc_flags},
    )
    _say(f"building the CUDA extension {EXTENSION} with nvcc from {CUDA_HOME}")
    return {"ext_modules": [extension], "cmdclass": {"build_ext": BuildExtension}}
