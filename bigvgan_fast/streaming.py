"""Long and live inputs: exact chunked synthesis and low-latency streaming.

The generator is a stack of convolutions, so an output sample depends only on mel frames within a
fixed distance, its receptive field. :func:`receptive_field_frames` computes that distance from the
config by walking the layers; for every official v2 config with 256x upsampling (22, 24 and 44 kHz)
it is 38 frames each side, exactly, plus a 1-frame safety margin: 39.

- :func:`synthesize` vocodes a mel of any length in chunks, each with ``context_frames`` of real
  mel on both sides, and keeps only each chunk's middle. With the default context (the receptive
  field) the result is the whole-sequence output, up to float rounding; peak memory depends on the
  chunk length, not on the input length.
- :func:`stream` takes mel frames as they arrive (from a TTS model) and yields audio as soon as
  ``lookahead_frames`` further frames have arrived.

Streaming latency
-----------------
The audio of frame t leaves :func:`stream` when frame t + ``lookahead_frames`` has arrived, so the
lookahead is latency added on top of compute. At 22.05 kHz with hop 256 (1 frame = 11.61 ms):

=================  =========================  ==========================================
lookahead_frames   added latency               output
=================  =========================  ==========================================
39 (default)       39 frames = 453 ms          the whole-sequence output, up to rounding
38                 38 frames = 441 ms          the same (38 is the exact right reach)
16                 16 frames = 186 ms          approximate (right context extrapolated)
8                  8 frames = 93 ms            approximate
4                  4 frames = 46 ms            approximate
0                  0 ms                        approximate
=================  =========================  ==========================================

(For other models: lookahead x hop / sampling_rate. The 44 kHz 512x model has a 22-frame receptive
field with 11.61 ms frames: 255 ms.) ``tests/test_streaming.py`` measures how far each approximate setting
is from the exact output.

With less lookahead than the exact right reach, the samples about to be emitted depend on frames
that have not arrived. :func:`stream` then does two things:

1. It extrapolates the missing right context by repeating the last received frame (a zero-order
   hold) as far as the receptive field reaches. Mel frames of speech change slowly from one
   11.6 ms frame to the next, so holding the last frame is a closer guess than the cut that the
   network would otherwise see: its convolutions zero-pad at a cut, which it renders as the end
   of the utterance, and the error would then be largest exactly on the samples being emitted.
   (Measured on the test model with a real mel at lookahead 0-2: a quarter of the cut's relative
   L2 error, e.g. 3.2e-3 against 1.2e-2, and no step at the seams where the cut left 2.7e-2.)
2. It bridges successive estimates with a raised-cosine crossfade. Every call also computes the
   ``crossfade_samples`` after the emitted ones (they are available anyway) and keeps them; the
   next call, which knows more frames, blends its new estimate of those samples in from that kept
   one. At each seam the output therefore continues the curve of the previous estimate (no jump,
   no click) and moves to the better estimate within one frame. The price: for those samples the
   older estimate has some weight, which adds a little deviation (relative L2 4.7e-7 against
   2.2e-7 without it at lookahead 4 on the test model). Where estimates disagree the crossfade is
   what keeps the seams silent: on a stand-in model built to guess badly, the largest step
   between samples is 1.3 without it, 0.045 with it, 0.031 in the exact output.

Both steps vanish at the end of the stream (the real end is known) and when the lookahead covers
the receptive field.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Iterable, Iterator, Mapping

import torch
from torch import nn

from .anti_alias.reference import FILTER_TAPS
from .config import BigVGANConfig, load_config
from .modules import parameter_dtype

# An anti-aliased activation's output y[t] depends on x[t-5 .. t+5]: the downsample reads
# z[2t-5 .. 2t+6], and u[2t-5] (u[2t+6]) reads x[t-5 .. t] (x[t .. t+5]) through the polyphase
# taps (docs/definition.md). The 13-sample window x[t-6 .. t+6] that a kernel loads is one wider
# than the dependence; tests/test_streaming.py checks 5 by autograd.
ACTIVATION_REACH = FILTER_TAPS // 2 - 1
# Added to the exact reach: costs one frame of context, guards against a look-alike model whose
# layers reach a little further than its config says.
SAFETY_MARGIN_FRAMES = 1
# Chunk of synthesize(): with 39 frames of context on each side, 1024 frames spend 7% of the work on
# context, and the 22 kHz model holds a few float32 tensors of 6144 values per frame per stage:
# an estimated 0.2-0.5 GB at 1024 + 78 frames (estimated, not measured).
DEFAULT_CHUNK_FRAMES = 1024


# --- the receptive field, read off the model's layers ---------------------------------------------


def _conv_inputs(lo: int, hi: int, conv: nn.Module) -> tuple[int, int]:
    """Inputs read by outputs [lo, hi] of a stride-1 Conv1d (its kernel, dilation and padding)."""
    kernel_size, dilation, padding = conv.kernel_size[0], conv.dilation[0], conv.padding[0]
    return lo - padding, hi + (kernel_size - 1) * dilation - padding


def _transposed_conv_inputs(lo: int, hi: int, conv: nn.Module) -> tuple[int, int]:
    """Inputs read by outputs [lo, hi] of a ConvTranspose1d (kernel k, stride u, padding p):
    output n sums input i with tap n + p - i*u in [0, k), so i in [ceil((n+p-k+1)/u), floor((n+p)/u)]."""
    kernel_size, stride, padding = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    return -((kernel_size - 1 - padding - lo) // stride), (hi + padding) // stride


def _amp_block_inputs(lo: int, hi: int, block: nn.Module) -> tuple[int, int]:
    """AMPBlock1 (``convs1``, ``convs2``: x + c2(a2(c1(a1(x))))) or AMPBlock2 (``convs``: x + c(a(x))).
    Every conv follows an activation; all run at one rate and the residual adds nothing, so the
    reaches add up."""
    convs = list(block.convs1) + list(block.convs2) if hasattr(block, "convs1") else list(block.convs)
    for conv in convs:
        lo, hi = _conv_inputs(lo - ACTIVATION_REACH, hi + ACTIVATION_REACH, conv)
    return lo, hi


def reach_of_model(model: nn.Module) -> tuple[int, int]:
    """Exact reach (left, right) in mel frames of a BigVGAN generator (ours or NVIDIA's: the same
    attribute names), read off its layers: the output samples of frame t depend on mel frames
    [t - left, t + right] and no others (away from the sequence ends).

    Carries the samples of one frame, [0, hop - 1], back from conv_post to conv_pre with integer
    interval arithmetic at each stage's own rate; the AMP blocks of a stage run in parallel, so the
    stage reaches as far as its widest block."""
    hop = math.prod(conv.stride[0] for stage in model.ups for conv in stage)
    lo, hi = _conv_inputs(0, hop - 1, model.conv_post)
    lo, hi = lo - ACTIVATION_REACH, hi + ACTIVATION_REACH  # activation_post
    kernels = model.num_kernels
    for stage in reversed(range(len(model.ups))):
        blocks = [_amp_block_inputs(lo, hi, block) for block in model.resblocks[stage * kernels : (stage + 1) * kernels]]
        lo, hi = min(b[0] for b in blocks), max(b[1] for b in blocks)
        for conv in reversed(model.ups[stage]):
            lo, hi = _transposed_conv_inputs(lo, hi, conv)
    lo, hi = _conv_inputs(lo, hi, model.conv_pre)
    return -lo, hi


def reach_of(model: nn.Module) -> tuple[int, int]:
    """The model's exact reach: its own ``receptive_field_reach()`` where it has one (ours), else read
    off its layers (NVIDIA's model, or any tree with the official attribute names)."""
    own = getattr(model, "receptive_field_reach", None)
    if callable(own):
        return own()
    _config_of(model)  # a clear error for a module that is no BigVGAN
    return reach_of_model(model)


def context_frames_of(model: nn.Module) -> int:
    """One-sided context, in mel frames, that makes chunked synthesis of ``model`` exact: the larger
    side of its reach plus ``SAFETY_MARGIN_FRAMES`` (public form: ``bigvgan_fast.receptive_field_frames``)."""
    return max(reach_of(model)) + SAFETY_MARGIN_FRAMES


# --- argument checks ------------------------------------------------------------------------------


def _config_of(model_or_config) -> BigVGANConfig:
    """The config of a ``bigvgan_fast.BigVGAN`` (``.config``), of NVIDIA's ``bigvgan.BigVGAN``
    (the dict ``.h``), or anything ``load_config`` reads."""
    if isinstance(model_or_config, nn.Module):
        config = getattr(model_or_config, "config", None)
        if isinstance(config, BigVGANConfig):
            return config
        h = getattr(model_or_config, "h", None)
        if isinstance(h, Mapping):
            return load_config(dict(h))
        raise TypeError(
            f"{type(model_or_config).__name__} carries no BigVGAN config: expected .config (bigvgan_fast.BigVGAN) "
            "or a dict .h (NVIDIA's bigvgan.BigVGAN)"
        )
    return load_config(model_or_config)


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)  # numpy and other integral types
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_mel(mel, num_mels: int) -> None:
    """Raise a TypeError / ValueError unless ``mel`` is a (batch, num_mels, frames >= 1) float tensor."""
    if not isinstance(mel, torch.Tensor):
        raise TypeError(f"mel must be a torch.Tensor, got {type(mel).__name__}")
    if not mel.is_floating_point():
        raise TypeError(f"mel must be a floating-point tensor, got {mel.dtype}")
    if mel.dim() != 3 or mel.shape[1] != num_mels:
        raise ValueError(f"mel must have shape (batch, {num_mels}, frames) for this model, got {tuple(mel.shape)}")
    if mel.shape[-1] < 1:
        raise ValueError(f"mel must have at least one frame, got shape {tuple(mel.shape)}")


