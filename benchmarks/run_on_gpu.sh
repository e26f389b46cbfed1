#!/usr/bin/env bash
# One command for a GPU machine without network (torch, triton, ninja, pytest-xdist preinstalled):
# install (building the CUDA extension), run the GPU tests, run the benchmarks; everything under OUTDIR.
#   bash benchmarks/run_on_gpu.sh "$OUT"
# Carry wheels/ (pip download --no-deps -d wheels bigvgan==2.4.1) for NVIDIA's package, the baseline.
# Budget: about 8 minutes on an H200, so that one rerun fits a 15-minute session. The steps run
# most-important first, each under its own timeout, and every benchmark writes its rows as it
# measures them, so a step cut short still leaves what it measured.
set -uo pipefail
OUT="${1:?usage: run_on_gpu.sh OUTDIR}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-16}"
step() { echo "== $* ($(date +%T))" | tee -a "$OUT/steps.log"; }

step install
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
# NVIDIA's bigvgan imports librosa only for its mel code: a stub lets its generator import here.
if ls wheels/bigvgan-*.whl >/dev/null 2>&1; then
  pip install --no-deps --no-index wheels/bigvgan-*.whl > "$OUT/pip-bigvgan.log" 2>&1
  python -c "import librosa" 2>/dev/null || { mkdir -p "$OUT/stubs/librosa/filters"; echo "" > "$OUT/stubs/librosa/__init__.py"; \
    echo "def mel(*a, **k): raise RuntimeError('librosa stub')" > "$OUT/stubs/librosa/filters/__init__.py"; }
  export PYTHONPATH="$OUT/stubs${PYTHONPATH:+:$PYTHONPATH}"
fi
BIGVGAN_FAST_BUILD_CUDA=1 BIGVGAN_FAST_PTXAS_VERBOSE=1 pip install --no-build-isolation --no-deps -v -e . > "$OUT/pip-install.log" 2>&1 \
  || { echo "install failed: tail of $OUT/pip-install.log"; tail -40 "$OUT/pip-install.log"; }
grep -E "registers|spill" "$OUT/pip-install.log" > "$OUT/ptxas.txt" 2>/dev/null

step doctor
python -m bigvgan_fast doctor 2>&1 | tee "$OUT/doctor.txt"

step gpu tests
# Two workers: a test that kills its process (a segfault) is reported by name and the rest go on.
timeout 240 python -m pytest -q -m gpu -rs -n 2 tests/ > "$OUT/pytest-gpu.txt" 2>&1
tail -25 "$OUT/pytest-gpu.txt"

step host time per call
timeout 40 python benchmarks/bench_host.py --out "$OUT/host.json" > "$OUT/host.txt" 2>&1
tail -12 "$OUT/host.txt"

step activation forward benchmark
timeout 140 python benchmarks/bench_activation.py --rep-ms 50 --out "$OUT/activation.json" > "$OUT/activation.txt" 2>&1
tail -30 "$OUT/activation.txt"

step generator at TTS sizes, eager and graphed, with NVIDIA fused in the same run
timeout 150 python benchmarks/bench_tts.py --repeats 20 --out "$OUT/tts.json" > "$OUT/tts.txt" 2>&1
tail -14 "$OUT/tts.txt"

step half precision speed, mixed against cast
for frames in 256 2048; do
  for dtype in bfloat16 float16; do
    for precision in cast mixed; do
      timeout 30 python -m bigvgan_fast bench --frames "$frames" --dtype "$dtype" --precision "$precision" --repeats 20 --warmup 3 \
        --json "$OUT/half-$dtype-$precision-$frames.json" 2>> "$OUT/half-stderr.txt" | tail -2
    done
  done
done | tee "$OUT/half.txt"

step activation backward benchmark and training step
timeout 60 python benchmarks/bench_activation.py --backward --frames 2048 --dtypes float32 bfloat16 --backends torch triton \
  --rep-ms 50 --out "$OUT/backward.json" > "$OUT/backward.txt" 2>&1
tail -16 "$OUT/backward.txt"

step drop-in and streaming
timeout 40 python benchmarks/bench_dropin.py --repeats 20 --out "$OUT/dropin.json" > "$OUT/dropin.txt" 2>&1
tail -8 "$OUT/dropin.txt"
step done
