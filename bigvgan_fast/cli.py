"""``python -m bigvgan_fast`` / ``bigvgan-fast``: download, convert, vocode, bench, doctor."""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import sys
import time

import torch

from .anti_alias.policy import CHOICES
from .config import DEFAULT_CONFIG, DEFAULT_REPO_ID, DTYPES, available_configs, load_config
from .precision import MODES as PRECISION_MODES

# Progress lines start once a run has taken this long (short runs stay quiet), then come at most
# every PROGRESS_EVERY_S.
PROGRESS_AFTER_S = 2.0
PROGRESS_EVERY_S = 0.5


def _progress(message: str, *, end: str = "\n") -> None:
    print(message, file=sys.stderr, end=end, flush=True)


def _count(minimum: int):
    """An argparse type: an integer >= ``minimum`` (argparse names the option in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def _device(name: str, *, must_run: bool = True) -> torch.device:
    """The ``--device`` value as a device; one line of error when it cannot run (doctor, which
    reports why, passes ``must_run=False``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: only cpu and cuda devices are supported")
    if device.type == "cuda" and must_run:
        if torch.version.cuda is None:
            raise ValueError(
                f"--device {name}: this torch ({torch.__version__}) is a CPU-only build; "
                "install a CUDA build of torch, or use --device cpu"
            )
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: torch sees no CUDA device (driver, or CUDA_VISIBLE_DEVICES); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: there are {torch.cuda.device_count()} CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def _warn_slow_dtype(device: torch.device, dtype_name: str) -> None:
    # Measured on the CPU in issue 9 (the figures in the message); bfloat16 was not measured.
    if device.type == "cpu" and dtype_name == "float16":
        _progress(
            "warning: float16 is very slow on the CPU (1 s of audio took 312 s, against 5-19 s in float32); "
            "use --dtype float32"
        )


# --- download / convert --------------------------------------------------------------------------


def cmd_download(args) -> int:
    from .checkpoint import download

    path = download(args.repo_id, args.dir)
    print(f"downloaded {args.repo_id} to {path}")
    return 0


def cmd_convert(args) -> int:
    from .convert import convert

    out = convert(args.src_dir, dtype=args.dtype, force=args.force)
    print(f"wrote {out} ({args.dtype})")
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
    if mel.dim() != 3 or mel.shape[0] != 1 or mel.shape[1] != num_mels or mel.shape[2] < 1:
        raise ValueError(
            f"the mel in {path} has shape {tuple(mel.shape)}; this model wants [1, {num_mels}, frames] or [{num_mels}, frames]"
        )
    bad = int((~torch.isfinite(mel)).sum())
    if bad:
        raise ValueError(f"the mel in {path} has {bad} NaN or infinite value(s); a log-mel must be finite")
    return mel.float()


class _VocodeProgress:
    """Prints the share of the work done, once a run has taken PROGRESS_AFTER_S.

    Chunks report through ``synthesize``'s callback; inside a chunk, forward hooks on the residual
    blocks (nearly all of the compute) report, each weighted by its convolutions' work
    (channels^2 x length x kernel taps), so an input shorter than one chunk shows progress too.
    """

    def __init__(self, model, total_frames: int, chunk_frames: int):
        self.total, self.chunk = total_frames, chunk_frames
        self.done_frames, self.within = 0, 0.0
        self.start = self.last_print = time.perf_counter()
        self.printed = False
        h = model.config
        weights = []
        for i in range(len(h.upsample_rates)):
            channels = h.upsample_initial_channel // 2 ** (i + 1)
            length = math.prod(h.upsample_rates[: i + 1])
            for k, d in zip(h.resblock_kernel_sizes, h.resblock_dilation_sizes):
                weights.append(channels**2 * length * k * len(d))
        self.shares = [w / sum(weights) for w in weights]
        self.handles = [
            block.register_forward_hook(functools.partial(self._block_done, share))
            for block, share in zip(model.resblocks, self.shares)
        ]

    def _block_done(self, share, *_):
        self.within = min(1.0, self.within + share)
        now = time.perf_counter()
        if now - self.start >= PROGRESS_AFTER_S and now - self.last_print >= PROGRESS_EVERY_S:
            self._show(now)

    def chunk_done(self, done: int, total: int) -> None:
        self.done_frames, self.within = done, 0.0
        if total > self.chunk or self.printed:  # a chunked run always shows its chunks, as before
            self._show(time.perf_counter())

    def _show(self, now: float) -> None:
        frames = self.done_frames + min(self.chunk, self.total - self.done_frames) * self.within
        _progress(f"\r  {int(frames)}/{self.total} frames ({100 * frames / self.total:.0f}%, {now - self.start:.0f} s)", end="")
        self.last_print, self.printed = now, True

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        if self.printed:
            _progress("")


def cmd_vocode(args) -> int:
    from .anti_alias.policy import choose
    from .bench import describe_backends, real_time
    from .checkpoint import load_generator_state_dict, newer_pt_note, resolve_checkpoint_files
    from .files import check_writable
    from .generator import BigVGAN
    from .mel import mel_spectrogram
    from .modules import backends_ran
    from .precision import to_dtype
    from .wav import WavError, read_wav_channels, write_wav

    # Everything that can be checked before the model loads is checked first.
    if not args.output.lower().endswith(".wav"):
        raise WavError(f"output {args.output}: only WAV is written, so its name must end in .wav")
    check_writable(args.output, "output")
    if not os.path.isfile(args.input):
        raise FileNotFoundError(f"input {args.input} does not exist")
    if not args.input.endswith((".wav", ".npy", ".pt")):
        raise ValueError(f"input {args.input}: must be a .wav, .npy or .pt file")
    device = _device(args.device)
    dtype = DTYPES[args.dtype]
    _warn_slow_dtype(device, args.dtype)
    config_path, weights_path = resolve_checkpoint_files(args.model)
    h = load_config(config_path)
    if args.input.endswith(".wav"):
        channels, rate = read_wav_channels(args.input)
        if rate != h.sampling_rate:
            raise ValueError(
                f"{args.input} is sampled at {rate} Hz but the model runs at {h.sampling_rate} Hz; "
                "resample it first (this tool does not resample)"
            )
        if channels.shape[0] > 1:
            _progress(f"{args.input} has {channels.shape[0]} channels: vocoding their average (mono)")
        try:
            mel = mel_spectrogram(channels.mean(dim=0), h)
        except ValueError as err:  # too short: say which file
            raise ValueError(f"{args.input}: {err}") from None
    else:
        mel = _read_mel(args.input, h.num_mels)

    _progress(f"loading {weights_path} on {device}")
    note = newer_pt_note(weights_path)
    if note:
        _progress("note: " + note)
    model = BigVGAN.from_state_dict(h, load_generator_state_dict(weights_path), source=str(weights_path), backend=args.backend)
    model = to_dtype(model.to(device), dtype, args.precision)
    # A check only (what runs is reported after): an explicit backend that cannot run here fails now,
    # with its reason, not after the progress display has started.
    choose(args.backend, device.type, dtype, False)
    frames = mel.shape[-1]
    audio_seconds = frames * h.upsample_factor / h.sampling_rate
    precision = f"{args.dtype} ({args.precision})" if dtype in (torch.float16, torch.bfloat16) else args.dtype
    _progress(f"vocoding {frames} mel frames ({audio_seconds:.2f} s of audio), backend {args.backend} asked, {precision}")
    progress = _VocodeProgress(model, frames, args.chunk_frames)
    try:
        audio = model.synthesize(
            mel.to(device), chunk_frames=args.chunk_frames, progress=progress.chunk_done, cuda_graph=_graph_switch(args)
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
    finally:
        progress.close()
    elapsed = time.perf_counter() - progress.start
    write_wav(args.output, audio, h.sampling_rate)
    # What ran for each (x dtype, output dtype) pair: the mixed half-precision mode has three.
    backend = f"{args.backend} -> {describe_backends(backends_ran(model))}"
    print(
        f"wrote {args.output}: {audio_seconds:.2f} s at {h.sampling_rate} Hz in {elapsed:.2f} s, "
        f"{real_time(audio_seconds / max(elapsed, 1e-9))} | weights {weights_path} | backend {backend} | {precision} on {device}"
    )
    return 0


# --- bench ---------------------------------------------------------------------------------------


def _graph_switch(args) -> bool | None:
    return {"auto": None, "on": True, "off": False}[args.cuda_graph]


def cmd_bench(args) -> int:
    from .bench import bench_generator, format_result
    from .files import check_writable

    if args.json:
        check_writable(args.json, "--json")  # before the run, not after it
    device = _device(args.device)
    on_gpu = device.type == "cuda"
    _warn_slow_dtype(device, args.dtype)
    result = bench_generator(
        args.config,
        frames=args.frames if args.frames is not None else (2048 if on_gpu else 32),
        batch=args.batch,
        device=device,
        dtype=DTYPES[args.dtype],
        precision=args.precision,
        backend=args.backend,
        repeats=args.repeats if args.repeats is not None else (50 if on_gpu else 3),
        warmup=args.warmup if args.warmup is not None else (10 if on_gpu else 1),
        cuda_graph=_graph_switch(args),
        on_step=lambda phase, i, n: _progress(f"\r{phase} {i}/{n}   ", end=""),
    )
    _progress("")
    print(format_result(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


# --- doctor --------------------------------------------------------------------------------------


def cmd_doctor(args) -> int:
    from .anti_alias.policy import ENV_VAR, backends

    device = _device(args.device, must_run=False)
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

    p = sub.add_parser(
        "convert", help="write generator.safetensors (weight norm folded) beside bigvgan_generator.pt; --force replaces one"
    )
    p.add_argument("src_dir")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.add_argument("--force", action="store_true", help="replace an existing generator.safetensors")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("vocode", help="wav -> mel -> wav copy-synthesis, or a .npy/.pt mel -> wav")
    p.add_argument("input", help=".wav (16-bit PCM at the model's rate), or a .npy/.pt mel [1, n_mels, frames]")
    p.add_argument("output", help="output .wav (16-bit PCM)")
    p.add_argument("--model", default=DEFAULT_REPO_ID, help="model folder or Hugging Face repo id")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.add_argument("--precision", choices=PRECISION_MODES, default="mixed",
                   help="with a half --dtype: mixed (AMP-block convolutions in it; residual stream, upsampling and ends float32) or a plain cast")
    p.add_argument("--backend", default="auto", choices=CHOICES)
    p.add_argument("--chunk-frames", type=_count(1), default=1024, help="vocode long inputs in exact chunks of this many frames")
    p.add_argument("--cuda-graph", choices=["auto", "on", "off"], default="auto",
                   help="replay a CUDA graph per chunk shape (auto: on for a CUDA device)")
    p.set_defaults(func=cmd_vocode)

    p = sub.add_parser("bench", help="time the generator with random weights (no download)")
    p.add_argument("--config", default=DEFAULT_CONFIG, choices=available_configs())
    p.add_argument("--frames", type=_count(1), default=None, help="mel frames (default 2048 on GPU, 32 on CPU)")
    p.add_argument("--batch", type=_count(1), default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.add_argument("--precision", choices=PRECISION_MODES, default="mixed",
                   help="with a half --dtype: mixed (AMP-block convolutions in it; residual stream, upsampling and ends float32) or a plain cast")
    p.add_argument("--backend", default="auto", choices=CHOICES)
    p.add_argument("--cuda-graph", choices=["auto", "on", "off"], default="auto",
                   help="also time the forward replayed from a CUDA graph (auto: on a CUDA device)")
    p.add_argument("--repeats", type=_count(1), default=None)
    p.add_argument("--warmup", type=_count(0), default=None)
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
