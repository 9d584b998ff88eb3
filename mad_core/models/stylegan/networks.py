"""StyleGAN2's networks (Karras et al. 2020, "Analyzing and Improving the Image Quality of
StyleGAN") in plain PyTorch, small enough to train at 8x8 on a CPU.

Generator: a mapping network (z, pixel-normalised, through an MLP to w) and a synthesis
network: a learned 4x4 constant, then per resolution two modulated 3x3 convolutions with
weight demodulation (the first after a bilinear 2x upsample), each followed by per-pixel
noise with a learned per-channel strength, a bias and a leaky ReLU; a 1x1 toRGB per
resolution whose outputs are upsampled and summed (the paper's "skip" generator). The
mean of w over many z is a buffer (``w_mean``), so it travels with the weights and with
their EMA copy; truncation pulls w toward it.

Discriminator: the paper's residual one. fromRGB at full size; per resolution two 3x3
convolutions, the second after a 2x average-pool downsample, plus a downsampled 1x1 skip,
summed and scaled by 1/sqrt(2); at 4x4 the minibatch standard deviation, a 3x3
convolution and two dense layers.

Every weight has the equalized learning rate: stored N(0, 1) / lr_mul and scaled at run
time by lr_mul / sqrt(fan_in), so Adam's steps are the same relative size in every layer.
Leaky ReLUs are multiplied by sqrt(2), which keeps unit second moments.

Departures from the paper, for a CPU and plain PyTorch: bilinear upsampling and box
(average-pool) downsampling instead of [1, 3, 3, 1] FIR filters around transposed and
strided convolutions; the modulation is applied to the activations (conv(x * s, W) * d,
one ordinary convolution over the batch) instead of to per-sample weights (a grouped
convolution). Both are the same function (tested); the paper's reference code switches
between them the same way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATION_GAIN = math.sqrt(2.0)  # leaky ReLU(0.2) * sqrt(2) keeps the second moment near 1
DEMODULATION_EPS = 1e-8


def activation(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2) * ACTIVATION_GAIN


def upsample(x: Tensor) -> Tensor:
    """Bilinear 2x upsampling (B, C, H, W) -> (B, C, 2H, 2W)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def downsample(x: Tensor) -> Tensor:
    """2x downsampling by averaging 2x2 blocks (B, C, H, W) -> (B, C, H/2, W/2)."""
    return F.avg_pool2d(x, 2)


