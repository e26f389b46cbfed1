#!/usr/bin/env bash
# One command for a GPU machine without network (torch, triton, ninja, pybind11 preinstalled):
# install (building the CUDA extension), run the GPU tests, run the benchmarks; everything under OUTDIR.
#   bash benchmarks/run_on_gpu.sh "$OUT"
# Budget: under 8 minutes on an H100 (extension build ~1-2 min with TORCH_CUDA_ARCH_LIST=9.0).
set -uo pipefail
OUT="${1:?usage: run_on_gpu.sh OUTDIR}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-16}"
step() { echo "== $* ($(date +%T))" | tee -a "$OUT/steps.log"; }

step install
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
# The official package is only a benchmark baseline: a wheel carried in wheels/ if present
# (pip download --no-deps -d wheels bigvgan==2.4.1 on a machine with network; carry "wheels").
ls wheels/bigvgan-*.whl >/dev/null 2>&1 && pip install --no-deps --no-index wheels/bigvgan-*.whl > "$OUT/pip-bigvgan.log" 2>&1
BIGVGAN_FAST_BUILD_CUDA=1 pip install --no-build-isolation --no-deps -v -e . > "$OUT/pip-install.log" 2>&1 \
  || { echo "install failed: tail of $OUT/pip-install.log"; tail -40 "$OUT/pip-install.log"; }
grep -E "registers|spill" "$OUT/pip-install.log" > "$OUT/ptxas.txt" 2>/dev/null

step doctor
python -m bigvgan_fast doctor 2>&1 | tee "$OUT/doctor.txt"

step gpu tests
timeout 240 python -m pytest -q -m gpu -rs tests/ > "$OUT/pytest-gpu.txt" 2>&1
tail -15 "$OUT/pytest-gpu.txt"

step activation forward benchmark
timeout 150 python benchmarks/bench_activation.py --out "$OUT/activation.json" 2>&1 | tee "$OUT/activation.txt"

step activation backward benchmark and training step
timeout 120 python benchmarks/bench_activation.py --backward --dtypes float32 bfloat16 --backends torch triton \
  --out "$OUT/backward.json" 2>&1 | tee "$OUT/backward.txt"

step generator
for dtype in float32 bfloat16; do
  for backend in torch triton cuda; do
    for frames in 256 2048; do
      timeout 60 python -m bigvgan_fast bench --frames "$frames" --dtype "$dtype" --backend "$backend" \
        --repeats 30 --json "$OUT/generator-$dtype-$backend-$frames.json" 2>/dev/null | tail -1
    done
  done
done | tee "$OUT/generator.txt"

step drop-in and streaming
[ -f benchmarks/bench_dropin.py ] && timeout 90 python benchmarks/bench_dropin.py --out "$OUT/dropin.json" 2>&1 | tee "$OUT/dropin.txt"
step done
