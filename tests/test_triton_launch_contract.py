"""The prepared Triton launch (``kernels.prepared_forward``) against the kernels Triton compiles, without a GPU.

``_PreparedForward`` compiles the forward once per (tile length, alignment class) from stand-in
arguments and then calls Triton's compiled-kernel runner with positional arguments, past the JIT's
binding. Its contract with the installed Triton: one value per entry of the compiled signature, in
parameter order (Triton >= 3.3 lists the constexprs there too), pointers of the compiled element
types, 32-bit integers, and the facts the kernel was specialised on (16-byte aligned x and out,
T % 16 == 0) true of every call it serves. The GPU tests check the outputs; this checks the
contract wherever Triton is installed.

The launchers run on CPU tensors under benchmarks/triton_sass.py's ``offline_gpu``: Triton's JIT
specialises and compiles for sm_90 as on an H200 (ptxas included) and the final C launch is
recorded instead of run. That needs Triton without its interpreter, so the launches run in a
subprocess (this file as a script) and the test reads their records.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="triton is not installed")
# Raises ImportError, with the versions, under a Triton older than the kernels' MIN_TRITON.
pytest.importorskip("bigvgan_fast.kernels.anti_alias_activation")

ROOT = Path(__file__).resolve().parents[1]
CONSTEXPRS = ["HAS_BETA", "ALPHA_LOGSCALE", "BLOCK_T", "USE_GATHER", "HALO"]
POINTER_DTYPES = {"*fp32": "torch.float32", "*bf16": "torch.bfloat16", "*fp16": "torch.float16"}
# (name, (B, C, T), x dtype, out dtype, SnakeBeta, one-element offset of x and out, use_gather) and
# the alignment class each call must take.
CASES = [
    ("fp32, T % 16 == 0", (2, 3, 4096), "float32", "float32", True, False, True, True),
    ("fp32, T % 16 != 0", (2, 3, 4095), "float32", "float32", True, False, True, False),
    ("bf16, unaligned pointers", (1, 4, 1024), "bfloat16", "bfloat16", True, True, True, False),
    ("fp32 -> fp16, Snake", (2, 3, 96), "float32", "float16", False, False, True, True),
    ("fp32, T = 1", (1, 1, 1), "float32", "float32", True, False, True, False),
    ("fp32, recompute path", (2, 3, 64), "float32", "float32", True, False, False, True),
]


def _describe(value):
    import torch

    if isinstance(value, torch.Tensor):
        return {"dtype": str(value.dtype), "data_ptr": value.data_ptr()}
    return {"value": value}


def _record(path: str) -> None:
    """Run each case through the prepared launcher and the ordinary one; write what each launch
    handed to the C launcher and the compiled kernel's signature, constants and specialisation."""
    import torch

    spec = importlib.util.spec_from_file_location("triton_sass", ROOT / "benchmarks" / "triton_sass.py")
    triton_sass = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(triton_sass)
    module = triton_sass.load_module()
    records = {}
    with triton_sass.offline_gpu(module) as launches:
        for name, shape, dtype, out_dtype, snake_beta, offset, use_gather, _ in CASES:
            dtype, out_dtype = getattr(torch, dtype), getattr(torch, out_dtype)
            x, out, alpha, beta, up, down = triton_sass._inputs(*shape, dtype, snake_beta, not offset, out_dtype)
            launch = module._PreparedForward(dtype, snake_beta, True, torch.device("cpu"), torch.float32, out_dtype,
                                             None, None, use_gather)
            done = len(launches)
            launch(x, out, alpha, beta, up, down)
            module.anti_alias_activation_forward(x, alpha, beta, up, down, True, out=out, use_gather=use_gather)
            assert len(launches) == done + 2, f"{name}: {len(launches) - done} launches"
            records[name] = []
            for recorded in launches[done:]:
                src = recorded.kernel.src
                names = list(src.fn.arg_names)
                attrs = getattr(src, "attrs", None) or {}
                records[name].append({
                    "grid": list(recorded.grid),
                    "args": [_describe(value) for value in recorded.args],
                    "signature": [[str(k), v] for k, v in src.signature.items()],
                    "constants": {names[k[0]] if isinstance(k, tuple) else k: v for k, v in src.constants.items()},
                    "divisible": sorted(names[k[0]] for k, v in attrs.items() if ["tt.divisibility", 16] in v),
                    "num_warps": recorded.kernel.metadata.num_warps,
                })
    with open(path, "w") as f:
        json.dump(records, f)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    path = tmp_path_factory.mktemp("launches") / "launches.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, __file__, str(path)], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, f"the recording subprocess failed:\n{done.stderr[-4000:]}"
    with open(path) as f:
        return json.load(f)