def channels_at(resolution: int, channels: int, channel_base: int) -> int:
    """Feature maps at a resolution: min(channels, channel_base / resolution), StyleGAN2's rule."""
    return max(1, min(channels, channel_base // resolution))


def resolutions(image_size: int) -> list[int]:
    """4, 8, ..., image_size (image_size = 4 * 2^k, k >= 1)."""
    return [4 * 2 ** i for i in range(int(math.log2(image_size // 4)) + 1)]


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, *, demodulate: bool) -> Tensor:
    """StyleGAN2's modulated convolution, 'same' padding.

    The per-sample weights are w'_oik = weight_oik * styles_bi, demodulated to
    w''_oik = w'_oik / sqrt(sum_ik w'_oik^2 + eps), so that an input of unit-variance
    independent entries gives outputs of unit variance whatever the style's scale.
    Computed as conv(x * styles, weight) * d_bo, with d_bo the demodulation factors.

    Args:
        x: (B, I, H, W) activations.
        weight: (O, I, k, k), already multiplied by its equalized-learning-rate scale.
        styles: (B, I) per-sample input-channel scales.
    """
    padding = weight.shape[-1] // 2
    out = F.conv2d(x * styles[:, :, None, None].to(x.dtype), weight.to(x.dtype), padding=padding)
    if demodulate:
        # sum_ik (weight_oik s_bi)^2 = (s_b^2) . (sum_k weight_oik^2), in float32 at least,
        # autocast off: bfloat16 sums of squares would blur the unit scale it promises.
        dtype = torch.promote_types(styles.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            energy = styles.to(dtype).square() @ weight.to(dtype).square().sum(dim=(2, 3)).T
        out = out * torch.rsqrt(energy + DEMODULATION_EPS)[:, :, None, None].to(out.dtype)
    return out


class EqualLinear(nn.Module):
    """A dense layer with the equalized learning rate (and a learning-rate multiplier)."""

    def __init__(self, in_features: int, out_features: int, *, generator: torch.Generator,
                 bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        weight = torch.randn(out_features, in_features, generator=generator)
        self.weight = nn.Parameter(weight / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    """A 'same'-padded convolution with the equalized learning rate."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 generator: torch.Generator, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size,
                                               generator=generator))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.weight_gain, self.bias,
                        padding=self.weight.shape[-1] // 2)


class MappingNetwork(nn.Module):
    """z (B, latent_dim) -> w (B, w_dim): pixel norm, then `layers` dense layers with leaky ReLU."""

    def __init__(self, *, latent_dim: int, w_dim: int, layers: int, lr_mul: float,
                 generator: torch.Generator):
        super().__init__()
        widths = [latent_dim] + [w_dim] * layers
        self.layers = nn.ModuleList(EqualLinear(a, b, generator=generator, lr_mul=lr_mul)
                                    for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, z: Tensor) -> Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)  # pixel norm
        for layer in self.layers:
            x = activation(layer(x))
        return x


class StyledConv(nn.Module):
    """Modulated 3x3 conv (optionally after a 2x upsample), noise, bias, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, *, up: bool,
                 generator: torch.Generator):
        super().__init__()
        self.up = up
        self.affine = EqualLinear(w_dim, in_channels, generator=generator, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3,
                                               generator=generator))
        self.weight_gain = 1.0 / math.sqrt(in_channels * 9)
        # StyleGAN2 learns one noise strength per layer; one per channel is the brief's
        # (StyleGAN1's) finer choice. Zero at first, as in the paper.
        self.noise_strength = nn.Parameter(torch.zeros(out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, generator: torch.Generator) -> Tensor:
        if self.up:
            x = upsample(x)
        x = modulated_conv2d(x, self.weight * self.weight_gain, self.affine(w), demodulate=True)
        batch, _, height, width = x.shape
        noise = torch.randn(batch, 1, height, width, generator=generator, device=x.device)
        x = x + noise.to(x.dtype) * self.noise_strength[None, :, None, None]
        return activation(x + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, without demodulation, plus a bias."""

    def __init__(self, in_channels: int, image_channels: int, w_dim: int, *,
                 generator: torch.Generator):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, generator=generator, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(image_channels, in_channels, 1, 1,
                                               generator=generator))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.bias = nn.Parameter(torch.zeros(image_channels))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        out = modulated_conv2d(x, self.weight * self.weight_gain, self.affine(w), demodulate=False)
        return out + self.bias[None, :, None, None]


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) -> images (B, C, size, size) in about [-1, 1].

    w index of each layer (as in the paper): 4x4 conv 0, its toRGB 1; at the l-th doubling
    the two convs 2l - 1 and 2l, the toRGB 2l + 1 (a toRGB shares its w with the next
    block's first conv), so num_ws = 2 * (number of resolutions).
    """

    def __init__(self, *, w_dim: int, image_size: int, image_channels: int, channels: int,
                 channel_base: int, generator: torch.Generator):
        super().__init__()
        widths = [channels_at(r, channels, channel_base) for r in resolutions(image_size)]
        self.num_ws = 2 * len(widths)
        self.const = nn.Parameter(torch.randn(1, widths[0], 4, 4, generator=generator))
        self.convs = nn.ModuleList([StyledConv(widths[0], widths[0], w_dim, up=False,
                                               generator=generator)])
        self.to_rgbs = nn.ModuleList([ToRGB(widths[0], image_channels, w_dim, generator=generator)])
        for before, after in zip(widths[:-1], widths[1:]):
            self.convs.append(StyledConv(before, after, w_dim, up=True, generator=generator))
            self.convs.append(StyledConv(after, after, w_dim, up=False, generator=generator))
            self.to_rgbs.append(ToRGB(after, image_channels, w_dim, generator=generator))

    def forward(self, ws: Tensor, generator: torch.Generator) -> Tensor:
        x = self.const.expand(len(ws), -1, -1, -1)
        x = self.convs[0](x, ws[:, 0], generator)
        image = self.to_rgbs[0](x, ws[:, 1])
        for level in range(1, len(self.to_rgbs)):
            x = self.convs[2 * level - 1](x, ws[:, 2 * level - 1], generator)
            x = self.convs[2 * level](x, ws[:, 2 * level], generator)
            image = upsample(image) + self.to_rgbs[level](x, ws[:, 2 * level + 1])
        return image


class Generator(nn.Module):
    """Mapping and synthesis networks in one module, so that the EMA and sampling see both.

    ``w_mean`` (w_dim,) is the mean of mapping(z), NaN until ``estimate_w_mean`` sets it.
    """

    def __init__(self, *, latent_dim: int, w_dim: int, mapping_layers: int, mapping_lr_mul: float,
                 image_size: int, image_channels: int, channels: int, channel_base: int,
                 generator: torch.Generator):
        super().__init__()
        self.latent_dim = latent_dim
        self.mapping = MappingNetwork(latent_dim=latent_dim, w_dim=w_dim, layers=mapping_layers,
                                      lr_mul=mapping_lr_mul, generator=generator)
        self.synthesis = SynthesisNetwork(w_dim=w_dim, image_size=image_size,
                                          image_channels=image_channels, channels=channels,
                                          channel_base=channel_base, generator=generator)
        self.register_buffer("w_mean", torch.full((w_dim,), float("nan")))

    @property
    def num_ws(self) -> int:
        return self.synthesis.num_ws

    def truncate(self, w: Tensor, psi: float) -> Tensor:
        """w' = w_mean + psi (w - w_mean), the truncation trick in W."""
        if not bool(torch.isfinite(self.w_mean).all()):
            raise RuntimeError("w_mean is not estimated yet (estimate_w_mean after training); "
                               "truncation needs it")
        return self.w_mean + psi * (w - self.w_mean)

    def broadcast(self, w: Tensor) -> Tensor:
        """(B, w_dim) -> (B, num_ws, w_dim): the same w for every layer."""
        return w[:, None].expand(-1, self.num_ws, -1)

    def forward(self, z: Tensor, generator: torch.Generator, psi: float = 1.0) -> Tensor:
        """Images from latents z (B, latent_dim), truncated by psi unless psi == 1."""
        w = self.mapping(z)
        if psi != 1:
            w = self.truncate(w, psi)
        return self.synthesis(self.broadcast(w), generator)


@torch.no_grad()
def estimate_w_mean(network: Generator, count: int, generator: torch.Generator,
                    chunk: int = 10_000) -> Tensor:
    """The mean of mapping(z) over `count` z ~ N(0, I) drawn on the CPU from `generator`
    (so the estimate does not depend on the device), in float32."""
    device = network.w_mean.device
    total = torch.zeros_like(network.w_mean, dtype=torch.float32)
    for start in range(0, count, chunk):
        z = torch.randn(min(chunk, count - start), network.latent_dim, generator=generator)
        total += network.mapping(z.to(device)).float().sum(dim=0)
    return total / count


def minibatch_stddev(x: Tensor, group_size: int) -> Tensor:
    """Append one feature map: the standard deviation of each feature over a group of
    samples, averaged over features and pixels (StyleGAN's minibatch std, one channel).

    Groups are the largest size <= group_size that divides the batch (a last, smaller
    batch still works; a batch of one gets the eps floor).
    """
    batch, channels, height, width = x.shape
    group = max(g for g in range(1, min(group_size, batch) + 1) if batch % g == 0)
    y = x.float().reshape(group, -1, channels, height, width)  # sample i and i + B/G share a group
    std = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8).mean(dim=(1, 2, 3))  # (B / G,)
    feature = std.repeat(group)[:, None, None, None].expand(-1, 1, height, width)
    return torch.cat([x, feature.to(x.dtype)], dim=1)


class DiscriminatorBlock(nn.Module):
    """Residual block: (conv 3x3, act, downsample, conv 3x3, act) + (downsample, 1x1), / sqrt 2."""

    def __init__(self, in_channels: int, out_channels: int, *, generator: torch.Generator):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, generator=generator)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, generator=generator)
        self.skip = EqualConv2d(in_channels, out_channels, 1, generator=generator, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        skip = self.skip(downsample(x))
        x = activation(self.conv1(downsample(activation(self.conv0(x)))))
        return (skip + x) * math.sqrt(0.5)


class Discriminator(nn.Module):
    """images (B, C, size, size) -> logits (B,)."""

    def __init__(self, *, image_size: int, image_channels: int, channels: int, channel_base: int,
                 mbstd_group: int, generator: torch.Generator):
        super().__init__()
        sizes = resolutions(image_size)[::-1]  # size, size / 2, ..., 4
        widths = [channels_at(r, channels, channel_base) for r in sizes]
        self.mbstd_group = mbstd_group
        self.from_rgb = EqualConv2d(image_channels, widths[0], 1, generator=generator)
        self.blocks = nn.ModuleList(DiscriminatorBlock(a, b, generator=generator)
                                    for a, b in zip(widths[:-1], widths[1:]))
        last = widths[-1]
        self.conv = EqualConv2d(last + 1, last, 3, generator=generator)
        self.dense = EqualLinear(last * 16, last, generator=generator)
        self.out = EqualLinear(last, 1, generator=generator)

    def forward(self, images: Tensor) -> Tensor:
        x = activation(self.from_rgb(images))
        for block in self.blocks:
            x = block(x)
        x = activation(self.conv(minibatch_stddev(x, self.mbstd_group)))
        return self.out(activation(self.dense(x.flatten(1)))).squeeze(1)
