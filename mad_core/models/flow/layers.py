"""A Glow-style normalizing flow on vectors, in plain torch.

``Flow`` maps data x (n, d) to latents z = f(x) and returns log |det df/dx| per sample.
Each of its steps is, as in Glow (Kingma and Dhariwal, 2018):

- ``ActNorm``: a per-coordinate affine map whose shift and log-scale start from the
  first batch it sees (zero mean, unit variance per coordinate), then train freely;
- ``InvertibleLinear``: Glow's invertible 1x1 convolution, which for vectors is a d x d
  matrix W = P L (U + diag(sign * exp(log_s))), LU-parametrised so that
  log |det W| = sum(log_s) costs O(d); P and the signs are fixed at initialisation from
  a random rotation;
- ``AffineCoupling``: RealNVP's coupling. One half of the coordinates passes through and
  conditions an MLP that gives a shift t and a log-scale s of the other half,
  y = x * exp(s) + t; the halves alternate from step to step. The log-scale is soft
  clamped, s = c tanh(raw / c), and the MLP's last layer starts at zero, so every
  coupling starts as the identity.

Every random weight is drawn from the ``torch.Generator`` given to the constructor. The
mixing and the affine arithmetic run in float32 even under autocast: rounding the
activations of each of the stacked steps to bfloat16 would cost the inverse its accuracy.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

# Bound of every coupling's log-scale: one coupling scales a coordinate by e^-2 .. e^2
# at most, eight of them by e^16, plenty for unit-scale data and no overflow at any z.
SCALE_CLAMP = 2.0
_LOG_2PI = math.log(2 * math.pi)


def _full(x: torch.Tensor) -> torch.Tensor:
    """x in float32 when autocast made it lower precision; float32 and float64 stay."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _float32(x: torch.Tensor):
    """A context with autocast off on x's device (the exact-arithmetic parts of a step)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(device_type=x.device.type, enabled=False)
    return contextlib.nullcontext()


class ActNorm(nn.Module):
    """y = (x + shift) * exp(log_scale), per coordinate; data-dependent initialisation.

    The first ``forward`` call on an uninitialised layer sets shift and log-scale so
    that its batch leaves with zero mean and unit variance per coordinate (a coordinate
    constant over the batch keeps scale 1). ``initialized`` is a buffer, so a
    ``state_dict`` round trip, and therefore a warm start, carries it: a trained layer
    is never re-initialised.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))
        self._known_initialized = False  # a host-side copy: no GPU sync per forward

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._known_initialized = False  # re-read the loaded buffer on the next forward

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        x = _full(x)
        std = x.std(dim=0, unbiased=False)
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        self.shift.copy_(-x.mean(dim=0))
        self.log_scale.copy_(-std.log())
        self.initialized.fill_(True)
        self._known_initialized = True

    def is_initialized(self) -> bool:
        if not self._known_initialized:
            self._known_initialized = bool(self.initialized)
        return self._known_initialized

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized():
            self.initialize(x)
        with _float32(x):
            y = (_full(x) + self.shift) * self.log_scale.exp()
        return y, self.log_scale.sum().expand(len(x))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        if not self.is_initialized():
            raise RuntimeError("ActNorm.inverse before the layer saw data")
        with _float32(y):
            return _full(y) * (-self.log_scale).exp() - self.shift


class InvertibleLinear(nn.Module):
    """y = x W^T with W = P L (U + diag(sign * exp(log_s))): Glow's LU-parametrised
    invertible 1x1 convolution for vectors. Starts as a random rotation drawn from
    ``generator`` (P and the signs then stay fixed)."""

    def __init__(self, dim: int, generator: torch.Generator):
        super().__init__()
        gaussian = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
        rotation, _ = torch.linalg.qr(gaussian)
        permutation, lower, upper = torch.linalg.lu(rotation)
        diagonal = upper.diagonal()
        self.register_buffer("permutation", permutation.float())
        self.register_buffer("sign", diagonal.sign().float())
        self.lower = nn.Parameter(lower.tril(-1).float())
        self.upper = nn.Parameter(upper.triu(1).float())
        self.log_s = nn.Parameter(diagonal.abs().log().float())

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        eye = torch.eye(len(self.log_s), device=self.log_s.device)
        lower = self.lower.tril(-1) + eye
        upper = self.upper.triu(1) + torch.diag(self.sign * self.log_s.exp())
        return lower, upper

    def weight(self) -> torch.Tensor:
        lower, upper = self._factors()
        return self.permutation @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with _float32(x):
            y = _full(x) @ self.weight().T
        return y, self.log_s.sum().expand(len(x))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        # x W^T = y  <=>  (x U^T) L^T = y P: two triangular solves from the right.
        lower, upper = self._factors()
        with _float32(y):
            a = torch.linalg.solve_triangular(lower.T, _full(y) @ self.permutation, upper=True,
                                              left=False, unitriangular=True)
            return torch.linalg.solve_triangular(upper.T, a, upper=False, left=False)


