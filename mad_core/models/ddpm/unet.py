"""A compact class-conditional UNet that predicts the noise of a DDPM (Ho et al. 2020).

Sized for 8x8 digits and 32x32 (padded MNIST) images. The timestep enters through
sinusoidal features and an MLP; the class through an embedding with one extra row, the
null label of classifier-free guidance (Ho & Salimans 2022); their sum modulates every
residual block by a per-channel scale and shift.

``build_unet`` builds the network with torch's default initialisation drawn from an
explicit ``torch.Generator``, so that training runs never touch the global RNG.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _group_count(channels: int) -> int:
    """Largest divisor of ``channels`` not above 8: GroupNorm needs groups to divide channels."""
    return max(g for g in range(1, min(8, channels) + 1) if channels % g == 0)


def timestep_features(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of integer timesteps (Vaswani et al. 2017): (B,) -> (B, dim), dim even."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10_000.0) / half
                            * torch.arange(half, device=t.device, dtype=torch.float32))
    angles = t.to(torch.float32)[:, None] * frequencies[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ResidualBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the embedding as a per-channel scale and shift in between.

    (B, in_channels, H, W) and (B, emb_dim) -> (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(_group_count(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.embedding = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(_group_count(out_channels), out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.embedding(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the H*W positions, residual: (B, C, H, W) -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(_group_count(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.projection = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        # (B, 3C, H, W) -> three (B, H*W, C): one token per position.
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        attended = F.scaled_dot_product_attention(q, k, v)
        return x + self.projection(attended.transpose(1, 2).reshape(b, c, h, w))


class _Block(nn.Module):
    """A residual block, followed by self-attention where the resolution asks for it."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float,
                 attention: bool):
        super().__init__()
        self.residual = ResidualBlock(in_channels, out_channels, emb_dim, dropout)
        self.attention = SelfAttention(out_channels) if attention else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.attention(self.residual(x, emb))


