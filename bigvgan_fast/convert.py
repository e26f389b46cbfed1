"""``convert``: NVIDIA's ``bigvgan_generator.pt`` -> ``generator.safetensors`` (weight norm folded).

Its own module because it needs both the checkpoint reader and the generator, while the generator
needs the checkpoint reader: checkpoint <- generator <- convert, no cycle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .checkpoint import CONFIG_FILE, PT_FILE, SAFETENSORS_FILE, CheckpointError, load_generator_state_dict
from .config import DTYPES, load_config
from .files import atomic_write, check_writable
from .generator import BigVGAN


def convert(src_dir: str | os.PathLike, dtype: str = "float32", *, force: bool = False) -> Path:
    """Write ``generator.safetensors`` beside the ``.pt`` in ``src_dir``: generator only, weight norm
    folded, in ``dtype``, with the config in the metadata. Written atomically.

    An existing ``generator.safetensors`` is replaced only with ``force=True``: it is the file
    ``from_pretrained`` loads, and one dtype must not silently replace another.
    """
    from safetensors.torch import save_file

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise CheckpointError(f"src_dir {src_dir} is not a folder (it should hold {CONFIG_FILE} and {PT_FILE})")
    out = check_writable(src_dir / SAFETENSORS_FILE)
    if out.exists() and not force:
        raise CheckpointError(
            f"{out} exists ({_dtype_of(out)}); pass force=True (--force) to replace it with a {dtype} one"
        )
    config = load_config(src_dir / CONFIG_FILE)
    pt_path = src_dir / PT_FILE
    model = BigVGAN.from_state_dict(config, load_generator_state_dict(pt_path), source=os.fspath(pt_path), backend="torch")
    # The filter taps stay float32 (see modules._FilterHolder): only the weights are rounded.
    tensors = {
        k: v.detach().to(torch.float32 if k.endswith(".filter") else DTYPES[dtype]).contiguous()
        for k, v in model.state_dict().items()
    }
    metadata = {"format": "pt", "producer": "bigvgan_fast", "dtype": dtype, "config": json.dumps(config.to_dict())}
    with atomic_write(out) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return out


def _dtype_of(path: Path) -> str:
    """The dtype a converted file says it holds, for messages."""
    try:
        from safetensors import safe_open

        with safe_open(os.fspath(path), "pt") as f:
            return (f.metadata() or {}).get("dtype", "dtype not recorded")
    except Exception:  # an unreadable file is still a file the user may want to keep
        return "not readable as safetensors"
