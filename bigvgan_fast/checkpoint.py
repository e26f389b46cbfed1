"""Checkpoints: find, read, check and download NVIDIA's BigVGAN generator weights.

Files in a model folder (local, or a Hugging Face repo):

- ``config.json``: the official config.
- ``bigvgan_generator.pt``: NVIDIA's ``{"generator": state_dict}``, read with ``weights_only=True``.
- ``generator.safetensors``: written by :func:`bigvgan_fast.convert.convert`: generator only, weight
  norm folded, the config in the metadata too. Preferred when present.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .config import DEFAULT_REPO_ID, load_config

CONFIG_FILE = "config.json"
PT_FILE = "bigvgan_generator.pt"
SAFETENSORS_FILE = "generator.safetensors"
DEFAULT_DIR = os.path.join("checkpoints", "bigvgan")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


class DownloadError(RuntimeError):
    """The weights could not be fetched from the Hugging Face hub."""


def load_generator_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a generator state dict from ``.safetensors`` or NVIDIA's ``.pt`` (never unpickling objects)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint file at {path}")
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the unpickler fails on garbage with any exception type (KeyError seen)
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated, or not a checkpoint; "
            f"only tensors are loaded, weights_only=True): {err}"
        ) from err
    if isinstance(obj, dict) and "generator" in obj:
        obj = obj["generator"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{path} does not hold a generator state dict ({{'generator': {{name: tensor}}}})")
    return obj


def check_state_dict(model: torch.nn.Module, state_dict: dict, source: str = "<state_dict>") -> None:
    """Raise a :class:`CheckpointError` listing every missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshaped = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)}, model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if state_dict[k].shape != expected[k].shape
    )
    # load_state_dict would cast these into the float parameters without a word.
    not_float = sorted(
        f"{k}: {v.dtype}" for k, v in state_dict.items() if isinstance(v, torch.Tensor) and not v.is_floating_point()
    )
    if not (missing or unexpected or misshaped or not_float):
        return

    def listing(title, items):
        shown = "\n    ".join(items[:20]) + (f"\n    ... and {len(items) - 20} more" if len(items) > 20 else "")
        return f"\n  {title} ({len(items)}):\n    {shown}" if items else ""

    hint = ""
    if misshaped or (missing and unexpected):
        hint = "\n  (does config.json describe this checkpoint? a config that does not match it gives these)"
    raise CheckpointError(
        f"checkpoint {source} does not fit the model:"
        + listing("missing keys", missing)
        + listing("unexpected keys", unexpected)
        + listing("mis-shaped keys", misshaped)
        + listing("non-float tensors (weights must be float32, float16 or bfloat16)", not_float)
        + hint
    )


def resolve_checkpoint_files(
    path_or_repo_id: str | os.PathLike = DEFAULT_REPO_ID,
    *,
    cache_dir: str | None = None,
    local_files_only: bool = False,
    token: str | None = None,
) -> tuple[str, str]:
    """(config path, weights path) for a local folder or a Hugging Face repo id."""
    source = os.fspath(path_or_repo_id)
    if os.path.isdir(source):
        config = os.path.join(source, CONFIG_FILE)
        if not os.path.isfile(config):
            raise CheckpointError(f"{source} has no {CONFIG_FILE}")
        for name in (SAFETENSORS_FILE, PT_FILE):
            if os.path.isfile(os.path.join(source, name)):
                return config, os.path.join(source, name)
        raise CheckpointError(f"{source} has neither {SAFETENSORS_FILE} nor {PT_FILE}")
    if _looks_like_path(source):
        raise CheckpointError(
            f"{source!r} is neither a model folder nor a Hugging Face repo id: the local folder "
            f"{os.path.abspath(os.path.expanduser(source))} does not exist"
        )
    kwargs = dict(repo_id=source, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    try:
        config = _hub_download(filename=CONFIG_FILE, **kwargs)
    except DownloadError as err:
        # "checkpoints/bigvgan" run from another folder also reads as owner/name: say both.
        raise DownloadError(f"there is no local folder {os.path.abspath(source)}, and as a Hugging Face repo id: {err}") from err
    try:
        return config, _hub_download(filename=SAFETENSORS_FILE, **kwargs)
    except DownloadError:
        return config, _hub_download(filename=PT_FILE, **kwargs)


def _looks_like_path(source: str) -> bool:
    """True unless ``source`` can be a Hub repo id (owner/name) and is not a path here."""
    if os.path.exists(source) or source.startswith((".", "/", "~")) or source.endswith("/") or "\\" in source:
        return True
    parts = source.split("/")
    # A first part that is a local folder ("checkpoints/bigvgan" beside a checkpoints/ folder) means a path.
    return len(parts) != 2 or not all(parts) or os.path.isdir(parts[0])


def newer_pt_note(weights_path: str | os.PathLike) -> str | None:
    """When ``generator.safetensors`` was chosen though the ``.pt`` beside it is newer, a note that says so."""
    weights_path = Path(weights_path)
    pt = weights_path.with_name(PT_FILE)
    if weights_path.name != SAFETENSORS_FILE or not pt.is_file():
        return None
    if pt.stat().st_mtime <= weights_path.stat().st_mtime:
        return None
    return (
        f"{pt.name} is newer than {weights_path.name}, which was loaded (it is preferred when present); "
        f"to use the new weights: python -m bigvgan_fast convert {weights_path.parent} --force"
    )


def _hub_unreachable() -> str | None:
    """Why the hub cannot be reached, found in a few seconds, or None. The hub client retries a
    failed connection for about half a minute; offline, we say so at once instead. Skipped behind
    a proxy (a direct connection says nothing there) and in offline mode (the client knows)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=5).close()
    except OSError as err:
        return f"{url.hostname}:{port} is not reachable: {err}"
    return None


def _hub_download(*, repo_id: str, filename: str, local_dir: str | None = None, **kwargs) -> str:
    """``huggingface_hub.hf_hub_download`` with one clear error for every way it can fail.

    Only the stable keyword arguments are used (``repo_id``, ``filename``, ``local_dir``,
    ``cache_dir``, ``local_files_only``, ``token``), which work on huggingface_hub 0.23 through 1.x.
    """
    import huggingface_hub

    try:
        problem = None if kwargs.get("local_files_only") else _hub_unreachable()
        if problem is None:
            return huggingface_hub.hf_hub_download(repo_id=repo_id, filename=filename, local_dir=local_dir, **kwargs)
    except Exception as err:  # connection, offline mode, 404, auth: all end the same way for the user
        problem = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    where = local_dir or "a local folder"
    raise DownloadError(
        f"could not fetch {filename} of {repo_id} from the Hugging Face hub ({problem}).\n"
        f"Fetch {CONFIG_FILE} and {PT_FILE} from https://huggingface.co/{repo_id}/tree/main by hand, "
        f"put them in {where}, and pass that folder instead of the repo id."
    )


def download(repo_id: str = DEFAULT_REPO_ID, directory: str | os.PathLike = DEFAULT_DIR) -> Path:
    """Fetch ``config.json`` and ``bigvgan_generator.pt`` of ``repo_id`` into ``directory``."""
    directory = Path(directory)  # created by the hub client with the first file: none if offline
    for filename in (CONFIG_FILE, PT_FILE):
        _hub_download(repo_id=repo_id, filename=filename, local_dir=os.fspath(directory))
    load_config(directory / CONFIG_FILE)  # a repo without a BigVGAN config fails here, not later
    return directory
