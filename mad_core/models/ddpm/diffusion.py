"""Epsilon-prediction DDPM with classifier-free guidance: noise schedule, loss and samplers.

Forward process (Ho et al. 2020): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps with
abar_t = prod_{s <= t} (1 - beta_s), t = 0 .. T-1. The network is trained to predict
eps, with labels replaced by the null label at rate ``label_dropout`` so that one
network gives both the conditional and the unconditional prediction. Guided sampling
uses (1 + w) eps(x, y) - w eps(x, null) (Ho & Salimans 2022).

Every random draw comes from an explicit ``torch.Generator`` living on the device of
the computation; the global RNG is never used. The schedule is kept in float64 on the
CPU; per-step coefficients are computed there and applied to float32 tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensor fields with == has no single truth value
class NoiseSchedule:
    """The variances beta_t of the forward process, (T,) float64 on the CPU."""

    betas: Tensor

    def __post_init__(self) -> None:
        betas = self.betas
        if betas.ndim != 1 or len(betas) == 0:
            raise ValueError(f"betas must be a non-empty 1-d tensor, got shape {tuple(betas.shape)}")
        if betas.dtype != torch.float64 or betas.device.type != "cpu":
            raise ValueError(f"betas must be float64 on the CPU, got {betas.dtype} on {betas.device}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("every beta_t must lie in (0, 1)")

    @classmethod
    def linear(cls, steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
        """beta_t linear from ``beta_start`` to ``beta_end`` over ``steps`` steps (Ho et al. 2020)."""
        if steps < 1:
            raise ValueError(f"steps={steps} must be at least 1")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        return cls(torch.linspace(beta_start, beta_end, steps, dtype=torch.float64))

    @property
    def steps(self) -> int:
        """T, the number of diffusion steps."""
        return len(self.betas)

    @property
    def alphas(self) -> Tensor:
        """alpha_t = 1 - beta_t, (T,) float64."""
        return 1 - self.betas

    @property
    def alphas_cumprod(self) -> Tensor:
        """abar_t = prod_{s <= t} alpha_s, (T,) float64, decreasing."""
        return torch.cumprod(self.alphas, dim=0)

    @property
    def posterior_variance(self) -> Tensor:
        """beta_tilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t) with abar_{-1} = 1, (T,) float64.

        The variance of q(x_{t-1} | x_t, x_0); zero at t = 0.
        """
        abar = self.alphas_cumprod
        abar_previous = torch.cat([abar.new_ones(1), abar[:-1]])
        return self.betas * (1 - abar_previous) / (1 - abar)


def diffusion_loss(network: nn.Module, schedule: NoiseSchedule, x0: Tensor, labels: Tensor, *,
                   label_dropout: float, null_label: int, generator: torch.Generator) -> Tensor:
    """Mean squared error of the noise prediction, a scalar.

    Draws, in this order and all from ``generator`` (which must live on x0's device):
    t uniform in [0, T), the noise, and the label dropout (each label replaced by
    ``null_label`` with probability ``label_dropout``).

    Args:
        network: maps (x_t (B, C, H, W), t (B,) int64, labels (B,) int64) to (B, C, H, W).
        x0: (B, C, H, W) clean data in the data scale [-1, 1].
        labels: (B,) int64 class labels.
    """
    if not 0.0 <= label_dropout <= 1.0:
        raise ValueError(f"label_dropout={label_dropout} must lie in [0, 1]")
    batch, device = x0.shape[0], x0.device
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
    labels = labels.to(device)
    t = torch.randint(0, schedule.steps, (batch,), generator=generator, device=device)
    noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
    dropped = torch.rand(batch, generator=generator, device=device) < label_dropout
    labels = torch.where(dropped, torch.full_like(labels, null_label), labels)
    # Square roots in float64: 1 - abar_0 = 1e-4 would lose three digits in float32.
    abar = schedule.alphas_cumprod
    signal = abar.sqrt().to(device, x0.dtype)[t].view(batch, *[1] * (x0.ndim - 1))
    noise_scale = (1 - abar).sqrt().to(device, x0.dtype)[t].view(batch, *[1] * (x0.ndim - 1))
    prediction = network(signal * x0 + noise_scale * noise, t, labels)
    return F.mse_loss(prediction, noise)


def guided_noise(network: nn.Module, x: Tensor, t: Tensor, labels: Tensor, *, guidance: float,
                 null_label: int) -> Tensor:
    """Classifier-free guided noise prediction, (B, C, H, W).

    guidance w = 0 is the plain conditional prediction eps(x, t, y), one network call;
    w > 0 gives (1 + w) eps(x, t, y) - w eps(x, t, null) from one call on a batch of 2B.

    Args:
        x: (B, C, H, W) noisy images; t: (B,) int64 timesteps; labels: (B,) int64.
    """
    if not (math.isfinite(guidance) and guidance >= 0):
        raise ValueError(f"guidance={guidance} must be a finite w >= 0 (w = 1/lambda - 1, 0 < lambda <= 1)")
    if guidance == 0:
        return network(x, t, labels)
    both = network(torch.cat([x, x]), torch.cat([t, t]),
                   torch.cat([labels, torch.full_like(labels, null_label)]))
    conditional, unconditional = both.chunk(2)
    return (1 + guidance) * conditional - guidance * unconditional


@contextmanager
def _evaluation_mode(network: nn.Module) -> Iterator[None]:
    """Dropout off while sampling; the caller's training mode comes back afterwards."""
    was_training = network.training
    network.eval()
    try:
        yield
    finally:
        network.train(was_training)


def _check_labels(labels: Tensor, shape: Sequence[int]) -> None:
    if labels.shape != (shape[0],):
        raise ValueError(f"labels must have shape ({shape[0]},) for samples of shape {tuple(shape)}, "
                         f"got {tuple(labels.shape)}")


@torch.no_grad()
def sample_ancestral(network: nn.Module, schedule: NoiseSchedule, shape: Sequence[int], labels: Tensor, *,
                     guidance: float, null_label: int, generator: torch.Generator,
                     device: torch.device | str) -> Tensor:
    """DDPM ancestral sampling over all T steps (Ho et al. 2020, Algorithm 2), (B, C, H, W) float32.

    x_T ~ N(0, I); for t = T-1 .. 0,
    x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t) + sqrt(beta_tilde_t) z,
    with the posterior variance beta_tilde_t and no noise at the last step. Nothing is
    clipped, so the result is in the data scale [-1, 1] only as far as the model is;
    the caller maps it to [0, 1]. x_T and every z come from ``generator`` (on ``device``).

    Args:
        shape: (B, C, H, W) of the samples.
        labels: (B,) int64 class labels (``null_label`` for unconditional samples).
        guidance: classifier-free guidance weight w >= 0.
    """
    _check_labels(labels, shape)
    labels = labels.to(device)
    betas = schedule.betas.tolist()
    # Per-step scalars in float64 on the CPU: no device round trips inside the loop.
    mean_scale = (1 / schedule.alphas.sqrt()).tolist()
    noise_coefficient = (schedule.betas / (1 - schedule.alphas_cumprod).sqrt()).tolist()
    noise_std = schedule.posterior_variance.sqrt().tolist()
    x = torch.randn(tuple(shape), generator=generator, device=device)
    with _evaluation_mode(network):
        for step in reversed(range(len(betas))):
            t = torch.full((shape[0],), step, dtype=torch.int64, device=device)
            eps = guided_noise(network, x, t, labels, guidance=guidance, null_label=null_label)
            x = mean_scale[step] * (x - noise_coefficient[step] * eps)
            if step > 0:
                x = x + noise_std[step] * torch.randn(x.shape, generator=generator, device=device)
    return x


def ddim_timesteps(total_steps: int, steps: int) -> list[int]:
    """``steps`` timesteps evenly spaced from T-1 down to 0 (down to T-1 alone for one step).

    Starting at T-1 rather than at a multiple of T/steps matters: x_T ~ N(0, I) is
    only approximately the marginal at T-1 (abar_{T-1} = 0.0064 for the T = 500 linear
    schedule) and worse at earlier steps.
    """
    if not 1 <= steps <= total_steps:
        raise ValueError(f"steps={steps} must lie in [1, T={total_steps}]")
    # floor(x + 1/2) rather than round(): rounding half to even could repeat a step.
    return torch.floor(torch.linspace(total_steps - 1, 0, steps, dtype=torch.float64) + 0.5).long().tolist()


@torch.no_grad()
def sample_ddim(network: nn.Module, schedule: NoiseSchedule, shape: Sequence[int], labels: Tensor, *,
                steps: int, guidance: float, null_label: int, generator: torch.Generator,
                device: torch.device | str, eta: float = 0.0) -> Tensor:
    """DDIM sampling (Song et al. 2021, eq. 12) over ``steps`` timesteps, (B, C, H, W) float32.

    From t to the next timestep s (abar_s = 1 after the last):
    x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),
    x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps + sigma z,
    sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s).
    eta = 0 is deterministic given x_T; eta = 1 with steps = T is ancestral sampling and
    draws the same numbers from ``generator`` as ``sample_ancestral``. Nothing is clipped.

    Args:
        shape: (B, C, H, W) of the samples.
        labels: (B,) int64 class labels (``null_label`` for unconditional samples).
        steps: number of network evaluations (each of batch 2B when guidance > 0).
        guidance: classifier-free guidance weight w >= 0.
        eta: 0 for DDIM, 1 for DDPM-like posterior noise.
    """
    if eta < 0:
        raise ValueError(f"eta={eta} must be >= 0")
    _check_labels(labels, shape)
    labels = labels.to(device)
    timesteps = ddim_timesteps(schedule.steps, steps)
    abar = schedule.alphas_cumprod.tolist()
    x = torch.randn(tuple(shape), generator=generator, device=device)
    with _evaluation_mode(network):
        for index, step in enumerate(timesteps):
            abar_t = abar[step]
            last = index == len(timesteps) - 1
            abar_next = 1.0 if last else abar[timesteps[index + 1]]
            t = torch.full((shape[0],), step, dtype=torch.int64, device=device)
            eps = guided_noise(network, x, t, labels, guidance=guidance, null_label=null_label)
            x0_hat = (x - math.sqrt(1 - abar_t) * eps) / math.sqrt(abar_t)
            sigma = eta * math.sqrt((1 - abar_next) / (1 - abar_t) * (1 - abar_t / abar_next))
            x = math.sqrt(abar_next) * x0_hat + math.sqrt(max(1 - abar_next - sigma ** 2, 0.0)) * eps
            if sigma > 0:
                x = x + sigma * torch.randn(x.shape, generator=generator, device=device)
    return x
