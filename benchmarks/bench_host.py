"""Host time per activation call: what decides speed at text-to-speech sizes (issue 11).

With tiny tensors (1 x 4 x 16) the GPU work is negligible and the launch queue absorbs it, so the
time per call is Python, the dispatcher and the launch. Measured under ``torch.inference_mode``,
``timing.host_us`` (mean over 2,000 calls, median of 5). Ratios are against the raw C++ op timed
in the same run (on a GPU with the extension), the targets of issue 11 being:

- a module's activation call (``Activation1d``, the lean inference path) <= 1.25x the raw C++ op;
- the same on the Triton backend <= 2x the raw C++ op.

On a CPU (no extension, no Triton outside the interpreter) it times the torch-side part of the
path: the module's call on the reference backend against the reference function itself.

    python benchmarks/bench_host.py [--device cuda] [--out host.json]
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from bigvgan_fast import anti_alias_activation
from bigvgan_fast.anti_alias import library, policy
from bigvgan_fast.anti_alias.reference import anti_alias_activation_ref, default_filter
from bigvgan_fast.bench import device_name
from bigvgan_fast.modules import Activation1d, SnakeBeta
from bigvgan_fast.timing import host_us


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # tiny ops: intra-op threads only add barrier waits
    x = torch.randn(1, 4, 16, device=device)
    alpha, beta = torch.zeros(4, device=device), torch.zeros(4, device=device)
    taps = default_filter(device, torch.float32).view(-1)

    calls = {"x + 1": lambda: x + 1, "torch.empty_like(x)": lambda: torch.empty_like(x)}
    calls["reference function (torch)"] = lambda: anti_alias_activation_ref(x, alpha, beta)
    fused = [name for name in ("cuda", "triton") if policy.problem(name, device.type, torch.float32, False) is None]
    if device.type != "cuda":
        fused = []  # the Triton interpreter's time says nothing about a GPU launch
    if "cuda" in fused:
        op = library.cuda_op()
        calls["raw C++ op (cuda)"] = lambda: op(x, alpha, beta, taps, taps, True)
    if "triton" in fused:
        launch = library.inference_launcher("triton", device, torch.float32, True, True, torch.float32)
        calls["prepared Triton launch (triton)"] = lambda: launch(x, alpha, beta, taps, taps)
    for name in ["torch"] + fused:
        module = Activation1d(SnakeBeta(4, alpha_logscale=True), backend=name).to(device)
        calls[f"anti_alias_activation (public function, {name})"] = lambda name=name: anti_alias_activation(x, alpha, beta, backend=name)
        calls[f"Activation1d module call ({name})"] = lambda module=module: module(x)

    rows = {}
    with torch.inference_mode():
        for name, fn in calls.items():
            rows[name] = host_us(fn, device, calls=args.calls)
            print(f"{name:<52} {rows[name]:8.1f} us", file=sys.stderr)

    base_name = "raw C++ op (cuda)" if "raw C++ op (cuda)" in rows else "reference function (torch)"
    base = rows[base_name]
    print(f"\n{device_name(device)}, torch {torch.__version__}; per call, tiny tensors, inference mode")
    print(f"{'call':<52} {'us':>8} {'x ' + base_name:>30}")
    for name, us in rows.items():
        print(f"{name:<52} {us:8.1f} {us / base:>30.2f}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"device": device_name(device), "torch": torch.__version__, "baseline": base_name, "host_us": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
