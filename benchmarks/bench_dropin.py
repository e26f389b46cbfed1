"""Drop-in speed-up: one BigVGAN model object timed before and after ``bigvgan_fast.accelerate``.

The "before" model is NVIDIA's ``bigvgan.BigVGAN`` (its torch activations) when the package is
importable, else ``bigvgan_fast.BigVGAN`` on the torch backend; random weights, weight norm
removed, float32, batch 1. Both are timed in the same run (CUDA events on a GPU, median of
``--repeats`` runs after ``--warmup``), with the largest difference between their outputs. Then the
streaming first-packet latency at the default lookahead: mel frames fed one at a time, as fast as
they are asked for, and the time until the first audio comes out (compute only: the lookahead's own
latency, lookahead x hop / sampling rate, is printed beside it), and the median time of each later
one-frame packet.

    python benchmarks/bench_dropin.py --out benchmarks/out/dropin.json
    python benchmarks/bench_dropin.py --config tests/golden/tiny_generator --frames 8 --repeats 2 \
        --out /tmp/dropin.json    # CPU smoke check (torch backend)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import statistics
import sys
import time
import warnings

import torch

from bigvgan_fast.timing import measure, synchronize

from bigvgan_fast import BigVGAN, load_config
from bigvgan_fast.accelerate import accelerate
from bigvgan_fast.anti_alias.policy import choose
from bigvgan_fast import receptive_field_frames
from bigvgan_fast.streaming import stream


def build_before_model(config, device):
    """(model, description): NVIDIA's generator if importable, else ours on the torch backend."""
    torch.manual_seed(0)
    try:
        import bigvgan
        from bigvgan.env import AttrDict
    except Exception as err:  # any import failure means: not available here
        print(
            f"bigvgan not importable ({type(err).__name__}: {err}); 'before' is bigvgan_fast.BigVGAN on the torch backend",
            file=sys.stderr,
        )
        model = BigVGAN(config, backend="torch").remove_weight_norm()
        return model.eval().to(device), "bigvgan_fast.BigVGAN, backend torch"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", FutureWarning)
        model = bigvgan.BigVGAN(AttrDict(config.to_dict()), use_cuda_kernel=False)
        model.remove_weight_norm()
    from importlib.metadata import PackageNotFoundError, version

    try:
        name = f"bigvgan.BigVGAN {version('bigvgan')}"
    except PackageNotFoundError:
        name = "bigvgan.BigVGAN"
    return model.eval().to(device), name + " (official, torch activations)"


def time_model(model, mels, device, warmup, repeats):
    rows = {}
    for frames, mel in mels.items():
        def run():
            with torch.inference_mode():
                model(mel)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        median = measure(run, device, warmup, repeats).median_ms
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        rows[frames] = {"median_ms": median, "peak_mib": peak}
    return rows


