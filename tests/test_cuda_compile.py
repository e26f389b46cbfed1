"""The CUDA sources under csrc/ compile, warning-free and without register spills.

Needs nvcc, not a GPU: this is the check of the CUDA path that CPU-only CI can run. Each kernel file
is compiled with the flags torch's BuildExtension adds, plus ``-Werror all-warnings``, for sm_80
and sm_90 and for sm_75, sm_100 and sm_120 where the local nvcc lists them. The host layer
(csrc/*.cpp) is checked by a C++ compiler against the installed torch's headers.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from conftest import benchmark_module

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
KERNEL_SOURCES = sorted(CSRC.glob("*.cu"))
HOST_SOURCES = sorted(CSRC.glob("*.cpp"))
REQUIRED_ARCHS = (80, 90)
ARCHS_IF_LISTED = (75, 100, 120)
# torch.utils.cpp_extension.COMMON_NVCC_FLAGS: the kernels must build under them.
TORCH_NVCC_FLAGS = [
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
    "--expt-relaxed-constexpr",
]
STRICT_FLAGS = ["-O3", "-Werror", "all-warnings", "-Xcompiler=-Wall,-Wextra,-Werror"]
# One kernel instantiation per (x, y) dtype pair: each of float, __half, __nv_bfloat16 to itself, and
# float to __nv_bfloat16 and to __half (the mixed half-precision mode).
KERNEL_INSTANTIATIONS = {"anti_alias_activation.cu": 5}
KERNEL_DTYPES = ["bfloat16", "float16", "float32", "float32->bfloat16", "float32->float16"]


def _find_nvcc() -> str | None:
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if cuda_home and (Path(cuda_home) / "bin" / "nvcc").exists():
        return str(Path(cuda_home) / "bin" / "nvcc")
    return shutil.which("nvcc")


NVCC = _find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (neither $CUDA_HOME/bin/nvcc nor on PATH)")


@functools.lru_cache(maxsize=None)
def _listed_archs() -> frozenset[int]:
    if NVCC is None:
        return frozenset()
    listed = subprocess.run([NVCC, "--list-gpu-arch"], capture_output=True, text=True).stdout
    return frozenset(int(n) for n in re.findall(r"compute_(\d+)\b", listed))


def _archs() -> list[int]:
    return sorted(set(REQUIRED_ARCHS) | {a for a in ARCHS_IF_LISTED if a in _listed_archs()})


def _nvcc_compile(source: Path, arch: int, out_dir: Path, *extra: str, std: str = "c++17"):
    command = [
        NVCC,
        "-c",
        f"-std={std}",
        *STRICT_FLAGS,
        *TORCH_NVCC_FLAGS,
        f"-gencode=arch=compute_{arch},code=sm_{arch}",
        f"-I{CSRC}",
        *extra,
        "-o",
        str(out_dir / f"{source.stem}.sm_{arch}.o"),
        str(source),
    ]
    return subprocess.run(command, capture_output=True, text=True)


def test_there_are_sources():
    assert KERNEL_SOURCES, f"no .cu file under {CSRC}"
    assert HOST_SOURCES, f"no .cpp file under {CSRC}"
    # setuptools names each object after its source's stem: x.cpp and x.cu would both make x.o.
    stems = [p.stem for p in KERNEL_SOURCES + HOST_SOURCES]
    assert len(stems) == len(set(stems)), f"sources share a stem (their objects would collide): {stems}"


@needs_nvcc
@pytest.mark.parametrize("arch", _archs(), ids=lambda a: f"sm_{a}")
@pytest.mark.parametrize("source", KERNEL_SOURCES, ids=lambda p: p.name)
def test_kernel_compiles_without_warnings(source, arch, tmp_path):
    done = _nvcc_compile(source, arch, tmp_path)
    assert done.returncode == 0, f"nvcc failed for {source.name} on sm_{arch}:\n{done.stderr}{done.stdout}"


@needs_nvcc
@pytest.mark.parametrize("source", KERNEL_SOURCES, ids=lambda p: p.name)
def test_kernel_compiles_as_cxx20(source, tmp_path):
    """Recent torch builds extensions with -std=c++20."""
    done = _nvcc_compile(source, 90, tmp_path, std="c++20")
    assert done.returncode == 0, f"nvcc -std=c++20 failed for {source.name}:\n{done.stderr}{done.stdout}"


def cuda_sass():
    """benchmarks/cuda_sass.py, which reads ptxas reports and counts SASS (one parser for both)."""
    return benchmark_module("cuda_sass")


@needs_nvcc
@pytest.mark.parametrize("source", KERNEL_SOURCES, ids=lambda p: p.name)
def test_no_register_spills_on_sm90(source, tmp_path):
    done = _nvcc_compile(source, 90, tmp_path, "-Xptxas", "-v")
    assert done.returncode == 0, done.stderr
    reports = cuda_sass().ptxas_resources(done.stderr + done.stdout)
    kernels = {name: report for name, report in reports.items() if "Compiling entry function '" + name in done.stderr + done.stdout}
    expected = KERNEL_INSTANTIATIONS.get(source.name)
    assert kernels, f"ptxas reported no entry function for {source.name}:\n{done.stderr}"
    if expected is not None:
        assert len(kernels) == expected, f"expected {expected} kernel instantiations, ptxas reported {sorted(kernels)}"
    for name, report in kernels.items():
        assert {"registers", "spill_stores", "spill_loads"} <= report.keys(), f"{name}: incomplete report {report}"
    for name, report in reports.items():  # the entry functions and the out-of-line slow paths they call
        assert report.get("spill_stores", 0) == 0 and report.get("spill_loads", 0) == 0, f"{name} spills registers: {report}"


def _nvcc_include_dir() -> Path | None:
    """Where nvcc finds cuda_runtime.h (nvcc may be a wrapper script outside the toolkit)."""
    if NVCC is None:
        return None
    dryrun = subprocess.run([NVCC, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull], capture_output=True, text=True)
    for include in re.findall(r"-I\"?([^\s\"]+)", dryrun.stdout + dryrun.stderr):
        if (Path(include) / "cuda_runtime.h").exists():
            return Path(include)
    return None


# The host layer needs torch's CUDA headers. CPU wheels ship them without one generated file,
# c10/cuda/impl/cuda_cmake_macros.h; C10_CUDA_NO_CMAKE_CONFIGURE_FILE skips it (it only sets
# export macros), so the check runs on CPU-only CI too. Nothing is linked.
def _host_compile_command(source: Path, std: str) -> list[str] | str:
    try:
        import torch.utils.cpp_extension as cpp_extension
    except ImportError as err:
        return f"torch is not importable ({err})"
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if cxx is None:
        return "no C++ compiler (c++ / g++) found"
    torch_includes = cpp_extension.include_paths()
    if not any((Path(p) / "c10" / "cuda" / "CUDAGuard.h").exists() for p in torch_includes):
        return "this torch ships no c10/cuda headers"
    cuda_include = _nvcc_include_dir()
    if cuda_include is None:
        return "nvcc not found, or its include directory holds no cuda_runtime.h"
    defines = []
    if not any((Path(p) / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").exists() for p in torch_includes):
        defines.append("-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE")
    return [
        cxx,
        "-fsyntax-only",
        f"-std={std}",
        "-Wall",
        "-Wextra",
        "-Werror",
        *defines,
        *(f"-isystem{p}" for p in torch_includes),
        f"-isystem{sysconfig.get_paths()['include']}",
        f"-isystem{cuda_include}",
        f"-I{CSRC}",
        str(source),
    ]


@pytest.mark.parametrize("std", ["c++17", "c++20"])
@pytest.mark.parametrize("source", HOST_SOURCES, ids=lambda p: p.name)
def test_host_layer_compiles(source, std):
    command = _host_compile_command(source, std)
    if isinstance(command, str):
        pytest.skip(command)
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, f"{source.name} does not compile ({std}):\n{done.stderr}"


# The host layer's argument checks (csrc/anti_alias_activation_checks.h, torch headers only) built
# into a CPU op, so that every failing check raises its message here, on a machine without a GPU.
# On the H200 one of them killed the process instead of raising (issue 9).
_CHECKS_OP_SOURCE = r"""
#include <torch/library.h>
#include "anti_alias_activation_checks.h"

