"""MAD's GLOW on vectors: a normalizing flow trained by maximum likelihood on the shared
training loop.

Training minimises the negative log-likelihood ("nll", nats per sample) of the
standardised data under the flow with a N(0, I) base. Every ActNorm initialises on the
first batch of a from-scratch fit (that batch is drawn from the loop's generators, so it
is deterministic); a warm start loads initialised layers and keeps them.
Sampling bias lambda is the base's variance: z ~ N(0, lambda I) (temperature
sqrt(lambda)), x = f^-1(z); lambda = 1 draws z ~ N(0, I) with no scaling at all.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mad_core.models.flow.layers import Flow
from mad_core.models.neural.training import NeuralModel


def temperature(bias: float) -> float:
    """Standard deviation of the latent for sampling bias lambda in (0, 1]: sqrt(lambda)."""
    if not 0 < bias <= 1:
        raise ValueError(f"sampling bias lambda must lie in (0, 1], got {bias}")
    return math.sqrt(bias)


class NormalizingFlow(NeuralModel):
    """A Glow-style flow on vectors (options: flow.OPTIONS; layers: flow.layers)."""

    def __init__(self, *, coupling_layers: int, hidden: int, hidden_layers: int, **training):
        super().__init__(**training)
        self.flow_options = {"coupling_layers": coupling_layers, "hidden": hidden,
                             "hidden_layers": hidden_layers}

    def build_networks(self, generator: torch.Generator) -> dict[str, nn.Module]:
        if len(self.sample_shape_) != 1:
            raise ValueError(f"NormalizingFlow trains on vectors (n, d), got samples of shape "
                             f"{self.sample_shape_}")
        return {"model": Flow(self.sample_shape_[0], generator=generator, **self.flow_options)}

    def train_step(self, x, y, generator):
        flow = self.networks_["model"]
        fresh = self.ema_ is not None and not flow.is_initialized()
        with self.autocast():
            loss = -flow.log_prob(x).mean()
        if fresh:  # the EMA copy starts from the data-initialised ActNorms, not from 0 and 1
            self.ema_.load_state_dict(flow.state_dict())
        self.optimize("model", loss)
        return {"nll": loss.detach()}

    def generate(self, network, labels, count, bias, generator):
        scale = temperature(bias)
        z = torch.randn(count, self.sample_shape_[0], generator=generator, device=self.device)
        if bias != 1:
            z = z * scale
        return network.inverse(z)
