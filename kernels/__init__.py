"""Triton kernels of bigvgan_fast, importable as ``bigvgan_fast.kernels``.

Importing this package imports Triton: ``bigvgan_fast.backends`` uses that import to tell whether
the Triton backend can run. One module per op (Liger-Kernel layout).
"""

from .anti_alias_activation import anti_alias_activation_backward, anti_alias_activation_forward, prepared_forward

__all__ = ["anti_alias_activation_forward", "anti_alias_activation_backward", "prepared_forward"]
