"""An unconditional StyleGAN2 on the shared training loop, with truncation as the sampling bias.

Images in [0, 1] are mapped to [-1, 1] and, with ``pad_to``, padded with black (-1) to
the networks' size; samples are cropped back and mapped to [0, 1].

Training (one ``train_step``): a generator step on the non-saturating logistic loss
softplus(-D(G(z))), then a discriminator step on softplus(D(G(z))) + softplus(-D(x)) plus,
every ``r1_interval`` steps (lazy regularisation), the R1 penalty
(gamma / 2) E|grad_x D(x)|^2 scaled by the interval, added to that step's loss (one
Adam step; StyleGAN2 takes a separate one and rescales Adam's lr and betas by
interval / (interval + 1), a 6 % change at 16 that the shared loop's one lr per model
does not express). Adam with betas (0, 0.99). With probability ``style_mixing`` a
training sample takes a second w from a random layer on. Left out: path-length
regularisation (it smooths W for projection and interpolation, which MAD's FID,
precision and recall do not measure) and adaptive augmentation (StyleGAN2-ADA).

Sampling bias lambda is the truncation psi = lambda in W: w' = w_mean + psi (w - w_mean),
the same w for every layer. ``w_mean`` is the mean of mapping(z) over
``truncation_samples`` z, estimated once at the end of each fit from z drawn from the
fit's rng, for the sampling network (the EMA copy) and the trained one alike; it is a
buffer of the generator module, so ``state_dict`` carries it and a loaded model samples
identically. lambda = 1 skips truncation (w_mean is not touched).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mad_core.models.neural.training import NeuralModel
from mad_core.models.stylegan.networks import Discriminator, Generator, estimate_w_mean
from mad_core.samples import Samples


def truncation_psi(bias: float) -> float:
    """The truncation psi for sampling bias lambda in (0, 1]: psi = lambda."""
    if not 0 < bias <= 1:
        raise ValueError(f"sampling bias lambda must lie in (0, 1], got {bias}")
    return float(bias)


class StyleGAN2(NeuralModel):
    """StyleGAN2 with a residual discriminator and R1 (options: stylegan.OPTIONS)."""

    sampling_network = "generator"
    adam_betas = (0.0, 0.99)  # StyleGAN2's: no momentum, a short second-moment memory

    def __init__(self, *, latent_dim: int, w_dim: int, mapping_layers: int, mapping_lr_mul: float,
                 channels: int, channel_base: int, r1_gamma: float, r1_interval: int,
                 style_mixing: float, mbstd_group: int, truncation_samples: int,
                 pad_to: int | None, **training):
        super().__init__(**training)
        self.generator_options = {"latent_dim": latent_dim, "w_dim": w_dim,
                                  "mapping_layers": mapping_layers,
                                  "mapping_lr_mul": mapping_lr_mul,
                                  "channels": channels, "channel_base": channel_base}
        self.r1_gamma, self.r1_interval = r1_gamma, r1_interval
        self.style_mixing, self.mbstd_group = style_mixing, mbstd_group
        self.truncation_samples, self.pad_to = truncation_samples, pad_to
        self.latent_dim = latent_dim

    # -- shapes ------------------------------------------------------------------------
    def _size(self) -> int:
        _, height, width = self.sample_shape_
        return self.pad_to or max(height, width)

    def _padding(self) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) padding from the image size to the networks' size."""
        _, height, width = self.sample_shape_
        size = self._size()
        top, left = (size - height) // 2, (size - width) // 2
        return left, size - width - left, top, size - height - top

    def _to_model_scale(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x * 2 - 1, self._padding(), value=-1.0)

    # -- the NeuralModel hooks ---------------------------------------------------------
    def build_networks(self, generator: torch.Generator) -> dict[str, nn.Module]:
        channels = self.sample_shape_[0]
        options = self.generator_options
        return {
            "generator": Generator(image_size=self._size(), image_channels=channels,
                                   generator=generator, **options),
            "discriminator": Discriminator(image_size=self._size(), image_channels=channels,
                                           channels=options["channels"],
                                           channel_base=options["channel_base"],
                                           mbstd_group=self.mbstd_group, generator=generator)}

    def optimizer_groups(self) -> dict[str, tuple[str, ...]]:
        return {"generator": ("generator",), "discriminator": ("discriminator",)}

    def _training_ws(self, network: Generator, count: int,
                     generator: torch.Generator) -> torch.Tensor:
        """(count, num_ws, w_dim): one w per sample, or with probability style_mixing two,
        the second from a random layer cutoff in [1, num_ws) on."""
        z = torch.randn(count, self.latent_dim, generator=generator, device=self.device)
        ws = network.broadcast(network.mapping(z))
        if self.style_mixing > 0:
            other = torch.randn(count, self.latent_dim, generator=generator, device=self.device)
            mixed = torch.rand(count, generator=generator, device=self.device) < self.style_mixing
            cutoff = torch.randint(1, network.num_ws, (count,), generator=generator,
                                   device=self.device)
            cutoff = torch.where(mixed, cutoff, network.num_ws)
            layer = torch.arange(network.num_ws, device=self.device)
            ws = torch.where((layer[None] < cutoff[:, None])[:, :, None], ws,
                             network.broadcast(network.mapping(other)))
        return ws

    def _fakes(self, count: int, generator: torch.Generator) -> torch.Tensor:
        network = self.networks_["generator"]
        return network.synthesis(self._training_ws(network, count, generator), generator)

    def train_step(self, x, y, generator):
        discriminator = self.networks_["discriminator"]
        real = self._to_model_scale(x)
        count = len(real)

        # Generator: the discriminator's weights need no gradients here.
        discriminator.requires_grad_(False)
        with self.autocast():
            g_loss = F.softplus(-discriminator(self._fakes(count, generator))).mean()
        self.optimize("generator", g_loss)
        discriminator.requires_grad_(True)

        # Discriminator, with the lazy R1 penalty every r1_interval steps.
        self.step_ += 1
        regularise = self.r1_gamma > 0 and self.step_ % self.r1_interval == 0
        with torch.no_grad(), self.autocast():
            fakes = self._fakes(count, generator)
        with self.autocast():
            d_fake = discriminator(fakes)
        losses = {"g_loss": g_loss.detach()}
        if regularise:
            # In float32: the penalty is a gradient of a gradient, where bfloat16's 8-bit
            # mantissa would be too coarse.
            real = real.detach().requires_grad_(True)
            d_real = discriminator(real)
            (gradient,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            r1 = gradient.square().sum(dim=(1, 2, 3)).mean()
            penalty = (self.r1_gamma / 2) * self.r1_interval * r1
            losses["r1"] = r1.detach()
        else:
            with self.autocast():
                d_real = discriminator(real)
            penalty = 0.0
        d_loss = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
        self.optimize("discriminator", d_loss + penalty)
        losses["d_loss"] = d_loss.detach()
        return losses

    def generate(self, network, labels, count, bias, generator):
        psi = truncation_psi(bias)
        z = torch.randn(count, self.latent_dim, generator=generator, device=self.device)
        images = network(z, generator, psi=psi)
        _, height, width = self.sample_shape_
        left, _, top, _ = self._padding()
        return (images[:, :, top:top + height, left:left + width] + 1) / 2

    # -- w_mean: once per fit --------------------------------------------------------
    def fit(self, samples: Samples, rng: np.random.Generator,
            previous: "StyleGAN2 | None" = None) -> "StyleGAN2":
        """Train (see ``NeuralModel.fit``), then estimate w_mean from z drawn from `rng`."""
        self.step_ = 0  # lazy regularisation counts the steps of this fit
        super().fit(samples, rng, previous)
        seed = int(rng.integers(2**63 - 1))
        networks = [self.networks_["generator"]] + ([self.ema_] if self.ema_ is not None else [])
        for network in networks:
            # The same z for both copies: each gets the mean of its own mapping network.
            w_mean = estimate_w_mean(network, self.truncation_samples,
                                     torch.Generator().manual_seed(seed))
            network.w_mean.copy_(w_mean)
        return self
