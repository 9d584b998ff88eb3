"""Exact fast simulation of Gaussian loops on sufficient statistics.

For n i.i.d. draws of N(m, S) the sample mean is N(m, S / n) and the scatter
matrix sum_i (x_i - xbar)(x_i - xbar)^T is Wishart(S, n - 1), independent of the
mean. A fit needs only (n, mean, scatter), and the statistics of a union of sets
follow from each part's by the parallel-axis formula. So a generation costs
O(d^3) per chain whatever n_real and n_syn are, with the same distribution as
drawing the points (tests check this against ``SampleSimulator``).

All C chains advance together as batched arrays: means (C, d), matrices (C, d, d).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from mad_core.factory import gaussian_reference
from mad_core.linalg import psd_factor
from mad_core.metrics.gaussian import gaussian_metrics
from mad_core.models.gaussian import covariance_from_scatter
from mad_core.policy import LoopPolicy
from mad_core.seeding import Stream, generator
from mad_core.spec import TrialSpec, initial_real_size


@dataclass(frozen=True)
class Stats:
    """Sufficient statistics of C sets of n points: means (C, d), scatters (C, d, d)."""

    n: int
    mean: np.ndarray
    scatter: np.ndarray

    def union(self, other: "Stats") -> "Stats":
        """Statistics of the union of the two sets (parallel-axis formula)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + (other.n / n) * delta
        shift = (self.n * other.n / n) * delta[:, :, None] * delta[:, None, :]
        return Stats(n, mean, self.scatter + other.scatter + shift)


def empty_stats(chains: int, dim: int) -> Stats:
    return Stats(0, np.zeros((chains, dim)), np.zeros((chains, dim, dim)))


def bartlett_factor(chains: int, dim: int, dof: int, rng: np.random.Generator) -> np.ndarray:
    """Lower-triangular A (chains, dim, dim) with A A^T ~ Wishart(I, dof), dof >= dim.

    Bartlett decomposition: A_ii = sqrt(chi2(dof - i)) (0-based i), A_ij ~ N(0, 1) below
    the diagonal.
    """
    rows, cols = np.tril_indices(dim, k=-1)
    factor = np.zeros((chains, dim, dim))
    factor[:, rows, cols] = rng.standard_normal((chains, len(rows)))  # half the normals
    diagonal = np.arange(dim)
    factor[:, diagonal, diagonal] = np.sqrt(rng.chisquare(dof - diagonal, size=(chains, dim)))
    return factor


def draw_stats(n: int, mean: np.ndarray, factor: np.ndarray, chains: int,
               rng: np.random.Generator) -> Stats:
    """Statistics of n i.i.d. points of N(mean, factor factor^T), for C chains at once.

    Args:
        mean: (C, d) or (d,).
        factor: (C, d, d) or (d, d), or a float s for the isotropic factor s I (the
            reference of MAD's experiments), which saves a matrix product per chain.
    """
    if n == 0:
        return empty_stats(chains, mean.shape[-1])
    dim = mean.shape[-1]
    transform = (lambda x: factor * x) if np.isscalar(factor) else (lambda x: factor @ x)
    noise = rng.standard_normal((chains, dim, 1))
    sample_mean = mean + transform(noise)[..., 0] / np.sqrt(n)
    dof = n - 1
    if dof >= dim:
        root = transform(bartlett_factor(chains, dim, dof, rng))
    else:
        # Singular Wishart (fewer points than dimensions): sum of dof outer products.
        root = transform(rng.standard_normal((chains, dim, dof)))
    # A contiguous transpose: numpy's batched matmul on a transposed view skips BLAS
    # and is ~40x slower.
    return Stats(n, sample_mean, root @ np.ascontiguousarray(np.swapaxes(root, -1, -2)))


@dataclass(frozen=True)
class FittedModels:
    """C fitted Gaussians: means (C, d) and sampling factors of lam * Sigma (C, d, d)."""

    mean: np.ndarray
    sampling_factor: np.ndarray


