"""SASS instruction counts of the CUDA kernel (csrc/anti_alias_activation.cu), per I/O dtype.

Needs nvcc and cuobjdump, not a GPU. Compiles the kernel to a cubin (``nvcc -cubin``, the flags torch's
build uses, ``-arch=sm_90`` by default), reads ptxas's registers / spills / stack and the SASS, and
prints per kernel instantiation: instructions by pipe class, and each divided by the outputs one
thread produces per tile (``kOutputsPerThread``, read from the source).

The counts are static: every instruction of the kernel body once. The body is straight-line code for
one tile (all loops over a thread's outputs are unrolled), so static / outputs-per-thread is the
executed count per output, plus the setup and the rarely taken paths (scalar loads of unaligned rows,
border fixes), which make it an upper bound. Out-of-line device functions (the precise sine of the
slow path) are listed apart and not counted in the kernel.

    python benchmarks/cuda_sass.py [--arch 90] [--source csrc/anti_alias_activation.cu] [--json out.json]
    python benchmarks/cuda_sass.py --json benchmarks/counts/cuda_sass.json   # what bench_activation reads

The JSON holds ``meta`` (the date, the target, nvcc's and cuobjdump's versions) beside the counts.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT / "csrc" / "anti_alias_activation.cu"
# torch.utils.cpp_extension.COMMON_NVCC_FLAGS plus cuda_build.NVCC_FLAGS' optimisation level.
NVCC_FLAGS = [
    "-std=c++17",
    "-O3",
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
    "--expt-relaxed-constexpr",
]

# Opcode (before the first '.') -> class. FP32 pipe: the float arithmetic, compares and selects that
# issue on the FMA units; MUFU: the special-function unit; the rest by what they touch.
FP32_PIPE = {"FFMA", "FMUL", "FADD", "FMNMX", "FSETP", "FSEL", "FSET", "FCHK", "FSWZADD", "FRND", "FFMA32I", "FMUL32I", "FADD32I"}
CLASSES = {
    "fp32": FP32_PIPE,
    "mufu": {"MUFU"},
    "convert": {"F2F", "F2FP", "F2I", "I2F", "I2FP", "HADD2", "HMUL2", "HFMA2"},
    "global_load": {"LDG"},
    "global_store": {"STG"},
    "shared_load": {"LDS", "LDSM"},
    "shared_store": {"STS"},
    "local": {"LDL", "STL"},
    "control": {"BRA", "BSSY", "BSYNC", "BAR", "EXIT", "CALL", "RET", "WARPSYNC", "BMOV", "NOP", "YIELD"},
}


def classify(opcode: str) -> str:
    for name, members in CLASSES.items():
        if opcode in members:
            return name
    return "integer_other"


def outputs_per_thread(source: Path) -> int:
    found = re.search(r"constexpr int kOutputsPerThread = (\d+);", source.read_text())
    if not found:
        raise SystemExit(f"{source}: no 'constexpr int kOutputsPerThread = N;'")
    return int(found.group(1))


def compile_cubin(source: Path, arch: int, out: Path) -> str:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise SystemExit("nvcc not found on PATH")
    command = [nvcc, *NVCC_FLAGS, "-lineinfo", "-cubin", f"-arch=sm_{arch}", "-Xptxas", "-v", f"-I{source.parent}", "-o", str(out), str(source)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"nvcc failed:\n{done.stderr}")
    return done.stderr + done.stdout


def ptxas_resources(report: str) -> dict[str, dict[str, int]]:
    """Registers, stack frame and spills per function, from ``-Xptxas -v``."""
    functions: dict[str, dict[str, int]] = {}
    current = None
    for line in report.splitlines():
        named = re.search(r"(?:Compiling entry function|Function properties for) '?([\w$]+)'?", line)
        if named:
            current = named.group(1)
            functions.setdefault(current, {})
            continue
        if current is None:
            continue
        frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if frame:
            functions[current].update(stack=int(frame.group(1)), spill_stores=int(frame.group(2)), spill_loads=int(frame.group(3)))
        used = re.search(r"Used (\d+) registers", line)
        if used:
            functions[current]["registers"] = int(used.group(1))
    return functions


def find_cuobjdump() -> str:
    """cuobjdump on PATH, beside nvcc, or the copy Triton ships (pip's triton has one)."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    nvcc = shutil.which("nvcc")
    if nvcc and (Path(nvcc).resolve().parent / "cuobjdump").exists():
        return str(Path(nvcc).resolve().parent / "cuobjdump")
    try:
        import triton

        bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    raise SystemExit("cuobjdump not found (not on PATH, not beside nvcc, no triton package)")


def sass_functions(cubin: Path) -> dict[str, list[str]]:
    """Opcode list per function in the cubin."""
    done = subprocess.run([find_cuobjdump(), "-sass", str(cubin)], capture_output=True, text=True, check=True)
    functions: dict[str, list[str]] = {}
    current = None
    for line in done.stdout.splitlines():
        named = re.match(r"\s*Function : (\S+)", line)
        if named:
            current = named.group(1)
            functions[current] = []
            continue
        instruction = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)(?:\.[\w.]+)?\s", line)
        if current is not None and instruction:
            functions[current].append(instruction.group(1))
    return functions


