"""bigvgan_fast: fast, exact BigVGAN-v2 vocoder inference.

Mel spectrogram -> waveform with NVIDIA's BigVGAN-v2 checkpoints, every anti-aliased activation
fused into one Triton or CUDA kernel, and a pure-PyTorch reference path that every fast path is
checked against.
"""

from .accelerate import accelerate
from .anti_alias import (
    BackendUnavailableError,
    DoubleBackwardError,
    anti_alias_activation,
    anti_alias_activation_ref,
    backends,
    kaiser_sinc_filter1d,
)
from .checkpoint import CheckpointError, DownloadError, download
from .config import DEFAULT_CONFIG, DEFAULT_REPO_ID, BigVGANConfig, ConfigError, available_configs, load_config
from .generator import BigVGAN, receptive_field_frames
from .convert import convert
from .mel import mel_spectrogram
from .modules import Activation1d, AMPBlock1, AMPBlock2, Snake, SnakeBeta, refresh_backends
from .streaming import stream, synthesize

__version__ = "0.1.0"

__all__ = [
    "Activation1d",
    "AMPBlock1",
    "AMPBlock2",
    "BackendUnavailableError",
    "BigVGAN",
    "BigVGANConfig",
    "CheckpointError",
    "ConfigError",
    "DEFAULT_CONFIG",
    "DEFAULT_REPO_ID",
    "DoubleBackwardError",
    "DownloadError",
    "Snake",
    "SnakeBeta",
    "accelerate",
    "anti_alias_activation",
    "anti_alias_activation_ref",
    "available_configs",
    "backends",
    "convert",
    "download",
    "kaiser_sinc_filter1d",
    "load_config",
    "mel_spectrogram",
    "receptive_field_frames",
    "refresh_backends",
    "stream",
    "synthesize",
]