class _Upsample(nn.Module):
    """Nearest-neighbour doubling then a 3x3 conv: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """Class-conditional noise predictor eps(x_t, t, y).

    Level i works at resolution image_size / 2**i with base_channels *
    channel_multipliers[i] channels and ``res_blocks`` residual blocks on the way down
    (res_blocks + 1 on the way up, one per skip connection); levels are joined by
    stride-2 convolutions down and nearest + conv up. Self-attention follows the blocks
    at the resolutions in ``attention_resolutions``. The output convolution starts at
    zero, so the untrained network predicts zero noise.

    Labels run over [0, num_classes]; ``num_classes`` itself is the null label.
    """

    def __init__(self, *, image_channels: int, image_size: int, base_channels: int = 32,
                 channel_multipliers: tuple[int, ...] = (1, 2), res_blocks: int = 1,
                 attention_resolutions: tuple[int, ...] = (), num_classes: int = 10,
                 dropout: float = 0.0):
        super().__init__()
        levels = len(channel_multipliers)
        if levels == 0 or min(channel_multipliers) < 1:
            raise ValueError(f"channel_multipliers={channel_multipliers} needs at least one "
                             "level and positive multipliers")
        if image_channels < 1 or base_channels < 1 or res_blocks < 1 or num_classes < 1:
            raise ValueError("image_channels, base_channels, res_blocks and num_classes must be "
                             f"positive, got {image_channels}, {base_channels}, {res_blocks}, "
                             f"{num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} must lie in [0, 1)")
        factor = 2 ** (levels - 1)
        if image_size < 1 or image_size % factor:
            raise ValueError(
                f"image_size={image_size} is not divisible by 2**(len(channel_multipliers) - 1) "
                f"= {factor}: channel_multipliers={channel_multipliers} downsamples "
                f"{levels - 1} times. Use fewer channel_multipliers or an image_size that is "
                f"a multiple of {factor}")
        resolutions = [image_size // 2 ** level for level in range(levels)]
        unreached = sorted(set(attention_resolutions) - set(resolutions))
        if unreached:
            raise ValueError(f"attention_resolutions {unreached} are never reached; with "
                             f"image_size={image_size} and channel_multipliers="
                             f"{channel_multipliers} the resolutions are {resolutions}")

        self.image_channels, self.image_size, self.num_classes = image_channels, image_size, num_classes
        self.null_label = num_classes
        # Sinusoids come in sin/cos pairs, so their count is even.
        self.time_features = base_channels + base_channels % 2
        emb_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(nn.Linear(self.time_features, emb_dim), nn.SiLU(),
                                      nn.Linear(emb_dim, emb_dim))
        self.class_embedding = nn.Embedding(num_classes + 1, emb_dim)

        def block(in_channels: int, out_channels: int, resolution: int) -> _Block:
            return _Block(in_channels, out_channels, emb_dim, dropout,
                          attention=resolution in attention_resolutions)

        self.stem = nn.Conv2d(image_channels, base_channels, 3, padding=1)
        channels, skip_channels = base_channels, [base_channels]
        self.down_blocks, self.downsamplers = nn.ModuleList(), nn.ModuleList()
        for level, multiplier in enumerate(channel_multipliers):
            blocks = nn.ModuleList()
            for _ in range(res_blocks):
                blocks.append(block(channels, base_channels * multiplier, resolutions[level]))
                channels = base_channels * multiplier
                skip_channels.append(channels)
            self.down_blocks.append(blocks)
            if level < levels - 1:
                self.downsamplers.append(nn.Conv2d(channels, channels, 3, stride=2, padding=1))
                skip_channels.append(channels)

        self.middle = nn.ModuleList([block(channels, channels, resolutions[-1]),
                                     _Block(channels, channels, emb_dim, dropout, attention=False)])

        self.up_blocks, self.upsamplers = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(levels)):
            blocks = nn.ModuleList()
            for _ in range(res_blocks + 1):
                out_channels = base_channels * channel_multipliers[level]
                blocks.append(block(channels + skip_channels.pop(), out_channels, resolutions[level]))
                channels = out_channels
            self.up_blocks.append(blocks)
            if level > 0:
                self.upsamplers.append(_Upsample(channels))

        self.out_norm = nn.GroupNorm(_group_count(channels), channels)
        self.out_conv = nn.Conv2d(channels, image_channels, 3, padding=1)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        """Predicted noise.

        Args:
            x: (B, C, H, W) noisy images x_t.
            t: (B,) int64 timesteps in [0, T).
            labels: (B,) int64 in [0, num_classes]; num_classes is the null label.

        Returns:
            (B, C, H, W) predicted noise.
        """
        emb = self.time_mlp(timestep_features(t, self.time_features)) + self.class_embedding(labels)
        h = self.stem(x)
        skips = [h]
        for level, blocks in enumerate(self.down_blocks):
            for block in blocks:
                h = block(h, emb)
                skips.append(h)
            if level < len(self.downsamplers):
                h = self.downsamplers[level](h)
                skips.append(h)
        for block in self.middle:
            h = block(h, emb)
        for index, blocks in enumerate(self.up_blocks):
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if index < len(self.upsamplers):
                h = self.upsamplers[index](h)
        return self.out_conv(F.silu(self.out_norm(h)))


def build_unet(*, generator: torch.Generator, **kwargs: Any) -> UNet:
    """A CPU ``UNet(**kwargs)`` with torch's default initialisation drawn from ``generator``.

    Built on the "meta" device, so construction draws no global random numbers; then
    every parameter is set: conv and linear layers as torch does by default (Kaiming
    uniform with a = sqrt(5), bias uniform in +-1/sqrt(fan_in)), norms to ones and
    zeros, embeddings standard normal, and the output convolution back to zero.
    """
    with torch.device("meta"):
        network = UNet(**kwargs)
    network = network.to_empty(device="cpu")
    initialised: set[int] = set()
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                if module.bias is not None:
                    bound = 1 / math.sqrt(module.weight[0].numel())
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)
            elif isinstance(module, nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, generator=generator)
            else:
                continue
            initialised.update(id(parameter) for parameter in module.parameters(recurse=False))
        nn.init.zeros_(network.out_conv.weight)
        nn.init.zeros_(network.out_conv.bias)
    # A layer type added later without an initialiser here would keep uninitialised memory.
    missing = [name for name, parameter in network.named_parameters() if id(parameter) not in initialised]
    if missing:
        raise RuntimeError(f"build_unet has no initialiser for parameters {missing}")
    return network
