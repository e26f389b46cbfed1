#!/usr/bin/env bash
# One command for a GPU machine without network (torch, triton, ninja preinstalled): install
# (building the CUDA extension), run the GPU tests, run the benchmarks; everything under OUTDIR.
#   bash benchmarks/run_on_gpu.sh "$OUT"
# Budget: under 8 minutes on an H100. The steps run most-important first, each under its own
# timeout (the caps add up to 6.5 minutes after the install, whose CUDA build for one arch is not
# yet timed), and every benchmark writes its rows as it measures them, so a step cut short still
# leaves what it measured.
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
BIGVGAN_FAST_BUILD_CUDA=1 BIGVGAN_FAST_PTXAS_VERBOSE=1 pip install --no-build-isolation --no-deps -v -e . > "$OUT/pip-install.log" 2>&1 \
  || { echo "install failed: tail of $OUT/pip-install.log"; tail -40 "$OUT/pip-install.log"; }
grep -E "registers|spill" "$OUT/pip-install.log" > "$OUT/ptxas.txt" 2>/dev/null

step doctor
python -m bigvgan_fast doctor 2>&1 | tee "$OUT/doctor.txt"

step activation forward benchmark
timeout 100 python benchmarks/bench_activation.py --rep-ms 100 --out "$OUT/activation.json" > "$OUT/activation.txt" 2>&1
tail -40 "$OUT/activation.txt"

step gpu tests
timeout 120 python -m pytest -q -m gpu -rs -x tests/ > "$OUT/pytest-gpu.txt" 2>&1
tail -15 "$OUT/pytest-gpu.txt"

step activation backward benchmark and training step
timeout 60 python benchmarks/bench_activation.py --backward --frames 2048 --dtypes float32 bfloat16 --backends torch triton \
  --rep-ms 100 --out "$OUT/backward.json" > "$OUT/backward.txt" 2>&1
tail -20 "$OUT/backward.txt"

step generator
for dtype in float32 bfloat16; do
  for backend in torch triton cuda; do
    timeout 12 python -m bigvgan_fast bench --frames 2048 --dtype "$dtype" --backend "$backend" --repeats 20 --warmup 3 \
      --json "$OUT/generator-$dtype-$backend-2048.json" 2>> "$OUT/generator-stderr.txt" | tail -1
  done
done | tee "$OUT/generator.txt"

step drop-in and streaming
timeout 40 python benchmarks/bench_dropin.py --repeats 20 --out "$OUT/dropin.json" > "$OUT/dropin.txt" 2>&1
tail -8 "$OUT/dropin.txt"
step done
