"""Real data: the distributions P_r a loop starts from, and finite datasets.

Every source draws arrays of shape (n, *sample_shape). Infinite sources (the
Gaussian, the 25-mode grid, Rosenbrock) draw with an explicit
``numpy.random.Generator``; a ``FiniteDataset`` hands out fixed subsets and
fresh draws without replacement through a ``RealStream``.
"""

from __future__ import annotations

import numpy as np

from mad_core.samples import Samples
from mad_core.seeding import Stream, generator


class GaussianSource:
    """Isotropic Gaussian N(mean * 1, var * I_dim); MAD's P_r is N(0, I_100)."""

    name = "gaussian"

    def __init__(self, *, dim: int, mean: float = 0.0, var: float = 1.0):
        self.dim = dim
        self.mean = np.full(dim, float(mean))
        self.cov = float(var) * np.eye(dim)
        self._std = float(np.sqrt(var))

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n i.i.d. samples, shape (n, dim)."""
        return self.mean + self._std * rng.standard_normal((n, self.dim))


class GaussianGridMixture:
    """The 2-D grid of Gaussian modes used for GAN mode collapse (25 modes by default).

    Modes sit at spacing * {-(m-1)/2, ..., (m-1)/2}^2 with equal weights and
    isotropic standard deviation ``std``.
    """

    name = "gmm_grid"

    def __init__(self, *, modes_per_side: int = 5, spacing: float = 2.0, std: float = 0.05):
        offsets = spacing * (np.arange(modes_per_side) - (modes_per_side - 1) / 2)
        grid_x, grid_y = np.meshgrid(offsets, offsets, indexing="ij")
        self.modes = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
        self.std = float(std)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (2,)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n samples, shape (n, 2)."""
        which = rng.integers(len(self.modes), size=n)
        return self.modes[which] + self.std * rng.standard_normal((n, 2))


class Rosenbrock:
    """2-D Rosenbrock ("banana") density p(x, y) ∝ exp(-((1 - x)^2 + 100 (y - x^2)^2) / 20).

    Sampled exactly: x ~ N(1, 10), then y | x ~ N(x^2, 0.1).
    """

    name = "rosenbrock"

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (2,)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n samples, shape (n, 2)."""
        x = 1.0 + np.sqrt(10.0) * rng.standard_normal(n)
        y = x**2 + np.sqrt(0.1) * rng.standard_normal(n)
        return np.stack([x, y], axis=1)


class DatasetExhaustedError(RuntimeError):
    """A finite dataset has no unseen samples left for a fresh draw."""


class FiniteDataset:
    """A finite set of real samples (and optional labels).

    Args:
        samples: array (N, *sample_shape).
        labels: optional array (N,) of integer class labels.
        name: shown in messages.
        reshuffle: when a fresh draw runs past the end, start a new pass over a
            new permutation instead of raising ``DatasetExhaustedError``.
    """

    def __init__(self, samples: np.ndarray, labels: np.ndarray | None = None, *,
                 name: str = "dataset", reshuffle: bool = False):
        if labels is not None and len(labels) != len(samples):
            raise ValueError(f"{name}: {len(labels)} labels for {len(samples)} samples")
        self.samples = samples
        self.labels = labels
        self.name = name
        self.reshuffle = reshuffle

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.samples.shape[1:])

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n samples chosen without replacement (a random subset), shape (n, *sample_shape)."""
        if n > len(self):
            raise DatasetExhaustedError(f"{self.name}: asked for {n} samples, it holds {len(self)}")
        return self.samples[rng.choice(len(self), size=n, replace=False)]


class RealStream:
    """The real data one chain of a loop sees: an initial set, then fresh draws, as
    ``Samples`` (with the dataset's labels where it has them).

    The initial set (size ``n_initial``) is fixed for the whole run: G1 trains on
    its first n_init samples and the synthetic augmentation loop reuses its first
    n_real. Fresh draws never repeat a sample of a finite dataset (nor the initial
    set) until it runs out. The only mutable state is a cursor, so a stream
    rebuilt from the same seed and ``load_state_dict`` continues exactly.

    Args:
        source: an infinite source (with ``draw``) or a ``FiniteDataset``.
        n_initial: size of the fixed initial set.
        seed: the trial seed.
        key: integers that make this stream's generators distinct from other
            streams of the same seed (e.g. the chain index).
    """

    def __init__(self, source, n_initial: int, seed: int, key: tuple[int, ...] = ()):
        self.source = source
        self._seed, self._key = seed, key
        self._finite = isinstance(source, FiniteDataset)
        self.cursor = 0  # samples handed out so far, the initial set included
        if self._finite:
            self._epoch = 0
            self._order = self._permutation(0)
            self.initial = self._subset(self._take_indices(n_initial))
        else:
            self.initial = Samples(source.draw(n_initial, self._rng(0)))
            self.cursor = n_initial

    def _subset(self, indices: np.ndarray) -> Samples:
        labels = self.source.labels
        return Samples(self.source.samples[indices], None if labels is None else labels[indices])

    def _rng(self, draw_key: int) -> np.random.Generator:
        return generator(self._seed, Stream.REAL, *self._key, draw_key)

    def _permutation(self, epoch: int) -> np.ndarray:
        return self._rng(epoch).permutation(len(self.source))

    def _take_indices(self, n: int) -> np.ndarray:
        size = len(self.source)
        taken = []
        while n > 0:
            epoch, offset = divmod(self.cursor, size)
            if epoch > 0 and not self.source.reshuffle:
                raise DatasetExhaustedError(
                    f"{self.source.name}: all {size} samples have been used "
                    f"({self.cursor} drawn); give a larger dataset, fewer generations or "
                    f"smaller n_real, or set data.reshuffle: true to start a new pass")
            if epoch != self._epoch:
                self._epoch, self._order = epoch, self._permutation(epoch)
            chunk = min(n, size - offset)
            taken.append(self._order[offset:offset + chunk])
            self.cursor += chunk
            n -= chunk
        return np.concatenate(taken) if taken else np.empty(0, dtype=int)

    def fresh(self, n: int, generation: int) -> Samples:
        """n real samples not seen before in this stream, x of shape (n, *sample_shape)."""
        if self._finite:
            return self._subset(self._take_indices(n))
        self.cursor += n
        return Samples(self.source.draw(n, self._rng(generation)))

    def state_dict(self) -> dict:
        return {"cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.cursor = int(state["cursor"])
        if self._finite:
            self._epoch = self.cursor // len(self.source)
            self._order = self._permutation(self._epoch)