def _conditioner(inputs: int, outputs: int, hidden: int, hidden_layers: int,
                 generator: torch.Generator) -> nn.Sequential:
    """An MLP with torch's default initialisation drawn from `generator`, except its
    last layer, which starts at zero (the coupling starts as the identity)."""
    widths = [inputs] + [hidden] * hidden_layers
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths, widths[1:]):
        linear = nn.Linear(fan_in, fan_out)
        nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(linear.bias, -bound, bound, generator=generator)
        layers += [linear, nn.ReLU()]
    last = nn.Linear(widths[-1], 2 * outputs)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class AffineCoupling(nn.Module):
    """RealNVP's affine coupling: one half of the coordinates (the first d // 2, or with
    ``flip`` the rest) passes through and conditions the shift and soft-clamped
    log-scale of the other half."""

    def __init__(self, dim: int, flip: bool, hidden: int, hidden_layers: int,
                 generator: torch.Generator):
        super().__init__()
        self.split, self.flip = dim // 2, flip
        passive = dim - self.split if flip else self.split
        self.net = _conditioner(passive, dim - passive, hidden, hidden_layers, generator)

    def _halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(passive, active) halves of x."""
        first, second = x[:, :self.split], x[:, self.split:]
        return (second, first) if self.flip else (first, second)

    def _join(self, passive: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        return torch.cat((active, passive) if self.flip else (passive, active), dim=1)

    def _shift_and_log_scale(self, passive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, raw = _full(self.net(passive)).chunk(2, dim=1)
        return shift, SCALE_CLAMP * torch.tanh(raw / SCALE_CLAMP)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        passive, active = self._halves(_full(x))
        shift, log_scale = self._shift_and_log_scale(passive)
        return self._join(passive, active * log_scale.exp() + shift), log_scale.sum(dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        passive, active = self._halves(_full(y))
        shift, log_scale = self._shift_and_log_scale(passive)
        return self._join(passive, (active - shift) * (-log_scale).exp())


class Flow(nn.Module):
    """f = step_K o ... o step_1, each step ActNorm, InvertibleLinear, AffineCoupling
    (see the module docstring); the base distribution is N(0, I_d).

    Args:
        dim: data dimension d >= 2 (a coupling needs two halves).
        coupling_layers: steps K.
        hidden, hidden_layers: width and depth of each coupling's MLP.
        generator: the source of every random initial weight.
    """

    def __init__(self, dim: int, *, coupling_layers: int, hidden: int, hidden_layers: int,
                 generator: torch.Generator):
        super().__init__()
        if dim < 2:
            raise ValueError(f"a coupling flow needs d >= 2 coordinates to split, got d = {dim}")
        self.dim = dim
        steps: list[nn.Module] = []
        for k in range(coupling_layers):
            steps += [ActNorm(dim), InvertibleLinear(dim, generator),
                      AffineCoupling(dim, k % 2 == 1, hidden, hidden_layers, generator)]
        self.steps = nn.ModuleList(steps)

    def is_initialized(self) -> bool:
        """Whether the ActNorms have seen data (their first forward)."""
        return all(step.is_initialized() for step in self.steps if isinstance(step, ActNorm))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z = f(x) (n, d) and log |det df/dx| (n,); an uninitialised ActNorm first
        initialises on x."""
        log_det = torch.zeros(len(x), device=x.device)
        for step in self.steps:
            x, step_log_det = step(x)
            log_det = log_det + step_log_det
        return x, log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """x = f^-1(z)."""
        for step in reversed(self.steps):
            z = step.inverse(z)
        return z

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) (n,) under the flow: log N(f(x); 0, I) + log |det df/dx|."""
        z, log_det = self(x)
        return -0.5 * (z.square().sum(dim=1) + self.dim * _LOG_2PI) + log_det
