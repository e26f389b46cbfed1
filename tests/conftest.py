import functools
import importlib.util
import math
import os
import shutil
import sys

import pytest
import torch

# Without a GPU, Triton kernels run on CPU tensors through Triton's interpreter. The variable must
# be set before any kernel module is imported, so it is set here, once for the whole session.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@functools.cache
def benchmark_module(name: str):
    """benchmarks/<name>.py imported by path (benchmarks/ is not a package), once per session."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
TINY = os.path.join(GOLDEN, "tiny_generator")

# A generator with every layer kind at a fraction of the tiny golden model's cost (hop 4, 8 bands,
# two AMP blocks per stage, 17 anti-aliased activations).
SMALL_OVERRIDES = dict(
    upsample_rates=[2, 2],
    upsample_kernel_sizes=[4, 4],
    upsample_initial_channel=16,
    resblock_kernel_sizes=[3, 5],
    resblock_dilation_sizes=[[1, 2], [1, 3]],
    num_mels=8,
    hop_size=4,
    n_fft=16,
    win_size=16,
)


@pytest.fixture
def model_dir(tmp_path):
    """A writable copy of the tiny golden model folder (config.json and NVIDIA's .pt) in tmp_path."""
    folder = tmp_path / "model"
    shutil.copytree(TINY, folder)
    (folder / "io.safetensors").unlink()
    return folder


def small_config(**overrides):
    """The tiny golden model's config with SMALL_OVERRIDES, then ``overrides``."""
    from bigvgan_fast import load_config

    data = load_config(TINY).to_dict()
    data.update(SMALL_OVERRIDES)
    data.update(overrides)
    if "hop_size" not in overrides:  # one mel frame is prod(upsample_rates) samples (checked by load_config)
        data["hop_size"] = math.prod(data["upsample_rates"])
    return load_config(data)


def spread_snake_parameters(model, seed=0):
    """Random Snake parameters (the initial ones are all zero, which would hide a swapped alpha/beta
    and most of the activation's nonlinearity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".alpha", ".beta")):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    return model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The test models are small: their ops are too short to split over threads, and on a shared
    2-core CPU the threads' barriers stall (measured: 3.9 s on one thread, 352 s on two, for the
    streaming deviation test while another process held one of the two cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible to torch)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
