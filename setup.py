"""Build of bigvgan_fast.

A pure-Python install everywhere (no torch needed at build time, so pip's isolated build works and
never pulls a CUDA torch onto a CPU machine). The CUDA extension ``bigvgan_fast._C`` is added by
``cuda_build.py`` when a CUDA torch and nvcc are present in the build environment, i.e. with
``pip install --no-build-isolation -e .`` on a GPU machine.
"""

import os
import sys

from setuptools import setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cuda_build import cuda_build_options  # noqa: E402

setup(
    packages=["bigvgan_fast", "bigvgan_fast.anti_alias", "bigvgan_fast.kernels"],
    # The Triton kernels live in kernels/ (design card) but install as bigvgan_fast.kernels:
    # never as a top-level module named "kernels".
    package_dir={"bigvgan_fast": "bigvgan_fast", "bigvgan_fast.kernels": "kernels"},
    package_data={"bigvgan_fast": ["configs/*.json"]},
    **cuda_build_options(),
)
