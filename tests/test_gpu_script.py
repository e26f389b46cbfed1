"""benchmarks/run_on_gpu.sh keeps to its time budget and runs the steps asked for.

A GPU session has 15 minutes of device time and one command may run 10: a script that overran
would lose the whole run. Here python, pip and nvidia-smi are stand-ins that log their arguments
and sleep, so the script's own logic (step selection, caps cut to the budget, kills, skips) runs on
a CPU.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import time

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "run_on_gpu.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def _run(tmp_path, sleep_s: float, hang_on: str = "", **env) -> tuple[list[str], str, float]:
    """(the stand-ins' calls, steps.log, seconds the script took). A call whose arguments contain
    ``hang_on`` sleeps 300 s instead of ``sleep_s``."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    calls = tmp_path / "calls.txt"
    for name in ("python", "pip", "nvidia-smi"):
        stub = stubs / name
        stub.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> "{calls}"\n'
                        f'if [[ -n "{hang_on}" && "$*" == *"{hang_on}"* ]]; then exec sleep 300; fi\n'
                        f'exec sleep {sleep_s}\n')
        stub.chmod(0o755)
    out = tmp_path / "out"
    start = time.monotonic()
    subprocess.run(["bash", str(SCRIPT), str(out)], check=True, capture_output=True, text=True, timeout=120,
                   env={**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}", **env})
    return calls.read_text().splitlines(), (out / "steps.log").read_text(), time.monotonic() - start


def test_only_the_steps_asked_for_run(tmp_path):
    calls, log, _ = _run(tmp_path, 0, STEPS="tts host")
    scripts = [c for c in calls if c.startswith("python ") and ".py" in c]
    assert [s.split()[1] for s in scripts] == ["benchmarks/bench_tts.py", "benchmarks/bench_host.py"]
    assert any(c.startswith("pip install --no-build-isolation --no-deps -v -e .") for c in calls)  # always
    assert not any(c.startswith("python -m pytest") for c in calls)
    assert "done" in log.splitlines()[-1]


def test_an_unknown_step_name_is_logged(tmp_path):
    calls, log, _ = _run(tmp_path, 0, STEPS="tts activaton")
    assert "unknown step 'activaton'" in log
    assert not any("bench_activation.py" in c for c in calls)


def test_the_budget_caps_the_run_and_names_what_it_skipped(tmp_path):
    # Each stand-in takes 2 s, the budget 40 s: install and a few steps fit, the rest are skipped by
    # name, and the script ends inside its budget however many steps were asked for.
    calls, log, took = _run(tmp_path, 2, BUDGET_S="40")
    assert took < 40
    assert any("bench_activation.py" in c for c in calls)
    skipped = [line for line in log.splitlines() if " skipped: " in line]
    assert skipped, log
    assert any(line.startswith("== dropin skipped") for line in skipped)
    assert not any("bench_dropin.py" in c for c in calls)


def test_a_step_that_hangs_is_cut_at_the_budget(tmp_path):
    # The TTS benchmark hangs: its cap (the budget left) kills it, and the steps after it are skipped.
    calls, log, took = _run(tmp_path, 0, hang_on="bench_tts", BUDGET_S="32")
    assert took < 32
    assert any("bench_tts.py" in c for c in calls)
    assert not any("bench_dropin.py" in c for c in calls)
    assert any(line.startswith("== dropin skipped") for line in log.splitlines()), log
