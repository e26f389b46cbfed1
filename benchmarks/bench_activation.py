"""Anti-aliased activation benchmark at the 22 kHz model's shapes, every dtype and backend.

Forward (default): median time (``bigvgan_fast.timing.kernel_ms``: CUDA events), achieved GB/s
counting one read of x and one write of y, its fraction of a device-to-device copy measured in the
same run (of x's dtype), the official fused kernel (PyPI ``bigvgan``, built here for the local arch) timed in the
same run when importable with our speed-up over it, and each fused kernel's roofline: the larger of
its memory time (bytes / the copy rate of this run) and its arithmetic time (outputs x the FP32-pipe
operations per output of its compiled code / the card's FP32 issue rate), so each kernel's distance
from its own limit shows. The operation counts are read from ``benchmarks/counts/`` (see
:func:`load_op_counts`; the run prints where they came from): the CUDA kernel's per dtype, the
Triton forward's per tiles per program, which its launcher picks per shape (``_tiles_per_program``),
so each shape's Triton roofline is computed with that shape's count.

Rows ``float32->bfloat16`` (``--pairs``): x float32, y written in bfloat16 by the op (``out_dtype``),
as the mixed half-precision mode's first activation of each AMP layer does; bytes 4 + 2 per element,
against the float32 copy rate. Beside them ``*_then_cast``: the same bare op writing float32 and
then ``.to(bfloat16)`` (the mixed mode's path before out_dtype), timed the same way.

``--backward``: forward+backward time and peak memory per backend at the same shapes, and one
training step of the 22 kHz generator at the official training shape (batch 4 x 256 frames),
fused against the torch path.

    python benchmarks/bench_activation.py --out benchmarks/out/activation.json
    python benchmarks/bench_activation.py --backward --out benchmarks/out/backward.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import sys

import torch

import bigvgan_fast
from bigvgan_fast import anti_alias_activation, load_config
from bigvgan_fast.anti_alias.policy import problem
from bigvgan_fast.config import DTYPES
from bigvgan_fast.timing import kernel_ms

# FP32-pipe operations (FFMA, FMUL, FADD, FMNMX, ...) per output sample of each kernel's common path,
# counted in its compiled SASS without a GPU and committed here (the special-function unit's sines run
# beside them). Regenerate after a kernel change:
#   python benchmarks/cuda_sass.py --json benchmarks/counts/cuda_sass.json
#   python benchmarks/triton_sass.py --dtype fp32 --block-t 1024 --json benchmarks/counts/triton_sass_fp32_1024.json
#   (and bf16, fp16; and --block-t 512: the launcher's tile for rows of 4096 and 8192 samples)
COUNTS_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "counts")
SASS_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}  # triton_sass.py's --dtype names
FP32_LANES_PER_SM = 128  # Hopper, Ada, Ampere GA10x: 128 FP32 lanes per SM per clock


def fp32_ops_per_second(clock_ghz: float | None) -> tuple[float, str]:
    """(FP32 operations issued per second on this card, how it was found)."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    clock = clock_ghz
    source = "--clock-ghz"
    if clock is None and getattr(props, "clock_rate", 0):
        clock, source = props.clock_rate / 1e6, "device properties"
    if clock is None:
        clock, source = 1.98, "assumed 1.98 GHz (H100/H200 SXM boost): pass --clock-ghz"
    return props.multi_processor_count * FP32_LANES_PER_SM * clock * 1e9, f"{props.multi_processor_count} SMs x {FP32_LANES_PER_SM} lanes x {clock:.2f} GHz ({source})"


