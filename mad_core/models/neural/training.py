"""The one training loop of every neural model, and the sampling around it.

A neural model subclasses ``NeuralModel`` and supplies only:

- ``build_networks(generator)``: its networks, initialised from ``generator``;
- ``train_step(x, y, generator)``: one optimisation step on a batch (forward passes
  inside ``self.autocast()``, updates through ``self.optimize``);
- ``generate(network, labels, count, bias, generator)``: a batch of samples from the
  sampling network (its EMA copy when EMA is on), with ``bias`` (lambda) mapped onto the
  model's own knob and ``bias == 1`` the plain path.

Data scale: images (n, C, H, W) reach ``train_step`` in [0, 1] as the sources give them,
and samples are clipped to [0, 1]. Vectors (n, d) are standardised per coordinate with
the training set's mean and standard deviation (fixed at a from-scratch fit, carried by
warm starts and ``state_dict``), so a network sees unit-scale data whatever the source's
range (the 25-mode grid spans +-4, Rosenbrock's y tens); ``generate`` returns
standardised vectors and the base maps them back.

The base owns everything else: batches over the training set, Adam, epochs or steps,
gradient clipping, the EMA of the sampling network, bfloat16 autocast on CUDA, warm
starts, and ``torch.Generator``s derived from the ``numpy.random.Generator`` the loop
passes in (itself derived from the trial's SeedSequence key: seed, stream, generation,
chain), so nothing touches torch's global random state. State goes out and in as dicts
of tensors (``state_dict``), never as pickled modules.
"""

from __future__ import annotations

import contextlib
import copy
import math

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mad_core.models.base import NotFittedError
from mad_core.samples import Samples

_SEED_LIMIT = 2**63 - 1
_LOSS_SHOWN_EVERY = 50  # steps between progress-bar loss updates (each syncs a GPU)


def _cpu_copy(value):
    """`value` with every tensor copied to the CPU: a state that shares no storage with
    the live model (an optimizer's state_dict holds its live moment tensors)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _cpu_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(item) for item in value)
    return value


def _standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) that map vectors x (n, d) to zero mean and unit variance per
    coordinate; images (and constant coordinates) keep their scale."""
    if x.ndim != 2:
        shape = (1,) * (x.ndim - 1)
        return np.zeros(shape, np.float32), np.ones(shape, np.float32)
    scale = x.std(axis=0)
    return (x.mean(axis=0).astype(np.float32),
            np.where(scale > 0, scale, 1.0).astype(np.float32))


def _torch_generator(rng: np.random.Generator, device: torch.device) -> torch.Generator:
    """A torch generator on `device` seeded from the next draw of `rng`."""
    return torch.Generator(device=device).manual_seed(int(rng.integers(_SEED_LIMIT)))