namespace {
void check_arguments(const at::Tensor& x, const at::Tensor& alpha, const std::optional<at::Tensor>& beta,
                     const at::Tensor& upsample_filter, const at::Tensor& downsample_filter,
                     std::optional<at::ScalarType> out_dtype) {
  bigvgan_fast::check_out_dtype(x.scalar_type(), out_dtype.value_or(x.scalar_type()));
  bigvgan_fast::check_channel_parameter(alpha, "alpha", x);
  if (beta.has_value()) bigvgan_fast::check_channel_parameter(*beta, "beta", x);
  bigvgan_fast::check_filter(upsample_filter, "upsample_filter", x);
  bigvgan_fast::check_filter(downsample_filter, "downsample_filter", x);
}
}  // namespace

TORCH_LIBRARY(bigvgan_fast_checks, m) {
  m.def("check_arguments(Tensor x, Tensor alpha, Tensor? beta, Tensor upsample_filter, Tensor downsample_filter, "
        "ScalarType? out_dtype=None) -> ()");
}
// Meta too: a parameter on another device sends the call to that device's kernel.
TORCH_LIBRARY_IMPL(bigvgan_fast_checks, CPU, m) { m.impl("check_arguments", &check_arguments); }
TORCH_LIBRARY_IMPL(bigvgan_fast_checks, Meta, m) { m.impl("check_arguments", &check_arguments); }
"""


@pytest.fixture(scope="module")
def checks_op(tmp_path_factory):
    cpp_extension = pytest.importorskip("torch.utils.cpp_extension")
    import torch

    if shutil.which(os.environ.get("CXX", "c++")) is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler (c++ / g++) found")
    if not cpp_extension.is_ninja_available():
        pytest.skip("torch's inline extension build needs ninja (pip install ninja)")
    build = tmp_path_factory.mktemp("checks_op")
    cpp_extension.load_inline(
        name="bigvgan_fast_checks",
        cpp_sources=[_CHECKS_OP_SOURCE],
        extra_include_paths=[str(CSRC)],
        extra_cflags=["-O1", "-Wall", "-Wextra", "-Werror"],
        build_directory=str(build),
        is_python_module=False,
    )
    return torch.ops.bigvgan_fast_checks.check_arguments.default


CHECK_CASES = {
    # name: (how to spoil (x, alpha, beta, up, down), the whole expected message after the prefix)
    "alpha_shape": (lambda t, x, a, b, u, d: (x, t.zeros(4), b, u, d), "alpha must have shape (3,) for x with 3 channels, got (4,)"),
    "alpha_2d": (lambda t, x, a, b, u, d: (x, a[:, None], b, u, d), "alpha must have shape (3,) for x with 3 channels, got (3, 1)"),
    "alpha_0d": (lambda t, x, a, b, u, d: (x, a[0], b, u, d), "alpha must have shape (3,) for x with 3 channels, got ()"),
    "beta_shape": (lambda t, x, a, b, u, d: (x, a, t.zeros(2, 2), u, d), "beta must have shape (3,) for x with 3 channels, got (2, 2)"),
    "alpha_integer": (lambda t, x, a, b, u, d: (x, a.int(), b, u, d), "alpha must be a floating-point tensor, got Int"),
    "alpha_on_meta": (lambda t, x, a, b, u, d: (x, a.to("meta"), b, u, d), "alpha is on meta but x is on cpu"),
    "up_taps": (lambda t, x, a, b, u, d: (x, a, b, u[:10], d), "upsample_filter must hold 12 taps, got shape (10,)"),
    "up_float64": (lambda t, x, a, b, u, d: (x, a, b, u.double(), d), "upsample_filter must be float32, got Double"),
    "down_on_meta": (lambda t, x, a, b, u, d: (x, a, b, u, d.to("meta")), "downsample_filter is on meta but x is on cpu"),
    # Pairs no kernel is instantiated for (the valid ones pass in test_host_out_dtype_check).
    "out_float64": (lambda t, x, a, b, u, d: (x, a, b, u, d, t.float64), "out_dtype must be x's dtype, or BFloat16 or Half for Float x; got Double for Float x"),
    "half_to_float": (lambda t, x, a, b, u, d: (x.half(), a, b, u, d, t.float32), "out_dtype must be x's dtype, or BFloat16 or Half for Float x; got Float for Half x"),
    "bf16_to_half": (lambda t, x, a, b, u, d: (x.bfloat16(), a, b, u, d, t.float16), "out_dtype must be x's dtype, or BFloat16 or Half for Float x; got Half for BFloat16 x"),
}


@pytest.mark.parametrize("case", sorted(CHECK_CASES))
def test_host_checks_raise_their_message(checks_op, case):
    import torch

    spoil, message = CHECK_CASES[case]
    x, alpha, beta = torch.zeros(1, 3, 5), torch.zeros(3), torch.zeros(3)
    up, down = torch.zeros(12), torch.zeros(12)
    checks_op(x, alpha, beta, up, down)  # valid arguments pass
    with pytest.raises(RuntimeError) as raised:
        checks_op(*spoil(torch, x, alpha, beta, up, down))
    assert str(raised.value).splitlines()[0] == f"anti_alias_activation_cuda: {message}"


def test_host_out_dtype_check_passes_the_instantiated_pairs(checks_op):
    import torch

    alpha, up = torch.zeros(3), torch.zeros(12)
    pairs = [(d, d) for d in (torch.float32, torch.float16, torch.bfloat16)]
    pairs += [(torch.float32, torch.bfloat16), (torch.float32, torch.float16)]
    for x_dtype, out_dtype in pairs:
        checks_op(torch.zeros(1, 3, 5, dtype=x_dtype), alpha, alpha, up, up, out_dtype)
    checks_op(torch.zeros(1, 3, 5, dtype=torch.bfloat16), alpha, alpha, up, up, None)  # None: x's dtype
    with pytest.raises(RuntimeError, match="got BFloat16 for Half x"):
        checks_op(torch.zeros(1, 3, 5, dtype=torch.float16), alpha, alpha, up, up, torch.bfloat16)


@needs_nvcc
def test_sm90_hot_path_instruction_budget():
    """Issue 12's arithmetic target, counted in the sm_90 SASS by benchmarks/cuda_sass.py: at most 40
    FP32-pipe operations and exactly 2 MUFU (the two hardware sines) per output on the common path,
    every instantiation (float32 -> bfloat16 / float16 included), no spills."""
    try:
        cuda_sass().find_cuobjdump()
    except SystemExit as err:
        pytest.skip(str(err))
    result = cuda_sass().count(CSRC / "anti_alias_activation.cu", 90)
    assert sorted(result["kernels"]) == KERNEL_DTYPES
    for dtype, kernel in result["kernels"].items():
        hot = kernel["hot_path_per_output"]
        assert 24 <= hot["fp32"] <= 40, f"{dtype}: {hot['fp32']} FP32-pipe operations per output"
        assert hot.get("mufu") == 2, f"{dtype}: {hot.get('mufu')} MUFU per output"
        assert kernel["spill_stores"] == 0 and kernel["spill_loads"] == 0, f"{dtype} spills"
        assert kernel["registers"] <= 64, f"{dtype}: {kernel['registers']} registers (4 blocks of 256 per SM need <= 64)"
