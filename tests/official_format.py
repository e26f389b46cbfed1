"""Official-format BigVGAN checkpoints with random weights, built from docs/definition.md's key list and the
config alone (not from our model), so that loading them tests our module tree against the layout."""

from __future__ import annotations

import torch

from bigvgan_fast import load_config


def official_state_dict(config, weight_norm: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    h = load_config(config)
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(prefix, shape, bias=True):
        w = 0.01 * torch.randn(*shape, generator=gen)
        if weight_norm:
            sd[prefix + ".weight_g"] = w.norm(dim=tuple(range(1, w.dim())), keepdim=True) * (1 + 0.1 * torch.rand(shape[0], 1, 1, generator=gen))
            sd[prefix + ".weight_v"] = w
        else:
            sd[prefix + ".weight"] = w
        if bias:
            sd[prefix + ".bias"] = 0.01 * torch.randn(shape[1] if prefix.startswith("ups.") else shape[0], generator=gen)

    def activation(prefix, ch):
        sd[prefix + ".act.alpha"] = 0.2 * torch.randn(ch, generator=gen)
        if h.activation == "snakebeta":
            sd[prefix + ".act.beta"] = 0.2 * torch.randn(ch, generator=gen)
        taps = torch.kaiser_window(12, periodic=False, beta=0.1102 * (2.285 * 5 * torch.pi * 1.2 + 7.95 - 8.7), dtype=torch.float64)
        t = torch.arange(-6, 6, dtype=torch.float64) + 0.5
        f = 0.5 * taps * torch.sinc(0.5 * t)
        f = (f / f.sum()).float().view(1, 1, 12)
        sd[prefix + ".upsample.filter"] = f.clone()
        sd[prefix + ".downsample.lowpass.filter"] = f.clone()

    c0 = h.upsample_initial_channel
    conv("conv_pre", (c0, h.num_mels, 7))
    for i, (u, k) in enumerate(zip(h.upsample_rates, h.upsample_kernel_sizes)):
        conv(f"ups.{i}.0", (c0 // 2**i, c0 // 2 ** (i + 1), k))
    j = 0
    for i in range(len(h.upsample_rates)):
        ch = c0 // 2 ** (i + 1)
        for k, dilations in zip(h.resblock_kernel_sizes, h.resblock_dilation_sizes):
            if h.resblock == "1":
                for m in range(len(dilations)):
                    conv(f"resblocks.{j}.convs1.{m}", (ch, ch, k))
                    conv(f"resblocks.{j}.convs2.{m}", (ch, ch, k))
                n_act = 2 * len(dilations)
            else:
                for m in range(len(dilations)):
                    conv(f"resblocks.{j}.convs.{m}", (ch, ch, k))
                n_act = len(dilations)
            for n in range(n_act):
                activation(f"resblocks.{j}.activations.{n}", ch)
            j += 1
    activation("activation_post", ch)
    conv("conv_post", (1, ch, 7), bias=h.use_bias_at_final)
    return sd


def write_official_checkpoint(directory, config, weight_norm: bool = True, seed: int = 0) -> None:
    """``config.json`` and ``bigvgan_generator.pt`` ({"generator": state_dict}) as NVIDIA publishes them."""
    h = load_config(config)
    (directory / "config.json").write_text(h.to_json())
    torch.save({"generator": official_state_dict(h, weight_norm, seed)}, directory / "bigvgan_generator.pt")
