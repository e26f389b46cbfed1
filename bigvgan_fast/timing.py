"""The one timing helper of ``bench`` and ``benchmarks/``.

- :func:`measure`: repeated calls of a whole step (a generator forward, a synthesis), each timed with
  CUDA events on the current stream on a GPU, ``time.perf_counter`` on a CPU; min / median / max.
- :func:`kernel_ms`: the median of a short GPU op, by ``triton.testing.do_bench`` (CUDA events,
  L2 flushed between runs, repetitions sized by time), or with ``cuda_graph=True`` by
  ``do_bench_cudagraph``, which replays the op from a CUDA graph: the kernel's own time, without
  the host's launch cost (which at small shapes is most of what ``do_bench`` sees).
- :func:`host_us`: host time per call of a cheap op, timed over many calls with ``perf_counter``;
  on a GPU the queue absorbs the launches, so with tiny tensors this is the Python and dispatcher
  cost that decides speed at small sizes.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable

import torch


@dataclasses.dataclass
class Timing:
    """Milliseconds of repeated calls."""

    runs_ms: list[float]

    @property
    def min_ms(self) -> float:
        return min(self.runs_ms)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.runs_ms)

    @property
    def max_ms(self) -> float:
        return max(self.runs_ms)

    def as_dict(self) -> dict:
        return {"min_ms": self.min_ms, "median_ms": self.median_ms, "max_ms": self.max_ms, "repeats": len(self.runs_ms)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def measure(
    fn: Callable[[], object],
    device: torch.device,
    warmup: int,
    repeats: int,
    on_step: Callable[[str, int, int], None] | None = None,
) -> Timing:
    """Time ``repeats`` calls after ``warmup`` untimed ones. ``on_step(phase, i, n)`` is called before
    each call, phase "warm-up" or "run"."""
    for i in range(warmup):
        if on_step:
            on_step("warm-up", i + 1, warmup)
        fn()
    synchronize(device)
    runs = []
    for i in range(repeats):
        if on_step:
            on_step("run", i + 1, repeats)
        runs.append(time_call_ms(fn, device))
    return Timing(runs)


def kernel_ms(fn: Callable[[], object], rep_ms: int = 100, warmup_ms: int = 25, grad_to_none=None, cuda_graph: bool = False) -> float:
    """Median milliseconds of a GPU op (``triton.testing.do_bench``, or ``do_bench_cudagraph``)."""
    from triton.testing import do_bench, do_bench_cudagraph

    if cuda_graph:
        return do_bench_cudagraph(fn, rep=rep_ms, grad_to_none=grad_to_none, return_mode="median")
    return do_bench(fn, warmup=warmup_ms, rep=rep_ms, grad_to_none=grad_to_none, return_mode="median")


def host_us(fn: Callable[[], object], device: torch.device, calls: int = 2000, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean host time per call, in microseconds, of ``calls`` calls
    issued back to back (the device is synchronised before and after each batch of calls)."""
    for _ in range(min(calls, 50)):
        fn()
    per_call = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter() - start) / calls * 1e6)
        synchronize(device)
    return statistics.median(per_call)