def find_nvdisasm() -> str:
    return str(Path(find_cuobjdump()).with_name("nvdisasm"))


def function_starts(source: Path) -> list[tuple[int, str]]:
    """(line, name) of each function definition in the .cu file, in order."""
    starts = []
    for number, line in enumerate(source.read_text().splitlines(), start=1):
        found = re.match(r"\s*(?:static\s+)?(?:__device__|__global__|template|void|cudaError_t)\b.*?(\w+)\(", line)
        if found and "__device__" in line or (found and "__global__" in line):
            starts.append((number, found.group(1)))
    return starts


def sass_by_source_function(cubin: Path, source: Path) -> dict[str, dict[str, Counter]]:
    """Per kernel, per source function of ``source`` (by ``-lineinfo``): opcode class counts. An
    instruction inlined from a CUDA header counts for the last line of ``source`` before it."""
    done = subprocess.run([find_nvdisasm(), "-g", "-c", str(cubin)], capture_output=True, text=True, check=True)
    starts = function_starts(source)

    def function_at(line: int) -> str:
        name = "?"
        for start, candidate in starts:
            if start > line:
                break
            name = candidate
        return name

    result: dict[str, dict[str, Counter]] = {}
    kernel = None
    where = "?"
    for line in done.stdout.splitlines():
        header = re.match(r"\s*\.text\.(\S+):", line)
        if header:
            kernel = header.group(1)
            result.setdefault(kernel, {})
            continue
        located = re.search(r'//## File "([^"]+)", line (\d+)', line)
        if located:
            if Path(located.group(1)).name == source.name:
                where = function_at(int(located.group(2)))
            continue
        instruction = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)(?:\.[\w.]+)?\s", line)
        if kernel is not None and instruction:
            result[kernel].setdefault(where, Counter())[classify(instruction.group(1))] += 1
    return result


# Itanium-mangled template arguments of the kernel: a type, or S<n>_ (the same type as an earlier one).
_MANGLED_TYPES = {"f": "float32", "6__half": "float16", "13__nv_bfloat16": "bfloat16"}


def dtype_of(mangled: str) -> str | None:
    """The kernel instantiation's I/O dtypes: "float32" for <float, float> (and for the one-parameter
    kernels of older sources), "float32->bfloat16" for <float, __nv_bfloat16>."""
    found = re.search(r"anti_alias_activation_kernelI((?:f|6__half|13__nv_bfloat16|S\d*_)+)E", mangled)
    if not found:
        return None
    names = [_MANGLED_TYPES.get(token, "same") for token in re.findall(r"f|6__half|13__nv_bfloat16|S\d*_", found.group(1))]
    if names[0] == "same" or len(names) > 2:
        return None
    if len(names) == 1 or names[1] in ("same", names[0]):
        return names[0]
    return f"{names[0]}->{names[1]}"


# The source functions of one thread's per-output work: the upsampling and the sine run once per
# m in the unrolled chunk (kOutputsPerThread of them) and once more in the block that computes the
# 6 halo m values (a few threads only), the downsampling once per output. ("snake" is the name of
# the sine's function before the fast sine, for counting old sources; its inlined precise sinf,
# slow path included, then counts as executed, so the old figure is an upper bound.)
PER_M_FUNCTIONS = ("upsample_pair", "fast_sine_squared", "snake_scaled", "snake", "upsample_activate")
PER_OUTPUT_FUNCTIONS = ("downsample",)