def _check_against_signature(launch, where):
    """What Triton's runner and C launcher take (3.3 and later): one positional value per
    signature entry; constexpr entries are skipped by the launcher, so a value there must be the
    compiled one or the launch runs a kernel of other constants; pointers of the compiled element
    type; i32 in range; and arguments compiled as divisible by 16 divisible by 16."""
    signature = launch["signature"]
    args = launch["args"]
    assert len(args) == len(signature), f"{where}: {len(args)} arguments for a signature of {len(signature)}: {signature}"
    for (name, kind), arg in zip(signature, args):
        if kind == "constexpr":
            assert arg == {"value": launch["constants"][name]}, f"{where}: {name} passed {arg}, compiled for {launch['constants'][name]}"
        elif kind.startswith("*"):
            assert arg.get("dtype") == POINTER_DTYPES[kind], f"{where}: {name} compiled as {kind}, passed {arg}"
        else:
            assert kind == "i32" and isinstance(arg.get("value"), int) and -(2**31) <= arg["value"] < 2**31, (where, name, arg)
        if name in launch["divisible"]:
            value = arg.get("data_ptr", arg.get("value"))
            assert value % 16 == 0, f"{where}: {name} = {value} launched on a kernel compiled for multiples of 16"


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_prepared_launch_matches_the_compiled_kernel(records, case):
    name, (B, C, T), *_, aligned = case
    prepared, ordinary = records[name]
    _check_against_signature(prepared, f"{name}, prepared")
    _check_against_signature(ordinary, f"{name}, launcher")
    # The prepared kernel carries exactly its class's facts: never one of the call's shape.
    assert prepared["divisible"] == (["T", "x_ptr", "y_ptr"] if aligned else [])
    assert not any(kind == "constexpr" and n not in CONSTEXPRS for n, kind in prepared["signature"])
    # Everything but the tiles per program (chosen for an H200 here, for the CPU by the ordinary
    # launcher on CPU tensors) as the ordinary launcher passes it for the same call.
    position = {n: i for i, (n, _) in enumerate(prepared["signature"])}
    assert [n for n, _ in prepared["signature"]] == [n for n, _ in ordinary["signature"]]
    for n, i in position.items():
        if n != "tiles_per_program":
            assert prepared["args"][i] == ordinary["args"][i], f"{name}: {n}: prepared {prepared['args'][i]}, launcher {ordinary['args'][i]}"
    assert {n: prepared["constants"][n] for n in CONSTEXPRS} == {n: ordinary["constants"][n] for n in CONSTEXPRS}
    assert prepared["num_warps"] == ordinary["num_warps"]
    n_tiles = prepared["args"][position["n_tiles"]]["value"]
    tiles_per_program = prepared["args"][position["tiles_per_program"]]["value"]
    assert prepared["grid"] == [-(-n_tiles // tiles_per_program), C, B]
    assert ordinary["grid"][1:] == [C, B]


@pytest.mark.parametrize("version", ["3.3.1", "3.4.0", "3.10.0"])
def test_kernels_refuse_a_triton_that_cannot_compile_them(monkeypatch, version):
    """Below MIN_TRITON (3.4) importing the kernels fails with the reason, which the backend
    reports; the version is compared as numbers (3.10 > 3.4)."""
    import triton

    monkeypatch.setattr(triton, "__version__", version)
    spec = importlib.util.spec_from_file_location("kernels_version_check", ROOT / "kernels" / "anti_alias_activation.py")
    module = importlib.util.module_from_spec(spec)
    if version == "3.3.1":
        with pytest.raises(ImportError, match=r"need Triton >= 3\.4, found 3\.3\.1"):
            spec.loader.exec_module(module)
    else:
        spec.loader.exec_module(module)
        assert module.MIN_TRITON == (3, 4)


if __name__ == "__main__":
    _record(sys.argv[1])
