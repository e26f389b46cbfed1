"""The BigVGAN-v2 generator: mel spectrogram (B, num_mels, frames) -> waveform (B, 1, frames * hop)."""

from __future__ import annotations

import functools
import os

import torch
from torch import nn

from .anti_alias import check_backend_name
from .checkpoint import check_state_dict, load_generator_state_dict, resolve_checkpoint_files
from .config import DEFAULT_REPO_ID, load_config
from .precision import check_precision_mode, mixed_forward, note_parameters_changed, to_dtype, to_half_precision
from .modules import (
    Activation1d,
    AMPBlock1,
    AMPBlock2,
    _make_activation,
    apply_weight_norm,
    as_input_of,
    init_conv_weights,
    remove_weight_norm,
)
from .streaming import (
    DEFAULT_CHUNK_FRAMES,
    SAFETY_MARGIN_FRAMES,
    check_mel,
    context_frames_of,
    input_dtype,
    reach_of,
    reach_of_model,
    stream,
    synthesize,
)


class BigVGAN(nn.Module):
    """NVIDIA's BigVGAN generator with the official module tree and state-dict keys.

    Args:
        config: a :class:`BigVGANConfig`, a ``config.json`` path, a dict, or a shipped config name.
        use_weight_norm: hold conv weights as ``weight_g`` / ``weight_v`` (training, and loading
            official checkpoints); :meth:`remove_weight_norm` folds them for inference.
        backend: backend of every anti-aliased activation (see ``bigvgan_fast.anti_alias.policy``).
    """

    def __init__(self, config, *, use_weight_norm: bool = True, backend: str = "auto"):
        super().__init__()
        h = load_config(config)
        self.config = h
        self.num_kernels = len(h.resblock_kernel_sizes)
        self.num_upsamples = len(h.upsample_rates)
        wn = apply_weight_norm if use_weight_norm else (lambda m: m)

        self.conv_pre = wn(nn.Conv1d(h.num_mels, h.upsample_initial_channel, 7, 1, padding=3))
        resblock_class = AMPBlock1 if h.resblock == "1" else AMPBlock2
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(h.upsample_rates, h.upsample_kernel_sizes)):
            c_in, c_out = h.upsample_initial_channel // 2**i, h.upsample_initial_channel // 2 ** (i + 1)
            self.ups.append(nn.ModuleList([wn(nn.ConvTranspose1d(c_in, c_out, k, u, padding=(k - u) // 2))]))
        self.resblocks = nn.ModuleList()
        for i in range(self.num_upsamples):
            ch = h.upsample_initial_channel // 2 ** (i + 1)
            for k, d in zip(h.resblock_kernel_sizes, h.resblock_dilation_sizes):
                self.resblocks.append(
                    resblock_class(ch, k, d, h.activation, h.snake_logscale, use_weight_norm, backend)
                )
        self.activation_post = _make_activation(h.activation, ch, h.snake_logscale, backend)
        self.use_bias_at_final = h.use_bias_at_final
        self.conv_post = wn(nn.Conv1d(ch, 1, 7, 1, padding=3, bias=h.use_bias_at_final))
        self.ups.apply(init_conv_weights)
        self.conv_post.apply(init_conv_weights)
        self.use_tanh_at_final = h.use_tanh_at_final
        # None: every module runs in its parameters' dtype; "mixed": see to_half_precision.
        self.precision_mode: str | None = None
        # The default of synthesize()/stream()'s cuda_graph (None: on for CUDA inputs).
        self.cuda_graphs: bool | None = None

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        check_mel(mel, self.config.num_mels)
        if self.precision_mode == "mixed":
            return mixed_forward(self, mel)
        return self.final_activation(self.waveform_before_clamp(mel))

    def waveform_before_clamp(self, mel: torch.Tensor, residual_dtype: torch.dtype | None = None) -> torch.Tensor:
        """Everything before the final tanh / clamp. Each convolution reads its parameters' dtype; with
        ``residual_dtype`` (float32 in the mixed half-precision mode) every layer's output, the residual
        stream and the block averages are kept in it."""

        def residual(t: torch.Tensor) -> torch.Tensor:
            return t if residual_dtype is None else t.to(residual_dtype)

        x = residual(self.conv_pre(mel.to(input_dtype(self))))
        for i in range(self.num_upsamples):
            for up in self.ups[i]:
                x = residual(up(as_input_of(up, x)))
            xs = self.resblocks[i * self.num_kernels](x)
            for j in range(1, self.num_kernels):
                xs = xs + self.resblocks[i * self.num_kernels + j](x)
            x = xs / self.num_kernels
        x = self.activation_post(x)
        return residual(self.conv_post(as_input_of(self.conv_post, x)))

    def final_activation(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) if self.use_tanh_at_final else torch.clamp(x, min=-1.0, max=1.0)

    # --- backends and weight norm ---------------------------------------------------------------

    def activations(self) -> list[Activation1d]:
        return [m for m in self.modules() if isinstance(m, Activation1d)]

    def set_backend(self, backend: str) -> "BigVGAN":
        """Run every anti-aliased activation on ``backend`` ("auto", "torch", "triton", "cuda")."""
        check_backend_name(backend)
        for act in self.activations():
            act.backend = backend
        return self

    @property
    def has_weight_norm(self) -> bool:
        return any(hasattr(m, "weight_g") for m in self.modules())

    def _apply(self, fn, recurse=True):
        # Every move or cast of the whole model (to, half, cuda, float, ...) goes through here: a CUDA
        # graph captured before it reads freed memory (bigvgan_fast.graphs).
        super()._apply(fn, recurse)
        note_parameters_changed(self)
        return self

    def remove_weight_norm(self) -> "BigVGAN":
        """Fold weight norm into plain weights (for inference); a no-op when already folded."""
        remove_weight_norm(self)
        return self

    def to_half_precision(self, dtype: torch.dtype = torch.bfloat16, mode: str = "mixed") -> "BigVGAN":
        """Run in float16 or bfloat16 (in place; call it on the float32 model).

        ``mode="mixed"``: the AMP blocks' convolutions run in ``dtype``; the residual stream, the
        block averages, the upsampling convolutions, ``conv_pre``, ``activation_post``, ``conv_post``
        and the returned waveform stay float32. In float16, overflow is caught: a convolution that overflows moves to
        bfloat16 with a warning (see :mod:`bigvgan_fast.precision`). ``mode="cast"``: ``self.to(dtype)``.
        State-dict keys do not change.
        """
        return to_half_precision(self, dtype, mode)

    # --- long and live inputs (bigvgan_fast.streaming) -------------------------------------------

    def receptive_field_reach(self) -> tuple[int, int]:
        """Exact reach (left, right) in mel frames, read off the layers (see :func:`receptive_field_reach`)."""
        return reach_of_model(self)

    @property
    def receptive_field_frames(self) -> int:
        """Mel frames of context on each side that make chunked synthesis exact (see
        :func:`receptive_field_frames`)."""
        return context_frames_of(self)

    def synthesize(
        self,
        mel: torch.Tensor,
        chunk_frames: int | None = None,
        context_frames: int | None = None,
        progress=None,
        *,
        cuda_graph: bool | None = None,
    ) -> torch.Tensor:
        """Vocode a mel of any length in exact chunks of one shape, replayed from CUDA graphs on a GPU;
        equal to ``self(mel)`` up to float rounding, with peak memory set by the chunk (see
        :func:`bigvgan_fast.streaming.synthesize`)."""
        chunk_frames = DEFAULT_CHUNK_FRAMES if chunk_frames is None else chunk_frames
        return synthesize(
            self, mel, chunk_frames=chunk_frames, context_frames=context_frames, progress=progress, cuda_graph=cuda_graph
        )

    def stream(self, frames, lookahead_frames: int | None = None, **kwargs):
        """Yield audio as mel frames arrive (see :func:`bigvgan_fast.streaming.stream`)."""
        return stream(self, frames, lookahead_frames=lookahead_frames, **kwargs)

    # --- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike = DEFAULT_REPO_ID,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
        precision: str = "mixed",
        cuda_graphs: bool | None = None,
        cache_dir: str | None = None,
        local_files_only: bool = False,
        token: str | None = None,
    ) -> "BigVGAN":
        """Load a generator from a local folder or a Hugging Face repo id.

        The folder (or repo) holds ``config.json`` and ``generator.safetensors`` (written by
        ``python -m bigvgan_fast convert``) or NVIDIA's ``bigvgan_generator.pt``; the safetensors file
        wins when both exist. Checkpoints with or without weight norm load with ``strict=True``. The
        model comes back in eval mode with weight norm folded, on ``device`` in ``dtype``. For float16
        and bfloat16, ``precision`` picks the mode of :meth:`to_half_precision`: ``"mixed"`` (float32
        residual stream and ends, float32 waveform) or ``"cast"`` (every parameter in ``dtype``).
        ``cuda_graphs`` becomes the model's default for :meth:`synthesize` and :meth:`stream` (None: on
        for CUDA inputs).
        """
        check_precision_mode(precision)
        if cuda_graphs is not None and not isinstance(cuda_graphs, bool):
            raise TypeError(f"cuda_graphs must be True, False or None, got {cuda_graphs!r}")
        config_path, weights_path = resolve_checkpoint_files(
            path_or_repo_id, cache_dir=cache_dir, local_files_only=local_files_only, token=token
        )
        config = load_config(config_path)
        state_dict = load_generator_state_dict(weights_path)
        model = cls.from_state_dict(config, state_dict, source=str(weights_path), backend=backend)
        model.cuda_graphs = cuda_graphs
        return to_dtype(model.to(device=device), dtype, precision)

    @classmethod
    def from_state_dict(cls, config, state_dict: dict, *, source: str = "<state_dict>", backend: str = "auto") -> "BigVGAN":
        """Build from ``config`` and load ``state_dict`` (official keys, with or without weight norm) strictly;
        returns an eval-mode model with weight norm folded."""
        with_weight_norm = any(k.endswith(".weight_g") for k in state_dict)
        model = cls(config, use_weight_norm=with_weight_norm, backend=backend)
        check_state_dict(model, state_dict, source)
        model.load_state_dict(state_dict, strict=True)
        return model.remove_weight_norm().eval()


@functools.lru_cache(maxsize=32)
def _reach_of_config(config) -> tuple[int, int]:
    with torch.device("meta"):  # the layers' shapes without their memory
        return reach_of_model(BigVGAN(config, use_weight_norm=False))


def receptive_field_reach(model_or_config) -> tuple[int, int]:
    """Exact reach (left, right) of a generator in mel frames, no margin: the output samples of
    frame t depend on mel frames [t - left, t + right] and no others (away from the sequence ends).
    Read off the model's layers; a config is first built as a model on the meta device.

    ``model_or_config``: a ``bigvgan_fast.BigVGAN``, NVIDIA's ``bigvgan.BigVGAN``, or anything
    :func:`bigvgan_fast.load_config` accepts.
    """
    if isinstance(model_or_config, nn.Module):
        return reach_of(model_or_config)
    return _reach_of_config(load_config(model_or_config))


def receptive_field_frames(model_or_config) -> int:
    """One-sided context, in mel frames, beyond which mel frames do not affect an output sample:
    the larger side of :func:`receptive_field_reach` plus a safety margin of one frame. 39 for
    every official v2 config with 256x upsampling, 22 for the 44 kHz 512x one. The default
    ``context_frames`` of :func:`synthesize` and ``lookahead_frames`` of :func:`stream`."""
    return max(receptive_field_reach(model_or_config)) + SAFETY_MARGIN_FRAMES