def first_packet_latency(model, config, device, frames: int, repeats: int, steady_packets: int, cuda_graph: bool = False) -> dict:
    """Compute time from the start of a stream to its first packet, and of later one-frame packets."""
    mel = torch.randn(1, config.num_mels, frames, device=device)

    def one_at_a_time():
        for t in range(frames):
            yield mel[0, :, t : t + 1]

    first, steady = [], []
    for _ in range(repeats + 1):  # the first pass warms up
        packets = stream(model, one_at_a_time(), cuda_graph=cuda_graph)
        synchronize(device)
        t0 = time.perf_counter()
        next(packets)
        synchronize(device)
        first.append((time.perf_counter() - t0) * 1e3)
        for _ in range(steady_packets):
            t0 = time.perf_counter()
            if next(packets, None) is None:
                break
            synchronize(device)
            steady.append((time.perf_counter() - t0) * 1e3)
        packets.close()
    lookahead = receptive_field_frames(config)
    return {
        "lookahead_frames": lookahead,
        "lookahead_ms": lookahead * config.upsample_factor / config.sampling_rate * 1e3,
        "first_packet_compute_ms": statistics.median(first[1:]),
        "packet_audio_ms": config.upsample_factor / config.sampling_rate * 1e3,
        "steady_packet_compute_ms": statistics.median(steady) if steady else None,
        "repeats": repeats,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="bigvgan_v2_22khz_80band_256x", help="shipped config name, config.json or folder")
    p.add_argument("--frames", type=int, nargs="+", default=[256, 2048], help="mel frames per call (batch 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per size (default 50 on a GPU, 3 on a CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 10 on a GPU, 1 on a CPU)")
    p.add_argument("--backend", default=None, help="accelerate's backend (default auto on a GPU, torch on a CPU)")
    p.add_argument("--device", default=None, help="cuda or cpu (default cuda when available)")
    p.add_argument("--stream-frames", type=int, default=None, help="frames fed to the stream (default receptive field + 10)")
    p.add_argument("--stream-repeats", type=int, default=None, help="streams timed (default 10 on a GPU, 1 on a CPU)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    on_gpu = device.type == "cuda"
    repeats = args.repeats or (50 if on_gpu else 3)
    warmup = args.warmup if args.warmup is not None else (10 if on_gpu else 1)
    backend = args.backend or ("auto" if on_gpu else "torch")
    config = load_config(args.config)
    if on_gpu:
        torch.backends.cudnn.benchmark = True
    if on_gpu:
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"

    model, before_name = build_before_model(config, device)
    gen = torch.Generator(device=device).manual_seed(1)
    mels = {f: torch.randn(1, config.num_mels, f, device=device, generator=gen) for f in args.frames}
    check_mel = mels[min(args.frames)]

    print(f"timing 'before' ({before_name}) ...", file=sys.stderr)
    with torch.inference_mode():
        before_audio = model(check_mel)
    before = time_model(model, mels, device, warmup, repeats)

    count = accelerate(model, backend=backend)
    backend_used = choose(backend, device.type, torch.float32, False)
    print(f"accelerate: {count} activations taken over, backend {backend} -> {backend_used}; timing 'after' ...", file=sys.stderr)
    with torch.inference_mode():
        max_abs_diff = (model(check_mel).double() - before_audio.double()).abs().max().item()
    after = time_model(model, mels, device, warmup, repeats)

    stream_frames = args.stream_frames or receptive_field_frames(config) + 10
    stream_repeats = args.stream_repeats or (10 if on_gpu else 1)
    print(f"streaming {stream_frames} frames one at a time ...", file=sys.stderr)
    streaming = first_packet_latency(model, config, device, stream_frames, stream_repeats, steady_packets=5)
    if on_gpu:  # the same stream with a CUDA graph per window shape (the first pass, untimed, captures)
        streaming["graphed"] = first_packet_latency(model, config, device, stream_frames, stream_repeats, 5, cuda_graph=True)

    samples_per_frame = config.upsample_factor
    rows = []
    for f in args.frames:
        b, a = before[f]["median_ms"], after[f]["median_ms"]
        rows.append(
            {
                "frames": f,
                "output_samples": f * samples_per_frame,
                "before_ms": b,
                "after_ms": a,
                "before_khz": f * samples_per_frame / b,
                "after_khz": f * samples_per_frame / a,
                "speedup": b / a,
                "before_peak_mib": before[f]["peak_mib"],
                "after_peak_mib": after[f]["peak_mib"],
            }
        )
    result = {
        "benchmark": "bench_dropin",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name,
        "torch": torch.__version__,
        "config": args.config,
        "dtype": "float32",
        "batch": 1,
        "before": before_name,
        "after": f"the same object after bigvgan_fast.accelerate(backend={backend!r})",
        "backend_used": backend_used,
        "activations_fused": count,
        "max_abs_diff_after_vs_before": max_abs_diff,
        "repeats": repeats,
        "warmup": warmup,
        "timing": "CUDA events" if on_gpu else "time.perf_counter",
        "rows": rows,
        "streaming": {**streaming, "frames_fed": stream_frames, "backend": backend_used},
    }

    print(f"\n{device_name} | {args.config} | float32, batch 1 | {result['timing']}, median of {repeats} after {warmup} warm-up")
    print(f"before: {before_name}")
    print(
        f"after:  accelerate(backend={backend!r}) -> {backend_used}, {count} activations taken over; "
        f"max |after - before| = {max_abs_diff:.2e}"
    )
    header = f"{'frames':>7} | {'before ms':>10} | {'after ms':>9} | {'before kHz':>10} | {'after kHz':>9} | {'speed-up':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['frames']:>7} | {r['before_ms']:>10.2f} | {r['after_ms']:>9.2f} | {r['before_khz']:>10,.0f} | "
            f"{r['after_khz']:>9,.0f} | {r['speedup']:>7.2f}x"
        )
    s = streaming
    steady = f"{s['steady_packet_compute_ms']:.2f} ms" if s["steady_packet_compute_ms"] is not None else "n/a"
    print(
        f"streaming (default lookahead {s['lookahead_frames']} frames = {s['lookahead_ms']:.0f} ms of audio): "
        f"first packet after {s['first_packet_compute_ms']:.2f} ms of compute; later {s['packet_audio_ms']:.2f} ms packets "
        f"take {steady} each (median)"
    )
    if "graphed" in s:
        g = s["graphed"]
        later = f"{g['steady_packet_compute_ms']:.2f} ms" if g["steady_packet_compute_ms"] is not None else "n/a"
        print(f"  with CUDA graphs: first packet after {g['first_packet_compute_ms']:.2f} ms; later packets {later}")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
