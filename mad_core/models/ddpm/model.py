"""MAD's class-conditional DDPM with classifier-free guidance, on the shared training loop.

Images in [0, 1] are mapped to [-1, 1] and, with ``pad_to``, zero-padded (black) to the
UNet's size; samples are cropped back. Training draws, per step, timesteps, noise and
the label dropout that trains the unconditional model (the null label) at once.
Sampling bias lambda is the guidance weight w = 1 / lambda - 1: lambda = 1 is w = 0,
one network call per step and no unconditional pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mad_core.models.ddpm.diffusion import (NoiseSchedule, diffusion_loss, guided_noise,
                                            sample_ancestral, sample_ddim)
from mad_core.models.ddpm.unet import build_unet
from mad_core.models.neural.training import NeuralModel


def guidance_weight(bias: float) -> float:
    """Classifier-free guidance weight w for sampling bias lambda in (0, 1]: 1/lambda - 1."""
    if not 0 < bias <= 1:
        raise ValueError(f"sampling bias lambda must lie in (0, 1], got {bias}")
    return 1.0 / bias - 1.0


class ClassConditionalDDPM(NeuralModel):
    """Epsilon-prediction DDPM on a UNet, conditioned on class labels (options: ddpm.OPTIONS)."""

    conditional = True

    def __init__(self, *, timesteps: int, beta_start: float, beta_end: float, base_channels: int,
                 channel_multipliers: list[int], res_blocks: int, attention_resolutions: list[int],
                 dropout: float, label_dropout: float, sampler: str, sampler_steps: int | None,
                 pad_to: int | None, **training):
        super().__init__(**training)
        self.schedule = NoiseSchedule.linear(timesteps, beta_start, beta_end)
        self.unet_options = {"base_channels": base_channels,
                             "channel_multipliers": tuple(channel_multipliers),
                             "res_blocks": res_blocks,
                             "attention_resolutions": tuple(attention_resolutions),
                             "dropout": dropout}
        self.label_dropout, self.sampler, self.sampler_steps = label_dropout, sampler, sampler_steps
        self.pad_to = pad_to

    @property
    def null_label(self) -> int:
        return self.num_classes  # the UNet's extra class embedding

    def _padding(self) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) zero padding from the image size to pad_to."""
        _, height, width = self.sample_shape_
        size = self.pad_to or max(height, width)
        top, left = (size - height) // 2, (size - width) // 2
        return left, size - width - left, top, size - height - top

    def build_networks(self, generator: torch.Generator) -> dict[str, nn.Module]:
        channels, height, width = self.sample_shape_
        size = self.pad_to or max(height, width)
        return {"model": build_unet(generator=generator, image_channels=channels, image_size=size,
                                    num_classes=self.num_classes, **self.unet_options)}

    def _to_model_scale(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x * 2 - 1, self._padding(), value=-1.0)

    def train_step(self, x, y, generator):
        with self.autocast():
            loss = diffusion_loss(self.networks_["model"], self.schedule, self._to_model_scale(x),
                                  y, label_dropout=self.label_dropout,
                                  null_label=self.null_label, generator=generator)
        self.optimize("model", loss)
        return {"loss": loss.detach()}

    def generate(self, network, labels, count, bias, generator):
        channels, height, width = self.sample_shape_
        left, _, top, _ = self._padding()
        size = self.pad_to or max(height, width)
        common = {"guidance": guidance_weight(bias), "null_label": self.null_label,
                  "generator": generator, "device": self.device}
        shape = (count, channels, size, size)
        if self.sampler == "ddim":
            x = sample_ddim(network, self.schedule, shape, labels, steps=self.sampler_steps, **common)
        else:
            x = sample_ancestral(network, self.schedule, shape, labels, **common)
        return (x[:, :, top:top + height, left:left + width] + 1) / 2
