"""The BigVGAN-v2 generator: mel spectrogram (B, num_mels, frames) -> waveform (B, 1, frames * hop)."""

from __future__ import annotations

import os

import torch
from torch import nn

from .config import DEFAULT_REPO_ID, load_config
from .modules import (
    Activation1d,
    AMPBlock1,
    AMPBlock2,
    _make_activation,
    apply_weight_norm,
    init_conv_weights,
    remove_weight_norm,
)


class BigVGAN(nn.Module):
    """NVIDIA's BigVGAN generator with the official module tree and state-dict keys.

    Args:
        config: a :class:`BigVGANConfig`, a ``config.json`` path, a dict, or a shipped config name.
        use_weight_norm: hold conv weights as ``weight_g`` / ``weight_v`` (training, and loading
            official checkpoints); :meth:`remove_weight_norm` folds them for inference.
        backend: backend of every anti-aliased activation (see ``bigvgan_fast.dispatch``).
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

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        self._check_mel(mel)
        if self.precision_mode == "mixed":
            from .precision import mixed_forward

            return mixed_forward(self, mel)
        x = self.conv_pre(mel)
        for i in range(self.num_upsamples):
            for up in self.ups[i]:
                x = up(x)
            xs = self.resblocks[i * self.num_kernels](x)
            for j in range(1, self.num_kernels):
                xs = xs + self.resblocks[i * self.num_kernels + j](x)
            x = xs / self.num_kernels
        x = self.activation_post(x)
        x = self.conv_post(x)
        return torch.tanh(x) if self.use_tanh_at_final else torch.clamp(x, min=-1.0, max=1.0)

    def _check_mel(self, mel: torch.Tensor) -> None:
        if not isinstance(mel, torch.Tensor):
            raise TypeError(f"mel must be a torch.Tensor, got {type(mel).__name__}")
        if not mel.is_floating_point():
            raise TypeError(f"mel must be a floating-point tensor, got {mel.dtype}")
        if mel.dim() != 3 or mel.shape[1] != self.config.num_mels:
            raise ValueError(
                f"mel must have shape (batch, {self.config.num_mels}, frames) for this model, got {tuple(mel.shape)}"
            )
        if mel.shape[-1] < 1:
            raise ValueError("mel must have at least one frame")

    # --- backends and weight norm ---------------------------------------------------------------

    def activations(self) -> list[Activation1d]:
        return [m for m in self.modules() if isinstance(m, Activation1d)]

    def set_backend(self, backend: str) -> "BigVGAN":
        """Run every anti-aliased activation on ``backend`` ("auto", "torch", "triton", "cuda")."""
        from .dispatch import check_backend_name

        check_backend_name(backend)
        for act in self.activations():
            act.backend = backend
        return self

    @property
    def has_weight_norm(self) -> bool:
        return any(hasattr(m, "weight_g") for m in self.modules())

    def remove_weight_norm(self) -> "BigVGAN":
        """Fold weight norm into plain weights (for inference); a no-op when already folded."""
        remove_weight_norm(self)
        return self

    def to_half_precision(self, dtype: torch.dtype = torch.bfloat16, mode: str = "mixed") -> "BigVGAN":
        """Run in float16 or bfloat16 (in place; call it on the float32 model).

        ``mode="mixed"``: the upsampling and AMP-block convolutions run in ``dtype``; the residual
        stream, the block averages, ``conv_pre``, ``activation_post``, ``conv_post`` and the returned
        waveform stay float32. In float16, overflow is caught: a convolution that overflows moves to
        bfloat16 with a warning (see :mod:`bigvgan_fast.precision`). ``mode="cast"``: ``self.to(dtype)``.
        State-dict keys do not change.
        """
        from .precision import to_half_precision

        return to_half_precision(self, dtype, mode)

    # --- long and live inputs (bigvgan_fast.streaming) -------------------------------------------

    @property
    def receptive_field_frames(self) -> int:
        """Mel frames of context on each side that make chunked synthesis exact."""
        from .streaming import receptive_field_frames

        return receptive_field_frames(self.config)

    def synthesize(self, mel: torch.Tensor, chunk_frames: int | None = None, context_frames: int | None = None, progress=None) -> torch.Tensor:
        """Vocode a mel of any length in chunks; equal to ``self(mel)`` up to float rounding, with peak
        memory set by the chunk (see :func:`bigvgan_fast.streaming.synthesize`)."""
        from .streaming import DEFAULT_CHUNK_FRAMES, synthesize

        chunk_frames = DEFAULT_CHUNK_FRAMES if chunk_frames is None else chunk_frames
        return synthesize(self, mel, chunk_frames=chunk_frames, context_frames=context_frames, progress=progress)

    def stream(self, frames, lookahead_frames: int | None = None, **kwargs):
        """Yield audio as mel frames arrive (see :func:`bigvgan_fast.streaming.stream`)."""
        from .streaming import stream

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
        """
        from .checkpoint import load_generator_state_dict, resolve_checkpoint_files
        from .precision import HALF_DTYPES, check_precision_mode

        check_precision_mode(precision)
        config_path, weights_path = resolve_checkpoint_files(
            path_or_repo_id, cache_dir=cache_dir, local_files_only=local_files_only, token=token
        )
        config = load_config(config_path)
        state_dict = load_generator_state_dict(weights_path)
        model = cls.from_state_dict(config, state_dict, source=str(weights_path), backend=backend)
        if dtype in HALF_DTYPES:
            return model.to(device=device).to_half_precision(dtype, precision)
        return model.to(device=device, dtype=dtype)

    @classmethod
    def from_state_dict(cls, config, state_dict: dict, *, source: str = "<state_dict>", backend: str = "auto") -> "BigVGAN":
        """Build from ``config`` and load ``state_dict`` (official keys, with or without weight norm) strictly;
        returns an eval-mode model with weight norm folded."""
        from .checkpoint import check_state_dict

        with_weight_norm = any(k.endswith(".weight_g") for k in state_dict)
        model = cls(config, use_weight_norm=with_weight_norm, backend=backend)
        check_state_dict(model, state_dict, source)
        model.load_state_dict(state_dict, strict=True)
        return model.remove_weight_norm().eval()
