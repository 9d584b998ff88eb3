"""Gaussian mixture model, fitted by EM (scikit-learn), with per-component biased sampling."""

from __future__ import annotations

import copy

import numpy as np

from mad_core.linalg import psd_factor
from mad_core.models.base import NotFittedError
from mad_core.seeding import int_seed

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")


class GaussianMixtureModel:
    """Mixture of K Gaussians; ``sample(bias=lam)`` draws component k with its fitted
    weight, then a point from N(mu_k, lam Sigma_k).

    Args:
        n_components: K.
        covariance_type: scikit-learn's covariance_type.
        max_iter: EM iterations per fit.
        em_restarts: EM runs from different initialisations (scikit-learn's n_init).
        reg_covar: added to covariance diagonals; keeps components of collapsed
            clusters from becoming singular.
    """

    supports_warm_start = True  # EM can start from the previous generation's parameters

    def __init__(self, *, n_components: int = 25, covariance_type: str = "full",
                 max_iter: int = 100, em_restarts: int = 1, reg_covar: float = 1e-6):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.max_iter = max_iter
        self.em_restarts = em_restarts
        self.reg_covar = reg_covar

    def fit(self, samples: np.ndarray, rng: np.random.Generator,
            previous: "GaussianMixtureModel | None" = None) -> "GaussianMixtureModel":
        """Fit on samples (n, d) by EM; from ``previous``'s parameters when given."""
        # Imported here: scikit-learn takes ~1 s to import, and every trial process of a
        # sweep imports this module, most of them for Gaussian models only.
        from sklearn.mixture import GaussianMixture

        if previous is not None:
            mixture = copy.deepcopy(previous.mixture_)
            mixture.set_params(warm_start=True, random_state=int_seed(rng))
        else:
            mixture = GaussianMixture(
                n_components=self.n_components, covariance_type=self.covariance_type,
                max_iter=self.max_iter, n_init=self.em_restarts, reg_covar=self.reg_covar,
                random_state=int_seed(rng))
        self.mixture_ = mixture.fit(samples)
        self.n_fit_ = len(samples)
        return self

    def _full_covariances(self) -> np.ndarray:
        """(K, d, d) covariances whatever the covariance_type."""
        mixture = self.mixture_
        k, d = mixture.means_.shape
        covs = mixture.covariances_
        if mixture.covariance_type == "full":
            return covs
        if mixture.covariance_type == "tied":
            return np.broadcast_to(covs, (k, d, d))
        if mixture.covariance_type == "diag":
            return covs[:, :, None] * np.eye(d)
        return covs[:, None, None] * np.eye(d)

    def sample(self, n: int, bias: float, rng: np.random.Generator) -> np.ndarray:
        """n samples (n, d); components keep their weights, covariances scale by bias."""
        if not hasattr(self, "mixture_"):
            raise NotFittedError("GaussianMixtureModel.sample called before fit")
        means = self.mixture_.means_
        weights = self.mixture_.weights_
        counts = rng.multinomial(n, weights / weights.sum())
        factors = psd_factor(self._full_covariances())
        if bias != 1.0:
            factors = np.sqrt(bias) * factors
        component = np.repeat(np.arange(len(means)), counts)
        noise = rng.standard_normal((n, means.shape[1]))
        samples = means[component] + np.einsum("nij,nj->ni", factors[component], noise)
        return samples[rng.permutation(n)]
