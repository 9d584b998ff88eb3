"""Exact fast simulation of Gaussian loops on sufficient statistics.

For n i.i.d. draws of N(m, S) the sample mean is N(m, S / n) and the scatter
matrix sum_i (x_i - xbar)(x_i - xbar)^T is Wishart(S, n - 1), independent of the
mean. A fit needs only (n, mean, scatter), and the statistics of a union of sets
follow from each part's by the parallel-axis formula. So a generation costs
O(d^3) per chain whatever n_real and n_syn are, with the same distribution as
drawing the points (tests check this against ``SampleSimulator``).

All C chains advance together as batched arrays: means (C, d), matrices (C, d, d).
Coordinates are relative to the reference mean m.

When nothing but the latest model carries over between generations (no fixed real set
after G1, no pool, one model kept) and P_r is isotropic, each generation also changes
basis: the Householder tridiagonalization scatter = Q T Q^T, needed anyway for the
eigenvalues of the metrics, gives a basis (coordinates Q^T x) where the fitted
covariance, a multiple of T, is tridiagonal, so its sampling factor is bidiagonal: O(d)
to build and O(d^2) to apply, instead of a Cholesky and a d^3 product. P_r is the same
in every such basis and the metrics do not depend on it, so the records keep their
distribution (not their values).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from mad_core.factory import gaussian_reference
from mad_core.linalg import (psd_factor, tridiagonal_cholesky, tridiagonal_eigenvalues,
                             tridiagonal_matrices, tridiagonalize)
from mad_core.metrics.gaussian import GaussianReference, gaussian_metrics, isotropic_metrics
from mad_core.models.gaussian import covariance_denominator
from mad_core.policy import LoopPolicy
from mad_core.seeding import Stream, generator
from mad_core.spec import TrialSpec, initial_real_size


@dataclass(frozen=True)
class Stats:
    """Sufficient statistics of C sets of n points: means (C, d) and scatters (C, d, d).

    A scatter is kept as matrix + sum_i roots_i roots_i^T (roots (C, d, k_i)), whole only
    where it must be (``scatter``, ``formed``): a fit in the tridiagonal basis sums each
    chain's terms in cache instead of as (C, d, d) arrays.
    """

    n: int
    mean: np.ndarray
    matrix: np.ndarray | None = None
    roots: tuple[np.ndarray, ...] = ()

    @property
    def scatter(self) -> np.ndarray:
        """(C, d, d)."""
        chains, dim = self.mean.shape
        total = np.zeros((chains, dim, dim)) if self.matrix is None else self.matrix.copy()
        for root in self.roots:
            # numpy computes a product of an array with its own transposed view as one
            # BLAS syrk per chain: half the work of a general product.
            total += root @ np.swapaxes(root, -1, -2)
        return total

    def formed(self) -> "Stats":
        """The same statistics with the scatter whole: for statistics used again and
        again (the initial real set, the pool), and to keep their terms few."""
        return Stats(self.n, self.mean, self.scatter)

    def union(self, other: "Stats") -> "Stats":
        """Statistics of the union of the two sets (parallel-axis formula)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + (other.n / n) * delta
        if self.matrix is None or other.matrix is None:
            matrix = other.matrix if self.matrix is None else self.matrix
        else:
            matrix = self.matrix + other.matrix
        # The parallel-axis term (n1 n2 / n) delta delta^T, as a rank-one root.
        shift = np.sqrt(self.n * other.n / n) * delta[:, :, None]
        return Stats(n, mean, matrix, self.roots + other.roots + (shift,))


def empty_stats(chains: int, dim: int) -> Stats:
    return Stats(0, np.zeros((chains, dim)))


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


@dataclass(frozen=True)
class Bidiagonal:
    """C lower-bidiagonal matrices (C, d, d), kept as diagonal (C, d) and subdiagonal
    (C, d - 1)."""

    diagonal: np.ndarray
    subdiagonal: np.ndarray

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        """The products (C, d, k) with x (C, d, k), O(d k) per chain."""
        product = self.diagonal[:, :, None] * x
        product[:, 1:] += self.subdiagonal[:, :, None] * x[:, :-1]
        return product

    def dense(self) -> np.ndarray:
        """(C, d, d)."""
        chains, dim = self.diagonal.shape
        matrices = np.zeros((chains, dim, dim))
        index = np.arange(dim)
        matrices[:, index, index] = self.diagonal
        matrices[:, index[1:], index[:-1]] = self.subdiagonal
        return matrices


def draw_stats(n: int, mean: np.ndarray, factor: float | np.ndarray | Bidiagonal,
               chains: int, rng: np.random.Generator) -> Stats:
    """Statistics of n i.i.d. points of N(mean, factor factor^T), for C chains at once.

    Args:
        mean: (C, d) or (d,).
        factor: (C, d, d) or (d, d) or ``Bidiagonal``, or a float s for the isotropic
            factor s I (the reference of MAD's experiments), which saves a matrix
            product per chain.
    """
    if n == 0:
        return empty_stats(chains, mean.shape[-1])
    dim = mean.shape[-1]
    isotropic = np.isscalar(factor)
    noise = rng.standard_normal((chains, dim))
    noise = factor * noise if isotropic else (factor @ noise[..., None])[..., 0]
    sample_mean = mean + noise / np.sqrt(n)
    dof = n - 1
    if dof >= dim:
        root = bartlett_factor(chains, dim, dof, rng)
    else:
        # Singular Wishart (fewer points than dimensions): sum of dof outer products.
        root = rng.standard_normal((chains, dim, dof))
    if not isotropic:
        root = factor @ root
    elif factor != 1.0:  # N(0, I), MAD's reference, saves a pass over the batch
        root = factor * root
    return Stats(n, sample_mean, roots=(root,))