class NeuralModel:
    """Base class of the neural models (see the module docstring).

    Args:
        device: where networks train and sample ("cpu", "cuda", "cuda:0"); a runtime
            argument, never a spec key.
        num_classes: classes of the real data's labels (conditional models need it).
        epochs, steps, batch_size, lr, ema_decay, grad_clip, mixed_precision,
        sample_batch_size: the shared training options (``neural.options``); a
            subclass takes its own options and passes these on.
    """

    supports_warm_start = True  # bertrand's loop fine-tunes the previous generation
    conditional = False  # trains on and samples labels
    sampling_network = "model"  # the network that generate() uses and EMA averages
    adam_betas = (0.9, 0.999)

    def __init__(self, *, device: str | torch.device = "cpu", num_classes: int | None = None,
                 epochs: int, steps: int | None, batch_size: int, lr: float, ema_decay: float,
                 grad_clip: float | None, mixed_precision: bool, sample_batch_size: int):
        self.device = torch.device(device)
        self.num_classes = num_classes
        self.epochs, self.steps, self.batch_size = epochs, steps, batch_size
        self.lr, self.ema_decay, self.grad_clip = lr, ema_decay, grad_clip
        self.mixed_precision = mixed_precision and self.device.type == "cuda"
        self.sample_batch_size = sample_batch_size
        if self.conditional and not num_classes:
            raise ValueError(f"{type(self).__name__} is class-conditional: give num_classes")

    # -- what a model supplies -------------------------------------------------------
    def build_networks(self, generator: torch.Generator) -> dict[str, nn.Module]:
        """Networks on the CPU, initialised from `generator` (``self.sample_shape_`` is set)."""
        raise NotImplementedError

    def optimizer_groups(self) -> dict[str, tuple[str, ...]]:
        """Optimizer name -> the networks it updates. One Adam over everything by default."""
        return {"model": tuple(self.networks_)}

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None,
                   generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One step on a batch x (B, *sample_shape) in network scale (see the module
        docstring), labels y (B,) or None;
        returns the losses (detached scalars)."""
        raise NotImplementedError

    def generate(self, network: nn.Module, labels: torch.Tensor | None, count: int,
                 bias: float, generator: torch.Generator) -> torch.Tensor:
        """`count` samples (count, *sample_shape) in network scale from `network`."""
        raise NotImplementedError

    # -- helpers for train_step ------------------------------------------------------
    def autocast(self):
        """bfloat16 autocast on CUDA when mixed_precision is on; else nothing."""
        if self.mixed_precision:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def optimize(self, optimizer: str, loss: torch.Tensor) -> None:
        """Backpropagate `loss` and take one step of the named optimizer (clipped)."""
        optim = self.optimizers_[optimizer]
        optim.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            parameters = [p for group in optim.param_groups for p in group["params"]]
            nn.utils.clip_grad_norm_(parameters, self.grad_clip)
        optim.step()

    # -- the loop --------------------------------------------------------------------
    def _setup(self, generator: torch.Generator) -> None:
        self.networks_ = {name: network.to(self.device)
                          for name, network in self.build_networks(generator).items()}
        self.optimizers_ = {
            name: torch.optim.Adam([p for n in nets for p in self.networks_[n].parameters()],
                                   lr=self.lr, betas=self.adam_betas)
            for name, nets in self.optimizer_groups().items()}
        self.ema_ = (copy.deepcopy(self.networks_[self.sampling_network]).requires_grad_(False)
                     if self.ema_decay > 0 else None)
        self.ema_updates_ = 0

    def _update_ema(self) -> None:
        # Warm-up (1 + t) / (10 + t): with a fixed decay the average of a short run would
        # still hold a large share of the random initial weights.
        self.ema_updates_ += 1
        decay = min(self.ema_decay, (1 + self.ema_updates_) / (10 + self.ema_updates_))
        source = self.networks_[self.sampling_network]
        with torch.no_grad():
            ema_params = list(self.ema_.parameters())
            torch._foreach_lerp_(ema_params, list(source.parameters()), 1 - decay)
            for ema_buffer, buffer in zip(self.ema_.buffers(), source.buffers()):
                ema_buffer.copy_(buffer)

    def total_steps(self, n: int) -> int:
        """Optimizer steps of one fit on n samples: ``steps``, else epochs of batches."""
        return self.steps or self.epochs * math.ceil(n / self.batch_size)

    def fit(self, samples: Samples, rng: np.random.Generator,
            previous: "NeuralModel | None" = None) -> "NeuralModel":
        """Train on samples.x (n, *sample_shape) (and labels samples.y for a
        conditional model): from scratch, or from ``previous``'s weights, optimizer and
        EMA state (a warm start)."""
        if self.conditional and samples.y is None:
            raise ValueError(f"{type(self).__name__} is class-conditional but the training "
                             f"set has no labels")
        self.sample_shape_ = tuple(samples.x.shape[1:])
        if previous is None:
            self.data_shift_, self.data_scale_ = _standardisation(samples.x)
        init_generator = _torch_generator(rng, torch.device("cpu"))
        order_generator = _torch_generator(rng, torch.device("cpu"))
        noise_generator = _torch_generator(rng, self.device)
        self._setup(init_generator)
        if previous is not None:
            self.load_state_dict(previous.state_dict())
        x = torch.from_numpy(self._to_network_scale(samples.x)).to(self.device)
        y = (torch.from_numpy(samples.y.astype(np.int64)).to(self.device)
             if self.conditional else None)
        for network in self.networks_.values():
            network.train()
        total = remaining = self.total_steps(len(x))
        losses = {}
        # Shown on a terminal only (disable=None): a generation can take minutes.
        with tqdm(total=total, desc=f"training {type(self).__name__}", unit="step",
                  leave=False, disable=None) as bar:
            while remaining > 0:
                order = torch.randperm(len(x), generator=order_generator).to(self.device)
                for batch in order.split(self.batch_size)[:remaining]:
                    losses = self.train_step(x[batch], None if y is None else y[batch],
                                             noise_generator)
                    if self.ema_ is not None:
                        self._update_ema()
                    remaining -= 1
                    bar.update()
                    if (total - remaining) % _LOSS_SHOWN_EVERY == 0:
                        bar.set_postfix({k: f"{float(v):.4f}" for k, v in losses.items()})
        self.final_losses_ = {name: float(value) for name, value in losses.items()}
        self.n_fit_ = len(x)
        return self

    # -- sampling --------------------------------------------------------------------
    def sample(self, n: int, bias: float, rng: np.random.Generator,
               labels: np.ndarray | None = None) -> Samples:
        """n samples (n, *sample_shape), float32 in the data's scale (images in [0, 1]),
        with sampling bias `bias`.

        A conditional model draws labels uniformly over its classes from `rng` unless
        `labels` (n,) are given (a sample grid fixes them).
        """
        if not hasattr(self, "networks_"):
            raise NotFittedError(f"{type(self).__name__}.sample called before fit")
        if self.conditional and labels is None:
            labels = rng.integers(self.num_classes, size=n)
        generator = _torch_generator(rng, self.device)
        network = self.ema_ if self.ema_ is not None else self.networks_[self.sampling_network]
        network.eval()
        chunks = []
        starts = range(0, n, self.sample_batch_size)
        with torch.inference_mode(), self.autocast():
            for start in tqdm(starts, desc=f"sampling {n}", unit="batch", leave=False,
                              disable=None if len(starts) > 1 else True):
                count = min(self.sample_batch_size, n - start)
                batch_labels = (None if labels is None else
                                torch.as_tensor(labels[start:start + count], dtype=torch.int64,
                                                device=self.device))
                chunk = self.generate(network, batch_labels, count, bias, generator)
                chunks.append(chunk.float().cpu())
        x = torch.cat(chunks).numpy() if chunks else np.empty((0, *self.sample_shape_), np.float32)
        return Samples(self._to_data_scale(x),
                       None if labels is None else np.asarray(labels, dtype=np.int64))

    def _to_network_scale(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((x - self.data_shift_) / self.data_scale_, dtype=np.float32)

    def _to_data_scale(self, x: np.ndarray) -> np.ndarray:
        """Generated batches back to the data's scale: vectors unstandardised, images
        clipped to [0, 1]."""
        if x.ndim == 2:
            return (x * self.data_scale_ + self.data_shift_).astype(np.float32)
        return np.clip(x, 0.0, 1.0)

    # -- state -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Weights as tensors: networks, EMA and the optimizer states a warm start
        continues from (callers that only sample drop "optimizers"). Tensors are copied
        to the CPU."""
        if not hasattr(self, "networks_"):
            raise NotFittedError(f"{type(self).__name__}.state_dict called before fit")

        return _cpu_copy({
            "sample_shape": list(self.sample_shape_), "n_fit": self.n_fit_,
            "data_shift": torch.from_numpy(self.data_shift_),
            "data_scale": torch.from_numpy(self.data_scale_),
            "networks": {name: net.state_dict() for name, net in self.networks_.items()},
            "ema": None if self.ema_ is None else self.ema_.state_dict(),
            "ema_updates": self.ema_updates_,
            "optimizers": {name: optim.state_dict() for name, optim in self.optimizers_.items()}})

    def load_state_dict(self, state: dict) -> "NeuralModel":
        """Restore a ``state_dict``; builds the networks first when the model is new."""
        if not hasattr(self, "networks_"):
            self.sample_shape_ = tuple(int(s) for s in state["sample_shape"])
            self._setup(torch.Generator().manual_seed(0))  # every weight is overwritten below
        for name, network in self.networks_.items():
            network.load_state_dict(state["networks"][name])
        if self.ema_ is not None and state["ema"] is not None:
            self.ema_.load_state_dict(state["ema"])
        self.ema_updates_ = int(state["ema_updates"])
        for name, optim_state in state.get("optimizers", {}).items():
            self.optimizers_[name].load_state_dict(optim_state)
        self.n_fit_ = int(state["n_fit"])
        self.data_shift_ = state["data_shift"].numpy()
        self.data_scale_ = state["data_scale"].numpy()
        return self
