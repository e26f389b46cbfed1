"""Instruction counts of the Triton kernels compiled for a GPU, without one (Triton emits the cubin).

For each kernel variant this compiles the forward (and the backward) for sm_90, disassembles the
cubin with ``cuobjdump -sass`` and prints the registers and the instructions per output sample:
FP32-pipe operations (FFMA, FMUL, FADD, ...), MUFU operations (the special-function unit), and all
instructions, counted on the interior-tile path (the branch every tile but the first and last of a
row takes): one thread's count times the threads of a program, over the outputs a tile stores
(BLOCK_T, less the forward's overlap of 2 * HALO lanes).

    python benchmarks/triton_sass.py [--block-t 1024] [--num-warps N] [--dtype fp32] [--tiles-per-program 1,8,16] [--json out.json]
    python benchmarks/triton_sass.py --dtype fp32 --block-t 1024 --json benchmarks/counts/triton_sass_fp32_1024.json   # what bench_activation reads

Counts are of the interior tile's path with every sine on its fast path (see ``interior_path``):
the forward's loop over a program's tiles is counted with programs of 1, 8 and 16 interior tiles
(``--tiles-per-program``: its once-per-program part shared by that many); the sine's rare slow
path (the forward's second pass) is left out. The JSON also holds the forward's two parts apart
(``forward_fp32_pipe_per_output``: ``per_tile`` and ``per_program``, so that n tiles per program
cost per_tile + per_program / n FP32-pipe operations per output) and ``meta``: the date, the
target, Triton's and its ptxas's versions.
Needs Triton's bundled ptxas and ``cuobjdump`` (CUDA toolkit) on PATH; no GPU.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

os.environ.pop("TRITON_INTERPRET", None)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import triton  # noqa: E402

from bigvgan_fast.kernels import anti_alias_activation as kernel_module  # noqa: E402
from cuda_sass import toolchain_version  # noqa: E402  (this folder is sys.path[0])

FP32_PIPE = {"FFMA", "FMUL", "FADD", "FMNMX", "FSEL", "FSETP", "FSET", "FCHK", "FSWZADD"}
MUFU = {"MUFU"}
MEMORY = {"LDG", "STG", "LDS", "STS", "LDSM", "SHFL", "BAR"}
DTYPES = {"fp32": "*fp32", "bf16": "*bf16", "fp16": "*fp16"}
INSTRUCTION = re.compile(r"\s*/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)([.\w]*)\s*([^;]*);")


def compile_kernel(kernel, signature, constexprs, num_warps):
    """As the launcher specialises it at the model shapes: 16-byte aligned pointers, T % 16 == 0."""
    aligned = [name for name, kind in signature.items() if kind.startswith("*") or name == "T"]
    attrs = {(kernel.arg_names.index(name),): [["tt.divisibility", 16]] for name in aligned}
    source = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    target = triton.backends.compiler.GPUTarget("cuda", 90, 32)
    return triton.compile(source, target=target, options={"num_warps": num_warps})


def cuobjdump() -> str:
    """Triton's bundled cuobjdump (it ships one beside its ptxas), else the CUDA toolkit's."""
    bundled = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    found = bundled if os.path.exists(bundled) else shutil.which("cuobjdump")
    if found is None:
        sys.exit("cuobjdump not found (neither in Triton's backends/nvidia/bin nor on PATH)")
    return found


def disassemble(compiled, flag: str) -> str:
    """``cuobjdump flag`` of the compiled cubin: -sass (the code) or -res-usage (registers, stack)."""
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(compiled.asm["cubin"])
        path = f.name
    try:
        return subprocess.run([cuobjdump(), flag, path], check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(path)


def resources(compiled) -> dict:
    usage = disassemble(compiled, "-res-usage")
    return {key.lower(): int(value) for key, value in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", usage)}


def instructions(sass: str) -> list[tuple[int, bool, str, str]]:
    """(address, predicated, opcode, operands) of every instruction."""
    found = []
    for line in sass.splitlines():
        match = INSTRUCTION.match(line)
        if match:
            found.append((int(match.group(1), 16), bool(match.group(2)), match.group(3), match.group(5)))
    return found


def branch_target(operands: str) -> int | None:
    match = re.match(r"\s*(?:`\()?(?:\.L_x_\d+\)?)?\s*(0x[0-9a-f]+)", operands)
    return int(match.group(1), 16) if match else None


def interior_path(code, tile_loop: bool):
    """The instructions an interior tile executes when every sine takes its fast path, as
    (once_per_program, per_tile).

    Kernels without a loop (the backward): a walk from the entry. The first conditional forward
    branch is the interior / border split (fall-through: the interior branch, whose loads need no
    index clamps), and every later conditional forward branch skips a rarely taken path (a sine's
    huge-argument path, or the block's uniform branch to the precise sine), so the walk takes it.
    Unconditional branches are followed; a predicated EXIT is passed (it ends only the lanes past
    the row). Everything up to the EXIT is per tile.

    Kernels with a loop over a program's tiles (``tile_loop``, the forward; its first backward
    branch closes the loop): the instructions before the loop run once per program; the loop body is walked as above
    from its head to that branch (per tile); after the loop, the walk runs to the first EXIT,
    predicated or not (the program's common exit; what follows it is the rare second pass with the
    precise sine), and that part runs once per program.
    """
    at = {address: i for i, (address, *_rest) in enumerate(code)}
    back_edge = None
    if tile_loop:
        back_edge = next(i for i, (address, _, op, operands) in enumerate(code)
                         if op == "BRA" and (branch_target(operands) or address + 1) <= address)

    def walk(start, stop_at, split_seen):
        path = []
        i = start
        while i < len(code) and len(path) <= len(code):
            address, predicated, op, operands = code[i]
            path.append(code[i])
            if i == stop_at or (op == "EXIT" and (not predicated or stop_at == "exit")):
                return path, True
            target = branch_target(operands) if op == "BRA" else None
            if target is not None and target in at and target > address:
                if not predicated or split_seen:
                    i = at[target]
                    continue
                split_seen = True
            i += 1
        return path, False

    if back_edge is None:
        path, ended = walk(0, None, False)
        assert ended and path[-1][2] == "EXIT", "unexpected control flow: read the disassembly"
        return [], path
    head = at[branch_target(code[back_edge][3])]
    setup = code[:head]
    assert all(op != "BRA" or predicated for _, predicated, op, _ in setup), "unexpected control flow"
    body, ended = walk(head, back_edge, False)
    assert ended and body[-1] is code[back_edge], "unexpected control flow: read the disassembly"
    tail, ended = walk(back_edge + 1, "exit", True)
    assert ended and tail[-1][2] == "EXIT", "unexpected control flow: read the disassembly"
    return setup + tail, body


def summary(compiled, outputs_per_tile: int, num_warps: int, tiles_per_program: int = 1,
            tile_loop: bool = False) -> dict:
    once, per_tile = interior_path(instructions(disassemble(compiled, "-sass")), tile_loop)
    # each thread's instructions serve outputs_per_tile / threads outputs per tile
    per_output = 32 * num_warps / outputs_per_tile
    counts = collections.Counter()
    for _, _, op, _ in once:
        counts[op] += 1 / tiles_per_program
    for _, _, op, _ in per_tile:
        counts[op] += 1

    def share(ops, counted=counts):
        return round(sum(n for op, n in counted.items() if op in ops) * per_output, 2)

    return {
        **resources(compiled),
        "fp32_pipe_per_output": share(FP32_PIPE),
        # apart: n tiles per program cost per_tile + per_program / n
        "fp32_pipe_per_output_parts": {"per_tile": share(FP32_PIPE, collections.Counter(op for *_, op, _ in per_tile)),
                                       "per_program": share(FP32_PIPE, collections.Counter(op for *_, op, _ in once))},
        "mufu_per_output": share(MUFU),
        "memory_per_output": share(MEMORY),
        "all_per_output": round(sum(counts.values()) * per_output, 2),
        "opcodes_per_output": {op: round(n * per_output, 2) for op, n in counts.most_common()},
    }


def load_module(path: str):
    spec = importlib.util.spec_from_file_location("kernel_under_count", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block-t", type=int, default=1024)
    parser.add_argument("--num-warps", type=int, help="default: each launcher's own choice")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--tiles-per-program", default="1,8,16",
                        help="forward: tiles each program runs, comma-separated (the launcher picks 1-16 per shape)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--kernel-file", help="a kernel module to count instead of the package's, e.g. an "
                        "older revision: git show REV:kernels/anti_alias_activation.py > old.py")
    args = parser.parse_args()
    module = kernel_module if args.kernel_file is None else load_module(args.kernel_file)
    ptr = DTYPES[args.dtype]
    common = {"HAS_BETA": True, "ALPHA_LOGSCALE": True, "BLOCK_T": args.block_t, "USE_GATHER": True}
    forward_sig = {"x_ptr": ptr, "y_ptr": ptr, "alpha_ptr": "*fp32", "beta_ptr": "*fp32", "up_ptr": "*fp32",
                   "down_ptr": "*fp32", "T": "i32", "C": "i32", "n_tiles": "i32"}
    forward_sig.update({name: "constexpr" for name in common})
    results = {}
    warps = {}
    for name, samples in (("forward", getattr(module, "_FORWARD_SAMPLES_PER_THREAD", 4)),
                          ("backward", getattr(module, "_BACKWARD_SAMPLES_PER_THREAD", 4))):
        warps[name] = args.num_warps or max(1, min(8, args.block_t // (32 * samples)))
    forward_constexprs = dict(common)
    halo = 0
    kernel = module._anti_alias_activation_forward_kernel
    if "HALO" in kernel.arg_names:
        # Overlapping tiles: a tile stores block_t - 2 * halo outputs, and the counts are per stored output.
        halo = module._forward_halo(args.block_t, True)
        forward_constexprs["HALO"] = halo
        forward_sig["HALO"] = "constexpr"
    tile_loop = "tiles_per_program" in kernel.arg_names
    if tile_loop:
        forward_sig = {name: ("i32" if name == "tiles_per_program" else forward_sig[name]) for name in kernel.arg_names}
    forward = compile_kernel(kernel, forward_sig, forward_constexprs, warps["forward"])
    # A program's loop over its tiles: counted with every program running that many interior tiles.
    counted = [int(n) for n in args.tiles_per_program.split(",")] if tile_loop else [1]
    for n in counted:
        results[f"forward, tiles per program: {n}" if tile_loop else "forward"] = summary(
            forward, args.block_t - 2 * halo, warps["forward"], n, tile_loop)
    backward_sig = {"grad_y_ptr": ptr, "x_ptr": ptr, "grad_x_ptr": ptr, "partial_alpha_ptr": "*fp32",
                    "partial_beta_ptr": "*fp32", "alpha_ptr": "*fp32", "beta_ptr": "*fp32", "up_ptr": "*fp32",
                    "down_ptr": "*fp32", "T": "i32", "C": "i32", "n_tiles": "i32"}
    backward_constexprs = {**common, "PARAM_GRADS": True}
    backward_sig.update({name: "constexpr" for name in backward_constexprs})
    backward = compile_kernel(module._anti_alias_activation_backward_kernel, backward_sig, backward_constexprs,
                              warps["backward"])
    results["backward"] = summary(backward, args.block_t, warps["backward"])
    print(f"Triton {triton.__version__}, sm_90, BLOCK_T={args.block_t}, {args.dtype}; "
          f"forward tiles store {args.block_t - 2 * halo} outputs")
    for name, r in results.items():
        print(f"{name} ({warps[name.split(',')[0]]} warps): {r['reg']} registers, {r['local']} bytes local (spills), {r['stack']} stack; per output sample on an interior tile: "
              f"{r['fp32_pipe_per_output']} FP32-pipe, {r['mufu_per_output']} MUFU, "
              f"{r['memory_per_output']} memory/shuffle/barrier, {r['all_per_output']} instructions in all")
        print("   ", ", ".join(f"{op} {n}" for op, n in list(r["opcodes_per_output"].items())[:16]))
    parts = next(iter(results.values()))["fp32_pipe_per_output_parts"]
    print(f"forward FP32-pipe per output at n tiles per program: {parts['per_tile']} + {parts['per_program']} / n")
    if args.json:
        meta = {"date": datetime.date.today().isoformat(), "target": "sm_90", "triton": triton.__version__,
                "ptxas": toolchain_version(ptxas()), "cuobjdump": toolchain_version(cuobjdump()),
                "kernel": args.kernel_file or "bigvgan_fast.kernels", "dtype": args.dtype, "block_t": args.block_t,
                "forward_outputs_per_tile": args.block_t - 2 * halo, "num_warps": warps}
        first = next(iter(results))
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "forward_fp32_pipe_per_output": results[first]["fp32_pipe_per_output_parts"],
                       "kernels": results}, f, indent=1)


def ptxas() -> str:
    """The ptxas Triton compiles with (its bundled one unless TRITON_PTXAS_PATH says otherwise)."""
    return os.environ.get("TRITON_PTXAS_PATH") or os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")


if __name__ == "__main__":
    main()
