"""BigVGAN's building blocks with the official parameter and buffer names.

State-dict keys match NVIDIA's ``bigvgan`` package (``act.alpha``, ``act.beta``,
``upsample.filter``, ``downsample.lowpass.filter``, ``convs1.{m}.weight_g`` ...), so official
checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import functools
import warnings
from typing import Sequence

import torch
from torch import nn

from .anti_alias import library, policy
from .anti_alias.op import FUSED_TAPS_DTYPE, anti_alias_activation, check_out_dtype
from .anti_alias.reference import FILTER_TAPS, RATIO, downsample_ref, kaiser_sinc_filter1d, snake_ref, upsample_ref


def apply_weight_norm(module: nn.Module) -> nn.Module:
    """Weight norm stored as ``weight_g`` / ``weight_v`` (norm over all dims but 0), as the official
    checkpoints are. The hook-based API is the one that produces those names; its deprecation
    warning is not the user's concern."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.weight_norm(module)


def remove_weight_norm(module: nn.Module) -> None:
    """Fold ``weight_g`` / ``weight_v`` into a plain ``weight`` in every submodule that has them."""
    for m in module.modules():
        if hasattr(m, "weight_g") and hasattr(m, "weight_v"):
            nn.utils.remove_weight_norm(m)


def init_conv_weights(module: nn.Module, mean: float = 0.0, std: float = 0.01) -> None:
    """The official initialisation of conv weights: normal(0, 0.01)."""
    if "Conv" in type(module).__name__:
        weight = getattr(module, "weight_v", None)
        if weight is None:
            weight = module.weight
        weight.data.normal_(mean, std)


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class Snake(nn.Module):
    """Snake: x + 1/(a + 1e-9) * sin(a*x)^2, per channel; ``alpha`` is log(a) when ``alpha_logscale``."""

    def __init__(self, in_features: int, alpha: float = 1.0, alpha_trainable: bool = True, alpha_logscale: bool = False):
        super().__init__()
        self.in_features = in_features
        self.alpha_logscale = alpha_logscale
        init = torch.zeros(in_features) * alpha if alpha_logscale else torch.ones(in_features) * alpha
        self.alpha = nn.Parameter(init, requires_grad=alpha_trainable)
        self.beta = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return snake_ref(x, self.alpha, None, self.alpha_logscale)