@dataclass(frozen=True)
class FittedModels:
    """C fitted Gaussians: means (C, d) and sampling factors F (F F^T = lam * Sigma),
    dense (C, d, d) or ``Bidiagonal``."""

    mean: np.ndarray
    sampling_factor: np.ndarray | Bidiagonal


class ExactGaussianSimulator:
    """Gaussian model on a Gaussian source, all chains on sufficient statistics."""

    def __init__(self, spec: TrialSpec, device: str = "cpu"):
        """``device`` is accepted for a common signature; the simulation is NumPy."""
        self.spec = spec
        self.policy = LoopPolicy(spec)
        reference = gaussian_reference(spec)
        self.chains = spec.chains
        self.dim = len(reference.mean)
        # P_r in the simulator's coordinates, whose origin is its mean.
        self.reference = GaussianReference(np.zeros(self.dim), reference.cov)
        variance = self.reference.isotropic_variance
        self._reference_factor = (float(np.sqrt(variance)) if variance is not None
                                  else psd_factor(self.reference.cov))
        # Only the latest model carries over, and P_r is the same in every orthonormal
        # basis (module docstring).
        self._changes_basis = (variance is not None and self.policy.n_initial_real == 0
                               and self.policy.synthetic_source != "pool"
                               and self.policy.models_kept == 1)
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
            running = running.union(block).formed()
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
            self.pool = self.pool.union(synthetic).formed()
            synthetic = self.pool
        training = training.union(synthetic)

        denominator = covariance_denominator(training.n, self.spec.model_options["covariance"])
        fit = self._fit_changing_basis if self._changes_basis else self._fit
        model, metrics = fit(training, denominator)
        self.models.append(model)
        return metrics, {"n_real": n_real, "n_synthetic": synthetic.n}

    def _fit(self, training: Stats, denominator: int
             ) -> tuple[FittedModels, dict[str, np.ndarray]]:
        """The fitted models (mean, covariance scatter / denominator) and their metrics."""
        cov = training.scatter / denominator
        factor = psd_factor(cov)
        if self.spec.lam != 1.0:
            factor *= np.sqrt(self.spec.lam)
        return (FittedModels(training.mean, factor),
                gaussian_metrics(training.mean, cov, self.reference))

    def _fit_changing_basis(self, training: Stats, denominator: int
                            ) -> tuple[FittedModels, dict[str, np.ndarray]]:
        """``_fit``, with the models expressed in the basis where their covariances are
        tridiagonal (see the module docstring)."""
        diagonal, off_diagonal, mean = tridiagonalize(training.mean, training.matrix,
                                                      training.roots)
        metrics = isotropic_metrics(
            (training.mean ** 2).sum(axis=-1), diagonal.sum(axis=-1) / denominator,
            tridiagonal_eigenvalues(diagonal, off_diagonal) / denominator,
            self.reference)
        root_diagonal, root_subdiagonal, positive = tridiagonal_cholesky(diagonal, off_diagonal)
        scale = np.sqrt(self.spec.lam / denominator)
        factor = Bidiagonal(scale * root_diagonal, scale * root_subdiagonal)
        if not positive.all():
            # Singular covariances (a fit on n <= d points, or a collapsed chain) have no
            # Cholesky factor: psd_factor's square roots there, all factors dense.
            singular = ~positive
            factor = factor.dense()
            factor[singular] = scale * psd_factor(
                tridiagonal_matrices(diagonal[singular], off_diagonal[singular]))
        return FittedModels(mean, factor), metrics

    def state_dict(self) -> dict:
        """The kept models and the pool, as arrays."""
        return {"models": [{"mean": m.mean, "sampling_factor": _factor_state(m.sampling_factor)}
                           for m in self.models],
                "pool": {"n": self.pool.n, "mean": self.pool.mean, "scatter": self.pool.scatter}}

    def load_state_dict(self, state: dict) -> None:
        self.models = deque((FittedModels(m["mean"], _factor_from_state(m["sampling_factor"]))
                             for m in state["models"]), maxlen=self.policy.models_kept)
        pool = state["pool"]
        self.pool = Stats(int(pool["n"]), pool["mean"], pool["scatter"])

    def artifacts(self, generation: int) -> dict[str, bytes]:
        """No sample grids or model snapshots: the models are sufficient statistics."""
        return {}


def _factor_state(factor: np.ndarray | Bidiagonal) -> np.ndarray | dict[str, np.ndarray]:
    if isinstance(factor, Bidiagonal):
        return {"diagonal": factor.diagonal, "subdiagonal": factor.subdiagonal}
    return factor


def _factor_from_state(state: np.ndarray | dict[str, np.ndarray]) -> np.ndarray | Bidiagonal:
    return Bidiagonal(**state) if isinstance(state, dict) else state