def input_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype ``model``'s first layer (``conv_pre``) computes in, to which a mel of another float
    dtype is converted; None for a model without one (then the mel goes in as it is)."""
    first = getattr(model, "conv_pre", None)
    return None if first is None else parameter_dtype(first)


def _vocode(model: nn.Module, mel: torch.Tensor, hop: int, run: Callable | None = None) -> torch.Tensor:
    """model(mel) -> (B, 1, frames * hop) under inference mode (or through ``run``, a
    :class:`bigvgan_fast.graphs.GraphRunner`), with its length checked."""
    mel = mel.to(input_dtype(model) or mel.dtype)
    if run is None:
        with torch.inference_mode():
            audio = model(mel)
    else:
        audio = run(mel)
    expected = (mel.shape[0], 1, mel.shape[-1] * hop)
    if tuple(audio.shape) != expected:
        raise RuntimeError(
            f"the model maps {mel.shape[-1]} frames to audio of shape {tuple(audio.shape)}, not {expected}: "
            "its layers do not match its config's upsample_rates"
        )
    return audio


def _graph_runner(model: nn.Module, mel: torch.Tensor, cuda_graph: bool | None):
    """The CUDA-graph runner to vocode with, or None for eager calls.

    ``cuda_graph`` None (the default) means: the model's ``cuda_graphs`` attribute if it has one
    (``BigVGAN.from_pretrained(..., cuda_graphs=...)``), else on whenever ``mel`` is on a CUDA device.
    """
    if cuda_graph is None:
        cuda_graph = getattr(model, "cuda_graphs", None)
    if cuda_graph is None:
        cuda_graph = mel.is_cuda
    if not isinstance(cuda_graph, bool):
        raise TypeError(f"cuda_graph must be True, False or None, got {cuda_graph!r}")
    if not cuda_graph:
        return None
    if not mel.is_cuda:
        raise ValueError(f"cuda_graph=True needs the mel (and the model) on a CUDA device; mel is on {mel.device}")
    from .graphs import runner_for

    return runner_for(model)


def chunk_windows(total: int, chunk_frames: int, context_frames: int) -> list[tuple[int, int, int, int]]:
    """(window_start, window_stop, keep_start, keep_stop) in frames, one row per chunk of output.

    Every window has the same length, ``min(total, chunk_frames + 2 * context_frames)``: it holds
    ``context_frames`` of real mel on each side of the chunk it keeps, except at the sequence ends,
    where it is shifted inward so that it ends where the sequence ends (the whole-sequence run sees
    the same ends there). So each kept frame has its full context or the true end within its
    window, which makes the result exact when the context covers the receptive field, and a long
    input of any length runs on windows of one shape (one CUDA graph).
    """
    window = min(total, chunk_frames + 2 * context_frames)
    rows = []
    for keep_start in range(0, total, chunk_frames):
        keep_stop = min(keep_start + chunk_frames, total)
        start = min(max(0, keep_start - context_frames), total - window)
        rows.append((start, start + window, keep_start, keep_stop))
    return rows


# --- chunked synthesis ----------------------------------------------------------------------------


def synthesize(
    model: nn.Module,
    mel: torch.Tensor,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    context_frames: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    cuda_graph: bool | None = None,
) -> torch.Tensor:
    """Vocode a mel of any length in chunks, equal to ``model(mel)`` up to float rounding.

    Each chunk of ``chunk_frames`` output frames runs in a window with ``context_frames`` real mel
    frames on each side (shifted inward at the sequence ends, see :func:`chunk_windows`), and only
    the chunk's own samples are kept. Peak memory is that of ``model`` on
    ``chunk_frames + 2 * context_frames`` frames, whatever the length of ``mel``. Runs under
    ``torch.inference_mode()``.

    On a CUDA device each window shape is captured once as a CUDA graph and replayed
    (:mod:`bigvgan_fast.graphs`): an input shorter than one window runs on a graph of its own
    length; longer inputs all run on the graph of the full window. A smaller ``chunk_frames`` puts
    more inputs on one shared shape, at the cost of more context per output frame.

    Args:
        model: a ``bigvgan_fast.BigVGAN`` or NVIDIA's ``bigvgan.BigVGAN`` (accelerated or not).
        mel: (batch, num_mels, frames) float tensor on the model's device (another float dtype is
            converted to the model's).
        chunk_frames: frames of output per model call, >= 1.
        context_frames: frames of context on each side; default :func:`receptive_field_frames`,
            which makes the result exact. Less is faster but no longer exact near chunk seams.
        progress: called as ``progress(done_frames, total_frames)`` after each chunk.
        cuda_graph: replay CUDA graphs (True), call the model eagerly (False), or decide (None: the
            model's ``cuda_graphs`` attribute if set, else on for CUDA inputs).

    Returns:
        (batch, 1, frames * hop) audio, as ``model(mel)``.
    """
    config = _config_of(model)
    check_mel(mel, config.num_mels)
    chunk_frames = _count("chunk_frames", chunk_frames, 1)
    context = context_frames_of(model) if context_frames is None else _count("context_frames", context_frames, 0)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable as progress(done_frames, total_frames), got {type(progress).__name__}")
    if not bool(torch.isfinite(mel).all()):  # once per call (a sync), never inside the model's forward
        bad = int((~torch.isfinite(mel)).sum())
        raise ValueError(f"mel holds {bad} non-finite value(s) (NaN or Inf): the audio would be garbage")
    run = _graph_runner(model, mel, cuda_graph)
    hop = config.upsample_factor
    total = mel.shape[-1]
    audio = None
    for start, stop, keep_start, keep_stop in chunk_windows(total, chunk_frames, context):
        chunk = _vocode(model, mel[..., start:stop], hop, run)
        if audio is None:
            audio = chunk.new_empty(mel.shape[0], 1, total * hop)
        audio[..., keep_start * hop : keep_stop * hop] = chunk[..., (keep_start - start) * hop : (keep_stop - start) * hop]
        if progress is not None:
            progress(keep_stop, total)
    return audio


# --- streaming ------------------------------------------------------------------------------------


def _as_frames(item, num_mels: int) -> torch.Tensor:
    """A streamed item, (num_mels, k) or (1, num_mels, k), as (1, num_mels, k)."""
    if not isinstance(item, torch.Tensor):
        raise TypeError(f"each streamed item must be a torch.Tensor, got {type(item).__name__}")
    if not item.is_floating_point():
        raise TypeError(f"streamed mel frames must be floating point, got {item.dtype}")
    if item.dim() == 2:
        item = item.unsqueeze(0)
    if item.dim() != 3 or item.shape[0] != 1 or item.shape[1] != num_mels or item.shape[2] < 1:
        raise ValueError(
            f"each streamed item must have shape ({num_mels}, k) or (1, {num_mels}, k) with k >= 1, "
            f"got {tuple(item.shape)}"
        )
    return item


def _raised_cosine(length: int, like: torch.Tensor) -> torch.Tensor:
    """Weights of the previous estimate, falling from ~1 to ~0 over ``length`` samples."""
    n = torch.arange(length, dtype=torch.float64)
    return (0.5 * (1 + torch.cos(math.pi * (n + 0.5) / length))).to(device=like.device, dtype=like.dtype)


def stream(
    model: nn.Module,
    frames: Iterable[torch.Tensor],
    lookahead_frames: int | None = None,
    *,
    context_frames: int | None = None,
    crossfade_samples: int | None = None,
    cuda_graph: bool | None = False,
) -> Iterator[torch.Tensor]:
    """Vocode mel frames as they arrive; yields 1-D audio tensors as soon as they are determined.

    Each item of ``frames`` is (num_mels, k) or (1, num_mels, k), k >= 1 (one utterance, batch 1).
    After each item, the audio of every frame that has ``lookahead_frames`` successors is yielded as
    one tensor of shape (samples,) (``hop`` samples per frame); when ``frames`` ends, the rest.
    The yields concatenate to ``model(mel)[0, 0]`` of the whole mel:

    - exactly (up to float rounding) when ``lookahead_frames`` and ``context_frames`` are at least
      the receptive field (the defaults, :func:`receptive_field_frames`);
    - approximately with less lookahead, for lower latency; see the module docstring for how the
      missing right context is filled and the seams crossfaded, and for the latency of each setting.

    Args:
        model: a ``bigvgan_fast.BigVGAN`` or NVIDIA's ``bigvgan.BigVGAN``.
        frames: iterable of mel frame tensors on the model's device.
        lookahead_frames: frames that must follow a frame before its audio is yielded, >= 0.
        context_frames: past frames kept as left context, >= 0 (default: the receptive field).
        crossfade_samples: length of the raised-cosine crossfade at seams when the lookahead is
            short of the receptive field; default one frame (``hop`` samples, 11.6 ms at 22 kHz);
            0 turns it off (each seam then steps from one estimate to the next); at most
            ``max(lookahead_frames, 1) * hop``.
        cuda_graph: replay a CUDA graph per window shape (see :func:`synthesize`). Off by default
            here: the window grows with the first items and with every item of a new size, and each
            new shape costs a capture; with fixed-size items it settles on one or two shapes.

    Arguments are checked when ``stream`` is called; items as they arrive.
    """
    config = _config_of(model)
    receptive_field = context_frames_of(model)
    lookahead = receptive_field if lookahead_frames is None else _count("lookahead_frames", lookahead_frames, 0)
    context = receptive_field if context_frames is None else _count("context_frames", context_frames, 0)
    hop = config.upsample_factor
    crossfade = hop if crossfade_samples is None else _count("crossfade_samples", crossfade_samples, 0)
    # A crossfade reaching past the lookahead blends in older estimates of samples that the next
    # call already knows better (a sweep of bad inputs saw relative L2 2.9e-3 instead of 6.7e-6).
    max_crossfade = max(lookahead, 1) * hop
    if crossfade > max_crossfade:
        raise ValueError(
            f"crossfade_samples={crossfade} is longer than the lookahead allows: at most "
            f"max(lookahead_frames, 1) * hop = {max_crossfade} samples"
        )
    right_reach = reach_of(model)[1]
    if lookahead >= right_reach:
        crossfade = 0  # every yielded sample is exact: nothing to extrapolate or bridge
    approximate = lookahead < right_reach
    return _stream(model, iter(frames), config.num_mels, hop, lookahead, context, approximate, crossfade, right_reach, cuda_graph)


def _stream(model, frames, num_mels, hop, lookahead, context, approximate, crossfade, right_reach, cuda_graph):
    # buffer holds mel frames [buffer_start, received); audio of frames [0, emitted) has been yielded.
    buffer: torch.Tensor | None = None
    buffer_start = received = emitted = 0
    # The previous call's estimate of the `crossfade` samples from emitted * hop on.
    pending: torch.Tensor | None = None
    fade_frames = -(-crossfade // hop)
    fades: dict = {}  # the crossfade's weights by (length, device, dtype): made once, not per chunk

    def render(stop: int, final: bool) -> torch.Tensor:
        nonlocal pending
        lo = max(buffer_start, emitted - context)
        mel = buffer[..., lo - buffer_start :]
        tail = 0
        if approximate and not final:
            # Hold the last frame for as far as the wanted samples (to the end of the crossfade
            # tail) can reach; received = stop + lookahead < stop + right_reach here.
            tail = crossfade
            hold = stop + fade_frames + right_reach - received
            mel = torch.cat([mel, mel[..., -1:].expand(-1, -1, hold)], dim=-1)
        audio = _vocode(model, mel, hop, _graph_runner(model, mel, cuda_graph))[0, 0]
        first = (emitted - lo) * hop
        emit_samples = (stop - emitted) * hop
        new = audio[first : first + emit_samples + tail].clone()
        if pending is not None:
            n = min(pending.shape[0], new.shape[0])
            key = (pending.shape[0], new.device, new.dtype)
            if key not in fades:
                fades[key] = _raised_cosine(pending.shape[0], new)
            weight = fades[key][:n]
            new[:n] = weight * pending[:n] + (1 - weight) * new[:n]
        pending = new[emit_samples:] if tail else None
        return new[:emit_samples]

    for item in frames:
        item = _as_frames(item, num_mels)
        buffer = item if buffer is None else torch.cat([buffer, item.to(buffer)], dim=-1)
        received += item.shape[-1]
        ready = received - lookahead
        if ready > emitted:
            audio = render(ready, final=False)
            emitted = ready
            # Keep only the left context the next call needs.
            keep_from = max(buffer_start, emitted - context)
            buffer = buffer[..., keep_from - buffer_start :]
            buffer_start = keep_from
            yield audio
    if received > emitted:
        yield render(received, final=True)
