"""``python -m bigvgan_fast`` / ``bigvgan-fast``: download, convert, vocode, bench, doctor."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

from .config import DEFAULT_CONFIG, DEFAULT_REPO_ID, available_configs, load_config

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _progress(message: str, *, end: str = "\n") -> None:
    print(message, file=sys.stderr, end=end, flush=True)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# --- download / convert --------------------------------------------------------------------------


def cmd_download(args) -> int:
    from .checkpoint import download

    path = download(args.repo_id, args.dir)
    print(f"downloaded {args.repo_id} to {path}")
    return 0


def cmd_convert(args) -> int:
    from .checkpoint import convert

    out = convert(args.src_dir, dtype=args.dtype)
    print(f"wrote {out}")
    return 0


# --- vocode --------------------------------------------------------------------------------------


def _read_mel(path: str, num_mels: int) -> torch.Tensor:
    if path.endswith(".npy"):
        import numpy as np

        mel = torch.from_numpy(np.load(path, allow_pickle=False))
    else:
        mel = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(mel, torch.Tensor):
            raise ValueError(f"{path} must hold one tensor, got {type(mel).__name__}")
    if not mel.is_floating_point():
        raise ValueError(f"the mel in {path} must be floating point, got {mel.dtype}")
    if mel.dim() == 2:
        mel = mel.unsqueeze(0)
    if mel.dim() != 3 or mel.shape[0] != 1 or mel.shape[1] != num_mels:
        raise ValueError(
            f"the mel in {path} has shape {tuple(mel.shape)}; this model wants [1, {num_mels}, frames] or [{num_mels}, frames]"
        )
    return mel.float()


def cmd_vocode(args) -> int:
    from .generator import BigVGAN
    from .mel import mel_spectrogram
    from .wav import read_wav, write_wav

    device = _device(args.device)
    _progress(f"loading {args.model} on {device}")
    model = BigVGAN.from_pretrained(args.model, device=device, backend=args.backend)
    h = model.config
    if args.input.endswith(".wav"):
        wav, rate = read_wav(args.input)
        if rate != h.sampling_rate:
            raise ValueError(
                f"{args.input} is sampled at {rate} Hz but the model runs at {h.sampling_rate} Hz; "
                "resample it first (this tool does not resample)"
            )
        mel = mel_spectrogram(wav, h)
    elif args.input.endswith((".npy", ".pt")):
        mel = _read_mel(args.input, h.num_mels)
    else:
        raise ValueError(f"{args.input}: input must be a .wav, .npy or .pt file")
    dtype = DTYPES[args.dtype]
    frames = mel.shape[-1]
    _progress(f"vocoding {frames} mel frames ({frames * h.upsample_factor / h.sampling_rate:.2f} s of audio)")
    start = time.perf_counter()

    def progress(done, total):
        _progress(f"\r  {done}/{total} frames", end="\n" if done == total else "")

    # Long inputs go in exact chunks (memory bounded by the chunk), with progress.
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        audio = model.synthesize(mel.to(device), chunk_frames=args.chunk_frames, progress=progress if frames > args.chunk_frames else None)
    if device.type == "cuda":
        torch.cuda.synchronize()
    _progress(f"done in {time.perf_counter() - start:.2f} s")
    write_wav(args.output, audio, h.sampling_rate)
    print(f"wrote {args.output}")
    return 0


# --- bench ---------------------------------------------------------------------------------------


def cmd_bench(args) -> int:
    from .generator import BigVGAN
    from .timing import median_ms

    device = _device(args.device)
    on_gpu = device.type == "cuda"
    frames = args.frames or (2048 if on_gpu else 32)
    repeats = args.repeats or (50 if on_gpu else 3)
    warmup = args.warmup if args.warmup is not None else (10 if on_gpu else 1)
    dtype = DTYPES[args.dtype]
    h = load_config(args.config)
    torch.manual_seed(0)
    model = BigVGAN(h, backend=args.backend).remove_weight_norm().eval().to(device=device, dtype=dtype)
    mel = torch.randn(args.batch, h.num_mels, frames, device=device, dtype=dtype)
    samples = args.batch * frames * h.upsample_factor

    def run():
        with torch.inference_mode():
            model(mel)

    median, _ = median_ms(run, device, warmup, repeats, lambda phase, i, n: _progress(f"\r{phase} {i}/{n}   ", end=""))
    _progress("")
    khz = samples / median
    result = {
        "config": args.config,
        "device": torch.cuda.get_device_name(device) if on_gpu else f"cpu ({platform.processor() or platform.machine()})",
        "dtype": args.dtype,
        "backend": args.backend,
        "batch": args.batch,
        "frames": frames,
        "output_samples": samples,
        "median_ms": median,
        "khz": khz,
        "x_real_time": khz * 1e3 / h.sampling_rate,
        "repeats": repeats,
        "torch": torch.__version__,
    }
    print(
        f"{args.config} | {result['device']} | {args.dtype} | backend {args.backend} | batch {args.batch} x {frames} frames\n"
        f"median {median:.2f} ms over {repeats} runs: {khz:,.1f} kHz ({result['x_real_time']:,.2f}x real-time)"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


# --- doctor --------------------------------------------------------------------------------------


def cmd_doctor(args) -> int:
    from .anti_alias.policy import ENV_VAR, backends

    print(f"python      {platform.python_version()} ({sys.executable})")
    print(f"torch       {torch.__version__} (CUDA {torch.version.cuda or 'none: CPU build'})")
    try:
        import triton

        print(f"triton      {triton.__version__}")
    except Exception as err:
        print(f"triton      not importable ({type(err).__name__}: {err})")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            cap = torch.cuda.get_device_capability(i)
            print(f"device      cuda:{i} {torch.cuda.get_device_name(i)} (sm_{cap[0]}{cap[1]})")
    else:
        print("device      cpu (no CUDA device visible to torch)")
    for var in (ENV_VAR, "TRITON_INTERPRET"):
        print(f"{var:<11} {os.environ.get(var, '(unset)')}")
    device = _device(args.device)
    for dtype_name in ("float32", "bfloat16"):
        rows = backends(device, DTYPES[dtype_name])
        print(f"\nbackends for {device.type} {dtype_name} tensors:")
        for row in rows:
            status = "ok" if row["available"] else "unavailable"
            mark = "  <- auto" if row["auto"] else ""
            reason = f": {row['reason']}" if row["reason"] else ""
            print(f"  {row['backend']:<7} {status}{reason}{mark}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bigvgan_fast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download", help="fetch config.json and bigvgan_generator.pt from the Hugging Face hub")
    p.add_argument("repo_id", nargs="?", default=DEFAULT_REPO_ID)
    p.add_argument("--dir", default=os.path.join("checkpoints", "bigvgan"))
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("convert", help="write generator.safetensors (weight norm folded) beside bigvgan_generator.pt")
    p.add_argument("src_dir")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("vocode", help="wav -> mel -> wav copy-synthesis, or a .npy/.pt mel -> wav")
    p.add_argument("input", help=".wav (16-bit PCM at the model's rate), or a .npy/.pt mel [1, n_mels, frames]")
    p.add_argument("output", help="output .wav (16-bit PCM)")
    p.add_argument("--model", default=DEFAULT_REPO_ID, help="model folder or Hugging Face repo id")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "triton", "cuda"])
    p.add_argument("--chunk-frames", type=int, default=1024, help="vocode long inputs in exact chunks of this many frames")
    p.set_defaults(func=cmd_vocode)

    p = sub.add_parser("bench", help="time the generator with random weights (no download)")
    p.add_argument("--config", default=DEFAULT_CONFIG, choices=available_configs())
    p.add_argument("--frames", type=int, default=None, help="mel frames (default 2048 on GPU, 32 on CPU)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "triton", "cuda"])
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the result as JSON here")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("doctor", help="torch, device, and which backends can run (and why not)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError, DownloadError
    from .config import ConfigError
    from .anti_alias import BackendUnavailableError
    from .wav import WavError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CheckpointError, DownloadError, ConfigError, BackendUnavailableError, WavError, ValueError, OSError) as err:
        print(f"bigvgan_fast {args.command}: error: {err}", file=sys.stderr)
        return 2
