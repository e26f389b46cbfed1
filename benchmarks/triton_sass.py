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

    python benchmarks/triton_sass.py --variants [--json out.json]

compiles instead every kernel variant the package's launchers use (``variant_calls``: the prepared
forward's tile lengths and alignment classes, the ordinary launchers' specialisations, each dtype
pair, Snake and SnakeBeta, the gather and recompute paths) by running the launchers themselves on
CPU tensors with Triton's JIT compiling for sm_90 (``offline_gpu``), and prints each one's
registers, local memory (spills), stack, shared memory, SASS instructions and MUFU operations, and
the widest global load and store: run it under two Triton versions and compare.
Needs Triton's bundled ptxas and ``cuobjdump`` (CUDA toolkit) on PATH; no GPU.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import NamedTuple

# Compiling for a GPU needs Triton imported without its interpreter (triton.language's own functions
# are interpreted ones otherwise, and the front end reads the variable as it compiles).
os.environ.pop("TRITON_INTERPRET", None)

import torch  # noqa: E402
import triton  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # imported by path too (tests/)
from cuda_sass import toolchain_version  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNEL_FILE = os.path.join(ROOT, "kernels", "anti_alias_activation.py")

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
    # FP fusion as the launchers ask for it (Triton 3.10's default is off).
    return triton.compile(source, target=target, options={"num_warps": num_warps, "enable_fp_fusion": True})


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


