"""benchmarks/bench_activation.py without a GPU: the operation counts its rooflines use (read from
the committed benchmarks/counts/*.json, per shape for Triton) and the providers it times, each run
once on CPU tensors and compared with the definition. Nothing here is timed."""

import json
import types
from pathlib import Path

import pytest
import torch

from bigvgan_fast.anti_alias import policy
from bigvgan_fast.anti_alias.reference import default_filter
from conftest import benchmark_module
from definition import assert_close_to_definition, definition

ROOT = Path(__file__).resolve().parents[1]
COUNTS = ROOT / "benchmarks" / "counts"
TRITON = policy.problem("triton", "cpu", torch.float32, False)


def bench():
    return benchmark_module("bench_activation")


def recorded(name):
    return json.loads((COUNTS / name).read_text())


@pytest.mark.parametrize("block_t", [1024, 512])
def test_printed_counts_are_the_recorded_ones(block_t):
    cuda, triton32 = recorded("cuda_sass.json"), recorded(f"triton_sass_fp32_{block_t}.json")
    text = bench().describe_op_counts(bench().load_op_counts())
    for dtype, kernel in cuda["kernels"].items():
        assert f"{dtype} {kernel['hot_path_per_output']['fp32']}" in text, dtype
    assert cuda["meta"]["target"] == triton32["meta"]["target"] == "sm_90" and triton32["meta"]["block_t"] == block_t
    assert cuda["meta"]["date"] in text and cuda["meta"]["nvcc"] in text
    assert f"Triton {triton32['meta']['triton']}" in text and triton32["meta"]["ptxas"] in text
    parts = triton32["forward_fp32_pipe_per_output"]
    assert f"float32 x, BLOCK_T {block_t}, {parts['per_tile']} + {parts['per_program']} / n at n tiles per program" in text
    # The two parts reproduce the counts triton_sass.py made at 1, 8 and 16 tiles per program
    # (each rounded to 0.01 on its own).
    for n in (1, 8, 16):
        counted = triton32["kernels"][f"forward, tiles per program: {n}"]["fp32_pipe_per_output"]
        assert abs(parts["per_tile"] + parts["per_program"] / n - counted) <= 0.011, n


@pytest.mark.slow
def test_recorded_triton_counts_are_those_of_todays_kernels(tmp_path):
    """The committed counts go stale when a kernel changes: counted again here (sm_90, no GPU)
    wherever the Triton that recorded them is installed, they must be the same."""
    import os
    import subprocess
    import sys

    import triton

    committed = recorded("triton_sass_fp32_1024.json")
    if triton.__version__ != committed["meta"]["triton"]:
        pytest.skip(f"counts recorded with Triton {committed['meta']['triton']}, {triton.__version__} installed")
    out = tmp_path / "counts.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "triton_sass.py"), "--dtype", "fp32",
                           "--block-t", "1024", "--json", str(out)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = json.loads(out.read_text())
    assert fresh["forward_fp32_pipe_per_output"] == committed["forward_fp32_pipe_per_output"], \
        "regenerate benchmarks/counts/ (benchmarks/triton_sass.py --json)"
    for name, kernel in fresh["kernels"].items():
        assert kernel["all_per_output"] == committed["kernels"][name]["all_per_output"], name


# (C, T) of the 22 kHz model's first stage at 256 and 2048 mel frames and its last at 2048, on a
# 132-SM card (H100 / H200): the launcher's tile length and tiles per program, by its rules (tiles
# of BLOCK_T - 16 outputs; 512 lanes for 8192 samples, 17 tiles where 1024 would take 9 tiles of
# 9216 lanes; as many tiles per program as leave 8 programs per SM, at most 16).
@pytest.mark.parametrize("C,T,block_t,tiles_per_program", [(768, 1024, 1024, 1), (768, 8192, 512, 12), (24, 524288, 1024, 11)])
def test_triton_count_is_that_of_the_launchers_tiles_per_program(monkeypatch, C, T, block_t, tiles_per_program):
    from bigvgan_fast.kernels import anti_alias_activation as kernels

    monkeypatch.setattr(kernels, "_multiprocessor_count", lambda index: 132)
    x = types.SimpleNamespace(shape=(1, C, T), device=torch.device("cuda", 0))  # no CUDA tensor needed
    counts = bench().load_op_counts()
    parts = recorded(f"triton_sass_fp32_{block_t}.json")["forward_fp32_pipe_per_output"]
    ops, found = bench().fp32_ops_per_output(counts, "triton", "float32", x)
    assert found == {"block_t": block_t, "tiles_per_program": tiles_per_program}
    assert ops == pytest.approx(parts["per_tile"] + parts["per_program"] / tiles_per_program, rel=1e-12)
    pair_ops, _ = bench().fp32_ops_per_output(counts, "triton", "float32->bfloat16", x)
    assert pair_ops == ops  # the pair rows take x's dtype's count
    cuda = recorded("cuda_sass.json")["kernels"]
    for label in ("float32", "bfloat16", "float32->bfloat16"):
        assert bench().fp32_ops_per_output(counts, "cuda", label, x) == (cuda[label]["hot_path_per_output"]["fp32"], {})


def test_no_triton_count_for_a_tile_length_not_counted():
    short = types.SimpleNamespace(shape=(1, 8, 256), device=torch.device("cpu"))  # a 256-lane tile
    assert bench().fp32_ops_per_output(bench().load_op_counts(), "triton", "float32", short) is None


def inputs(C=4, T=300, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(1, C, T, generator=gen)
    return x, 0.3 * torch.randn(C, generator=gen), 0.3 * torch.randn(C, generator=gen)


@pytest.mark.parametrize("out_dtype", [None, torch.bfloat16], ids=str)
def test_providers_on_the_torch_backend_compute_the_activation(out_dtype):
    x, alpha, beta = inputs()
    providers = bench().build_providers(["torch", "cuda"], x, alpha, beta, default_filter("cpu", torch.float32), out_dtype)
    assert list(providers) == ["torch"]  # the CUDA extension cannot run on CPU tensors: left out
    y = providers["torch"]()
    assert y.dtype == (out_dtype or torch.float32)
    assert_close_to_definition(y, definition(x, alpha, beta))


@pytest.mark.skipif(TRITON is not None, reason=str(TRITON))
@pytest.mark.parametrize("out_dtype", [None, torch.bfloat16], ids=str)
def test_providers_on_triton_compute_the_activation(out_dtype):
    x, alpha, beta = inputs(seed=1)
    providers = bench().build_providers(["torch", "triton"], x, alpha, beta, default_filter("cpu", torch.float32), out_dtype)
    names = ["torch", "triton", "triton_op"] + (["triton_then_cast"] if out_dtype is not None else [])
    assert list(providers) == names
    expected = definition(x, alpha, beta)
    for name, run in providers.items():
        y = run()
        assert y.dtype == (out_dtype or torch.float32), name
        assert_close_to_definition(y, expected)
