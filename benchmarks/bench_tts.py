"""The generator at text-to-speech sizes (issue 11): batch 1, 1-10 s utterances, one table.

For each frame count and dtype, in one run: ours eager and replayed from a CUDA graph
(``bigvgan_fast.bench.bench_generator``), the same with every activation replaced by identity
("convolutions only": the floor set by everything but the activations), and NVIDIA's model with its
fused CUDA kernel (``use_cuda_kernel=True``, float32, as it ships) where the ``bigvgan`` package is
importable and its kernel builds. Speeds in MHz of output samples (22.05 kHz audio: 1 MHz = 45x
faster than real time). Targets (H200, batch 1): 256 frames >= 12 MHz bf16 and >= 9 MHz fp32
graphed; eager >= 0.9x the convolutions-only eager figure; 2048 frames graphed no slower than eager.

    python benchmarks/bench_tts.py --out tts.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import warnings

import torch

from bigvgan_fast.bench import bench_generator, device_name
from bigvgan_fast.config import DTYPES, load_config
from bigvgan_fast.timing import measure



def official_fused(config_name: str, device: torch.device):
    """NVIDIA's generator with its fused kernel, float32, or None with the reason printed."""
    try:
        import bigvgan
        from bigvgan.env import AttrDict
    except Exception as err:  # any import failure: the baseline is absent from this run
        print(f"NVIDIA's bigvgan is not importable ({type(err).__name__}: {err}): no official figures", file=sys.stderr)
        return None
    torch.manual_seed(0)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            model = bigvgan.BigVGAN(AttrDict(load_config(config_name).to_dict()), use_cuda_kernel=True)
            model.remove_weight_norm()
            model = model.eval().to(device)
            with torch.inference_mode():
                model(torch.randn(1, model.h.num_mels, 8, device=device))  # builds the kernel
    except Exception as err:  # its JIT build fails on some setups: say so, time the rest
        print(f"NVIDIA's fused kernel did not build or run ({type(err).__name__}: {err})", file=sys.stderr)
        return None
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="bigvgan_v2_22khz_80band_256x")
    parser.add_argument("--frames", type=int, nargs="+", default=[96, 256, 512, 900, 2048])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=list(DTYPES))
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-official", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    official = None if args.no_official else official_fused(args.config, device)
    rows = []
    for frames in args.frames:
        official_mhz = None
        if official is not None:
            mel = torch.randn(1, official.h.num_mels, frames, device=device)

            def run_official():
                with torch.inference_mode():
                    official(mel)

            t = measure(run_official, device, args.warmup, args.repeats)
            official_mhz = frames * load_config(args.config).upsample_factor / t.median_ms / 1e3
        for dtype_name in args.dtypes:
            common = dict(frames=frames, device=device, dtype=DTYPES[dtype_name], backend=args.backend,
                          repeats=args.repeats, warmup=args.warmup, cuda_graph=True)
            ours = bench_generator(args.config, **common)
            conv = bench_generator(args.config, conv_only=True, **common)
            row = {
                "frames": frames, "dtype": dtype_name, "backend": ours["backend"],
                "eager_mhz": ours["eager"]["mhz"], "graph_mhz": ours["graph"]["mhz"],
                "conv_only_eager_mhz": conv["eager"]["mhz"], "conv_only_graph_mhz": conv["graph"]["mhz"],
                "official_fused_fp32_mhz": official_mhz,
                "capture_ms": ours["graph"]["captures"][0]["capture_ms"], "graph_first_call_ms": ours["graph"]["first_call_ms"],
                "eager": ours["eager"], "graph": ours["graph"],
            }
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k not in ("eager", "graph")}), file=sys.stderr)
    print(f"{device_name(device)}, torch {torch.__version__}, {args.config}, batch 1, MHz of output samples (median of {args.repeats})")
    head = f"{'frames':>6} {'dtype':<9} {'backend':<7} {'eager':>7} {'graph':>7} {'conv eager':>11} {'conv graph':>11} {'NVIDIA fp32':>12} {'eager/conv':>11} {'graph/NVIDIA':>13}"
    print(head)
    for r in rows:
        nv = r["official_fused_fp32_mhz"]
        print(
            f"{r['frames']:>6} {r['dtype']:<9} {r['backend']:<7} {r['eager_mhz']:>7.2f} {r['graph_mhz']:>7.2f} "
            f"{r['conv_only_eager_mhz']:>11.2f} {r['conv_only_graph_mhz']:>11.2f} {nv if nv else float('nan'):>12.2f} "
            f"{r['eager_mhz'] / r['conv_only_eager_mhz']:>11.2f} {r['graph_mhz'] / nv if nv else float('nan'):>13.2f}"
        )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"device": device_name(device), "torch": torch.__version__, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
