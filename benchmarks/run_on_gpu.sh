#!/usr/bin/env bash
# One command for a GPU machine without network (torch, triton, ninja preinstalled): install
# (building the CUDA extension), run the GPU tests, run the benchmarks; everything under OUTDIR.
#   bash benchmarks/run_on_gpu.sh OUTDIR
#   BUDGET_S=300 STEPS="activation tts" bash benchmarks/run_on_gpu.sh OUTDIR   # a rerun of two steps
# Carry wheels/ (pip download --no-deps -d wheels bigvgan==2.4.1) for NVIDIA's package, the baseline.
#
# Budget: the whole run ends within BUDGET_S seconds (default 540: one call of the device tool is
# at most 600 s, and a 15-minute session then keeps room for a shorter rerun). Steps run
# most-important first; each gets its own cap, cut to what the budget has left, and a step that
# would get under 20 s is skipped and logged as such. Every benchmark writes its rows as it measures
# them, so a step cut short still leaves what it measured. STEPS (space-separated names from the
# list below) runs only those; install always runs (on a warm machine it reuses the build).
set -uo pipefail
OUT="${1:?usage: run_on_gpu.sh OUTDIR}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-16}"
BUDGET_S="${BUDGET_S:-540}"
ALL_STEPS="doctor tests activation tts half backward host dropin"
STEPS="${STEPS:-$ALL_STEPS}"
deadline=$(( $(date +%s) + BUDGET_S ))
log() { echo "== $* ($(date +%T))" | tee -a "$OUT/steps.log"; }
wanted() { [[ " $STEPS " == *" $1 "* ]]; }
for s in $STEPS; do [[ " $ALL_STEPS " == *" $s "* ]] || log "unknown step '$s' in STEPS (steps: $ALL_STEPS)"; done
# cap NAME MAX_S: prints the seconds step NAME may take (MAX_S, cut to the budget left, less 10 s:
# timeout's 5 s grace before its KILL, and the tails), or nothing when under 20 s are left, logging
# the skip.
cap() {
  local left=$(( deadline - $(date +%s) - 10 ))
  local s=$(( $2 < left ? $2 : left ))
  if (( s < 20 )); then log "$1 skipped: ${left}s of the ${BUDGET_S}s budget left" >&2; return 1; fi
  echo "$s"
}

log "install (budget ${BUDGET_S}s, steps: $STEPS; commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
timeout -k 5 20 nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
# NVIDIA's bigvgan imports librosa only for its mel code: a stub lets its generator import here.
if ls wheels/bigvgan-*.whl >/dev/null 2>&1; then
  timeout -k 5 60 pip install --no-deps --no-index wheels/bigvgan-*.whl > "$OUT/pip-bigvgan.log" 2>&1
  timeout -k 5 20 python -c "import librosa" 2>/dev/null || { mkdir -p "$OUT/stubs/librosa/filters"; echo "" > "$OUT/stubs/librosa/__init__.py"; \
    echo "def mel(*a, **k): raise RuntimeError('librosa stub')" > "$OUT/stubs/librosa/filters/__init__.py"; }
  export PYTHONPATH="$OUT/stubs${PYTHONPATH:+:$PYTHONPATH}"
fi
t=$(cap install 240) && { BIGVGAN_FAST_BUILD_CUDA=1 BIGVGAN_FAST_PTXAS_VERBOSE=1 timeout -k 5 "$t" \
  pip install --no-build-isolation --no-deps -v -e . > "$OUT/pip-install.log" 2>&1 \
  || { echo "install failed: tail of $OUT/pip-install.log"; tail -40 "$OUT/pip-install.log"; }; }
grep -E "registers|spill" "$OUT/pip-install.log" > "$OUT/ptxas.txt" 2>/dev/null

if wanted doctor && t=$(cap doctor 60); then
  log doctor
  timeout -k 5 "$t" python -m bigvgan_fast doctor 2>&1 | tee "$OUT/doctor.txt"
fi

if wanted tests && t=$(cap tests 200); then
  log "gpu tests"
  # Four workers where pytest-xdist is installed: a test that kills its process (a segfault) is then
  # reported by name and the rest go on, and Triton's compiles (most of this step) run side by side.
  # Without it, one process, and a crash ends the step. -v prints each result as it comes, so a step
  # cut by its cap still says what passed and failed; the kernels' own tests run first, the long
  # parametrised comparison with the definition last.
  workers=()
  timeout -k 5 20 python -c "import xdist" 2>/dev/null && workers=(-n 4)
  first=(tests/test_cuda_kernel.py tests/test_triton_kernel.py tests/test_out_dtype.py tests/test_half_precision.py)
  last=(tests/test_fused_forward.py)
  rest=()
  for f in tests/test_*.py; do [[ " ${first[*]} ${last[*]} " == *" $f "* ]] || rest+=("$f"); done
  timeout -k 5 "$t" python -m pytest -v -m gpu -rs "${workers[@]}" "${first[@]}" "${rest[@]}" "${last[@]}" \
    > "$OUT/pytest-gpu.txt" 2>&1
  grep -E "FAILED|ERROR|crashed|passed|failed" "$OUT/pytest-gpu.txt" | tail -25
fi

if wanted activation && t=$(cap activation 130); then
  log "activation forward benchmark"
  timeout -k 5 "$t" python benchmarks/bench_activation.py --rep-ms 50 --out "$OUT/activation.json" > "$OUT/activation.txt" 2>&1
  tail -30 "$OUT/activation.txt"
fi

if wanted tts && t=$(cap tts 120); then
  log "generator at TTS sizes, eager and graphed, with NVIDIA fused in the same run"
  timeout -k 5 "$t" python benchmarks/bench_tts.py --repeats 20 --out "$OUT/tts.json" > "$OUT/tts.txt" 2>&1
  tail -14 "$OUT/tts.txt"
fi

if wanted half; then
  log "half precision speed, mixed against cast (bfloat16 first: issue 13's target)"
  for dtype in bfloat16 float16; do
    for frames in 256 2048; do
      for precision in cast mixed; do
        t=$(cap "half $dtype $precision $frames" 30) || continue
        timeout -k 5 "$t" python -m bigvgan_fast bench --frames "$frames" --dtype "$dtype" --precision "$precision" --repeats 20 \
          --warmup 3 --json "$OUT/half-$dtype-$precision-$frames.json" 2>> "$OUT/half-stderr.txt" | tail -2
      done
    done
  done | tee "$OUT/half.txt"
fi

if wanted backward && t=$(cap backward 60); then
  log "activation backward benchmark and training step"
  timeout -k 5 "$t" python benchmarks/bench_activation.py --backward --frames 2048 --dtypes float32 bfloat16 --backends torch triton \
    --rep-ms 50 --out "$OUT/backward.json" > "$OUT/backward.txt" 2>&1
  tail -16 "$OUT/backward.txt"
fi

if wanted host && t=$(cap host 40); then
  log "host time per call"
  timeout -k 5 "$t" python benchmarks/bench_host.py --out "$OUT/host.json" > "$OUT/host.txt" 2>&1
  tail -12 "$OUT/host.txt"
fi

if wanted dropin && t=$(cap dropin 40); then
  log "drop-in and streaming"
  timeout -k 5 "$t" python benchmarks/bench_dropin.py --repeats 20 --out "$OUT/dropin.json" > "$OUT/dropin.txt" 2>&1
  tail -8 "$OUT/dropin.txt"
fi
log "done ($(( deadline - $(date +%s) ))s of the budget left)"
