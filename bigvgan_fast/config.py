"""Typed BigVGAN configuration, read from NVIDIA's ``config.json``.

The official configs carry many training-only keys (discriminators, losses, data loading). They are
kept in :attr:`BigVGANConfig.extra` so a config written back out is the one read in, but nothing
in this package reads them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from importlib import resources
from typing import Any, Mapping

import torch

# The one dtype-name map (command line, convert, benchmarks).
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

DEFAULT_CONFIG = "bigvgan_v2_22khz_80band_256x"
DEFAULT_REPO_ID = "nvidia/" + DEFAULT_CONFIG


class ConfigError(ValueError):
    """A config that cannot describe a BigVGAN generator."""


@dataclasses.dataclass(frozen=True)
class BigVGANConfig:
    """The generator and mel front-end settings of one BigVGAN model."""

    resblock: str
    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    activation: str
    snake_logscale: bool
    num_mels: int
    n_fft: int
    hop_size: int
    win_size: int
    sampling_rate: int
    fmin: float
    fmax: float | None
    use_tanh_at_final: bool = True
    use_bias_at_final: bool = True
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Types first: JSON "false" or 2.5 must not become True or 2 on the way in.
        for name in ("num_mels", "n_fft", "hop_size", "win_size", "sampling_rate", "upsample_initial_channel"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("snake_logscale", "use_tanh_at_final", "use_bias_at_final"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.resblock not in ("1", "2"):
            raise ConfigError(f"resblock must be the string '1' or '2', got {self.resblock!r}")
        if self.activation not in ("snake", "snakebeta"):
            raise ConfigError(f"activation must be 'snake' or 'snakebeta', got {self.activation!r}")
        if not self.upsample_rates or not self.resblock_kernel_sizes:
            raise ConfigError("upsample_rates and resblock_kernel_sizes must not be empty")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ConfigError(
                f"upsample_rates ({len(self.upsample_rates)} entries) and upsample_kernel_sizes "
                f"({len(self.upsample_kernel_sizes)} entries) must have the same length"
            )
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ConfigError(
                f"resblock_kernel_sizes ({len(self.resblock_kernel_sizes)} entries) and "
                f"resblock_dilation_sizes ({len(self.resblock_dilation_sizes)} entries) must have the same length"
            )
        for i, (u, k) in enumerate(zip(self.upsample_rates, self.upsample_kernel_sizes)):
            _check_int(f"upsample_rates[{i}]", u, minimum=1)
            _check_int(f"upsample_kernel_sizes[{i}]", k, minimum=u)
            # ConvTranspose1d(k, stride u, padding (k - u) // 2) gives u * T samples only for even k - u.
            if (k - u) % 2:
                raise ConfigError(
                    f"upsample_kernel_sizes[{i}] - upsample_rates[{i}] = {k} - {u} must be even "
                    "(otherwise the stage does not output exactly rate x its input length)"
                )
        for i, (k, dilations) in enumerate(zip(self.resblock_kernel_sizes, self.resblock_dilation_sizes)):
            _check_int(f"resblock_kernel_sizes[{i}]", k, minimum=1)
            if k % 2 == 0:
                raise ConfigError(f"resblock_kernel_sizes[{i}] must be odd (a 'same' convolution), got {k}")
            for j, d in enumerate(dilations):
                _check_int(f"resblock_dilation_sizes[{i}][{j}]", d, minimum=1)
        # Floor division, as the official generator: 18 channels over 2 stages are 9, then 4.
        last = self.upsample_initial_channel // 2 ** len(self.upsample_rates)
        if last < 1:
            raise ConfigError(
                f"upsample_initial_channel={self.upsample_initial_channel} leaves no channel after "
                f"{len(self.upsample_rates)} halvings; it must be at least {2 ** len(self.upsample_rates)}"
            )
        if self.hop_size != self.upsample_factor:
            raise ConfigError(
                f"hop_size={self.hop_size} must equal the product of upsample_rates "
                f"({self.upsample_factor}): one mel frame becomes hop_size samples"
            )
        if self.win_size > self.n_fft:
            raise ConfigError(f"win_size={self.win_size} must not exceed n_fft={self.n_fft}")
        if isinstance(self.fmin, bool) or not isinstance(self.fmin, (int, float)):
            raise ConfigError(f"fmin must be a number of Hz, got {self.fmin!r}")
        if self.fmax is not None and (isinstance(self.fmax, bool) or not isinstance(self.fmax, (int, float))):
            raise ConfigError(f"fmax must be a number of Hz or null, got {self.fmax!r}")
        nyquist = self.sampling_rate / 2
        fmax = nyquist if self.fmax is None else self.fmax
        if not 0 <= self.fmin < fmax <= nyquist:
            raise ConfigError(
                f"need 0 <= fmin < fmax <= sampling_rate / 2 = {nyquist:g} Hz, got fmin={self.fmin}, fmax={self.fmax}"
            )

    @property
    def upsample_factor(self) -> int:
        """Output samples per mel frame (the product of ``upsample_rates``)."""
        return math.prod(self.upsample_rates)

    def to_dict(self) -> dict[str, Any]:
        """The config as the official ``config.json`` dict (training keys included)."""
        out = dict(self.extra)
        for field in dataclasses.fields(self):
            if field.name == "extra":
                continue
            value = getattr(self, field.name)
            if field.name == "resblock_dilation_sizes":
                value = [list(d) for d in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=4)


_FIELDS = {f.name: f for f in dataclasses.fields(BigVGANConfig) if f.name != "extra"}
_REQUIRED = [name for name, f in _FIELDS.items() if f.default is dataclasses.MISSING]


def available_configs() -> list[str]:
    """Names of the official configs shipped with the package."""
    files = resources.files("bigvgan_fast").joinpath("configs").iterdir()
    return sorted(p.name[: -len(".json")] for p in files if p.name.endswith(".json"))


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")


def _tuple(name: str, value: Any) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a list, got {value!r}")
    return tuple(value)


def _from_mapping(data: Mapping[str, Any], source: str) -> BigVGANConfig:
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ConfigError(f"config {source} is missing required key(s): {', '.join(missing)}")
    kwargs = {name: data[name] for name in _FIELDS if name in data}
    for name in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes", "resblock_dilation_sizes"):
        kwargs[name] = _tuple(name, data[name])
    kwargs["resblock_dilation_sizes"] = tuple(
        _tuple(f"resblock_dilation_sizes[{i}]", d) for i, d in enumerate(kwargs["resblock_dilation_sizes"])
    )
    extra = {k: v for k, v in data.items() if k not in _FIELDS}
    try:
        return BigVGANConfig(**kwargs, extra=extra)
    except ConfigError as err:
        raise ConfigError(f"config {source}: {err}") from None


def load_config(path_or_dict: str | os.PathLike | Mapping[str, Any] | BigVGANConfig) -> BigVGANConfig:
    """Read a config from a dict, a ``config.json`` path, a folder holding one, or a shipped name.

    Shipped names are those of :func:`available_configs`, e.g. ``"bigvgan_v2_22khz_80band_256x"``
    (a leading ``"nvidia/"`` is accepted, so a Hugging Face repo id names its config).
    """
    if isinstance(path_or_dict, BigVGANConfig):
        return path_or_dict
    if isinstance(path_or_dict, Mapping):
        return _from_mapping(path_or_dict, "<dict>")
    path = os.fspath(path_or_dict)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON: {err}") from err
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8 JSON") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON object, got {type(data).__name__}")
        return _from_mapping(data, path)
    name = path.removeprefix("nvidia/")
    if name in available_configs():
        text = resources.files("bigvgan_fast").joinpath("configs", name + ".json").read_text(encoding="utf-8")
        return _from_mapping(json.loads(text), name)
    raise ConfigError(
        f"no config file at {path!r} and no shipped config of that name; shipped: {', '.join(available_configs())}"
    )
