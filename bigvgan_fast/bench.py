"""``python -m bigvgan_fast bench``: the generator's speed with random weights (no download).

Times the eager forward and, on a GPU, the same forward replayed from a CUDA graph
(:mod:`bigvgan_fast.graphs`); reports the backend that actually ran for each (x dtype, output
dtype) pair of the activations (:func:`bigvgan_fast.modules.backends_ran`), min / median / max of the
steady state, the first (warm-up) call and the graph capture apart from it, and the speed as
"N x faster than real time" (seconds of audio per second of compute).
"""

from __future__ import annotations

import platform
import time

import torch

from .config import load_config
from .generator import BigVGAN
from .modules import Activation1d, backends_ran
from .precision import HALF_DTYPES, to_dtype
from .streaming import input_dtype
from .timing import measure, synchronize


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def _first_call_ms(fn, device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


def bench_generator(
    config: str,
    *,
    frames: int,
    batch: int = 1,
    device: torch.device,
    dtype: torch.dtype,
    precision: str = "mixed",
    backend: str = "auto",
    repeats: int,
    warmup: int,
    cuda_graph: bool | None = None,
    conv_only: bool = False,
    on_step=None,
) -> dict:
    """Time ``config``'s generator on a random (batch, num_mels, frames) mel; see the module docstring.

    ``cuda_graph`` None: graphed as well as eager on a GPU, eager only on a CPU. ``precision``: the half
    precision mode ("mixed" or "cast", see :mod:`bigvgan_fast.precision`). ``conv_only`` replaces
    every anti-aliased activation with identity: the cost of everything else.
    """
    h = load_config(config)
    torch.manual_seed(0)
    model = BigVGAN(h, backend=backend, use_weight_norm=False).eval().to(device)
    to_dtype(model, dtype, precision)
    if dtype not in HALF_DTYPES:
        precision = "full"
    if conv_only:
        for module in model.modules():
            if isinstance(module, Activation1d):
                module.forward = _identity
    mel = torch.randn(batch, h.num_mels, frames, device=device, dtype=input_dtype(model))
    samples = batch * frames * h.upsample_factor
    audio_s = samples / batch / h.sampling_rate
    def eager():
        with torch.inference_mode():
            model(mel)

    result = {
        "config": config,
        "device": device_name(device),
        "dtype": str(dtype).removeprefix("torch."),
        "precision": precision,
        "backend_requested": backend,
        "batch": batch,
        "frames": frames,
        "output_samples": samples,
        "audio_seconds": audio_s,
        "torch": torch.__version__,
        "timing": "CUDA events" if device.type == "cuda" else "time.perf_counter",
    }
    modes = {"eager": eager}
    if cuda_graph is None:
        cuda_graph = device.type == "cuda"
    if cuda_graph:
        from .graphs import GraphRunner

        runner = GraphRunner(model)
        modes["graph"] = lambda: runner(mel)
    for mode, fn in modes.items():
        first = _first_call_ms(fn, device)  # warm-up: cuDNN's choices, Triton's compile, the capture
        timing = measure(fn, device, warmup, repeats, on_step)
        row = {"first_call_ms": first, **timing.as_dict()}
        row["mhz"] = samples / timing.median_ms / 1e3
        row["x_real_time"] = audio_s / (timing.median_ms / 1e3)
        if mode == "graph":
            row["captures"] = runner.captures
        result[mode] = row
    # What ran, not what the model's dtype would choose: the mixed half-precision mode's activations
    # read float32 and write half precision too, each pair a backend choice of its own.
    result["activation_calls"] = backends_ran(model)
    result["backend"] = "none (conv_only)" if conv_only else "+".join(_backend_names(result["activation_calls"]))
    return result


def _backend_names(calls: list[dict]) -> list[str]:
    return list(dict.fromkeys(row["backend"] for row in calls))


def describe_backends(calls: list[dict]) -> str:
    """The rows of :func:`bigvgan_fast.modules.backends_ran` in words: "cuda for float32->bfloat16
    (54 activations), bfloat16->bfloat16 (54), float32->float32 (1)"; backends apart by "; "."""
    if not calls:
        return "none (no activation ran)"
    parts = []
    unit = " activations"  # once, at the first count
    for name in _backend_names(calls):
        pairs = []
        for row in calls:
            if row["backend"] == name:
                pairs.append(f"{row['x_dtype']}->{row['out_dtype']} ({row['activations']}{unit})")
                unit = ""
        parts.append(f"{name} for " + ", ".join(pairs))
    return "; ".join(parts)


def _identity(x: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """An activation's stand-in for ``conv_only``: its input, in the dtype the next layer reads."""
    return x if out_dtype is None else x.to(out_dtype)


def real_time(factor: float) -> str:
    """Seconds of audio per second of compute, in words (never a bare ratio, which reads like an RTF)."""
    if factor >= 1:
        return f"{factor:,.1f}x faster than real time"
    return f"{1 / factor:,.1f}x slower than real time"


def format_result(result: dict) -> str:
    ran = result["backend"] if result["backend"].startswith("none") else describe_backends(result["activation_calls"])
    lines = [
        f"{result['config']} | {result['device']} | {result['dtype']} ({result['precision']}) | backend {ran}"
        + (f" | asked: {result['backend_requested']}" if result["backend_requested"] != result["backend"] else "")
        + f" | batch {result['batch']} x {result['frames']} frames = {result['audio_seconds']:.2f} s of audio"
    ]
    for mode in ("eager", "graph"):
        row = result.get(mode)
        if row is None:
            continue
        capture = ""
        if mode == "graph" and row.get("captures"):
            c = row["captures"][0]
            capture = f"; capture {c['warmup_ms']:.0f} ms warm-up + {c['capture_ms']:.0f} ms"
        lines.append(
            f"{mode:<6} median {row['median_ms']:.2f} ms (min {row['min_ms']:.2f}, max {row['max_ms']:.2f}, "
            f"{row['repeats']} runs): {1e3 * row['mhz']:,.1f} kHz of output, {real_time(row['x_real_time'])}; "
            f"first call {row['first_call_ms']:.0f} ms{capture}"
        )
    return "\n".join(lines)
