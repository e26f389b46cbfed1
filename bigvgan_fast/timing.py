"""Wall-clock of a call on the GPU (CUDA events) or the CPU (perf_counter), for bench and benchmarks/."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def time_call_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Milliseconds of one call of ``fn``; on CUDA measured with events on the current stream."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    start_s = time.perf_counter()
    fn()
    return (time.perf_counter() - start_s) * 1e3


def median_ms(
    fn: Callable[[], object],
    device: torch.device,
    warmup: int,
    repeats: int,
    on_step: Callable[[str, int, int], None] | None = None,
) -> tuple[float, list[float]]:
    """(median, all timed runs) in milliseconds after ``warmup`` untimed calls.
    ``on_step(phase, i, n)`` is called before each call, phase "warm-up" or "run"."""
    for i in range(warmup):
        if on_step:
            on_step("warm-up", i + 1, warmup)
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times = []
    for i in range(repeats):
        if on_step:
            on_step("run", i + 1, repeats)
        times.append(time_call_ms(fn, device))
    return statistics.median(times), times