class SnakeBeta(nn.Module):
    """SnakeBeta: x + 1/(b + 1e-9) * sin(a*x)^2, per channel, with separate frequency and magnitude."""

    def __init__(self, in_features: int, alpha: float = 1.0, alpha_trainable: bool = True, alpha_logscale: bool = False):
        super().__init__()
        self.in_features = in_features
        self.alpha_logscale = alpha_logscale
        init = torch.zeros(in_features) * alpha if alpha_logscale else torch.ones(in_features) * alpha
        self.alpha = nn.Parameter(init.clone(), requires_grad=alpha_trainable)
        self.beta = nn.Parameter(init.clone(), requires_grad=alpha_trainable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return snake_ref(x, self.alpha, self.beta, self.alpha_logscale)


class _FilterHolder(nn.Module):
    """A module whose ``filter`` buffer stays in the fused kernels' taps dtype (float32,
    ``anti_alias.op.FUSED_TAPS_DTYPE``) when the module is cast to float16 / bfloat16. The reference
    path still rounds the taps to the input's dtype at use, as the official modules do."""

    def _apply(self, fn, recurse=True):
        taps = self.filter
        super()._apply(fn, recurse)
        if self.filter.dtype in (torch.float16, torch.bfloat16) and taps.dtype in (torch.float32, torch.float64):
            self.filter = taps.to(device=self.filter.device, dtype=FUSED_TAPS_DTYPE)
        return self


class UpSample1d(_FilterHolder):
    def __init__(self, ratio: int = RATIO, kernel_size: int | None = None):
        super().__init__()
        self.ratio = ratio
        self.kernel_size = int(6 * ratio // 2) * 2 if kernel_size is None else kernel_size
        self.register_buffer("filter", kaiser_sinc_filter1d(0.5 / ratio, 0.6 / ratio, self.kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_ref(x, self.filter, self.ratio)


class LowPassFilter1d(_FilterHolder):
    def __init__(self, cutoff: float = 0.5, half_width: float = 0.6, stride: int = 1, kernel_size: int = 12):
        super().__init__()
        self.stride = stride
        self.kernel_size = kernel_size
        self.register_buffer("filter", kaiser_sinc_filter1d(cutoff, half_width, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return downsample_ref(x, self.filter, self.stride)


class DownSample1d(nn.Module):
    def __init__(self, ratio: int = RATIO, kernel_size: int | None = None):
        super().__init__()
        self.ratio = ratio
        self.kernel_size = int(6 * ratio // 2) * 2 if kernel_size is None else kernel_size
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, ratio, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


def fused_inference_call(name: str, x: torch.Tensor, act: nn.Module, upsample_taps: tuple, downsample_taps: tuple,
                         out_dtype: torch.dtype | None = None):
    """The lean inference call of fused backend ``name`` for inputs like ``x``: ``run(x)`` makes one op
    call, reading ``act``'s alpha (and beta) from its parameter dictionary at every call, so
    reassigned or reloaded parameters are used at once. ``upsample_taps`` / ``downsample_taps``:
    ``(dictionary, key)`` where each call finds the 12 float32 taps (a module's buffer dictionary).
    The output is of ``out_dtype`` (None: x's), which ``name`` must write (``policy.choose`` checks)."""
    parameters = act._parameters
    has_beta = parameters.get("beta") is not None
    op = library.inference_launcher(name, x.device, x.dtype, has_beta, bool(act.alpha_logscale), parameters["alpha"].dtype,
                                    out_dtype)
    (up_dict, up_key), (down_dict, down_key) = upsample_taps, downsample_taps

    def run(x: torch.Tensor) -> torch.Tensor:
        if not x.is_contiguous():  # e.g. a transposed input to a lone module
            x = x.contiguous()
        beta = parameters["beta"] if has_beta else None
        return op(x, parameters["alpha"], beta, up_dict[up_key], down_dict[down_key])

    return run


class InferenceRuns(dict):
    """The lean inference calls of one anti-aliased activation (:class:`Activation1d`, or a module
    :func:`bigvgan_fast.accelerate` fused), kept per ``(x.device, x.dtype, out_dtype)``. Callers look
    the call up themselves (one dictionary lookup on the hot path) and on a miss call
    ``first_call(make, x, out_dtype)``, which makes it with ``make(x, out_dtype) -> (backend name,
    call)``, keeps it and runs it; ``ran`` records, per key, the backend and the dtype that first
    call wrote (for :func:`backends_ran`). Emptied (``clear``) to choose again: see
    :func:`refresh_backends` for when. Pickled and copied empty: the calls are closures, remade on use."""

    def __init__(self):
        super().__init__()
        self.ran: dict[tuple, tuple[str, torch.dtype]] = {}

    def __reduce__(self):
        return InferenceRuns, ()

    def clear(self) -> None:
        super().clear()
        self.ran.clear()

    def first_call(self, make, x: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        # x.device, not its type: the exact standard taps of an accelerated half-precision module
        # are made on the device of its first call (accelerate._taps).
        key = (x.device, x.dtype, out_dtype)
        backend, run = make(x, out_dtype)
        y = run(x)
        self[key] = run
        self.ran[key] = (backend, y.dtype)
        return y


# The attribute holding an activation's InferenceRuns, on Activation1d and on accelerated modules.
INFERENCE_RUNS_ATTRIBUTE = "_inference_runs"


def backends_ran(model: nn.Module) -> list[dict]:
    """What the inference calls of ``model``'s anti-aliased activations ran since they last chose
    (:func:`refresh_backends`): one row per backend and (x dtype, output dtype) pair, with the number
    of activations that ran it, most first. The mixed half-precision mode, for one, runs three pairs
    in each model: float32 -> half (each AMP layer's first activation), half -> half (its second),
    float32 -> float32 (``activation_post``). "torch" also counts activations the fused op cannot
    compute, which run their modules. Empty before the first inference call."""
    counts: dict[tuple[str, torch.dtype, torch.dtype], int] = {}
    for module in model.modules():
        runs = module.__dict__.get(INFERENCE_RUNS_ATTRIBUTE)
        if isinstance(runs, InferenceRuns):
            for (_, x_dtype, _), (backend, y_dtype) in runs.ran.items():
                counts[backend, x_dtype, y_dtype] = counts.get((backend, x_dtype, y_dtype), 0) + 1
    rows = [{"backend": backend, "x_dtype": str(x_dtype).removeprefix("torch."),
             "out_dtype": str(y_dtype).removeprefix("torch."), "activations": n}
            for (backend, x_dtype, y_dtype), n in counts.items()]
    return sorted(rows, key=lambda row: -row["activations"])


def refresh_backends(model: nn.Module) -> None:
    """Make every anti-aliased activation in ``model`` choose its backend again at its next
    inference call: bigvgan_fast's :class:`Activation1d` and the modules
    :func:`bigvgan_fast.accelerate` fused. Their choices are kept across calls, so a change of
    ``BIGVGAN_FAST_BACKEND`` (or of ``TRITON_INTERPRET``, after ``policy.clear_cache()``) applies to
    a model that already ran only after this. An :class:`Activation1d` also chooses again by itself
    after a cast or move (``to()``, ``half()``) and a change of ``backend``; an accelerated module
    after ``accelerate()`` and ``load_state_dict``, but not after a cast or move (its ``_apply`` is
    not ours): a moved one keeps working (its calls are kept per device and dtype), and this makes
    it forget the calls, and the :func:`backends_ran` rows, of the old ones."""
    for module in model.modules():
        runs = module.__dict__.get(INFERENCE_RUNS_ATTRIBUTE)
        if isinstance(runs, InferenceRuns):
            runs.clear()


class Activation1d(nn.Module):
    """Anti-aliased activation: ``downsample(act(upsample(x)))``.

    With ratio 2 and 12-tap filters (every BigVGAN model) it runs through
    :func:`bigvgan_fast.anti_alias_activation` on ``self.backend``; other shapes run the modules.

    ``forward(x, out_dtype=None)`` returns a tensor of ``out_dtype``. The fused backends compute in
    float32 and round once to it (what the AMP blocks use to hand the mixed half-precision mode's
    float32 residual stream to a bfloat16 / float16 convolution without a separate cast); the
    torch path computes as the modules do, then converts. ``out_dtype=None``: the fused backends
    write x's dtype, the torch path what the modules give (float32 for half-precision x and float32
    parameters, by type promotion).

    Inference (no gradient being recorded, not inside ``torch.compile``) takes a lean path: the
    backend and the op are chosen once per (device, x dtype, out dtype) and kept, and each call
    is one op call with the parameters and taps read straight from the modules' dictionaries (so
    reassigned or reloaded parameters are used at once). The choice is made again after ``to()`` /
    ``half()`` and the like, after a change of ``backend``, and on :meth:`refresh` or
    :func:`refresh_backends` (e.g. after changing ``BIGVGAN_FAST_BACKEND``). Training takes the op
    with its autograd formula.
    """

    def __init__(
        self,
        activation: nn.Module,
        up_ratio: int = RATIO,
        down_ratio: int = RATIO,
        up_kernel_size: int = FILTER_TAPS,
        down_kernel_size: int = FILTER_TAPS,
        backend: str = "auto",
    ):
        super().__init__()
        self.act = activation
        self.upsample = UpSample1d(up_ratio, up_kernel_size)
        self.downsample = DownSample1d(down_ratio, down_kernel_size)
        self.backend = backend

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, backend: str) -> None:
        self._backend = policy.check_backend_name(backend)
        self.refresh()

    def refresh(self) -> None:
        """Forget the inference path's choices; the next call chooses again."""
        self.__dict__[INFERENCE_RUNS_ATTRIBUTE] = InferenceRuns()

    def __setstate__(self, state):
        super().__setstate__(state)
        self.refresh()  # an Activation1d pickled before InferenceRuns held a plain dict here

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.refresh()
        return self

    @property
    def fusable(self) -> bool:
        """Whether the fused op can compute this activation (ratio 2, 12 taps, Snake or SnakeBeta)."""
        return (
            isinstance(self.act, (Snake, SnakeBeta))
            and self.upsample.ratio == RATIO
            and self.downsample.ratio == RATIO
            and self.upsample.filter.numel() == FILTER_TAPS
            and self.downsample.lowpass.filter.numel() == FILTER_TAPS
        )

    def _unfused_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend not in ("torch", "auto"):
            raise policy.BackendUnavailableError(
                f"backend {self.backend!r} cannot run this activation: only ratio-2, 12-tap Snake/SnakeBeta "
                "activations are fused"
            )
        return self.downsample(self.act(self.upsample(x)))

    def _op_forward(self, x: torch.Tensor, out_dtype: torch.dtype | None, backend: str | None = None) -> torch.Tensor:
        """The public op on ``backend`` (None: ``self.backend``)."""
        return anti_alias_activation(
            x,
            self.act.alpha,
            self.act.beta,
            alpha_logscale=self.act.alpha_logscale,
            backend=self.backend if backend is None else backend,
            upsample_filter=self.upsample.filter,
            downsample_filter=self.downsample.lowpass.filter,
            out_dtype=out_dtype,
        )

    def _unfused_writing(self, out_dtype: torch.dtype | None):
        """The unfused path with its output converted to ``out_dtype`` (None: as it comes; with
        parameters in another dtype than x's, the modules' type promotion decides)."""
        if out_dtype is None:
            return self._unfused_forward

        def run(x: torch.Tensor) -> torch.Tensor:
            return self._unfused_forward(x).to(out_dtype)

        return run

    def _inference_run(self, x: torch.Tensor, out_dtype: torch.dtype | None):
        """(backend, the lean call) for inputs like ``x`` writing ``out_dtype``: chosen once, kept in
        ``_inference_runs`` (:class:`InferenceRuns`)."""
        check_out_dtype(out_dtype)
        unfused = self._unfused_writing(out_dtype)
        if not self.fusable:
            return "torch", unfused
        name = policy.choose(self.backend, x.device.type, x.dtype, False, out_dtype=out_dtype)
        if name == "torch":
            # What the autograd path runs, so that both give the same result: the modules on backend
            # "torch", else the op (whose torch path computes in x's dtype; the modules would promote
            # a half x to float32 parameters), on "torch" as chosen: "auto" would be chosen again (from
            # BIGVGAN_FAST_BACKEND) at every call.
            return name, unfused if self.backend == "torch" else functools.partial(self._op_forward, out_dtype=out_dtype,
                                                                                   backend=name)
        return name, fused_inference_call(
            name, x, self.act, (self.upsample._buffers, "filter"), (self.downsample.lowpass._buffers, "filter"),
            out_dtype,
        )

    def forward(self, x: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        if not torch.is_grad_enabled() and not torch.compiler.is_compiling():
            if out_dtype is not None and type(out_dtype) is not torch.dtype:
                check_out_dtype(out_dtype)  # raises before an unhashable value meets the dictionary
            run = self._inference_runs.get((x.device, x.dtype, out_dtype))
            if run is not None:
                return run(x)
            return self._inference_runs.first_call(self._inference_run, x, out_dtype)
        if self.backend != "torch" and self.fusable:
            return self._op_forward(x, out_dtype)
        check_out_dtype(out_dtype)
        y = self._unfused_forward(x)
        return y if out_dtype is None else y.to(out_dtype)


def _make_activation(kind: str, channels: int, alpha_logscale: bool, backend: str) -> Activation1d:
    if kind == "snake":
        act = Snake(channels, alpha_logscale=alpha_logscale)
    elif kind == "snakebeta":
        act = SnakeBeta(channels, alpha_logscale=alpha_logscale)
    else:
        raise ValueError(f"activation must be 'snake' or 'snakebeta', got {kind!r}")
    return Activation1d(act, backend=backend)


def _convs(channels: int, kernel_size: int, dilations: Sequence[int], use_weight_norm: bool) -> nn.ModuleList:
    """Same-length convolutions, one per dilation, initialised as the official ones."""
    convs = nn.ModuleList()
    for d in dilations:
        conv = nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d))
        convs.append(apply_weight_norm(conv) if use_weight_norm else conv)
    convs.apply(init_conv_weights)
    return convs


def _activations(count: int, kind: str, channels: int, alpha_logscale: bool, backend: str) -> nn.ModuleList:
    return nn.ModuleList([_make_activation(kind, channels, alpha_logscale, backend) for _ in range(count)])


def parameter_dtype(conv: nn.Module) -> torch.dtype:
    """The dtype a convolution computes in, named by a parameter (the bias, else ``weight_v`` or
    ``weight``): under weight norm the attribute ``weight`` follows a cast only when the convolution
    next runs."""
    reference = conv.bias if conv.bias is not None else getattr(conv, "weight_v", conv.weight)
    return reference.dtype


def input_dtype_for(conv: nn.Module, x: torch.Tensor) -> torch.dtype | None:
    """The dtype ``conv``'s input must have, for an input on ``x``'s device: ``conv``'s parameters'
    dtype, or None under autocast, which casts the convolution's input itself (a conversion here
    would be undone there). The mixed half-precision mode keeps the residual stream float32
    (bigvgan_fast.precision) and its convolutions in half precision."""
    if _autocast_enabled(x.device.type):
        return None
    return parameter_dtype(conv)


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type autocast does not know (meta: a model built to be measured)
        return False


def as_input_of(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` in ``conv``'s dtype (see :func:`input_dtype_for`); ``x`` itself when it has it."""
    dtype = input_dtype_for(conv, x)
    return x if dtype is None or x.dtype == dtype else x.to(dtype)


class AMPBlock1(nn.Module):
    """For each dilation d: ``x = x + c2(a2(c1(a1(x))))``, c1 dilated by d, c2 not.

    Each activation writes the dtype of the convolution after it (:func:`input_dtype_for`, None under
    autocast): in the mixed half-precision mode a1 reads the float32 residual and writes c1's
    bfloat16 / float16, one pass instead of an activation and a cast."""

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        dilation: Sequence[int] = (1, 3, 5),
        activation: str = "snakebeta",
        snake_logscale: bool = True,
        use_weight_norm: bool = True,
        backend: str = "auto",
    ):
        super().__init__()
        self.convs1 = _convs(channels, kernel_size, dilation, use_weight_norm)
        self.convs2 = _convs(channels, kernel_size, [1] * len(dilation), use_weight_norm)
        self.num_layers = len(self.convs1) + len(self.convs2)
        self.activations = _activations(self.num_layers, activation, channels, snake_logscale, backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acts1, acts2 = self.activations[::2], self.activations[1::2]
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, acts1, acts2):
            h = c1(a1(x, out_dtype=input_dtype_for(c1, x)))
            x = x + c2(a2(h, out_dtype=input_dtype_for(c2, x)))
        return x


class AMPBlock2(nn.Module):
    """For each dilation d: ``x = x + c(a(x))``, a writing c's dtype (as in :class:`AMPBlock1`)."""

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        dilation: Sequence[int] = (1, 3, 5),
        activation: str = "snakebeta",
        snake_logscale: bool = True,
        use_weight_norm: bool = True,
        backend: str = "auto",
    ):
        super().__init__()
        self.convs = _convs(channels, kernel_size, dilation, use_weight_norm)
        self.num_layers = len(self.convs)
        self.activations = _activations(self.num_layers, activation, channels, snake_logscale, backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c, a in zip(self.convs, self.activations):
            x = x + c(a(x, out_dtype=input_dtype_for(c, x)))
        return x
