"""The forward of every fused backend against docs/definition.md's float64 definition (tests/definition.py).

One parametrization: backend x dtype x length x Snake/SnakeBeta x log/linear parameters. Each case
draws fresh random inputs, parameters and asymmetric filters (so reversed or swapped taps fail),
calls the backend on a NaN-poisoned output (an unwritten element fails), and compares every sample,
borders included, at section 4's tolerances: float32 within 2e-5 and relative L2 <= 1e-6; float16 /
bfloat16 within 1 ulp (+ 4e-6) of the correctly rounded result on the same rounded input.

- ``triton`` runs on the GPU, or on CPU tensors under the Triton interpreter (conftest.py).
- ``cuda`` (the extension ``bigvgan_fast._C``) runs on the GPU only: marked ``gpu`` and skipped
  with the reason when CUDA or the extension is missing.

What only one backend has (Triton's tile overrides and backward, CUDA's layouts, streams, graphs,
opcheck, bad inputs, more than 2**31 elements) is in test_triton_kernel.py and test_cuda_kernel.py.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from definition import assert_close_to_definition, definition
from kernel_cases import (
    CUDA_TILE,
    DEVICE,
    DTYPES,
    TRITON_MAX_TILE,
    asymmetric_filters,
    cuda_problem,
    dtype_id,
    forward_poisoned,
    published_filter,
    random_input,
    random_parameters,
    triton_problem,
)

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "activation.safetensors")

BACKENDS = ("triton", "cuda")
PROBLEMS = {"triton": triton_problem(), "cuda": cuda_problem()}

# Lengths around both kernels' tiles. The reach of an output is 6 samples each side, so T <= 12
# puts both borders in every output's window. Triton tiles are next_power_of_2(T) in [16, 1024] (longer
# rows: 1024 or 512, see kernel_cases.TRITON_MAX_TILE):
# 16 is the smallest tile, 127 / 128 / 129 cross a power of two, 1023 / 1024 / 1025 the largest tile
# (1025: three tiles of 512, the middle one interior), 3001 three tiles. CUDA tiles are CUDA_TILE = 2304 samples:
# lengths around 1 and 2 tiles put a sequence border inside a tile's halo, or a short last tile
# after a full one; 4097 is the 1024-aligned length both files had.
LENGTHS = [
    1, 2, 3, 5, 12, 13, 16, 127, 128, 129,
    TRITON_MAX_TILE - 1, TRITON_MAX_TILE, TRITON_MAX_TILE + 1,
    CUDA_TILE - 1, CUDA_TILE, CUDA_TILE + 1, CUDA_TILE + 2, CUDA_TILE + 3,
    3001, 4097,
    2 * CUDA_TILE, 2 * CUDA_TILE + 1, 2 * CUDA_TILE + 2,
]
# Triton on the CPU (the interpreter, ~0.1 s per 1024-sample tile and row on a shared core): the
# lengths that reach a Triton tile boundary. The others only repeat, for Triton, the partial last
# tile that 1025 and 3001 already have (2303 = 2 * 1024 + 255, ...) at 1-3 s each; they run for
# Triton on the GPU.
INTERPRETER_LENGTHS = {1, 2, 3, 5, 12, 13, 16, 127, 128, 129, 1023, 1024, 1025, 3001}


def backend_param(backend: str, *values, cpu_ok: bool = True):
    """pytest.param for ``backend``: marked ``gpu`` when it needs one here (cuda always; triton for
    cases too long for the interpreter), skipped with the reason when the backend cannot run."""
    marks = []
    if backend == "cuda" or not cpu_ok:
        marks.append(pytest.mark.gpu)
    if PROBLEMS[backend] is not None:
        marks.append(pytest.mark.skip(reason=f"backend {backend!r}: {PROBLEMS[backend]}"))
    case_id = "-".join([backend] + [str(v) for v in values])
    return pytest.param(backend, *values, marks=marks, id=case_id)


def case_seed(T, snake_beta, alpha_logscale, dtype):
    """The same inputs for both backends in a case, different ones across cases."""
    return 1000 * T + 100 * snake_beta + 10 * alpha_logscale + DTYPES.index(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("alpha_logscale", [True, False], ids=["log", "linear"])
@pytest.mark.parametrize("snake_beta", [False, True], ids=["snake", "snakebeta"])
@pytest.mark.parametrize(
    "backend,T",
    [backend_param(b, T, cpu_ok=(b == "triton" and T in INTERPRETER_LENGTHS)) for b in BACKENDS for T in LENGTHS],
)
def test_forward_matches_definition(backend, T, snake_beta, alpha_logscale, dtype):
    gen = torch.Generator().manual_seed(case_seed(T, snake_beta, alpha_logscale, dtype))
    B, C = 2, 3
    x = random_input((B, C, T), dtype, gen)
    alpha, beta = random_parameters(C, snake_beta, alpha_logscale, gen)
    up, down = asymmetric_filters(gen)
    y = forward_poisoned(backend, x, alpha, beta, up, down, alpha_logscale)
    assert y.shape == (B, C, T) and y.dtype == dtype and y.device == x.device and y.is_contiguous()
    assert_close_to_definition(y, definition(x, alpha, beta, alpha_logscale, up, down))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("backend", [backend_param(b) for b in BACKENDS])
def test_published_filter_many_channels(backend, dtype):
    """The symmetric filter every checkpoint uses as both filters, on 17 channels with distinct
    parameters (a per-channel indexing error shows), one tile per row for either backend."""
    gen = torch.Generator().manual_seed(3 + DTYPES.index(dtype))
    x = random_input((3, 17, 1000), dtype, gen)
    alpha, beta = random_parameters(17, True, True, gen)
    f = published_filter()
    y = forward_poisoned(backend, x, alpha, beta, f, f, True)
    assert_close_to_definition(y, definition(x, alpha, beta, True, f, f))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("backend", [backend_param(b) for b in BACKENDS])
def test_small_b_channels(backend, dtype):
    """The fast sine's error reaches y times 1 / b: channels of small b (log-scale beta down to -3,
    b = 0.05) take the precise sine (MAX_FAST_INV_B in both kernels), so section 4's tolerances hold
    there too; beside them channels of b around 1 keep the fast one. (Below b ~ 0.02 a float32
    evaluation of the definition itself misses 2e-5: z grows as 1 / b.) Under the Triton
    interpreter both sines are tl.sin, so on the CPU this checks the branch's results, not the
    hardware sine's error."""
    gen = torch.Generator().manual_seed(11 + DTYPES.index(dtype))
    C = 8
    x = random_input((2, C, 700), dtype, gen)
    alpha = torch.linspace(-1.0, 2.0, C).to(DEVICE)
    beta = torch.tensor([-3.0, -2.0, -1.0, -0.5, -0.2, 0.0, 0.3, 1.0]).to(DEVICE)  # b = exp(beta)
    up, down = asymmetric_filters(gen)
    y = forward_poisoned(backend, x, alpha, beta, up, down, True)
    assert_close_to_definition(y, definition(x, alpha, beta, True, up, down))


