"""The anti-aliased activation (2x upsample -> Snake / SnakeBeta -> 2x downsample), whole.

Follow the names from :func:`anti_alias_activation` down, one way:

- ``reference.py``: the definition (docs/definition.md) in PyTorch ops; knows no backend.
- ``library.py``: the fused ops registered with ``torch.library`` (fake, autograd); the only module
  that imports the Triton kernels (``kernels/``, installed as ``bigvgan_fast.kernels``) and the CUDA
  extension (``csrc/``, built as ``bigvgan_fast._C``).
- ``policy.py``: the backend table (name, why it cannot run, the one ``"auto"`` rule).
- ``op.py``: the public :func:`anti_alias_activation`: check the inputs, choose, run.
"""

from .policy import BACKEND_NAMES, CHOICES, BackendUnavailableError, backends, check_backend_name
from .library import DoubleBackwardError
from .op import FUSED_TAPS_DTYPE, anti_alias_activation, check_inputs
from .reference import FILTER_TAPS, RATIO, anti_alias_activation_ref, default_filter, kaiser_sinc_filter1d

__all__ = [
    "BACKEND_NAMES",
    "CHOICES",
    "FILTER_TAPS",
    "FUSED_TAPS_DTYPE",
    "RATIO",
    "BackendUnavailableError",
    "DoubleBackwardError",
    "anti_alias_activation",
    "anti_alias_activation_ref",
    "backends",
    "check_backend_name",
    "check_inputs",
    "default_filter",
    "kaiser_sinc_filter1d",
]
