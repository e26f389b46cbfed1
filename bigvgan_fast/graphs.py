"""CUDA graphs of a generator, one per input shape, for chunked synthesis at small sizes.

At the sizes a text-to-speech system vocodes (batch 1, 1-10 s of audio) a BigVGAN forward is
about a thousand small kernel launches, and the host cannot issue them as fast as the GPU runs
them: on the H200 of MEASURED.md the 22 kHz model at 256 frames ran at 4.6 MHz eager and 9.2 MHz
when the same launches were replayed from a CUDA graph captured by hand. :class:`GraphRunner`
captures the model once per input shape (batch, frames, dtype, device) and replays it.

:func:`bigvgan_fast.streaming.synthesize` feeds it fixed-shape windows (``chunk_frames`` plus the
receptive field on each side, shifted inside the sequence at its ends, so every window of a long
input has the same shape and the result stays exact), so a long input of any length runs on one
graph; an input shorter than one window is one window of its own length.

Rules, which follow from what a graph is (a recording of kernels and memory addresses):

- The first call of a shape warms the model up twice on a side stream (cuDNN's algorithm choice,
  Triton's compilation, the activations' backend choice), then captures; :attr:`GraphRunner.captures`
  records what each capture cost. All graphs of a runner share one memory pool.
- Parameters updated in place (``load_state_dict``, an optimizer step) are read by the next replay.
  Parameters moved or replaced (``model.to(...)``, ``half()``, ``load_state_dict(assign=True)``)
  leave the graphs pointing at old memory: the runner notices a move of the whole model (our
  ``BigVGAN`` counts them; NVIDIA's model by its first and last layers' addresses) and recaptures;
  after moving a part of the model or replacing parameters any other way call
  :meth:`GraphRunner.clear`.
- One runner serves one thread at a time: replays share their input and output buffers, so calls
  are serialised by a lock. Replays run on the caller's current stream.
- At most ``max_graphs`` shapes are kept (least recently used dropped first).
- A float16 mixed-precision model's overflow guard (:mod:`bigvgan_fast.precision`) reads its output
  on the host, which a graph cannot hold: the graph computes the check on the device
  (``precision.unchecked_forward``), each replay reads it, and a replay that overflowed is
  discarded and run eagerly through the guard (which moves the layer to bfloat16 and warns, or
  raises); the graphs are then captured anew. A layer moved by the guard counts as a move of the
  model.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
import weakref

import torch
from torch import nn

from .precision import parameters_version, repaired_forward, syncs_each_call, unchecked_forward

DEFAULT_MAX_GRAPHS = 8
WARMUP_CALLS = 2  # the first call chooses cuDNN algorithms and compiles Triton kernels; the second runs as captured


@dataclasses.dataclass
class Capture:
    """One captured shape: its graph and its static input and output (what capturing it cost is in
    :attr:`GraphRunner.captures`)."""

    graph: torch.cuda.CUDAGraph
    static_input: torch.Tensor
    static_output: torch.Tensor
    static_finite: torch.Tensor | None  # the float16 guard's check, for a model that has one


def _parameter_signature(model: nn.Module) -> tuple:
    """The model's parameters version (ours: bumped by every ``to()`` / ``half()`` / ... of the whole
    model and by the float16 guard), and where the first and last layers keep their parameters (what
    NVIDIA's model, without a version, is checked by)."""
    first = next(model.conv_pre.parameters())
    last = next(model.conv_post.parameters())
    return first.data_ptr(), last.data_ptr(), first.dtype, last.dtype, parameters_version(model)


class GraphRunner:
    """``runner(mel)`` = ``model(mel)`` under inference mode, replayed from a CUDA graph per shape.

    Args:
        model: a BigVGAN generator (ours or NVIDIA's) on a CUDA device, in eval mode.
        max_graphs: how many shapes to keep captured.
    """

    def __init__(self, model: nn.Module, max_graphs: int = DEFAULT_MAX_GRAPHS):
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA graphs need a CUDA device, and torch sees none")
        self._model = weakref.ref(model)  # the runner is kept beside the model, never keeps it alive
        self.max_graphs = max_graphs
        self._graphs: collections.OrderedDict[tuple, Capture] = collections.OrderedDict()
        self._pool = None
        self._signature = None
        self._lock = threading.Lock()
        self.captures: list[dict] = []  # one row per capture: shape, dtype, warmup_ms, capture_ms

    def clear(self) -> None:
        """Drop every captured graph (after replacing the model's parameters, say)."""
        with self._lock:
            self._graphs.clear()

    def _capture(self, model: nn.Module, mel: torch.Tensor) -> Capture:
        static_input = mel.clone()
        side = torch.cuda.Stream(device=mel.device)
        side.wait_stream(torch.cuda.current_stream(mel.device))
        start = time.perf_counter()
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(WARMUP_CALLS):
                model(static_input)
        side.synchronize()
        warmup_ms = (time.perf_counter() - start) * 1e3
        torch.cuda.current_stream(mel.device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        guarded = syncs_each_call(model)
        start = time.perf_counter()
        with torch.inference_mode(), torch.cuda.graph(graph, pool=self._pool):
            if guarded:
                static_output, static_finite = unchecked_forward(model, static_input)
            else:
                static_output, static_finite = model(static_input), None
        torch.cuda.synchronize(mel.device)
        capture_ms = (time.perf_counter() - start) * 1e3
        self.captures.append(
            {"shape": tuple(mel.shape), "dtype": str(mel.dtype).removeprefix("torch."), "warmup_ms": warmup_ms, "capture_ms": capture_ms}
        )
        return Capture(graph, static_input, static_output, static_finite)

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        model = self._model()
        if model is None:
            raise RuntimeError("the model of this GraphRunner no longer exists")
        if not mel.is_cuda:
            raise ValueError(f"CUDA graphs run CUDA tensors; mel is on {mel.device}")
        with self._lock:
            signature = _parameter_signature(model)
            if signature != self._signature:  # moved or cast: every graph reads stale addresses
                self._graphs.clear()
                self._signature = signature
            key = (tuple(mel.shape), mel.dtype, mel.device)
            entry = self._graphs.get(key)
            if entry is None:
                entry = self._graphs[key] = self._capture(model, mel)
                while len(self._graphs) > self.max_graphs:
                    self._graphs.popitem(last=False)
            self._graphs.move_to_end(key)
            entry.static_input.copy_(mel)
            entry.graph.replay()
            if entry.static_finite is not None and not bool(entry.static_finite):
                # The float16 guard's case: the repair (or FloatingPointError) moves layers, which
                # leaves every graph reading parameters that moved.
                self._graphs.clear()
                self._signature = None
                with torch.inference_mode():
                    return repaired_forward(model, mel)
            return entry.static_output.clone()  # the next replay overwrites the static output


_RUNNERS: "weakref.WeakKeyDictionary[nn.Module, GraphRunner]" = weakref.WeakKeyDictionary()


def runner_for(model: nn.Module) -> GraphRunner:
    """The model's :class:`GraphRunner`, made on first use and kept as long as the model lives."""
    runner = _RUNNERS.get(model)
    if runner is None:
        runner = _RUNNERS[model] = GraphRunner(model)
    return runner