@pytest.mark.parametrize("snake_beta", [True, False], ids=["snakebeta", "snake"])
@pytest.mark.parametrize("backend", [backend_param(b) for b in BACKENDS])
def test_zero_tiny_and_negative_alpha(backend, snake_beta):
    """Both kernels carry a * z (taps scaled by a and 1 / a) and, for |a| < 2^-64, z without the
    sine term: linear-scale alpha of 0 (a Snake's initial value), 1e-30, 2^-64 itself, negatives."""
    gen = torch.Generator().manual_seed(23)
    x = random_input((2, 5, 300), torch.float32, gen)
    alpha = torch.tensor([0.0, 1e-30, 2.0**-64, -0.7, 1.3]).to(DEVICE)
    beta = torch.tensor([1.0, 0.5, 2.0, 0.8, 1.1]).to(DEVICE) if snake_beta else None
    up, down = asymmetric_filters(gen)
    y = forward_poisoned(backend, x, alpha, beta, up, down, False)
    assert_close_to_definition(y, definition(x, alpha, beta, False, up, down))


@pytest.mark.parametrize("backend", [backend_param(b) for b in BACKENDS])
def test_forward_goldens(backend):
    """tests/golden/activation.safetensors (float32, the published filter): within 2e-5 of the stored
    float64 outputs and of the definition."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(GOLDEN, "pt") as f:
        cases = json.loads(f.metadata()["cases"])
    tensors = load_file(GOLDEN)
    taps = tensors["filter"].reshape(-1).float().contiguous().to(DEVICE)
    assert len(cases) >= 8
    for case in cases:
        name = case["name"]
        x = tensors[f"{name}.x"].float().to(DEVICE)
        alpha = tensors[f"{name}.alpha"].float().to(DEVICE)
        beta = tensors[f"{name}.beta"].float().to(DEVICE) if f"{name}.beta" in tensors else None
        assert (beta is None) == (case["activation"] == "snake")
        y = forward_poisoned(backend, x, alpha, beta, taps, taps, case["alpha_logscale"])
        assert_close_to_definition(y, tensors[f"{name}.y"])