def model_shapes(config_name: str, frames: int) -> list[tuple[int, int]]:
    """(channels, length) of every activation stage of the generator at ``frames`` mel frames."""
    h = load_config(config_name)
    shapes, length = [], frames
    for i, rate in enumerate(h.upsample_rates):
        length *= rate
        shapes.append((h.upsample_initial_channel // 2 ** (i + 1), length))
    return shapes


def copy_rate_gbps(dtype: torch.dtype) -> float:
    """Device-to-device copy rate (bytes read + written per second) on a 1 GiB buffer."""
    n = (1 << 30) // torch.tensor([], dtype=dtype).element_size()
    src = torch.randn(n, device="cuda").to(dtype)
    dst = torch.empty_like(src)
    ms = kernel_ms(lambda: dst.copy_(src), rep_ms=300, warmup_ms=50)
    return 2 * src.numel() * src.element_size() / ms / 1e6


def official_kernel():
    """NVIDIA's fused forward, built for the local arch (its own loader asks for sm_70, which CUDA 13
    refuses), or None with the reason printed."""
    import importlib.util

    from torch.utils import cpp_extension

    # Located, not imported: importing the package pulls librosa and its model code.
    spec = importlib.util.find_spec("bigvgan")
    if spec is None or not spec.submodule_search_locations:
        print("official kernel: not timed (the bigvgan package is not installed: pip install --no-deps bigvgan)", file=sys.stderr)
        return None
    src = os.path.join(list(spec.submodule_search_locations)[0], "alias_free_activation", "cuda")
    major, minor = torch.cuda.get_device_capability()
    try:
        return cpp_extension.load(
            name="official_anti_alias_activation_cuda",
            sources=[os.path.join(src, "anti_alias_activation.cpp"), os.path.join(src, "anti_alias_activation_cuda.cu")],
            extra_cflags=["-O3"],
            # The official build flags, with the local architecture instead of sm_70.
            extra_cuda_cflags=[
                "-O3", "--use_fast_math", "-gencode", f"arch=compute_{major}{minor},code=sm_{major}{minor}",
                "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__", "--expt-relaxed-constexpr", "--expt-extended-lambda",
            ],
            verbose=False,
        )
    except Exception as err:
        print(f"official kernel: not timed (build failed: {err})", file=sys.stderr)
        return None


def make_inputs(C: int, L: int, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(1, C, L, device="cuda", generator=gen).mul_(2).to(dtype)
    alpha = 0.3 * torch.randn(C, device="cuda", generator=gen)
    beta = 0.3 * torch.randn(C, device="cuda", generator=gen)
    return x, alpha, beta


def checkpoint_json(args, partial: dict) -> None:
    """Write what is measured so far, so that a run cut short by a timeout still leaves its rows."""
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"meta": args.meta, "partial": True, **partial}, f, indent=2)


def load_op_counts(folder: str = COUNTS_FOLDER) -> dict:
    """The kernels' FP32-pipe operations per output, as benchmarks/cuda_sass.py and
    benchmarks/triton_sass.py wrote them with ``--json``: ``{"cuda": cuda_sass.json, "triton": {(x
    dtype, BLOCK_T): triton_sass_<dtype>_<BLOCK_T>.json}}``, each with its ``meta`` (date, target,
    toolchain)."""
    with open(os.path.join(folder, "cuda_sass.json"), encoding="utf-8") as f:
        counts = {"cuda": json.load(f), "triton": {}}
    names = {name: dtype for dtype, name in SASS_DTYPES.items()}
    for file in sorted(os.listdir(folder)):
        found = re.fullmatch(r"triton_sass_(\w+?)_(\d+)\.json", file)
        if found and found.group(1) in names:
            with open(os.path.join(folder, file), encoding="utf-8") as f:
                counted = json.load(f)
            counts["triton"][names[found.group(1)], counted["meta"]["block_t"]] = counted
    return counts


def describe_op_counts(counts: dict, folder: str = COUNTS_FOLDER) -> str:
    """Where the counts came from and what they are, in the words the run prints."""
    cuda = counts["cuda"]
    meta = cuda["meta"]
    lines = [f"FP32-pipe operations per output, counted in SASS for {meta['target']} (no GPU), from {folder}:",
             f"  cuda_sass.json ({meta['date']}, nvcc {meta['nvcc']}): "
             + ", ".join(f"{dtype} {k['hot_path_per_output']['fp32']}" for dtype, k in sorted(cuda["kernels"].items()))]
    for (dtype, block_t), triton_counts in counts["triton"].items():
        meta, parts = triton_counts["meta"], triton_counts["forward_fp32_pipe_per_output"]
        lines.append(f"  triton_sass_{SASS_DTYPES[dtype]}_{block_t}.json ({meta['date']}, {meta['target']}, "
                     f"Triton {meta['triton']}, ptxas {meta['ptxas']}): {dtype} x, BLOCK_T {block_t}, "
                     f"{parts['per_tile']} + {parts['per_program']} / n at n tiles per program")
    return "\n".join(lines)


def fp32_ops_per_output(counts: dict, kernel: str, label: str, x: torch.Tensor) -> tuple[float, dict] | None:
    """(FP32-pipe operations per output of fused ``kernel`` on x, how it was found) for the row
    ``label`` ("float32", "float32->bfloat16", ...), or None where nothing was counted.

    cuda: the count of that dtype pair's instantiation. triton: the forward for x's dtype at the tile
    length (BLOCK_T: 1024, or 512 for rows of 4096 and 8192 samples) and the tiles per program n that
    its launcher picks for x's shape and device (``_tiling``, ``_tiles_per_program``; n = 1 at the
    256-frame first stage, T = 1024, one tile per row), as ``per_tile + per_program / n``; the pair
    rows take the count of x's dtype (only the final conversion differs). None where that tile
    length was not counted. (A row of one tile takes the border path, not the interior path
    counted; and stores T outputs, not BLOCK_T - 16: an estimate there.)
    """
    if kernel == "cuda":
        found = counts["cuda"]["kernels"].get(label)
        return None if found is None else (found["hot_path_per_output"]["fp32"], {})
    from bigvgan_fast import kernels

    forward = kernels.anti_alias_activation
    n_tiles, block_t, *_ = forward._tiling(x.shape, None, None, None, forward._FORWARD_SAMPLES_PER_THREAD)
    triton_counts = counts["triton"].get((label.split("->")[0], block_t))
    if triton_counts is None:
        return None
    tiles_per_program = forward._tiles_per_program(x.shape[0], x.shape[1], n_tiles, x.device)
    parts = triton_counts["forward_fp32_pipe_per_output"]
    return parts["per_tile"] + parts["per_program"] / tiles_per_program, {"block_t": block_t, "tiles_per_program": tiles_per_program}


def _measure(row: dict, providers: dict, nbytes: int, copy: float, numel: int, fp32_rate: float, rep_ms: int,
             ops: dict) -> None:
    """Time each provider into ``row``: ms, GB/s (``nbytes`` per call), fraction of ``copy``, and for
    the fused kernels with a count in ``ops`` (kernel -> FP32-pipe operations per output) their roofline."""
    for name, fn in providers.items():
        # The bare ops and the official kernel are timed replayed from a CUDA graph: the
        # kernels' own time (at 256 frames do_bench's events mostly time the host's
        # launch); the public function with do_bench, host cost included.
        graphed = name.endswith(("_op", "_then_cast")) or name == "official"
        try:
            ms = kernel_ms(fn, rep_ms=rep_ms, cuda_graph=graphed)
        except Exception as err:  # a capture that fails is reported, and timed without a graph
            print(f"{name}: CUDA-graph timing failed ({type(err).__name__}: {err}); timed with do_bench", file=sys.stderr)
            graphed, ms = False, kernel_ms(fn, rep_ms=rep_ms)
        row[f"{name}_timing"] = "do_bench_cudagraph" if graphed else "do_bench"
        row[f"{name}_ms"] = ms
        row[f"{name}_gbps"] = nbytes / ms / 1e6
        row[f"{name}_copy_fraction"] = nbytes / ms / 1e6 / copy
        kernel = name.removesuffix("_op")
        if kernel in ops:
            memory_ms = nbytes / (copy * 1e6)
            arithmetic_ms = numel * ops[kernel] / fp32_rate * 1e3
            row[f"{name}_roofline_ms"] = max(memory_ms, arithmetic_ms)
            row[f"{name}_roofline_bound"] = "memory" if memory_ms >= arithmetic_ms else "arithmetic"


def build_providers(backends, x, alpha, beta, taps, out_dtype=None, official=None) -> dict:
    """What is timed on x, by name, for each backend of ``backends`` that can run on x's device and
    dtype: the public op (``"torch"``, ``"triton"``, ``"cuda"``) and the fused backends' bare ops
    (``"triton_op"``, ``"cuda_op"``: without the public function's checks and dispatch; at 256
    frames, where a kernel takes tens of microseconds, host overhead could decide a comparison).
    With ``out_dtype`` every one writes it, and ``"<backend>_then_cast"`` is the bare op writing x's
    dtype then ``.to(out_dtype)`` (the mixed mode's path before out_dtype). Without it,
    ``"official"``: NVIDIA's kernel (``official``, :func:`official_kernel`) when given, with its
    arguments as the official Activation1d passes them (taps and parameters in x's dtype, cast here
    once, outside the timed call). ``taps``: the 12 float32 filter taps, on x's device."""
    lib = bigvgan_fast.anti_alias.library
    runnable = [b for b in backends if b == "torch" or problem(b, x.device.type, x.dtype, False) is None]
    providers = {b: (lambda b=b: anti_alias_activation(x, alpha, beta, backend=b, out_dtype=out_dtype)) for b in runnable}
    bare = {}
    if "triton" in runnable:
        bare["triton"] = lambda *out: lib.anti_alias_activation_triton(x, alpha, beta, taps, taps, True, *out)
    if "cuda" in runnable:
        cuda_op = lib.cuda_op()
        bare["cuda"] = lambda *out: cuda_op(x, alpha, beta, taps, taps, True, *out)
    written = () if out_dtype is None else (out_dtype,)
    for name, op in bare.items():
        providers[f"{name}_op"] = lambda op=op: op(*written)
    if out_dtype is not None:
        for name, op in bare.items():
            providers[f"{name}_then_cast"] = lambda op=op: op().to(out_dtype)
    elif official is not None:
        taps_o, alpha_o, beta_o = taps.view(1, 1, 12).to(x.dtype), alpha.to(x.dtype), beta.to(x.dtype)
        providers["official"] = lambda: official.forward(x, taps_o, taps_o, alpha_o, beta_o)
    return providers


def bench_forward(args) -> dict:
    official = official_kernel() if args.official else None
    fp32_rate, rate_source = fp32_ops_per_second(args.clock_ghz)
    print(f"FP32 issue rate {fp32_rate / 1e12:.1f} T/s: {rate_source}", file=sys.stderr)
    counts = load_op_counts()
    print(describe_op_counts(counts))
    f = bigvgan_fast.anti_alias.reference.default_filter("cuda", torch.float32)
    # The pair rows right after the float32 ones (same copy rate), so that a run cut short by a
    # timeout has them: [(label, x dtype, out dtype or None)].
    pair_kinds = [(pair, DTYPES[pair.split("->")[0]], DTYPES[pair.split("->")[1]]) for pair in args.pairs]
    kinds = []
    for dtype_name in args.dtypes:
        kinds.append((dtype_name, DTYPES[dtype_name], None))
        if dtype_name == "float32":
            kinds += pair_kinds
    if "float32" not in args.dtypes:
        kinds += pair_kinds
    copies = {}
    rows = []
    for label, dtype, out_dtype in kinds:
        if dtype not in copies:
            copies[dtype] = copy_rate_gbps(dtype)
            print(f"{label}: device-to-device copy {copies[dtype]:,.0f} GB/s", file=sys.stderr)
        copy = copies[dtype]
        for frames in args.frames:
            for C, L in model_shapes(args.config, frames):
                x, alpha, beta = make_inputs(C, L, dtype)
                row = {"dtype": label, "frames": frames, "C": C, "L": L, "copy_gbps": copy}
                out_size = x.element_size() if out_dtype is None else out_dtype.itemsize
                nbytes = x.numel() * (x.element_size() + out_size)
                providers = build_providers(args.backends, x, alpha, beta, f, out_dtype, official)
                ops = {}
                for kernel in ("cuda", "triton"):
                    # Only a kernel timed here gets a count (and triton's needs its importable kernels).
                    if kernel not in providers:
                        continue
                    found = fp32_ops_per_output(counts, kernel, label, x)
                    if found is not None:
                        ops[kernel] = row[f"{kernel}_fp32_ops_per_output"] = found[0]
                        row.update({f"{kernel}_{key}": value for key, value in found[1].items()})
                _measure(row, providers, nbytes, copy, x.numel(), fp32_rate, args.rep_ms, ops)
                rows.append(row)
                checkpoint_json(args, {"rows": rows})
    return {"rows": rows, "fp32_ops_per_second": fp32_rate, "fp32_rate_source": rate_source,
            "op_counts": {"folder": COUNTS_FOLDER, "cuda": counts["cuda"]["meta"],
                          **{f"triton {dtype} {block_t}": c["meta"] for (dtype, block_t), c in counts["triton"].items()}}}


def print_forward(result: dict, backends: list[str]) -> None:
    candidates = backends + [b + "_op" for b in backends] + ["official"] + [b + "_then_cast" for b in backends]
    names = [b for b in candidates if any(f"{b}_ms" in r for r in result["rows"])]
    roofed = {n for n in names if any(f"{n}_roofline_ms" in r for r in result["rows"])}
    head = f"{'dtype':<18}{'frames':>7}{'C x L':>15}" + "".join(
        f"{n + ' ms':>{max(13, len(n) + 5)}}{'%copy':>7}" + (f"{'roofline':>10}{'x roof':>7}" if n in roofed else "")
        for n in names
    )
    if "official" in names:
        head += "".join(f"{'x official (' + n + ')':>24}" for n in names if n != "official" and not n.endswith("_then_cast"))
    print(head)
    for r in result["rows"]:
        line = f"{r['dtype']:<18}{r['frames']:>7}{str(r['C']) + ' x ' + str(r['L']):>15}"
        for n in names:
            line += f"{r.get(n + '_ms', math.nan):>{max(13, len(n) + 5)}.4f}{100 * r.get(n + '_copy_fraction', math.nan):>6.0f}%"
            if n in roofed:
                roof = r.get(n + "_roofline_ms", math.nan)
                line += f"{roof:>10.4f}{r.get(n + '_ms', math.nan) / roof:>7.2f}"
        if "official" in names:
            line += "".join(f"{r.get('official_ms', math.nan) / r.get(n + '_ms', math.nan):>24.2f}" for n in names
                            if n != "official" and not n.endswith("_then_cast"))
        print(line)


def bench_backward(args) -> dict:
    rows = []
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        for frames in args.frames:
            for C, L in model_shapes(args.config, frames):
                x, alpha, beta = make_inputs(C, L, dtype)
                x.requires_grad_(True)
                alpha.requires_grad_(True)
                beta.requires_grad_(True)
                grad = torch.randn_like(x)
                row = {"dtype": dtype_name, "frames": frames, "C": C, "L": L}
                for name in args.backends:
                    if name != "torch" and problem(name, "cuda", dtype, True) is not None:
                        continue

                    def step(name=name):
                        y = anti_alias_activation(x, alpha, beta, backend=name)
                        y.backward(grad)

                    ms = kernel_ms(step, rep_ms=args.rep_ms, warmup_ms=10, grad_to_none=[x, alpha, beta])
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    step()
                    torch.cuda.synchronize()
                    row[f"{name}_ms"] = ms
                    row[f"{name}_peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
                rows.append(row)
                checkpoint_json(args, {"rows": rows})
    train = []
    for name in args.backends:
        if name != "torch" and problem(name, "cuda", torch.float32, True) is not None:
            continue
        torch.manual_seed(0)
        model = bigvgan_fast.BigVGAN(args.config, backend=name).cuda().train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        mel = torch.randn(4, model.config.num_mels, 256, device="cuda")
        target = torch.randn(4, 1, 256 * model.config.upsample_factor, device="cuda").clamp(-1, 1)

        def train_step():
            opt.zero_grad(set_to_none=True)
            loss = (model(mel) - target).abs().mean()
            loss.backward()
            opt.step()

        for _ in range(3):
            train_step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        ms = kernel_ms(train_step, rep_ms=args.rep_ms * 20, warmup_ms=1)
        train.append({"backend": name, "ms": ms, "peak_gb": torch.cuda.max_memory_allocated() / 2**30})
        torch.cuda.empty_cache()
    return {"rows": rows, "train_step": train}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="bigvgan_v2_22khz_80band_256x")
    parser.add_argument("--frames", type=int, nargs="+", default=[256, 2048])
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--pairs", nargs="*", default=["float32->bfloat16"], choices=["float32->bfloat16", "float32->float16"],
                        help="x dtype -> out_dtype rows (the mixed half-precision mode's first activations); none: --pairs")
    parser.add_argument("--backends", nargs="+", default=["torch", "triton", "cuda"])
    parser.add_argument("--no-official", dest="official", action="store_false")
    parser.add_argument("--backward", action="store_true")
    parser.add_argument("--rep-ms", type=int, default=200, help="do_bench repetition time per measurement (ms)")
    parser.add_argument("--clock-ghz", type=float, default=None, help="SM clock for the arithmetic roofline (default: the device's)")
    parser.add_argument("--out", default=None, help="write JSON here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_activation: needs a CUDA GPU (none visible to torch)", file=sys.stderr)
        return 2
    meta = {
        "card": torch.cuda.get_device_name(),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "config": args.config,
    }
    args.meta = meta
    if args.backward:
        result = bench_backward(args)
        print(f"# {meta['card']}, {meta['date']}: forward+backward, ms (peak MB)")
        for r in result["rows"]:
            cells = "  ".join(f"{b} {r[b + '_ms']:.3f} ({r[b + '_peak_mb']:.0f})" for b in args.backends if b + "_ms" in r)
            speed = f"  torch/triton {r['torch_ms'] / r['triton_ms']:.2f}x" if "triton_ms" in r and "torch_ms" in r else ""
            print(f"{r['dtype']:<9}{r['frames']:>6} {r['C']:>4} x {r['L']:<8} {cells}{speed}")
        for t in result["train_step"]:
            print(f"training step, batch 4 x 256 frames, {t['backend']}: {t['ms']:.1f} ms, peak {t['peak_gb']:.2f} GB")
    else:
        result = bench_forward(args)
        print(f"# {meta['card']}, {meta['date']}, torch {meta['torch']}")
        print_forward(result, args.backends)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"meta": meta, **result}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
