"""WGAN-GP's networks and its gradient penalty (Gulrajani et al. 2017).

Two architectures, chosen from the data's shape:

- vectors (d,): an MLP generator and critic of ``depth`` hidden ReLU layers of ``width``
  units (the toy networks of the WGAN-GP paper, narrower for a CPU);
- square images (C, S, S): a DCGAN-style pair without batch norm. The generator maps z
  to a (channels * 2^levels, S / 2^levels, S / 2^levels) block, doubles the size
  ``levels`` times with 4x4 stride-2 transposed convolutions (halving the channels), and
  ends in a 3x3 convolution and a sigmoid (pixels in [0, 1]). The critic mirrors it with
  4x4 stride-2 convolutions and leaky ReLUs, and ends in one linear unit. The critic has
  no batch norm: the gradient penalty constrains the gradient of each sample's score
  with respect to that sample, which batch statistics would couple across the batch.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(in_features: int, out_features: int, *, width: int, depth: int) -> nn.Sequential:
    """`depth` hidden ReLU layers of `width` units, then a linear output layer."""
    layers, features = [], in_features
    for _ in range(depth):
        layers += [nn.Linear(features, width), nn.ReLU()]
        features = width
    return nn.Sequential(*layers, nn.Linear(features, out_features))


class ConvGenerator(nn.Module):
    """z (B, latent_dim) -> images (B, C, S, S) in [0, 1] (see the module docstring)."""

    def __init__(self, *, latent_dim: int, shape: tuple[int, int, int], channels: int,
                 levels: int):
        super().__init__()
        image_channels, size, _ = shape
        self.top_channels, self.top_size = channels * 2 ** levels, size // 2 ** levels
        self.project = nn.Linear(latent_dim, self.top_channels * self.top_size ** 2)
        layers = []
        for level in range(levels, 0, -1):
            layers += [nn.ConvTranspose2d(channels * 2 ** level, channels * 2 ** (level - 1),
                                          4, stride=2, padding=1), nn.ReLU()]
        self.upsample = nn.Sequential(*layers)
        self.out = nn.Conv2d(channels, image_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.project(z))
        h = h.view(len(z), self.top_channels, self.top_size, self.top_size)
        return torch.sigmoid(self.out(self.upsample(h)))


class ConvCritic(nn.Module):
    """Images (B, C, S, S) in [0, 1] -> scores (B, 1) (see the module docstring)."""

    def __init__(self, *, shape: tuple[int, int, int], channels: int, levels: int):
        super().__init__()
        image_channels, size, _ = shape
        layers = [nn.Conv2d(image_channels, channels, 3, padding=1), nn.LeakyReLU(0.2)]
        for level in range(levels):
            layers += [nn.Conv2d(channels * 2 ** level, channels * 2 ** (level + 1), 4,
                                 stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(channels * 2 ** levels * (size // 2 ** levels) ** 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x * 2 - 1).flatten(1))  # pixels centred on 0


def build(make, generator: torch.Generator) -> nn.Module:
    """The CPU network ``make()`` with torch's default initialisation drawn from
    `generator`: built on the "meta" device (so construction draws nothing from torch's
    global random state), then every linear and (transposed) convolution layer set as
    torch does by default (Kaiming uniform with a = sqrt(5), bias uniform in
    +-1/sqrt(fan_in))."""
    with torch.device("meta"):
        network = make()
    network = network.to_empty(device="cpu")
    initialised: set[int] = set()
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                bound = 1 / math.sqrt(module.weight[0].numel())
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
                initialised.update(id(p) for p in module.parameters(recurse=False))
    # A layer type added later without a rule here would keep uninitialised memory.
    missing = [name for name, p in network.named_parameters() if id(p) not in initialised]
    if missing:
        raise RuntimeError(f"build has no initialiser for parameters {missing}")
    return network


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
    """WGAN-GP's penalty E[(||grad_x critic(x_hat)||_2 - 1)^2], x_hat = real + u (fake -
    real) with u ~ U[0, 1] per sample; differentiable in the critic's weights."""
    u = torch.rand((len(real),) + (1,) * (real.ndim - 1), generator=generator,
                   device=real.device, dtype=real.dtype)
    mixed = torch.lerp(real.detach(), fake.detach(), u).requires_grad_(True)
    (gradient,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((gradient.flatten(1).norm(dim=1) - 1) ** 2).mean()