def load_module(path: str = KERNEL_FILE):
    """The kernel module at ``path``, loaded on its own (not as ``bigvgan_fast.kernels``)."""
    spec = importlib.util.spec_from_file_location("kernel_under_count", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the launchers on a GPU that is not there -------------------------------------------------------


class Launch(NamedTuple):
    """One launch as Triton's compiled-kernel runner hands it to the backend's C launcher."""
    kernel: object  # the CompiledKernel (its src: the ASTSource, with signature, constants, attrs)
    grid: tuple
    stream: int
    args: tuple  # the runner's positional arguments, one per entry of kernel.src.signature


H200_MULTIPROCESSORS = 132
H200_SHARED_MEMORY = 232448  # bytes per block, sm_90's opt-in maximum


@contextlib.contextmanager
def offline_gpu(module, arch: int = 90, multiprocessors: int = H200_MULTIPROCESSORS):
    """Run ``module``'s launchers (:func:`load_module`) on CPU tensors as if on a CUDA device of
    compute capability ``arch``: Triton's JIT specialises on the arguments and compiles for that
    device as on a real one (ptxas, cubin), and each launch is recorded in the yielded list of
    :class:`Launch` instead of run. Stood in for: Triton's active driver (the device, stream and
    target queries; loading the cubin; the C launcher), torch's current-device queries and
    ``module._multiprocessor_count``. Everything between the launcher's call and the C launch is
    Triton's and the module's own code."""
    from triton.compiler import compiler as triton_compiler
    from triton.runtime.driver import driver

    launches = []
    compiled = {}  # the CompiledKernel of each ASTSource, for the recorder

    class Recorder:
        """Stands for the backend's launcher_cls: built from (src, metadata) by CompiledKernel."""

        def __init__(self, src, metadata):
            self.src = src

        def __call__(self, grid_x, grid_y, grid_z, stream, function, packed_metadata, launch_metadata,
                     enter_hook, exit_hook, *args):
            launches.append(Launch(compiled[id(self.src)], (grid_x, grid_y, grid_z), stream, args))

    # module, function, registers, spills and, where Triton asks for it (3.4 on), threads per block
    loaded = (None, None, 0, 0, 1024)
    if "n_max_threads" not in inspect.getsource(triton_compiler.CompiledKernel._init_handles):
        loaded = loaded[:4]

    class Utils:
        def load_binary(self, name, kernel, shared, device):
            return loaded

        def get_device_properties(self, device):
            return {"max_shared_mem": H200_SHARED_MEMORY, "multiprocessor_count": multiprocessors}

        def unload_module(self, module):
            pass

    class Driver:
        launcher_cls = Recorder
        utils = Utils()

        def get_current_target(self):
            return triton.backends.compiler.GPUTarget("cuda", arch, 32)

        def get_current_device(self):
            return 0

        def get_current_stream(self, device=None):
            return 0

    original_init_handles = triton_compiler.CompiledKernel._init_handles

    def init_handles(kernel):
        compiled[id(kernel.src)] = kernel
        original_init_handles(kernel)

    saved = dict(vars(driver)), torch.cuda.current_device, torch.cuda.device, module._multiprocessor_count
    driver.set_active(Driver())
    torch.cuda.current_device = lambda: 0
    torch.cuda.device = lambda index: contextlib.nullcontext()
    module._multiprocessor_count = lambda index: multiprocessors
    triton_compiler.CompiledKernel._init_handles = init_handles
    try:
        yield launches
    finally:
        # The driver config as it was (restored whole: reset_active would create the real driver).
        vars(driver).clear()
        vars(driver).update(saved[0])
        torch.cuda.current_device, torch.cuda.device, module._multiprocessor_count = saved[1:]
        triton_compiler.CompiledKernel._init_handles = original_init_handles
        if hasattr(triton_compiler, "max_shared_mem"):  # Triton >= 3.1: holds the stand-in's figure
            triton_compiler.max_shared_mem.cache_clear()


def _inputs(B, C, T, dtype, has_beta, aligned=True, out_dtype=None):
    """CPU stand-ins of a launch's tensors; ``aligned=False`` offsets x and out by one element."""
    skip = 0 if aligned else 1
    x = torch.randn(B * C * T + skip, dtype=torch.float32).to(dtype)[skip:].view(B, C, T)
    out = torch.empty(B * C * T + skip, dtype=out_dtype or dtype)[skip:].view(B, C, T)
    alpha = torch.rand(C) - 0.5
    beta = torch.rand(C) - 0.5 if has_beta else None
    return x, out, alpha, beta, torch.randn(12), torch.randn(12)


def variant_calls(module):
    """(name, call) for the kernel variants the package's launchers compile: the prepared forward
    (inference: one kernel per tile length and alignment class, whatever the shape), the ordinary
    forward and backward launchers (which Triton specialises per call: pointer alignment, T, C and
    n_tiles divisible by 16 or equal to 1); every tile length the launchers pick, each x / out
    dtype pair, Snake and SnakeBeta, log-scale or not, the gather and the recompute path."""
    f32, bf16, f16 = torch.float32, torch.bfloat16, torch.float16
    calls = []

    def prepared(name, T, dtype=f32, out_dtype=None, has_beta=True, logscale=True, use_gather=True):
        def call():
            launch = module._PreparedForward(dtype, has_beta, logscale, torch.device("cpu"), f32, out_dtype or dtype,
                                             None, None, use_gather)
            x, out, alpha, beta, up, down = _inputs(2, 3, T, dtype, has_beta, out_dtype=out_dtype)
            launch(x, out, alpha, beta, up, down)
        calls.append((f"prepared forward, {name}", call))

    def forward(name, B, C, T, dtype=f32, out_dtype=None, use_gather=None):
        def call():
            x, out, alpha, beta, up, down = _inputs(B, C, T, dtype, True, out_dtype=out_dtype)
            module.anti_alias_activation_forward(x, alpha, beta, up, down, True, out=out, use_gather=use_gather)
        calls.append((f"forward, {name}", call))

    def backward(name, T, dtype=f32, has_beta=True, logscale=True, param_grads=True, use_gather=None):
        def call():
            x, _, alpha, beta, up, down = _inputs(2, 24, T, dtype, has_beta)
            module.anti_alias_activation_backward(torch.randn_like(x), x, alpha, beta, up, down, logscale,
                                                  param_grads, param_grads, use_gather=use_gather)
        calls.append((f"backward, {name}", call))

    for block_t in (16, 32, 64, 128, 256, 512, 1024):
        # T = block_t picks that tile length (a row of one tile); T - 1 is the unaligned class.
        prepared(f"fp32, BLOCK_T {block_t}, aligned", block_t)
        prepared(f"fp32, BLOCK_T {block_t}, unaligned", block_t - 1)
    for dtype, out_dtype, name in ((bf16, None, "bf16"), (f16, None, "fp16"), (f32, bf16, "fp32->bf16"),
                                   (f32, f16, "fp32->fp16")):
        prepared(f"{name}, BLOCK_T 1024, aligned", 1024, dtype, out_dtype)
        prepared(f"{name}, BLOCK_T 1024, unaligned", 1023, dtype, out_dtype)
        prepared(f"{name}, BLOCK_T 16, aligned", 16, dtype, out_dtype)
    prepared("fp32, Snake, log-scale, BLOCK_T 1024", 1024, has_beta=False)
    prepared("fp32, SnakeBeta, linear, BLOCK_T 1024", 1024, logscale=False)
    prepared("fp32, Snake, linear, BLOCK_T 1024", 1024, has_beta=False, logscale=False)
    prepared("bf16, Snake, log-scale, BLOCK_T 1024", 1024, bf16, has_beta=False)
    for T in (16, 15, 128, 127):
        prepared(f"fp32, recompute, T {T}", T, use_gather=False)
    prepared("bf16, recompute, T 128", 128, bf16, use_gather=False)
    # The ordinary launcher at shapes that give each specialisation: T, C, n_tiles equal to 1 (a row
    # of one tile), divisible by 16 or neither.
    forward("fp32, (1, 1, 1)", 1, 1, 1)
    forward("fp32, (1, 24, 100)", 1, 24, 100)
    forward("fp32, (1, 24, 1000)", 1, 24, 1000)
    forward("fp32, (1, 24, 1024)", 1, 24, 1024)
    forward("fp32, (1, 24, 2016)", 1, 24, 2016)
    forward("fp32, (1, 24, 8192)", 1, 24, 8192)
    forward("fp32, (1, 24, 8191)", 1, 24, 8191)
    forward("fp32, (1, 512, 8192)", 1, 512, 8192)
    forward("bf16, (1, 24, 8192)", 1, 24, 8192, bf16)
    forward("fp32->bf16, (1, 24, 8192)", 1, 24, 8192, f32, bf16)
    forward("fp32, recompute, (1, 24, 100)", 1, 24, 100, use_gather=False)
    for T in (1, 16, 50, 100, 200, 300, 1000, 4096, 4095):
        backward(f"fp32, T {T}", T)
    backward("bf16, T 4096", 4096, bf16)
    backward("fp16, T 4096", 4096, f16)
    backward("fp32, Snake, T 4096", 4096, has_beta=False)
    backward("fp32, linear, T 4096", 4096, logscale=False)
    backward("fp32, no parameter gradients, T 4096", 4096, param_grads=False)
    backward("fp32, recompute, T 100", 100, use_gather=False)
    return calls


def specialisation(kernel) -> str:
    """The facts Triton compiled ``kernel`` for: its tile length and the arguments it took as
    divisible by 16 or as the constant 1."""
    src = kernel.src
    names = list(src.fn.arg_names)

    def name(key):
        return names[key[0]] if isinstance(key, tuple) else key if isinstance(key, str) else names[key]

    divisible = [name(key) for key, attrs in (getattr(src, "attrs", None) or {}).items()
                 if isinstance(attrs, list) and ["tt.divisibility", 16] in attrs]
    constants = {name(key): value for key, value in src.constants.items()}
    declared = {param.name for param in src.fn.params if param.is_constexpr}
    ones = [n for n, value in constants.items() if value == 1 and n not in declared]
    return (f"BLOCK_T {constants.get('BLOCK_T')}, {kernel.metadata.num_warps} warps; "
            f"divisible by 16: {','.join(divisible) or '-'}; equal to 1: {','.join(ones) or '-'}")


WIDTH = re.compile(r"\b(LDG|STG)\.E((?:\.\w+)*)")


def compiled_facts(kernel) -> dict:
    """Resources, SASS instructions (all, MUFU) and the widest global load and store of a compiled kernel."""
    sass = disassemble(kernel, "-sass")
    code = instructions(sass)
    widest = {"LDG": 0, "STG": 0}
    for op, modifiers in WIDTH.findall(sass):
        bits = re.search(r"\.(128|64|U16|S16|U8|S8)\b", modifiers)
        width = {"128": 128, "64": 64, "U16": 16, "S16": 16, "U8": 8, "S8": 8}[bits.group(1)] if bits else 32
        widest[op] = max(widest[op], width)
    # Triton's shared memory is dynamic (cuobjdump reports 0): the launcher asks for metadata.shared.
    return {**resources(kernel), "shared": kernel.metadata.shared, "instructions": len(code), "mufu": sum(op == "MUFU" for _, _, op, _ in code),
            "widest_load_bits": widest["LDG"], "widest_store_bits": widest["STG"],
            "specialisation": specialisation(kernel)}


def all_variants(module) -> dict:
    """:func:`compiled_facts` of every variant of :func:`variant_calls`, compiled as the launchers would on an H200."""
    results = {}
    with offline_gpu(module) as launches:
        for name, call in variant_calls(module):
            done = len(launches)
            try:
                call()
            except Exception as error:  # a variant this Triton cannot compile: report it, go on
                results[name] = {"error": f"{type(error).__name__}: {str(error).strip().splitlines()[-1][:300]}"}
                print(f"{name}: FAILED, {results[name]['error']}", flush=True)
                continue
            kernels = {id(launch.kernel): launch.kernel for launch in launches[done:]}
            assert len(kernels) == 1, f"{name}: {len(kernels)} kernels launched"
            results[name] = compiled_facts(next(iter(kernels.values())))
            r = results[name]
            print(f"{name}: {r['reg']} registers, {r['local']} B local, {r['stack']} B stack, {r['shared']} B shared; "
                  f"{r['instructions']} instructions, {r['mufu']} MUFU; widest load/store {r['widest_load_bits']}/"
                  f"{r['widest_store_bits']} bits; {r['specialisation']}", flush=True)
    return results


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
    parser.add_argument("--variants", action="store_true",
                        help="instead: compile every variant the launchers use (see variant_calls) and print "
                        "registers, spills, stack, shared memory and instruction counts of each")
    args = parser.parse_args()
    module = load_module(args.kernel_file or KERNEL_FILE)
    if args.variants:
        print(f"Triton {triton.__version__}, sm_90 (H200 stand-in)", flush=True)
        results = all_variants(module)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"triton": triton.__version__, "variants": results}, f, indent=1)
        failed = [name for name, r in results.items() if "error" in r]
        if failed:
            sys.exit(f"{len(failed)} of {len(results)} variants failed to compile under Triton {triton.__version__}")
        return
    ptr = DTYPES[args.dtype]
    common = {"HAS_BETA": True, "ALPHA_LOGSCALE": True, "BLOCK_T": args.block_t, "USE_GATHER": True}
    forward_sig = {"x_ptr": ptr, "y_ptr": ptr, "alpha_ptr": "*fp32", "beta_ptr": "*fp32", "up_ptr": "*fp32",
                   "down_ptr": "*fp32", "T": "i32", "C": "i32", "n_tiles": "i32"}
    forward_sig.update({name: "constexpr" for name in common})
    results = {}
    warps = {}
    # Each launcher's own warps rule (an older revision's _launch_config has no samples argument:
    # 4 samples per thread, both directions).
    samples_known = "samples_per_thread" in inspect.signature(module._launch_config).parameters
    for name, samples in (("forward", getattr(module, "_FORWARD_SAMPLES_PER_THREAD", 4)),
                          ("backward", getattr(module, "_BACKWARD_SAMPLES_PER_THREAD", 4))):
        warps[name] = module._launch_config(args.block_t, args.block_t, args.num_warps, True,
                                            *([samples] if samples_known else []))[1]
    forward_constexprs = dict(common)
    halo = 0
    kernel = module._anti_alias_activation_forward_kernel
    if "HALO" in kernel.arg_names:
        # Overlapping tiles: a tile stores block_t - 2 * halo outputs, and the counts are per stored output.
        halo = (module._halo if hasattr(module, "_halo") else module._forward_halo)(args.block_t, True)
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
    backward_halo = 0
    if "HALO" in module._anti_alias_activation_backward_kernel.arg_names:  # overlapping tiles since 2026-11-30
        backward_halo = halo
        backward_constexprs["HALO"] = halo
    backward_sig.update({name: "constexpr" for name in backward_constexprs})
    backward = compile_kernel(module._anti_alias_activation_backward_kernel, backward_sig, backward_constexprs,
                              warps["backward"])
    results["backward"] = summary(backward, args.block_t - 2 * backward_halo, warps["backward"])
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
