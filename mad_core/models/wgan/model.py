"""WGAN-GP (Gulrajani et al. 2017) on the shared training loop, unconditional.

Each step of the loop is one critic update on its batch: the critic minimises
E[D(fake)] - E[D(real)] + gp_weight * E[(||grad D(x_hat)|| - 1)^2] on fresh fakes
G(z), z ~ N(0, I). Every ``n_critic``-th step the generator then minimises -E[D(G(z))]
on a fresh z of the same batch size (the critic frozen). Both use Adam with WGAN-GP's
betas (0.5, 0.9). With EMA on, the base averages the generator after every step, so
per generator update the decay is ema_decay^n_critic.

Sampling bias lambda is truncation in z space (SCIENCE.md): z' = lambda z; lambda = 1
feeds z as drawn.

Vectors reach the networks standardised (the base's doing) and the MLP generator's
output is linear; images are in [0, 1] and the convolutional generator ends in a sigmoid.
Labels of a labelled training set are ignored.
"""

from __future__ import annotations

import torch
from torch import nn

from mad_core.models.neural.training import NeuralModel
from mad_core.models.wgan.networks import (ConvCritic, ConvGenerator, build, gradient_penalty,
                                           mlp)


def truncate(z: torch.Tensor, bias: float) -> torch.Tensor:
    """The latent pulled toward 0 by sampling bias lambda in (0, 1]: lambda z, and z
    itself (no arithmetic) at lambda = 1."""
    if not 0 < bias <= 1:
        raise ValueError(f"sampling bias lambda must lie in (0, 1], got {bias}")
    return z if bias == 1 else z * bias


class WGANGP(NeuralModel):
    """Unconditional WGAN-GP: an MLP pair for vectors, a DCGAN-style pair for square
    images (options: ``wgan.OPTIONS``; networks: ``wgan.networks``)."""

    sampling_network = "generator"
    adam_betas = (0.5, 0.9)  # WGAN-GP's Adam

    def __init__(self, *, latent_dim: int, width: int, depth: int, channels: int, levels: int,
                 n_critic: int, gp_weight: float, **training):
        super().__init__(**training)
        self.latent_dim, self.width, self.depth = latent_dim, width, depth
        self.channels, self.levels = channels, levels
        self.n_critic, self.gp_weight = n_critic, gp_weight

    def build_networks(self, generator: torch.Generator) -> dict[str, nn.Module]:
        self.critic_updates_ = 0  # of this fit: the generator moves every n_critic-th one
        shape = self.sample_shape_
        if len(shape) == 1:
            sizes = {"width": self.width, "depth": self.depth}
            return {"generator": build(lambda: mlp(self.latent_dim, shape[0], **sizes), generator),
                    "critic": build(lambda: mlp(shape[0], 1, **sizes), generator)}
        channels, height, width = shape
        if height != width or height % 2 ** self.levels:
            raise ValueError(f"WGANGP's convolutional networks take square images whose side "
                             f"is a multiple of 2^levels = {2 ** self.levels}, got "
                             f"{height}x{width}")
        sizes = {"shape": shape, "channels": self.channels, "levels": self.levels}
        return {"generator": build(lambda: ConvGenerator(latent_dim=self.latent_dim, **sizes),
                                   generator),
                "critic": build(lambda: ConvCritic(**sizes), generator)}

    def optimizer_groups(self) -> dict[str, tuple[str, ...]]:
        return {"generator": ("generator",), "critic": ("critic",)}

    def _latent(self, count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(count, self.latent_dim, generator=generator, device=self.device)

    def train_step(self, x, y, generator):
        generator_net, critic = self.networks_["generator"], self.networks_["critic"]
        with torch.no_grad(), self.autocast():
            fake = generator_net(self._latent(len(x), generator)).to(x.dtype)  # bf16 -> x's
        with self.autocast():
            scores = critic(torch.cat([x, fake]))  # one pass over both halves
            gap = scores[:len(x)].mean() - scores[len(x):].mean()  # its Wasserstein estimate
            penalty = gradient_penalty(critic, x, fake, generator)
            critic_loss = self.gp_weight * penalty - gap
        self.optimize("critic", critic_loss)
        losses = {"wasserstein": gap.detach(), "penalty": penalty.detach()}
        self.critic_updates_ += 1
        if self.critic_updates_ % self.n_critic == 0:
            critic.requires_grad_(False)  # no weight gradients for the critic here
            with self.autocast():
                generator_loss = -critic(generator_net(self._latent(len(x), generator))).mean()
            self.optimize("generator", generator_loss)
            critic.requires_grad_(True)
            losses["generator"] = generator_loss.detach()
        return losses

    def generate(self, network, labels, count, bias, generator):
        return network(truncate(self._latent(count, generator), bias))