class ExactGaussianSimulator:
    """Gaussian model on a Gaussian source, all chains on sufficient statistics."""

    def __init__(self, spec: TrialSpec, device: str = "cpu"):
        """``device`` is accepted for a common signature; the simulation is NumPy."""
        self.spec = spec
        self.policy = LoopPolicy(spec)
        self.reference = gaussian_reference(spec)
        self.chains = spec.chains
        self.dim = len(self.reference.mean)
        variance = self.reference.isotropic_variance
        self._reference_factor = (float(np.sqrt(variance)) if variance is not None
                                  else psd_factor(self.reference.cov))
        self._initial = self._initial_prefixes()
        self.models: deque[FittedModels] = deque(maxlen=self.policy.models_kept)
        self.pool = empty_stats(self.chains, self.dim)

    def _initial_prefixes(self) -> dict[int, Stats]:
        """Statistics of every prefix of the fixed initial real set that the loop uses
        (G1's n_init, the augmentation's n_real), drawn block by block so that the
        smaller prefix is part of the larger."""
        spec = self.spec
        total = initial_real_size(spec.loop, spec.n_init, spec.n_real)
        sizes = sorted({spec.n_init, self.policy.n_initial_real, total} - {0})
        rng = generator(spec.seed, Stream.REAL, 0)
        prefixes, running = {}, empty_stats(self.chains, self.dim)
        for size in sizes:
            block = draw_stats(size - running.n, self.reference.mean, self._reference_factor,
                               self.chains, rng)
            running = running.union(block)
            prefixes[size] = running
        return prefixes

    def step(self, generation: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Train generation `generation` in every chain; ({metric: (C,)}, counts)."""
        composition = self.policy.composition(generation)
        training = empty_stats(self.chains, self.dim)
        if composition.n_initial_real:
            training = training.union(self._initial[composition.n_initial_real])
        if composition.n_fresh_real:
            training = training.union(draw_stats(
                composition.n_fresh_real, self.reference.mean, self._reference_factor,
                self.chains, generator(self.spec.seed, Stream.REAL, generation)))
        n_real = training.n
        rng = generator(self.spec.seed, Stream.SYNTHETIC, generation)
        synthetic = empty_stats(self.chains, self.dim)
        for lag, n in composition.synthetic_draws:
            model = self.models[-lag]
            synthetic = synthetic.union(draw_stats(n, model.mean, model.sampling_factor,
                                                   self.chains, rng))
        if composition.include_pool:
            self.pool = self.pool.union(synthetic)
            synthetic = self.pool
        training = training.union(synthetic)

        cov = covariance_from_scatter(training.scatter, training.n,
                                      self.spec.model_options["covariance"])
        factor = psd_factor(cov)
        if self.spec.lam != 1.0:
            factor = np.sqrt(self.spec.lam) * factor
        self.models.append(FittedModels(training.mean, factor))
        metrics = gaussian_metrics(training.mean, cov, self.reference)
        return metrics, {"n_real": n_real, "n_synthetic": synthetic.n}

    def state_dict(self) -> dict:
        """The kept models and the pool, as arrays."""
        return {"models": [{"mean": m.mean, "sampling_factor": m.sampling_factor}
                           for m in self.models],
                "pool": {"n": self.pool.n, "mean": self.pool.mean, "scatter": self.pool.scatter}}

    def load_state_dict(self, state: dict) -> None:
        self.models = deque((FittedModels(m["mean"], m["sampling_factor"]) for m in state["models"]),
                            maxlen=self.policy.models_kept)
        pool = state["pool"]
        self.pool = Stats(int(pool["n"]), pool["mean"], pool["scatter"])

    def artifacts(self, generation: int) -> dict[str, bytes]:
        """No sample grids or model snapshots: the models are sufficient statistics."""
        return {}