def hot_path_per_output(by_function: dict[str, Counter], per_thread: int) -> dict[str, float]:
    """Executed instructions per output sample on the common path, by class: the per-m functions'
    static count over (outputs per thread + 1) sites, the downsampling's over outputs per thread.
    Staging, stores, setup and the rare paths are left out (see by_function for them)."""
    total: Counter = Counter()
    for name in PER_M_FUNCTIONS:
        for cls, n in by_function.get(name, Counter()).items():
            total[cls] += n / (per_thread + 1)
    for name in PER_OUTPUT_FUNCTIONS:
        for cls, n in by_function.get(name, Counter()).items():
            total[cls] += n / per_thread
    return {cls: round(n, 2) for cls, n in sorted(total.items())}


def count(source: Path, arch: int) -> dict:
    per_thread = outputs_per_thread(source)
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        report = compile_cubin(source, arch, cubin)
        functions = sass_functions(cubin)
        by_function = sass_by_source_function(cubin, source)
    resources = ptxas_resources(report)
    result = {"source": str(source), "arch": f"sm_{arch}", "outputs_per_thread": per_thread, "kernels": {}, "device_functions": {}}
    for name, opcodes in functions.items():
        counts = Counter(classify(op) for op in opcodes)
        entry = {
            "instructions": len(opcodes),
            "by_class": dict(sorted(counts.items())),
            "by_opcode": dict(Counter(opcodes).most_common()),
            **resources.get(name, {}),
        }
        dtype = dtype_of(name) if "anti_alias_activation_kernel" in name else None
        if dtype is None:
            result["device_functions"][name] = entry
        else:
            entry["per_output"] = {k: round(v / per_thread, 2) for k, v in entry["by_class"].items()}
            entry["per_output"]["all"] = round(len(opcodes) / per_thread, 2)
            entry["by_function"] = {f: dict(c) for f, c in sorted(by_function.get(name, {}).items())}
            entry["hot_path_per_output"] = hot_path_per_output(by_function.get(name, {}), per_thread)
            result["kernels"][dtype] = entry
    return result


def print_table(result: dict) -> None:
    print(f"{result['source']} for {result['arch']}: static SASS per kernel, / {result['outputs_per_thread']} outputs per thread")
    classes = ["fp32", "mufu", "convert", "global_load", "global_store", "shared_load", "shared_store", "local", "integer_other", "control"]
    print(f"{'dtype':<18}{'regs':>5}{'stack':>6}{'spill':>6}{'instr':>7}" + "".join(f"{c:>14}" for c in classes))
    for dtype, k in sorted(result["kernels"].items()):
        spills = k.get("spill_stores", 0) + k.get("spill_loads", 0)
        cells = "".join(f"{k['by_class'].get(c, 0):>6} ({k['per_output'].get(c, 0):>5})" for c in classes)
        print(f"{dtype:<18}{k.get('registers', '?'):>5}{k.get('stack', '?'):>6}{spills:>6}{k['instructions']:>7}{cells}")
    print("(each cell: static count (per output))")
    print("hot path per output (upsample + sine + downsample, from -lineinfo):")
    for dtype, k in sorted(result["kernels"].items()):
        hot = k["hot_path_per_output"]
        print(f"  {dtype:<17} " + "  ".join(f"{c} {v}" for c, v in hot.items()))
    for name, f in result["device_functions"].items():
        print(f"device function {name}: {f['instructions']} instructions, {f.get('registers', '?')} registers, MUFU {f['by_class'].get('mufu', 0)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--json", type=Path, help="also write the counts here")
    args = parser.parse_args()
    result = count(args.source, args.arch)
    print_table(result)
    if args.json:
        meta = {"date": datetime.date.today().isoformat(), "target": f"sm_{args.arch}",
                "nvcc": toolchain_version(shutil.which("nvcc")), "cuobjdump": toolchain_version(find_cuobjdump())}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        source = Path(result["source"]).resolve()
        result["source"] = str(source.relative_to(ROOT)) if source.is_relative_to(ROOT) else str(source)
        args.json.write_text(json.dumps({"meta": meta, **result}, indent=1))
    return 0


def toolchain_version(tool: str | None) -> str:
    """The release line of ``tool --version`` (e.g. "Cuda compilation tools, release 13.0, V13.0.48"), else its last."""
    if tool is None:
        return "not found"
    try:
        done = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        return f"unknown ({err})"
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    release = [line for line in lines if "release" in line]
    return (release or lines or ["unknown"])[-1]


if __name__ == "__main__":
    sys.exit(main())
